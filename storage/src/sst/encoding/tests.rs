//! Round trips and damage of every encoding.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BinaryArray, BooleanArray, StringArray};

use super::access::value_at;
use super::chunk::{Body, Chunk};
use super::encode::{encode_column, encode_keys, key_as_u64};
use super::primitives::{KeyProbe, lower_bound_from};
use crate::codec::Reader;
use crate::types::{DataType, ScalarType, list_item_field};
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
