//! The replication crate's errors, and their mapping onto openraft's storage
//! errors (whose detail survives as text).

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};

use crate::types::NodeId;

#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error(transparent)]
    Storage(#[from] hindsight_storage::Error),
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("corrupt replication state: {0}")]
    Corrupt(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("cluster configuration: {0}")]
    Config(String),
    #[error("raft: {0}")]
    Raft(String),
}

pub type ReplResult<T> = std::result::Result<T, ReplError>;

impl ReplError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ReplError {
        ReplError::Io {
            context: context.into(),
            source,
        }
    }
}

/// An openraft storage error about `subject`, carrying `e`'s text.
pub(crate) fn storage_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: &(impl std::error::Error + 'static),
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}
