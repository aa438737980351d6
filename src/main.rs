//! The `hindsight` server: configuration, logging, the storage engine, the Postgres
//! protocol listener, the Arrow Flight SQL listener, the metrics endpoint and an
//! orderly shutdown.
//!
//! Shutdown (SIGTERM or SIGINT): a cluster leader first hands leadership to its
//! most caught-up follower; then stop accepting, tell idle sessions 57P01, let running
//! statements finish within the grace period (`--shutdown-grace`; after it they end
//! with 57P01), then make the WAL durable and release the data directory; the
//! process exits 0. A second signal exits at once.

mod config;
mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use hindsight_sql::{Engine, EngineOptions};
use std::time::Duration;

use hindsight_replication::{Cluster, ClusterConfig};
use hindsight_storage::{Db, Options, RoleKind};
use hindsight_wire::tokio_rustls::rustls;
use hindsight_wire::{AuthConfig, Server, WireConfig};
use tokio::net::TcpListener;

use crate::config::{Cli, ClusterSettings, Config};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::resolve(cli).and_then(|c| c.check_safety().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hindsight: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(&config);
    // Two runtimes: a small one serving connections (protocol and point lookups) and
    // one for everything else a statement does; see `WireConfig::query_runtime`.
    let runtimes = runtime(config.worker_threads, "hindsight-worker").and_then(|connections| {
        Ok((
            connections,
            runtime(config.query_threads, "hindsight-query")?,
        ))
    });
    let (runtime, queries) = match runtimes {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hindsight: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let query_runtime = queries.handle().clone();
    match runtime.block_on(run(config, query_runtime)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("hindsight: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime(workers: usize, name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .thread_name(name)
        .build()
}

fn init_logging(config: &Config) {
    // openraft narrates every vote and append at info; keep its warnings only
    // unless the filter names it.
    let mut directives = config.log.clone();
    if !directives.contains("openraft") {
        directives.push_str(",openraft=warn");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<hindsight_wire::tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading TLS key {}", key.display()))?;
    let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("TLS certificate and key do not match")?;
    server.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(hindsight_wire::tokio_rustls::TlsAcceptor::from(Arc::new(
        server,
    )))
}

/// Open the engine; on a cluster member also join the Raft group (the engine is then
/// at the cluster's committed state before any client connects).
async fn open_engine(config: &Config, pg: SocketAddr) -> Result<(Db, Option<Cluster>)> {
    let data_dir = config.data_dir.clone();
    let opts = Options {
        sync: config.sync,
        ..Options::default()
    };
    let replicated = config.cluster.is_some();
    let db = tokio::task::spawn_blocking(move || match replicated {
        true => Db::open_replicated(&data_dir, opts),
        false => Db::open(&data_dir, opts),
    })
    .await
    .context("opening the database")?
    .with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
    let Some(c) = &config.cluster else {
        return Ok((db, None));
    };
    let mut cfg = ClusterConfig::new(c.node_id, c.peers.clone(), advertised_pg(pg, c));
    cfg.raft_listen = c.raft_listen.clone();
    cfg.heartbeat = c.heartbeat;
    (cfg.election_timeout_min, cfg.election_timeout_max) = c.election_timeout;
    cfg.commit_timeout = c.commit_timeout;
    cfg.raft_log_keep = c.raft_log_keep;
    cfg.join = c.join;
    let cluster = Cluster::start(db.clone(), cfg, Duration::from_secs(60))
        .await
        .with_context(|| format!("starting node {} of the cluster", c.node_id))?;
    Ok((db, Some(cluster)))
}

/// The Postgres address other nodes name when they refuse a write: the bound
/// address, or with an unspecified IP (0.0.0.0) this node's Raft host.
fn advertised_pg(pg: SocketAddr, c: &ClusterSettings) -> String {
    let port = pg.port();
    if !pg.ip().is_unspecified() {
        return pg.to_string();
    }
    let host = c
        .peers
        .get(&c.node_id)
        .and_then(|a| a.rsplit_once(':'))
        .map_or("localhost", |(h, _)| h);
    format!("{host}:{port}")
}

/// End the client sessions each time this node stops leading (57P01), so pools
/// reconnect and find the new leader.
fn end_sessions_on_demotion(cluster: &Cluster, shared: Arc<hindsight_wire::Shared>) {
    let mut roles = cluster.role_changes();
    tokio::spawn(async move {
        let mut leading = roles.borrow_and_update().kind == RoleKind::Leader;
        while roles.changed().await.is_ok() {
            let now = roles.borrow_and_update().kind == RoleKind::Leader;
            if leading && !now {
                tracing::info!("no longer the leader: ending client sessions (57P01)");
                shared.end_leader_sessions();
            }
            leading = now;
        }
    });
}

async fn run(config: Config, query_runtime: tokio::runtime::Handle) -> Result<()> {
    // Bound first so a cluster member can name its real Postgres address; clients
    // that connect before the engine is ready wait in the backlog.
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let local = listener.local_addr()?;
    let (db, cluster) = open_engine(&config, local).await?;
    let engine = Engine::new(
        db.clone(),
        EngineOptions {
            query_memory_limit: config.query_memory_limit,
            target_partitions: config.query_threads.max(1),
            ..EngineOptions::default()
        },
    )
    .context("starting the SQL engine")?;
    let mut auth = AuthConfig::loopback_trust();
    auth.trust_loopback = config.trust_loopback;
    auth.trust_remote = config.insecure_trust_remote;
    for (name, password) in &config.users {
        auth.add_user(name, password);
    }
    let tls = match &config.tls {
        Some((cert, key)) => Some(load_tls(cert, key)?),
        None => None,
    };
    let (stopping, stop_rx) = tokio::sync::watch::channel(false);
    let flight = match config.flight_listen {
        Some(addr) => Some(
            start_flight(
                addr,
                engine.clone(),
                &config,
                auth.clone(),
                &query_runtime,
                stop_rx,
            )
            .await?,
        ),
        None => None,
    };
    let server = Server::new(
        engine,
        WireConfig {
            max_connections: config.max_connections,
            auth,
            tls,
            idle_session_timeout: config.idle_session_timeout,
            statement_timeout_ms: config.statement_timeout.as_millis() as u64,
            shutdown_grace: config.shutdown_grace,
            query_runtime: Some(query_runtime),
            ..WireConfig::default()
        },
    );
    if let Some(c) = &cluster {
        end_sessions_on_demotion(c, server.shared());
    }
    if let Some(addr) = config.http_listen {
        let raft = cluster.as_ref().map(Cluster::figures);
        let metrics = http::spawn(addr, server.metrics(), db.clone(), raft)
            .await
            .with_context(|| format!("metrics endpoint on {addr}"))?;
        tracing::info!(addr = %metrics, "metrics endpoint: GET /metrics");
    }
    tracing::info!(
        listen = %local,
        data_dir = %config.data_dir.display(),
        tls = config.tls.is_some(),
        users = config.users.len(),
        "hindsight is ready to accept connections"
    );
    let leaving = db.clone();
    let stop = async move {
        shutdown_signal().await;
        let _ = stopping.send(true);
        hand_off_leadership(&leaving).await;
    };
    server.serve(listener, stop).await?;
    if let Some(flight) = flight {
        stop_flight(flight, config.shutdown_grace).await;
    }
    if let Some(c) = cluster {
        tracing::info!("connections drained; leaving the cluster");
        c.shutdown().await;
    }
    tracing::info!("connections drained; making the WAL durable");
    tokio::task::spawn_blocking(move || db.shutdown())
        .await
        .context("closing the database")?
        .context("closing the database")?;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Start the Arrow Flight SQL listener on `addr`; it stops accepting when `stop`
/// turns true.
async fn start_flight(
    addr: SocketAddr,
    engine: Arc<Engine>,
    config: &Config,
    auth: AuthConfig,
    query_runtime: &tokio::runtime::Handle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("Flight listener on {addr}"))?;
    let local = listener.local_addr()?;
    let tls = match &config.tls {
        Some((cert, key)) => Some((
            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?,
            std::fs::read(key).with_context(|| format!("reading {}", key.display()))?,
        )),
        None => None,
    };
    let flight_config = hindsight_flight::FlightConfig {
        auth,
        tls,
        max_streams: config.max_connections,
        statement_timeout_ms: config.statement_timeout.as_millis() as u64,
        query_runtime: Some(query_runtime.clone()),
        ..hindsight_flight::FlightConfig::default()
    };
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tracing::info!(addr = %local, tls = config.tls.is_some(), "Arrow Flight SQL endpoint");
    Ok(tokio::spawn(async move {
        if let Err(e) = hindsight_flight::serve(engine, flight_config, listener, shutdown).await {
            tracing::error!("Arrow Flight SQL listener stopped: {e}");
        }
    }))
}

/// Wait for the Flight listener's running calls to finish, at most `grace`.
async fn stop_flight(mut flight: tokio::task::JoinHandle<()>, grace: Duration) {
    if tokio::time::timeout(grace, &mut flight).await.is_err() {
        tracing::warn!("Flight calls still running after the shutdown grace: ending them");
        flight.abort();
    }
}

/// On a cluster leader that is told to stop: hand leadership to the most
/// caught-up follower first, so writes move over in about two election timeouts
/// (the sessions here end with 57P01 and reconnect) rather than waiting for an
/// election after this node is gone. Nothing happens elsewhere, or if no follower
/// is reachable (the node then just stops; the others elect a leader).
async fn hand_off_leadership(db: &Db) {
    if db.role().kind != RoleKind::Leader {
        return;
    }
    let target = db
        .members()
        .into_iter()
        .filter(|m| !m.is_self && m.role == "follower")
        .max_by_key(|m| m.matched_index);
    let Some(target) = target else {
        tracing::warn!("stopping the leader with no reachable follower to hand leadership to");
        return;
    };
    let db = db.clone();
    let to = target.node;
    match tokio::task::spawn_blocking(move || db.transfer_leader(to)).await {
        Ok(Ok(said)) => tracing::info!(to, "leadership handed over before stopping: {said}"),
        Ok(Err(e)) => tracing::warn!(to, "could not hand leadership over before stopping: {e}"),
        Err(e) => tracing::warn!(to, "leadership hand-over task failed: {e}"),
    }
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits immediately.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
}
