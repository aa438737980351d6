//! openraft's state machine over the storage engine.
//!
//! Applying an entry is [`Db::apply_entry`]: Data entries become memtable rows
//! (or no-ops answered `Stale` when numbered under another leadership), Ticks raise
//! the commit clock, Membership entries are kept with the applied position. The
//! engine's applied position survives restarts through its flushed manifest
//! (fields 0x08/0x09), which is what [`applied_state`] reports; openraft then
//! re-applies the committed entries after it.
//!
//! A snapshot is the engine's flushed state as a checkpoint ([`SnapshotStore`]):
//! building one links the flushed files (no apply waits for it); installing one
//! (from the leader, when this member's log is behind the leader's purge point)
//! replaces the engine's whole state with it.
//!
//! [`applied_state`]: RaftStateMachine::applied_state

use std::sync::Arc;

use hindsight_storage::{Db, Outcome};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotMeta, StorageError,
};

use crate::error::{ReplError, storage_error};
use crate::logstore::blocking;
use crate::snapshot::{SnapshotDir, SnapshotStore};
use crate::types::{
    NodeId, RaftEntry, RaftLogId, Response, Stored, TypeConfig, body_out, log_id_in, log_id_out,
    stored_membership_in, stored_membership_out,
};

/// The engine as openraft's state machine.
#[derive(Clone)]
pub struct StateMachine {
    db: Db,
    snapshots: Arc<SnapshotStore>,
}

impl StateMachine {
    pub fn new(db: Db, snapshots: Arc<SnapshotStore>) -> StateMachine {
        StateMachine { db, snapshots }
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotDir>, StorageError<NodeId>> {
        // Only openraft's chunked transfer calls this; ours stages files itself
        // (transport) and hands a complete directory to `install_full_snapshot`.
        Err(sm_error(&ReplError::Raft(
            "snapshots arrive whole through the transport, not in openraft chunks".into(),
        )))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, crate::types::NodeInfo>,
        snapshot: Box<SnapshotDir>,
    ) -> Result<(), StorageError<NodeId>> {
        let r = blocking(|| -> Result<(), ReplError> {
            let info = self.db.install_checkpoint(&snapshot.dir)?;
            self.snapshots.installed(meta, &snapshot)?;
            tracing::info!(
                snapshot = %meta.snapshot_id,
                seq = info.last_seq,
                bytes = info.bytes(),
                "raft snapshot installed"
            );
            Ok(())
        });
        r.map_err(|e| {
            tracing::error!(snapshot = %meta.snapshot_id, error = %e, "installing a snapshot failed; this node stops");
            storage_error(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Write, &e)
        })
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.snapshots.current().map(|(meta, dir)| Snapshot {
            meta,
            snapshot: Box::new(dir),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, dir) = blocking(|| self.snapshots.build(&self.db))
            .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(dir),
        })
    }
}
