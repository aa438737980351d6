//! Row encoding of a version's feature columns, as kept in the WAL and the memtable.
//!
//! ```text
//! row    := n_features:varint  null_bitmap:[u8; ceil(n/8)]  value*
//! value  := (one per non-NULL feature, in feature order)
//!   Bool u8 | Int16 i16 LE | Int32/Date i32 LE | Int64/Timestamp i64 LE
//!   Float32 f32 LE | Float64 f64 LE | Text/Bytes len:varint bytes
//!   List  count:varint element*   (elements encoded as their scalar type)
//! ```
//! Bit `i` of the bitmap set means feature `i` is NULL. A row written before an
//! `ADD COLUMN` has fewer features; the missing trailing ones read as NULL.

use crate::arrowutil::{ColumnBuilder, ColumnView};
use crate::codec::{Put, Reader};
use crate::error::{DecodeResult, Result};
use crate::types::{DataType, ScalarType, Value};

/// Encode one row from values in feature order (already type-checked).
pub(crate) fn encode_values(values: &[&Value], out: &mut Vec<u8>) {
    out.put_varint(values.len() as u64);
    let bitmap_at = out.len();
    out.resize(bitmap_at + values.len().div_ceil(8), 0);
    for (i, v) in values.iter().enumerate() {
        if v.is_null() {
            out[bitmap_at + i / 8] |= 1 << (i % 8);
        } else {
            encode_value(v, out);
        }
    }
}

fn encode_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::Int16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Int32(x) | Value::Date(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Int64(x) | Value::Timestamp(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Float32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Float64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Text(s) => out.put_bytes_prefixed(s.as_bytes()),
        Value::Bytes(b) => out.put_bytes_prefixed(b),
        Value::List(items) => {
            out.put_varint(items.len() as u64);
            for it in items {
                encode_value(it, out);
            }
        }
    }
}

/// Encode row `i` of Arrow columns (one view per feature, in feature order).
pub(crate) fn encode_views(
    views: &[ColumnView<'_>],
    names: &[&str],
    i: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.put_varint(views.len() as u64);
    let bitmap_at = out.len();
    out.resize(bitmap_at + views.len().div_ceil(8), 0);
    for (f, view) in views.iter().enumerate() {
        if view.is_null(i) {
            out[bitmap_at + f / 8] |= 1 << (f % 8);
        } else {
            view.encode(i, out, names.get(f).copied().unwrap_or("?"))?;
        }
    }
    Ok(())
}

/// A parsed row header: feature count and the null bitmap.
struct RowHeader<'a> {
    n: usize,
    bitmap: &'a [u8],
}

impl RowHeader<'_> {
    fn is_null(&self, f: usize) -> bool {
        f >= self.n
            || self
                .bitmap
                .get(f / 8)
                .is_some_and(|b| b & (1 << (f % 8)) != 0)
    }
}

fn header<'a>(r: &mut Reader<'a>) -> DecodeResult<RowHeader<'a>> {
    let n = r.len(1 << 16, "row feature count")?;
    let bitmap = r.bytes(n.div_ceil(8), "row null bitmap")?;
    Ok(RowHeader { n, bitmap })
}

/// Decode a row into values for `types` (feature order); missing features are NULL.
pub(crate) fn decode_values(buf: &[u8], types: &[DataType]) -> DecodeResult<Vec<Value>> {
    let mut r = Reader::new(buf);
    let h = header(&mut r)?;
    let mut out = Vec::with_capacity(types.len());
    for (f, &ty) in types.iter().enumerate() {
        if h.is_null(f) {
            out.push(Value::Null);
        } else {
            out.push(read_value(&mut r, ty)?);
        }
    }
    Ok(out)
}

fn read_value(r: &mut Reader<'_>, ty: DataType) -> DecodeResult<Value> {
    match ty {
        DataType::Scalar(s) => read_scalar(r, s),
        DataType::List(elem) => {
            let n = r.len(r.remaining(), "list length")?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_scalar(r, elem)?);
            }
            Ok(Value::List(items))
        }
    }
}

fn read_scalar(r: &mut Reader<'_>, s: ScalarType) -> DecodeResult<Value> {
    Ok(match s {
        ScalarType::Bool => Value::Bool(r.u8("bool")? != 0),
        ScalarType::Int16 => Value::Int16(r.u16("int16")? as i16),
        ScalarType::Int32 => Value::Int32(r.u32("int32")? as i32),
        ScalarType::Date => Value::Date(r.u32("date")? as i32),
        ScalarType::Int64 => Value::Int64(r.i64("int64")?),
        ScalarType::Timestamp | ScalarType::TimestampTz => Value::Timestamp(r.i64("timestamp")?),
        ScalarType::Float32 => Value::Float32(f32::from_bits(r.u32("float32")?)),
        ScalarType::Float64 => Value::Float64(f64::from_bits(r.u64("float64")?)),
        ScalarType::Text => {
            let b = r.bytes_prefixed("text")?;
            Value::Text(
                std::str::from_utf8(b)
                    .map_err(|_| r.err("text is not UTF-8"))?
                    .to_string(),
            )
        }
        ScalarType::Bytes => Value::Bytes(r.bytes_prefixed("bytes")?.to_vec()),
    })
}

/// Skip one encoded value of type `ty`.
fn skip_value(r: &mut Reader<'_>, ty: DataType) -> DecodeResult<()> {
    match ty {
        DataType::Scalar(s) => skip_scalar(r, s),
        DataType::List(elem) => {
            let n = r.len(r.remaining(), "list length")?;
            for _ in 0..n {
                skip_scalar(r, elem)?;
            }
            Ok(())
        }
    }
}

fn skip_scalar(r: &mut Reader<'_>, s: ScalarType) -> DecodeResult<()> {
    match s.fixed_width() {
        Some(w) => r.bytes(w, "value").map(|_| ()),
        None => r.bytes_prefixed("value").map(|_| ()),
    }
}

/// Append row `buf` to one builder per feature; `None` builders are skipped
/// (projection). `types` covers every feature of the table, in feature order.
pub(crate) fn decode_into(
    buf: &[u8],
    types: &[DataType],
    builders: &mut [Option<ColumnBuilder>],
) -> DecodeResult<()> {
    let mut r = Reader::new(buf);
    let h = header(&mut r)?;
    for (f, (&ty, slot)) in types.iter().zip(builders.iter_mut()).enumerate() {
        if h.is_null(f) {
            if let Some(b) = slot {
                b.append_null();
            }
            continue;
        }
        match slot {
            None => skip_value(&mut r, ty)?,
            Some(b) => append_encoded(&mut r, ty, b)?,
        }
    }
    Ok(())
}

fn append_encoded(r: &mut Reader<'_>, ty: DataType, b: &mut ColumnBuilder) -> DecodeResult<()> {
    match ty {
        DataType::Scalar(s) if s.is_integer_like() => {
            let v = match s.fixed_width() {
                Some(2) => r.u16("int16")? as i16 as i64,
                Some(4) => r.u32("int32")? as i32 as i64,
                _ => r.i64("int64")?,
            };
            b.append_i64(v);
        }
        DataType::Scalar(s) => b.append_value(&read_scalar(r, s)?),
        DataType::List(elem) => {
            let n = r.len(r.remaining(), "list length")?;
            if let Some(child) = b.list_child() {
                for _ in 0..n {
                    child.append_value(&read_scalar(r, elem)?);
                }
            }
            b.finish_list_value(n);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    fn types() -> Vec<DataType> {
        vec![
            DataType::Scalar(ScalarType::Float64),
            DataType::Scalar(ScalarType::Text),
            DataType::List(ScalarType::Float32),
            DataType::Scalar(ScalarType::Int16),
            DataType::Scalar(ScalarType::Bool),
        ]
    }

    #[test]
    fn values_round_trip_with_nulls() {
        let vals = [
            Value::Float64(1.5),
            Value::Null,
            Value::List(vec![Value::Float32(0.5), Value::Float32(-2.0)]),
            Value::Int16(-7),
            Value::Bool(true),
        ];
        let mut buf = Vec::new();
        encode_values(&vals.iter().collect::<Vec<_>>(), &mut buf);
        assert_eq!(decode_values(&buf, &types()).unwrap(), vals);
    }

    #[test]
    fn rows_from_before_add_column_read_new_columns_as_null() {
        let mut buf = Vec::new();
        encode_values(&[&Value::Float64(2.0)], &mut buf);
        let got = decode_values(&buf, &types()).unwrap();
        assert_eq!(got[0], Value::Float64(2.0));
        assert!(got[1..].iter().all(Value::is_null));
    }

    #[test]
    fn truncated_rows_are_errors() {
        let vals = [Value::Float64(1.0), Value::Text("hello".into())];
        let mut buf = Vec::new();
        encode_values(&vals.iter().collect::<Vec<_>>(), &mut buf);
        for cut in 0..buf.len() {
            assert!(
                decode_values(&buf[..cut], &types()[..2]).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn decode_into_projects_and_skips() {
        let vals = [
            Value::Float64(1.0),
            Value::Text("x".into()),
            Value::List(vec![Value::Float32(3.0)]),
            Value::Int16(9),
            Value::Null,
        ];
        let mut buf = Vec::new();
        encode_values(&vals.iter().collect::<Vec<_>>(), &mut buf);
        let t = types();
        let mut builders: Vec<Option<ColumnBuilder>> = vec![
            None,
            None,
            Some(ColumnBuilder::new(t[2], 1)),
            Some(ColumnBuilder::new(t[3], 1)),
            Some(ColumnBuilder::new(t[4], 1)),
        ];
        decode_into(&buf, &t, &mut builders).unwrap();
        let arrays: Vec<_> = builders.into_iter().flatten().map(|b| b.finish()).collect();
        assert_eq!(arrays[0].len(), 1);
        assert_eq!(arrays[1].len(), 1);
        assert!(arrays[2].is_null(0));
    }
}
