//! Encoding a column of a block into a chunk: the encoding is chosen per chunk by
//! size (frame of reference for integers and times, dictionaries for repetitive
//! strings, plain for floats), and keys get their own layout.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, BinaryArray};
use arrow_buffer::BooleanBuffer;

use crate::codec::Put;
use crate::types::{DataType, ScalarType};

use super::pack::{bits, for_size, for_width, put_for};
use super::tags::*;

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

pub(super) fn encode_scalar(out: &mut Vec<u8>, array: &dyn Array, s: ScalarType, n: usize) {
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
pub(super) fn int_values(array: &dyn Array, s: ScalarType) -> Vec<i64> {
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

pub(super) fn bytes_at(array: &dyn Array, i: usize) -> &[u8] {
    if let Some(a) = array.as_string_opt::<i32>() {
        a.value(i).as_bytes()
    } else if let Some(a) = array.as_binary_opt::<i32>() {
        a.value(i)
    } else {
        &[]
    }
}

/// Encode variable-width values as VARLEN or DICT, whichever is smaller.
pub(super) fn encode_bytes(out: &mut Vec<u8>, values: &[&[u8]]) {
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

pub(super) fn put_offsets(out: &mut Vec<u8>, values: &[&[u8]]) {
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

pub(super) fn bitmap_bytes(b: &BooleanBuffer) -> Vec<u8> {
    let n = b.len();
    let mut out = vec![0u8; n.div_ceil(8)];
    for (i, v) in b.iter().enumerate() {
        if v {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}
