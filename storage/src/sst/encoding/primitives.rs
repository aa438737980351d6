//! The primitives chunk decoding and random access share: reading an integer or
//! a slice out of a raw area, typing an integer as its column's value, and
//! searching sorted keys by interpolation then galloping.

use std::sync::Arc;

use arrow_array::{ArrayRef, PrimitiveArray};
use arrow_buffer::NullBuffer;

use crate::error::{DecodeError, DecodeResult};
use crate::types::{ScalarType, Value};

use super::encode::key_as_u64;
use super::pack::ForInts;

/// Where key `t` probably lies among `n > 0` sorted keys running from `first` to
/// `last`: its place by linear interpolation (0 at or before `first`, `n - 1` past
/// `last`).
pub(crate) fn interpolate(t: u64, first: u64, last: u64, n: usize) -> usize {
    if t <= first {
        0
    } else if t > last {
        n.saturating_sub(1)
    } else {
        // first < t <= last.
        let span = n.saturating_sub(1) as u128;
        (u128::from(t - first) * span / u128::from(last - first).max(1)) as usize
    }
}

/// The first `i` in `0..n` with `!less(i)` (`n` if none), for a `less` that is true
/// on a prefix of `0..n` and false after it. The search starts at `guess` and
/// gallops outward (steps 1, 2, 4, ...) until it brackets the answer, then bisects:
/// about `2 log2(d)` probes for a guess `d` rows off, clustered around the guess.
pub(crate) fn lower_bound_from(n: usize, guess: usize, less: impl Fn(usize) -> bool) -> usize {
    if n == 0 {
        return 0;
    }
    let g = guess.min(n - 1);
    // Invariant after the gallop: rows before `lo` are less, rows from `hi` on are not.
    let (mut lo, mut hi);
    if less(g) {
        (lo, hi) = (g + 1, n);
        let mut step = 1;
        while let Some(at) = g.checked_add(step).filter(|&at| at < n) {
            if less(at) {
                lo = at + 1;
                step *= 2;
            } else {
                hi = at;
                break;
            }
        }
    } else {
        (lo, hi) = (0, g);
        let mut step = 1;
        while let Some(at) = g.checked_sub(step) {
            if less(at) {
                lo = at + 1;
                break;
            }
            hi = at;
            step *= 2;
        }
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if less(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

pub(super) fn int_value(s: ScalarType, v: i64) -> Value {
    match s {
        ScalarType::Int16 => Value::Int16(v as i16),
        ScalarType::Int32 => Value::Int32(v as i32),
        ScalarType::Date => Value::Date(v as i32),
        ScalarType::Timestamp | ScalarType::TimestampTz => Value::Timestamp(v),
        _ => Value::Int64(v),
    }
}

/// A key being searched for, with its integer form for packed key chunks.
pub(crate) struct KeyProbe<'a> {
    pub bytes: &'a [u8],
    pub as_u64: u64,
}

impl<'a> KeyProbe<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        KeyProbe {
            bytes,
            as_u64: if bytes.len() <= 8 {
                key_as_u64(bytes)
            } else {
                u64::MAX
            },
        }
    }
}

pub(super) fn prim<T: arrow_array::ArrowPrimitiveType>(
    values: impl IntoIterator<Item = T::Native>,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    let v: Vec<T::Native> = values.into_iter().collect();
    Arc::new(PrimitiveArray::<T>::new(v.into(), nulls))
}

/// Fixed-width little-endian integer `i` of plain data (0 if out of range).
#[inline]
pub(super) fn plain_int(data: &[u8], width: usize, i: usize) -> i64 {
    let at = i * width;
    match width {
        2 => data
            .get(at..at + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map_or(0, |b| i16::from_le_bytes(b) as i64),
        4 => data
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, |b| i32::from_le_bytes(b) as i64),
        _ => data
            .get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, i64::from_le_bytes),
    }
}

pub(super) fn slice_at<'a>(
    offsets: &ForInts<'a>,
    data: &'a [u8],
    i: usize,
) -> DecodeResult<&'a [u8]> {
    if i + 1 >= offsets.len() {
        return Err(DecodeError::new(0, format!("value {i} out of range")));
    }
    let s = offsets.offset(i, data.len())?;
    let e = offsets.offset(i + 1, data.len())?;
    data.get(s..e)
        .ok_or_else(|| DecodeError::new(0, format!("bad value bounds {s}..{e}")))
}
