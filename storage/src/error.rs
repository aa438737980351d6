//! The one error type of the storage crate.
//!
//! Invariants: nothing read from disk is trusted; every malformed byte surfaces as
//! [`Error::Corruption`] naming the file and the offset, never as a panic. Callers
//! above (the SQL and wire crates) map these variants to SQLSTATE codes in one place.

use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system I/O error on a named file or directory.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Bytes on disk do not match what the format promises.
    #[error("corruption in {file} at offset {offset}: {detail}")]
    Corruption {
        file: PathBuf,
        offset: u64,
        detail: String,
    },

    /// The named table is not in the catalog.
    #[error("table \"{0}\" does not exist")]
    NoSuchTable(String),

    /// No table has an index of this name.
    #[error("index \"{0}\" does not exist")]
    NoSuchIndex(String),

    /// The named schema does not exist.
    #[error("schema \"{0}\" does not exist")]
    NoSuchSchema(String),

    /// A schema with this name already exists.
    #[error("schema \"{0}\" already exists")]
    SchemaExists(String),

    /// A schema that still holds relations cannot be dropped.
    #[error(
        "cannot drop schema \"{schema}\" because other objects depend on it (relation \"{relation}\")"
    )]
    SchemaNotEmpty { schema: String, relation: String },

    /// A table with this name already exists.
    #[error("table \"{0}\" already exists")]
    TableExists(String),

    /// The table has no column of this name.
    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    NoSuchColumn { table: String, column: String },

    /// A column with this name already exists in the table.
    #[error("column \"{column}\" of table \"{table}\" already exists")]
    ColumnExists { table: String, column: String },

    /// A table definition that cannot be stored (bad key, bad event-time column, ...).
    #[error("invalid table definition: {0}")]
    InvalidSchema(String),

    /// A value does not fit its column.
    #[error("invalid value for column \"{column}\": {detail}")]
    InvalidValue { column: String, detail: String },

    /// A NULL in a column declared NOT NULL (key and event-time columns always are).
    #[error("null value in column \"{0}\" violates not-null constraint")]
    NullViolation(String),

    /// A read asked for a point in time the engine no longer (or not yet) holds.
    #[error("{0}")]
    OutsideRetention(String),

    /// A caller passed an argument that makes no sense.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A write batch larger than one WAL frame may hold.
    #[error("a write batch of {bytes} bytes exceeds the {limit} byte limit of one batch")]
    BatchTooLarge { bytes: usize, limit: usize },

    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another process")]
    Locked(PathBuf),

    /// A background flush or compaction failed; the engine refuses further writes.
    #[error("the storage engine stopped accepting writes after a background error: {0}")]
    Background(String),

    /// A value the engine itself built could not be serialized, or broke an
    /// invariant its builder promises (a bug, reported instead of writing bad bytes).
    #[error("internal error while encoding {what}: {detail}")]
    Encode { what: &'static str, detail: String },

    /// This node cannot take writes: it is a standby (follower, learner or
    /// candidate) of a replicated cluster, or a leader without quorum contact. The
    /// message names the leader when one is known. Nothing was written.
    #[error("{0}")]
    ReadOnlyReplica(String),

    /// A replicated commit whose outcome is unknown: its entry may have been
    /// appended (and may yet commit) when leadership was lost or time ran out.
    #[error("{0}")]
    OutcomeUnknown(String),

    /// A cluster operation that cannot be done in the cluster's present state
    /// (a leadership transfer whose target did not catch up or take over).
    /// Nothing changed.
    #[error("{0}")]
    ClusterState(String),

    /// The engine is shutting down or closed.
    #[error("the storage engine is closed")]
    Closed,
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A corruption error on `file` at `offset`.
    pub fn corruption(file: impl AsRef<Path>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corruption {
            file: file.as_ref().to_path_buf(),
            offset,
            detail: detail.into(),
        }
    }

    /// An [`Error::Encode`] for `what`.
    pub(crate) fn encode(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Error::Encode {
            what,
            detail: detail.to_string(),
        }
    }

    /// True for errors that mean the bytes on disk are damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

/// A decoding failure inside an in-memory buffer, before the file name and the
/// buffer's position in the file are known. Converted with [`DecodeError::at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub offset: usize,
    pub detail: String,
}

impl DecodeError {
    pub(crate) fn new(offset: usize, detail: impl Into<String>) -> Self {
        DecodeError {
            offset,
            detail: detail.into(),
        }
    }

    /// Attach the file and the offset of the decoded buffer inside that file.
    pub(crate) fn at(self, file: &Path, base: u64) -> Error {
        Error::corruption(file, base + self.offset as u64, self.detail)
    }
}

pub(crate) type DecodeResult<T> = std::result::Result<T, DecodeError>;
