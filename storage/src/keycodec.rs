//! Order-preserving ("memcomparable") encoding of entity keys.
//!
//! Invariant: for two keys of the same table, `encode(a) < encode(b)` bytewise iff
//! `a < b` column by column. Bloom filters hash these bytes; every sorted structure
//! (memtable, SST blocks, block index, file key ranges) compares them with `memcmp`.
//!
//! Per column: integers and dates/timestamps are big-endian with the sign bit
//! flipped; floats use the IEEE total-order trick; booleans are one byte. Text and
//! bytes are written raw when they are the last key column, and otherwise escaped
//! (`0x00` becomes `0x00 0xFF`) and terminated by `0x00 0x01`, so that a shorter
//! string sorts first and a prefix of key columns is a byte prefix of the key.
//!
//! Append-only logs (no key columns) get a synthetic row id instead: the commit
//! sequence (8 bytes BE) followed by the row's ordinal in its batch (4 bytes BE), so
//! each row is its own entity and logs scan in insertion order.

use std::sync::Arc;

use arrow_array::builder::BinaryBuilder;
use arrow_array::{Array, ArrayRef, BinaryArray};

use crate::arrowutil::{ColumnBuilder, ColumnView};
use crate::error::{DecodeError, DecodeResult, Error, Result};
use crate::types::{DataType, ScalarType, Value};

/// Length of a synthetic row-id key of an append-only log.
pub const ROW_ID_LEN: usize = 12;

/// Encode a full key. `values` and `types` are in key order.
pub fn encode_key(values: &[Value], types: &[ScalarType], names: &[String]) -> Result<Vec<u8>> {
    if values.len() != types.len() {
        return Err(Error::InvalidArgument(format!(
            "key has {} columns, {} values given",
            types.len(),
            values.len()
        )));
    }
    let mut out = Vec::with_capacity(8 * values.len());
    encode_prefix_into(&mut out, values, types, names, true)?;
    Ok(out)
}

/// Encode the key of every row of `arrays` (one array per key column, in key order)
/// into one binary array. A row with a NULL in any key column gets a NULL key.
pub fn encode_key_arrays(
    arrays: &[&dyn Array],
    types: &[ScalarType],
    names: &[String],
) -> Result<BinaryArray> {
    if arrays.len() != types.len() {
        return Err(Error::InvalidArgument(format!(
            "key has {} columns, {} arrays given",
            types.len(),
            arrays.len()
        )));
    }
    let rows = arrays.first().map_or(0, |a| a.len());
    let name = |i: usize| names.get(i).map(String::as_str).unwrap_or("key");
    let views = arrays
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (a, &t))| ColumnView::new(*a, DataType::Scalar(t), name(i)))
        .collect::<Result<Vec<_>>>()?;
    let mut out = BinaryBuilder::with_capacity(rows, rows * 9 * types.len());
    let mut key = Vec::with_capacity(16 * types.len());
    for r in 0..rows {
        if views.iter().any(|v| v.is_null(r)) {
            out.append_null();
            continue;
        }
        key.clear();
        for (i, (v, &t)) in views.iter().zip(types).enumerate() {
            let is_last = i + 1 == types.len();
            match (v.i64_at(r), t) {
                (Some(x), ScalarType::Int64 | ScalarType::Timestamp | ScalarType::TimestampTz) => {
                    key.extend_from_slice(&encode_i64(x))
                }
                _ => encode_one(&mut key, &v.value(r), t, is_last, name(i))?,
            }
        }
        out.append_value(&key);
    }
    Ok(out.finish())
}

/// Encode the first `values.len()` key columns so the result is a byte prefix of every
/// full key that starts with these values.
pub fn encode_key_prefix(
    values: &[Value],
    types: &[ScalarType],
    names: &[String],
) -> Result<Vec<u8>> {
    if values.len() > types.len() {
        return Err(Error::InvalidArgument(
            "key prefix longer than the key".into(),
        ));
    }
    let mut out = Vec::new();
    let full = values.len() == types.len();
    encode_prefix_into(&mut out, values, &types[..values.len()], names, full)?;
    Ok(out)
}

fn encode_prefix_into(
    out: &mut Vec<u8>,
    values: &[Value],
    types: &[ScalarType],
    names: &[String],
    last_is_final: bool,
) -> Result<()> {
    for (i, (v, &t)) in values.iter().zip(types).enumerate() {
        let name = names.get(i).map(String::as_str).unwrap_or("key");
        let is_last = last_is_final && i + 1 == types.len();
        encode_one(out, v, t, is_last, name)?;
    }
    Ok(())
}

fn encode_one(
    out: &mut Vec<u8>,
    v: &Value,
    t: ScalarType,
    is_last: bool,
    name: &str,
) -> Result<()> {
    let mismatch = || Error::InvalidValue {
        column: name.to_string(),
        detail: format!("expected {t:?} key value, got {v:?}"),
    };
    match (t, v) {
        (_, Value::Null) => return Err(Error::NullViolation(name.to_string())),
        (ScalarType::Bool, Value::Bool(b)) => out.push(u8::from(*b)),
        (ScalarType::Int16, Value::Int16(x)) => {
            out.extend_from_slice(&((*x as u16) ^ 0x8000).to_be_bytes())
        }
        (ScalarType::Int32, Value::Int32(x)) | (ScalarType::Date, Value::Date(x)) => {
            out.extend_from_slice(&((*x as u32) ^ 0x8000_0000).to_be_bytes())
        }
        (ScalarType::Int64, Value::Int64(x))
        | (ScalarType::Timestamp | ScalarType::TimestampTz, Value::Timestamp(x)) => {
            out.extend_from_slice(&encode_i64(*x))
        }
        (ScalarType::Float32, Value::Float32(f)) => {
            let bits = f.to_bits();
            let enc = if bits & 0x8000_0000 != 0 {
                !bits
            } else {
                bits ^ 0x8000_0000
            };
            out.extend_from_slice(&enc.to_be_bytes())
        }
        (ScalarType::Float64, Value::Float64(f)) => {
            let bits = f.to_bits();
            let enc = if bits & (1 << 63) != 0 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&enc.to_be_bytes())
        }
        (ScalarType::Text, Value::Text(s)) => encode_bytes(out, s.as_bytes(), is_last),
        (ScalarType::Bytes, Value::Bytes(b)) => encode_bytes(out, b, is_last),
        _ => return Err(mismatch()),
    }
    Ok(())
}

/// Equality of two encoded keys; for the common short keys (4 to 16 bytes) two
/// overlapping fixed-width loads instead of a `memcmp` call, which dominates scans
/// that compare every row's key with its predecessor's.
#[inline]
pub fn key_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if (8..=16).contains(&a.len()) {
        return a.first_chunk::<8>() == b.first_chunk::<8>()
            && a.last_chunk::<8>() == b.last_chunk::<8>();
    }
    if (4..8).contains(&a.len()) {
        return a.first_chunk::<4>() == b.first_chunk::<4>()
            && a.last_chunk::<4>() == b.last_chunk::<4>();
    }
    a == b
}

/// The first `N` bytes of a key, zero padded. Read as a big-endian integer it is a
/// sort prefix: `a < b` bytewise implies `head(a) <= head(b)`, so sorted structures
/// compare prefixes first (the engine packs 8 bytes, the as-of spine 16).
#[inline]
pub fn key_head<const N: usize>(key: &[u8]) -> [u8; N] {
    if let Some(head) = key.first_chunk::<N>() {
        return *head;
    }
    let mut b = [0u8; N];
    for (d, s) in b.iter_mut().zip(key) {
        *d = *s;
    }
    b
}

/// The first 8 bytes of a key as a big-endian integer, zero padded (see [`key_head`]).
#[inline]
pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    u64::from_be_bytes(key_head(key))
}

/// Byte order of two encoded keys. The first 8 bytes are compared as one big-endian
/// integer, so keys of one integer column (8 bytes) need no `memcmp` call: point
/// lookups compare the key with file and block bounds several times each.
#[inline]
pub fn key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    match (a.split_first_chunk::<8>(), b.split_first_chunk::<8>()) {
        (Some((ha, ra)), Some((hb, rb))) => u64::from_be_bytes(*ha)
            .cmp(&u64::from_be_bytes(*hb))
            .then_with(|| {
                if ra.is_empty() && rb.is_empty() {
                    std::cmp::Ordering::Equal
                } else {
                    ra.cmp(rb)
                }
            }),
        _ => a.cmp(b),
    }
}

/// Memcomparable encoding of one i64 (sign bit flipped, big-endian).
#[inline]
pub fn encode_i64(x: i64) -> [u8; 8] {
    ((x as u64) ^ (1 << 63)).to_be_bytes()
}

fn encode_bytes(out: &mut Vec<u8>, b: &[u8], is_last: bool) {
    if is_last {
        out.extend_from_slice(b);
        return;
    }
    for &byte in b {
        out.push(byte);
        if byte == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 1]);
}

/// The synthetic key of row `ordinal` of the batch committed at `seq`.
pub fn row_id_key(seq: u64, ordinal: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(ROW_ID_LEN);
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&ordinal.to_be_bytes());
    k
}

/// The smallest byte string greater than every string that starts with `prefix`,
/// or `None` if there is none (the prefix is all `0xFF`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last != 0xff {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Decoder state for one key: yields the columns in order.
struct KeyCursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> KeyCursor<'a> {
    fn fixed<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let b = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or_else(|| DecodeError::new(self.pos, "key too short"))?;
        self.pos += N;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    fn var(&mut self, is_last: bool) -> DecodeResult<Vec<u8>> {
        if is_last {
            let rest = self.buf.get(self.pos..).unwrap_or_default().to_vec();
            self.pos = self.buf.len();
            return Ok(rest);
        }
        let mut out = Vec::new();
        loop {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| DecodeError::new(self.pos, "unterminated key string"))?;
            self.pos += 1;
            if b != 0 {
                out.push(b);
                continue;
            }
            let next = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| DecodeError::new(self.pos, "unterminated key string"))?;
            self.pos += 1;
            match next {
                0xff => out.push(0),
                1 => return Ok(out),
                _ => return Err(DecodeError::new(self.pos, "bad key string escape")),
            }
        }
    }

    fn value(&mut self, t: ScalarType, is_last: bool) -> DecodeResult<Value> {
        Ok(match t {
            ScalarType::Bool => Value::Bool(self.fixed::<1>()?[0] != 0),
            ScalarType::Int16 => Value::Int16((u16::from_be_bytes(self.fixed()?) ^ 0x8000) as i16),
            ScalarType::Int32 => {
                Value::Int32((u32::from_be_bytes(self.fixed()?) ^ 0x8000_0000) as i32)
            }
            ScalarType::Date => {
                Value::Date((u32::from_be_bytes(self.fixed()?) ^ 0x8000_0000) as i32)
            }
            ScalarType::Int64 => Value::Int64(decode_i64(self.fixed()?)),
            ScalarType::Timestamp | ScalarType::TimestampTz => {
                Value::Timestamp(decode_i64(self.fixed()?))
            }
            ScalarType::Float32 => {
                let e = u32::from_be_bytes(self.fixed()?);
                let bits = if e & 0x8000_0000 != 0 {
                    e ^ 0x8000_0000
                } else {
                    !e
                };
                Value::Float32(f32::from_bits(bits))
            }
            ScalarType::Float64 => {
                let e = u64::from_be_bytes(self.fixed()?);
                let bits = if e & (1 << 63) != 0 {
                    e ^ (1 << 63)
                } else {
                    !e
                };
                Value::Float64(f64::from_bits(bits))
            }
            ScalarType::Text => {
                let b = self.var(is_last)?;
                Value::Text(
                    String::from_utf8(b)
                        .map_err(|_| DecodeError::new(self.pos, "key text is not UTF-8"))?,
                )
            }
            ScalarType::Bytes => Value::Bytes(self.var(is_last)?),
        })
    }
}

/// Inverse of [`encode_i64`].
#[inline]
pub fn decode_i64(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
}

/// Decode an encoded key back into its values (key order).
pub fn decode_key_bytes(key: &[u8], types: &[ScalarType]) -> Result<Vec<Value>> {
    decode_key(key, types)
        .map_err(|e| Error::InvalidArgument(format!("bad key bytes: {}", e.detail)))
}

/// Decode a full key into values (key order).
pub(crate) fn decode_key(key: &[u8], types: &[ScalarType]) -> DecodeResult<Vec<Value>> {
    let mut c = KeyCursor { buf: key, pos: 0 };
    let mut out = Vec::with_capacity(types.len());
    for (i, &t) in types.iter().enumerate() {
        out.push(c.value(t, i + 1 == types.len())?);
    }
    if c.pos != key.len() {
        return Err(DecodeError::new(c.pos, "trailing bytes after key"));
    }
    Ok(out)
}

/// Decode the key of a one-column key (what [`decode_key`] returns, without the Vec).
pub(crate) fn decode_single_key(key: &[u8], t: ScalarType) -> DecodeResult<Value> {
    let mut c = KeyCursor { buf: key, pos: 0 };
    let v = c.value(t, true)?;
    if c.pos != key.len() {
        return Err(DecodeError::new(c.pos, "trailing bytes after key"));
    }
    Ok(v)
}

/// Decode a column of encoded keys into one Arrow array per key column.
pub(crate) fn decode_key_columns(
    keys: &BinaryArray,
    types: &[ScalarType],
) -> DecodeResult<Vec<ArrayRef>> {
    // Fast path: a single 8-byte integer-like key column.
    if let [t @ (ScalarType::Int64 | ScalarType::Timestamp | ScalarType::TimestampTz)] = types {
        let mut vals = Vec::with_capacity(keys.len());
        for k in keys.iter() {
            let k = k.unwrap_or_default();
            let arr: [u8; 8] = k
                .try_into()
                .map_err(|_| DecodeError::new(0, "int64 key is not 8 bytes"))?;
            vals.push(decode_i64(arr));
        }
        return Ok(vec![i64_array(*t, vals)]);
    }
    let mut builders: Vec<ColumnBuilder> = types
        .iter()
        .map(|&t| ColumnBuilder::new(DataType::Scalar(t), keys.len()))
        .collect();
    for k in keys.iter() {
        let values = decode_key(k.unwrap_or_default(), types)?;
        for (b, v) in builders.iter_mut().zip(&values) {
            b.append_value(v);
        }
    }
    Ok(builders.into_iter().map(ColumnBuilder::finish).collect())
}

fn i64_array(t: ScalarType, vals: Vec<i64>) -> ArrayRef {
    match t {
        ScalarType::Timestamp => Arc::new(arrow_array::TimestampMicrosecondArray::from(vals)),
        ScalarType::TimestampTz => {
            Arc::new(arrow_array::TimestampMicrosecondArray::from(vals).with_timezone("+00:00"))
        }
        _ => Arc::new(arrow_array::Int64Array::from(vals)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_eq_and_key_cmp_agree_with_slices() {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for len in 0..24u8 {
            let base: Vec<u8> = (0..len).collect();
            keys.push(base.clone());
            for i in 0..len as usize {
                let mut k = base.clone();
                k[i] ^= 0x40;
                keys.push(k);
            }
        }
        for a in &keys {
            for b in &keys {
                assert_eq!(key_eq(a, b), a == b, "{a:?} vs {b:?}");
                assert_eq!(key_cmp(a, b), a.as_slice().cmp(b), "{a:?} vs {b:?}");
                if a < b {
                    assert!(key_prefix(a) <= key_prefix(b), "{a:?} vs {b:?}");
                }
            }
        }
    }

    fn enc(vals: &[Value], types: &[ScalarType]) -> Vec<u8> {
        encode_key(vals, types, &[]).unwrap()
    }

    #[test]
    fn integer_keys_sort_like_integers() {
        let t = [ScalarType::Int64];
        let xs = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in xs.windows(2) {
            assert!(enc(&[Value::Int64(w[0])], &t) < enc(&[Value::Int64(w[1])], &t));
        }
    }

    #[test]
    fn float_keys_sort_in_total_order() {
        let t = [ScalarType::Float64];
        let xs = [
            f64::NEG_INFINITY,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.0,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(enc(&[Value::Float64(w[0])], &t) < enc(&[Value::Float64(w[1])], &t));
        }
    }

    #[test]
    fn composite_text_keys_sort_column_by_column() {
        let t = [ScalarType::Text, ScalarType::Int32];
        let a = enc(&[Value::Text("a".into()), Value::Int32(9)], &t);
        let b = enc(&[Value::Text("a\0".into()), Value::Int32(1)], &t);
        let c = enc(&[Value::Text("ab".into()), Value::Int32(0)], &t);
        assert!(a < b && b < c);
    }

    #[test]
    fn prefix_is_a_byte_prefix_of_the_full_key() {
        let t = [ScalarType::Text, ScalarType::Text];
        let full = enc(&[Value::Text("x\0y".into()), Value::Text("z".into())], &t);
        let prefix = encode_key_prefix(&[Value::Text("x\0y".into())], &t, &[]).unwrap();
        assert!(full.starts_with(&prefix));
    }

    #[test]
    fn keys_round_trip_through_decode() {
        let t = [
            ScalarType::Text,
            ScalarType::Bytes,
            ScalarType::Int16,
            ScalarType::Date,
            ScalarType::Bool,
            ScalarType::Float32,
            ScalarType::Timestamp,
            ScalarType::Text,
        ];
        let v = vec![
            Value::Text("he\0llo".into()),
            Value::Bytes(vec![0, 0xff, 0]),
            Value::Int16(-3),
            Value::Date(-700),
            Value::Bool(true),
            Value::Float32(-1.5),
            Value::Timestamp(1_700_000_000_000_000),
            Value::Text("tail\0".into()),
        ];
        let k = enc(&v, &t);
        assert_eq!(decode_key(&k, &t).unwrap(), v);
    }

    #[test]
    fn null_key_is_a_not_null_violation() {
        let e = encode_key(&[Value::Null], &[ScalarType::Int64], &["id".into()]).unwrap_err();
        assert!(matches!(e, Error::NullViolation(c) if c == "id"));
    }

    #[test]
    fn damaged_key_bytes_decode_to_an_error() {
        let t = [ScalarType::Text, ScalarType::Int64];
        assert!(decode_key(&[b'a', 0, 7], &t).is_err());
        assert!(decode_key(b"a", &t).is_err());
        assert!(decode_key(&[0, 1, 1, 2], &t).is_err());
    }

    #[test]
    fn prefix_successor_skips_ff() {
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
    }
}
