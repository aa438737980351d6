//! openraft's state machine over the storage engine.
//!
//! Applying an entry is [`Db::apply_entry`]: Data entries become memtable rows
//! (or no-ops answered `Stale` when numbered under another leadership), Ticks raise
//! the commit clock, Membership entries are kept with the applied position. The
//! engine's applied position survives restarts through its flushed manifest
//! (fields 0x08/0x09), which is what [`applied_state`] reports; openraft then
//! re-applies the committed entries after it.
//!
//! Snapshots are not built or installed yet: the Raft log is never purged, so a
//! member always catches up from the log (see DESIGN in ARCHITECTURE.md).
//!
//! [`applied_state`]: RaftStateMachine::applied_state

use hindsight_storage::{Db, Outcome};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotMeta, StorageError,
};

use crate::error::{ReplError, storage_error};
use crate::logstore::blocking;
use crate::types::{
    NoSnapshot, NodeId, RaftEntry, RaftLogId, Response, Stored, TypeConfig, body_out, log_id_in,
    log_id_out, stored_membership_in, stored_membership_out,
};

/// The engine as openraft's state machine.
#[derive(Clone)]
pub struct StateMachine {
    db: Db,
}

impl StateMachine {
    pub fn new(db: Db) -> StateMachine {
        StateMachine { db }
    }

    fn apply_one(&self, entry: &RaftEntry) -> Result<Response, ReplError> {
        let id = log_id_out(&entry.log_id);
        let body = match &entry.payload {
            // Keep the membership with its log id, as openraft reports it back.
            EntryPayload::Membership(m) => hindsight_storage::raftlog::EntryBody::Membership(
                stored_membership_out(&Stored::new(Some(entry.log_id), m.clone()))?,
            ),
            other => body_out(other)?,
        };
        let outcome = self.db.apply_entry(id, &body)?;
        Ok(match (&entry.payload, outcome) {
            (EntryPayload::Normal(_), Outcome::Applied) => Response::Applied,
            (EntryPayload::Normal(_), Outcome::Stale) => Response::Stale,
            _ => Response::None,
        })
    }
}

fn sm_error(e: &(impl std::error::Error + 'static)) -> StorageError<NodeId> {
    storage_error(ErrorSubject::StateMachine, ErrorVerb::Write, e)
}

fn no_snapshots() -> StorageError<NodeId> {
    sm_error(&ReplError::Raft(
        "snapshots are not supported yet: members catch up from the log".into(),
    ))
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<RaftLogId>, Stored), StorageError<NodeId>> {
        let applied = self.db.applied();
        let membership = match &applied.membership {
            Some(bytes) => stored_membership_in(bytes)
                .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e))?,
            None => Stored::default(),
        };
        Ok((applied.log.as_ref().map(log_id_in), membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = RaftEntry>,
    {
        let entries: Vec<RaftEntry> = entries.into_iter().collect();
        blocking(|| {
            entries
                .iter()
                .map(|e| {
                    self.apply_one(e).map_err(|err| {
                        tracing::error!(index = e.log_id.index, error = %err, "applying a committed entry failed; this node stops");
                        storage_error(ErrorSubject::Apply(e.log_id), ErrorVerb::Write, &err)
                    })
                })
                .collect()
        })
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<NoSnapshot>, StorageError<NodeId>> {
        Err(no_snapshots())
    }

    async fn install_snapshot(
        &mut self,
        _meta: &SnapshotMeta<NodeId, openraft::EmptyNode>,
        _snapshot: Box<NoSnapshot>,
    ) -> Result<(), StorageError<NodeId>> {
        Err(no_snapshots())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(None)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        Err(no_snapshots())
    }
}
