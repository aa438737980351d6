//! SQL-layer errors as gRPC statuses: the gRPC code a Flight client branches on,
//! and the message with the same SQLSTATE the Postgres listener would send (also in
//! the `x-sqlstate` trailer), from the one SQLSTATE table in `hindsight-wire`.

use hindsight_sql::{ErrorKind, SqlError};
use hindsight_wire::sqlstate::sqlstate;
use tonic::{Code, Status};

/// The status for a SQL-layer error.
pub(crate) fn status(e: SqlError) -> Status {
    let state = sqlstate(e.kind);
    let mut s = Status::new(code(e.kind), format!("{} (SQLSTATE {state})", e.message));
    if let Ok(v) = state.parse() {
        s.metadata_mut().insert("x-sqlstate", v);
    }
    s
}

/// An Arrow error (encoding a schema or building a metadata batch).
pub(crate) fn arrow(e: datafusion::arrow::error::ArrowError) -> Status {
    status(SqlError::from(e))
}

/// A statement that ran past its statement timeout.
pub(crate) fn timeout() -> Status {
    status(SqlError::new(
        ErrorKind::QueryCanceled,
        "canceling statement due to statement timeout",
    ))
}

fn code(kind: ErrorKind) -> Code {
    use ErrorKind as K;
    match kind {
        K::UndefinedTable | K::UndefinedObject | K::InvalidSchemaName | K::InvalidCursorName => {
            Code::NotFound
        }
        K::DuplicateTable | K::DuplicateColumn | K::DuplicateSchema | K::DuplicateCursor => {
            Code::AlreadyExists
        }
        K::FeatureNotSupported => Code::Unimplemented,
        K::QueryCanceled => Code::Cancelled,
        K::OutOfMemory | K::DiskFull | K::ProgramLimitExceeded => Code::ResourceExhausted,
        K::ReadOnly
        | K::ActiveTransaction
        | K::NoActiveTransaction
        | K::InFailedTransaction
        | K::NotInPrerequisiteState
        | K::DependentObjectsStillExist => Code::FailedPrecondition,
        K::CompletionUnknown => Code::Unavailable,
        K::DataCorrupted | K::Io | K::Internal => Code::Internal,
        _ => Code::InvalidArgument,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_sqlstates() {
        let s = status(SqlError::new(
            ErrorKind::UndefinedTable,
            "relation \"x\" does not exist",
        ));
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("42P01"), "{}", s.message());
        assert_eq!(s.metadata().get("x-sqlstate").unwrap(), "42P01");
        assert_eq!(timeout().code(), Code::Cancelled);
        assert_eq!(
            status(SqlError::syntax("bad")).code(),
            Code::InvalidArgument
        );
    }
}
