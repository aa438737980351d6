//! hindsight-sql: SQL with time travel over the versioned store.
//!
//! A DataFusion session whose catalog, tables and operators are backed by
//! `hindsight-storage`. The SQL surface is the contract of `../shared/DESIGN.md`:
//! current state (`FROM t`), event-time snapshots (`as_of(t, ts, known_at => ts)`),
//! system-time travel (`FOR SYSTEM_TIME AS OF`), version history (`history(t)`), and
//! point-in-time-correct `ASOF JOIN ... MATCH_CONDITION (...)`, plus DDL, DML and
//! transactions. See ARCHITECTURE.md for how a query flows through the modules.

// Floors, each importing only from the ones above it in this list:
// leaves (error, ident, settings, output, offload, dialect, types), then `plan`
// (planning and time travel), then `pg` (Postgres compatibility), then `session`
// (statement execution, with the writes: dml, ddl, copy).
mod dialect;
mod error;
mod ident;
mod offload;
mod output;
mod settings;
mod types;

pub mod plan;

pub mod pg;

mod session;

pub use dialect::{HindsightDialect, parse};
pub use error::{ErrorKind, Result, SqlError};
pub use ident::normalize as normalize_ident;
pub use output::{Collected, Output, memory_stream, row_count};
pub use pg::functions::version_string;
pub use pg::literals::{parse_pg_array, parse_pg_bytea};
pub use pg::text as pgtext;
pub use plan::catalog::{CATALOG, SCHEMA};
pub use plan::{asof, provider};
pub use session::{CopyIn, Ingest};
pub use session::{Engine, EngineOptions, Prepared, Session, TransactionStatus};
pub use settings::DEFAULT_SETTINGS;
pub use types::{
    arrow_pg_type_name, parse_interval_micros, pg_type_name, storage_type, storage_type_of_arrow,
};

/// The SQL AST (sqlparser), for callers that parse with [`parse`].
pub use sqlparser::ast;
