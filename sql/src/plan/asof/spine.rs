//! The spine: its rows' keys and times, sorted by (key prefix, key, time) for the
//! merge, split at key boundaries for parallel work, and gathered back into output
//! columns in the spine's own order.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, UInt32Array};
use hindsight_storage::{key_eq, key_head};

use crate::error::SqlError;

/// Where output goes; false once nobody is listening.
pub(super) type Emit<'a> = &'a (dyn Fn(RecordBatch) -> bool + Sync);

/// A share of the spine's work: its rows, and where to emit output batches.
pub(super) type Work<'a> = &'a (dyn Fn(&[SpineRow], Emit<'_>) -> Result<(), SqlError> + Sync);

/// One matchable spine row: the first 16 bytes of its encoded key (most comparisons
/// end there), its time, and where it is (the full key is in [`Spine::keys`]).
#[derive(Clone, Copy)]
pub(super) struct SpineRow {
    pub(super) prefix: u128,
    pub(super) time: i64,
    pub(super) batch: u32,
    pub(super) row: u32,
}

/// The spine's batches and the encoded entity key of each row (NULL: never matches).
pub(super) struct Spine {
    pub(super) batches: Vec<RecordBatch>,
    pub(super) keys: Vec<BinaryArray>,
    /// Every matchable key has the same length, at most 16 bytes (one integer
    /// column, say): a row's prefix is its whole key, and rows compare by prefix
    /// alone, without reading the keys (scattered in memory once rows are sorted).
    /// Holds that length.
    pub(super) short: Option<usize>,
}

impl Spine {
    pub(super) fn key(&self, r: &SpineRow) -> &[u8] {
        self.keys
            .get(r.batch as usize)
            .map_or(&[], |k| k.value(r.row as usize))
    }

    /// A row's key, rebuilt from its prefix (into `buf`) when keys are short.
    pub(super) fn key_of<'a>(&'a self, r: &SpineRow, buf: &'a mut [u8; 16]) -> &'a [u8] {
        match self.short {
            Some(len) => {
                *buf = r.prefix.to_be_bytes();
                buf.get(..len).unwrap_or(buf)
            }
            None => self.key(r),
        }
    }

    pub(super) fn same_key(&self, a: &SpineRow, b: &SpineRow) -> bool {
        a.prefix == b.prefix && (self.short.is_some() || key_eq(self.key(a), self.key(b)))
    }

    /// Sort rows by (key, time).
    pub(super) fn sort(&self, rows: &mut [SpineRow]) {
        if self.short.is_some() {
            rows.sort_unstable_by_key(|r| (r.prefix, r.time));
        } else {
            rows.sort_unstable_by(|a, b| {
                cmp_keys(a.prefix, self.key(a), b.prefix, self.key(b)).then(a.time.cmp(&b.time))
            });
        }
    }
}

/// The first 16 bytes of an encoded key, zero-padded, as a big-endian integer.
#[inline]
pub(super) fn key_prefix(k: &[u8]) -> u128 {
    u128::from_be_bytes(key_head(k))
}

/// Bytewise order of two keys given their prefixes: prefixes that differ decide; equal
/// prefixes of keys no longer than 16 bytes differ only in zero padding, so the
/// shorter key is first.
#[inline]
pub(super) fn cmp_keys(pa: u128, a: &[u8], pb: u128, b: &[u8]) -> Ordering {
    pa.cmp(&pb).then_with(|| {
        if a.len() <= 16 && b.len() <= 16 {
            a.len().cmp(&b.len())
        } else {
            a.cmp(b)
        }
    })
}

/// Split rows sorted by key into at most `parts` contiguous parts of similar size,
/// never splitting one key's rows.
pub(super) fn split_at_keys<'r>(
    spine: &Spine,
    rows: &'r [SpineRow],
    parts: usize,
) -> Vec<&'r [SpineRow]> {
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 1..parts {
        let mut end = (rows.len() * p / parts).max(start);
        while let (Some(prev), Some(next)) =
            (end.checked_sub(1).and_then(|e| rows.get(e)), rows.get(end))
        {
            if !spine.same_key(prev, next) {
                break;
            }
            end += 1;
        }
        if end > start {
            out.push(&rows[start..end]);
            start = end;
        }
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// Run `work` on each part, on its own thread when there are several. The first
/// error stops the others at their next output batch and is returned.
pub(super) fn in_parallel(
    parts: Vec<&[SpineRow]>,
    emit: Emit<'_>,
    work: Work<'_>,
) -> Result<(), SqlError> {
    if parts.len() <= 1 {
        return parts.into_iter().try_for_each(|p| work(p, emit));
    }
    let failed = AtomicBool::new(false);
    let guarded = |b: RecordBatch| !failed.load(AtomicOrdering::Relaxed) && emit(b);
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                let (guarded, failed) = (&guarded, &failed);
                scope.spawn(move || {
                    let r = work(part, guarded);
                    if r.is_err() {
                        failed.store(true, AtomicOrdering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        let mut result = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(SqlError::internal("an as-of join worker panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Spine rows (batch, row) gathered into output columns, one column at a time.
pub(super) struct SpineGather<'a> {
    pub(super) batches: &'a [RecordBatch],
    /// The rows, when all are in the first batch (one `take`).
    pub(super) rows: Option<UInt32Array>,
    /// (batch, row) pairs otherwise.
    pub(super) pairs: Vec<(usize, usize)>,
}

impl<'a> SpineGather<'a> {
    pub(super) fn new(batches: &'a [RecordBatch], idx: &[(u32, u32)]) -> SpineGather<'a> {
        if idx.iter().all(|&(b, _)| b == 0) {
            let rows = UInt32Array::from_iter_values(idx.iter().map(|&(_, r)| r));
            SpineGather {
                batches,
                rows: Some(rows),
                pairs: Vec::new(),
            }
        } else {
            let pairs = idx.iter().map(|&(b, r)| (b as usize, r as usize)).collect();
            SpineGather {
                batches,
                rows: None,
                pairs,
            }
        }
    }

    pub(super) fn column(&self, c: usize) -> Result<ArrayRef, SqlError> {
        let missing = || SqlError::internal("as-of spine column out of range");
        match &self.rows {
            Some(rows) => {
                let first = self.batches.first().ok_or_else(missing)?;
                let col = first.columns().get(c).ok_or_else(missing)?;
                Ok(datafusion::arrow::compute::take(col.as_ref(), rows, None)?)
            }
            None => {
                let sources = self
                    .batches
                    .iter()
                    .map(|b| b.columns().get(c).map(|a| a.as_ref()).ok_or_else(missing))
                    .collect::<Result<Vec<&dyn Array>, SqlError>>()?;
                Ok(datafusion::arrow::compute::interleave(
                    &sources,
                    &self.pairs,
                )?)
            }
        }
    }
}
