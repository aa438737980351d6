//! PostgreSQL's binary format of values, read column at a time: what `COPY ... FROM
//! STDIN (FORMAT binary)` sends for each field (`int8send`, `float8send`,
//! `timestamptz_send`, `array_send`...), decoded into an Arrow column of the table's
//! type. A leaf of the `pg` floor.
//!
//! Invariants: every value comes from the network and is checked before it is read:
//! a field of the wrong length or layout is a 22P03 error naming the type, never a
//! panic. Integers are taken at any of the three widths (2, 4, 8 bytes) and floats at
//! either (4, 8), as drivers send what their own value type has (ADBC sends an Arrow
//! int32 column as int4 into a bigint column); a value out of the column's range is
//! 22003. Dates and timestamps count from PostgreSQL's epoch, 2000-01-01.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, BinaryArray, BinaryBuilder, BooleanBuilder, Date32Builder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListArray,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};

use crate::error::{ErrorKind, Result, SqlError};

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub const PG_EPOCH_DAYS: i32 = 10_957;

/// The 22P03 error for a value that is not a binary `type_name`.
fn malformed(type_name: &str, len: usize) -> SqlError {
    SqlError::new(
        ErrorKind::InvalidBinaryRepresentation,
        format!("incorrect binary data format: {len} bytes for a binary {type_name}"),
    )
}

/// Decode one binary value per row of `values` (NULL stays NULL) as a column of `ty`,
/// the table column's Arrow type; `type_name` names it in errors.
pub fn decode_column(values: &BinaryArray, ty: &DataType, type_name: &str) -> Result<ArrayRef> {
    match ty {
        DataType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(values.len());
            for v in values {
                b.append_option(v.map(|v| decode_bool(v, type_name)).transpose()?);
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Int16 => ints(values, type_name, Int16Builder::with_capacity(values.len())),
        DataType::Int32 => ints(values, type_name, Int32Builder::with_capacity(values.len())),
        DataType::Int64 => ints(values, type_name, Int64Builder::with_capacity(values.len())),
        DataType::Float32 => {
            let mut b = Float32Builder::with_capacity(values.len());
            for v in values {
                b.append_option(
                    v.map(|v| decode_float(v, type_name))
                        .transpose()?
                        .map(|f| f as f32),
                );
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Float64 => {
            let mut b = Float64Builder::with_capacity(values.len());
            for v in values {
                b.append_option(v.map(|v| decode_float(v, type_name)).transpose()?);
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Utf8 => {
            let mut b = StringBuilder::with_capacity(values.len(), values.value_data().len());
            for v in values {
                b.append_option(v.map(decode_text).transpose()?);
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Binary => Ok(Arc::new(values.clone())),
        DataType::Date32 => {
            let mut b = Date32Builder::with_capacity(values.len());
            for v in values {
                let day = v.map(|v| fixed::<4>(v, type_name)).transpose()?;
                b.append_option(day.map(|d| i32::from_be_bytes(d).saturating_add(PG_EPOCH_DAYS)));
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(values.len());
            for v in values {
                let us = v.map(|v| fixed::<8>(v, type_name)).transpose()?;
                b.append_option(us.map(|u| i64::from_be_bytes(u).saturating_add(PG_EPOCH_US)));
            }
            Ok(Arc::new(b.finish().with_timezone_opt(tz.clone())))
        }
        DataType::List(elem) => decode_arrays(values, elem, type_name),
        other => Err(SqlError::unsupported(format!(
            "binary COPY of a column of type {other} is not supported"
        ))),
    }
}

fn fixed<const N: usize>(v: &[u8], type_name: &str) -> Result<[u8; N]> {
    v.try_into().map_err(|_| malformed(type_name, v.len()))
}

fn decode_bool(v: &[u8], type_name: &str) -> Result<bool> {
    Ok(fixed::<1>(v, type_name)?[0] != 0)
}

/// An integer of any of the three binary widths.
fn decode_int(v: &[u8], type_name: &str) -> Result<i64> {
    Ok(match v.len() {
        2 => i16::from_be_bytes(fixed(v, type_name)?).into(),
        4 => i32::from_be_bytes(fixed(v, type_name)?).into(),
        _ => i64::from_be_bytes(fixed(v, type_name)?),
    })
}

fn decode_float(v: &[u8], type_name: &str) -> Result<f64> {
    Ok(match v.len() {
        4 => f32::from_be_bytes(fixed(v, type_name)?).into(),
        _ => f64::from_be_bytes(fixed(v, type_name)?),
    })
}

fn decode_text(v: &[u8]) -> Result<&str> {
    std::str::from_utf8(v).map_err(|_| {
        SqlError::new(
            ErrorKind::InvalidBinaryRepresentation,
            "invalid byte sequence for encoding \"UTF8\"",
        )
    })
}

/// An Arrow builder of one integer width, filled from binary integers of any width.
trait IntBuilder: ArrayBuilder {
    type Native: TryFrom<i64>;
    fn append(&mut self, v: Option<Self::Native>);
}

macro_rules! int_builder {
    ($builder:ty, $native:ty) => {
        impl IntBuilder for $builder {
            type Native = $native;
            fn append(&mut self, v: Option<$native>) {
                self.append_option(v);
            }
        }
    };
}
int_builder!(Int16Builder, i16);
int_builder!(Int32Builder, i32);
int_builder!(Int64Builder, i64);

fn ints<B: IntBuilder>(values: &BinaryArray, type_name: &str, mut b: B) -> Result<ArrayRef> {
    for v in values {
        let n = v.map(|v| decode_int(v, type_name)).transpose()?;
        let narrowed = n
            .map(|n| {
                B::Native::try_from(n).map_err(|_| {
                    SqlError::new(
                        ErrorKind::NumericValueOutOfRange,
                        format!("value {n} is out of range for type {type_name}"),
                    )
                })
            })
            .transpose()?;
        b.append(narrowed);
    }
    Ok(b.finish())
}

/// One-dimensional arrays in `array_send`'s layout: dimensions, has-NULL flag,
/// element OID, then per dimension (length, lower bound), then length-prefixed
/// elements. The element OID is not checked against the column: elements are
/// decoded as the column's element type (widths as in [`decode_column`]).
fn decode_arrays(values: &BinaryArray, elem: &Arc<Field>, type_name: &str) -> Result<ArrayRef> {
    let elem_name = type_name.trim_end_matches("[]");
    let mut offsets = Vec::with_capacity(values.len() + 1);
    offsets.push(0i32);
    let mut items = BinaryBuilder::new();
    for v in values {
        if let Some(v) = v {
            split_array(v, type_name, &mut items)?;
        }
        let end = i32::try_from(items.len()).map_err(|_| malformed(type_name, 0))?;
        offsets.push(end);
    }
    let items = items.finish();
    let inner = decode_column(&items, elem.data_type(), elem_name)?;
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new_list_field(elem.data_type().clone(), true)),
        OffsetBuffer::new(offsets.into()),
        inner,
        values.nulls().cloned(),
    )?))
}

/// Append the elements of one binary array value to `items`.
fn split_array(v: &[u8], type_name: &str, items: &mut BinaryBuilder) -> Result<()> {
    let bad = || malformed(type_name, v.len());
    let mut r = Reader(v);
    let ndim = r.i32().ok_or_else(bad)?;
    let _has_null = r.i32().ok_or_else(bad)?;
    let _elem_oid = r.i32().ok_or_else(bad)?;
    match ndim {
        0 => return Ok(()),
        1 => {}
        _ => {
            return Err(SqlError::unsupported(
                "multi-dimensional arrays are not supported",
            ));
        }
    }
    let len = r.i32().ok_or_else(bad)?;
    let _lower = r.i32().ok_or_else(bad)?;
    for _ in 0..len.max(0) {
        let n = r.i32().ok_or_else(bad)?;
        match usize::try_from(n) {
            Ok(n) => items.append_value(r.take(n).ok_or_else(bad)?),
            Err(_) => items.append_null(),
        }
    }
    if !r.0.is_empty() {
        return Err(bad());
    }
    Ok(())
}

/// A big-endian reader over a byte slice that answers `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};

    use super::*;

    fn col(values: &[Option<Vec<u8>>]) -> BinaryArray {
        values.iter().map(|v| v.as_deref()).collect()
    }

    /// Seeded random bytes of random lengths as every column type: decoding never
    /// panics, and refuses only with 22P03, 22003 or 0A000.
    #[test]
    fn random_values_never_panic() {
        let list = |t: DataType| DataType::List(Arc::new(Field::new_list_field(t, true)));
        let types = [
            (DataType::Boolean, "boolean"),
            (DataType::Int16, "smallint"),
            (DataType::Int32, "integer"),
            (DataType::Int64, "bigint"),
            (DataType::Float32, "real"),
            (DataType::Float64, "double precision"),
            (DataType::Utf8, "text"),
            (DataType::Binary, "bytea"),
            (DataType::Date32, "date"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                "timestamp",
            ),
            (list(DataType::Float32), "real[]"),
            (list(DataType::Int64), "bigint[]"),
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let values: Vec<Option<Vec<u8>>> = (0..4)
                .map(|_| {
                    let len = (next() % 40) as usize;
                    (next() % 5 != 0).then(|| (0..len).map(|_| next() as u8).collect())
                })
                .collect();
            let a = col(&values);
            for (ty, name) in &types {
                if let Err(e) = decode_column(&a, ty, name) {
                    assert!(
                        matches!(
                            e.kind,
                            ErrorKind::InvalidBinaryRepresentation
                                | ErrorKind::NumericValueOutOfRange
                                | ErrorKind::FeatureNotSupported
                        ),
                        "{name}: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn integers_of_any_width_and_nulls() {
        let a = col(&[
            Some(7i16.to_be_bytes().to_vec()),
            None,
            Some((-9i32).to_be_bytes().to_vec()),
            Some(i64::MAX.to_be_bytes().to_vec()),
        ]);
        let out = decode_column(&a, &DataType::Int64, "bigint").unwrap();
        let out = out.as_primitive::<Int64Type>();
        assert_eq!(
            out,
            &Int64Array::from(vec![Some(7), None, Some(-9), Some(i64::MAX)])
        );
        let e = decode_column(&a, &DataType::Int32, "integer").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NumericValueOutOfRange);
        let short = col(&[Some(vec![1, 2, 3])]);
        let e = decode_column(&short, &DataType::Int64, "bigint").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidBinaryRepresentation);
    }

    #[test]
    fn timestamps_and_floats() {
        let a = col(&[Some(5i64.to_be_bytes().to_vec())]);
        let ty = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
        let out = decode_column(&a, &ty, "timestamptz").unwrap();
        assert_eq!(out.data_type(), &ty);
        assert_eq!(
            out.as_primitive::<TimestampMicrosecondType>().value(0),
            PG_EPOCH_US + 5
        );
        let f = col(&[
            Some(1.5f32.to_be_bytes().to_vec()),
            Some(0.25f64.to_be_bytes().to_vec()),
        ]);
        let out = decode_column(&f, &DataType::Float64, "double precision").unwrap();
        let out = out.as_primitive::<Float64Type>();
        assert_eq!((out.value(0), out.value(1)), (1.5, 0.25));
    }

    #[test]
    fn arrays_with_null_elements_and_truncation() {
        let mut v = Vec::new();
        for x in [1i32, 1, 700, 2, 1] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&4i32.to_be_bytes());
        v.extend_from_slice(&0.5f32.to_be_bytes());
        v.extend_from_slice(&(-1i32).to_be_bytes());
        let a = col(&[Some(v.clone()), None]);
        let ty = DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)));
        let out = decode_column(&a, &ty, "real[]").unwrap();
        let list = out.as_list::<i32>();
        assert!(list.is_null(1));
        let first = list.value(0);
        assert_eq!(first.len(), 2);
        assert!(first.is_null(1));
        v.pop();
        let e = decode_column(&col(&[Some(v)]), &ty, "real[]").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidBinaryRepresentation);
    }
}
