//! The SQL layer's error: a kind (what went wrong, in terms a client can act on),
//! a message, and an optional hint naming the supported spelling.
//!
//! Invariant: every error leaving this crate has a kind; the wire crate maps kinds to
//! SQLSTATE codes in one place. Storage and DataFusion errors are classified here,
//! because this crate knows what they mean.

use std::fmt;

use datafusion::error::DataFusionError;
use hindsight_storage::Error as StorageError;

/// What kind of failure an error is (mapped to SQLSTATE by the wire crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Syntax,
    UndefinedTable,
    UndefinedColumn,
    UndefinedFunction,
    UndefinedObject,
    DuplicateTable,
    DuplicateColumn,
    /// CREATE SCHEMA of a name taken (42P06).
    DuplicateSchema,
    /// A table definition PostgreSQL refuses (42P16).
    InvalidTableDefinition,
    /// A schema that does not exist (3F000).
    InvalidSchemaName,
    FeatureNotSupported,
    InvalidParameterValue,
    InvalidTextRepresentation,
    /// A binary value of the wrong length or layout (22P03).
    InvalidBinaryRepresentation,
    /// A malformed COPY stream: bad signature, truncated tuple, wrong field count (22P04).
    BadCopyFormat,
    InvalidDatetimeFormat,
    DatatypeMismatch,
    NotNullViolation,
    UniqueViolation,
    CardinalityViolation,
    DivisionByZero,
    NumericValueOutOfRange,
    DataException,
    /// Time travel outside retained history or into the future.
    TimeTravelOutOfRange,
    ActiveTransaction,
    NoActiveTransaction,
    InFailedTransaction,
    /// `RELEASE` / `ROLLBACK TO` a savepoint that does not exist.
    InvalidSavepoint,
    /// FETCH or CLOSE of a cursor that is not open (34000).
    InvalidCursorName,
    /// DECLARE of a cursor name already open (42P03).
    DuplicateCursor,
    /// A statement for one kind of relation applied to another (42809).
    WrongObjectType,
    /// A view that cannot be defined or expanded (42P17).
    InvalidObjectDefinition,
    /// DROP of a relation that views still read, without CASCADE (2BP01).
    DependentObjectsStillExist,
    QueryCanceled,
    /// A statement exceeds an implementation limit (the size of one write batch).
    ProgramLimitExceeded,
    OutOfMemory,
    DiskFull,
    DataCorrupted,
    Io,
    ReadOnly,
    /// A commit whose outcome is unknown (replicated mode, SQLSTATE 40003).
    CompletionUnknown,
    /// A cluster operation refused in the cluster's present state (55000).
    NotInPrerequisiteState,
    Internal,
}

/// An error of the SQL layer.
#[derive(Clone, Debug)]
pub struct SqlError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    pub detail: Option<String>,
}

/// Result alias of this crate.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

impl SqlError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SqlError {
            kind,
            message: message.into(),
            hint: None,
            detail: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Syntax, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FeatureNotSupported, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Carry this error through DataFusion (which only knows its own error type).
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqlError {}

impl From<StorageError> for SqlError {
    fn from(e: StorageError) -> Self {
        from_storage(&e)
    }
}

/// Classify a storage error (by reference: errors can arrive shared).
fn from_storage(e: &StorageError) -> SqlError {
    let kind = match e {
        StorageError::NoSuchTable(_) => ErrorKind::UndefinedTable,
        StorageError::NoSuchIndex(_) => ErrorKind::UndefinedObject,
        StorageError::TableExists(_) => ErrorKind::DuplicateTable,
        StorageError::NoSuchSchema(_) => ErrorKind::InvalidSchemaName,
        StorageError::SchemaExists(_) => ErrorKind::DuplicateSchema,
        StorageError::SchemaNotEmpty { .. } => ErrorKind::DependentObjectsStillExist,
        StorageError::ColumnExists { .. } => ErrorKind::DuplicateColumn,
        StorageError::NoSuchColumn { .. } => ErrorKind::UndefinedColumn,
        StorageError::InvalidSchema(_) => ErrorKind::InvalidParameterValue,
        StorageError::InvalidValue { .. } => ErrorKind::DatatypeMismatch,
        StorageError::NullViolation(_) => ErrorKind::NotNullViolation,
        StorageError::OutsideRetention(_) => ErrorKind::TimeTravelOutOfRange,
        StorageError::InvalidArgument(_) => ErrorKind::InvalidParameterValue,
        StorageError::BatchTooLarge { .. } => ErrorKind::ProgramLimitExceeded,
        StorageError::Corruption { .. } => ErrorKind::DataCorrupted,
        StorageError::Io { source, .. } if source.raw_os_error() == Some(28) => ErrorKind::DiskFull,
        StorageError::Io { .. } => ErrorKind::Io,
        StorageError::Background(_) => ErrorKind::ReadOnly,
        StorageError::Closed => ErrorKind::ReadOnly,
        StorageError::ReadOnlyReplica(_) => ErrorKind::ReadOnly,
        StorageError::OutcomeUnknown(_) => ErrorKind::CompletionUnknown,
        StorageError::ClusterState(_) => ErrorKind::NotInPrerequisiteState,
        StorageError::Locked(_) => ErrorKind::Io,
        StorageError::Encode { .. } => ErrorKind::Internal,
    };
    let message = match e {
        StorageError::NoSuchTable(t) => format!("relation \"{t}\" does not exist"),
        StorageError::TableExists(t) => format!("relation \"{t}\" already exists"),
        StorageError::SchemaNotEmpty { schema, .. } => {
            format!("cannot drop schema {schema} because other objects depend on it")
        }
        other => other.to_string(),
    };
    let err = SqlError::new(kind, message);
    match e {
        StorageError::BatchTooLarge { .. } => {
            err.with_hint("one statement or COPY is one atomic batch: split the load into several")
        }
        StorageError::SchemaNotEmpty { relation, .. } => err
            .with_detail(format!("relation {relation} is in the schema"))
            .with_hint("Use DROP ... CASCADE to drop the dependent objects too."),
        _ => err,
    }
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        classify(&e)
    }
}

impl From<sqlparser::parser::ParserError> for SqlError {
    fn from(e: sqlparser::parser::ParserError) -> Self {
        let msg = match e {
            sqlparser::parser::ParserError::ParserError(m)
            | sqlparser::parser::ParserError::TokenizerError(m) => m,
            sqlparser::parser::ParserError::RecursionLimitExceeded => {
                "statement is too deeply nested".into()
            }
        };
        SqlError::syntax(format!("syntax error: {msg}"))
    }
}

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        classify(&DataFusionError::ArrowError(Box::new(e), None))
    }
}

/// A boxed error from inside DataFusion: ours, storage's, or something else.
fn classify_external(inner: &(dyn std::error::Error + Send + Sync + 'static)) -> SqlError {
    if let Some(s) = inner.downcast_ref::<SqlError>() {
        return s.clone();
    }
    if let Some(s) = inner.downcast_ref::<StorageError>() {
        return from_storage(s);
    }
    if let Some(d) = inner.downcast_ref::<DataFusionError>() {
        return classify(d);
    }
    SqlError::internal(inner.to_string())
}

/// Map a DataFusion error (possibly wrapping ours or storage's) to a kind.
fn classify(e: &DataFusionError) -> SqlError {
    use datafusion::arrow::error::ArrowError;
    use datafusion::common::SchemaError;
    match e {
        DataFusionError::External(inner) => classify_external(inner.as_ref()),
        DataFusionError::Context(ctx, inner) => {
            let mut e = classify(inner);
            if e.kind == ErrorKind::Internal {
                e.message = format!("{ctx}: {}", e.message);
            }
            e
        }
        DataFusionError::Diagnostic(_, inner) => classify(inner),
        DataFusionError::Collection(errors) if !errors.is_empty() => classify(&errors[0]),
        DataFusionError::Shared(inner) => classify(inner),
        DataFusionError::SQL(p, _) => SqlError::from(p.as_ref().clone()),
        DataFusionError::NotImplemented(m) => SqlError::unsupported(strip(m)),
        DataFusionError::ResourcesExhausted(m) => SqlError::new(
            ErrorKind::OutOfMemory,
            format!("out of memory: {}", strip(m)),
        )
        .with_hint("raise the per-query memory limit or reduce the query's working set"),
        DataFusionError::SchemaError(se, _) => {
            let kind = match se.as_ref() {
                SchemaError::FieldNotFound { .. } => ErrorKind::UndefinedColumn,
                SchemaError::DuplicateQualifiedField { .. }
                | SchemaError::DuplicateUnqualifiedField { .. } => ErrorKind::DuplicateColumn,
                SchemaError::AmbiguousReference { .. } => ErrorKind::UndefinedColumn,
            };
            let msg = match se.as_ref() {
                SchemaError::FieldNotFound { field, .. } => {
                    format!("column \"{}\" does not exist", field.name)
                }
                other => other.to_string(),
            };
            SqlError::new(kind, msg)
        }
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::DivideByZero => {
                SqlError::new(ErrorKind::DivisionByZero, "division by zero")
            }
            ArrowError::CastError(m) | ArrowError::ParseError(m) => bad_input(m),
            ArrowError::ComputeError(m) if m.contains("Overflow") || m.contains("overflow") => {
                SqlError::new(ErrorKind::NumericValueOutOfRange, m.clone())
            }
            ArrowError::ExternalError(inner) => classify_external(inner.as_ref()),
            other => SqlError::new(ErrorKind::DataException, other.to_string()),
        },
        DataFusionError::Plan(m) => plan_error(m),
        DataFusionError::Execution(m) => {
            let m = strip(m);
            if m.contains("Cannot cast") || m.contains("cast") || m.contains("Error parsing") {
                bad_input(&m)
            } else if m.contains("Divide by zero") || m.contains("division by zero") {
                SqlError::new(ErrorKind::DivisionByZero, "division by zero")
            } else {
                SqlError::new(ErrorKind::DataException, m)
            }
        }
        other => {
            let e = plan_error(&other.to_string());
            if e.kind == ErrorKind::Syntax {
                SqlError::internal(other.to_string())
            } else {
                e
            }
        }
    }
}

fn plan_error(m: &str) -> SqlError {
    let m = strip(m);
    if let Some(rest) = m
        .strip_prefix("table '")
        .or_else(|| m.split("table '").nth(1))
        && let Some(name) = rest.split('\'').next()
        && m.contains("not found")
    {
        let name = name.rsplit('.').next().unwrap_or(name);
        return SqlError::new(
            ErrorKind::UndefinedTable,
            format!("relation \"{name}\" does not exist"),
        );
    }
    if let Some(name) = m
        .strip_prefix("Invalid function '")
        .and_then(|r| r.split('\'').next())
    {
        return SqlError::new(
            ErrorKind::UndefinedFunction,
            format!("function {name} does not exist"),
        )
        .with_hint("No function matches the given name and argument types. You might need to add explicit type casts.");
    }
    if m.contains("function") && m.contains("not found") {
        return SqlError::new(ErrorKind::UndefinedFunction, m);
    }
    if m.contains("No field named") {
        return SqlError::new(ErrorKind::UndefinedColumn, m);
    }
    if m.contains("Cannot infer common")
        || m.contains("type coercion")
        || m.contains("does not support")
    {
        return SqlError::new(ErrorKind::DatatypeMismatch, m);
    }
    SqlError::syntax(m)
}

/// A value that does not parse as its type, in PostgreSQL's words where the
/// message names the value and type (`invalid input syntax for type bigint: "abc"`).
fn bad_input(m: &str) -> SqlError {
    let quoted = |s: &str| s.split('\'').nth(1).map(str::to_string);
    // "Cannot cast string 'abc' to value of Int64 type", "Cannot cast value 'x' to
    // value of Boolean type"
    if let Some(rest) = m.strip_prefix("Cannot cast ")
        && let Some(value) = quoted(rest)
        && let Some(ty) = rest
            .rsplit("to value of ")
            .next()
            .and_then(|t| t.strip_suffix(" type"))
            .and_then(|t| t.parse::<datafusion::arrow::datatypes::DataType>().ok())
    {
        return SqlError::new(
            ErrorKind::InvalidTextRepresentation,
            format!(
                "invalid input syntax for type {}: \"{value}\"",
                crate::types::arrow_pg_type_name(&ty)
            ),
        );
    }
    // "Error parsing timestamp from 'x': ..."
    if let Some(rest) = m.strip_prefix("Error parsing timestamp from ")
        && let Some(value) = quoted(rest)
    {
        return SqlError::new(
            ErrorKind::InvalidDatetimeFormat,
            format!("invalid input syntax for type timestamp with time zone: \"{value}\""),
        );
    }
    SqlError::new(ErrorKind::InvalidTextRepresentation, m.to_string())
}

/// Drop DataFusion's "Error during planning: " style prefixes.
fn strip(m: &str) -> String {
    m.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_and_datafusion_errors_get_kinds() {
        let e: SqlError = StorageError::NoSuchTable("t".into()).into();
        assert_eq!(e.kind, ErrorKind::UndefinedTable);
        assert_eq!(e.message, "relation \"t\" does not exist");
        let e: SqlError =
            DataFusionError::Plan("table 'hindsight.public.nope' not found".into()).into();
        assert_eq!(e.kind, ErrorKind::UndefinedTable);
        assert_eq!(e.message, "relation \"nope\" does not exist");
        let wrapped = SqlError::unsupported("x").with_hint("y").into_datafusion();
        let back: SqlError = DataFusionError::Context("ctx".into(), Box::new(wrapped)).into();
        assert_eq!(back.kind, ErrorKind::FeatureNotSupported);
        assert_eq!(back.hint.as_deref(), Some("y"));
        let e: SqlError = StorageError::BatchTooLarge {
            bytes: 2 << 30,
            limit: 1 << 30,
        }
        .into();
        assert_eq!(e.kind, ErrorKind::ProgramLimitExceeded);
        assert!(e.message.contains("2147483648 bytes"), "{}", e.message);
        assert!(e.hint.is_some_and(|h| h.contains("split")));
    }
}
