//! Reads SST files through a read-only memory map.
//!
//! Opening a file checks the footer, and the checksums of the bloom filter, block
//! index and metadata sections. Each data block's checksum is verified the first
//! time the block is read (then remembered in a per-block flag), so warm point
//! lookups do not re-hash blocks. Every offset taken from the file is bounds-checked.
//! The mapping is advised `MADV_HUGEPAGE` (Linux), see the writer.

use std::cmp::Ordering;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};

use memmap2::Mmap;

use super::bloom::Bloom;
use super::encoding::{
    Chunk, KeyProbe, interpolate, key_as_u64, prefetch, prefetch_ref, value_at, value_layout,
    value_offset,
};
use super::{
    BlockHandle, COL_ET, COL_KEY, COL_SEQ, COL_TOMB, FOOTER_LEN, Footer, INTERNAL_COLUMNS,
    MAX_BLOCK_ROWS, SST_MAGIC, SstMeta, decode_commit_times, decode_index, internal_type,
};
use crate::codec::{Reader, le_u32_at};
use crate::error::{DecodeError, Error, Result};
use crate::keycodec::{key_cmp, key_eq, key_prefix};
use crate::types::{DataType, Value};

/// An open, validated SST file.
pub(crate) struct SstReader {
    path: PathBuf,
    map: Mmap,
    pub(crate) meta: SstMeta,
    pub(crate) index: Vec<BlockHandle>,
    /// The first 8 bytes of each block's last key, big-endian and zero-padded: the
    /// block search runs over this contiguous array (a few cache lines) instead of
    /// following one heap pointer per probe.
    last_key_prefix: Vec<u64>,
    /// Each block's offset in the file (a flat copy of the index's): a probe
    /// prefetches the block's header with the bloom filter, without waiting for the
    /// block's index entry.
    block_offsets: Vec<usize>,
    bloom: (usize, usize),
    commit_times_at: (usize, usize),
    commit_times: OnceLock<Vec<(u64, i64)>>,
    verified: Vec<AtomicBool>,
    /// Each block's layout, [`BlockLayout`], recorded when the block is first read
    /// (before its `verified` flag is set): `layout_stride` words per block.
    layout: Vec<AtomicU64>,
    layout_stride: usize,
    pub(crate) bloom_checks: AtomicU64,
    pub(crate) bloom_negatives: AtomicU64,
}

impl std::fmt::Debug for SstReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstReader")
            .field("path", &self.path)
            .finish()
    }
}

/// A located row: the block and the row within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowRef {
    pub block: usize,
    pub row: usize,
}

/// The best version of one key found in a file by a point lookup, with its parsed
/// block so the row can be decoded without parsing the block again.
pub(crate) struct FileHit<'a> {
    pub et: i64,
    pub seq: u64,
    pub tomb: bool,
    pub at: RowRef,
    pub block: BlockView<'a>,
}

impl SstReader {
    /// Map and validate `path`.
    #[allow(unsafe_code)]
    pub(crate) fn open(path: &Path) -> Result<SstReader> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: SST files are immutable once written: the engine never writes to a
        // file after `finish`, and deletes (never truncates) obsolete files. A mapping
        // of a deleted file stays valid until unmapped. Modification by another
        // process is outside the engine's contract (documented in ARCHITECTURE.md).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        // Huge pages where the page cache holds the file in 2 MiB folios (see the
        // writer): far fewer TLB misses for lookups. Only advice: ignored elsewhere.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        let corrupt = |offset: u64, detail: String| Error::corruption(path, offset, detail);
        let len = map.len();
        if len < SST_MAGIC.len() + FOOTER_LEN {
            return Err(corrupt(
                0,
                format!("file of {len} bytes is too short to be an SST"),
            ));
        }
        if map.get(..SST_MAGIC.len()) != Some(&SST_MAGIC[..]) {
            return Err(corrupt(0, "bad magic number: not a Hindsight SST".into()));
        }
        let footer_at = len - FOOTER_LEN;
        let footer_bytes = map
            .get(footer_at..)
            .ok_or_else(|| corrupt(footer_at as u64, "footer out of range".into()))?;
        let footer = Footer::decode(footer_bytes).map_err(|e| e.at(path, footer_at as u64))?;
        let section = |range: (u64, u64), what: &str| section(&map, path, footer_at, range, what);
        let bloom = section(footer.bloom, "bloom filter")?;
        let index_at = section(footer.index, "block index")?;
        let meta_at = section(footer.meta, "metadata")?;
        // Every section was range-checked above; `slice` still refuses rather than
        // reading an empty section if that ever stops holding.
        let slice = |(o, n): (usize, usize)| {
            map.get(o..o.saturating_add(n))
                .ok_or_else(|| corrupt(o as u64, "section out of range".into()))
        };
        Bloom::parse(slice(bloom)?).map_err(|e| e.at(path, bloom.0 as u64))?;
        let index = decode_index(slice(index_at)?).map_err(|e| e.at(path, index_at.0 as u64))?;
        let (meta, times) =
            SstMeta::decode(slice(meta_at)?).map_err(|e| e.at(path, meta_at.0 as u64))?;
        let times_at = (times.as_ptr() as usize - map.as_ptr() as usize, times.len());
        check_index(&index, &meta, bloom.0, path, (index_at.0, meta_at.0))?;
        let verified = (0..index.len()).map(|_| AtomicBool::new(false)).collect();
        let layout_stride = BlockLayout::words(meta.feature_types.len());
        let layout = (0..index.len() * layout_stride)
            .map(|_| AtomicU64::new(NO_LAYOUT))
            .collect();
        let last_key_prefix = index.iter().map(|h| key_prefix(&h.last_key)).collect();
        let block_offsets = index.iter().map(|h| h.offset as usize).collect();
        Ok(SstReader {
            path: path.to_path_buf(),
            map,
            meta,
            index,
            last_key_prefix,
            block_offsets,
            bloom,
            commit_times_at: times_at,
            commit_times: OnceLock::new(),
            verified,
            layout,
            layout_stride,
            bloom_checks: AtomicU64::new(0),
            bloom_negatives: AtomicU64::new(0),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Start loading what a lookup of `key` (bloom hash `hash`), starting at block
    /// `b` ([`SstReader::seek_block`]), reads first: its bloom filter block, its
    /// block index entry and the block's header (with the start of the key column
    /// behind it), so the three misses overlap. If the block has been read before,
    /// its layout predicts the key's row, and that row's key, event time, sequence
    /// and `features` lines start loading too (see [`BlockLayout`]).
    pub(crate) fn prefetch_probe(&self, key: &[u8], hash: u64, b: usize, features: &[usize]) {
        self.prefetch_predicted(key, b, features);
        if let Some(&o) = self.block_offsets.get(b) {
            prefetch(&self.map, o);
            prefetch(&self.map, o + 64);
        }
        if let Some(bloom) = self
            .map
            .get(self.bloom.0..self.bloom.0 + self.bloom.1)
            .and_then(|bytes| Bloom::parse(bytes).ok())
        {
            prefetch(bloom.block_for(hash), 0);
        }
        if let Some(h) = self.index.get(b) {
            prefetch_ref(h);
        }
    }

    /// Prefetch the lines of the row of block `b` where `key` probably starts, if the
    /// block's layout is known.
    fn prefetch_predicted(&self, key: &[u8], b: usize, features: &[usize]) {
        if !self
            .verified
            .get(b)
            .is_some_and(|f| f.load(AtomicOrdering::Acquire))
        {
            return;
        }
        let words = self.layout_words(b);
        let word = |i: usize| {
            words
                .get(i)
                .map_or(NO_LAYOUT, |w| w.load(AtomicOrdering::Relaxed))
        };
        let Some(row) = BlockLayout::row_of(key, [word(0), word(1), word(2)]) else {
            return;
        };
        let line = |c: usize| {
            if let Some((at, bits)) = BlockLayout::unpack(word(BlockLayout::HEAD + c)) {
                prefetch(&self.map, at + row * bits / 8);
            }
        };
        line(COL_KEY);
        line(COL_ET);
        line(COL_SEQ);
        for &f in features {
            line(INTERNAL_COLUMNS + f);
        }
    }

    /// False only if no version of the entity with this key hash is in the file.
    #[inline]
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        self.bloom_checks.fetch_add(1, AtomicOrdering::Relaxed);
        let bytes = self.map.get(self.bloom.0..self.bloom.0 + self.bloom.1);
        let hit = bytes
            .and_then(|b| Bloom::parse(b).ok())
            .is_none_or(|bloom| bloom.may_contain(hash));
        if !hit {
            self.bloom_negatives.fetch_add(1, AtomicOrdering::Relaxed);
        }
        hit
    }

    /// Sorted (sequence, commit time) pairs of every sequence in the file.
    pub(crate) fn commit_times(&self) -> Result<&[(u64, i64)]> {
        if let Some(t) = self.commit_times.get() {
            return Ok(t);
        }
        let (o, n) = self.commit_times_at;
        let bytes = self.map.get(o..o.saturating_add(n)).ok_or_else(|| {
            Error::corruption(&self.path, o as u64, "commit-time table out of range")
        })?;
        let parsed = decode_commit_times(bytes).map_err(|e| e.at(&self.path, o as u64))?;
        Ok(self.commit_times.get_or_init(|| parsed))
    }

    /// Commit time of sequence `seq` in this file.
    pub(crate) fn commit_time(&self, seq: u64) -> Result<i64> {
        let t = self.commit_times()?;
        match t.binary_search_by_key(&seq, |&(s, _)| s) {
            Ok(i) => Ok(t.get(i).map_or(0, |&(_, time)| time)),
            Err(_) => Err(Error::corruption(
                &self.path,
                self.commit_times_at.0 as u64,
                format!("sequence {seq} has no commit time"),
            )),
        }
    }

    /// The largest sequence in the file committed at or before `micros`.
    pub(crate) fn last_seq_at_or_before(&self, micros: i64) -> Result<Option<u64>> {
        let t = self.commit_times()?;
        let n = t.partition_point(|&(_, time)| time <= micros);
        Ok(n.checked_sub(1).and_then(|i| t.get(i)).map(|&(s, _)| s))
    }

    /// Parse block `b`, verifying its checksum on first use.
    pub(crate) fn block(&self, b: usize) -> Result<BlockView<'_>> {
        let h = self
            .index
            .get(b)
            .ok_or_else(|| Error::InvalidArgument(format!("block {b} out of range")))?;
        let (o, n) = (h.offset as usize, h.len as usize);
        let flag = self.verified.get(b);
        if !flag.is_some_and(|f| f.load(AtomicOrdering::Acquire)) {
            let Some((bytes, stored)) = checksummed(&self.map, o, n) else {
                return Err(Error::corruption(
                    &self.path,
                    o as u64,
                    format!("block {b} lies outside the file"),
                ));
            };
            if crc32fast::hash(bytes) != stored {
                return Err(Error::corruption(
                    &self.path,
                    o as u64,
                    format!("block {b} checksum mismatch"),
                ));
            }
            let view = self.view(bytes, h)?;
            let words = BlockLayout::of(&view, h);
            for (slot, w) in self.layout_words(b).iter().zip(words) {
                slot.store(w, AtomicOrdering::Relaxed);
            }
            if let Some(f) = flag {
                f.store(true, AtomicOrdering::Release);
            }
            return Ok(view);
        }
        // Verified before, so in range (open checked every handle against the file).
        let bytes = self.map.get(o..o + n).ok_or_else(|| {
            Error::corruption(
                &self.path,
                o as u64,
                format!("block {b} lies outside the file"),
            )
        })?;
        self.view(bytes, h)
    }

    /// Block `b`'s [`BlockLayout`] words (to be read only once its `verified` flag
    /// has been seen set). Callers pass a block index checked against the index, and
    /// `layout` holds `layout_stride` words per block, so the range is in bounds.
    fn layout_words(&self, b: usize) -> &[AtomicU64] {
        debug_assert!((b + 1) * self.layout_stride <= self.layout.len());
        self.layout
            .get(b * self.layout_stride..(b + 1) * self.layout_stride)
            .unwrap_or_default()
    }

    fn view<'s>(&'s self, bytes: &'s [u8], h: &BlockHandle) -> Result<BlockView<'s>> {
        BlockView::parse(bytes, h.rows as usize, &self.meta.feature_types)
            .map_err(|e| e.at(&self.path, h.offset))
    }

    /// Wrap a decode error of block `b` with this file's name.
    pub(crate) fn block_error(&self, b: usize, e: DecodeError) -> Error {
        let base = self.index.get(b).map_or(0, |h| h.offset);
        e.at(&self.path, base)
    }

    /// Point lookup: the first version of `key` (in internal order) with event time
    /// `<= et_max` and sequence `<= seq_max`, if the file has one. `b` is the key's
    /// [`SstReader::seek_block`]; `features` are the feature columns the caller will
    /// read from the hit (their first lines are prefetched with the block's).
    pub(crate) fn find(
        &self,
        key: &[u8],
        et_max: i64,
        seq_max: u64,
        b: usize,
        features: &[usize],
    ) -> Result<Option<FileHit<'_>>> {
        let probe = KeyProbe::new(key);
        let mut b = b;
        while let Some(h) = self.index.get(b) {
            let key_continues = key_eq(&h.last_key, key);
            let may_have = h.min_et <= et_max && h.min_seq <= seq_max;
            if may_have {
                let view = self.block(b)?;
                for &f in features {
                    view.prefetch_column(INTERNAL_COLUMNS + f);
                }
                let last = last_key_u64(h, key);
                let hit = view
                    .find(
                        &probe,
                        last,
                        et_max,
                        seq_max,
                        features,
                        self.meta.tombstones > 0,
                    )
                    .map_err(|e| self.block_error(b, e))?;
                match hit {
                    Found::Row(row, et, seq, tomb) => {
                        return Ok(Some(FileHit {
                            et,
                            seq,
                            tomb,
                            at: RowRef { block: b, row },
                            block: view,
                        }));
                    }
                    Found::NotHere => return Ok(None),
                    Found::MaybeNextBlock => {}
                }
            }
            if !key_continues {
                return Ok(None);
            }
            b += 1;
        }
        Ok(None)
    }

    /// The first block that may hold `key` or a later key: the first whose last key
    /// is `>= key`. Prefixes order like the keys (a smaller prefix means a smaller
    /// key), so only blocks with an equal prefix need the full comparison.
    pub(crate) fn seek_block(&self, key: &[u8]) -> usize {
        let p = key_prefix(key);
        // `last_key_prefix` has one entry per index entry and `lo + tied` never
        // exceeds its length, so both slices below are in bounds.
        debug_assert_eq!(self.last_key_prefix.len(), self.index.len());
        let lo = self.last_key_prefix.partition_point(|&x| x < p);
        let tied = self
            .last_key_prefix
            .get(lo..)
            .unwrap_or_default()
            .partition_point(|&x| x == p);
        let tied_blocks = self.index.get(lo..lo + tied).unwrap_or_default();
        lo + tied_blocks.partition_point(|h| key_cmp(&h.last_key, key).is_lt())
    }
}

/// The last key of block `h` as an integer, when keys like `key` are stored as
/// integers (fixed length up to 8 bytes): it guides the search inside the block.
fn last_key_u64(h: &BlockHandle, key: &[u8]) -> Option<u64> {
    (h.last_key.len() == key.len() && key.len() <= 8).then(|| key_as_u64(&h.last_key))
}

/// A layout word that holds nothing.
const NO_LAYOUT: u64 = u64::MAX;

/// Where a block's values lie, kept in memory once the block has been read, so a
/// later point lookup can start loading its row's lines together with the block's
/// header: the lookup's misses then overlap instead of following one another (index
/// entry and header, then the column headers, then the values).
///
/// Stored as words in one flat array per file (no pointer to follow): the block's
/// first and last keys as integers (blocks of integer keys), its row count with the
/// key length in the high half, then per column the file offset of row 0's value
/// shifted left 8 bits, plus the bits per row ([`NO_LAYOUT`] where values do not
/// lie at a computable place, see `value_offset`).
struct BlockLayout;

impl BlockLayout {
    /// Words before the columns'.
    const HEAD: usize = 3;

    /// Words per block for a file of `features` feature columns.
    fn words(features: usize) -> usize {
        Self::HEAD + INTERNAL_COLUMNS + features
    }

    /// The words of `view`, the block `h` points to.
    fn of(view: &BlockView<'_>, h: &BlockHandle) -> Vec<u64> {
        let first = view.chunk(COL_KEY).ok().and_then(|k| k.first_key_u64());
        let last = (h.last_key.len() <= 8).then(|| key_as_u64(&h.last_key));
        let (first, last) = match (first, last) {
            (Some(f), Some(l)) => (f, l),
            _ => (NO_LAYOUT, NO_LAYOUT),
        };
        let head = [
            first,
            last,
            (h.last_key.len() as u64) << 32 | u64::from(h.rows),
        ];
        let columns = (0..INTERNAL_COLUMNS + view.feature_types.len()).map(|c| {
            view.value_layout(c)
                .and_then(|(at, bits)| {
                    let at = (h.offset as usize).checked_add(at)?;
                    (at < 1 << 56 && bits < 256).then_some((at as u64) << 8 | bits as u64)
                })
                .unwrap_or(NO_LAYOUT)
        });
        head.into_iter().chain(columns).collect()
    }

    /// The row where `key` probably starts, from a block's head words.
    fn row_of(key: &[u8], [first, last, rows]: [u64; 3]) -> Option<usize> {
        let key_len = (rows >> 32) as usize;
        if first == NO_LAYOUT || key.len() != key_len {
            return None;
        }
        let rows = (rows & u64::from(u32::MAX)) as usize;
        Some(interpolate(key_as_u64(key), first, last, rows))
    }

    /// A column word as (file offset of row 0's value, bits per row).
    fn unpack(word: u64) -> Option<(usize, usize)> {
        (word != NO_LAYOUT).then_some(((word >> 8) as usize, (word & 0xff) as usize))
    }
}

/// Outcome of a lookup inside one block.
enum Found {
    Row(usize, i64, u64, bool),
    /// The key's versions end in this block without a visible one.
    NotHere,
    /// The block ends while still on the key: look in the next block.
    MaybeNextBlock,
}

/// A parsed data block: its row count and the byte range of each column. Parsing
/// checks the header and that the last column ends the block; each column's bounds
/// are read (and checked) from the header when the column is used, so a lookup that
/// reads a few columns allocates nothing.
pub(crate) struct BlockView<'a> {
    pub(crate) rows: usize,
    /// The `col_end` table of the header.
    ends: &'a [u8],
    /// Column bytes (after the header).
    data: &'a [u8],
    /// Offset of `data` in the block, for error positions.
    data_at: usize,
    feature_types: &'a [DataType],
}

impl<'a> BlockView<'a> {
    fn parse(
        bytes: &'a [u8],
        rows: usize,
        feature_types: &'a [DataType],
    ) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let n = r.u32("block row count")? as usize;
        if n != rows {
            return Err(r.err(format!("block says {n} rows, index says {rows}")));
        }
        let ncols = usize::from(r.u16("block column count")?);
        if ncols != INTERNAL_COLUMNS + feature_types.len() {
            return Err(r.err(format!(
                "block has {ncols} columns, file declares {}",
                INTERNAL_COLUMNS + feature_types.len()
            )));
        }
        let ends = r.bytes(ncols * 4, "column ends")?;
        let data_at = r.offset();
        let data = bytes.get(data_at..).unwrap_or_default();
        let last = ncols
            .checked_sub(1)
            .and_then(|c| le_u32_at(ends, c * 4))
            .map_or(0, |e| e as usize);
        if last != data.len() {
            return Err(DecodeError::new(
                data_at + last.min(data.len()),
                "last column does not end the block",
            ));
        }
        Ok(BlockView {
            rows,
            ends,
            data,
            data_at,
            feature_types,
        })
    }

    /// The bytes of column `c`.
    fn col(&self, c: usize) -> Result<&'a [u8], DecodeError> {
        let range = self.col_range(c)?;
        let (start, end) = (range.start, range.end);
        self.data.get(range).ok_or_else(|| {
            DecodeError::new(
                self.data_at,
                format!("column {c} bounds {start}..{end} invalid"),
            )
        })
    }

    /// Where column `c` lies in `data`, as the header's `col_end` table says
    /// (unchecked against `data`).
    fn col_range(&self, c: usize) -> Result<std::ops::Range<usize>, DecodeError> {
        let end_of = |i: usize| le_u32_at(self.ends, i * 4).map(|e| e as usize);
        let start = match c.checked_sub(1) {
            None => Some(0),
            Some(p) => end_of(p),
        };
        match (start, end_of(c)) {
            (Some(start), Some(end)) => Ok(start..end),
            _ => Err(DecodeError::new(0, format!("no column {c}"))),
        }
    }

    /// Parse column `c` (internal columns first, then features).
    pub(crate) fn chunk(&self, c: usize) -> Result<Chunk<'a>, DecodeError> {
        let ty = if c < INTERNAL_COLUMNS {
            internal_type(c)
        } else {
            *self
                .feature_types
                .get(c - INTERNAL_COLUMNS)
                .ok_or_else(|| DecodeError::new(0, format!("no column {c}")))?
        };
        let bytes = self.col(c)?;
        let mut r = Reader::new(bytes);
        let chunk = Chunk::parse(&mut r, self.rows, ty)?;
        if !r.is_empty() {
            return Err(r.err(format!("trailing bytes in column {c}")));
        }
        Ok(chunk)
    }

    /// Start loading the first cache line of column `c`.
    pub(crate) fn prefetch_column(&self, c: usize) {
        if let Ok(bytes) = self.col(c) {
            prefetch(bytes, 0);
        }
    }

    /// Start loading the cache line of feature `f` of row `row` (its column's first
    /// line should be loaded already: its header says where the value lies).
    pub(crate) fn prefetch_feature(&self, f: usize, row: usize) {
        if let Some(&ty) = self.feature_types.get(f) {
            self.prefetch_value(INTERNAL_COLUMNS + f, ty, row);
        }
    }

    /// Where column `c`'s values lie: the block offset of row 0's value and the bits
    /// per row, if the column's encoding puts them at a computable place.
    fn value_layout(&self, c: usize) -> Option<(usize, usize)> {
        let ty = match c.checked_sub(INTERNAL_COLUMNS) {
            None => internal_type(c),
            Some(f) => *self.feature_types.get(f)?,
        };
        let start = self.col_range(c).ok()?.start;
        let (row0, bits) = value_layout(self.col(c).ok()?, self.rows, ty)?;
        Some((self.data_at + start + row0, bits))
    }

    /// Start loading the cache line of row `row` of column `c` of type `ty`.
    fn prefetch_value(&self, c: usize, ty: DataType, row: usize) {
        if let Ok(bytes) = self.col(c)
            && let Some(at) = value_offset(bytes, self.rows, row, ty)
        {
            prefetch(bytes, at);
        }
    }

    /// Feature `f` of row `row`, decoded directly (NULL if the file predates it).
    #[inline]
    pub(crate) fn feature_value(&self, f: usize, row: usize) -> Result<Value, DecodeError> {
        let Some(&ty) = self.feature_types.get(f) else {
            return Ok(Value::Null);
        };
        value_at(self.col(INTERNAL_COLUMNS + f)?, self.rows, row, ty)
    }

    /// Feature `f` of this block, or `None` if the file predates that feature.
    pub(crate) fn feature(&self, f: usize) -> Result<Option<(Chunk<'a>, DataType)>, DecodeError> {
        match self.feature_types.get(f) {
            None => Ok(None),
            Some(&ty) => Ok(Some((self.chunk(INTERNAL_COLUMNS + f)?, ty))),
        }
    }

    /// The key's first visible version in this block. `last`: the block's last key
    /// as an integer, if known (it guides the key search). `features`: the feature
    /// columns the caller will read; once the key's first row is known, that row's
    /// event time, sequence and features are prefetched together (the newest
    /// version is usually the answer, and older ones often share its cache lines);
    /// the answer's features are prefetched if it is another row.
    /// `has_tombstones`: false if the file holds none (the column is not read).
    fn find(
        &self,
        probe: &KeyProbe<'_>,
        last: Option<u64>,
        et_max: i64,
        seq_max: u64,
        features: &[usize],
        has_tombstones: bool,
    ) -> Result<Found, DecodeError> {
        for c in [COL_ET, COL_SEQ] {
            self.prefetch_column(c);
        }
        if has_tombstones {
            self.prefetch_column(COL_TOMB);
        }
        let keys = self.chunk(COL_KEY)?;
        let ets = self.chunk(COL_ET)?;
        // First row not before (key, et_max) in internal order (key ascending, event
        // time descending): the key's first row, then its first row with event time
        // <= et_max.
        let before = |i: usize| -> Result<bool, DecodeError> {
            Ok(match keys.cmp_key(i, probe)? {
                Ordering::Less => true,
                Ordering::Equal => ets.int(i) > et_max,
                Ordering::Greater => false,
            })
        };
        // Rows before `lo` are before the probe; rows from `hi` on are not.
        let (mut lo, mut hi) = (0usize, self.rows);
        let first = keys.lower_bound_u64(probe, last);
        if let Some(first) = first {
            for c in [COL_ET, COL_SEQ] {
                self.prefetch_value(c, internal_type(c), first);
            }
            for &f in features {
                self.prefetch_feature(f, first);
            }
            // Gallop over the key's versions from its first row (newest first: it is
            // usually the answer), then bisect the last gap.
            lo = first;
            let mut step = 1;
            loop {
                let at = lo + step - 1;
                if at >= hi {
                    break;
                }
                if before(at)? {
                    lo = at + 1;
                    step *= 2;
                } else {
                    hi = at;
                    break;
                }
            }
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(mid)? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == self.rows {
            // Every row is before the probe: the key may continue in the next block.
            return Ok(Found::MaybeNextBlock);
        }
        let seqs = self.chunk(COL_SEQ)?;
        // A file without tombstones need not read its tombstone columns.
        let tombs = if has_tombstones {
            Some(self.chunk(COL_TOMB)?)
        } else {
            None
        };
        let mut i = lo;
        while i < self.rows {
            if keys.cmp_key(i, probe)? != Ordering::Equal {
                return Ok(Found::NotHere);
            }
            let seq = seqs.int(i) as u64;
            if seq <= seq_max {
                if first != Some(i) {
                    for &f in features {
                        self.prefetch_feature(f, i);
                    }
                }
                let tomb = tombs.as_ref().is_some_and(|t| t.bool(i));
                return Ok(Found::Row(i, ets.int(i), seq, tomb));
            }
            i += 1;
        }
        Ok(Found::MaybeNextBlock)
    }
}

/// The (offset, length) of a footer-named section after checking that it lies
/// between the magic number and the footer and that its checksum matches.
fn section(
    map: &[u8],
    path: &Path,
    footer_at: usize,
    (off, len): (u64, u64),
    what: &str,
) -> Result<(usize, usize)> {
    let out_of_range = || {
        Error::corruption(
            path,
            footer_at as u64,
            format!("{what} section out of range"),
        )
    };
    let (Ok(o), Ok(n)) = (usize::try_from(off), usize::try_from(len)) else {
        return Err(out_of_range());
    };
    let end = o.checked_add(n).and_then(|e| e.checked_add(4));
    if o < SST_MAGIC.len() || end.is_none_or(|e| e > footer_at) {
        return Err(out_of_range());
    }
    let (bytes, stored) = checksummed(map, o, n).ok_or_else(out_of_range)?;
    if crc32fast::hash(bytes) != stored {
        return Err(Error::corruption(
            path,
            o as u64,
            format!("{what} checksum mismatch"),
        ));
    }
    Ok((o, n))
}

/// Check every block handle lies in the data area (before the bloom filter at
/// `data_end`) with a sane row count, and that the rows add up to the metadata's.
fn check_index(
    index: &[BlockHandle],
    meta: &SstMeta,
    data_end: usize,
    path: &Path,
    (index_at, meta_at): (usize, usize),
) -> Result<()> {
    let corrupt = |at: usize, detail: String| Error::corruption(path, at as u64, detail);
    for (i, b) in index.iter().enumerate() {
        let end = b
            .offset
            .checked_add(u64::from(b.len))
            .and_then(|e| e.checked_add(4));
        if b.offset < SST_MAGIC.len() as u64 || end.is_none_or(|e| e > data_end as u64) {
            return Err(corrupt(
                index_at,
                format!("block {i} lies outside the data area"),
            ));
        }
        if b.rows == 0 || b.rows as usize > MAX_BLOCK_ROWS {
            return Err(corrupt(index_at, format!("block {i} has {} rows", b.rows)));
        }
    }
    let rows: u64 = index.iter().map(|b| u64::from(b.rows)).sum();
    if rows != meta.rows || index.is_empty() {
        return Err(corrupt(
            meta_at,
            format!("metadata says {} rows, block index holds {rows}", meta.rows),
        ));
    }
    Ok(())
}

/// The `n` bytes at `o` and the CRC32 stored right after them; `None` if the range
/// leaves `buf`.
fn checksummed(buf: &[u8], o: usize, n: usize) -> Option<(&[u8], u32)> {
    let end = o.checked_add(n)?;
    Some((buf.get(o..end)?, le_u32_at(buf, end)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, UInt64Array};

    use super::*;
    use crate::keycodec::encode_key;
    use crate::sst::{SstWriter, WriterOptions};
    use crate::types::ScalarType;
    use crate::version_run::VersionRun;

    /// Once a block has been read, its layout predicts where a key's versions start
    /// (within one key's versions for evenly spaced keys) and where each fixed-width column's
    /// value of any row lies: checked against the values written, not against the
    /// decoder that computes the same offsets.
    #[test]
    fn block_layout_points_at_each_rows_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sst");
        let (entities, versions) = (700i64, 3i64);
        let mut keys = Vec::new();
        let (mut et, mut f, mut c, mut g) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for e in 0..entities {
            for v in 0..versions {
                keys.push(encode_key(&[Value::Int64(5 * e)], &[ScalarType::Int64], &[]).unwrap());
                et.push(1_000 - v);
                f.push((e * 10 + v) as f64 + 0.5);
                c.push(e - 7 * v);
                let row = keys.len() as i64;
                g.push((row % 5 != 0).then_some(row as f64));
            }
        }
        let rows = keys.len();
        let v = VersionRun {
            keys: BinaryArray::from_iter_values(keys.iter()),
            et: Int64Array::from(et),
            seq: UInt64Array::from_iter_values((1..=rows as u64).rev()),
            tomb: BooleanArray::from(vec![false; rows]),
            features: vec![
                Arc::new(Float64Array::from(f.clone())) as ArrayRef,
                Arc::new(Int64Array::from(c)) as ArrayRef,
                Arc::new(Float64Array::from(g.clone())) as ArrayRef,
            ],
        };
        let float = DataType::Scalar(ScalarType::Float64);
        let opts = WriterOptions {
            block_rows: 256,
            block_bytes: 1 << 20,
            bloom_bits_per_key: 10,
        };
        let types = vec![float, DataType::Scalar(ScalarType::Int64), float];
        let mut w = SstWriter::create(&path, crate::types::TableId(1), types, opts).unwrap();
        w.add(&v).unwrap();
        w.finish(&|_| Some(0)).unwrap();

        let r = SstReader::open(&path).unwrap();
        assert!(r.index.len() > 5, "the test wants several blocks");
        let mut first_row = 0;
        for b in 0..r.index.len() {
            let view = r.block(b).unwrap();
            let ks = view.chunk(COL_KEY).unwrap();
            let words: Vec<u64> = r
                .layout_words(b)
                .iter()
                .map(|w| w.load(AtomicOrdering::Relaxed))
                .collect();
            let col = |c: usize| BlockLayout::unpack(words[BlockLayout::HEAD + c]);
            let (key_at, key_bits) = col(COL_KEY).unwrap();
            let (f_at, f_bits) = col(INTERNAL_COLUMNS).unwrap();
            let (g_at, _) = col(INTERNAL_COLUMNS + 2).unwrap();
            assert_eq!(f_bits, 64);
            assert!(col(COL_TOMB).is_none(), "booleans lie in a bitmap");
            let word_at = |at: usize| u64::from_le_bytes(r.map[at..at + 8].try_into().unwrap());
            for i in 0..view.rows {
                let global = first_row + i;
                // Keys: packed integers from the block's first key.
                let bit = i * key_bits;
                let packed = (word_at(key_at + bit / 8) >> (bit % 8)) & ((1 << key_bits) - 1);
                let key = key_as_u64(&ks.key(i).unwrap());
                assert_eq!(
                    packed,
                    key - ks.first_key_u64().unwrap(),
                    "block {b} row {i}"
                );
                // The key's first version is where the layout predicts it.
                if i == 0 || ks.key(i - 1).unwrap() != ks.key(i).unwrap() {
                    let guess = BlockLayout::row_of(&keys[global], [words[0], words[1], words[2]]);
                    assert!(
                        guess.unwrap().abs_diff(i) <= versions as usize,
                        "block {b} row {i}: {guess:?}"
                    );
                }
                // Plain floats, with and without NULLs.
                assert_eq!(f64::from_bits(word_at(f_at + i * 8)), f[global]);
                if let Some(x) = g[global] {
                    assert_eq!(f64::from_bits(word_at(g_at + i * 8)), x);
                }
            }
            first_row += view.rows;
        }
        assert_eq!(first_row, rows);
        // A key of another length predicts nothing.
        assert_eq!(BlockLayout::row_of(b"abc", [0, 10, 8 << 32 | 4]), None);
    }
}
