//! The `hindsight` server: configuration, logging, the storage engine, the Postgres
//! protocol listener, the metrics endpoint and an orderly shutdown.
//!
//! Shutdown (SIGTERM or SIGINT): stop accepting, tell idle sessions 57P01, let running
//! statements finish within the grace period (`--shutdown-grace`; after it they end
//! with 57P01), then make the WAL durable and release the data directory; the
//! process exits 0. A second signal exits at once.

mod config;
mod http;

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use hindsight_sql::{Engine, EngineOptions};
use hindsight_storage::{Db, Options};
use hindsight_wire::tokio_rustls::rustls;
use hindsight_wire::{AuthConfig, Server, WireConfig};
use tokio::net::TcpListener;

use crate::config::{Cli, Config};

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
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
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

async fn run(config: Config, query_runtime: tokio::runtime::Handle) -> Result<()> {
    let data_dir = config.data_dir.clone();
    let sync = config.sync;
    let db = tokio::task::spawn_blocking(move || {
        Db::open(
            &data_dir,
            Options {
                sync,
                ..Options::default()
            },
        )
    })
    .await
    .context("opening the database")?
    .with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
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
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let local = listener.local_addr()?;
    if let Some(addr) = config.metrics_listen {
        let metrics = http::spawn(addr, server.metrics(), db.clone())
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
    server.serve(listener, shutdown_signal()).await?;
    tracing::info!("connections drained; making the WAL durable");
    tokio::task::spawn_blocking(move || db.shutdown())
        .await
        .context("closing the database")?
        .context("closing the database")?;
    tracing::info!("shutdown complete");
    Ok(())
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
