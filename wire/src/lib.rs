//! hindsight-wire: the Postgres wire protocol in front of the SQL layer.
//!
//! Built on the `pgwire` crate's message types, TLS negotiation and SCRAM state
//! machine; the connection loop, flushing policy, type encoding, COPY and limits are
//! Hindsight's own (see ARCHITECTURE.md, "Wire protocol", for why).
//!
//! Modules, each importing only from those listed after it: [`server`] (listener,
//! connection limit, shutdown), `conn` (one connection: `startup`, `simple` and
//! `extended` query, `rows` encoding, `copy` over the protocol), `scope` (where a
//! statement runs, what interrupts it), `shared` (what the listener and the
//! connections share: cancel routing, connection slots), `config` ([`WireConfig`]),
//! `copy` (COPY statements and the text/CSV record codecs), `codec` (framing and
//! frame checks), [`types`] (OIDs and value encodings), `named` (statement and portal
//! maps), `cursor` (the bounds-checked byte reader), [`auth`] (policy and SCRAM
//! users), [`metrics`], [`sqlstate`] (the one place errors become SQLSTATE codes).

pub mod auth;
mod codec;
mod config;
mod conn;
mod copy;
mod cursor;
pub mod metrics;
mod named;
mod scope;
pub mod server;
mod shared;
pub mod sqlstate;
pub mod types;

pub use auth::AuthConfig;
pub use metrics::{Metrics, write_header, write_metric};
pub use server::{Server, Shared, WireConfig};

/// TLS configuration types (rustls, as pgwire uses it).
pub use pgwire::tokio::tokio_rustls;
