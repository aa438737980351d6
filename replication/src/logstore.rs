//! openraft's log storage over the engine's Raft log (`hindsight_storage::raftlog`).
//!
//! The Raft log is this node's only durable log in replicated mode: an append is
//! one vectored write and one `fdatasync` before openraft hears it is flushed, the
//! vote is durable before `save_vote` returns, and `committed` is persisted (at most every 100 ms) so a
//! restart re-applies the committed entries past the engine's flushed point.
//! File I/O runs on the calling runtime thread under `block_in_place`, so the
//! other Raft tasks (heartbeats, elections) keep their threads.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hindsight_storage::raftlog::RaftLog;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageError};

use crate::error::{ReplError, storage_error};
use crate::types::{
    NodeId, RaftEntry, RaftLogId, RaftVote, TypeConfig, entry_in, entry_out, log_id_in, log_id_out,
    vote_in, vote_out,
};

/// How often at most the committed log id is written (an older one is safe: a
/// restart re-applies less, and the leader re-sends the rest).
const COMMITTED_EVERY: Duration = Duration::from_millis(100);

/// The shared log; openraft holds one handle for writing and clones for reading.
#[derive(Clone)]
pub struct LogStore {
    log: Arc<Mutex<RaftLog>>,
    committed_saved: Arc<Mutex<Option<Instant>>>,
}

impl LogStore {
    pub fn new(log: RaftLog) -> LogStore {
        LogStore {
            log: Arc::new(Mutex::new(log)),
            committed_saved: Arc::new(Mutex::new(None)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RaftLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where to purge up to `upto` keeping `keep` bytes of log after it
    /// (`RaftLog::purge_point`).
    pub fn purge_point(&self, upto: u64, keep: u64) -> Option<u64> {
        self.lock().purge_point(upto, keep)
    }

    /// The index of the last held entry.
    pub fn last_index(&self) -> Option<u64> {
        self.lock().last_log_id().map(|l| l.index)
    }
}

/// Run blocking file I/O from async code without starving the runtime.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn logs_error(verb: ErrorVerb, e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    storage_error(ErrorSubject::Logs, verb, e)
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(i) => i.saturating_add(1),
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<RaftEntry>, StorageError<NodeId>> {
        let (from, to) = bounds(&range);
        let entries = blocking(|| self.lock().entries(from, to))
            .map_err(|e| logs_error(ErrorVerb::Read, &e))?;
        entries
            .into_iter()
            .map(|e| entry_in(e).map_err(|e| logs_error(ErrorVerb::Read, &e)))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let log = self.lock();
        let purged = log.state().purged.as_ref().map(log_id_in);
        let last = log.last_log_id().as_ref().map(log_id_in).or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &RaftVote) -> Result<(), StorageError<NodeId>> {
        let v = vote_out(vote);
        blocking(|| self.lock().save_vote(v))
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<RaftVote>, StorageError<NodeId>> {
        Ok(self.lock().state().vote.as_ref().map(vote_in))
    }

    async fn save_committed(
        &mut self,
        committed: Option<RaftLogId>,
    ) -> Result<(), StorageError<NodeId>> {
        let now = Instant::now();
        {
            let mut saved = self
                .committed_saved
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if saved.is_some_and(|t| now.duration_since(t) < COMMITTED_EVERY) {
                return Ok(());
            }
            *saved = Some(now);
        }
        let c = committed.as_ref().map(log_id_out);
        blocking(|| self.lock().save_committed(c)).map_err(|e| logs_error(ErrorVerb::Write, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<RaftLogId>, StorageError<NodeId>> {
        Ok(self.lock().state().committed.as_ref().map(log_id_in))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = RaftEntry>,
    {
        let stored = entries
            .into_iter()
            .map(|e| entry_out(&e))
            .collect::<Result<Vec<_>, ReplError>>()
            .map_err(|e| logs_error(ErrorVerb::Write, &e))?;
        let r = blocking(|| self.lock().append(&stored));
        match r {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(logs_error(ErrorVerb::Write, &e))
            }
        }
    }

    async fn truncate(&mut self, log_id: RaftLogId) -> Result<(), StorageError<NodeId>> {
        blocking(|| self.lock().truncate(log_id.index))
            .map_err(|e| logs_error(ErrorVerb::Delete, &e))
    }

    async fn purge(&mut self, log_id: RaftLogId) -> Result<(), StorageError<NodeId>> {
        let id = log_id_out(&log_id);
        blocking(|| self.lock().purge(id)).map_err(|e| logs_error(ErrorVerb::Delete, &e))
    }
}
