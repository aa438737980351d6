//! Server configuration: command-line flags, environment variables (`HINDSIGHT_*`) and
//! an optional TOML file, merged in that order of precedence over the defaults.
//!
//! Invariant: the defaults alone give a usable embedded server (loopback listener,
//! `./hindsight-data`, fsync before acknowledging, trust only for loopback peers).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Deserialize;

/// Hindsight: one database for ML features, versioned by event time and system time,
/// served over the PostgreSQL protocol.
///
/// Every option can also be set in a TOML file (--config) under the same name with
/// dashes as underscores (e.g. `max_connections = 200`), or through an environment
/// variable named in its help. Flags override the environment, which overrides the
/// file.
#[derive(Parser, Debug, Default)]
#[command(name = "hindsight", version, about, long_about)]
pub struct Cli {
    /// Address to serve the PostgreSQL protocol on [default: 127.0.0.1:5433].
    #[arg(long, env = "HINDSIGHT_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Directory holding the database (created if missing) [default: ./hindsight-data].
    #[arg(long, env = "HINDSIGHT_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// TOML configuration file.
    #[arg(long, env = "HINDSIGHT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address of the HTTP endpoint: Prometheus metrics (GET /metrics), health
    /// (GET /health: 200 while the engine accepts writes, 503 once it stopped) and, for
    /// load balancers, GET /primary (200 on the node that takes writes: the leader or
    /// a single node) and GET /replica (200 on a follower that knows a live leader);
    /// "off" disables it. Also --metrics-listen [default: 127.0.0.1:9433].
    #[arg(
        long,
        alias = "metrics-listen",
        env = "HINDSIGHT_HTTP_LISTEN",
        value_name = "ADDR|off"
    )]
    pub http_listen: Option<String>,

    /// Arrow Flight SQL listener (ADBC, pyarrow.flight, Flight SQL JDBC): query
    /// results and bulk ingest as Arrow over gRPC, with the same users, TLS
    /// certificate, limits and SQL as the Postgres listener. Off unless given
    /// (e.g. 127.0.0.1:32010); "off" disables it.
    #[arg(long, env = "HINDSIGHT_FLIGHT_LISTEN", value_name = "ADDR|off")]
    pub flight_listen: Option<String>,

    /// This node's id in a replicated cluster (a positive integer, one of --peers).
    /// Needs --peers, or --join.
    #[arg(long, env = "HINDSIGHT_NODE_ID", value_name = "N")]
    pub node_id: Option<u64>,

    /// Join a running cluster as a new node: form nothing, wait until the leader
    /// runs hindsight_add_learner(N, 'this node's --raft-listen'), catch up by
    /// snapshot and log, then hindsight_promote(N) makes it a voter. Needs
    /// --node-id (an id the cluster has never used) and --raft-listen; --peers is
    /// optional (the membership tells it the others' addresses).
    #[arg(long, env = "HINDSIGHT_JOIN", requires = "node_id")]
    pub join: bool,

    /// Run replicated: every voter's Raft address by node id, the same list on every
    /// node, e.g. 1=10.0.0.1:7101,2=10.0.0.2:7101,3=10.0.0.3:7101. On first start the
    /// nodes form the cluster once a majority is reachable; a restart with the same
    /// flags rejoins. Without it the server is a single node. Needs --node-id.
    #[arg(
        long,
        env = "HINDSIGHT_PEERS",
        value_name = "ID=HOST:PORT,...",
        requires = "node_id"
    )]
    pub peers: Option<String>,

    /// Where to serve Raft [default: this node's --peers entry].
    #[arg(long, env = "HINDSIGHT_RAFT_LISTEN", value_name = "ADDR")]
    pub raft_listen: Option<String>,

    /// Bytes of Raft log a cluster member keeps behind its newest snapshot: a
    /// member away for less than this catches up from the log, one away longer by
    /// a snapshot of the data files [default: 1GiB].
    #[arg(long, env = "HINDSIGHT_RAFT_LOG_KEEP", value_name = "BYTES")]
    pub raft_log_keep: Option<String>,

    /// Maximum concurrent client connections; more are refused with SQLSTATE 53300
    /// [default: 100].
    #[arg(long, env = "HINDSIGHT_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Memory one query may use for sorts, joins and aggregations, e.g. 2GiB, 512MiB;
    /// beyond it the query fails with SQLSTATE 53200 [default: 2GiB].
    #[arg(long, env = "HINDSIGHT_QUERY_MEMORY_LIMIT", value_name = "BYTES")]
    pub query_memory_limit: Option<String>,

    /// Default statement timeout for new sessions, e.g. 30s, 500ms; 0 disables
    /// (sessions can SET statement_timeout) [default: 0].
    #[arg(long, env = "HINDSIGHT_STATEMENT_TIMEOUT", value_name = "DURATION")]
    pub statement_timeout: Option<String>,

    /// Close sessions idle outside a transaction this long, e.g. 10min; 0 disables
    /// [default: 0].
    #[arg(long, env = "HINDSIGHT_IDLE_SESSION_TIMEOUT", value_name = "DURATION")]
    pub idle_session_timeout: Option<String>,

    /// On SIGTERM, how long running statements may finish, e.g. 30s; after it they
    /// are ended with SQLSTATE 57P01 and the server exits [default: 30s].
    #[arg(long, env = "HINDSIGHT_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,

    /// WAL durability: "always" (fsync before acknowledging a commit, with group
    /// commit), "every:<ms>" (fsync in the background), or "never" (bulk loads; a
    /// crash loses recent commits) [default: always].
    #[arg(long, env = "HINDSIGHT_FSYNC", value_name = "POLICY")]
    pub fsync: Option<String>,

    /// Threads that run queries: the query runtime's workers, and the partitions
    /// DataFusion splits a query (and an as-of join) into [default: CPU count].
    #[arg(long, env = "HINDSIGHT_QUERY_THREADS", value_name = "N")]
    pub query_threads: Option<usize>,

    /// Threads serving connections: the protocol and point lookups, which take
    /// microseconds [default: half the CPUs, at least 1]. Everything else (planning,
    /// scans, joins, commits, COPY parsing) leaves these threads for the query
    /// threads. Few on purpose: several busy workers are time-sliced by the kernel
    /// against each other and the clients, and the connections queued on a
    /// descheduled one wait out its slice (on 2 CPUs with 16 clients, 3 workers had a
    /// 0.66 ms p99 where 1 had 0.28 ms).
    #[arg(long, env = "HINDSIGHT_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,

    /// A login user as NAME:PASSWORD (SCRAM-SHA-256); repeat for several. Required for
    /// connections from non-loopback addresses.
    #[arg(
        long = "user",
        env = "HINDSIGHT_USERS",
        value_name = "NAME:PASSWORD",
        value_delimiter = ','
    )]
    pub users: Vec<String>,

    /// Require a password from loopback clients too (by default they are trusted).
    #[arg(long, env = "HINDSIGHT_NO_LOOPBACK_TRUST")]
    pub no_loopback_trust: bool,

    /// Serve a non-loopback address without authentication. Dangerous: anyone who can
    /// reach the port can read and write everything.
    #[arg(long, env = "HINDSIGHT_INSECURE_TRUST_REMOTE")]
    pub insecure_trust_remote: bool,

    /// PEM certificate chain for TLS (clients asking for SSL get TLS).
    #[arg(
        long,
        env = "HINDSIGHT_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for TLS.
    #[arg(
        long,
        env = "HINDSIGHT_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Log filter (tracing-subscriber EnvFilter syntax), e.g. info, hindsight_wire=debug
    /// [default: info; RUST_LOG also works].
    #[arg(long, env = "HINDSIGHT_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// Log format: text or json [default: text].
    #[arg(long, env = "HINDSIGHT_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// The TOML file: the same settings, all optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    #[serde(alias = "metrics_listen")]
    http_listen: Option<String>,
    flight_listen: Option<String>,
    cluster: Option<ClusterFile>,
    max_connections: Option<usize>,
    query_memory_limit: Option<String>,
    statement_timeout: Option<String>,
    idle_session_timeout: Option<String>,
    shutdown_grace: Option<String>,
    fsync: Option<String>,
    query_threads: Option<usize>,
    worker_threads: Option<usize>,
    #[serde(default)]
    users: Vec<UserEntry>,
    no_loopback_trust: Option<bool>,
    insecure_trust_remote: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    log: Option<String>,
    log_format: Option<String>,
}

/// `[cluster]` in the TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    node_id: Option<u64>,
    peers: Option<String>,
    raft_listen: Option<String>,
    heartbeat: Option<String>,
    election_timeout: Option<String>,
    commit_timeout: Option<String>,
    raft_log_keep: Option<String>,
}

/// A replicated node's settings (`--node-id`, `--peers`, `[cluster]`).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node_id: u64,
    /// `--join`: a new node waiting to be added by the leader.
    pub join: bool,
    pub peers: BTreeMap<u64, String>,
    pub raft_listen: Option<String>,
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
    pub commit_timeout: Duration,
    pub raft_log_keep: u64,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    password: String,
}

/// The resolved configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub http_listen: Option<SocketAddr>,
    pub flight_listen: Option<SocketAddr>,
    pub cluster: Option<ClusterSettings>,
    pub max_connections: usize,
    pub query_memory_limit: usize,
    pub statement_timeout: Duration,
    pub idle_session_timeout: Option<Duration>,
    pub shutdown_grace: Duration,
    pub sync: hindsight_storage::SyncPolicy,
    pub query_threads: usize,
    pub worker_threads: usize,
    pub users: Vec<(String, String)>,
    pub trust_loopback: bool,
    pub insecure_trust_remote: bool,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub log: String,
    pub log_json: bool,
}

/// Parse a byte size: plain bytes or with KB/MB/GB (powers of 1000) or KiB/MiB/GiB.
pub fn parse_bytes(s: &str) -> Result<usize> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid size \"{s}\""))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        other => bail!("unknown size unit \"{other}\" in \"{s}\""),
    };
    Ok((n * mult) as usize)
}

/// Parse a duration: plain milliseconds or with ms/s/min/h.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid duration \"{s}\""))?;
    Ok(match unit.trim() {
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "min" | "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        other => bail!("unknown duration unit \"{other}\" in \"{s}\""),
    })
}

/// `--node-id`/`--peers` over `[cluster]`; `None` for a single node.
fn resolve_cluster(cli: &Cli, file: ClusterFile) -> Result<Option<ClusterSettings>> {
    let node_id = cli.node_id.or(file.node_id);
    let peers = cli.peers.clone().or(file.peers);
    let raft_listen = cli.raft_listen.clone().or(file.raft_listen);
    let (node_id, mut peers) = match (node_id, peers) {
        (None, None) => return Ok(None),
        (Some(n), Some(p)) => (
            n,
            hindsight_replication::parse_peers(&p).map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        (Some(n), None) if cli.join => (n, BTreeMap::new()),
        (None, Some(_)) => bail!("--peers needs --node-id (this node's id among the peers)"),
        (Some(_), None) => bail!("--node-id needs --peers (every voter's Raft address)"),
    };
    if cli.join && !peers.contains_key(&node_id) {
        let Some(addr) = &raft_listen else {
            bail!("--join needs --raft-listen (the address the leader will reach this node at)");
        };
        peers.insert(node_id, addr.clone());
    }
    if !peers.contains_key(&node_id) {
        bail!(
            "--node-id {node_id} is not among --peers ({})",
            peers
                .keys()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let duration = |v: Option<String>, default: Duration| match v {
        Some(s) => parse_duration(&s),
        None => Ok(default),
    };
    let heartbeat = duration(file.heartbeat, Duration::from_millis(100))?;
    let election_min = duration(file.election_timeout, Duration::from_millis(600))?;
    if election_min <= heartbeat * 3 {
        bail!("[cluster] election_timeout must exceed three heartbeats");
    }
    Ok(Some(ClusterSettings {
        node_id,
        peers,
        raft_listen,
        join: cli.join,
        heartbeat,
        election_timeout: (election_min, election_min * 2),
        commit_timeout: duration(file.commit_timeout, Duration::from_secs(10))?,
        raft_log_keep: match cli.raft_log_keep.clone().or(file.raft_log_keep) {
            Some(s) => parse_bytes(&s)? as u64,
            None => 1 << 30,
        },
    }))
}

/// CPUs this process may use (2 if unknown).
fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Connection workers by default: half the CPUs (one on 2), leaving the rest to
/// clients on the same machine and to the query threads.
fn default_worker_threads() -> usize {
    (cpu_count() / 2).max(1)
}

fn parse_sync(s: &str) -> Result<hindsight_storage::SyncPolicy> {
    use hindsight_storage::SyncPolicy;
    Ok(match s.trim() {
        "always" => SyncPolicy::Always,
        "never" => SyncPolicy::Never,
        other => match other.strip_prefix("every:") {
            Some(ms) => SyncPolicy::EveryMillis(parse_duration(ms)?.as_millis().max(1) as u64),
            None => bail!("invalid fsync policy \"{other}\": use always, every:<ms> or never"),
        },
    })
}

impl Config {
    /// Merge flags and environment (already in `cli`) over the file over defaults.
    pub fn resolve(cli: Cli) -> Result<Config> {
        let file: FileConfig = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let http = cli
            .http_listen
            .clone()
            .or(file.http_listen)
            .unwrap_or_else(|| "127.0.0.1:9433".into());
        let http_listen = if http.eq_ignore_ascii_case("off") {
            None
        } else {
            Some(
                http.parse()
                    .with_context(|| format!("invalid HTTP address \"{http}\""))?,
            )
        };
        let flight_listen = match cli.flight_listen.clone().or(file.flight_listen) {
            Some(a) if a.eq_ignore_ascii_case("off") => None,
            Some(a) => Some(
                a.parse()
                    .with_context(|| format!("invalid Flight address \"{a}\""))?,
            ),
            None => None,
        };
        let cluster = resolve_cluster(&cli, file.cluster.unwrap_or_default())?;
        let mut users = Vec::new();
        for u in &cli.users {
            let (name, password) = u
                .split_once(':')
                .with_context(|| format!("--user expects NAME:PASSWORD, got \"{u}\""))?;
            users.push((name.to_string(), password.to_string()));
        }
        users.extend(file.users.into_iter().map(|u| (u.name, u.password)));
        let statement_timeout = match cli.statement_timeout.or(file.statement_timeout) {
            Some(s) => parse_duration(&s)?,
            None => Duration::ZERO,
        };
        let idle_session_timeout = match cli.idle_session_timeout.or(file.idle_session_timeout) {
            Some(s) => Some(parse_duration(&s)?).filter(|d| !d.is_zero()),
            None => None,
        };
        let shutdown_grace = match cli.shutdown_grace.or(file.shutdown_grace) {
            Some(s) => parse_duration(&s)?,
            None => Duration::from_secs(30),
        };
        let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("TLS needs both a certificate (tls_cert) and a key (tls_key)"),
        };
        let log_format = cli
            .log_format
            .or(file.log_format)
            .unwrap_or_else(|| "text".into());
        let log_json = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => bail!("invalid log format \"{other}\": use text or json"),
        };
        Ok(Config {
            listen: cli
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5433))),
            data_dir: cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("hindsight-data")),
            http_listen,
            flight_listen,
            cluster,
            max_connections: cli.max_connections.or(file.max_connections).unwrap_or(100),
            query_memory_limit: match cli.query_memory_limit.or(file.query_memory_limit) {
                Some(s) => parse_bytes(&s)?,
                None => 2 << 30,
            },
            statement_timeout,
            idle_session_timeout,
            shutdown_grace,
            sync: match cli.fsync.or(file.fsync) {
                Some(s) => parse_sync(&s)?,
                None => hindsight_storage::SyncPolicy::Always,
            },
            query_threads: cli
                .query_threads
                .or(file.query_threads)
                .unwrap_or_else(cpu_count)
                .max(1),
            worker_threads: cli
                .worker_threads
                .or(file.worker_threads)
                .unwrap_or_else(default_worker_threads)
                .max(1),
            users,
            trust_loopback: !(cli.no_loopback_trust || file.no_loopback_trust.unwrap_or(false)),
            insecure_trust_remote: cli.insecure_trust_remote
                || file.insecure_trust_remote.unwrap_or(false),
            tls,
            log: cli
                .log
                .or(file.log)
                .or_else(|| std::env::var("RUST_LOG").ok())
                .unwrap_or_else(|| "info".into()),
            log_json,
        })
    }

    /// Refuse configurations that would expose data without authentication, and a
    /// cluster member that would acknowledge writes before they are durable.
    pub fn check_safety(&self) -> Result<()> {
        if self.cluster.is_some() && self.sync != hindsight_storage::SyncPolicy::Always {
            bail!(
                "a cluster member makes every commit durable on a majority: only --fsync always is allowed with --peers"
            );
        }
        let open = std::iter::once(self.listen).chain(self.flight_listen);
        for addr in open {
            if !addr.ip().is_loopback() && self.users.is_empty() && !self.insecure_trust_remote {
                bail!(
                    "refusing to serve {addr} without authentication: add a user (--user NAME:PASSWORD) \
                     or pass --insecure-trust-remote to allow anyone who can reach the port"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse_with_units() {
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("12 parsecs").is_err());
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("10min").unwrap(), Duration::from_secs(600));
    }

    #[test]
    fn defaults_are_loopback_and_safe() {
        let c = Config::resolve(Cli::default()).unwrap();
        assert!(c.listen.ip().is_loopback());
        assert!(c.trust_loopback);
        assert!(c.check_safety().is_ok());
        assert_eq!(c.worker_threads, (cpu_count() / 2).max(1));
        assert_eq!(c.query_threads, cpu_count());
    }

    #[test]
    fn remote_listen_without_users_is_refused_unless_forced() {
        let cli = Cli {
            listen: Some("0.0.0.0:5433".parse().unwrap()),
            ..Cli::default()
        };
        assert!(Config::resolve(cli).unwrap().check_safety().is_err());
        let cli = Cli {
            listen: Some("0.0.0.0:5433".parse().unwrap()),
            users: vec!["alice:secret".into()],
            ..Cli::default()
        };
        assert!(Config::resolve(cli).unwrap().check_safety().is_ok());
    }

    #[test]
    fn file_settings_apply_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(
            &path,
            "max_connections = 7\nfsync = \"never\"\nworker_threads = 3\n[[users]]\nname = \"a\"\npassword = \"b\"\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            max_connections: Some(9),
            ..Cli::default()
        };
        let c = Config::resolve(cli).unwrap();
        assert_eq!(c.max_connections, 9);
        assert_eq!(c.users, vec![("a".to_string(), "b".to_string())]);
        assert!(matches!(c.sync, hindsight_storage::SyncPolicy::Never));
        assert_eq!(c.worker_threads, 3);
    }

    #[test]
    fn a_joining_node_needs_its_raft_address_and_no_peers() {
        let cli = Cli {
            node_id: Some(4),
            join: true,
            raft_listen: Some("127.0.0.1:7104".into()),
            ..Cli::default()
        };
        let c = Config::resolve(cli).unwrap();
        let cl = c.cluster.as_ref().unwrap();
        assert!(cl.join);
        assert_eq!(cl.peers.get(&4).map(String::as_str), Some("127.0.0.1:7104"));
        let err = Config::resolve(Cli {
            node_id: Some(4),
            join: true,
            ..Cli::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--raft-listen"), "{err}");
    }

    #[test]
    fn cluster_flags_and_file_resolve_and_refuse_half_settings() {
        let cli = Cli {
            node_id: Some(2),
            peers: Some("1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103".into()),
            ..Cli::default()
        };
        let c = Config::resolve(cli).unwrap();
        let cl = c.cluster.as_ref().unwrap();
        assert_eq!((cl.node_id, cl.peers.len()), (2, 3));
        assert_eq!(cl.election_timeout.1, Duration::from_millis(1200));
        assert_eq!(cl.raft_log_keep, 1 << 30);
        assert!(c.check_safety().is_ok());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(
            &path,
            "http_listen = \"off\"\nfsync = \"never\"\n[cluster]\nnode_id = 1\npeers = \"1=h:1,2=h:2,3=h:3\"\ncommit_timeout = \"5s\"\nraft_log_keep = \"64MiB\"\n",
        )
        .unwrap();
        let c = Config::resolve(Cli {
            config: Some(path),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(
            c.cluster.as_ref().unwrap().commit_timeout,
            Duration::from_secs(5)
        );
        assert_eq!(c.cluster.as_ref().unwrap().raft_log_keep, 64 << 20);
        assert!(c.http_listen.is_none());
        assert!(
            c.check_safety().is_err(),
            "fsync never refused in a cluster"
        );

        for (node_id, peers) in [
            (Some(4), Some("1=h:1,2=h:2")),
            (Some(1), None),
            (None, Some("1=h:1")),
        ] {
            let cli = Cli {
                node_id,
                peers: peers.map(str::to_string),
                ..Cli::default()
            };
            assert!(Config::resolve(cli).is_err(), "{node_id:?} {peers:?}");
        }
    }
}
