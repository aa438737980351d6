//! Reads SST files through a read-only memory map.
//!
//! Opening a file checks the footer, and the checksums of the bloom filter, block
//! index and metadata sections. Each data block's checksum is verified the first
//! time the block is read (then remembered in a per-block flag), so warm point
//! lookups do not re-hash blocks. Every offset taken from the file is bounds-checked.
//! The mapping is advised `MADV_HUGEPAGE` (Linux), see the writer.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};

use memmap2::Mmap;

use super::block::{BlockLayout, BlockView, Found, NO_LAYOUT};
use super::bloom::Bloom;
use super::encoding::{KeyProbe, key_as_u64, prefetch, prefetch_ref};
use super::{
    BlockHandle, COL_ET, COL_KEY, COL_SEQ, FOOTER_LEN, Footer, INTERNAL_COLUMNS, MAX_BLOCK_ROWS,
    SST_MAGIC, SstMeta, decode_commit_times, decode_index,
};
use crate::codec::le_u32_at;
use crate::error::{DecodeError, Error, Result};
use crate::keycodec::{key_cmp, key_eq, key_prefix};

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

    /// Verify every block's checksum now (a file received from another node is
    /// checked whole before it is installed).
    pub(crate) fn verify_all(&self) -> Result<()> {
        (0..self.index.len()).try_for_each(|b| self.block(b).map(|_| ()))
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
    use crate::sst::{COL_TOMB, SstWriter, WriterOptions};
    use crate::types::{DataType, ScalarType, Value};
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
