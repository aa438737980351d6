//! Sessions: one per client connection. A session parses, plans and runs statements
//! against the shared [`Engine`], and holds the connection's transaction and settings.
//!
//! Statement flow: parse (Hindsight dialect) -> AST rewrites (ASOF JOIN markers) ->
//! one of: DDL and transaction control (handled here), DML (planned by DataFusion, whose
//! DML input plan is executed and written as new versions), or a query (planned by
//! DataFusion with Hindsight's catalog, relation planner and as-of operator).
//!
//! Transactions: `BEGIN` opens a write batch; writes append to it and reads see it
//! through a storage overlay (read-your-writes); `COMMIT` writes it atomically;
//! `ROLLBACK` drops it. After an error inside a transaction, every statement but
//! `ROLLBACK`/`COMMIT` fails until the block ends (PostgreSQL behaviour). DDL is
//! part of the transaction: it commits and rolls back with it.
//!
//! Rooms: this file (the session, statement dispatch, planning helpers);
//! `engine` (what sessions share); `prepared` (prepare/execute, point lookups);
//! `transaction` (blocks, savepoints, writes); `set` (settings); and the statement
//! executors that write: `dml` (INSERT/UPDATE/DELETE), `ddl` (CREATE TABLE),
//! `alter` (DROP, ALTER TABLE), `index`, `view` (CREATE VIEW), `schema` (CREATE/DROP
//! SCHEMA), `temp` (temporary tables), `copy` (COPY FROM), `ingest` (Arrow batches,
//! for Flight SQL's bulk ingest).

mod alter;
mod copy;
mod cursor;
mod ddl;
mod dml;
mod engine;
mod execute;
mod index;
mod ingest;
mod lsn;
mod prepared;
mod schema;
mod set;
mod state;
mod temp;
mod transaction;
mod view;

pub use copy::CopyIn;
pub use engine::{Engine, EngineOptions};
pub use ingest::Ingest;
pub use lsn::WAIT_FUNCTION;
pub use prepared::Prepared;
pub use state::Session;
pub use transaction::TransactionStatus;
