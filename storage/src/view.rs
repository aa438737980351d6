//! Consistent read views and point lookups.
//!
//! A [`View`] pins one memtable generation, one [`FileSet`] of the SST files and one
//! catalog. Together with a sequence number it answers "the newest version of key K
//! with event time <= T known at sequence S".
//!
//! Lookup invariant: late data can sit in a newer source than the newest version, so
//! the lookup never stops at the first source that has the key. It visits memtables,
//! then level-0 files newest first, then one file per deeper level, and skips a
//! source only when its bloom filter rules the key out or its time and sequence
//! ranges show it cannot hold a better candidate than the best found so far.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::error::{DecodeError, Error, Result};
use crate::fileset::{FileSet, NUM_LEVELS, SstFile};
use crate::keycodec::{decode_key, decode_single_key};
use crate::memtable::{MemEntry, MemTable};
use crate::rowcodec;
use crate::sst::bloom::key_hash;
use crate::sst::{BlockView, RowRef};
use crate::types::{ColumnRole, DataType, ScalarType, TableDef, TableId, Value};

/// Which system time (database knowledge) a read sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemAt {
    /// Everything committed when the snapshot was taken.
    Current,
    /// Batches with sequence <= this.
    Seq(u64),
    /// Batches committed at or before this time (microseconds since the epoch).
    Micros(i64),
}

/// The point in both time axes a read is answered at, and its TTL reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAt {
    /// Newest event time considered (inclusive); `None`: no bound (latest).
    pub event_time: Option<i64>,
    pub system: SystemAt,
    /// TTL reference time: versions with event time < reference - ttl are not
    /// candidates. `None` disables the table's TTL for this read.
    pub ttl_reference: Option<i64>,
    /// An extra lower bound on the candidate's event time (an explicit staleness
    /// bound such as an ASOF JOIN's `s.ts - f.ts <= INTERVAL '1 day'`).
    pub min_event_time: i64,
}

impl ReadAt {
    /// Current state: the latest version, TTL applied relative to `now`.
    pub fn latest(now_micros: i64) -> Self {
        ReadAt {
            event_time: None,
            system: SystemAt::Current,
            ttl_reference: Some(now_micros),
            min_event_time: i64::MIN,
        }
    }

    /// Event-time snapshot at `t`, TTL applied relative to `t`.
    pub fn as_of(t: i64) -> Self {
        ReadAt {
            event_time: Some(t),
            system: SystemAt::Current,
            ttl_reference: Some(t),
            min_event_time: i64::MIN,
        }
    }

    /// The same read as the database knew it at `system`.
    pub fn known_at(mut self, system: SystemAt) -> Self {
        self.system = system;
        self
    }

    /// The same read ignoring the table's TTL.
    pub fn without_ttl(mut self) -> Self {
        self.ttl_reference = None;
        self
    }

    /// Oldest event time a candidate may have under `table`'s TTL.
    pub(crate) fn floor(&self, table: &TableDef) -> i64 {
        let ttl = match (self.ttl_reference, table.options.ttl_micros) {
            (Some(r), Some(ttl)) => r.saturating_sub(ttl),
            _ => i64::MIN,
        };
        ttl.max(self.min_event_time)
    }

    /// The same read with an extra lower bound on the event time of candidates.
    pub fn with_min_event_time(mut self, t: i64) -> Self {
        self.min_event_time = t;
        self
    }

    pub(crate) fn et_max(&self) -> i64 {
        self.event_time.unwrap_or(i64::MAX)
    }
}

/// A version returned by a point lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Values of the projected columns, in projection order.
    pub values: Vec<Value>,
    pub event_time: i64,
    pub seq: u64,
}

/// Columns to return, resolved once against a table definition.
#[derive(Clone, Debug)]
pub struct Projection {
    cols: Vec<ColumnRole>,
    /// The feature columns among `cols`.
    features: Vec<usize>,
    /// Type of each projected column.
    types: Vec<DataType>,
    feature_types: Vec<DataType>,
    key_types: Vec<ScalarType>,
    need_key: bool,
}

impl Projection {
    /// Project `columns` (indices into the table's columns); `None`: all columns.
    pub fn new(table: &TableDef, columns: Option<&[usize]>) -> Result<Projection> {
        let roles = table.roles();
        let cols = match columns {
            None => roles.clone(),
            Some(cs) => cs
                .iter()
                .map(|&c| {
                    roles.get(c).copied().ok_or_else(|| {
                        Error::InvalidArgument(format!("column index {c} out of range"))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let all: Vec<usize> = (0..table.columns.len()).collect();
        let types = columns
            .unwrap_or(&all)
            .iter()
            .filter_map(|&c| table.columns.get(c).map(|c| c.data_type))
            .collect();
        Ok(Projection {
            need_key: cols.iter().any(|r| matches!(r, ColumnRole::Key(_))),
            features: cols
                .iter()
                .filter_map(|r| match r {
                    ColumnRole::Feature(f) => Some(*f),
                    _ => None,
                })
                .collect(),
            cols,
            types,
            feature_types: table.feature_types(),
            key_types: table.key_types(),
        })
    }

    /// Roles of the projected columns.
    pub fn roles(&self) -> &[ColumnRole] {
        &self.cols
    }

    /// Types of the projected columns.
    pub fn types(&self) -> &[DataType] {
        &self.types
    }

    /// Types of the table's key columns, in key order.
    pub fn key_types(&self) -> &[ScalarType] {
        &self.key_types
    }
}

/// Sequence number of the rows of a transaction's uncommitted writes (see
/// `Snapshot::with_overlay`): above every real sequence, so they win ties, and visible
/// to reads of the current state regardless of the snapshot's sequence.
pub(crate) const OVERLAY_SEQ: u64 = u64::MAX / 2;

/// True if a row committed at `seq` is visible to a read at `seq_max`.
#[inline]
pub(crate) fn visible(seq: u64, seq_max: u64) -> bool {
    seq <= seq_max || seq == OVERLAY_SEQ
}

/// A pinned set of memtables, files and catalog.
#[derive(Clone)]
pub(crate) struct View {
    pub mem: Arc<MemTable>,
    /// Sealed memtables waiting for flush, newest first.
    pub imm: Vec<Arc<MemTable>>,
    pub files: Arc<FileSet>,
    pub catalog: Arc<Catalog>,
    /// Uncommitted writes of a transaction (current-state reads only).
    pub overlay: Option<Arc<MemTable>>,
}

/// What a point lookup looks for in each source.
struct Probe<'k> {
    key: &'k [u8],
    /// The key's bloom hash.
    hash: u64,
    et_max: i64,
    seq_max: u64,
    /// Feature columns the caller will read (prefetched).
    features: &'k [usize],
}

/// Where a lookup found its candidate.
pub(crate) enum HitSource<'a> {
    Mem(MemEntry),
    File(&'a Arc<SstFile>, RowRef, BlockView<'a>),
}

/// The best candidate version of a key.
pub(crate) struct Hit<'a> {
    pub et: i64,
    pub seq: u64,
    pub tomb: bool,
    pub src: HitSource<'a>,
}

impl View {
    /// Memtables, newest first (the overlay, if any, before all of them).
    pub(crate) fn memtables(&self) -> impl Iterator<Item = &Arc<MemTable>> {
        self.overlay
            .iter()
            .chain(std::iter::once(&self.mem))
            .chain(self.imm.iter())
    }

    /// The newest version of `key` with event time <= `et_max` and sequence <=
    /// `seq_max`, across all sources (tombstones included). `features`: the feature
    /// columns the caller will read from the hit (prefetched).
    pub(crate) fn find(
        &self,
        table: TableId,
        key: &[u8],
        et_max: i64,
        seq_max: u64,
        features: &[usize],
    ) -> Result<Option<Hit<'_>>> {
        let mut best: Option<Hit<'_>> = None;
        let beats = |et: i64, seq: u64, best: &Option<Hit<'_>>| {
            best.as_ref().is_none_or(|b| (et, seq) > (b.et, b.seq))
        };
        for m in self.memtables() {
            let Some(tm) = m.table(table) else { continue };
            let is_overlay = self.overlay.as_ref().is_some_and(|o| Arc::ptr_eq(o, m));
            let seq_max = if is_overlay { OVERLAY_SEQ } else { seq_max };
            use std::sync::atomic::Ordering::Relaxed;
            if tm.min_et.load(Relaxed) > et_max
                || best
                    .as_ref()
                    .is_some_and(|b| tm.max_et.load(Relaxed) < b.et)
            {
                continue;
            }
            if let Some(e) = tm.find(key, et_max, seq_max)
                && beats(e.et, e.seq, &best)
            {
                best = Some(Hit {
                    et: e.et,
                    seq: e.seq,
                    tomb: e.tomb,
                    src: HitSource::Mem(e),
                });
            }
        }
        let Some(files) = self.files.table(table) else {
            return Ok(best);
        };
        let hash = key_hash(key);
        let probe = Probe {
            key,
            hash,
            et_max,
            seq_max,
            features,
        };
        for f in files.level(0) {
            self.search_file(f, &probe, &mut best)?;
        }
        for level in 1..NUM_LEVELS {
            if let Some(f) = files.file_for_key(level, key) {
                self.search_file(f, &probe, &mut best)?;
            }
        }
        Ok(best)
    }

    fn search_file<'a>(
        &'a self,
        f: &'a Arc<SstFile>,
        p: &Probe<'_>,
        best: &mut Option<Hit<'a>>,
    ) -> Result<()> {
        let m = &f.meta.bounds;
        if !m.overlaps(Some(p.key), Some(p.key)) {
            return Ok(());
        }
        if m.min_et > p.et_max || m.min_seq > p.seq_max {
            return Ok(());
        }
        if let Some(b) = best.as_ref()
            && (m.max_et, m.max_seq) < (b.et, b.seq)
        {
            return Ok(());
        }
        let block = f.reader.seek_block(p.key);
        f.reader.prefetch_probe(p.key, p.hash, block, p.features);
        if !f.reader.may_contain(p.hash) {
            return Ok(());
        }
        if let Some(h) = f
            .reader
            .find(p.key, p.et_max, p.seq_max, block, p.features)?
            && best.as_ref().is_none_or(|b| (h.et, h.seq) > (b.et, b.seq))
        {
            *best = Some(Hit {
                et: h.et,
                seq: h.seq,
                tomb: h.tomb,
                src: HitSource::File(f, h.at, h.block),
            });
        }
        Ok(())
    }

    /// Point lookup with visibility, tombstones and TTL applied.
    pub(crate) fn get(
        &self,
        table: &TableDef,
        key: &[u8],
        at: &ReadAt,
        seq: u64,
        proj: &Projection,
    ) -> Result<Option<Row>> {
        let mut values = Vec::with_capacity(proj.cols.len());
        Ok(self
            .get_into(table, key, at, seq, proj, &mut values)?
            .map(|(event_time, seq)| Row {
                values,
                event_time,
                seq,
            }))
    }

    /// [`View::get`] into a reused buffer: `out` is cleared and, if the entity is
    /// present, receives the projected values; returns the version's (event time,
    /// sequence).
    pub(crate) fn get_into(
        &self,
        table: &TableDef,
        key: &[u8],
        at: &ReadAt,
        seq: u64,
        proj: &Projection,
        out: &mut Vec<Value>,
    ) -> Result<Option<(i64, u64)>> {
        out.clear();
        let Some(hit) = self.find(table.id, key, at.et_max(), seq, &proj.features)? else {
            return Ok(None);
        };
        if hit.tomb || hit.et < at.floor(table) {
            return Ok(None);
        }
        materialize(key, &hit, proj, out)?;
        Ok(Some((hit.et, hit.seq)))
    }
}

/// Decode the projected columns of a hit into `values`.
fn materialize(
    key: &[u8],
    hit: &Hit<'_>,
    proj: &Projection,
    values: &mut Vec<Value>,
) -> Result<()> {
    let key_error = |e: DecodeError| Error::corruption("<key>", e.offset as u64, e.detail);
    let (single, many);
    let key_values: &[Value] = match (proj.need_key, proj.key_types.as_slice()) {
        (false, _) => &[],
        (true, &[t]) => {
            single = [decode_single_key(key, t).map_err(key_error)?];
            &single
        }
        (true, types) => {
            many = decode_key(key, types).map_err(key_error)?;
            &many
        }
    };
    match &hit.src {
        HitSource::Mem(e) => {
            let feats = rowcodec::decode_values(e.row(), &proj.feature_types)
                .map_err(|d| Error::corruption("<memtable>", d.offset as u64, d.detail))?;
            for r in &proj.cols {
                values.push(match *r {
                    ColumnRole::Feature(fi) => feats.get(fi).cloned().unwrap_or(Value::Null),
                    _ => key_or_time(r, key_values, hit.et),
                });
            }
        }
        HitSource::File(f, at, block) => {
            // Decoded in place: a `Result<Value, Error>` per value, moved through
            // closures, cost a fifth of an in-cache lookup in stack copies.
            for r in &proj.cols {
                values.push(match *r {
                    ColumnRole::Feature(fi) => match block.feature_value(fi, at.row) {
                        Ok(v) => v,
                        Err(e) => return Err(f.reader.block_error(at.block, e)),
                    },
                    _ => key_or_time(r, key_values, hit.et),
                });
            }
        }
    }
    Ok(())
}

/// The value of a key or event-time column (NULL for a feature column: the callers
/// decode those from their source).
fn key_or_time(role: &ColumnRole, key_values: &[Value], et: i64) -> Value {
    match *role {
        ColumnRole::Key(p) => key_values.get(p).cloned().unwrap_or(Value::Null),
        ColumnRole::EventTime => Value::Timestamp(et),
        ColumnRole::Feature(_) => Value::Null,
    }
}
