//! End-to-end: psycopg 3 (and pandas) against the real server, driven by
//! `tests/clients/psycopg_session.py`. Skipped with a message when python3 lacks
//! psycopg or pandas (`.ci/run` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::TestServer;

fn python_has(modules: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn psycopg_parameterized_pipelined_prepared_and_pandas() {
    if !python_has("psycopg, pandas") {
        eprintln!(
            "python3 with psycopg and pandas not installed: skipping (bash .ci/run installs them)"
        );
        return;
    }
    let server = TestServer::start(&[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/psycopg_session.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(server.port.to_string())
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "psycopg session failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("psycopg session ok"), "{stdout}");
}
