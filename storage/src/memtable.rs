//! The memtable: recent versions in a B-tree per table.
//!
//! Entries do not own their bytes: each points into the WAL payload of its batch,
//! shared by `Arc`, so applying a batch costs one allocation for the payload plus
//! one B-tree slot per row. Each entry carries the first 8 key bytes inline, so most
//! comparisons never leave the tree node. A B-tree was chosen over a lock-free
//! skiplist after profiling ingest: a skiplist insert into a 64 MiB memtable walks
//! ~20 randomly placed nodes (a cache miss each), a B-tree ~6 dense nodes, which
//! made inserts several times cheaper. The writer takes the table's write lock for
//! at most `INSERT_CHUNK` rows at a time, so a reader waits microseconds at most.
//! Large batches are sorted first, and into a table with no entries yet the tree is
//! built bottom-up from the sorted run and swapped in (one sort instead of a random
//! descent per row: what a big COPY into a fresh memtable costs).
//!
//! Invariants: entries are ordered by (entity key ascending, event time descending,
//! sequence descending); a second put of the same (key, event time) in one batch
//! replaces the first (it was never visible). Rows become visible to readers only
//! when the engine publishes the batch's sequence (see `db`), so a batch is never
//! seen half-applied. A memtable's WAL segments are deleted only after it is flushed.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock};

use arrow_array::builder::{BinaryBuilder, BooleanBuilder, Int64Builder, UInt64Builder};
use std::collections::BTreeSet;

use crate::arrowutil::ColumnBuilder;
use crate::batch::{DecodedBatch, OpKind};
use crate::catalog::Catalog;
use crate::error::DecodeResult;
use crate::keycodec::key_prefix;
use crate::raftlog::AppliedPoint;
use crate::rowcodec;
use crate::types::{DataType, TableId};
use crate::version_run::VersionRun;

/// A batch's encoded payload, shared by its memtable entries. A `Vec` behind the
/// `Arc` (not `Arc<[u8]>`): taking the encoded batch costs no copy, which for a
/// gigabyte COPY was a full copy and a page fault per 4 KiB.
pub(crate) type Payload = Arc<Vec<u8>>;

/// One version in the memtable, pointing into its batch's payload.
#[derive(Clone, Debug)]
pub(crate) struct MemEntry {
    /// The first 8 key bytes, big-endian, zero padded: most comparisons end here
    /// without touching the payload.
    prefix: u64,
    payload: Payload,
    key: (u32, u32),
    row: (u32, u32),
    pub et: i64,
    pub seq: u64,
    pub tomb: bool,
}

impl MemEntry {
    #[inline]
    pub(crate) fn key(&self) -> &[u8] {
        self.payload
            .get(self.key.0 as usize..self.key.1 as usize)
            .unwrap_or_default()
    }

    #[inline]
    pub(crate) fn row(&self) -> &[u8] {
        self.payload
            .get(self.row.0 as usize..self.row.1 as usize)
            .unwrap_or_default()
    }

    /// A search probe positioned at (key, et, seq).
    pub(crate) fn probe(key: &[u8], et: i64, seq: u64) -> MemEntry {
        let payload: Payload = Arc::new(key.to_vec());
        MemEntry {
            prefix: key_prefix(key),
            key: (0, key.len() as u32),
            row: (0, 0),
            payload,
            et,
            seq,
            tomb: false,
        }
    }
}

impl PartialEq for MemEntry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for MemEntry {}
impl PartialOrd for MemEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MemEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| {
                let (a, b) = (self.key.1 - self.key.0, other.key.1 - other.key.0);
                if a <= 8 && b <= 8 {
                    a.cmp(&b) // equal prefixes: the shorter key sorts first
                } else {
                    self.key().cmp(other.key())
                }
            })
            .then(other.et.cmp(&self.et))
            .then(other.seq.cmp(&self.seq))
    }
}

/// Rows inserted per acquisition of a table's write lock.
const INSERT_CHUNK: usize = 32;
/// Batches at least this large are sorted first; into an empty table they are
/// bulk-built (a large COPY: minutes of random inserts become one sort).
const BULK_INSERT_MIN: usize = 4096;

/// The versions of one table in a memtable.
pub(crate) struct TableMem {
    set: RwLock<BTreeSet<MemEntry>>,
    pub min_et: AtomicI64,
    pub max_et: AtomicI64,
    pub rows: AtomicU64,
}

impl TableMem {
    fn new() -> Self {
        TableMem {
            set: RwLock::new(BTreeSet::new()),
            min_et: AtomicI64::new(i64::MAX),
            max_et: AtomicI64::new(i64::MIN),
            rows: AtomicU64::new(0),
        }
    }

    /// First entry of `key` with event time <= `et_max` and sequence <= `seq_max`.
    pub(crate) fn find(&self, key: &[u8], et_max: i64, seq_max: u64) -> Option<MemEntry> {
        let probe = MemEntry::probe(key, et_max, u64::MAX);
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        for e in set.range((Bound::Included(probe), Bound::Unbounded)) {
            if e.key() != key {
                return None;
            }
            if e.seq <= seq_max {
                return Some(e.clone());
            }
        }
        None
    }

    /// Up to `limit` entries after `lower`, stopping before key `end`.
    pub(crate) fn entries(
        &self,
        lower: &Bound<MemEntry>,
        end: Option<&[u8]>,
        limit: usize,
    ) -> Vec<MemEntry> {
        let mut out = Vec::with_capacity(limit.min(4096));
        let set = self.set.read().unwrap_or_else(|e| e.into_inner());
        for e in set.range((lower.clone(), Bound::Unbounded)) {
            if end.is_some_and(|end| e.key() >= end) || out.len() >= limit {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.read().map(|s| s.is_empty()).unwrap_or(true)
    }

    /// Insert the entries of one batch, in batch order; later ones replace equal
    /// earlier ones.
    fn insert(&self, mut entries: Vec<MemEntry>) {
        if entries.len() >= BULK_INSERT_MIN {
            // One sort instead of a random tree descent per row. Among equal entries
            // the batch's last must come last, to be the one kept: the payload is
            // written op after op, so a later entry's key lies later in it, and the
            // key offset as the last sort key gives the stable order with the faster
            // unstable sort.
            entries.sort_unstable_by(|a, b| a.cmp(b).then(a.key.0.cmp(&b.key.0)));
            entries.reverse();
            entries.dedup_by(|later, kept| later == kept);
            entries.reverse();
            if self.is_empty() {
                return self.bulk_load(entries);
            }
        }
        let mut it = entries.into_iter().peekable();
        while it.peek().is_some() {
            let mut set = self.set.write().unwrap_or_else(|e| e.into_inner());
            for e in it.by_ref().take(INSERT_CHUNK) {
                self.note(&e);
                set.replace(e);
            }
        }
    }

    /// Fill an empty table from sorted, distinct entries: the tree is built bottom-up
    /// outside the lock and swapped in, so readers never wait for the build.
    fn bulk_load(&self, sorted: Vec<MemEntry>) {
        sorted.iter().for_each(|e| self.note(e));
        let mut built: BTreeSet<MemEntry> = sorted.into_iter().collect();
        let mut set = self.set.write().unwrap_or_else(|e| e.into_inner());
        if set.is_empty() {
            std::mem::swap(&mut *set, &mut built);
        } else {
            set.append(&mut built);
        }
    }

    /// Account for one inserted entry in the table's statistics.
    fn note(&self, e: &MemEntry) {
        self.min_et.fetch_min(e.et, AtomicOrdering::Relaxed);
        self.max_et.fetch_max(e.et, AtomicOrdering::Relaxed);
        self.rows.fetch_add(1, AtomicOrdering::Relaxed);
    }
}

/// Recent writes of every table, plus the commit times of their batches.
pub(crate) struct MemTable {
    /// Number of the WAL segment holding this memtable's batches.
    pub wal_number: u64,
    /// The last sequence committed before this memtable's first batch.
    pub start_seq: u64,
    /// The catalog as of the start of this memtable's WAL segment.
    pub start_catalog: Arc<Catalog>,
    /// Replicated mode: the consensus position applied before this memtable's
    /// first entry (the recovery point once the memtables before it are flushed).
    pub start_applied: AppliedPoint,
    tables: RwLock<HashMap<TableId, Arc<TableMem>>>,
    bytes: AtomicUsize,
    commits: RwLock<Vec<(u64, i64)>>,
}

impl MemTable {
    pub(crate) fn new(wal_number: u64, start_seq: u64, start_catalog: Arc<Catalog>) -> Self {
        MemTable {
            wal_number,
            start_seq,
            start_catalog,
            start_applied: AppliedPoint::default(),
            tables: RwLock::new(HashMap::new()),
            bytes: AtomicUsize::new(0),
            commits: RwLock::new(Vec::new()),
        }
    }

    /// This memtable, recorded as starting at consensus position `applied`.
    pub(crate) fn starting_at(mut self, applied: AppliedPoint) -> Self {
        self.start_applied = applied;
        self
    }

    /// Approximate memory held, in bytes.
    pub(crate) fn approximate_bytes(&self) -> usize {
        self.bytes.load(AtomicOrdering::Relaxed)
    }

    /// The versions of `table`, if it has any here.
    pub(crate) fn table(&self, table: TableId) -> Option<Arc<TableMem>> {
        self.tables.read().ok().and_then(|t| t.get(&table).cloned())
    }

    /// Tables with versions here.
    pub(crate) fn table_ids(&self) -> Vec<TableId> {
        self.tables
            .read()
            .map(|t| t.keys().copied().collect())
            .unwrap_or_default()
    }

    /// True if no batch was applied.
    pub(crate) fn is_empty(&self) -> bool {
        self.commits.read().map(|c| c.is_empty()).unwrap_or(true)
    }

    /// Insert every put and tombstone of a decoded batch. Ops for tables the catalog
    /// does not know (dropped before a replayed write) are skipped.
    pub(crate) fn apply(&self, payload: &Payload, batch: &DecodedBatch, catalog: &Catalog) {
        if let Ok(mut c) = self.commits.write() {
            c.push((batch.seq, batch.commit_micros));
        }
        // Group by table (batches usually write one table), then insert in order.
        let mut groups: Vec<(TableId, Vec<MemEntry>)> = Vec::new();
        for op in &batch.ops {
            if catalog.table_by_id(op.table).is_none() {
                continue;
            }
            let entry = MemEntry {
                prefix: key_prefix(payload.get(op.key.clone()).unwrap_or_default()),
                payload: payload.clone(),
                key: (op.key.start as u32, op.key.end as u32),
                row: (op.row.start as u32, op.row.end as u32),
                et: op.et,
                seq: batch.seq,
                tomb: op.kind == OpKind::Delete,
            };
            match groups.iter_mut().find(|(t, _)| *t == op.table) {
                Some((_, v)) => v.push(entry),
                None => groups.push((op.table, vec![entry])),
            }
        }
        for (table, entries) in groups {
            self.table_or_create(table).insert(entries);
        }
        // Payload bytes plus per-entry tree overhead.
        self.bytes.fetch_add(
            payload.len() + batch.ops.len() * 96,
            AtomicOrdering::Relaxed,
        );
    }

    fn table_or_create(&self, id: TableId) -> Arc<TableMem> {
        if let Some(t) = self.table(id) {
            return t;
        }
        match self.tables.write() {
            Ok(mut t) => t
                .entry(id)
                .or_insert_with(|| Arc::new(TableMem::new()))
                .clone(),
            Err(_) => Arc::new(TableMem::new()),
        }
    }

    /// Commit time of a batch applied here.
    pub(crate) fn commit_time(&self, seq: u64) -> Option<i64> {
        let c = self.commits.read().ok()?;
        c.binary_search_by_key(&seq, |&(s, _)| s)
            .ok()
            .and_then(|i| c.get(i))
            .map(|&(_, t)| t)
    }

    /// The largest sequence applied here committed at or before `micros`.
    pub(crate) fn last_seq_at_or_before(&self, micros: i64) -> Option<u64> {
        let c = self.commits.read().ok()?;
        let n = c.partition_point(|&(_, t)| t <= micros);
        n.checked_sub(1).and_then(|i| c.get(i)).map(|&(s, _)| s)
    }

    /// Commit time of the last batch applied here.
    pub(crate) fn last_commit_micros(&self) -> Option<i64> {
        let c = self.commits.read().ok()?;
        c.last().map(|&(_, t)| t)
    }
}

/// Build a [`VersionRun`] from memtable entries, decoding the features marked in
/// `project` (the others become all-NULL columns).
pub(crate) fn entries_to_run(
    entries: &[MemEntry],
    feature_types: &[DataType],
    project: &[bool],
) -> DecodeResult<VersionRun> {
    let n = entries.len();
    let mut keys = BinaryBuilder::with_capacity(n, n * 8);
    let mut et = Int64Builder::with_capacity(n);
    let mut seq = UInt64Builder::with_capacity(n);
    let mut tomb = BooleanBuilder::with_capacity(n);
    let mut builders: Vec<Option<ColumnBuilder>> = feature_types
        .iter()
        .zip(project.iter().chain(std::iter::repeat(&false)))
        .map(|(&t, &p)| p.then(|| ColumnBuilder::new(t, n)))
        .collect();
    for e in entries {
        keys.append_value(e.key());
        et.append_value(e.et);
        seq.append_value(e.seq);
        tomb.append_value(e.tomb);
        if e.tomb {
            for b in builders.iter_mut().flatten() {
                b.append_null();
            }
        } else {
            rowcodec::decode_into(e.row(), feature_types, &mut builders)?;
        }
    }
    let features = builders
        .into_iter()
        .zip(feature_types)
        .map(|(b, &t)| match b {
            Some(b) => b.finish(),
            None => crate::arrowutil::null_array(t, n),
        })
        .collect();
    Ok(VersionRun {
        keys: keys.finish(),
        et: et.finish(),
        seq: seq.finish(),
        tomb: tomb.finish(),
        features,
    })
}

impl std::fmt::Debug for MemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemTable")
            .field("wal_number", &self.wal_number)
            .field("bytes", &self.approximate_bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &[u8], et: i64, seq: u64) -> MemEntry {
        MemEntry::probe(key, et, seq)
    }

    #[test]
    fn entries_order_like_their_key_bytes_then_newest_first() {
        let keys: [&[u8]; 7] = [b"", b"\0", b"a", b"a\0", b"ab", b"abcdefgh", b"abcdefgh\0"];
        for w in keys.windows(2) {
            assert!(
                entry(w[0], 0, 0) < entry(w[1], 0, 0),
                "{:?} < {:?}",
                w[0],
                w[1]
            );
        }
        assert!(
            entry(b"k", 9, 1) < entry(b"k", 5, 9),
            "newer event time first"
        );
        assert!(
            entry(b"k", 5, 9) < entry(b"k", 5, 1),
            "newer sequence first"
        );
        let long_a = entry(b"abcdefgh-1", 0, 0);
        let long_b = entry(b"abcdefgh-2", 0, 0);
        assert!(long_a < long_b);
    }

    /// Entries of one shared payload: key `i` (8 bytes, big-endian) and a one-byte
    /// row `tag`, so a test can tell which of two equal entries was kept.
    fn rows(keys: &[(u64, i64, u8)], seq: u64) -> Vec<MemEntry> {
        let mut bytes = Vec::new();
        let mut spans = Vec::new();
        for &(k, _, tag) in keys {
            let at = bytes.len() as u32;
            bytes.extend_from_slice(&k.to_be_bytes());
            bytes.push(tag);
            spans.push(at);
        }
        let payload: Payload = Arc::new(bytes);
        keys.iter()
            .zip(spans)
            .map(|(&(k, et, _), at)| MemEntry {
                prefix: k,
                payload: payload.clone(),
                key: (at, at + 8),
                row: (at + 8, at + 9),
                et,
                seq,
                tomb: false,
            })
            .collect()
    }

    fn contents(t: &TableMem) -> Vec<(u64, i64, u8)> {
        let set = t.set.read().unwrap();
        set.iter().map(|e| (e.prefix, e.et, e.row()[0])).collect()
    }

    #[test]
    fn large_batches_are_sorted_and_the_later_of_equal_puts_wins() {
        // Above BULK_INSERT_MIN, in a scrambled order, with every 7th key's
        // (key, et 1) put a second time, later in the batch (tag 9).
        let n = BULK_INSERT_MIN as u64 + 100;
        let mut keys: Vec<(u64, i64, u8)> = (0..n).map(|i| ((i * 7919) % n, 1, 0)).collect();
        keys.extend((0..n).step_by(7).map(|k| (k, 1, 9)));
        for small_first in [false, true] {
            let t = TableMem::new();
            if small_first {
                // A non-empty table takes the sorted, chunked path instead.
                t.insert(rows(&[(3, 5, 1), (n + 1, 1, 1)], 1));
            }
            t.insert(rows(&keys, 2));
            let got = contents(&t);
            let extra = if small_first { 2 } else { 0 };
            assert_eq!(got.len() as u64, n + extra, "small_first={small_first}");
            assert!(
                got.windows(2)
                    .all(|w| (w[0].0, -w[0].1) <= (w[1].0, -w[1].1))
            );
            for k in (0..n).step_by(7) {
                assert!(got.contains(&(k, 1, 9)) && !got.contains(&(k, 1, 0)), "{k}");
            }
            assert_eq!(t.rows.load(AtomicOrdering::Relaxed), n + extra);
            assert_eq!(t.min_et.load(AtomicOrdering::Relaxed), 1);
            assert_eq!(
                t.max_et.load(AtomicOrdering::Relaxed),
                if small_first { 5 } else { 1 }
            );
        }
    }
}
