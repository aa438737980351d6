//! The protocol server's settings ([`WireConfig`]): limits, authentication, TLS,
//! timeouts, shutdown grace and where statements run. A leaf module.

use std::time::Duration;

use crate::auth::AuthConfig;

/// Settings of the protocol server.
#[derive(Clone)]
pub struct WireConfig {
    pub max_connections: usize,
    /// Largest protocol message accepted (bytes); larger ones end the connection.
    pub max_message_bytes: usize,
    pub auth: AuthConfig,
    pub tls: Option<pgwire::tokio::TlsAcceptor>,
    /// Close sessions idle (outside a transaction) this long; None: never.
    pub idle_session_timeout: Option<Duration>,
    /// Statement timeout applied to new sessions (0: none).
    pub statement_timeout_ms: u64,
    /// How long busy connections may run after shutdown was signalled.
    pub shutdown_grace: Duration,
    /// Where statements other than point lookups are planned and executed. The
    /// connections' own runtime is kept small (on 2 CPUs one worker: several workers
    /// that never wait are time-sliced by the kernel against the clients, and the
    /// connections queued on a descheduled worker wait out its slice, which was the
    /// p99 of busy lookups); this one gets the cores for queries. None: statements
    /// run on the connection's runtime (tests, embedding).
    pub query_runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for WireConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireConfig")
            .field("max_connections", &self.max_connections)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("auth", &self.auth)
            .field("tls", &self.tls.is_some())
            .field("idle_session_timeout", &self.idle_session_timeout)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("query_runtime", &self.query_runtime.is_some())
            .finish()
    }
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig {
            max_connections: 100,
            max_message_bytes: 64 << 20,
            auth: AuthConfig::loopback_trust(),
            tls: None,
            idle_session_timeout: None,
            statement_timeout_ms: 0,
            shutdown_grace: Duration::from_secs(30),
            query_runtime: None,
        }
    }
}
