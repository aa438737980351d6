//! The one place where errors become SQLSTATE codes.
//!
//! Every error the server sends goes through [`error_fields`]: SQL-layer errors by
//! their [`ErrorKind`], protocol errors by [`ProtocolError`]. Codes follow PostgreSQL's
//! appendix A so drivers classify them (e.g. psycopg's `UndefinedTable`).

use hindsight_sql::{ErrorKind, SqlError};
use pgwire::messages::response::ErrorResponse;

/// The SQLSTATE of a SQL-layer error kind.
pub fn sqlstate(kind: ErrorKind) -> &'static str {
    use ErrorKind as K;
    match kind {
        K::Syntax => "42601",
        K::UndefinedTable => "42P01",
        K::UndefinedColumn => "42703",
        K::UndefinedFunction => "42883",
        K::UndefinedObject => "42704",
        K::DuplicateTable => "42P07",
        K::DuplicateColumn => "42701",
        K::FeatureNotSupported => "0A000",
        K::InvalidParameterValue => "22023",
        K::InvalidTextRepresentation => "22P02",
        K::InvalidBinaryRepresentation => "22P03",
        K::BadCopyFormat => "22P04",
        K::InvalidDatetimeFormat => "22007",
        K::DatatypeMismatch => "42804",
        K::NotNullViolation => "23502",
        K::UniqueViolation => "23505",
        K::CardinalityViolation => "21000",
        K::DivisionByZero => "22012",
        K::NumericValueOutOfRange => "22003",
        K::DataException => "22000",
        K::TimeTravelOutOfRange => "22008",
        K::ActiveTransaction => "25001",
        K::NoActiveTransaction => "25P01",
        K::InvalidCursorName => "34000",
        K::DuplicateCursor => "42P03",
        K::WrongObjectType => "42809",
        K::InvalidObjectDefinition => "42P17",
        K::DependentObjectsStillExist => "2BP01",
        K::DuplicateSchema => "42P06",
        K::InvalidSchemaName => "3F000",
        K::InvalidTableDefinition => "42P16",
        K::InFailedTransaction => "25P02",
        K::InvalidSavepoint => "3B001",
        K::QueryCanceled => "57014",
        K::ProgramLimitExceeded => "54000",
        K::OutOfMemory => "53200",
        K::DiskFull => "53100",
        K::DataCorrupted => "XX001",
        K::Io => "58030",
        K::ReadOnly => "25006",
        K::CompletionUnknown => "40003",
        K::NotInPrerequisiteState => "55000",
        K::Internal => "XX000",
    }
}

/// An error the protocol layer itself raises.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    Violation(String),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid byte sequence for encoding \"UTF8\"")]
    InvalidUtf8,
    #[error("prepared statement \"{0}\" does not exist")]
    NoSuchStatement(String),
    #[error("prepared statement \"{0}\" already exists")]
    StatementExists(String),
    #[error("portal \"{0}\" does not exist")]
    NoSuchPortal(String),
    #[error("sorry, too many clients already")]
    TooManyConnections,
    #[error("password authentication failed for user \"{0}\"")]
    AuthFailed(String),
    #[error("{0}")]
    AuthRequired(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("terminating connection due to idle-session timeout")]
    IdleTimeout,
    #[error("terminating connection because the server is shutting down")]
    AdminShutdown,
    #[error("terminating connection: this node is no longer the leader")]
    NoLongerLeader,
}

impl ProtocolError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            ProtocolError::Violation(_) => "08P01",
            ProtocolError::TooLarge { .. } => "54000",
            ProtocolError::InvalidUtf8 => "22021",
            ProtocolError::NoSuchStatement(_) => "26000",
            ProtocolError::StatementExists(_) => "42P05",
            ProtocolError::NoSuchPortal(_) => "34000",
            ProtocolError::TooManyConnections => "53300",
            ProtocolError::AuthFailed(_) => "28P01",
            ProtocolError::AuthRequired(_) => "28000",
            ProtocolError::InvalidParameter(_) => "22P02",
            ProtocolError::IdleTimeout => "57P05",
            ProtocolError::AdminShutdown | ProtocolError::NoLongerLeader => "57P01",
        }
    }

    /// Errors after which the connection is closed.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ProtocolError::Violation(_)
                | ProtocolError::TooLarge { .. }
                | ProtocolError::TooManyConnections
                | ProtocolError::AuthFailed(_)
                | ProtocolError::AuthRequired(_)
                | ProtocolError::IdleTimeout
                | ProtocolError::AdminShutdown
                | ProtocolError::NoLongerLeader
        )
    }
}

/// Anything that is reported to a client as an ErrorResponse.
#[derive(Debug, Clone)]
pub enum WireError {
    Sql(SqlError),
    Protocol(ProtocolError),
}

impl From<SqlError> for WireError {
    fn from(e: SqlError) -> Self {
        WireError::Sql(e)
    }
}

impl From<ProtocolError> for WireError {
    fn from(e: ProtocolError) -> Self {
        WireError::Protocol(e)
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Sql(e) => write!(f, "{e}"),
            WireError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl WireError {
    pub fn code(&self) -> &'static str {
        match self {
            WireError::Sql(e) => sqlstate(e.kind),
            WireError::Protocol(p) => p.sqlstate(),
        }
    }

    pub fn is_fatal(&self) -> bool {
        matches!(self, WireError::Protocol(p) if p.is_fatal())
    }

    /// The ErrorResponse fields: severity, code, message, detail and hint.
    pub fn to_response(&self) -> ErrorResponse {
        let severity = if self.is_fatal() { "FATAL" } else { "ERROR" };
        let mut fields = vec![
            (b'S', severity.to_string()),
            (b'V', severity.to_string()),
            (b'C', self.code().to_string()),
            (b'M', self.to_string()),
        ];
        if let WireError::Sql(e) = self {
            if let Some(d) = &e.detail {
                fields.push((b'D', d.clone()));
            }
            if let Some(h) = &e.hint {
                fields.push((b'H', h.clone()));
            }
        }
        ErrorResponse::new(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_table_maps_to_42p01() {
        let e = WireError::from(SqlError::new(ErrorKind::UndefinedTable, "no"));
        assert_eq!(e.code(), "42P01");
        assert!(!e.is_fatal());
    }

    #[test]
    fn connection_limit_is_fatal_53300() {
        let e = WireError::from(ProtocolError::TooManyConnections);
        assert_eq!(e.code(), "53300");
        assert!(e.is_fatal());
        let r = e.to_response();
        assert!(r.fields.iter().any(|(t, v)| *t == b'S' && v == "FATAL"));
    }
}
