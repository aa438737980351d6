//! Scans to Arrow record batches: latest-per-key snapshots and version history.
//!
//! A scan merges the table's memtables, level-0 files and levels (see `merge`),
//! selects rows, and materializes only the selected rows of the projected columns.
//! Output is streamed in batches of about `batch_rows` rows, in internal order
//! (entity key ascending, event time descending, sequence descending); memory stays
//! bounded by one block per source plus one output batch.
//!
//! Selection rules:
//! - `Latest` (current state, `as_of`): per key, the first row in internal order with
//!   event time <= T and sequence <= S; the key is omitted if that row is a tombstone
//!   or older than the TTL floor. Nothing older than the first visible row matters.
//! - `History`: every row with event time in [from, to] and sequence <= S.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Int64Array, RecordBatch, TimestampMicrosecondArray,
    UInt32Array, UInt64Array,
};
use arrow_schema::{Field, Schema, SchemaRef};

use crate::error::{Error, Result};
use crate::fileset::NUM_LEVELS;
use crate::keycodec::{decode_key_columns, key_eq};
use crate::merge::{BlockPrune, FileSource, KeyRange, MemSource, Merger, Source, SrcChunk};
use crate::types::{ColumnRole, DataType, ScalarType, TableDef};
use crate::version_run::VersionRun;
use crate::view::{ReadAt, View, visible};

/// Name of the commit-time column added by [`ScanOptions::with_system_time`].
pub const SYSTEM_TIME_COLUMN: &str = "_system_time";
/// Name of the tombstone flag column added by [`ScanOptions::include_tombstones`].
pub const DELETED_COLUMN: &str = "_deleted";
/// Name of the sequence column added by [`ScanOptions::with_seq`].
pub const SEQ_COLUMN: &str = "_seq";
/// Name of the encoded-key column added by [`ScanOptions::with_key_bytes`].
pub const KEY_COLUMN: &str = "_key";

/// What a scan returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanMode {
    /// Each entity's newest visible version (current state or `as_of`).
    Latest,
    /// Every version with event time in `[from, to]` (inclusive).
    History { from: i64, to: i64 },
}

/// Options of a scan.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    pub mode: ScanMode,
    /// Event-time bound and TTL reference (used by `Latest`), and system time (both).
    pub at: ReadAt,
    pub key_range: KeyRange,
    /// Column indices to return; `None`: every column.
    pub projection: Option<Vec<usize>>,
    /// Add `_system_time`: the commit time of each version.
    pub with_system_time: bool,
    /// `History` only: also return tombstones, flagged in a `_deleted` column.
    pub include_tombstones: bool,
    /// Add `_seq`: the commit sequence of each version.
    pub with_seq: bool,
    /// Add `_key`: the encoded entity key (a log's row id), for writing tombstones.
    pub with_key_bytes: bool,
    /// Target rows per output batch.
    pub batch_rows: usize,
}

impl ScanOptions {
    /// Current state of every entity at `now`.
    pub fn latest(at: ReadAt) -> Self {
        ScanOptions {
            mode: ScanMode::Latest,
            at,
            key_range: KeyRange::all(),
            projection: None,
            with_system_time: false,
            include_tombstones: false,
            with_seq: false,
            with_key_bytes: false,
            batch_rows: 8192,
        }
    }

    /// Every version with event time in `[from, to]`.
    pub fn history(from: i64, to: i64) -> Self {
        ScanOptions {
            mode: ScanMode::History { from, to },
            ..ScanOptions::latest(ReadAt::latest(0).without_ttl())
        }
    }
}

/// One output column.
#[derive(Clone, Copy, Debug)]
enum OutCol {
    Key(usize),
    EventTime(bool),
    Feature(usize, DataType),
    SystemTime,
    Deleted,
    Seq,
    KeyBytes,
}

/// Selected rows of a run of chunks.
#[derive(Default)]
pub(crate) struct Selection {
    chunks: Vec<Arc<SrcChunk>>,
    rows: Vec<(usize, usize)>,
    /// `rows` as maximal runs of consecutive rows of one chunk: (chunk, first row, length).
    runs: Vec<(usize, usize, usize)>,
}

impl Selection {
    #[inline]
    pub(crate) fn push(&mut self, chunk: &Arc<SrcChunk>, row: usize) {
        let idx = match self.chunks.last() {
            Some(c) if Arc::ptr_eq(c, chunk) => self.chunks.len() - 1,
            _ => {
                self.chunks.push(chunk.clone());
                self.chunks.len() - 1
            }
        };
        self.rows.push((idx, row));
        match self.runs.last_mut() {
            Some((c, start, len)) if *c == idx && *start + *len == row => *len += 1,
            _ => self.runs.push((idx, row, 1)),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    fn take(&mut self) -> Selection {
        std::mem::take(self)
    }

    /// Gather one column across the selected rows: zero-copy when the selection is
    /// one run, a copy of whole runs when they are long, row by row otherwise.
    fn gather(&self, arrays: &[ArrayRef]) -> Result<ArrayRef> {
        if self.runs.len().saturating_mul(8) <= self.rows.len() {
            let slices = self
                .runs
                .iter()
                .map(|&(c, start, len)| {
                    arrays
                        .get(c)
                        .map(|a| a.slice(start, len))
                        .ok_or_else(|| Error::InvalidArgument("selection chunk missing".into()))
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            return match slices.as_slice() {
                [only] => Ok(only.clone()),
                _ => {
                    let refs: Vec<&dyn Array> = slices.iter().map(|a| a.as_ref()).collect();
                    arrow_select::concat::concat(&refs).map_err(arrow_err)
                }
            };
        }
        if let ([only], Some(_)) = (arrays, self.chunks.first()) {
            let idx = UInt32Array::from_iter_values(self.rows.iter().map(|&(_, r)| r as u32));
            return arrow_select::take::take(only.as_ref(), &idx, None).map_err(arrow_err);
        }
        let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
        arrow_select::interleave::interleave(&refs, &self.rows).map_err(arrow_err)
    }

    /// Gather one of the chunks' internal columns, typed.
    fn internal<A: Array + Clone + 'static>(&self, col: impl Fn(&SrcChunk) -> &A) -> Result<A> {
        let arrays: Vec<ArrayRef> = self
            .chunks
            .iter()
            .map(|c| Arc::new(col(c).clone()) as ArrayRef)
            .collect();
        let a = self.gather(&arrays)?;
        a.as_any()
            .downcast_ref::<A>()
            .cloned()
            .ok_or_else(|| Error::InvalidArgument("internal column of the wrong type".into()))
    }

    fn keys(&self) -> Result<BinaryArray> {
        self.internal(|c| &c.keys)
    }

    fn event_times(&self) -> Result<Int64Array> {
        self.internal(|c| &c.et)
    }

    fn seqs(&self) -> Result<UInt64Array> {
        self.internal(|c| &c.seq)
    }

    fn tombs(&self) -> Result<BooleanArray> {
        self.internal(|c| &c.tomb)
    }

    fn features(&self, f: usize, ty: DataType) -> Result<ArrayRef> {
        let arrays = self
            .chunks
            .iter()
            .map(|c| c.feature(f, ty))
            .collect::<Result<Vec<_>>>()?;
        self.gather(&arrays)
    }

    fn system_times(&self) -> Result<Vec<i64>> {
        self.rows
            .iter()
            .map(|&(c, r)| match self.chunks.get(c) {
                Some(ch) => ch.commit_time(ch.seq.value(r)),
                None => Ok(0),
            })
            .collect()
    }

    /// All internal columns and every feature, as a [`VersionRun`] (compaction output).
    pub(crate) fn to_versions(&self, feature_types: &[DataType]) -> Result<VersionRun> {
        Ok(VersionRun {
            keys: self.keys()?,
            et: self.event_times()?,
            seq: self.seqs()?,
            tomb: self.tombs()?,
            features: feature_types
                .iter()
                .enumerate()
                .map(|(f, &ty)| self.features(f, ty))
                .collect::<Result<Vec<_>>>()?,
        })
    }
}

pub(crate) fn arrow_err(e: arrow_schema::ArrowError) -> Error {
    Error::InvalidArgument(format!("arrow: {e}"))
}

/// Row selection state of a scan.
enum Selector {
    Latest {
        et_max: i64,
        seq_max: u64,
        floor: i64,
        key: Vec<u8>,
        have_key: bool,
        resolved: bool,
    },
    History {
        from: i64,
        to: i64,
        seq_max: u64,
        tombstones: bool,
    },
}

impl Selector {
    fn process(
        &mut self,
        chunk: &Arc<SrcChunk>,
        rows: std::ops::Range<usize>,
        out: &mut Selection,
    ) {
        match self {
            Selector::Latest {
                et_max,
                seq_max,
                floor,
                key,
                have_key,
                resolved,
            } => {
                for i in rows {
                    let k = chunk.keys.value(i);
                    if *have_key && key_eq(k, key) {
                        if *resolved {
                            continue;
                        }
                    } else {
                        key.clear();
                        key.extend_from_slice(k);
                        *have_key = true;
                        *resolved = false;
                    }
                    let et = chunk.et.value(i);
                    if et > *et_max || !visible(chunk.seq.value(i), *seq_max) {
                        continue;
                    }
                    *resolved = true;
                    if chunk.tomb.value(i) || et < *floor {
                        continue;
                    }
                    out.push(chunk, i);
                }
            }
            Selector::History {
                from,
                to,
                seq_max,
                tombstones,
            } => {
                for i in rows {
                    let et = chunk.et.value(i);
                    if et < *from || et > *to || !visible(chunk.seq.value(i), *seq_max) {
                        continue;
                    }
                    if !*tombstones && chunk.tomb.value(i) {
                        continue;
                    }
                    out.push(chunk, i);
                }
            }
        }
    }
}

/// A streaming scan; yields Arrow record batches.
pub struct ScanIter {
    merger: Merger,
    selector: Selector,
    selection: Selection,
    cols: Vec<OutCol>,
    schema: SchemaRef,
    key_types: Vec<ScalarType>,
    batch_rows: usize,
    done: bool,
}

impl ScanIter {
    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn materialize(&mut self) -> Result<RecordBatch> {
        let sel = self.selection.take();
        let need_keys = self
            .cols
            .iter()
            .any(|c| matches!(c, OutCol::Key(_) | OutCol::KeyBytes));
        let keys = if need_keys { Some(sel.keys()?) } else { None };
        let key_cols = match &keys {
            Some(k) if self.cols.iter().any(|c| matches!(c, OutCol::Key(_))) => {
                decode_key_columns(k, &self.key_types)
                    .map_err(|e| Error::corruption("<key>", e.offset as u64, e.detail))?
            }
            _ => Vec::new(),
        };
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.cols.len());
        for c in &self.cols {
            arrays.push(match *c {
                OutCol::Key(p) => key_cols
                    .get(p)
                    .cloned()
                    .ok_or_else(|| Error::InvalidArgument("key column missing".into()))?,
                OutCol::EventTime(tz) => ts_array(sel.event_times()?, tz),
                OutCol::Feature(f, ty) => sel.features(f, ty)?,
                OutCol::SystemTime => ts_array(Int64Array::from(sel.system_times()?), true),
                OutCol::Deleted => Arc::new(sel.tombs()?),
                OutCol::Seq => Arc::new(sel.seqs()?),
                OutCol::KeyBytes => match &keys {
                    Some(k) => Arc::new(k.clone()),
                    None => Arc::new(BinaryArray::from_iter_values(std::iter::empty::<&[u8]>())),
                },
            });
        }
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(sel.len())),
        )
        .map_err(arrow_err)
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while !self.done {
            if self.selection.len() >= self.batch_rows {
                return self.materialize().map(Some);
            }
            match self.merger.next_run()? {
                Some(run) => self
                    .selector
                    .process(&run.chunk, run.rows, &mut self.selection),
                None => self.done = true,
            }
        }
        if self.selection.len() > 0 {
            return self.materialize().map(Some);
        }
        Ok(None)
    }
}

impl Iterator for ScanIter {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_batch() {
            Ok(b) => b.map(Ok),
            Err(e) => {
                self.done = true;
                self.selection = Selection::default();
                Some(Err(e))
            }
        }
    }
}

fn ts_array(v: Int64Array, tz: bool) -> ArrayRef {
    let a = TimestampMicrosecondArray::new(v.values().clone(), v.nulls().cloned());
    Arc::new(if tz { a.with_timezone("+00:00") } else { a })
}

/// The sources of one table in a view, restricted to a key range and pruned.
pub(crate) fn table_sources(
    view: &View,
    table: &TableDef,
    range: &KeyRange,
    prune: BlockPrune,
    project: &[bool],
) -> Vec<Box<dyn Source>> {
    let feature_types = table.feature_types();
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    for m in view.memtables() {
        if let Some(tm) = m.table(table.id)
            && !tm.is_empty()
        {
            sources.push(Box::new(MemSource::new(
                m.clone(),
                tm,
                range,
                feature_types.clone(),
                project.to_vec(),
                4096,
            )));
        }
    }
    if let Some(files) = view.files.table(table.id) {
        for f in files.level(0) {
            sources.push(Box::new(FileSource::new(
                vec![f.clone()],
                range.clone(),
                prune,
                feature_types.len(),
            )));
        }
        for level in 1..NUM_LEVELS {
            let fs = files.level(level);
            if !fs.is_empty() {
                sources.push(Box::new(FileSource::new(
                    fs.to_vec(),
                    range.clone(),
                    prune,
                    feature_types.len(),
                )));
            }
        }
    }
    sources
}

/// Start a scan of `table` in `view` at sequence `seq`.
pub(crate) fn scan(
    view: &View,
    table: &TableDef,
    opts: &ScanOptions,
    seq: u64,
) -> Result<ScanIter> {
    let (cols, fields, project) = output_columns(table, opts)?;
    let (selector, prune) = selector(table, opts, seq);
    let sources = if opts.key_range.is_empty() {
        Vec::new()
    } else {
        table_sources(view, table, &opts.key_range, prune, &project)
    };
    Ok(ScanIter {
        merger: Merger::new(sources),
        selector,
        selection: Selection::default(),
        cols,
        schema: Arc::new(Schema::new(fields)),
        key_types: table.key_types(),
        batch_rows: opts.batch_rows.max(1),
        done: false,
    })
}

/// The scan's output columns and their fields (projected table columns, then the
/// internal columns asked for), and which features must be decoded.
fn output_columns(
    table: &TableDef,
    opts: &ScanOptions,
) -> Result<(Vec<OutCol>, Vec<Field>, Vec<bool>)> {
    let roles = table.roles();
    let columns: Vec<usize> = match &opts.projection {
        Some(p) => p.clone(),
        None => (0..table.columns.len()).collect(),
    };
    let mut cols = Vec::new();
    let mut fields = Vec::new();
    let mut project = vec![false; table.feature_types().len()];
    for &c in &columns {
        let (Some(col), Some(role)) = (table.columns.get(c), roles.get(c)) else {
            return Err(Error::InvalidArgument(format!(
                "column index {c} out of range"
            )));
        };
        fields.push(Field::new(
            &col.name,
            col.data_type.arrow_type(),
            col.nullable,
        ));
        cols.push(match *role {
            ColumnRole::Key(p) => OutCol::Key(p),
            ColumnRole::EventTime => {
                OutCol::EventTime(col.data_type == DataType::Scalar(ScalarType::TimestampTz))
            }
            ColumnRole::Feature(f) => {
                if let Some(p) = project.get_mut(f) {
                    *p = true;
                }
                OutCol::Feature(f, col.data_type)
            }
        });
    }
    let tombstones = opts.include_tombstones && matches!(opts.mode, ScanMode::History { .. });
    let internal = [
        (
            opts.with_system_time,
            SYSTEM_TIME_COLUMN,
            ScalarType::TimestampTz.arrow_type(),
            OutCol::SystemTime,
        ),
        (
            tombstones,
            DELETED_COLUMN,
            arrow_schema::DataType::Boolean,
            OutCol::Deleted,
        ),
        (
            opts.with_seq,
            SEQ_COLUMN,
            arrow_schema::DataType::UInt64,
            OutCol::Seq,
        ),
        (
            opts.with_key_bytes,
            KEY_COLUMN,
            arrow_schema::DataType::Binary,
            OutCol::KeyBytes,
        ),
    ];
    for (wanted, name, ty, col) in internal {
        if wanted {
            fields.push(Field::new(name, ty, false));
            cols.push(col);
        }
    }
    Ok((cols, fields, project))
}

/// The version selector of the scan's mode and the block pruning it allows.
fn selector(table: &TableDef, opts: &ScanOptions, seq: u64) -> (Selector, BlockPrune) {
    match opts.mode {
        ScanMode::Latest => {
            let et_max = opts.at.et_max();
            let floor = opts.at.floor(table);
            (
                Selector::Latest {
                    et_max,
                    seq_max: seq,
                    floor,
                    key: Vec::new(),
                    have_key: false,
                    resolved: false,
                },
                BlockPrune {
                    et_min: floor,
                    et_max,
                    seq_max: seq,
                },
            )
        }
        ScanMode::History { from, to } => (
            Selector::History {
                from,
                to,
                seq_max: seq,
                tombstones: opts.include_tombstones,
            },
            BlockPrune {
                et_min: from,
                et_max: to,
                seq_max: seq,
            },
        ),
    }
}
