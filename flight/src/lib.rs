//! hindsight-flight: Arrow Flight SQL for Hindsight.
//!
//! Training sets leave the database as Arrow, not as Postgres text: the same
//! sessions, SQL surface (every time-travel form) and limits as the Postgres
//! listener, over gRPC with Arrow IPC bodies, so ADBC, pyarrow.flight and Flight SQL
//! JDBC/ODBC drivers read DataFusion's batches as they are produced.
//!
//! Rooms: [`serve`] and [`FlightConfig`] (this file: the listener, TLS, shutdown);
//! `service` (the Flight SQL dispatch); `runner` (slots, timeouts, the query runtime,
//! streaming with back-pressure); `auth` (basic credentials and bearer tokens);
//! `prepared`; `metadata`; `ingest`; `ticket` (the ticket format); `error` (SQLSTATEs
//! as gRPC statuses).
//!
//! Dependencies: `hindsight-sql` for sessions, `hindsight-wire` for the user store
//! and the one SQLSTATE table. Nothing here depends on the Postgres protocol.

mod auth;
mod error;
mod ingest;
mod metadata;
mod prepared;
mod runner;
mod service;
mod ticket;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use hindsight_sql::Engine;
use hindsight_wire::AuthConfig;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use service::HsFlightSql;

/// Settings of the Flight SQL listener.
#[derive(Clone)]
pub struct FlightConfig {
    /// Who may call (the Postgres listener's users and trust policy).
    pub auth: AuthConfig,
    /// PEM certificate chain and private key; None: plaintext.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Requests planning or streaming at once (the Postgres connection limit).
    pub max_streams: usize,
    /// Statement timeout (0: none).
    pub statement_timeout_ms: u64,
    /// Where statements run (see `hindsight_wire::WireConfig::query_runtime`).
    pub query_runtime: Option<tokio::runtime::Handle>,
    /// How long a bearer token from a Handshake stays valid.
    pub token_lifetime: Duration,
    /// Largest message accepted from a client (an ingest's batches are split by
    /// clients below this).
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for FlightConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightConfig")
            .field("auth", &self.auth)
            .field("tls", &self.tls.is_some())
            .field("max_streams", &self.max_streams)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("token_lifetime", &self.token_lifetime)
            .finish()
    }
}

impl Default for FlightConfig {
    fn default() -> Self {
        FlightConfig {
            auth: AuthConfig::loopback_trust(),
            tls: None,
            max_streams: 100,
            statement_timeout_ms: 0,
            query_runtime: None,
            token_lifetime: Duration::from_secs(24 * 3600),
            max_message_bytes: 64 << 20,
        }
    }
}

/// Why the Flight listener could not run.
#[derive(Debug, thiserror::Error)]
pub enum FlightServerError {
    #[error("Flight TLS configuration: {0}")]
    Tls(String),
    #[error("Flight server: {0}")]
    Transport(String),
}

/// Serve Flight SQL on `listener` until `shutdown` resolves; then stop accepting,
/// let running calls finish, and return.
pub async fn serve(
    engine: Arc<Engine>,
    config: FlightConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FlightServerError> {
    let service = HsFlightSql {
        runner: runner::Runner::new(
            engine,
            config.query_runtime.clone(),
            config.statement_timeout_ms,
            config.max_streams,
        ),
        auth: auth::Authenticator::new(config.auth.clone(), config.token_lifetime),
        prepared: prepared::Registry::default(),
    };
    let mut builder = Server::builder();
    if let Some((cert, key)) = &config.tls {
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .map_err(|e| FlightServerError::Tls(e.to_string()))?;
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    builder
        .add_service(
            FlightServiceServer::new(service)
                .max_decoding_message_size(config.max_message_bytes)
                .max_encoding_message_size(usize::MAX),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| FlightServerError::Transport(e.to_string()))
}
