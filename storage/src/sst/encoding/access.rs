//! Random access without parsing the whole chunk: where row `i`'s value lies in a
//! chunk (the block layout the reader keeps), interpolation search over sorted keys,
//! prefetching, and decoding one value.

use crate::codec::Reader;
use crate::error::{DecodeError, DecodeResult};
use crate::types::{DataType, ScalarType, Value};

use super::chunk::Chunk;
use super::pack::ForInts;
use super::primitives::*;
use super::tags::*;

/// Where row `i`'s value lies in a chunk of `n` rows of type `ty` (an offset into
/// `bytes`), for the chunks [`value_layout`] describes; `None` for the others or on
/// any inconsistency. Point lookups prefetch these places for all columns at once
/// before decoding, so the cache misses of a row's columns overlap instead of
/// following one another.
pub(crate) fn value_offset(bytes: &[u8], n: usize, i: usize, ty: DataType) -> Option<usize> {
    let (at, bits) = value_layout(bytes, n, ty)?;
    at.checked_add(i.checked_mul(bits)? / 8)
}

/// Where the values of a chunk of `n` rows of type `ty` lie, for the encodings that
/// put them at a computable place (plain values, frame-of-reference integers,
/// integer keys): the offset of row 0's value in `bytes` and the bits per row (read
/// from the chunk's header). `None` for the others or on any inconsistency.
pub(crate) fn value_layout(bytes: &[u8], n: usize, ty: DataType) -> Option<(usize, usize)> {
    let flags = *bytes.first()?;
    let mut at = 1;
    if flags & FLAG_NULLS != 0 {
        at += n.div_ceil(8);
    }
    let enc = *bytes.get(at)?;
    at += 1;
    match (enc, ty) {
        (ENC_PLAIN, DataType::Scalar(s)) => Some((at, s.fixed_width()?.checked_mul(8)?)),
        (ENC_FOR, DataType::Scalar(s)) if s.is_integer_like() => {
            // Base, width, then the packed values.
            Some((at + 9, usize::from(*bytes.get(at + 8)?)))
        }
        (ENC_KEY_U64, _) => {
            // Key length, base, width, then the keys as packed integers.
            Some((at + 10, usize::from(*bytes.get(at + 9)?)))
        }
        _ => None,
    }
}

/// Hint the CPU to load the cache line holding `bytes[at]` (nothing if out of range).
#[inline(always)]
pub(crate) fn prefetch(bytes: &[u8], at: usize) {
    if let Some(p) = bytes.get(at) {
        prefetch_ref(p);
    }
}

/// Hint the CPU to load the cache line holding `*r`.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch_ref<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only needs SSE, part of the x86-64 baseline; it is a hint
    // that never faults and reads nothing into the program (and `r` is a live
    // reference anyway).
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const T).cast(),
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// Row `i` of a chunk of `n` rows of type `ty`, decoded straight from its bytes.
/// Point lookups use this for feature columns: the common encodings (plain values,
/// frame-of-reference integers) need a few bounds-checked reads and no `Chunk`.
/// Inlined for the commonest case (8-byte plain values without NULLs), so the value
/// reaches the caller in registers instead of through a stack copy.
#[inline]
pub(crate) fn value_at(bytes: &[u8], n: usize, i: usize, ty: DataType) -> DecodeResult<Value> {
    if let Some(v) = plain8_at(bytes, n, i, ty) {
        return Ok(v);
    }
    value_at_any(bytes, n, i, ty)
}

/// Row `i` of a chunk of 8-byte plain values without NULLs (float8, int8,
/// timestamps); `None` for any other chunk.
#[inline(always)]
pub(super) fn plain8_at(bytes: &[u8], n: usize, i: usize, ty: DataType) -> Option<Value> {
    let (&[flags, enc], values) = bytes.split_first_chunk::<2>()?;
    if flags != 0 || enc != ENC_PLAIN || i >= n {
        return None;
    }
    let at = i.checked_mul(8)?;
    let raw = u64::from_le_bytes(*values.get(at..)?.first_chunk::<8>()?);
    match ty {
        DataType::Scalar(ScalarType::Float64) => Some(Value::Float64(f64::from_bits(raw))),
        DataType::Scalar(ScalarType::Int64) => Some(Value::Int64(raw as i64)),
        DataType::Scalar(ScalarType::Timestamp | ScalarType::TimestampTz) => {
            Some(Value::Timestamp(raw as i64))
        }
        _ => None,
    }
}

#[inline(never)]
pub(super) fn value_at_any(bytes: &[u8], n: usize, i: usize, ty: DataType) -> DecodeResult<Value> {
    if i >= n {
        return Err(DecodeError::new(0, format!("row {i} past chunk of {n}")));
    }
    let mut r = Reader::new(bytes);
    let flags = r.u8("chunk flags")?;
    if flags & FLAG_NULLS != 0 {
        let bitmap = r.bytes(n.div_ceil(8), "null bitmap")?;
        if bitmap.get(i / 8).is_none_or(|b| b & (1 << (i % 8)) == 0) {
            return Ok(Value::Null);
        }
    }
    let mut peek = r;
    let enc = peek.u8("chunk encoding")?;
    match (enc, ty) {
        (ENC_PLAIN, DataType::Scalar(s)) if s != ScalarType::Bool => {
            let w = s
                .fixed_width()
                .ok_or_else(|| r.err("plain encoding for a variable-width type"))?;
            peek.bytes(i * w, "plain values")?;
            let b = peek.bytes(w, "plain value")?;
            let bits = plain_int(b, w, 0);
            Ok(match s {
                ScalarType::Float32 => Value::Float32(f32::from_bits(bits as u32)),
                ScalarType::Float64 => Value::Float64(f64::from_bits(bits as u64)),
                _ => int_value(s, bits),
            })
        }
        (ENC_FOR, DataType::Scalar(s)) if s.is_integer_like() => {
            Ok(int_value(s, ForInts::parse(&mut peek, n)?.get(i)))
        }
        _ => {
            let mut whole = Reader::new(bytes);
            Chunk::parse(&mut whole, n, ty)?.value(i, ty)
        }
    }
}
