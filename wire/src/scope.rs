//! What a running statement answers to (a CancelRequest, its statement timeout, the
//! server's shutdown) and where its work runs.
//!
//! Connections are served by a few runtime workers (see `WireConfig::query_runtime`
//! for why). Planning and executing a statement, or fetching a batch of its
//! result, goes through [`Scope::run`]: with a query runtime configured, the
//! connection worker first hands its other connections to another thread
//! (`block_in_place`) and the work is driven on the query runtime from this thread,
//! so what DataFusion spawns (partition tasks, scans) runs on the query runtime's
//! workers and a long statement never stalls the connections queued behind it.
//! Point lookups and precomputed constants stay on the connection worker (a scope
//! without a runtime): they answer in microseconds, less than a hand-over.
//!
//! Invariants: the race against cancel and timeout runs inside the offloaded work,
//! so both still interrupt it; a query runtime is only used from a multi-threaded
//! connection runtime (`block_in_place` is impossible on a current-thread one).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use hindsight_sql::{ErrorKind, SqlError};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::shared::CancelSignal;
use crate::sqlstate::WireError;

/// One statement's cancel signal, deadline and query runtime.
pub(crate) struct Scope {
    pub(crate) cancel: Arc<CancelSignal>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) runtime: Option<Handle>,
}

impl Scope {
    /// Run `fut` (planning or executing a statement, or fetching a result batch)
    /// unless the statement is canceled, times out or the server shuts down first.
    pub(crate) async fn run<T>(
        &self,
        fut: impl Future<Output = Result<T, SqlError>>,
    ) -> Result<T, WireError> {
        let raced = race(&self.cancel, self.deadline, fut);
        match &self.runtime {
            Some(h) => tokio::task::block_in_place(|| h.block_on(raced)),
            None => raced.await,
        }
    }
}

/// The query runtime a connection on the current runtime may use: none on a
/// current-thread runtime.
pub(crate) fn usable_query_runtime(configured: Option<&Handle>) -> Option<Handle> {
    let connections = Handle::try_current().ok()?;
    (connections.runtime_flavor() == RuntimeFlavor::MultiThread)
        .then(|| configured.cloned())
        .flatten()
}

async fn race<T>(
    cancel: &CancelSignal,
    deadline: Option<Instant>,
    fut: impl Future<Output = Result<T, SqlError>>,
) -> Result<T, WireError> {
    let canceled = cancel.notified();
    let timeout = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = fut => r.map_err(WireError::from),
        _ = canceled => Err(cancel.reason()),
        _ = timeout => Err(SqlError::new(ErrorKind::QueryCanceled, "canceling statement due to statement timeout").into()),
    }
}
