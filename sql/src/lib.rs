//! hindsight-sql: SQL with time travel over the versioned store.
//!
//! A DataFusion session whose catalog, tables and operators are backed by
//! `hindsight-storage`. The SQL surface is the contract of `../shared/DESIGN.md`:
//! current state (`FROM t`), event-time snapshots (`as_of(t, ts, known_at => ts)`),
//! system-time travel (`FOR SYSTEM_TIME AS OF`), version history (`history(t)`), and
//! point-in-time-correct `ASOF JOIN ... MATCH_CONDITION (...)`, plus DDL, DML and
//! transactions. See ARCHITECTURE.md for how a query flows through the modules.

pub mod asof;
mod catalog;
mod context;
mod copy;
mod ddl;
mod dialect;
mod dml;
mod error;
mod fastpath;
mod literals;
mod offload;
mod params;
mod pgcatalog;
mod pgfuncs;
pub mod pgtext;
pub mod provider;
mod relation;
mod rewrite;
mod session;
mod timeexpr;
mod types;

pub use catalog::{CATALOG, SCHEMA};
pub use copy::CopyIn;
pub use dialect::{HindsightDialect, parse};
pub use dml::normalize as normalize_ident;
pub use error::{ErrorKind, Result, SqlError};
pub use literals::{parse_pg_array, parse_pg_bytea};
pub use pgfuncs::version_string;
pub use session::{
    Collected, DEFAULT_SETTINGS, Engine, EngineOptions, Output, Prepared, Session,
    TransactionStatus, memory_stream, row_count,
};
pub use types::{parse_interval_micros, pg_type_name, storage_type};

/// The SQL AST (sqlparser), for callers that parse with [`parse`].
pub use sqlparser::ast;
