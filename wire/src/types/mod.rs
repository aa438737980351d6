//! PostgreSQL types on the wire: the OID each Arrow type is sent as, the encoding of
//! result cells in text and binary format, and the decoding of bound parameters.
//!
//! Invariants: the OID chosen for a column ([`pg_type`]) and the bytes written for it
//! ([`encode_cell`]) agree for both formats, so a driver that decodes binary results by
//! OID reads back exactly the value stored. Parameter bytes come from the network and
//! are decoded without panicking: a short or malformed value is a 22P02/08P01 error.

mod encode;
mod oids;
mod params;

pub use encode::{encode_cell, encode_value, encode_vector_cell};
pub use oids::{PgType, arrow_type_of_oid, is_vector, oid, pg_type, pg_type_of_field, type_name};
pub use params::{decode_param, decode_text};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BytesMut;
    use datafusion::arrow::array::Array;
    use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
    use datafusion::common::ScalarValue;

    use super::encode::encode_numeric;
    use super::oids::PG_EPOCH_US;
    use super::*;
    use datafusion::arrow::array::{
        Float64Array, Int64Array, ListArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::Float64Type as F64;

    fn cell(array: &dyn Array, binary: bool) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode_cell(array, 0, binary, &mut b);
        b[4..].to_vec()
    }

    /// `int2vector` / `oidvector` columns (catalog metadata) are sent as those types,
    /// in text as space-separated elements, in binary as the array they are.
    #[test]
    fn vector_columns_are_described_and_written_as_postgresql_vectors() {
        use datafusion::arrow::datatypes::Int16Type;
        let list =
            ListArray::from_iter_primitive::<Int16Type, _, _>(vec![Some(vec![Some(1), Some(3)])]);
        let field = Field::new("indkey", list.data_type().clone(), true).with_metadata(
            std::collections::HashMap::from([("pg.type".to_string(), "int2vector".to_string())]),
        );
        assert!(is_vector(&field));
        assert_eq!(pg_type_of_field(&field).oid, oid::INT2VECTOR);
        let mut b = BytesMut::new();
        encode_vector_cell(&list, 0, false, &mut b);
        assert_eq!(&b[4..], b"1 3");
        let mut binary = BytesMut::new();
        encode_vector_cell(&list, 0, true, &mut binary);
        assert_eq!(&binary[4..], &cell(&list, true)[..]);
    }

    /// The online path (storage values) writes exactly the bytes of the Arrow path
    /// for every storage type, value and format, NULL included.
    #[test]
    fn storage_values_encode_exactly_like_their_arrow_cells() {
        use hindsight_storage::{DataType as St, ScalarType as S, Value as V};
        let cases: Vec<(St, Vec<V>)> = vec![
            (St::Scalar(S::Bool), vec![V::Bool(true), V::Bool(false)]),
            (St::Scalar(S::Int16), vec![V::Int16(-7), V::Int16(i16::MAX)]),
            (St::Scalar(S::Int32), vec![V::Int32(0), V::Int32(i32::MIN)]),
            (
                St::Scalar(S::Int64),
                vec![V::Int64(-42), V::Int64(i64::MAX)],
            ),
            (
                St::Scalar(S::Float32),
                vec![V::Float32(0.1), V::Float32(f32::NAN), V::Float32(-1e30)],
            ),
            (
                St::Scalar(S::Float64),
                vec![
                    V::Float64(0.1),
                    V::Float64(1e15),
                    V::Float64(-2.5e-7),
                    V::Float64(f64::INFINITY),
                    V::Float64(123456.789),
                ],
            ),
            (
                St::Scalar(S::Text),
                vec![V::Text("a \"b\"\\".into()), V::Text(String::new())],
            ),
            (St::Scalar(S::Bytes), vec![V::Bytes(vec![0, 10, 255])]),
            (St::Scalar(S::Date), vec![V::Date(-1), V::Date(20_000)]),
            (
                St::Scalar(S::Timestamp),
                vec![V::Timestamp(1_500_000), V::Timestamp(-1)],
            ),
            (
                St::Scalar(S::TimestampTz),
                vec![V::Timestamp(1_767_225_600_000_000)],
            ),
            (
                St::List(S::Float32),
                vec![
                    V::List(vec![V::Float32(1.5), V::Float32(-0.25)]),
                    V::List(vec![]),
                ],
            ),
            (
                St::List(S::Text),
                vec![V::List(vec![V::Text("x y".into())])],
            ),
        ];
        for (ty, values) in cases {
            let arrow = ty.arrow_type();
            for v in values.iter().chain([&V::Null]) {
                let array = hindsight_storage::value_array(ty, v);
                assert_eq!(array.data_type(), &arrow);
                for binary in [false, true] {
                    let mut a = BytesMut::new();
                    encode_cell(array.as_ref(), 0, binary, &mut a);
                    let mut b = BytesMut::new();
                    encode_value(v, ty, &arrow, binary, &mut b);
                    assert_eq!(a, b, "{ty:?} {v:?} binary={binary}");
                }
            }
        }
    }

    #[test]
    fn integers_and_floats_round_trip_in_binary() {
        let a = Int64Array::from(vec![-42]);
        assert_eq!(cell(&a, true), (-42i64).to_be_bytes());
        assert_eq!(cell(&a, false), b"-42");
        let v = decode_param(Some(&(-42i64).to_be_bytes()), true, oid::INT8, None).unwrap();
        assert_eq!(v, ScalarValue::Int64(Some(-42)));
        let f = Float64Array::from(vec![0.1]);
        assert_eq!(cell(&f, false), b"0.1");
    }

    #[test]
    fn timestamps_use_the_2000_epoch_in_binary() {
        let a = TimestampMicrosecondArray::from(vec![PG_EPOCH_US + 5]).with_timezone("+00:00");
        assert_eq!(cell(&a, true), 5i64.to_be_bytes());
        assert_eq!(pg_type(a.data_type()).oid, oid::TIMESTAMPTZ);
    }

    #[test]
    fn float_arrays_encode_with_element_oid() {
        let a = ListArray::from_iter_primitive::<F64, _, _>(vec![Some(vec![Some(1.5), None])]);
        let b = cell(&a, true);
        assert_eq!(&b[0..4], &1i32.to_be_bytes());
        assert_eq!(&b[4..8], &1i32.to_be_bytes()); // has nulls
        assert_eq!(&b[8..12], &oid::FLOAT8.to_be_bytes());
        assert_eq!(cell(&a, false), b"{1.5,NULL}");
        let back = decode_param(Some(&b), true, oid::FLOAT8_ARRAY, None).unwrap();
        assert_eq!(
            back.data_type(),
            DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
        );
    }

    #[test]
    fn short_binary_parameters_are_errors_not_panics() {
        assert!(decode_param(Some(&[0, 1]), true, oid::INT8, None).is_ok());
        assert!(decode_param(Some(&[0, 1, 2]), true, oid::INT8, None).is_err());
        assert!(decode_param(Some(&[0, 0, 0, 1, 0]), true, oid::INT8_ARRAY, None).is_err());
        assert!(decode_param(Some(&[1]), true, oid::FLOAT8, None).is_err());
    }

    #[test]
    fn text_parameters_parse_as_the_target_type() {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
        let v = decode_text("2026-01-01 00:00:00+00", &ts).unwrap();
        assert_eq!(
            v,
            ScalarValue::TimestampMicrosecond(Some(1_767_225_600_000_000), Some("+00:00".into()))
        );
        assert_eq!(
            decode_text("t", &DataType::Boolean).unwrap(),
            ScalarValue::Boolean(Some(true))
        );
        assert!(decode_text("abc", &DataType::Int64).is_err());
        let l = DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true)));
        let v = decode_text("{1,2,NULL}", &l).unwrap();
        assert_eq!(v.data_type(), l);
    }

    #[test]
    fn numeric_binary_matches_postgres_layout() {
        let mut b = BytesMut::new();
        encode_numeric("-12345.678", &mut b);
        // ndigits 3 (1, 2345, 6780), weight 1, sign neg, dscale 3
        assert_eq!(
            b.to_vec(),
            [0, 3, 0, 1, 0x40, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
    }
}
