//! End-to-end: real drivers against the real server, each driven by a session script
//! in `tests/clients/`: psycopg 3 with pandas and SQLAlchemy (Python), the bulk and
//! Arrow paths of asyncpg, psycopg, ADBC and polars (Python), psycopg2, pg8000 and
//! SQLAlchemy over each (Python), Arrow Flight SQL through ADBC, pyarrow.flight, pandas
//! and polars (Python, with TLS), the README's Python block verbatim, a dbt-postgres project
//! (`dbt run` and `dbt test`), pgjdbc (the Debian
//! package, Java) and node-postgres (npm `pg`). A missing client is skipped
//! with a message, or fails the test under `HINDSIGHT_REQUIRE_CLIENTS=1` (`.ci/run`
//! installs them all and sets it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{TestServer, client_available, npm_prefix, run_client_session};

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
const PGJDBC: &str = "/usr/share/java/postgresql.jar";

#[test]
fn psycopg_parameterized_pipelined_prepared_pandas_sqlalchemy() {
    if !client_available(
        "python3 with psycopg, pandas and sqlalchemy",
        Command::new("python3").args(["-c", "import psycopg, pandas, sqlalchemy"]),
    ) {
        return;
    }
    let server = TestServer::start(&[]);
    run_client_session(
        &server,
        Command::new("python3").arg(format!("{CLIENTS}/psycopg_session.py")),
        "psycopg session ok",
    );
}

#[test]
fn bulk_and_arrow_paths_of_asyncpg_psycopg_adbc_polars() {
    if !client_available(
        "python3 with asyncpg, psycopg, adbc_driver_postgresql, pyarrow, polars and connectorx",
        Command::new("python3").args([
            "-c",
            "import asyncpg, psycopg, adbc_driver_postgresql, pyarrow, polars, connectorx",
        ]),
    ) {
        return;
    }
    let server = TestServer::start(&[]);
    run_client_session(
        &server,
        Command::new("python3").arg(format!("{CLIENTS}/bulk_drivers.py")),
        "bulk drivers ok",
    );
}

#[test]
fn flight_sql_through_adbc_pyarrow_pandas_polars_with_tls() {
    if !client_available(
        "python3 with adbc_driver_flightsql, pyarrow, pandas and polars, and openssl",
        Command::new("sh").args([
            "-c",
            "openssl version && python3 -c 'import adbc_driver_flightsql, pyarrow.flight, pandas, polars'",
        ]),
    ) {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = common::self_signed_cert(certs.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = TestServer::start(&["--flight-listen", "127.0.0.1:0"]);
    let secure = TestServer::start(&[
        "--flight-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--no-loopback-trust",
        "--user",
        "alice:s3cret",
    ]);
    let port = |s: &TestServer| s.flight_port.unwrap().to_string();
    run_client_session(
        &server,
        Command::new("python3")
            .arg(format!("{CLIENTS}/flight_adbc.py"))
            .args([port(&server), port(&secure), cert.to_string()]),
        "flight clients ok",
    );
}

#[test]
fn psycopg2_pg8000_and_sqlalchemy_over_each() {
    if !client_available(
        "python3 with psycopg2, pg8000, psycopg, pandas and sqlalchemy",
        Command::new("python3")
            .args(["-c", "import psycopg2, pg8000, psycopg, pandas, sqlalchemy"]),
    ) {
        return;
    }
    let server = TestServer::start(&[]);
    run_client_session(
        &server,
        Command::new("python3").arg(format!("{CLIENTS}/classic_drivers.py")),
        "classic drivers ok",
    );
}

#[test]
fn dbt_runs_and_tests_a_project_of_tables_and_views() {
    if !client_available(
        "dbt with the postgres adapter and psycopg",
        Command::new("sh").args(["-c", "dbt --version && python3 -c 'import psycopg'"]),
    ) {
        return;
    }
    let server = TestServer::start(&[]);
    run_client_session(
        &server,
        Command::new("python3").arg(format!("{CLIENTS}/dbt_project.py")),
        "dbt project ok",
    );
}

#[test]
fn jdbc_prepared_batches_and_database_metadata() {
    if !client_available(
        "java with pgjdbc (libpostgresql-jdbc-java)",
        Command::new("test").args(["-f", PGJDBC]),
    ) || !client_available("java", Command::new("java").arg("-version"))
    {
        return;
    }
    let server = TestServer::start(&[]);
    run_client_session(
        &server,
        Command::new("java")
            .args(["-cp", PGJDBC])
            .arg(format!("{CLIENTS}/JdbcSession.java")),
        "jdbc session ok",
    );
}

#[test]
fn node_postgres_queries_prepared_pool() {
    let node_path = npm_prefix().join("node_modules");
    if !client_available(
        "node with the npm pg package",
        Command::new("node")
            .env("NODE_PATH", &node_path)
            .args(["-e", "require('pg')"]),
    ) {
        return;
    }
    let server = TestServer::start(&[]);
    run_client_session(
        &server,
        Command::new("node")
            .env("NODE_PATH", &node_path)
            .arg(format!("{CLIENTS}/node_pg_session.js")),
        "node-postgres session ok",
    );
}

/// The README's "Use it from Python" block, run verbatim (only the port changed).
#[test]
fn readme_python_block_runs_as_written() {
    if !client_available(
        "python3 with asyncpg, psycopg, pandas, sqlalchemy, adbc_driver_postgresql, pyarrow, polars and connectorx",
        Command::new("python3").args([
            "-c",
            "import asyncpg, psycopg, pandas, sqlalchemy, adbc_driver_postgresql, pyarrow, polars, connectorx",
        ]),
    ) {
        return;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Use it from Python")
        .nth(1)
        .expect("the README has a Python section");
    let block = section
        .split("```python\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the Python section has a python block");
    let server = TestServer::start(&[]);
    let script = format!(
        "{}\nprint(\"readme python ok\")\n",
        block.replace("127.0.0.1:5433", &format!("127.0.0.1:{}", server.port))
    );
    let path = server.dir.path().join("readme_block.py");
    std::fs::write(&path, script).unwrap();
    run_client_session(
        &server,
        Command::new("python3").arg(&path),
        "readme python ok",
    );
}
