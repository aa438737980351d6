//! The drivers ML and data engineers use, unmodified, against a three-server
//! cluster the way PostgreSQL primary/standby users connect: psql (libpq) and
//! psycopg 3 with one multi-host URL and `target_session_attrs=read-write` reach
//! the leader, and after the leader is SIGKILLed the new one; `standby` reaches a
//! hot standby whose INSERT and COPY FROM fail with 25006 naming the leader; pgjdbc
//! with `targetServerType=primary` / `secondary` likewise. A missing client is
//! skipped, or fails under `HINDSIGHT_REQUIRE_CLIENTS=1` (`.ci/run`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::client_available;
use common::cluster::Cluster;

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
const PGJDBC: &str = "/usr/share/java/postgresql.jar";

fn hosts(c: &Cluster) -> String {
    c.members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.pg))
        .collect::<Vec<_>>()
        .join(",")
}

/// Run a client; it must exit 0 and print `marker`. Returns its stdout.
fn run(cmd: &mut Command, marker: &str) -> String {
    let out = cmd.output().expect("run the client");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(marker),
        "client failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

fn psql(url: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
        ])
        .arg(url)
        .args(["-c", sql])
        .output()
        .expect("run psql")
}

#[test]
fn psql_and_psycopg_multi_host_find_the_leader_and_the_new_one_after_a_kill() {
    let have_psql = client_available(
        "psql (postgresql-client)",
        Command::new("psql").arg("--version"),
    );
    let have_psycopg = client_available(
        "python3 with psycopg",
        Command::new("python3").args(["-c", "import psycopg"]),
    );
    if !have_psql || !have_psycopg {
        return;
    }
    let mut c = Cluster::start(3);
    let leader = c.leader(Duration::from_secs(30));
    c.replicas_ready(leader, Duration::from_secs(30));
    let leader_port = c.member(leader).pg;
    let rw = format!(
        "postgresql://psql@{}/hindsight?target_session_attrs=read-write&connect_timeout=2",
        hosts(&c)
    );
    let out = psql(&rw, "SELECT pg_is_in_recovery(), 1");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("f|"), "{said}");

    // psql on a standby: the write fails with 25006 and names the leader.
    let standby = format!(
        "postgresql://psql@{}/hindsight?target_session_attrs=standby&connect_timeout=2",
        hosts(&c)
    );
    psql(
        &rw,
        "CREATE TABLE ps (id BIGINT NOT NULL, PRIMARY KEY (id))",
    );
    let out = psql(&standby, "INSERT INTO ps VALUES (1)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("ERROR:  25006:"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{leader_port}")), "{err}");

    // psycopg finds the leader, then (after a SIGKILL) the new leader.
    let all = hosts(&c);
    let py = |key: &str| {
        run(
            Command::new("python3")
                .arg(format!("{CLIENTS}/psycopg_cluster.py"))
                .args([&all, key]),
            "psycopg cluster ok",
        )
    };
    let first = py("1");
    assert!(first.contains(&format!("leader {leader_port}")), "{first}");
    c.kill(leader);
    let second = py("2");
    assert!(
        !second.contains(&format!("leader {leader_port}")),
        "{second}"
    );
    let out = psql(&rw, "SELECT count(*) FROM pyc");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");
}

#[test]
fn pgjdbc_target_server_type_primary_and_secondary() {
    if !client_available(
        "java with pgjdbc (libpostgresql-jdbc-java)",
        Command::new("test").args(["-f", PGJDBC]),
    ) || !client_available("java", Command::new("java").arg("-version"))
    {
        return;
    }
    let c = Cluster::start(3);
    let leader = c.leader(Duration::from_secs(30));
    c.replicas_ready(leader, Duration::from_secs(30));
    run(
        Command::new("java")
            .args(["-cp", PGJDBC])
            .arg(format!("{CLIENTS}/JdbcCluster.java"))
            .args([&hosts(&c), "1"]),
        "jdbc cluster ok",
    );
}
