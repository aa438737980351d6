//! The group-commit write path and writer backpressure.
//!
//! A writer enqueues its batch; the first writer without a leader becomes the
//! leader, takes every queued batch (a catalog change always commits alone),
//! assigns consecutive sequence numbers and monotonic commit times, appends one WAL
//! frame per batch with a single write, fsyncs once for the group (under the
//! default policy), inserts the rows into the memtable, and only then publishes the
//! new visible sequence and wakes the group. Readers therefore never see part of a
//! batch, and an acknowledged batch is durable.
//!
//! Backpressure: when the memtable is full and `max_sealed_memtables` are waiting
//! for flush, or level 0 reaches `l0_stop_trigger` files, the leader waits for
//! background work (a stall, counted in [`super::Stats`]); at
//! `l0_slowdown_trigger` each group is delayed by a millisecond. Memory therefore
//! stays bounded at any write rate.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::replica::{Outcome, ReplicaSlot};
use super::{Db, Engine, SyncPolicy, lock};
use crate::batch::{self, Resolved, WriteBatch};
use crate::catalog::{Catalog, CatalogOp};
use crate::error::{Error, Result};
use crate::memtable::{MemTable, Payload};
use crate::raftlog::AppliedPoint;
use crate::types::TableId;
use crate::view::View;
use crate::wal::{LogWriter, MAX_FRAME_LEN};

/// What a successful commit returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    pub seq: u64,
    pub commit_micros: i64,
}

type Ticket = u64;

/// Writers waiting to commit, and the results the leader hands back.
#[derive(Default)]
pub(super) struct Queue {
    waiting: VecDeque<(Ticket, WriteBatch)>,
    results: HashMap<Ticket, Result<CommitInfo>>,
    next_ticket: Ticket,
    leader: bool,
}

/// What the commit leader owns (under `Engine::commit`).
pub(super) struct CommitState {
    /// The WAL being appended to; `None` in replicated mode (the consensus log is
    /// the durable log there).
    pub(super) wal: Option<LogWriter>,
    pub(super) last_seq: u64,
    pub(super) last_micros: i64,
    /// The authoritative catalog: every catalog change applied so far.
    pub(super) catalog: Arc<Catalog>,
    /// Replicated mode: the consensus position applied so far.
    pub(super) applied: AppliedPoint,
}

/// A batch of a group that passed validation, numbered and encoded.
struct Staged {
    ticket: Ticket,
    payload: Vec<u8>,
    info: CommitInfo,
    rows: usize,
}

impl Db {
    /// Commit a batch atomically; returns once it is durable under the sync policy.
    pub fn write(&self, batch: WriteBatch) -> Result<CommitInfo> {
        if batch.is_empty() {
            return Ok(CommitInfo {
                seq: self.visible_seq(),
                commit_micros: self.now_micros(),
            });
        }
        let engine = &self.engine;
        let mut q = lock(&engine.queue);
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push_back((ticket, batch));
        loop {
            if let Some(r) = q.results.remove(&ticket) {
                return r;
            }
            if !q.leader {
                q.leader = true;
                let group = take_group(&mut q.waiting);
                drop(q);
                let results = engine.commit_group(group);
                q = lock(&engine.queue);
                q.results.extend(results);
                q.leader = false;
                engine.queue_cv.notify_all();
                continue;
            }
            q = engine.queue_cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Take the next commit group: the queue head, and if it is a data batch, the data
/// batches behind it (up to 8 MiB); a catalog change always commits alone.
fn take_group(waiting: &mut VecDeque<(Ticket, WriteBatch)>) -> Vec<(Ticket, WriteBatch)> {
    let mut group = Vec::new();
    let mut bytes = 0;
    while let Some((_, b)) = waiting.front() {
        let ddl = !b.catalog.is_empty();
        if !group.is_empty() && (ddl || bytes >= 8 << 20) {
            break;
        }
        bytes += b.approximate_bytes();
        if let Some(item) = waiting.pop_front() {
            group.push(item);
        }
        if ddl {
            break;
        }
    }
    group
}

impl Engine {
    /// Commit one group as its leader: stage every batch (validate, number, encode),
    /// append the staged frames with one write (and one fsync under
    /// [`SyncPolicy::Always`]), apply them to the memtable, then publish the group's
    /// last sequence. A batch that fails validation fails alone.
    pub(super) fn commit_group(
        &self,
        group: Vec<(Ticket, WriteBatch)>,
    ) -> Vec<(Ticket, Result<CommitInfo>)> {
        if let Some(slot) = &self.replica {
            return self.commit_replicated(slot, &group);
        }
        let mut w = lock(&self.commit);
        if let Err(e) = self.check_open().and_then(|()| self.make_room(&mut w)) {
            let msg = e.to_string();
            return group
                .into_iter()
                .map(|(t, _)| (t, Err(clone_error(&e, &msg))))
                .collect();
        }
        let (staged, mut results) = self.stage(&w, &group);
        if staged.is_empty() {
            return results;
        }
        if let Err(e) = self.append_durably(&mut w, &staged) {
            // The log's tail is now unknown: refuse all further writes.
            self.stop_writes(&e);
            results.extend(fail_all(&staged, &e));
            return results;
        }
        if let Some(last) = staged.last() {
            w.last_seq = last.info.seq;
            w.last_micros = last.info.commit_micros;
        }
        let mem = self.view.load().mem.clone();
        for s in staged {
            let payload: Payload = Arc::new(s.payload);
            match self.apply_logged(&mut w, &mem, &payload) {
                Ok(_) => {
                    self.counters.batches.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .rows
                        .fetch_add(s.rows as u64, Ordering::Relaxed);
                    results.push((s.ticket, Ok(s.info)));
                }
                Err(e) => {
                    self.stop_writes(&e);
                    results.push((s.ticket, Err(e)));
                }
            }
        }
        self.visible_seq.store(w.last_seq, Ordering::Release);
        results
    }

    /// Commit one group in replicated mode: admit (this node leads and has applied
    /// its whole log), stage against the applied state, replicate, and answer once
    /// the entry is applied here. A group numbered under a leadership that changed
    /// before its entry was appended is a no-op on every node; it is staged once more.
    fn commit_replicated(
        &self,
        slot: &ReplicaSlot,
        group: &[(Ticket, WriteBatch)],
    ) -> Vec<(Ticket, Result<CommitInfo>)> {
        let fail = |e: &Error| {
            let msg = e.to_string();
            group
                .iter()
                .map(|(t, _)| (*t, Err(clone_error(e, &msg))))
                .collect()
        };
        let hook = match slot.get() {
            Ok(h) => h,
            Err(e) => return fail(&e),
        };
        for attempt in 1.. {
            let stamp = match self.check_open().and_then(|()| hook.admit()) {
                Ok(s) => s,
                Err(e) => return fail(&e),
            };
            let (mut staged, mut results) = self.stage(&lock(&self.commit), group);
            if staged.is_empty() {
                return results;
            }
            let payloads = staged
                .iter_mut()
                .map(|s| std::mem::take(&mut s.payload))
                .collect();
            let outcome = match hook.replicate(stamp, payloads) {
                Ok(Outcome::Stale) if attempt < 2 => continue,
                Ok(Outcome::Applied) => Ok(()),
                Ok(Outcome::Stale) => Err(Error::ReadOnlyReplica(
                    "leadership changed while this commit was replicated; nothing was written"
                        .into(),
                )),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => results.extend(staged.into_iter().map(|s| (s.ticket, Ok(s.info)))),
                Err(e) => results.extend(fail_all(&staged, &e)),
            }
            return results;
        }
        Vec::new()
    }

    /// Validate, number and encode each batch of a group. Sequences are consecutive
    /// from the last committed one and commit times never go backwards; a batch that
    /// fails is answered at once and takes no sequence.
    fn stage(
        &self,
        w: &CommitState,
        group: &[(Ticket, WriteBatch)],
    ) -> (Vec<Staged>, Vec<(Ticket, Result<CommitInfo>)>) {
        let mut results = Vec::new();
        let mut staged = Vec::with_capacity(group.len());
        let (mut seq, mut micros) = (w.last_seq, w.last_micros);
        for (ticket, b) in group {
            let ticket = *ticket;
            let resolved = match resolve(&w.catalog, b) {
                Ok(r) => r,
                Err(e) => {
                    results.push((ticket, Err(e)));
                    continue;
                }
            };
            let next_micros = self.opts.clock.now().max(micros);
            let mut payload = Vec::with_capacity(b.approximate_bytes() + 32);
            if let Err(e) = b.encode_resolved(&resolved, seq + 1, next_micros, &mut payload) {
                results.push((ticket, Err(e)));
                continue;
            }
            if payload.len() > MAX_FRAME_LEN {
                let e = Error::BatchTooLarge {
                    bytes: payload.len(),
                    limit: MAX_FRAME_LEN,
                };
                results.push((ticket, Err(e)));
                continue;
            }
            seq += 1;
            micros = next_micros;
            staged.push(Staged {
                ticket,
                payload,
                info: CommitInfo {
                    seq,
                    commit_micros: micros,
                },
                rows: b.len(),
            });
        }
        (staged, results)
    }

    /// Append the staged frames with one write and make them durable as the sync
    /// policy says.
    fn append_durably(&self, w: &mut CommitState, staged: &[Staged]) -> Result<()> {
        let payloads: Vec<&[u8]> = staged.iter().map(|s| s.payload.as_slice()).collect();
        let wal = w.wal.as_mut().ok_or(Error::Closed)?;
        let bytes = wal.append_frames(&payloads)?;
        if self.opts.sync == SyncPolicy::Always {
            self.counters.wal_syncs.fetch_add(1, Ordering::Relaxed);
            wal.sync()?;
        }
        self.counters.wal_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Apply a logged payload: catalog changes, then rows. Returns the decoded batch.
    pub(super) fn apply_logged(
        &self,
        w: &mut CommitState,
        mem: &Arc<MemTable>,
        payload: &Payload,
    ) -> Result<batch::DecodedBatch> {
        let decoded = batch::decode(payload)
            .map_err(|e| Error::corruption("<batch>", e.offset as u64, e.detail))?;
        for op in &decoded.catalog {
            let mut c = (*w.catalog).clone();
            c.apply(op)?;
            w.catalog = Arc::new(c);
            self.publish_view(|v| View {
                catalog: w.catalog.clone(),
                ..v.clone()
            });
            if let CatalogOp::DropTable { id } = op {
                self.drop_table_files(*id)?;
            }
        }
        mem.apply(payload, &decoded, &w.catalog);
        Ok(decoded)
    }

    fn max_l0_files(&self) -> usize {
        self.view
            .load()
            .files
            .tables
            .values()
            .map(|t| t.level(0).len())
            .max()
            .unwrap_or(0)
    }

    /// Wait for background work (or do it inline) until the write may proceed.
    pub(super) fn make_room(&self, w: &mut CommitState) -> Result<()> {
        let mut slowed = false;
        loop {
            self.check_open()?;
            let l0 = self.max_l0_files();
            if l0 >= self.opts.l0_stop_trigger.max(1) {
                self.stall(|| self.compact_one().map(|_| ()))?;
                continue;
            }
            if l0 >= self.opts.l0_slowdown_trigger && !slowed {
                slowed = true;
                self.counters.slowdowns.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            let view = self.view.load_full();
            if view.mem.approximate_bytes() < self.opts.memtable_bytes {
                return Ok(());
            }
            if view.imm.len() >= self.opts.max_sealed_memtables.max(1) {
                self.stall(|| self.flush_one().map(|_| ()))?;
                continue;
            }
            self.switch_memtable(w)?;
        }
    }

    /// Wait for background threads to make progress, or run `inline` without them.
    fn stall(&self, inline: impl FnOnce() -> Result<()>) -> Result<()> {
        self.counters.stalls.fetch_add(1, Ordering::Relaxed);
        let t0 = std::time::Instant::now();
        let r = if self.opts.background_threads {
            let book = lock(&self.book);
            let _ = self
                .progress
                .wait_timeout(book, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner());
            Ok(())
        } else {
            inline()
        };
        self.counters
            .stall_micros
            .fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        r
    }

    /// Seal the memtable, start a new WAL segment (single-node mode) and memtable.
    pub(super) fn switch_memtable(&self, w: &mut CommitState) -> Result<()> {
        let number = self.alloc_file_number();
        if let Some(old) = &mut w.wal {
            old.sync()?;
            let wal = LogWriter::create_wal(&self.dir, number)?;
            *lock(&self.sync_file) = wal.sync_handle().ok();
            *old = wal;
        }
        let mem = Arc::new(
            MemTable::new(number, w.last_seq, w.catalog.clone()).starting_at(w.applied.clone()),
        );
        self.publish_view(|v| {
            let mut imm = Vec::with_capacity(v.imm.len() + 1);
            imm.push(v.mem.clone());
            imm.extend(v.imm.iter().cloned());
            View {
                mem,
                imm,
                ..v.clone()
            }
        });
        self.progress.notify_all();
        Ok(())
    }
}

/// The same error for every staged batch of a group.
fn fail_all(staged: &[Staged], e: &Error) -> Vec<(Ticket, Result<CommitInfo>)> {
    let msg = e.to_string();
    staged
        .iter()
        .map(|s| (s.ticket, Err(clone_error(e, &msg))))
        .collect()
}

fn clone_error(e: &Error, msg: &str) -> Error {
    match e {
        Error::Closed => Error::Closed,
        Error::Background(m) => Error::Background(m.clone()),
        Error::ReadOnlyReplica(m) => Error::ReadOnlyReplica(m.clone()),
        Error::OutcomeUnknown(m) => Error::OutcomeUnknown(m.clone()),
        Error::BatchTooLarge { bytes, limit } => Error::BatchTooLarge {
            bytes: *bytes,
            limit: *limit,
        },
        _ => Error::Background(msg.to_string()),
    }
}

/// Check a batch against the catalog it will be applied to: its catalog changes in
/// order (the tables it creates get their real ids), then that every row goes to a
/// table that exists after them or that the batch itself drops (such rows are
/// skipped when applied).
fn resolve(catalog: &Catalog, b: &WriteBatch) -> Result<Resolved> {
    let mut ops = b.catalog_ops().to_vec();
    let (after, ids) = if ops.is_empty() {
        (None, Vec::new())
    } else {
        let (after, ids) = catalog.resolve(&mut ops)?;
        (Some(after), ids)
    };
    let resolved = Resolved { catalog: ops, ids };
    let after = after.as_ref().unwrap_or(catalog);
    let dropped = |t: TableId| {
        resolved
            .catalog
            .iter()
            .any(|op| matches!(op, CatalogOp::DropTable { id } if *id == t))
    };
    let mut last = None;
    for t in b.tables() {
        if last != Some(t) {
            let real = resolved.table(t);
            if after.table_by_id(real).is_none() && !dropped(real) {
                return Err(Error::NoSuchTable(format!("#{t} (dropped)")));
            }
            last = Some(t);
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;

    use super::*;
    use crate::engine::testutil::id_value_table as def;
    use crate::engine::{Clock, Options};
    use crate::types::{TableDef, Value};
    use crate::view::ReadAt;

    /// A database whose clock the test sets.
    fn open(dir: &std::path::Path, clock: &Arc<AtomicI64>) -> Db {
        let c = clock.clone();
        let opts = Options {
            background_threads: false,
            clock: Clock::new(move || c.load(Ordering::SeqCst)),
            ..Options::default()
        };
        Db::open(dir, opts).unwrap()
    }

    fn put(table: &TableDef, id: i64, v: i64) -> WriteBatch {
        let mut b = WriteBatch::new();
        b.put(table, &[Value::Int64(id), Value::Int64(v)]).unwrap();
        b
    }

    #[test]
    fn a_catalog_change_commits_alone_and_data_groups_stop_at_8_mib() {
        let t = def("t");
        let mut big = WriteBatch::new();
        let row_bytes = put(&t, 1, 1).approximate_bytes();
        for i in 0..(5 << 20) / row_bytes as i64 {
            big.put(&t, &[Value::Int64(i), Value::Int64(i)]).unwrap();
        }
        let ddl = || WriteBatch::catalog_only(CatalogOp::DropTable { id: t.id });
        let mut q: VecDeque<(Ticket, WriteBatch)> = VecDeque::new();
        q.push_back((0, put(&t, 1, 1)));
        q.push_back((1, put(&t, 2, 2)));
        q.push_back((2, ddl()));
        q.push_back((3, ddl()));
        q.push_back((4, big.clone()));
        q.push_back((5, big.clone()));
        q.push_back((6, big));
        let tickets =
            |g: Vec<(Ticket, WriteBatch)>| g.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
        assert_eq!(
            tickets(take_group(&mut q)),
            vec![0, 1],
            "data up to the DDL"
        );
        assert_eq!(tickets(take_group(&mut q)), vec![2], "DDL alone");
        assert_eq!(tickets(take_group(&mut q)), vec![3], "DDL alone");
        assert_eq!(
            tickets(take_group(&mut q)),
            vec![4, 5],
            "the group closes past 8 MiB"
        );
        assert_eq!(tickets(take_group(&mut q)), vec![6]);
        assert!(take_group(&mut q).is_empty());
    }

    #[test]
    fn a_group_numbers_its_batches_consecutively_and_a_bad_batch_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(1_000));
        let db = open(dir.path(), &clock);
        let t = db.create_table(def("t")).unwrap();
        let gone = db.create_table(def("gone")).unwrap();
        let stale = put(&gone, 1, 1);
        db.drop_table("gone").unwrap();
        let base = db.visible_seq();
        let group = vec![(10, put(&t, 1, 1)), (11, stale), (12, put(&t, 2, 2))];
        let results = db.engine.commit_group(group);
        let by_ticket: HashMap<Ticket, Result<CommitInfo>> = results.into_iter().collect();
        assert_eq!(by_ticket[&10].as_ref().unwrap().seq, base + 1);
        assert!(matches!(by_ticket[&11], Err(Error::NoSuchTable(_))));
        assert_eq!(
            by_ticket[&12].as_ref().unwrap().seq,
            base + 2,
            "no gap for the failed batch"
        );
        assert_eq!(db.visible_seq(), base + 2);
        let row = db
            .get(&t, &[Value::Int64(2)], &ReadAt::latest(1_000))
            .unwrap();
        assert_eq!(row.unwrap().values[1], Value::Int64(2));
    }

    #[test]
    fn commit_times_never_go_backwards_when_the_clock_does() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(5_000));
        let db = open(dir.path(), &clock);
        let t = db.create_table(def("t")).unwrap();
        let first = db.write(put(&t, 1, 1)).unwrap();
        clock.store(4_000, Ordering::SeqCst);
        let second = db.write(put(&t, 1, 2)).unwrap();
        assert_eq!(second.seq, first.seq + 1);
        assert!(second.commit_micros >= first.commit_micros);
        drop(db);
        // After a restart too: recovery restores the last commit time.
        let db = open(dir.path(), &clock);
        let third = db.write(put(&t, 1, 3)).unwrap();
        assert_eq!(third.seq, second.seq + 1);
        assert!(third.commit_micros >= second.commit_micros);
    }

    #[test]
    fn an_empty_batch_commits_nothing_and_takes_no_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(1));
        let db = open(dir.path(), &clock);
        let before = db.visible_seq();
        assert_eq!(db.write(WriteBatch::new()).unwrap().seq, before);
        assert_eq!(db.visible_seq(), before);
    }

    #[test]
    fn after_a_log_failure_writes_are_refused_and_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(1));
        let db = open(dir.path(), &clock);
        let t = db.create_table(def("t")).unwrap();
        db.write(put(&t, 1, 1)).unwrap();
        db.engine
            .stop_writes(&Error::io("wal", std::io::Error::other("injected")));
        let err = db.write(put(&t, 2, 2)).unwrap_err();
        assert!(
            matches!(err, Error::Background(ref m) if m.contains("injected")),
            "{err}"
        );
        let row = db.get(&t, &[Value::Int64(1)], &ReadAt::latest(1)).unwrap();
        assert!(row.is_some(), "reads are still served");
    }

    #[test]
    fn a_batch_creates_tables_with_rows_and_the_commit_gives_them_real_ids() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(1_000));
        let db = open(dir.path(), &clock);
        // Two transactions create tables under provisional ids; the one that
        // commits second still gets a fresh real id, and its rows follow.
        let batch_with_table = |name: &str, v: i64| {
            let mut t = def(name);
            t.id = db.provisional_table_id();
            let mut b = WriteBatch::catalog_only(CatalogOp::CreateTable(t.clone()));
            b.extend(&put(&t, 1, v));
            (t, b)
        };
        let (ta, a) = batch_with_table("a", 10);
        let (tb, b) = batch_with_table("b", 20);
        assert!(ta.id.is_provisional() && tb.id.is_provisional());
        db.write(b).unwrap();
        db.write(a).unwrap();
        let (a, b) = (db.table("a").unwrap(), db.table("b").unwrap());
        assert!(!a.id.is_provisional() && !b.id.is_provisional());
        assert!(b.id < a.id, "ids follow commit order");
        let value = |db: &Db, t: &TableDef| {
            db.get(t, &[Value::Int64(1)], &ReadAt::latest(1_000))
                .unwrap()
                .unwrap()
                .values[1]
                .clone()
        };
        assert_eq!(value(&db, &a), Value::Int64(10));
        assert_eq!(value(&db, &b), Value::Int64(20));
        // A table the batch drops takes the batch's own rows for it along; a batch
        // that renames a table it created commits under the new name.
        let mut c = def("c");
        c.id = db.provisional_table_id();
        let mut batch = WriteBatch::catalog_only(CatalogOp::CreateTable(c.clone()));
        batch.extend(&put(&c, 1, 1));
        batch.extend(&put(&a, 2, 2));
        batch.extend(&WriteBatch::catalog_only(CatalogOp::DropTable { id: a.id }));
        batch.extend(&WriteBatch::catalog_only(CatalogOp::RenameTable {
            id: c.id,
            name: "c2".into(),
        }));
        db.write(batch).unwrap();
        assert!(db.table("a").is_err() && db.table("c").is_err());
        let c2 = db.table("c2").unwrap();
        // Replay gives the same catalog and rows.
        drop(db);
        let db = open(dir.path(), &clock);
        assert_eq!(db.table("c2").unwrap().id, c2.id);
        assert_eq!(value(&db, &c2), Value::Int64(1));
        assert_eq!(value(&db, &db.table("b").unwrap()), Value::Int64(20));
        // A provisional id never reaches the log unresolved.
        let mut stray = def("stray");
        stray.id = db.provisional_table_id();
        assert!(db.write(put(&stray, 1, 1)).is_err());
    }
}
