//! End-to-end: a scripted psql session against the real server (`\copy` in and out,
//! `\d` and friends, latest lookup, as_of, an ASOF JOIN training set). Skipped with a
//! message when psql is not installed (`.ci/run` installs it and requires it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{TestServer, client_available};

fn psql_available() -> bool {
    client_available("psql", Command::new("psql").arg("--version"))
}

fn psql(server: &TestServer, cwd: &std::path::Path, script: &str) -> (bool, String, String) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg("-h")
        .arg("127.0.0.1")
        .arg("-p")
        .arg(server.port.to_string())
        .args(["-U", "test", "-d", "hindsight", "-f", "-"])
        .current_dir(cwd)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scripted_psql_session_builds_a_training_set() {
    if !psql_available() {
        return;
    }
    let server = TestServer::start(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        work.path().join("versions.csv"),
        "driver_id,event_ts,conv_rate\n1,2026-01-01 00:00:00+00,0.5\n1,2026-01-03 00:00:00+00,0.9\n2,2026-01-02 00:00:00+00,0.2\n",
    )
    .expect("write csv");
    let script = r#"
CREATE TABLE driver_stats (
  driver_id BIGINT NOT NULL,
  event_ts  TIMESTAMPTZ NOT NULL,
  conv_rate DOUBLE PRECISION,
  PRIMARY KEY (driver_id)
) WITH (event_time = 'event_ts');
\copy driver_stats FROM 'versions.csv' WITH (FORMAT csv, HEADER)
CREATE TABLE labels (driver_id BIGINT, ts TIMESTAMPTZ, label BOOLEAN);
INSERT INTO labels VALUES (1, '2026-01-02 00:00:00+00', true), (2, '2026-01-01 00:00:00+00', false), (1, '2026-01-04 00:00:00+00', true);
SELECT 'latest', conv_rate FROM driver_stats WHERE driver_id = 1;
SELECT 'as_of', conv_rate FROM as_of(driver_stats, TIMESTAMPTZ '2026-01-02 00:00:00+00') WHERE driver_id = 1;
\copy (SELECT s.driver_id, s.ts, s.label, f.conv_rate FROM labels AS s ASOF JOIN driver_stats AS f MATCH_CONDITION (s.ts >= f.event_ts) ON s.driver_id = f.driver_id ORDER BY s.driver_id, s.ts) TO 'training.csv' WITH (FORMAT csv, HEADER)
SELECT 'done';
"#;
    let (ok, stdout, stderr) = psql(&server, work.path(), script);
    assert!(ok, "psql failed:\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        stdout.trim(),
        "latest|0.9\nas_of|0.5\ndone",
        "stderr: {stderr}"
    );
    let training = std::fs::read_to_string(work.path().join("training.csv")).expect("training.csv");
    assert_eq!(
        training,
        "driver_id,ts,label,conv_rate\n\
         1,2026-01-02 00:00:00+00,t,0.5\n\
         1,2026-01-04 00:00:00+00,t,0.9\n\
         2,2026-01-01 00:00:00+00,f,\n"
    );
}

#[test]
fn psql_describes_tables_schemas_and_databases() {
    if !psql_available() {
        return;
    }
    let server = TestServer::start(&[]);
    let script = r#"
CREATE TABLE driver_stats (driver_id BIGINT NOT NULL, event_ts TIMESTAMPTZ NOT NULL,
  conv_rate DOUBLE PRECISION, tags TEXT[], emb REAL[], ids BIGINT[], PRIMARY KEY (driver_id))
  WITH (event_time = 'event_ts');
CREATE TABLE labels (driver_id BIGINT, ts TIMESTAMPTZ, label BOOLEAN);
CREATE VIEW recent AS SELECT driver_id, conv_rate FROM driver_stats;
CREATE SCHEMA feat;
CREATE TABLE feat.scores (id BIGINT PRIMARY KEY, s REAL);
CREATE INDEX scores_by_id ON feat.scores (id);
\echo == dt
\dt
\echo == dv
\dv
\echo == d
\d driver_stats
\echo == dn
\dn
\echo == l
\l
\echo == di
\di *.*
\echo == dt feat
\dt feat.*
INSERT INTO feat.scores SELECT x, x FROM generate_series(1, 1000) AS g(x);
VACUUM;
\echo == dt+
\dt+ feat.*
\echo == di+
\di+ feat.*
\echo == indexes
\pset tuples_only off
\d feat.scores
"#;
    let (ok, stdout, stderr) = psql(&server, server.dir.path(), script);
    assert!(ok, "psql failed:\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let section = |name: &str| -> Vec<String> {
        stdout
            .split(&format!("== {name}\n"))
            .nth(1)
            .unwrap_or("")
            .lines()
            .take_while(|l| !l.starts_with("== "))
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        section("dt"),
        [
            "public|driver_stats|table|postgres",
            "public|labels|table|postgres"
        ],
        "{stdout}"
    );
    assert_eq!(
        section("d"),
        [
            "driver_id|bigint||not null|",
            "event_ts|timestamp with time zone||not null|",
            "conv_rate|double precision|||",
            "tags|text[]|||",
            "emb|real[]|||",
            "ids|bigint[]|||",
        ],
        "{stdout}"
    );
    assert_eq!(section("dv"), ["public|recent|view|postgres"], "{stdout}");
    assert!(
        section("dn").contains(&"public|postgres".to_string()),
        "{stdout}"
    );
    assert!(
        section("l").iter().any(|l| l.starts_with("hindsight|")),
        "{stdout}"
    );
    assert!(
        section("dn").contains(&"feat|postgres".to_string()),
        "{stdout}"
    );
    assert_eq!(
        section("di"),
        [
            "feat|scores_by_id|index|postgres|scores",
            "feat|scores_pkey|index|postgres|scores",
            "public|driver_stats_pkey|index|postgres|driver_stats",
        ],
        "{stdout}"
    );
    assert_eq!(
        section("dt feat"),
        ["feat|scores|table|postgres"],
        "{stdout}"
    );
    // Sizes: the table's flushed data files; indexes are its key order (0 bytes).
    let dt_plus = section("dt+");
    assert_eq!(dt_plus.len(), 1, "{stdout}");
    let cols: Vec<&str> = dt_plus[0].split('|').collect();
    assert_eq!(
        &cols[..5],
        ["feat", "scores", "table", "postgres", "permanent"],
        "{stdout}"
    );
    assert!(
        cols[6] != "0 bytes" && (cols[6].ends_with(" bytes") || cols[6].ends_with(" kB")),
        "size {:?}: {stdout}",
        cols[6]
    );
    assert!(
        section("di+").iter().all(|l| l.contains("|0 bytes|")),
        "{stdout}"
    );
    let indexes = section("indexes");
    let at = indexes.iter().position(|l| l == "Indexes:");
    assert_eq!(
        at.map(|i| &indexes[i + 1..]),
        Some(
            &[
                "    \"scores_pkey\" PRIMARY KEY, btree (id)".to_string(),
                "    \"scores_by_id\" btree (id)".to_string(),
            ][..]
        ),
        "{stdout}"
    );
}

#[test]
fn psql_reports_errors_with_sqlstate() {
    if !psql_available() {
        return;
    }
    let server = TestServer::start(&[]);
    let (ok, _out, stderr) = psql(
        &server,
        server.dir.path(),
        "\\set VERBOSITY verbose\nSELECT * FROM missing;\n",
    );
    assert!(!ok);
    assert!(stderr.contains("42P01"), "{stderr}");
}

#[test]
fn psql_negotiates_tls_with_a_generated_certificate() {
    if !psql_available() || !client_available("openssl", Command::new("openssl").arg("version")) {
        return;
    }
    let certs = tempfile::tempdir().expect("tempdir");
    let (cert, key) = common::self_signed_cert(certs.path());
    let server = TestServer::start(&[
        "--tls-cert",
        cert.to_str().expect("utf-8 path"),
        "--tls-key",
        key.to_str().expect("utf-8 path"),
    ]);
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(format!(
            "host=127.0.0.1 port={} user=test dbname=hindsight sslmode=require",
            server.port
        ))
        .args(["-c", "\\conninfo", "-c", "SELECT 40 + 2"])
        .output()
        .expect("run psql");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SSL connection"), "{stdout}");
    assert!(stdout.contains("42"), "{stdout}");
}

/// The README's five-minute tour, exactly as written there, runs on any date: every
/// statement succeeds and the training set it copies out has both labels.
#[test]
fn readme_tour_runs_as_written() {
    if !psql_available() {
        return;
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let after = readme
        .split("## A five-minute tour with psql")
        .nth(1)
        .expect("the tour section");
    let block = after
        .split("```sql\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the tour's sql block");
    let server = TestServer::start(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    let (ok, out, err) = psql(&server, work.path(), block);
    assert!(ok, "the README tour failed:\n{err}\n{out}");
    let training = std::fs::read_to_string(work.path().join("training.csv")).expect("training.csv");
    let lines: Vec<&str> = training.lines().collect();
    assert_eq!(lines.first(), Some(&"driver_id,ts,label,conv_rate"));
    assert_eq!(lines.len(), 3, "{training}");
    assert!(
        lines[1].starts_with("1,") && lines[1].ends_with(",t,0.5"),
        "{training}"
    );
    assert!(
        lines[2].starts_with("2,") && lines[2].ends_with(",f,0.2"),
        "{training}"
    );
    // The latest lookup answers (the tour once returned nothing a month after it was
    // written, its versions aged out by the table's ttl).
    assert!(out.contains("|0.9|15|"), "{out}");
}
