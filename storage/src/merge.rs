//! Sources of versions and their k-way merge in internal order.
//!
//! A source yields [`SrcChunk`]s: decoded key, event-time, sequence and tombstone
//! columns, with feature columns decoded lazily (only when a selected row needs
//! them). The [`Merger`] interleaves sources in internal order and hands out *runs*:
//! consecutive rows of one chunk that precede every other source's next row. With a
//! single source (a fully compacted table) a run is a whole block, so scans cost a
//! tight loop per block rather than a heap operation per row.
//!
//! Invariants: every source yields rows in internal order and never a row outside
//! its key range; memory is bounded by one decoded block per source plus the rows a
//! consumer keeps.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::{Bound, Range};
use std::sync::{Arc, OnceLock};

use arrow_array::{Array, ArrayRef, BinaryArray, BooleanArray, Int64Array, UInt64Array};

use crate::arrowutil::null_array;
use crate::error::{Error, Result};
use crate::fileset::SstFile;
use crate::memtable::{MemEntry, MemTable, TableMem, entries_to_run};
use crate::sst::{COL_ET, COL_KEY, COL_SEQ, COL_TOMB, SstReader};
use crate::types::{DataType, ScalarType};

/// Encoded entity-key range `[start, end)`; `None` is unbounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Option<Vec<u8>>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange::default()
    }

    /// Keys from `start` (inclusive) to `end` (exclusive), already encoded.
    pub fn encoded(start: Option<Vec<u8>>, end: Option<Vec<u8>>) -> Self {
        KeyRange { start, end }
    }

    /// True if `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.start.as_deref().is_none_or(|s| key >= s)
            && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// True if the range can hold no key.
    pub fn is_empty(&self) -> bool {
        matches!((&self.start, &self.end), (Some(s), Some(e)) if s >= e)
    }
}

/// Where a chunk's feature columns come from.
enum Feats {
    File {
        file: Arc<SstFile>,
        block: usize,
        offset: usize,
    },
    Ready(Vec<ArrayRef>),
}

/// Where a chunk's commit times come from.
enum Times {
    File(Arc<SstFile>),
    Mem(Arc<MemTable>),
}

/// A decoded run of one source's versions.
pub(crate) struct SrcChunk {
    pub keys: BinaryArray,
    pub et: Int64Array,
    pub seq: UInt64Array,
    pub tomb: BooleanArray,
    feats: Feats,
    cache: Vec<OnceLock<ArrayRef>>,
    times: Times,
}

impl SrcChunk {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Feature `f` (of type `ty`) for every row of the chunk.
    pub(crate) fn feature(&self, f: usize, ty: DataType) -> Result<ArrayRef> {
        if let Some(a) = self.cache.get(f).and_then(OnceLock::get) {
            return Ok(a.clone());
        }
        let n = self.len();
        let arr = match &self.feats {
            Feats::Ready(v) => v.get(f).cloned().unwrap_or_else(|| null_array(ty, n)),
            Feats::File {
                file,
                block,
                offset,
            } => {
                let view = file.reader.block(*block)?;
                match view
                    .feature(f)
                    .map_err(|e| file.reader.block_error(*block, e))?
                {
                    None => null_array(ty, n),
                    Some((chunk, file_ty)) => {
                        if file_ty != ty {
                            return Err(Error::corruption(
                                file.reader.path(),
                                0,
                                format!(
                                    "feature {f} is {file_ty} in the file but {ty} in the table"
                                ),
                            ));
                        }
                        chunk
                            .to_arrow(ty)
                            .map_err(|e| file.reader.block_error(*block, e))?
                            .slice(*offset, n)
                    }
                }
            }
        };
        if let Some(c) = self.cache.get(f) {
            let _ = c.set(arr.clone());
        }
        Ok(arr)
    }

    /// Commit time of sequence `seq` (a row of this chunk).
    pub(crate) fn commit_time(&self, seq: u64) -> Result<i64> {
        match &self.times {
            Times::File(f) => f.reader.commit_time(seq),
            Times::Mem(m) => m.commit_time(seq).ok_or_else(|| {
                Error::InvalidArgument(format!("no commit time for sequence {seq}"))
            }),
        }
    }

    #[inline]
    fn cmp_rows(&self, i: usize, other: &SrcChunk, j: usize) -> Ordering {
        self.keys
            .value(i)
            .cmp(other.keys.value(j))
            .then_with(|| other.et.value(j).cmp(&self.et.value(i)))
            .then_with(|| other.seq.value(j).cmp(&self.seq.value(i)))
    }
}

/// A stream of chunks in internal order.
pub(crate) trait Source: Send {
    fn next_chunk(&mut self) -> Result<Option<Arc<SrcChunk>>>;
}

/// Which blocks a file source may skip without reading them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockPrune {
    /// Skip blocks whose newest event time is older than this.
    pub et_min: i64,
    /// Skip blocks whose oldest event time is newer than this.
    pub et_max: i64,
    /// Skip blocks whose oldest sequence is newer than this.
    pub seq_max: u64,
}

impl BlockPrune {
    pub(crate) const NONE: BlockPrune = BlockPrune {
        et_min: i64::MIN,
        et_max: i64::MAX,
        seq_max: u64::MAX,
    };

    fn skips(&self, min_et: i64, max_et: i64, min_seq: u64) -> bool {
        max_et < self.et_min || min_et > self.et_max || min_seq > self.seq_max
    }
}

/// Walks blocks of key-ordered, non-overlapping files (one L0 file, or a level).
pub(crate) struct FileSource {
    files: Vec<Arc<SstFile>>,
    fi: usize,
    bi: Option<usize>,
    range: KeyRange,
    prune: BlockPrune,
    table_features: usize,
}

impl FileSource {
    pub(crate) fn new(
        files: Vec<Arc<SstFile>>,
        range: KeyRange,
        prune: BlockPrune,
        table_features: usize,
    ) -> Self {
        let files = files
            .into_iter()
            .filter(|f| {
                f.meta.bounds.overlaps(range.start.as_deref(), None)
                    && range
                        .end
                        .as_deref()
                        .is_none_or(|e| f.meta.bounds.min_key.as_slice() < e)
                    && !prune.skips(
                        f.meta.bounds.min_et,
                        f.meta.bounds.max_et,
                        f.meta.bounds.min_seq,
                    )
            })
            .collect();
        FileSource {
            files,
            fi: 0,
            bi: None,
            range,
            prune,
            table_features,
        }
    }
}

impl Source for FileSource {
    fn next_chunk(&mut self) -> Result<Option<Arc<SrcChunk>>> {
        while let Some(file) = self.files.get(self.fi) {
            let reader = &file.reader;
            let b = *self.bi.get_or_insert_with(|| {
                self.range
                    .start
                    .as_deref()
                    .map_or(0, |s| reader.seek_block(s))
            });
            let Some(h) = reader.index.get(b) else {
                self.fi += 1;
                self.bi = None;
                continue;
            };
            // Past the end of the range: the previous block already reached it.
            if let (Some(end), Some(prev)) = (
                self.range.end.as_deref(),
                b.checked_sub(1).and_then(|p| reader.index.get(p)),
            ) && prev.last_key.as_slice() >= end
            {
                self.fi = self.files.len();
                break;
            }
            self.bi = Some(b + 1);
            if self.prune.skips(h.min_et, h.max_et, h.min_seq) {
                continue;
            }
            let cols = InternalColumns::read(reader, b)?;
            let (lo, hi) = self.clip(&cols.keys);
            if hi < cols.keys.len() {
                // The range ends inside this block.
                self.fi = self.files.len();
            }
            if lo >= hi {
                continue;
            }
            let len = hi - lo;
            return Ok(Some(Arc::new(SrcChunk {
                keys: cols.keys.slice(lo, len),
                et: cols.et.slice(lo, len),
                seq: cols.seq.slice(lo, len),
                tomb: cols.tomb.slice(lo, len),
                feats: Feats::File {
                    file: file.clone(),
                    block: b,
                    offset: lo,
                },
                cache: (0..self.table_features).map(|_| OnceLock::new()).collect(),
                times: Times::File(file.clone()),
            })));
        }
        Ok(None)
    }
}

impl FileSource {
    /// The rows of a block's `keys` inside the range: `lo..hi`.
    fn clip(&self, keys: &BinaryArray) -> (usize, usize) {
        let n = keys.len();
        let lo = match self.range.start.as_deref() {
            Some(s) => (0..n).position(|i| keys.value(i) >= s).unwrap_or(n),
            None => 0,
        };
        let hi = match self.range.end.as_deref() {
            Some(e) => (lo..n)
                .position(|i| keys.value(i) >= e)
                .map_or(n, |p| lo + p),
            None => n,
        };
        (lo, hi)
    }
}

/// A block's internal columns as Arrow arrays.
struct InternalColumns {
    keys: BinaryArray,
    et: Int64Array,
    seq: UInt64Array,
    tomb: BooleanArray,
}

impl InternalColumns {
    /// Decode block `b` of `reader`; a column of the wrong type is corruption.
    fn read(reader: &SstReader, b: usize) -> Result<Self> {
        let view = reader.block(b)?;
        let err = |e| reader.block_error(b, e);
        let wrong = |what: &str| {
            let offset = reader.index.get(b).map_or(0, |h| h.offset);
            Error::corruption(
                reader.path(),
                offset,
                format!("{what} column has the wrong type"),
            )
        };
        let keys = view
            .chunk(COL_KEY)
            .and_then(|c| c.to_arrow(DataType::Scalar(ScalarType::Bytes)))
            .map_err(err)?
            .as_any()
            .downcast_ref::<BinaryArray>()
            .cloned()
            .ok_or_else(|| wrong("key"))?;
        let et = Int64Array::from(view.chunk(COL_ET).map_err(err)?.ints());
        let seq = view.chunk(COL_SEQ).map_err(err)?.to_u64_arrow();
        let tomb_chunk = view.chunk(COL_TOMB).map_err(err)?;
        let tomb = if tomb_chunk.all_false() {
            BooleanArray::from(vec![false; view.rows])
        } else {
            tomb_chunk
                .to_arrow(DataType::Scalar(ScalarType::Bool))
                .map_err(err)?
                .as_any()
                .downcast_ref::<BooleanArray>()
                .cloned()
                .ok_or_else(|| wrong("tombstone"))?
        };
        Ok(InternalColumns {
            keys,
            et,
            seq,
            tomb,
        })
    }
}

/// Reads one table's versions from a memtable in chunks.
pub(crate) struct MemSource {
    mem: Arc<MemTable>,
    tm: Arc<TableMem>,
    next: Bound<MemEntry>,
    end: Option<Vec<u8>>,
    types: Vec<DataType>,
    project: Vec<bool>,
    chunk_rows: usize,
    done: bool,
}

impl MemSource {
    pub(crate) fn new(
        mem: Arc<MemTable>,
        tm: Arc<TableMem>,
        range: &KeyRange,
        types: Vec<DataType>,
        project: Vec<bool>,
        chunk_rows: usize,
    ) -> Self {
        MemSource {
            mem,
            tm,
            next: match &range.start {
                Some(s) => Bound::Included(MemEntry::probe(s, i64::MAX, u64::MAX)),
                None => Bound::Unbounded,
            },
            end: range.end.clone(),
            types,
            project,
            chunk_rows,
            done: false,
        }
    }
}

impl Source for MemSource {
    fn next_chunk(&mut self) -> Result<Option<Arc<SrcChunk>>> {
        if self.done {
            return Ok(None);
        }
        let entries = self
            .tm
            .entries(&self.next, self.end.as_deref(), self.chunk_rows);
        if entries.len() < self.chunk_rows {
            self.done = true;
        }
        let Some(last) = entries.last() else {
            return Ok(None);
        };
        self.next = Bound::Excluded(last.clone());
        let v = entries_to_run(&entries, &self.types, &self.project)
            .map_err(|e| Error::corruption("<memtable>", e.offset as u64, e.detail))?;
        Ok(Some(Arc::new(SrcChunk {
            cache: (0..v.features.len()).map(|_| OnceLock::new()).collect(),
            keys: v.keys,
            et: v.et,
            seq: v.seq,
            tomb: v.tomb,
            feats: Feats::Ready(v.features),
            times: Times::Mem(self.mem.clone()),
        })))
    }
}

/// A source's current position.
struct Head {
    chunk: Arc<SrcChunk>,
    row: usize,
    src: usize,
}

impl Head {
    fn cmp_to(&self, other: &Head) -> Ordering {
        self.chunk
            .cmp_rows(self.row, &other.chunk, other.row)
            .then(self.src.cmp(&other.src))
    }
}

/// Heap entry ordered so the smallest row is on top.
struct MinHead(Head);

impl PartialEq for MinHead {
    fn eq(&self, other: &Self) -> bool {
        self.0.cmp_to(&other.0) == Ordering::Equal
    }
}
impl Eq for MinHead {}
impl PartialOrd for MinHead {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for MinHead {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.cmp_to(&self.0)
    }
}

/// A run of consecutive rows of one chunk, in merged order.
pub(crate) struct Run {
    pub chunk: Arc<SrcChunk>,
    pub rows: Range<usize>,
}

/// K-way merge of sources into runs.
pub(crate) struct Merger {
    sources: Vec<Box<dyn Source>>,
    heap: BinaryHeap<MinHead>,
    started: bool,
}

impl Merger {
    pub(crate) fn new(sources: Vec<Box<dyn Source>>) -> Self {
        Merger {
            sources,
            heap: BinaryHeap::new(),
            started: false,
        }
    }

    fn refill(&mut self, src: usize) -> Result<()> {
        if let Some(s) = self.sources.get_mut(src) {
            while let Some(chunk) = s.next_chunk()? {
                if chunk.len() > 0 {
                    self.heap.push(MinHead(Head { chunk, row: 0, src }));
                    break;
                }
            }
        }
        Ok(())
    }

    /// The next run, or `None` when every source is exhausted.
    pub(crate) fn next_run(&mut self) -> Result<Option<Run>> {
        if !self.started {
            self.started = true;
            for s in 0..self.sources.len() {
                self.refill(s)?;
            }
        }
        let Some(MinHead(top)) = self.heap.pop() else {
            return Ok(None);
        };
        let len = top.chunk.len();
        let end = match self.heap.peek() {
            None => len,
            Some(MinHead(next)) => {
                let mut end = top.row + 1;
                while end < len
                    && top
                        .chunk
                        .cmp_rows(end, &next.chunk, next.row)
                        .then(top.src.cmp(&next.src))
                        == Ordering::Less
                {
                    end += 1;
                }
                end
            }
        };
        let run = Run {
            chunk: top.chunk.clone(),
            rows: top.row..end,
        };
        if end < len {
            self.heap.push(MinHead(Head {
                chunk: top.chunk,
                row: end,
                src: top.src,
            }));
        } else {
            self.refill(top.src)?;
        }
        Ok(Some(run))
    }
}
