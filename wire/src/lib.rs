//! hindsight-wire: the Postgres wire protocol in front of the SQL layer.
//!
//! Built on the `pgwire` crate's message types, TLS negotiation and SCRAM state
//! machine; the connection loop, flushing policy, type encoding, COPY and limits are
//! Hindsight's own (see ARCHITECTURE.md, "Wire protocol", for why).
//!
//! Modules: [`server`] (listener, connection limit, cancel routing, shutdown),
//! `conn` (one connection: startup, auth, simple and extended query), `codec`
//! (framing and frame checks), [`types`] (OIDs and value encodings), `copy` (COPY in
//! text and CSV), [`auth`] (policy and SCRAM users), [`metrics`], [`sqlstate`] (the
//! one place errors become SQLSTATE codes).

pub mod auth;
mod codec;
mod conn;
mod copy;
pub mod metrics;
mod named;
mod scope;
pub mod server;
pub mod sqlstate;
pub mod types;

pub use auth::AuthConfig;
pub use metrics::Metrics;
pub use server::{Server, WireConfig};

/// TLS configuration types (rustls, as pgwire uses it).
pub use pgwire::tokio::tokio_rustls;
