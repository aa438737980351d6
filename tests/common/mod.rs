//! Starts the real `hindsight` binary on an ephemeral port with a temporary data
//! directory, for end-to-end tests with real clients.
#![allow(dead_code)]

pub mod cluster;
pub mod history;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A tokio-postgres client on `url`, its connection driven in the background.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

pub struct TestServer {
    child: Child,
    pub port: u16,
    pub metrics_port: u16,
    /// The Arrow Flight SQL port, when started with `--flight-listen`.
    pub flight_port: Option<u16>,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
}

impl TestServer {
    pub fn start(extra: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, extra)
    }

    /// Start on an existing data directory (restart tests).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> TestServer {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hindsight"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .args(&args)
            .env("HINDSIGHT_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start hindsight");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let port_after = |line: &str, key: &str| {
            line.split(key)
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
        };
        std::thread::spawn(move || {
            let (mut metrics, mut flight) = (None, None);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("metrics endpoint") {
                    metrics = port_after(&line, "addr=");
                }
                if line.contains("Arrow Flight SQL endpoint") {
                    flight = port_after(&line, "addr=");
                }
                if line.contains("ready to accept connections") {
                    let _ = tx.send(
                        port_after(&line, "listen=")
                            .zip(metrics)
                            .map(|p| (p, flight)),
                    );
                }
                if std::env::var_os("HINDSIGHT_TEST_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let ((port, metrics_port), flight_port) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server did not become ready")
            .expect("ports in the startup lines");
        TestServer {
            child,
            port,
            metrics_port,
            flight_port,
            dir,
            args,
        }
    }

    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=test dbname=hindsight",
            self.port
        )
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.url()).await
    }

    /// The Prometheus text from the metrics endpoint.
    pub fn metrics(&self) -> String {
        self.http(&[b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
    }

    /// Send `parts` to the HTTP endpoint, pausing between them (a request split
    /// across packets), and read the response until the server closes.
    pub fn http(&self, parts: &[&[u8]]) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.set_nodelay(true).unwrap();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            s.write_all(p).unwrap();
        }
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// SIGTERM, then wait for exit.
    pub fn stop(mut self) -> (ExitStatus, tempfile::TempDir) {
        let status = self.terminate();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status, dir)
    }

    fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..600 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }

    /// Restart on the same data directory.
    pub fn restart(self) -> TestServer {
        let args = self.args.clone();
        let (status, dir) = self.stop();
        assert!(status.success(), "clean exit, got {status:?}");
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        TestServer::start_in(dir, &refs)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether an external client the test drives is installed (`probe` exits 0). A
/// missing client skips the test with a message, unless `HINDSIGHT_REQUIRE_CLIENTS=1`
/// (set by `.ci/run`, which installs every client): then it fails the test, so CI
/// never passes by skipping.
pub fn client_available(what: &str, probe: &mut Command) -> bool {
    let ok = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        assert!(
            std::env::var("HINDSIGHT_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "{what} is required (HINDSIGHT_REQUIRE_CLIENTS=1) but not installed"
        );
        eprintln!("{what} not installed: skipping (bash .ci/run installs it)");
    }
    ok
}

/// Run a client session script against `server`; it must exit 0 and print `marker`.
pub fn run_client_session(server: &TestServer, cmd: &mut Command, marker: &str) {
    let out = cmd
        .arg(server.port.to_string())
        .output()
        .expect("run the client session");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(marker),
        "client session failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

/// Where `.ci/run` installs npm packages for the node-postgres test.
pub fn npm_prefix() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_default();
    std::path::PathBuf::from(home).join(".cache/hindsight/npm")
}

/// A self-signed certificate for `localhost` and 127.0.0.1 (as a subject
/// alternative name, which gRPC and Go clients require), made by `openssl` in
/// `dir`: the certificate and key paths.
#[allow(dead_code)]
pub fn self_signed_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}
