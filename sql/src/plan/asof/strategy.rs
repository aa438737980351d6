//! Matching spine rows to versions: per-row point lookups (`seek`) when the spine
//! is small against the history, otherwise a streaming merge of the sorted spine
//! with the history storage returns sorted by (key, event time descending).
//! Memory stays bounded by the spine plus one entity's versions.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, RecordBatch, RecordBatchOptions,
    new_null_array,
};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType as ArrowType, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use datafusion::physical_expr::PhysicalExpr;
use hindsight_storage::{
    KeyRange, ReadAt, ScanIter, ScanOptions, Snapshot, SystemAt, TableDef, encode_key_arrays,
};

use super::contract::MatchOp;
use super::spine::{
    Emit, Spine, SpineGather, SpineRow, cmp_keys, in_parallel, key_prefix, split_at_keys,
};
use crate::error::SqlError;

/// What a join matches and reads, shared by the plan node (and its rebuilt copies)
/// and the job that executes it.
#[derive(Debug)]
pub(super) struct JoinSpec {
    /// The spine's key expressions, in the table's key order.
    pub(super) keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The spine's time expression.
    pub(super) time: Arc<dyn PhysicalExpr>,
    pub(super) op: MatchOp,
    /// Staleness bound in microseconds (`s.ts - f.ts <= bound`), if any.
    pub(super) bound: Option<i64>,
    pub(super) def: Arc<TableDef>,
    pub(super) snapshot: Snapshot,
    pub(super) system: SystemAt,
    /// Smallest share of the spine worth its own thread (at least 1).
    pub(super) rows_per_thread: usize,
}

/// One version of the current entity in the history stream.
#[derive(Clone, Copy)]
pub(super) struct Version {
    pub(super) et: i64,
    pub(super) tomb: bool,
    pub(super) batch: usize,
    pub(super) row: usize,
}

/// One batch of the history stream with its internal columns downcast once.
pub(super) struct HistoryBatch {
    pub(super) batch: RecordBatch,
    pub(super) keys: BinaryArray,
    pub(super) et: ScalarBuffer<i64>,
    pub(super) tomb: BooleanArray,
}

impl HistoryBatch {
    /// `batch` holds the `ncols` fetched columns (event time first), `_deleted`, `_key`.
    pub(super) fn new(batch: RecordBatch, ncols: usize) -> Result<HistoryBatch, SqlError> {
        let missing = || SqlError::internal("history scan without its internal columns");
        let keys = batch
            .column(ncols + 1)
            .as_binary_opt::<i32>()
            .ok_or_else(missing)?
            .clone();
        let et = batch
            .column(0)
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(missing)?
            .values()
            .clone();
        let tomb = batch
            .column(ncols)
            .as_boolean_opt()
            .ok_or_else(missing)?
            .clone();
        Ok(HistoryBatch {
            batch,
            keys,
            et,
            tomb,
        })
    }

    /// From `row` on, skip keys before `key` and collect `key`'s versions (tagged with
    /// batch number `number`), leaving `row` after them. Returns `Less` if the batch
    /// ended before a greater key (the entity may continue in the next batch).
    pub(super) fn versions_of(
        &self,
        prefix: u128,
        key: &[u8],
        row: &mut usize,
        number: usize,
        versions: &mut Vec<Version>,
    ) -> Ordering {
        while *row < self.keys.len() {
            let k = self.keys.value(*row);
            match cmp_keys(key_prefix(k), k, prefix, key) {
                Ordering::Less => {}
                Ordering::Greater => return Ordering::Greater,
                Ordering::Equal => versions.push(Version {
                    et: self.et.get(*row).copied().unwrap_or(i64::MIN),
                    tomb: self.tomb.value(*row),
                    batch: number,
                    row: *row,
                }),
            }
            *row += 1;
        }
        Ordering::Less
    }
}

/// Where one output column of a running join comes from.
#[derive(Clone, Copy)]
pub(super) enum Source {
    /// A spine column.
    Spine(usize),
    /// A column read from the table, by position in [`Job::fetched`].
    Fetched(usize),
}

/// Everything the blocking part of the operator needs.
pub(super) struct Job {
    pub(super) schema: SchemaRef,
    /// The source of each column of `schema`.
    pub(super) output: Vec<Source>,
    /// The table columns read: the event time first, then those in the output.
    pub(super) fetched: Vec<usize>,
    pub(super) spec: Arc<JoinSpec>,
    /// How many threads may work on one join.
    pub(super) threads: usize,
}

pub(super) const OUT_ROWS: usize = 8192;

impl Job {
    pub(super) fn run(&self, batches: Vec<RecordBatch>, emit: Emit<'_>) -> Result<(), SqlError> {
        let (spine, mut rows, unmatched) = self.prepare(batches)?;
        let history = self.spec.snapshot.version_count(self.spec.def.id) as usize;
        let threads = self
            .threads
            .min(rows.len() / self.spec.rows_per_thread)
            .max(1);
        // Per-row seeks cost a few microseconds each; a merge costs tens of
        // nanoseconds per history version. Seek when the spine is much smaller.
        if self.spec.op.backward() && rows.len().saturating_mul(64) < history {
            let per = rows.len().div_ceil(threads).max(1);
            let parts: Vec<&[SpineRow]> = rows.chunks(per).collect();
            in_parallel(parts, emit, &|part, emit| self.seek(&spine, part, emit))?;
        } else {
            spine.sort(&mut rows);
            let parts = split_at_keys(&spine, &rows, threads);
            in_parallel(parts, emit, &|part, emit| self.merge(&spine, part, emit))?;
        }
        // Spine rows with a NULL key or time never match.
        for chunk in unmatched.chunks(OUT_ROWS) {
            let right: Vec<Option<(usize, usize)>> = vec![None; chunk.len()];
            if !emit(self.gather(&spine.batches, chunk, &[], &right)?) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Encode the keys and evaluate the times of every spine row; rows with a NULL
    /// key or time go apart (as (batch, row)).
    #[allow(clippy::type_complexity)]
    pub(super) fn prepare(
        &self,
        batches: Vec<RecordBatch>,
    ) -> Result<(Spine, Vec<SpineRow>, Vec<(u32, u32)>), SqlError> {
        let key_types = self.spec.def.key_types();
        let key_names: Vec<String> = self
            .spec
            .def
            .key
            .iter()
            .filter_map(|&i| self.spec.def.columns.get(i).map(|c| c.name.clone()))
            .collect();
        let ts_type = ArrowType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
        let mut rows = Vec::new();
        let mut unmatched = Vec::new();
        let mut keys = Vec::with_capacity(batches.len());
        let mut key_len: Option<usize> = None;
        let mut short = true;
        for (bi, b) in batches.iter().enumerate() {
            let n = b.num_rows();
            let time = cast(&self.spec.time.evaluate(b)?.into_array(n)?, &ts_type)?;
            let time = time.as_primitive::<TimestampMicrosecondType>();
            let key_arrays = self
                .spec
                .keys
                .iter()
                .zip(&key_types)
                .map(|(k, &t)| {
                    let a = k.evaluate(b)?.into_array(n)?;
                    Ok(cast(
                        &a,
                        &hindsight_storage::DataType::Scalar(t).arrow_type(),
                    )?)
                })
                .collect::<Result<Vec<ArrayRef>, SqlError>>()?;
            let refs: Vec<&dyn Array> = key_arrays.iter().map(|a| a.as_ref()).collect();
            let encoded = encode_key_arrays(&refs, &key_types, &key_names)?;
            for r in 0..n {
                let at = (bi as u32, r as u32);
                if time.is_null(r) || encoded.is_null(r) {
                    unmatched.push(at);
                } else {
                    let key = encoded.value(r);
                    short &= key.len() <= 16 && *key_len.get_or_insert(key.len()) == key.len();
                    rows.push(SpineRow {
                        prefix: key_prefix(key),
                        time: time.value(r),
                        batch: at.0,
                        row: at.1,
                    });
                }
            }
            keys.push(encoded);
        }
        let spine = Spine {
            batches,
            keys,
            short: key_len.filter(|_| short),
        };
        Ok((spine, rows, unmatched))
    }

    /// Per-row point lookups (small spines), in spine order.
    pub(super) fn seek(
        &self,
        spine: &Spine,
        rows: &[SpineRow],
        emit: Emit<'_>,
    ) -> Result<(), SqlError> {
        for chunk in rows.chunks(OUT_ROWS) {
            let requests: Vec<(Vec<u8>, ReadAt)> = chunk
                .iter()
                .map(|s| {
                    let t = if self.spec.op == MatchOp::Gt {
                        s.time.saturating_sub(1)
                    } else {
                        s.time
                    };
                    let mut at = ReadAt::as_of(t).known_at(self.spec.system);
                    at.ttl_reference = Some(s.time);
                    if let Some(b) = self.spec.bound {
                        at = at.with_min_event_time(s.time.saturating_sub(b));
                    }
                    (spine.key(s).to_vec(), at)
                })
                .collect();
            let right =
                self.spec
                    .snapshot
                    .lookup_each(&self.spec.def, &requests, Some(&self.fetched))?;
            let left_idx: Vec<(u32, u32)> = chunk.iter().map(|s| (s.batch, s.row)).collect();
            let left = SpineGather::new(&spine.batches, &left_idx);
            let batch = self.assemble(
                chunk.len(),
                |c| left.column(c),
                |j, _| {
                    right
                        .columns()
                        .get(j)
                        .cloned()
                        .ok_or_else(|| SqlError::internal("as-of lookup lost a column"))
                },
            )?;
            if !emit(batch) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Streaming merge of spine rows sorted by (key, time) with the history of
    /// their key range.
    pub(super) fn merge(
        &self,
        spine: &Spine,
        rows: &[SpineRow],
        emit: Emit<'_>,
    ) -> Result<(), SqlError> {
        let Some(scan) = self.history_scan(spine, rows) else {
            return Ok(());
        };
        let mut history = HistoryWindow::new(self.spec.snapshot.scan(&self.spec.def, &scan)?);
        let mut versions: Vec<Version> = Vec::new();
        let mut out_left: Vec<(u32, u32)> = Vec::with_capacity(OUT_ROWS);
        let mut out_right: Vec<Option<(usize, usize)>> = Vec::with_capacity(OUT_ROWS);
        let mut i = 0;
        while let Some(head) = rows.get(i) {
            let mut buf = [0u8; 16];
            let (prefix, key) = (head.prefix, spine.key_of(head, &mut buf));
            let group = rows[i..]
                .iter()
                .take_while(|r| spine.same_key(r, head))
                .count();
            history.versions_of(prefix, key, self.fetched.len(), &mut versions)?;
            for s in &rows[i..i + group] {
                out_left.push((s.batch, s.row));
                out_right.push(self.pick(&versions, s.time).map(|v| (v.batch, v.row)));
            }
            i += group;
            if out_left.len() >= OUT_ROWS || i == rows.len() {
                let batches: Vec<&RecordBatch> = history.window.iter().map(|h| &h.batch).collect();
                let right: Vec<Option<(usize, usize)>> = out_right
                    .iter()
                    .map(|o| o.map(|(b, r)| (b - history.base, r)))
                    .collect();
                if !emit(self.gather(&spine.batches, &out_left, &batches, &right)?) {
                    return Ok(());
                }
                out_left.clear();
                out_right.clear();
                history.release_passed();
            }
        }
        Ok(())
    }

    /// The history scan a merge of `rows` needs: their key range, and the
    /// event-time window their times can reach through the bound and the TTL.
    /// `None` for no rows.
    fn history_scan(&self, spine: &Spine, rows: &[SpineRow]) -> Option<ScanOptions> {
        let (first, last) = (rows.first()?, rows.last()?);
        let min_t = rows.iter().map(|r| r.time).min().unwrap_or(i64::MIN);
        let max_t = rows.iter().map(|r| r.time).max().unwrap_or(i64::MAX);
        let table_ttl = self.spec.def.options.ttl_micros;
        let (from, to) = if self.spec.op.backward() {
            let reach = [table_ttl, self.spec.bound].into_iter().flatten().min();
            (reach.map_or(i64::MIN, |r| min_t.saturating_sub(r)), max_t)
        } else {
            let reach = self.spec.bound;
            (min_t, reach.map_or(i64::MAX, |b| max_t.saturating_add(b)))
        };
        let mut end = spine.key(last).to_vec();
        end.push(0);
        let mut opts = ScanOptions::history(from, to);
        opts.projection = Some(self.fetched.clone());
        opts.at = opts.at.known_at(self.spec.system);
        opts.key_range = KeyRange::encoded(Some(spine.key(first).to_vec()), Some(end));
        opts.include_tombstones = true;
        opts.with_key_bytes = true;
        opts.batch_rows = 16_384;
        Some(opts)
    }

    /// The matching version for spine time `t` among one entity's versions (sorted by
    /// event time descending, newest write first on ties), after TTL and bound checks.
    pub(super) fn pick<'v>(&self, versions: &'v [Version], t: i64) -> Option<&'v Version> {
        let v = match self.spec.op {
            MatchOp::Ge => versions.get(versions.partition_point(|v| v.et > t)),
            MatchOp::Gt => versions.get(versions.partition_point(|v| v.et >= t)),
            MatchOp::Le | MatchOp::Lt => {
                let j = if self.spec.op == MatchOp::Le {
                    versions.partition_point(|v| v.et >= t)
                } else {
                    versions.partition_point(|v| v.et > t)
                };
                let last = versions.get(j.checked_sub(1)?)?;
                // First (newest write) of the run with the smallest qualifying event time.
                versions.get(versions.partition_point(|v| v.et > last.et))
            }
        }?;
        if v.tomb {
            return None;
        }
        if self.spec.op.backward() {
            if let Some(ttl) = self.spec.def.options.ttl_micros
                && v.et < t.saturating_sub(ttl)
            {
                return None;
            }
            if let Some(b) = self.spec.bound
                && v.et < t.saturating_sub(b)
            {
                return None;
            }
        } else if let Some(b) = self.spec.bound
            && v.et > t.saturating_add(b)
        {
            return None;
        }
        Some(v)
    }

    /// Output rows: spine rows `left`, with the fetched table columns of `right`
    /// (batch in `history`, row; NULL if None).
    pub(super) fn gather(
        &self,
        spine: &[RecordBatch],
        left: &[(u32, u32)],
        history: &[&RecordBatch],
        right: &[Option<(usize, usize)>],
    ) -> Result<RecordBatch, SqlError> {
        let spine = SpineGather::new(spine, left);
        let indices: Vec<(usize, usize)> = right
            .iter()
            .map(|o| o.unwrap_or((history.len(), 0)))
            .collect();
        self.assemble(
            left.len(),
            |c| spine.column(c),
            |j, ty| {
                let null = new_null_array(ty, 1);
                let mut sources: Vec<&dyn Array> =
                    history.iter().map(|b| b.column(j).as_ref()).collect();
                sources.push(null.as_ref());
                Ok(datafusion::arrow::compute::interleave(&sources, &indices)?)
            },
        )
    }

    /// An output batch of `rows` rows: each column from the spine (by spine column)
    /// or from what was fetched from the table (by position in `fetched`, with the
    /// output type).
    pub(super) fn assemble(
        &self,
        rows: usize,
        spine: impl Fn(usize) -> Result<ArrayRef, SqlError>,
        fetched: impl Fn(usize, &ArrowType) -> Result<ArrayRef, SqlError>,
    ) -> Result<RecordBatch, SqlError> {
        let cols = self
            .output
            .iter()
            .zip(self.schema.fields())
            .map(|(o, f)| match *o {
                Source::Spine(c) => spine(c),
                Source::Fetched(j) => fetched(j, f.data_type()),
            })
            .collect::<Result<Vec<ArrayRef>, SqlError>>()?;
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }
}

/// The history stream of a merge as a window of batches: those from the batch
/// under the cursor on, as far as pending output still points into them.
struct HistoryWindow {
    history: ScanIter,
    window: VecDeque<HistoryBatch>,
    /// Batch number of `window[0]`.
    base: usize,
    /// (batch number, row) of the next unread version.
    cursor: (usize, usize),
    exhausted: bool,
}

impl HistoryWindow {
    fn new(history: ScanIter) -> Self {
        HistoryWindow {
            history,
            window: VecDeque::new(),
            base: 0,
            cursor: (0, 0),
            exhausted: false,
        }
    }

    /// Advance the cursor to `key` (keys come in ascending order) and collect its
    /// versions into `versions` (cleared first). `ncols`: fetched columns per batch.
    fn versions_of(
        &mut self,
        prefix: u128,
        key: &[u8],
        ncols: usize,
        versions: &mut Vec<Version>,
    ) -> Result<(), SqlError> {
        versions.clear();
        loop {
            while !self.exhausted && self.cursor.0 >= self.base + self.window.len() {
                match self.history.next() {
                    Some(b) => self.window.push_back(HistoryBatch::new(b?, ncols)?),
                    None => self.exhausted = true,
                }
            }
            let Some(h) = self.window.get(self.cursor.0 - self.base) else {
                return Ok(());
            };
            let (batch, row) = &mut self.cursor;
            if h.versions_of(prefix, key, row, *batch, versions) != Ordering::Less {
                return Ok(());
            }
            self.cursor = (self.cursor.0 + 1, 0);
        }
    }

    /// Drop the batches before the cursor (no output refers to them any more).
    fn release_passed(&mut self) {
        while self.base < self.cursor.0 && !self.window.is_empty() {
            self.window.pop_front();
            self.base += 1;
        }
    }
}
