//! Frame-of-reference bit-packing of integers: writing packed areas and reading
//! them back ([`ForInts`]) with unaligned 8-byte loads kept inside the chunk by the
//! padding after every packed area.

use crate::codec::{Put, Reader};
use crate::error::{DecodeError, DecodeResult};

use super::tags::*;

/// Bits needed to store `v`.
pub(super) fn bits(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Append `[min:i64][width:u8][packed][pad]` for `values`.
pub(super) fn put_for(out: &mut Vec<u8>, values: &[i64]) {
    let min = values.iter().copied().min().unwrap_or(0);
    let max = values.iter().copied().max().unwrap_or(0);
    let width = bits(max.wrapping_sub(min) as u64);
    debug_assert!(width <= MAX_PACK_WIDTH);
    out.put_i64(min);
    out.put_u8(width as u8);
    if width == 0 {
        return;
    }
    let n_bytes = (values.len() * width as usize).div_ceil(8);
    out.reserve(n_bytes + PACK_PAD);
    // Values go into a 128-bit accumulator, flushed 8 bytes at a time (LSB first).
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    for &v in values {
        acc |= u128::from(v.wrapping_sub(min) as u64) << bits;
        bits += width;
        if bits >= 64 {
            out.extend_from_slice(&(acc as u64).to_le_bytes());
            acc >>= 64;
            bits -= 64;
        }
    }
    out.extend_from_slice(&(acc as u64).to_le_bytes()[..bits.div_ceil(8) as usize]);
    out.extend_from_slice(&[0u8; PACK_PAD]);
}

/// Size in bytes of a FOR area for `n` values of `width` bits.
pub(super) fn for_size(n: usize, width: u32) -> usize {
    9 + if width == 0 {
        0
    } else {
        (n * width as usize).div_ceil(8) + PACK_PAD
    }
}

/// Width a FOR encoding of `values` would use (`None`: too wide to pack).
pub(super) fn for_width(values: &[i64]) -> Option<u32> {
    let min = values.iter().copied().min().unwrap_or(0);
    let max = values.iter().copied().max().unwrap_or(0);
    let w = bits(max.wrapping_sub(min) as u64);
    (w <= MAX_PACK_WIDTH).then_some(w)
}

/// A parsed, bounds-checked FOR area of `n` integers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForInts<'a> {
    pub(super) min: i64,
    pub(super) data: &'a [u8],
    pub(super) n: u32,
    pub(super) width: u8,
}

impl<'a> ForInts<'a> {
    pub(super) fn parse(r: &mut Reader<'a>, n: usize) -> DecodeResult<Self> {
        let min = r.i64("FOR base")?;
        let width = r.u8("FOR width")?;
        if u32::from(width) > MAX_PACK_WIDTH {
            return Err(r.err(format!("FOR width {width} exceeds {MAX_PACK_WIDTH}")));
        }
        let n32 = u32::try_from(n).map_err(|_| r.err("FOR count overflows"))?;
        let data = if width == 0 {
            &[][..]
        } else {
            let len = n
                .checked_mul(width as usize)
                .map(|b| b.div_ceil(8) + PACK_PAD)
                .ok_or_else(|| r.err("FOR size overflows"))?;
            r.bytes(len, "FOR packed values")?
        };
        Ok(ForInts {
            min,
            data,
            n: n32,
            width,
        })
    }

    #[inline]
    pub(super) fn unpack(&self, i: usize) -> i64 {
        let bit = i * self.width as usize;
        let byte = bit >> 3;
        let word = self
            .data
            .get(byte..byte + 8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map_or(0, u64::from_le_bytes);
        let mask = (1u64 << self.width) - 1;
        self.min.wrapping_add(((word >> (bit & 7)) & mask) as i64)
    }

    /// Value `i`. Invariant: `i < len()`. Every caller indexes a row of a block whose
    /// row count was checked against this area's `n` at parse time (or an offset
    /// area's `n + 1` entries); the debug assertion holds the model and corruption
    /// tests to it. `parse` checked that the packed bytes cover `n` values plus
    /// padding, so in-range reads never fall off the data.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> i64 {
        debug_assert!(i < self.n as usize, "FOR read {i} past {}", self.n);
        if self.width == 0 {
            return self.min;
        }
        self.unpack(i)
    }

    pub(crate) fn len(&self) -> usize {
        self.n as usize
    }

    /// All values.
    pub(crate) fn to_vec(self) -> Vec<i64> {
        let n = self.len();
        if self.width == 0 {
            return vec![self.min; n];
        }
        (0..n).map(|i| self.unpack(i)).collect()
    }

    /// Offsets view: value `i` as a `usize` no larger than `limit`.
    pub(super) fn offset(&self, i: usize, limit: usize) -> DecodeResult<usize> {
        let v = self.get(i);
        usize::try_from(v)
            .ok()
            .filter(|&o| o <= limit)
            .ok_or_else(|| DecodeError::new(0, format!("offset {v} outside 0..={limit}")))
    }

    /// Check offsets are non-decreasing and within `limit`; return them as i32.
    pub(super) fn checked_offsets(&self, limit: usize) -> DecodeResult<Vec<i32>> {
        let vals = self.to_vec();
        let mut prev = 0i64;
        for &v in &vals {
            if v < prev || v as u64 > limit as u64 || v > i32::MAX as i64 {
                return Err(DecodeError::new(
                    0,
                    format!("bad offset {v} (limit {limit})"),
                ));
            }
            prev = v;
        }
        Ok(vals.into_iter().map(|v| v as i32).collect())
    }
}
