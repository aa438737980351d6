//! The memtable: recent versions in a lock-free skiplist per table.
//!
//! Entries do not own their bytes: each points into the WAL payload of its batch,
//! shared by `Arc`, so applying a batch costs one allocation for the payload plus
//! one skiplist node per row. Readers never block writers.
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
use crossbeam_skiplist::SkipSet;

use crate::arrowutil::ColumnBuilder;
use crate::batch::{DecodedBatch, OpKind};
use crate::catalog::Catalog;
use crate::error::DecodeResult;
use crate::rowcodec;
use crate::types::{DataType, TableId};
use crate::versions::Versions;

/// One version in the memtable, pointing into its batch's payload.
#[derive(Clone, Debug)]
pub(crate) struct MemEntry {
    payload: Arc<[u8]>,
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
        let payload: Arc<[u8]> = Arc::from(key);
        MemEntry {
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
        self.key()
            .cmp(other.key())
            .then(other.et.cmp(&self.et))
            .then(other.seq.cmp(&self.seq))
    }
}

/// The versions of one table in a memtable.
pub(crate) struct TableMem {
    set: SkipSet<MemEntry>,
    pub min_et: AtomicI64,
    pub max_et: AtomicI64,
    pub rows: AtomicU64,
}

impl TableMem {
    fn new() -> Self {
        TableMem {
            set: SkipSet::new(),
            min_et: AtomicI64::new(i64::MAX),
            max_et: AtomicI64::new(i64::MIN),
            rows: AtomicU64::new(0),
        }
    }

    /// First entry of `key` with event time <= `et_max` and sequence <= `seq_max`.
    pub(crate) fn find(&self, key: &[u8], et_max: i64, seq_max: u64) -> Option<MemEntry> {
        let probe = MemEntry::probe(key, et_max, u64::MAX);
        for e in self.set.range((Bound::Included(probe), Bound::Unbounded)) {
            let e = e.value();
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
        for e in self.set.range((lower.clone(), Bound::Unbounded)) {
            let e = e.value();
            if end.is_some_and(|end| e.key() >= end) || out.len() >= limit {
                break;
            }
            out.push(e.clone());
        }
        out
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
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
            tables: RwLock::new(HashMap::new()),
            bytes: AtomicUsize::new(0),
            commits: RwLock::new(Vec::new()),
        }
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
    pub(crate) fn apply(&self, payload: &Arc<[u8]>, batch: &DecodedBatch, catalog: &Catalog) {
        if let Ok(mut c) = self.commits.write() {
            c.push((batch.seq, batch.commit_micros));
        }
        let mut cache: Option<(TableId, Arc<TableMem>)> = None;
        for op in &batch.ops {
            if catalog.table_by_id(op.table).is_none() {
                continue;
            }
            let tm = match &cache {
                Some((id, tm)) if *id == op.table => tm.clone(),
                _ => {
                    let tm = self.table_or_create(op.table);
                    cache = Some((op.table, tm.clone()));
                    tm
                }
            };
            let entry = MemEntry {
                payload: payload.clone(),
                key: (op.key.start as u32, op.key.end as u32),
                row: (op.row.start as u32, op.row.end as u32),
                et: op.et,
                seq: batch.seq,
                tomb: op.kind == OpKind::Delete,
            };
            tm.min_et.fetch_min(op.et, AtomicOrdering::Relaxed);
            tm.max_et.fetch_max(op.et, AtomicOrdering::Relaxed);
            tm.rows.fetch_add(1, AtomicOrdering::Relaxed);
            tm.set.insert(entry);
        }
        // Payload bytes plus skiplist node overhead per op.
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

/// Build [`Versions`] from memtable entries, decoding the features marked in
/// `project` (the others become all-NULL columns).
pub(crate) fn entries_to_versions(
    entries: &[MemEntry],
    feature_types: &[DataType],
    project: &[bool],
) -> DecodeResult<Versions> {
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
    Ok(Versions {
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
