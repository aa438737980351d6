//! Replicated mode: the engine without its own WAL, fed by a consensus log.
//!
//! The consensus layer (the `hindsight-replication` crate) owns the durable log. A
//! commit group is staged exactly as in single-node mode (validated against the
//! applied catalog, numbered from the applied `last_seq`, encoded), then handed to
//! the [`Replicate`] hook, which appends it to the replicated log and returns once
//! the entry has been applied here through [`Db::apply_entry`]. Followers apply the
//! same entries in the same order; nothing else writes their memtables.
//!
//! Invariants:
//! - Apply is deterministic: no clock reads and no node-dependent checks; every
//!   time, id and sequence is in the entry.
//! - A Data entry applies only when its leader stamp equals the (term, node) of its
//!   log id and its first sequence is `last_seq + 1`. Otherwise every node applies
//!   it as a no-op answered [`Outcome::Stale`] (it was numbered under a leadership
//!   that has since changed), so applied sequences stay consecutive.
//! - The applied log id and membership travel with the memtables: a memtable
//!   records the point applied before its first entry, and a flush writes that point
//!   of the next memtable into the manifest (fields 0x08 and 0x09) with its files.
//!   After a restart the engine is at that point and the consensus layer re-applies
//!   the log from there.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, Weak};

use super::{Db, Engine, lock};
use crate::batch;
use crate::error::{Error, Result};
use crate::memtable::Payload;
use crate::raftlog::{AppliedPoint, EntryBody, LogId};

/// The (term, node) of the leader that numbered a commit group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub term: u64,
    pub node: u64,
}

/// What applying a Data entry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The entry's batches are applied.
    Applied,
    /// The entry was numbered under an older leadership: applied as a no-op.
    Stale,
}

/// What a node is in its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKind {
    /// Not replicated: the node takes every write itself.
    Single,
    Leader,
    Follower,
    Candidate,
    Learner,
}

impl RoleKind {
    /// The name the SQL views and logs use.
    pub fn name(self) -> &'static str {
        match self {
            RoleKind::Single => "single",
            RoleKind::Leader => "leader",
            RoleKind::Follower => "follower",
            RoleKind::Candidate => "candidate",
            RoleKind::Learner => "learner",
        }
    }
}

/// This node's role, as the SQL layer and the server see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub kind: RoleKind,
    /// This node's id (0 on a single node).
    pub node: u64,
    pub term: u64,
    /// The leader's node id and Postgres address, when known.
    pub leader: Option<(u64, Option<String>)>,
}

impl Role {
    /// The role of a single node.
    pub fn single() -> Role {
        Role {
            kind: RoleKind::Single,
            node: 0,
            term: 0,
            leader: None,
        }
    }

    /// Whether writes may be submitted here (they may still fail later).
    pub fn takes_writes(&self) -> bool {
        matches!(self.kind, RoleKind::Single | RoleKind::Leader)
    }

    /// Why this node refuses writes, naming the leader, e.g. `node 3 is a standby;
    /// the leader is node 1 at 127.0.0.1:5441`.
    pub fn standby_reason(&self) -> String {
        let me = format!("node {} is a standby", self.node);
        match &self.leader {
            Some((id, _)) if *id == self.node => {
                format!("node {} leads but has not yet applied its log", self.node)
            }
            Some((id, Some(pg))) => format!("{me}; the leader is node {id} at {pg}"),
            Some((id, None)) => format!("{me}; the leader is node {id} (address not yet known)"),
            None => format!("{me}; no leader is known"),
        }
    }
}

/// One member of the cluster as this node sees it (the `hindsight_cluster` view).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node: u64,
    /// leader, follower, learner, candidate or unreachable.
    pub role: String,
    pub term: u64,
    pub pg_addr: Option<String>,
    pub raft_addr: String,
    /// The last applied engine sequence and log index, when known.
    pub applied_seq: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    /// On the leader: the member's log index known durable there (its match index).
    pub matched_index: Option<u64>,
    /// Milliseconds since this node last heard from the member (0 for itself).
    pub last_contact_ms: Option<u64>,
    pub is_self: bool,
}

/// A change of the cluster's members, run on the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// `hindsight_add_learner(n, 'host:port')`: replicate to a new node (a
    /// snapshot, then the log); it serves reads but does not vote.
    AddLearner { node: u64, raft_addr: String },
    /// `hindsight_promote(n)`: make a caught-up learner a voter.
    Promote { node: u64 },
    /// `hindsight_remove_node(n)`: take a voter or learner out of the cluster.
    Remove { node: u64 },
}

/// The consensus layer, as the engine's write path sees it.
pub trait Replicate: Send + Sync {
    /// This node's current role.
    fn role(&self) -> Role;

    /// Every member, as far as this node knows.
    fn members(&self) -> Vec<Member>;

    /// Admit one commit group: the current leader stamp once this node leads and
    /// has applied everything in its log, else the error the writers get
    /// ([`Error::ReadOnlyReplica`] on a follower).
    fn admit(&self) -> Result<Stamp>;

    /// Replicate one commit group's payloads under `stamp`; returns once the entry
    /// is applied here. An error after the entry may have been appended is
    /// [`Error::OutcomeUnknown`].
    fn replicate(&self, stamp: Stamp, payloads: Vec<Vec<u8>>) -> Result<Outcome>;

    /// Planned switchover: hand leadership to voter `to` (blocking, a few seconds);
    /// returns a line saying who leads now.
    fn transfer_leader(&self, to: u64) -> Result<String>;

    /// Change the members (blocking until the change is committed); returns a
    /// line saying what the membership is now.
    fn change_members(&self, change: MemberChange) -> Result<String>;
}

/// The hook slot of a replicated engine (absent on a single node).
#[derive(Default)]
pub(super) struct ReplicaSlot {
    hook: RwLock<Option<Weak<dyn Replicate>>>,
}

impl ReplicaSlot {
    pub(super) fn get(&self) -> Result<Arc<dyn Replicate>> {
        let g = self.hook.read().unwrap_or_else(|e| e.into_inner());
        g.as_ref()
            .and_then(Weak::upgrade)
            .ok_or_else(|| Error::ReadOnlyReplica("replication is not running on this node".into()))
    }
}

impl Db {
    /// Install the consensus layer's hook (held weakly: the consensus layer owns
    /// the engine, not the other way round). Only for an engine opened with
    /// [`Db::open_replicated`].
    pub fn set_replicator(&self, hook: Weak<dyn Replicate>) -> Result<()> {
        let slot = self.engine.replica.as_ref().ok_or_else(|| {
            Error::InvalidArgument("a single-node engine takes no replicator".into())
        })?;
        *slot.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
        Ok(())
    }

    /// This node's role: [`Role::single`] unless replicated.
    pub fn role(&self) -> Role {
        match &self.engine.replica {
            None => Role::single(),
            Some(slot) => match slot.get() {
                Ok(h) => h.role(),
                Err(_) => Role {
                    kind: RoleKind::Follower,
                    node: 0,
                    term: 0,
                    leader: None,
                },
            },
        }
    }

    /// The cluster's members (empty on a single node).
    pub fn members(&self) -> Vec<Member> {
        match self.engine.replica.as_ref().map(ReplicaSlot::get) {
            Some(Ok(h)) => h.members(),
            _ => Vec::new(),
        }
    }

    /// Hand leadership to voter `to` (`hindsight_transfer_leader`): only on the
    /// leader of a cluster.
    pub fn transfer_leader(&self, to: u64) -> Result<String> {
        match self.engine.replica.as_ref().map(ReplicaSlot::get) {
            None => Err(Error::InvalidArgument(
                "this server is a single node: there is no leadership to transfer".into(),
            )),
            Some(Ok(h)) => h.transfer_leader(to),
            Some(Err(e)) => Err(e),
        }
    }

    /// Add, promote or remove a member (only on the leader of a cluster).
    pub fn change_members(&self, change: MemberChange) -> Result<String> {
        match self.engine.replica.as_ref().map(ReplicaSlot::get) {
            None => Err(Error::InvalidArgument(
                "this server is a single node: start it with --node-id and --peers to form a cluster"
                    .into(),
            )),
            Some(Ok(h)) => h.change_members(change),
            Some(Err(e)) => Err(e),
        }
    }

    /// Whether this engine was opened in replicated mode.
    pub fn is_replicated(&self) -> bool {
        self.engine.replica.is_some()
    }

    /// The consensus position applied so far.
    pub fn applied(&self) -> AppliedPoint {
        lock(&self.engine.commit).applied.clone()
    }

    /// The commit time of the last applied batch (or tick).
    pub fn last_commit_micros(&self) -> i64 {
        lock(&self.engine.commit).last_micros
    }

    /// Apply one committed consensus entry (replicated mode only). Data entries
    /// whose stamp or first sequence does not fit are no-ops ([`Outcome::Stale`]).
    /// An error is fatal for this node: the engine stops accepting entries.
    pub fn apply_entry(&self, id: LogId, body: &EntryBody) -> Result<Outcome> {
        if self.engine.replica.is_none() {
            return Err(Error::InvalidArgument(
                "apply_entry needs an engine opened in replicated mode".into(),
            ));
        }
        let r = self.engine.apply_entry(id, body);
        if let Err(e) = &r {
            self.engine.stop_writes(e);
        }
        r
    }
}

impl Engine {
    fn apply_entry(&self, id: LogId, body: &EntryBody) -> Result<Outcome> {
        self.check_open()?;
        let mut w = lock(&self.commit);
        if w.applied.log.is_some_and(|a| a.index >= id.index) {
            // Already in the engine (re-applied after a restart from the flushed point).
            return Ok(Outcome::Applied);
        }
        self.make_room(&mut w)?;
        let mut outcome = Outcome::Applied;
        match body {
            EntryBody::Data { stamp, payloads } => {
                let fits = *stamp == (id.term, id.node)
                    && self.first_seq(payloads)? == Some(w.last_seq + 1);
                if fits {
                    self.apply_payloads(&mut w, payloads)?;
                } else {
                    outcome = Outcome::Stale;
                }
            }
            EntryBody::Tick { micros } => w.last_micros = w.last_micros.max(*micros),
            EntryBody::Blank => {}
            EntryBody::Membership(m) => w.applied.membership = Some(Arc::from(m.as_slice())),
        }
        w.applied.log = Some(id);
        Ok(outcome)
    }

    fn first_seq(&self, payloads: &[Vec<u8>]) -> Result<Option<u64>> {
        let Some(first) = payloads.first() else {
            return Ok(None);
        };
        let (seq, _) = batch::header(first).map_err(bad_batch)?;
        Ok(Some(seq))
    }

    /// Apply a Data entry's batches in order; each must be the next sequence.
    fn apply_payloads(
        &self,
        w: &mut super::commit::CommitState,
        payloads: &[Vec<u8>],
    ) -> Result<()> {
        let mem = self.view.load().mem.clone();
        for p in payloads {
            let (seq, _) = batch::header(p).map_err(bad_batch)?;
            if seq != w.last_seq + 1 {
                return Err(Error::corruption(
                    "<replicated batch>",
                    0,
                    format!("batch {seq} inside an entry that continues {}", w.last_seq),
                ));
            }
            let payload: Payload = Arc::new(p.clone());
            let decoded = self.apply_logged(w, &mem, &payload)?;
            w.last_seq = seq;
            w.last_micros = w.last_micros.max(decoded.commit_micros);
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            self.counters
                .rows
                .fetch_add(decoded.ops.len() as u64, Ordering::Relaxed);
        }
        self.visible_seq.store(w.last_seq, Ordering::Release);
        Ok(())
    }
}

fn bad_batch(e: crate::error::DecodeError) -> Error {
    Error::corruption("<replicated batch>", e.offset as u64, e.detail)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::batch::WriteBatch;
    use crate::engine::Options;
    use crate::engine::testutil::id_value_table;
    use crate::raftlog::Entry;
    use crate::types::Value;
    use crate::view::ReadAt;

    /// A one-member "consensus layer": every proposal is appended to a Vec and
    /// applied at once, under the stamp the test sets.
    struct Loopback {
        db: Mutex<Option<Db>>,
        term: u64,
        log: Mutex<Vec<Entry>>,
    }

    impl Loopback {
        fn next_id(&self) -> LogId {
            let n = self.log.lock().unwrap().len() as u64;
            LogId {
                term: self.term,
                node: 1,
                index: n + 1,
            }
        }
    }

    impl Replicate for Loopback {
        fn role(&self) -> Role {
            Role {
                kind: RoleKind::Leader,
                node: 1,
                term: self.term,
                leader: Some((1, None)),
            }
        }
        fn members(&self) -> Vec<Member> {
            Vec::new()
        }
        fn admit(&self) -> Result<Stamp> {
            Ok(Stamp {
                term: self.term,
                node: 1,
            })
        }
        fn transfer_leader(&self, _to: u64) -> Result<String> {
            Err(Error::ClusterState("a loopback hook has one member".into()))
        }
        fn change_members(&self, _change: MemberChange) -> Result<String> {
            Err(Error::ClusterState("a loopback hook has one member".into()))
        }

        fn replicate(&self, stamp: Stamp, payloads: Vec<Vec<u8>>) -> Result<Outcome> {
            let entry = Entry {
                id: self.next_id(),
                body: EntryBody::Data {
                    stamp: (stamp.term, stamp.node),
                    payloads,
                },
            };
            self.log.lock().unwrap().push(entry.clone());
            let db = self.db.lock().unwrap().clone().unwrap();
            db.apply_entry(entry.id, &entry.body)
        }
    }

    fn open(dir: &std::path::Path, term: u64) -> (Db, Arc<Loopback>) {
        let db = Db::open_replicated(dir, Options::default()).unwrap();
        let hook = Arc::new(Loopback {
            db: Mutex::new(Some(db.clone())),
            term,
            log: Mutex::new(Vec::new()),
        });
        let dynhook: Arc<dyn Replicate> = hook.clone();
        db.set_replicator(Arc::downgrade(&dynhook)).unwrap();
        (db, hook)
    }

    fn put(db: &Db, id: i64, v: i64) -> Result<crate::CommitInfo> {
        let t = db.table("t")?;
        let mut b = WriteBatch::new();
        b.put(&t, &[Value::Int64(id), Value::Int64(v)])?;
        db.write(b)
    }

    fn get(db: &Db, id: i64) -> Option<Value> {
        let t = db.table("t").ok()?;
        let row = db
            .get(&t, &[Value::Int64(id)], &ReadAt::latest(i64::MAX))
            .unwrap()?;
        row.values.get(1).cloned()
    }

    #[test]
    fn writes_go_through_the_hook_and_replay_on_a_second_engine() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (db, hook) = open(a.path(), 1);
        db.create_table(id_value_table("t")).unwrap();
        put(&db, 1, 10).unwrap();
        put(&db, 2, 20).unwrap();
        assert_eq!(get(&db, 2), Some(Value::Int64(20)));
        assert_eq!(db.applied().log.map(|l| l.index), Some(3));

        // A follower applying the same entries reaches the same state.
        let follower = Db::open_replicated(b.path(), Options::default()).unwrap();
        for e in hook.log.lock().unwrap().iter() {
            assert_eq!(
                follower.apply_entry(e.id, &e.body).unwrap(),
                Outcome::Applied
            );
        }
        assert_eq!(get(&follower, 1), Some(Value::Int64(10)));
        assert_eq!(follower.visible_seq(), db.visible_seq());
        // Applying an index twice (a restart re-applies the log) changes nothing.
        let first = hook.log.lock().unwrap()[1].clone();
        follower.apply_entry(first.id, &first.body).unwrap();
        assert_eq!(follower.visible_seq(), db.visible_seq());
        // Without a hook a replicated engine refuses writes.
        let err = put(&follower, 3, 30).unwrap_err();
        assert!(matches!(err, Error::ReadOnlyReplica(_)), "{err}");
    }

    #[test]
    fn an_entry_stamped_by_another_leadership_or_out_of_sequence_is_a_no_op() {
        let a = tempfile::tempdir().unwrap();
        let (db, hook) = open(a.path(), 1);
        db.create_table(id_value_table("t")).unwrap();
        put(&db, 1, 10).unwrap();
        let Entry { body, .. } = hook.log.lock().unwrap()[1].clone();
        let seq = db.visible_seq();
        // The same entry again under a later log id: its stamp (term 1) no longer
        // matches the log id (term 2), and its seq is no longer next.
        let later = LogId {
            term: 2,
            node: 1,
            index: 10,
        };
        assert_eq!(db.apply_entry(later, &body).unwrap(), Outcome::Stale);
        let restamped = match body {
            EntryBody::Data { payloads, .. } => EntryBody::Data {
                stamp: (2, 1),
                payloads,
            },
            other => other,
        };
        let next = LogId { index: 11, ..later };
        assert_eq!(db.apply_entry(next, &restamped).unwrap(), Outcome::Stale);
        assert_eq!(db.visible_seq(), seq);
        assert_eq!(db.applied().log, Some(next));
        // Ticks raise the commit clock; it never goes back.
        let tick = LogId { index: 12, ..later };
        db.apply_entry(
            tick,
            &EntryBody::Tick {
                micros: i64::MAX - 1,
            },
        )
        .unwrap();
        assert_eq!(db.last_commit_micros(), i64::MAX - 1);
    }

    #[test]
    fn a_flush_records_the_applied_point_and_a_restart_starts_there() {
        let a = tempfile::tempdir().unwrap();
        let (db, hook) = open(a.path(), 1);
        db.create_table(id_value_table("t")).unwrap();
        put(&db, 1, 10).unwrap();
        db.apply_entry(
            LogId {
                term: 1,
                node: 1,
                index: 3,
            },
            &EntryBody::Membership(b"{\"m\":1}".to_vec()),
        )
        .unwrap();
        db.flush().unwrap();
        drop(hook);
        drop(db);
        let db = Db::open_replicated(a.path(), Options::default()).unwrap();
        let applied = db.applied();
        assert_eq!(applied.log.map(|l| l.index), Some(3));
        assert_eq!(applied.membership.as_deref(), Some(&b"{\"m\":1}"[..]));
        assert_eq!(get(&db, 1), Some(Value::Int64(10)));
    }

    /// A member with table `t` holding ids `0..rows` (value id * 10), flushed.
    fn flushed_member(dir: &std::path::Path, rows: i64) -> (Db, Arc<Loopback>) {
        let (db, hook) = open(dir, 1);
        db.create_table(id_value_table("t")).unwrap();
        for i in 0..rows {
            put(&db, i, i * 10).unwrap();
        }
        db.flush().unwrap();
        (db, hook)
    }

    #[test]
    fn a_checkpoint_installs_on_another_member_and_survives_its_restart() {
        let (a, b, snaps) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let (leader, _hook) = flushed_member(a.path(), 50);
        put(&leader, 50, 500).unwrap(); // in the memtable: not in the checkpoint
        let cp = snaps.path().join("1-1-52");
        let info = leader.checkpoint(&cp).unwrap();
        assert_eq!(info.applied.log.map(|l| l.index), Some(51));
        assert!(info.files.iter().any(|(n, _)| n == "CURRENT"), "{info:?}");
        assert!(
            leader.checkpoint(&cp).is_err(),
            "a checkpoint is never overwritten"
        );

        // A member with other data installs it: its state becomes the checkpoint's.
        let (member, _h) = open(b.path(), 1);
        member.create_table(id_value_table("other")).unwrap();
        member.flush().unwrap();
        let reader = member.snapshot();
        assert_eq!(member.install_checkpoint(&cp).unwrap(), info);
        assert_eq!(member.applied().log, info.applied.log);
        assert_eq!(member.visible_seq(), info.last_seq);
        assert_eq!(get(&member, 49), Some(Value::Int64(490)));
        assert_eq!(get(&member, 50), None);
        assert!(member.table("other").is_err());
        assert!(
            reader.catalog().table("other").is_some(),
            "old readers keep their view"
        );
        drop((reader, _h, member));
        let member = Db::open_replicated(b.path(), Options::default()).unwrap();
        assert_eq!(get(&member, 49), Some(Value::Int64(490)));
        assert_eq!(member.applied().log, info.applied.log);
        assert!(
            cp.join("CURRENT").exists(),
            "the checkpoint stays as it was"
        );
    }

    #[test]
    fn a_damaged_checkpoint_is_refused_and_changes_nothing() {
        let (a, b, snaps) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let (leader, _hook) = flushed_member(a.path(), 2);
        let cp = snaps.path().join("cp");
        let info = leader.checkpoint(&cp).unwrap();
        let (sst, len) = info
            .files
            .iter()
            .find(|(n, _)| n.ends_with(".sst"))
            .unwrap();
        // Flip a byte inside the first data block (a fresh copy: the leader's file
        // is the same inode).
        let path = cp.join(sst);
        let mut bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        bytes[12] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(bytes.len() as u64, *len);
        let (member, _h) = open(b.path(), 1);
        let err = member.install_checkpoint(&cp).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        assert_eq!(member.visible_seq(), 0);
        member.health().unwrap();
    }

    #[test]
    fn modes_do_not_open_each_others_directories() {
        let a = tempfile::tempdir().unwrap();
        drop(Db::open_replicated(a.path(), Options::default()).unwrap());
        std::fs::create_dir(a.path().join("raft")).unwrap();
        let err = Db::open(a.path(), Options::default()).unwrap_err();
        assert!(err.to_string().contains("cluster member"), "{err}");

        let b = tempfile::tempdir().unwrap();
        let single = Db::open(b.path(), Options::default()).unwrap();
        single.create_table(id_value_table("t")).unwrap();
        drop(single);
        let err = Db::open_replicated(b.path(), Options::default()).unwrap_err();
        assert!(err.to_string().contains("single-node"), "{err}");
    }
}
