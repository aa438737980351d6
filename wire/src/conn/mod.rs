//! One client connection: startup and authentication, then the simple and extended
//! query protocols over a [`Session`] of the SQL layer.
//!
//! Invariants:
//! - responses are buffered and flushed once per simple query, Sync or Flush (and when
//!   a large result fills the buffer), so a pipelined Parse/Bind/Execute/Sync costs
//!   one write, like a simple query;
//! - after an error in an extended-protocol message, messages are discarded until
//!   Sync, which answers ReadyForQuery with the transaction's state;
//! - every statement runs under the session's cancel signal and statement timeout;
//!   a canceled statement is 57014 and the connection keeps serving;
//! - portals are streamed: `Execute` with a row limit sends at most that many rows
//!   and keeps the rest for the next `Execute` (PortalSuspended).

mod copy;
mod extended;
mod rows;
mod serve;
mod simple;
mod startup;
mod state;

pub(crate) use state::Connection;
