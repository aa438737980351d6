//! One data block of an SST: the view over its column directory, the layout
//! words that let a later lookup prefetch a row's values with the block header,
//! and the search for a key's first visible version inside the block.
//!
//! Invariant: every column range comes from the block's header and is checked
//! against the block before use; a view never reads past its block.

use std::cmp::Ordering;

use super::encoding::{
    Chunk, KeyProbe, interpolate, key_as_u64, prefetch, value_at, value_layout, value_offset,
};
use super::{BlockHandle, COL_ET, COL_KEY, COL_SEQ, COL_TOMB, INTERNAL_COLUMNS, internal_type};
use crate::codec::{Reader, le_u32_at};
use crate::error::DecodeError;
use crate::types::{DataType, Value};

/// A layout word that holds nothing.
pub(super) const NO_LAYOUT: u64 = u64::MAX;

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
pub(super) struct BlockLayout;

impl BlockLayout {
    /// Words before the columns'.
    pub(super) const HEAD: usize = 3;

    /// Words per block for a file of `features` feature columns.
    pub(super) fn words(features: usize) -> usize {
        Self::HEAD + INTERNAL_COLUMNS + features
    }

    /// The words of `view`, the block `h` points to.
    pub(super) fn of(view: &BlockView<'_>, h: &BlockHandle) -> Vec<u64> {
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
    pub(super) fn row_of(key: &[u8], [first, last, rows]: [u64; 3]) -> Option<usize> {
        let key_len = (rows >> 32) as usize;
        if first == NO_LAYOUT || key.len() != key_len {
            return None;
        }
        let rows = (rows & u64::from(u32::MAX)) as usize;
        Some(interpolate(key_as_u64(key), first, last, rows))
    }

    /// A column word as (file offset of row 0's value, bits per row).
    pub(super) fn unpack(word: u64) -> Option<(usize, usize)> {
        (word != NO_LAYOUT).then_some(((word >> 8) as usize, (word & 0xff) as usize))
    }
}

/// Outcome of a lookup inside one block.
pub(super) enum Found {
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
    pub(super) fn parse(
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
    pub(super) fn col(&self, c: usize) -> Result<&'a [u8], DecodeError> {
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
    pub(super) fn col_range(&self, c: usize) -> Result<std::ops::Range<usize>, DecodeError> {
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
    pub(super) fn value_layout(&self, c: usize) -> Option<(usize, usize)> {
        let ty = match c.checked_sub(INTERNAL_COLUMNS) {
            None => internal_type(c),
            Some(f) => *self.feature_types.get(f)?,
        };
        let start = self.col_range(c).ok()?.start;
        let (row0, bits) = value_layout(self.col(c).ok()?, self.rows, ty)?;
        Some((self.data_at + start + row0, bits))
    }

    /// Start loading the cache line of row `row` of column `c` of type `ty`.
    pub(super) fn prefetch_value(&self, c: usize, ty: DataType, row: usize) {
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
    pub(super) fn find(
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
        let first = keys.lower_bound_u64(probe, last);
        if let Some(first) = first {
            for c in [COL_ET, COL_SEQ] {
                self.prefetch_value(c, internal_type(c), first);
            }
            for &f in features {
                self.prefetch_feature(f, first);
            }
        }
        let lo = self.seek(&keys, &ets, probe, first, et_max)?;
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

    /// The first row not before (key, `et_max`) in internal order (key ascending,
    /// event time descending): the key's first row, then its first row with event
    /// time <= `et_max`. From `first`, the key's first row if known, it gallops over
    /// the key's versions (newest first: usually the answer), then bisects the last
    /// gap; without it, it bisects the block.
    #[inline]
    pub(super) fn seek(
        &self,
        keys: &Chunk<'a>,
        ets: &Chunk<'a>,
        probe: &KeyProbe<'_>,
        first: Option<usize>,
        et_max: i64,
    ) -> Result<usize, DecodeError> {
        let before = |i: usize| -> Result<bool, DecodeError> {
            Ok(match keys.cmp_key(i, probe)? {
                Ordering::Less => true,
                Ordering::Equal => ets.int(i) > et_max,
                Ordering::Greater => false,
            })
        };
        // Rows before `lo` are before the probe; rows from `hi` on are not.
        let (mut lo, mut hi) = (0usize, self.rows);
        if let Some(first) = first {
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
        Ok(lo)
    }
}
