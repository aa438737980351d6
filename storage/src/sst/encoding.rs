//! Column-chunk encodings of SST blocks (byte layouts in FORMAT.md).
//!
//! A chunk holds one column of one block. Every encoding supports both random access
//! to row `i` (point lookups: binary search on keys, one row's features) and bulk
//! decoding into the column's canonical Arrow array (scans). Encodings are chosen per
//! chunk by size: frame-of-reference bit-packing for integers, timestamps and
//! sequences; dictionaries for repetitive strings; plain for floats.
//!
//! Invariants: [`Chunk::parse`] checks every length against the bytes it has, and
//! every accessor is bounds-checked, so a damaged chunk yields a [`DecodeError`] and
//! never a panic. Packed integer areas are followed by 8 zero bytes, so an unaligned
//! 8-byte load at any packed position stays inside the chunk.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, ListArray, PrimitiveArray, StringArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};

use crate::codec::{Put, Reader};
use crate::error::{DecodeError, DecodeResult};
use crate::types::{DataType, ScalarType, Value, list_item_field};

const FLAG_NULLS: u8 = 1;

const ENC_PLAIN: u8 = 0;
const ENC_FOR: u8 = 1;
const ENC_BITMAP: u8 = 2;
const ENC_VARLEN: u8 = 3;
const ENC_DICT: u8 = 4;
const ENC_LIST: u8 = 5;
const ENC_KEY_U64: u8 = 6;
const ENC_CONST_BOOL: u8 = 7;

/// Most values one chunk may hold (list elements included); blocks are cut well
/// below this, so a larger count can only come from damaged bytes.
pub(crate) const MAX_CHUNK_VALUES: usize = 1 << 24;

/// Widest frame-of-reference packing; wider values are stored plain.
const MAX_PACK_WIDTH: u32 = 56;
/// Zero bytes after every packed area (see the module invariants).
const PACK_PAD: usize = 8;

// ---------------------------------------------------------------------------------
// Frame-of-reference bit-packing

/// Bits needed to store `v`.
fn bits(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Append `[min:i64][width:u8][packed][pad]` for `values`.
fn put_for(out: &mut Vec<u8>, values: &[i64]) {
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
fn for_size(n: usize, width: u32) -> usize {
    9 + if width == 0 {
        0
    } else {
        (n * width as usize).div_ceil(8) + PACK_PAD
    }
}

/// Width a FOR encoding of `values` would use (`None`: too wide to pack).
fn for_width(values: &[i64]) -> Option<u32> {
    let min = values.iter().copied().min().unwrap_or(0);
    let max = values.iter().copied().max().unwrap_or(0);
    let w = bits(max.wrapping_sub(min) as u64);
    (w <= MAX_PACK_WIDTH).then_some(w)
}

/// A parsed, bounds-checked FOR area of `n` integers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForInts<'a> {
    min: i64,
    data: &'a [u8],
    n: u32,
    width: u8,
}

impl<'a> ForInts<'a> {
    fn parse(r: &mut Reader<'a>, n: usize) -> DecodeResult<Self> {
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
    fn unpack(&self, i: usize) -> i64 {
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

    /// Value `i`; rows past the end read as the base value (callers check `i < n`).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> i64 {
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
    fn offset(&self, i: usize, limit: usize) -> DecodeResult<usize> {
        let v = self.get(i);
        usize::try_from(v)
            .ok()
            .filter(|&o| o <= limit)
            .ok_or_else(|| DecodeError::new(0, format!("offset {v} outside 0..={limit}")))
    }

    /// Check offsets are non-decreasing and within `limit`; return them as i32.
    fn checked_offsets(&self, limit: usize) -> DecodeResult<Vec<i32>> {
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

// ---------------------------------------------------------------------------------
// Encoding

/// Encode one column of a block from its canonical Arrow array.
pub(crate) fn encode_column(out: &mut Vec<u8>, array: &dyn Array, ty: DataType) {
    let n = array.len();
    match array.nulls().filter(|nb| nb.null_count() > 0) {
        Some(nb) => {
            out.put_u8(FLAG_NULLS);
            let bb = nb.inner();
            let bytes = bitmap_bytes(bb);
            out.extend_from_slice(&bytes);
        }
        None => out.put_u8(0),
    }
    match ty {
        DataType::List(elem) => {
            let list = array.as_list::<i32>();
            out.put_u8(ENC_LIST);
            let base = list.value_offsets().first().copied().unwrap_or(0);
            let offs: Vec<i64> = list
                .value_offsets()
                .iter()
                .map(|&o| (o - base) as i64)
                .collect();
            put_for(out, &offs);
            let end = offs.last().copied().unwrap_or(0) as usize;
            let child = list.values().slice(base as usize, end);
            encode_column(out, child.as_ref(), DataType::Scalar(elem));
        }
        DataType::Scalar(s) => encode_scalar(out, array, s, n),
    }
}

fn encode_scalar(out: &mut Vec<u8>, array: &dyn Array, s: ScalarType, n: usize) {
    match s {
        ScalarType::Bool => {
            let b = array.as_boolean();
            let ones = b.values().count_set_bits();
            if ones == 0 || ones == n {
                out.put_u8(ENC_CONST_BOOL);
                out.put_u8(u8::from(ones != 0 && n > 0));
            } else {
                out.put_u8(ENC_BITMAP);
                out.extend_from_slice(&bitmap_bytes(b.values()));
            }
        }
        ScalarType::Float32 => {
            out.put_u8(ENC_PLAIN);
            for v in array.as_primitive::<Float32Type>().values().iter() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        ScalarType::Float64 => {
            out.put_u8(ENC_PLAIN);
            for v in array.as_primitive::<Float64Type>().values().iter() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        ScalarType::Text | ScalarType::Bytes => {
            let values: Vec<&[u8]> = (0..n).map(|i| bytes_at(array, i)).collect();
            encode_bytes(out, &values);
        }
        _ => encode_ints(out, &int_values(array, s), s.fixed_width().unwrap_or(8)),
    }
}

/// Integer values of an integer-like array (NULL slots hold their masked value).
fn int_values(array: &dyn Array, s: ScalarType) -> Vec<i64> {
    match s {
        ScalarType::Int16 => array
            .as_primitive::<Int16Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        ScalarType::Int32 => array
            .as_primitive::<Int32Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        ScalarType::Date => array
            .as_primitive::<Date32Type>()
            .values()
            .iter()
            .map(|&v| v as i64)
            .collect(),
        ScalarType::Timestamp | ScalarType::TimestampTz => array
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec(),
        _ => array.as_primitive::<Int64Type>().values().to_vec(),
    }
}

/// Encode integers as FOR when it is smaller than plain `width`-byte values.
pub(crate) fn encode_ints(out: &mut Vec<u8>, values: &[i64], width: usize) {
    let n = values.len();
    match for_width(values) {
        Some(w) if for_size(n, w) < n * width + 1 => {
            out.put_u8(ENC_FOR);
            put_for(out, values);
        }
        _ => {
            out.put_u8(ENC_PLAIN);
            for &v in values {
                out.extend_from_slice(&v.to_le_bytes()[..width]);
            }
        }
    }
}

fn bytes_at(array: &dyn Array, i: usize) -> &[u8] {
    if let Some(a) = array.as_string_opt::<i32>() {
        a.value(i).as_bytes()
    } else if let Some(a) = array.as_binary_opt::<i32>() {
        a.value(i)
    } else {
        &[]
    }
}

/// Encode variable-width values as VARLEN or DICT, whichever is smaller.
fn encode_bytes(out: &mut Vec<u8>, values: &[&[u8]]) {
    let n = values.len();
    let total: usize = values.iter().map(|v| v.len()).sum();
    let mut dict: HashMap<&[u8], u32> = HashMap::new();
    let mut dict_values: Vec<&[u8]> = Vec::new();
    let mut codes = Vec::with_capacity(n);
    let mut dict_bytes = 0usize;
    for v in values {
        let next = dict_values.len() as u32;
        let code = *dict.entry(v).or_insert_with(|| {
            dict_values.push(v);
            dict_bytes += v.len();
            next
        });
        codes.push(code as i64);
        if dict_values.len() > n / 2 + 1 {
            break;
        }
    }
    let use_dict = codes.len() == n && {
        let d = dict_values.len();
        let dict_size = for_size(d + 1, bits(dict_bytes as u64))
            + dict_bytes
            + for_size(n, bits(d.saturating_sub(1) as u64));
        let plain_size = for_size(n + 1, bits(total as u64)) + total;
        dict_size < plain_size
    };
    if use_dict {
        out.put_u8(ENC_DICT);
        out.put_varint(dict_values.len() as u64);
        put_offsets(out, &dict_values);
        for v in &dict_values {
            out.extend_from_slice(v);
        }
        put_for(out, &codes);
    } else {
        out.put_u8(ENC_VARLEN);
        put_offsets(out, values);
        for v in values {
            out.extend_from_slice(v);
        }
    }
}

fn put_offsets(out: &mut Vec<u8>, values: &[&[u8]]) {
    let mut offs = Vec::with_capacity(values.len() + 1);
    let mut acc = 0i64;
    offs.push(0);
    for v in values {
        acc += v.len() as i64;
        offs.push(acc);
    }
    put_for(out, &offs);
}

/// Encode the entity-key column: packed big-endian integers when every key has the
/// same length of at most 8 bytes (integer keys), else like text.
pub(crate) fn encode_keys(out: &mut Vec<u8>, keys: &BinaryArray) {
    out.put_u8(0);
    let n = keys.len();
    let len0 = if n > 0 { keys.value_length(0) } else { 0 };
    let fixed = (0..n).all(|i| keys.value_length(i) == len0);
    if fixed && (1..=8).contains(&len0) {
        let vals: Vec<i64> = keys
            .iter()
            .map(|k| key_as_u64(k.unwrap_or_default()) as i64)
            .collect();
        if for_width(&vals).is_some() {
            out.put_u8(ENC_KEY_U64);
            out.put_u8(len0 as u8);
            put_for(out, &vals);
            return;
        }
    }
    let values: Vec<&[u8]> = keys.iter().map(|k| k.unwrap_or_default()).collect();
    encode_bytes(out, &values);
}

/// A key of at most 8 bytes as a big-endian integer (right-aligned).
#[inline]
pub(crate) fn key_as_u64(k: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(k) {
        Ok(b) => u64::from_be_bytes(b),
        Err(_) => k
            .iter()
            .take(8)
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    }
}

fn bitmap_bytes(b: &BooleanBuffer) -> Vec<u8> {
    let n = b.len();
    let mut out = vec![0u8; n.div_ceil(8)];
    for (i, v) in b.iter().enumerate() {
        if v {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// Decoding

/// A parsed column chunk of `n` rows.
#[derive(Debug)]
pub(crate) struct Chunk<'a> {
    n: usize,
    nulls: Option<&'a [u8]>,
    body: Body<'a>,
}

#[derive(Debug)]
enum Body<'a> {
    Plain {
        data: &'a [u8],
        width: usize,
    },
    For(ForInts<'a>),
    Bitmap(&'a [u8]),
    ConstBool(bool),
    VarLen {
        offsets: ForInts<'a>,
        data: &'a [u8],
    },
    Dict {
        offsets: ForInts<'a>,
        data: &'a [u8],
        codes: ForInts<'a>,
        size: usize,
    },
    List {
        offsets: ForInts<'a>,
        child: Box<Chunk<'a>>,
    },
    KeyU64 {
        len: usize,
        vals: ForInts<'a>,
    },
}

impl<'a> Chunk<'a> {
    /// Parse a chunk of `n` rows of type `ty` from the front of `r`.
    pub(crate) fn parse(r: &mut Reader<'a>, n: usize, ty: DataType) -> DecodeResult<Self> {
        let flags = r.u8("chunk flags")?;
        if flags & !FLAG_NULLS != 0 {
            return Err(r.err(format!("unknown chunk flags {flags:#x}")));
        }
        let nulls = if flags & FLAG_NULLS != 0 {
            Some(r.bytes(n.div_ceil(8), "null bitmap")?)
        } else {
            None
        };
        let enc = r.u8("chunk encoding")?;
        let body = match (enc, ty) {
            (ENC_LIST, DataType::List(elem)) => {
                let offsets = ForInts::parse(r, n + 1)?;
                let child_n = usize::try_from(offsets.get(n))
                    .ok()
                    .filter(|&c| c <= MAX_CHUNK_VALUES)
                    .ok_or_else(|| r.err("bad list length"))?;
                let child = Chunk::parse(r, child_n, DataType::Scalar(elem))?;
                if child.nulls.is_some() {
                    return Err(r.err("list elements must not be NULL"));
                }
                Body::List {
                    offsets,
                    child: Box::new(child),
                }
            }
            (_, DataType::List(_)) => return Err(r.err(format!("encoding {enc} for a list"))),
            (ENC_PLAIN, DataType::Scalar(s)) if s != ScalarType::Bool => {
                let width = s
                    .fixed_width()
                    .ok_or_else(|| r.err("plain encoding for a variable-width type"))?;
                let len = n.checked_mul(width).ok_or_else(|| r.err("size overflow"))?;
                Body::Plain {
                    data: r.bytes(len, "plain values")?,
                    width,
                }
            }
            (ENC_FOR, DataType::Scalar(s)) if s.is_integer_like() => {
                Body::For(ForInts::parse(r, n)?)
            }
            (ENC_BITMAP, DataType::Scalar(ScalarType::Bool)) => {
                Body::Bitmap(r.bytes(n.div_ceil(8), "bool bitmap")?)
            }
            (ENC_CONST_BOOL, DataType::Scalar(ScalarType::Bool)) => {
                Body::ConstBool(r.u8("const bool")? != 0)
            }
            (ENC_VARLEN, DataType::Scalar(ScalarType::Text | ScalarType::Bytes)) => {
                let offsets = ForInts::parse(r, n + 1)?;
                let len = offsets
                    .offset(n, r.remaining())
                    .map_err(|e| r.err(e.detail))?;
                Body::VarLen {
                    offsets,
                    data: r.bytes(len, "var-len data")?,
                }
            }
            (ENC_DICT, DataType::Scalar(ScalarType::Text | ScalarType::Bytes)) => {
                let size = r.len(n.max(1), "dictionary size")?;
                let offsets = ForInts::parse(r, size + 1)?;
                let len = offsets
                    .offset(size, r.remaining())
                    .map_err(|e| r.err(e.detail))?;
                let data = r.bytes(len, "dictionary data")?;
                let codes = ForInts::parse(r, n)?;
                Body::Dict {
                    offsets,
                    data,
                    codes,
                    size,
                }
            }
            (ENC_KEY_U64, DataType::Scalar(ScalarType::Bytes)) => {
                let len = usize::from(r.u8("key length")?);
                if !(1..=8).contains(&len) {
                    return Err(r.err(format!("bad fixed key length {len}")));
                }
                Body::KeyU64 {
                    len,
                    vals: ForInts::parse(r, n)?,
                }
            }
            _ => return Err(r.err(format!("encoding {enc} is not valid for {ty}"))),
        };
        Ok(Chunk { n, nulls, body })
    }

    /// True if row `i` is NULL.
    #[inline]
    pub(crate) fn is_null(&self, i: usize) -> bool {
        self.nulls
            .is_some_and(|b| b.get(i / 8).is_none_or(|byte| byte & (1 << (i % 8)) == 0))
    }

    /// Integer value of row `i` (integer-like and FOR/PLAIN chunks).
    #[inline]
    pub(crate) fn int(&self, i: usize) -> i64 {
        match &self.body {
            Body::For(f) => f.get(i),
            Body::Plain { data, width } => plain_int(data, *width, i),
            _ => 0,
        }
    }

    /// Boolean value of row `i`.
    #[inline]
    pub(crate) fn bool(&self, i: usize) -> bool {
        match &self.body {
            Body::Bitmap(b) => b.get(i / 8).is_some_and(|byte| byte & (1 << (i % 8)) != 0),
            Body::ConstBool(v) => *v,
            _ => false,
        }
    }

    /// True if no row is true (a boolean column of all `false`).
    pub(crate) fn all_false(&self) -> bool {
        matches!(self.body, Body::ConstBool(false))
    }

    /// Bytes of row `i` of a TEXT/BYTES chunk.
    pub(crate) fn bytes(&self, i: usize) -> DecodeResult<&'a [u8]> {
        match &self.body {
            Body::VarLen { offsets, data } => slice_at(offsets, data, i),
            Body::Dict {
                offsets,
                data,
                codes,
                size,
            } => {
                let code = usize::try_from(codes.get(i))
                    .ok()
                    .filter(|c| c < size)
                    .ok_or_else(|| DecodeError::new(0, "dictionary code out of range"))?;
                slice_at(offsets, data, code)
            }
            _ => Err(DecodeError::new(0, "not a var-len chunk")),
        }
    }

    /// The first row whose key is `>= target`, for chunks of fixed-length integer
    /// keys (KEY_U64) probed with a key of that length; `None` for other chunks.
    /// `last`: the chunk's last key if the caller knows it (the block index holds
    /// it), which saves reading the far end of the column.
    ///
    /// One interpolation step (the key's place between the first and last keys)
    /// guesses the row; a gallop outward from the guess then brackets the answer and
    /// a bisection finishes. Dense ids land on or next to the answer, so the search
    /// touches one or two cache lines; any distribution needs at most about twice a
    /// binary search's probes (the gallop is logarithmic in the guess's error).
    pub(crate) fn lower_bound_u64(
        &self,
        target: &KeyProbe<'_>,
        last: Option<u64>,
    ) -> Option<usize> {
        let Body::KeyU64 { len, vals } = &self.body else {
            return None;
        };
        if target.bytes.len() != *len {
            return None;
        }
        let n = self.n;
        let t = target.as_u64;
        let key = |i: usize| vals.get(i) as u64;
        if n == 0 || t <= key(0) {
            return Some(0);
        }
        let guess = interpolate(t, key(0), last.unwrap_or_else(|| key(n - 1)), n);
        Some(lower_bound_from(n, guess, |i| key(i) < t))
    }

    /// The key of row 0 of an integer key chunk.
    pub(crate) fn first_key_u64(&self) -> Option<u64> {
        match &self.body {
            Body::KeyU64 { vals, .. } if self.n > 0 => Some(vals.get(0) as u64),
            _ => None,
        }
    }

    /// Compare the key of row `i` with `target` (key chunks only).
    #[inline]
    pub(crate) fn cmp_key(
        &self,
        i: usize,
        target: &KeyProbe<'_>,
    ) -> DecodeResult<std::cmp::Ordering> {
        match (&self.body, target) {
            (Body::KeyU64 { len, vals }, KeyProbe { bytes, as_u64 }) if bytes.len() == *len => {
                Ok((vals.get(i) as u64).cmp(as_u64))
            }
            (Body::KeyU64 { len, vals }, KeyProbe { bytes, .. }) => {
                let v = (vals.get(i) as u64).to_be_bytes();
                Ok(v[8 - len..].cmp(bytes))
            }
            _ => Ok(self.bytes(i)?.cmp(target.bytes)),
        }
    }

    /// Key bytes of row `i` (key chunks only).
    pub(crate) fn key(&self, i: usize) -> DecodeResult<Vec<u8>> {
        match &self.body {
            Body::KeyU64 { len, vals } => {
                Ok((vals.get(i) as u64).to_be_bytes()[8 - len..].to_vec())
            }
            _ => Ok(self.bytes(i)?.to_vec()),
        }
    }

    /// Row `i` as a [`Value`] of type `ty`.
    pub(crate) fn value(&self, i: usize, ty: DataType) -> DecodeResult<Value> {
        if i >= self.n {
            return Err(DecodeError::new(
                0,
                format!("row {i} past chunk of {}", self.n),
            ));
        }
        if self.is_null(i) {
            return Ok(Value::Null);
        }
        match (ty, &self.body) {
            (DataType::List(elem), Body::List { offsets, child }) => {
                let s = offsets.offset(i, child.n)?;
                let e = offsets.offset(i + 1, child.n)?;
                if e < s {
                    return Err(DecodeError::new(0, "list offsets decrease"));
                }
                (s..e)
                    .map(|j| child.value(j, DataType::Scalar(elem)))
                    .collect::<DecodeResult<Vec<_>>>()
                    .map(Value::List)
            }
            (DataType::Scalar(s), _) => Ok(match s {
                ScalarType::Bool => Value::Bool(self.bool(i)),
                ScalarType::Float32 => Value::Float32(f32::from_bits(self.plain_bits(i) as u32)),
                ScalarType::Float64 => Value::Float64(f64::from_bits(self.plain_bits(i))),
                ScalarType::Text => Value::Text(
                    std::str::from_utf8(self.bytes(i)?)
                        .map_err(|_| DecodeError::new(0, "text is not UTF-8"))?
                        .to_string(),
                ),
                ScalarType::Bytes => Value::Bytes(self.bytes(i)?.to_vec()),
                ScalarType::Int16
                | ScalarType::Int32
                | ScalarType::Int64
                | ScalarType::Date
                | ScalarType::Timestamp
                | ScalarType::TimestampTz => int_value(s, self.int(i)),
            }),
            _ => Err(DecodeError::new(0, "chunk does not match its column type")),
        }
    }

    fn plain_bits(&self, i: usize) -> u64 {
        match &self.body {
            Body::Plain { data, width } => plain_int(data, *width, i) as u64,
            _ => 0,
        }
    }

    fn null_buffer(&self) -> Option<NullBuffer> {
        self.nulls
            .map(|b| NullBuffer::new(BooleanBuffer::new(Buffer::from_slice_ref(b), 0, self.n)))
    }

    /// All integer values (integer-like chunks).
    pub(crate) fn ints(&self) -> Vec<i64> {
        match &self.body {
            Body::For(f) => f.to_vec(),
            Body::Plain { data, width } => {
                (0..self.n).map(|i| plain_int(data, *width, i)).collect()
            }
            _ => vec![0; self.n],
        }
    }

    /// Decode the whole chunk into the canonical Arrow array of `ty`.
    pub(crate) fn to_arrow(&self, ty: DataType) -> DecodeResult<ArrayRef> {
        let nulls = self.null_buffer();
        let n = self.n;
        Ok(match ty {
            DataType::List(elem) => {
                let Body::List { offsets, child } = &self.body else {
                    return Err(DecodeError::new(0, "list column without list encoding"));
                };
                let offs = offsets.checked_offsets(child.n)?;
                if offs.first().copied().unwrap_or(0) != 0 {
                    return Err(DecodeError::new(0, "list offsets do not start at 0"));
                }
                let values = child.to_arrow(DataType::Scalar(elem))?;
                let list = ListArray::try_new(
                    Arc::new(list_item_field(elem)),
                    OffsetBuffer::new(ScalarBuffer::from(offs)),
                    values,
                    nulls,
                )
                .map_err(|e| DecodeError::new(0, e.to_string()))?;
                Arc::new(list)
            }
            DataType::Scalar(s) => match s {
                ScalarType::Bool => {
                    let values = match &self.body {
                        Body::Bitmap(b) => BooleanBuffer::new(Buffer::from_slice_ref(b), 0, n),
                        Body::ConstBool(v) => {
                            if *v {
                                BooleanBuffer::new_set(n)
                            } else {
                                BooleanBuffer::new_unset(n)
                            }
                        }
                        _ => return Err(DecodeError::new(0, "bool column with bad encoding")),
                    };
                    Arc::new(BooleanArray::new(values, nulls))
                }
                ScalarType::Int16 => {
                    prim::<Int16Type>(self.ints().iter().map(|&v| v as i16), nulls)
                }
                ScalarType::Int32 => {
                    prim::<Int32Type>(self.ints().iter().map(|&v| v as i32), nulls)
                }
                ScalarType::Date => {
                    prim::<Date32Type>(self.ints().iter().map(|&v| v as i32), nulls)
                }
                ScalarType::Int64 => prim::<Int64Type>(self.ints(), nulls),
                ScalarType::Timestamp => prim::<TimestampMicrosecondType>(self.ints(), nulls),
                ScalarType::TimestampTz => Arc::new(
                    PrimitiveArray::<TimestampMicrosecondType>::new(self.ints().into(), nulls)
                        .with_timezone("+00:00"),
                ),
                ScalarType::Float32 => {
                    let data = self.plain_data(4)?;
                    prim::<Float32Type>(
                        data.chunks_exact(4).map(|c| {
                            f32::from_le_bytes(<[u8; 4]>::try_from(c).unwrap_or_default())
                        }),
                        nulls,
                    )
                }
                ScalarType::Float64 => {
                    let data = self.plain_data(8)?;
                    prim::<Float64Type>(
                        data.chunks_exact(8).map(|c| {
                            f64::from_le_bytes(<[u8; 8]>::try_from(c).unwrap_or_default())
                        }),
                        nulls,
                    )
                }
                ScalarType::Text | ScalarType::Bytes => self.bytes_to_arrow(s, nulls)?,
            },
        })
    }

    fn plain_data(&self, width: usize) -> DecodeResult<&'a [u8]> {
        match &self.body {
            Body::Plain { data, width: w } if *w == width => Ok(data),
            _ => Err(DecodeError::new(0, "float column without plain encoding")),
        }
    }

    fn bytes_to_arrow(&self, s: ScalarType, nulls: Option<NullBuffer>) -> DecodeResult<ArrayRef> {
        let (offsets, data): (Vec<i32>, Vec<u8>) = match &self.body {
            Body::VarLen { offsets, data } => (offsets.checked_offsets(data.len())?, data.to_vec()),
            Body::Dict { .. } | Body::KeyU64 { .. } => {
                let mut offs = Vec::with_capacity(self.n + 1);
                let mut buf = Vec::new();
                offs.push(0i32);
                for i in 0..self.n {
                    match &self.body {
                        Body::KeyU64 { .. } => buf.extend_from_slice(&self.key(i)?),
                        _ => buf.extend_from_slice(self.bytes(i)?),
                    }
                    let len = i32::try_from(buf.len())
                        .map_err(|_| DecodeError::new(0, "chunk larger than 2 GiB"))?;
                    offs.push(len);
                }
                (offs, buf)
            }
            _ => return Err(DecodeError::new(0, "text column with bad encoding")),
        };
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let values = Buffer::from_vec(data);
        let arr: ArrayRef = if s == ScalarType::Text {
            Arc::new(
                StringArray::try_new(offsets, values, nulls)
                    .map_err(|e| DecodeError::new(0, e.to_string()))?,
            )
        } else {
            Arc::new(
                BinaryArray::try_new(offsets, values, nulls)
                    .map_err(|e| DecodeError::new(0, e.to_string()))?,
            )
        };
        Ok(arr)
    }

    /// Sequence numbers of a `seq` chunk as an Arrow array.
    pub(crate) fn to_u64_arrow(&self) -> PrimitiveArray<UInt64Type> {
        PrimitiveArray::<UInt64Type>::from(
            self.ints()
                .into_iter()
                .map(|v| v as u64)
                .collect::<Vec<_>>(),
        )
    }
}

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
fn plain8_at(bytes: &[u8], n: usize, i: usize, ty: DataType) -> Option<Value> {
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
fn value_at_any(bytes: &[u8], n: usize, i: usize, ty: DataType) -> DecodeResult<Value> {
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

fn int_value(s: ScalarType, v: i64) -> Value {
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

fn prim<T: arrow_array::ArrowPrimitiveType>(
    values: impl IntoIterator<Item = T::Native>,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    let v: Vec<T::Native> = values.into_iter().collect();
    Arc::new(PrimitiveArray::<T>::new(v.into(), nulls))
}

/// Fixed-width little-endian integer `i` of plain data (0 if out of range).
#[inline]
fn plain_int(data: &[u8], width: usize, i: usize) -> i64 {
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

fn slice_at<'a>(offsets: &ForInts<'a>, data: &'a [u8], i: usize) -> DecodeResult<&'a [u8]> {
    if i + 1 >= offsets.len() {
        return Err(DecodeError::new(0, format!("value {i} out of range")));
    }
    let s = offsets.offset(i, data.len())?;
    let e = offsets.offset(i + 1, data.len())?;
    data.get(s..e)
        .ok_or_else(|| DecodeError::new(0, format!("bad value bounds {s}..{e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{Float32Builder, ListBuilder};

    fn round_trip(array: ArrayRef, ty: DataType) {
        let mut buf = Vec::new();
        encode_column(&mut buf, array.as_ref(), ty);
        let mut r = Reader::new(&buf);
        let chunk = Chunk::parse(&mut r, array.len(), ty).unwrap();
        assert!(r.is_empty(), "chunk did not consume its bytes");
        let back = chunk.to_arrow(ty).unwrap();
        assert_eq!(back.as_ref(), array.as_ref());
        for i in 0..array.len() {
            let v = chunk.value(i, ty).unwrap();
            assert_eq!(v.is_null(), array.is_null(i));
            // The point-lookup decoder (and its inlined plain fast path) agrees.
            assert_eq!(
                value_at(&buf, array.len(), i, ty).unwrap(),
                v,
                "row {i} of {ty}"
            );
        }
    }

    #[test]
    fn integers_round_trip_packed_and_plain() {
        let small: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![
            Some(5),
            None,
            Some(7),
            Some(1000),
        ]));
        round_trip(small, DataType::Scalar(ScalarType::Int64));
        let wide: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![i64::MIN, i64::MAX, 0]));
        round_trip(wide, DataType::Scalar(ScalarType::Int64));
        let i16s: ArrayRef = Arc::new(arrow_array::Int16Array::from(vec![-3, 3, i16::MAX]));
        round_trip(i16s, DataType::Scalar(ScalarType::Int16));
        let constant: ArrayRef = Arc::new(arrow_array::Int32Array::from(vec![9; 100]));
        round_trip(constant, DataType::Scalar(ScalarType::Int32));
    }

    #[test]
    fn packed_widths_up_to_56_bits_round_trip() {
        for w in [1u32, 7, 8, 9, 31, 33, 55, 56] {
            let max = (1u64 << w) - 1;
            let vals: Vec<i64> = (0..37)
                .map(|i| ((i as u64 * 0x9E37_79B9) & max) as i64)
                .collect();
            let arr: ArrayRef = Arc::new(arrow_array::Int64Array::from(vals));
            round_trip(arr, DataType::Scalar(ScalarType::Int64));
        }
    }

    #[test]
    fn strings_round_trip_as_varlen_and_dictionary() {
        let distinct: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            None,
            Some("bcd"),
            Some(""),
        ]));
        round_trip(distinct, DataType::Scalar(ScalarType::Text));
        let repeated: ArrayRef = Arc::new(StringArray::from(
            (0..200)
                .map(|i| if i % 3 == 0 { "gold" } else { "silver" })
                .collect::<Vec<_>>(),
        ));
        round_trip(repeated, DataType::Scalar(ScalarType::Text));
    }

    #[test]
    fn floats_bools_and_lists_round_trip() {
        let f: ArrayRef = Arc::new(arrow_array::Float64Array::from(vec![
            Some(1.5),
            None,
            Some(-0.0),
        ]));
        round_trip(f, DataType::Scalar(ScalarType::Float64));
        let b: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)]));
        round_trip(b, DataType::Scalar(ScalarType::Bool));
        let all_false: ArrayRef = Arc::new(BooleanArray::from(vec![false; 10]));
        round_trip(all_false, DataType::Scalar(ScalarType::Bool));
        let mut lb = ListBuilder::new(Float32Builder::new())
            .with_field(Arc::new(list_item_field(ScalarType::Float32)));
        lb.values().append_slice(&[1.0, 2.0]);
        lb.append(true);
        lb.append(false);
        lb.values().append_slice(&[3.0]);
        lb.append(true);
        let l: ArrayRef = Arc::new(lb.finish());
        round_trip(l, DataType::List(ScalarType::Float32));
    }

    /// The encoded keys of `ids` and their key chunk's bytes.
    fn integer_key_chunk(ids: &[i64]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|&k| crate::keycodec::encode_i64(k).to_vec())
            .collect();
        let mut buf = Vec::new();
        encode_keys(&mut buf, &BinaryArray::from_iter_values(keys.iter()));
        (keys, buf)
    }

    #[test]
    fn integer_keys_pack_and_compare_as_integers() {
        let (keys, buf) = integer_key_chunk(&[1, 2, 2, 300, 70000]);
        let mut r = Reader::new(&buf);
        let chunk = Chunk::parse(&mut r, keys.len(), DataType::Scalar(ScalarType::Bytes)).unwrap();
        assert!(matches!(chunk.body, Body::KeyU64 { .. }));
        let probe_bytes = crate::keycodec::encode_i64(300);
        let probe = KeyProbe::new(&probe_bytes);
        assert_eq!(chunk.cmp_key(3, &probe).unwrap(), std::cmp::Ordering::Equal);
        assert_eq!(chunk.cmp_key(2, &probe).unwrap(), std::cmp::Ordering::Less);
        assert_eq!(chunk.key(4).unwrap(), keys[4]);
    }

    #[test]
    fn lower_bound_from_any_guess_finds_the_boundary_in_few_probes() {
        for n in 0..=40usize {
            let bound = 2 * (usize::BITS - n.leading_zeros()) as usize + 2;
            for split in 0..=n {
                for guess in 0..n + 3 {
                    let probes = std::cell::Cell::new(0);
                    let got = lower_bound_from(n, guess, |i| {
                        assert!(i < n, "probe {i} outside 0..{n}");
                        probes.set(probes.get() + 1);
                        i < split
                    });
                    assert_eq!(got, split, "n={n} split={split} guess={guess}");
                    assert!(probes.get() <= bound, "n={n} guess={guess}: {probes:?}");
                }
            }
        }
    }

    #[test]
    fn integer_key_search_matches_a_linear_scan_on_skewed_keys() {
        let ids: Vec<i64> = vec![
            1,
            1,
            1,
            2,
            5,
            5,
            5,
            5,
            9,
            1000,
            1001,
            1001,
            1 << 40,
            (1 << 40) + 3,
        ];
        let (keys, buf) = integer_key_chunk(&ids);
        let chunk = Chunk::parse(
            &mut Reader::new(&buf),
            ids.len(),
            DataType::Scalar(ScalarType::Bytes),
        )
        .unwrap();
        let last = key_as_u64(&keys[ids.len() - 1]);
        for &id in &ids {
            for t in [id - 1, id, id + 1] {
                let bytes = crate::keycodec::encode_i64(t);
                let probe = KeyProbe::new(&bytes);
                let want = ids.partition_point(|&k| k < t);
                // A wrong `last` (damaged index) only misplaces the first guess.
                for hint in [None, Some(last), Some(0), Some(u64::MAX)] {
                    assert_eq!(
                        chunk.lower_bound_u64(&probe, hint),
                        Some(want),
                        "t={t} hint={hint:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_truncation_of_a_chunk_is_an_error() {
        let arr: ArrayRef = Arc::new(StringArray::from(vec![Some("alpha"), None, Some("beta")]));
        let ty = DataType::Scalar(ScalarType::Text);
        let mut buf = Vec::new();
        encode_column(&mut buf, arr.as_ref(), ty);
        for cut in 0..buf.len() {
            let mut r = Reader::new(&buf[..cut]);
            if let Ok(c) = Chunk::parse(&mut r, 3, ty) {
                // A parse can only succeed on a prefix if what it read is self-consistent;
                // decoding must then still not panic.
                let _ = c.to_arrow(ty);
            }
        }
    }
}
