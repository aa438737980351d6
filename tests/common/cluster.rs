//! Three real `hindsight` processes on loopback forming one Raft group, with the
//! operator contract's flags, for end-to-end replication tests. The harness only
//! signals its own children (SIGKILL, SIGSTOP/SIGCONT, restart on the same dir).
//! Started with [`Cluster::start_partitionable`], every directed Raft link runs
//! through a proxy ([`super::proxy::Link`]) the test can cut.

use std::collections::BTreeMap;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Member {
    pub id: u64,
    pub pg: u16,
    pub http: u16,
    pub dir: std::path::PathBuf,
    /// This member's `--peers` (its links to the others may be proxies).
    peers: String,
    /// Its real Raft port (`--raft-listen`).
    pub raft: u16,
    /// Started with `--join` (no `--peers`): added by the leader at run time.
    join: bool,
    /// Log lines about leadership this member printed (all its runs).
    pub leadership_log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    child: Option<Child>,
}

pub struct Cluster {
    pub members: Vec<Member>,
    /// The proxy of each directed link (from, to), when partitionable.
    links: BTreeMap<(u64, u64), super::proxy::Link>,
    /// Flags every member is started with besides the contract's.
    extra: Vec<String>,
    _root: tempfile::TempDir,
}

impl Cluster {
    /// Start `n` members and wait until each serves SQL.
    pub fn start(n: u64) -> Cluster {
        Cluster::build(n, false, &[])
    }

    /// Like [`Cluster::start`], every member also given `extra` flags.
    pub fn start_with(n: u64, extra: &[&str]) -> Cluster {
        Cluster::build(n, false, extra)
    }

    /// Like [`Cluster::start`], with a proxy on every directed Raft link.
    pub fn start_partitionable(n: u64) -> Cluster {
        Cluster::build(n, true, &[])
    }

    fn build(n: u64, proxied: bool, extra: &[&str]) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let raft: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut links = BTreeMap::new();
        if proxied {
            for from in 1..=n {
                for to in (1..=n).filter(|&t| t != from) {
                    let link = super::proxy::Link::start(raft[(to - 1) as usize]);
                    links.insert((from, to), link);
                }
            }
        }
        let peers_of = |me: u64| {
            (1..=n)
                .map(|j| {
                    let port = links
                        .get(&(me, j))
                        .map_or(raft[(j - 1) as usize], |l: &super::proxy::Link| l.port);
                    format!("{j}=127.0.0.1:{port}")
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let members = (1..=n)
            .map(|id| Member {
                id,
                pg: free_port(),
                http: free_port(),
                dir: root.path().join(format!("node{id}")),
                peers: peers_of(id),
                raft: raft[(id - 1) as usize],
                join: false,
                leadership_log: Default::default(),
                child: None,
            })
            .collect();
        let mut c = Cluster {
            members,
            links,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _root: root,
        };
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel()).unzip();
        for (i, tx) in txs.into_iter().enumerate() {
            c.spawn(i, tx);
        }
        for rx in rxs {
            rx.recv_timeout(Duration::from_secs(90))
                .expect("member did not become ready");
        }
        c
    }

    fn spawn(&mut self, i: usize, ready: mpsc::Sender<()>) {
        let extra = self.extra.clone();
        let m = &mut self.members[i];
        let membership = match m.join {
            true => vec!["--join".to_string()],
            false => vec!["--peers".to_string(), m.peers.clone()],
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_hindsight"))
            .args(["--node-id", &m.id.to_string()])
            .args(&membership)
            .args(["--raft-listen", &format!("127.0.0.1:{}", m.raft)])
            .args(["--listen", &format!("127.0.0.1:{}", m.pg)])
            .args(["--http-listen", &format!("127.0.0.1:{}", m.http)])
            .arg("--data-dir")
            .arg(&m.dir)
            .args(&extra)
            .env("HINDSIGHT_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start hindsight");
        let stderr = child.stderr.take().unwrap();
        let id = m.id;
        let leadership = m.leadership_log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ready to accept connections") {
                    let _ = ready.send(());
                }
                if line.contains("leadership") {
                    leadership.lock().unwrap().push(line.clone());
                }
                if std::env::var_os("HINDSIGHT_TEST_LOG").is_some() {
                    eprintln!("[node {id}] {line}");
                }
            }
        });
        m.child = Some(child);
    }

    /// Start a new member with `--join` under the next free id (it serves SQL
    /// at once; the leader still has to add it); returns its id.
    pub fn start_joining(&mut self) -> u64 {
        let id = self.members.iter().map(|m| m.id).max().unwrap_or(0) + 1;
        let dir = self.members[0].dir.with_file_name(format!("node{id}"));
        self.members.push(Member {
            id,
            pg: free_port(),
            http: free_port(),
            dir,
            peers: String::new(),
            raft: free_port(),
            join: true,
            leadership_log: Default::default(),
            child: None,
        });
        self.restart(id);
        id
    }

    /// Create table `facts (id, v)` on the leader and insert ids `0..rows` (v =
    /// id * 3); returns the leader's id and a session on it.
    pub async fn with_facts(&self, rows: i64) -> (u64, tokio_postgres::Client) {
        let leader = self.leader(Duration::from_secs(60));
        let lead = self.member(leader).connect().await;
        lead.batch_execute("CREATE TABLE facts (id BIGINT NOT NULL, v BIGINT, PRIMARY KEY (id))")
            .await
            .unwrap();
        insert_facts(&lead, 0..rows).await;
        (leader, lead)
    }

    pub fn member(&self, id: u64) -> &Member {
        self.members.iter().find(|m| m.id == id).unwrap()
    }

    /// The one member whose /primary answers 200, waiting up to `within`.
    pub fn leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let up: Vec<u64> = self
                .members
                .iter()
                .filter(|m| m.child.is_some() && m.http_status("/primary") == Some(200))
                .map(|m| m.id)
                .collect();
            if let [one] = up[..] {
                return one;
            }
            assert!(Instant::now() < deadline, "no single leader: {up:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until every running member other than `leader` answers /replica 200
    /// (it follows `leader` and knows its Postgres address).
    pub fn replicas_ready(&self, leader: u64, within: Duration) {
        let deadline = Instant::now() + within;
        for m in self
            .members
            .iter()
            .filter(|m| m.id != leader && m.child.is_some())
        {
            while m.http_status("/replica") != Some(200) {
                assert!(Instant::now() < deadline, "node {} is not a replica", m.id);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn kill(&mut self, id: u64) {
        let m = self.members.iter_mut().find(|m| m.id == id).unwrap();
        if let Some(mut c) = m.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM a member and wait (up to 60 s) for it to exit; its exit code.
    pub fn stop(&mut self, id: u64) -> Option<i32> {
        self.signal(id, "-TERM");
        let m = self.members.iter_mut().find(|m| m.id == id).unwrap();
        let mut child = m.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, id: u64, sig: &str) {
        let m = self.member(id);
        let pid = m.child.as_ref().unwrap().id();
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
    }

    /// Restart a killed member on its data directory with the same flags.
    pub fn restart(&mut self, id: u64) {
        let i = self.members.iter().position(|m| m.id == id).unwrap();
        let (tx, rx) = mpsc::channel();
        self.spawn(i, tx);
        rx.recv_timeout(Duration::from_secs(90))
            .expect("restarted member did not become ready");
    }

    /// Cut (or restore) both directions between `a` and `b`.
    pub fn set_cut(&self, a: u64, b: u64, cut: bool) {
        for key in [(a, b), (b, a)] {
            self.links
                .get(&key)
                .expect("a partitionable cluster")
                .set_cut(cut);
        }
    }

    /// Cut only the connections `from` opens to `to` (its calls to `to` fail;
    /// `to` still reaches `from`).
    pub fn cut_one_way(&self, from: u64, to: u64) {
        self.links
            .get(&(from, to))
            .expect("a partitionable cluster")
            .set_cut(true);
    }

    /// Cut every link of `id`: it is alone, the others still see each other.
    pub fn isolate(&self, id: u64) {
        for m in self.members.iter().filter(|m| m.id != id) {
            self.set_cut(id, m.id, true);
        }
    }

    /// Restore every link.
    pub fn heal(&self) {
        for link in self.links.values() {
            link.set_cut(false);
        }
    }

    /// A libpq multi-host connection string over every member.
    pub fn multi_host(&self, attrs: &str) -> String {
        let hosts = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.pg))
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "postgresql://test@{hosts}/hindsight?target_session_attrs={attrs}&connect_timeout=2"
        )
    }
}

/// Insert rows `(id, id * 3)` into `facts` in one statement.
pub async fn insert_facts(c: &tokio_postgres::Client, ids: std::ops::Range<i64>) {
    let values: Vec<String> = ids.map(|i| format!("({i}, {})", i * 3)).collect();
    c.batch_execute(&format!(
        "INSERT INTO facts (id, v) VALUES {}",
        values.join(",")
    ))
    .await
    .unwrap();
}

impl Member {
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=test dbname=hindsight", self.pg)
    }

    pub async fn connect(&self) -> tokio_postgres::Client {
        super::connect(&self.url()).await
    }

    /// The status code of `GET path` on the HTTP endpoint (None if unreachable).
    pub fn http_status(&self, path: &str) -> Option<u16> {
        self.http_get(path).map(|(status, _)| status)
    }

    /// The value of one unlabelled figure on `/metrics` (None if absent).
    pub fn metric(&self, name: &str) -> Option<u64> {
        let (_, body) = self.http_get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Status code and body of `GET path` (None if unreachable).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let status = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
