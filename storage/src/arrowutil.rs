//! Typed bridges between Arrow arrays and storage types.
//!
//! [`ColumnView`] reads a caller's Arrow array as values of a storage column type
//! (accepting the string/binary layouts DataFusion produces); [`ColumnBuilder`]
//! assembles decoded values into the canonical Arrow array of a column type
//! ([`DataType::arrow_type`]). All decoding paths (memtable rows, SST blocks, keys)
//! finish through these builders so every scan yields the same Arrow types.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, ListArray, PrimitiveArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType as ArrowType, TimeUnit};

use crate::error::{Error, Result};
use crate::types::{DataType, ScalarType, Value, list_item_field};

/// A string or binary array in any of Arrow's layouts.
pub(crate) enum BytesView<'a> {
    Utf8(&'a arrow_array::StringArray),
    LargeUtf8(&'a arrow_array::LargeStringArray),
    Utf8View(&'a arrow_array::StringViewArray),
    Binary(&'a arrow_array::BinaryArray),
    LargeBinary(&'a arrow_array::LargeBinaryArray),
    BinaryView(&'a arrow_array::BinaryViewArray),
}

impl BytesView<'_> {
    fn get(&self, i: usize) -> &[u8] {
        match self {
            BytesView::Utf8(a) => a.value(i).as_bytes(),
            BytesView::LargeUtf8(a) => a.value(i).as_bytes(),
            BytesView::Utf8View(a) => a.value(i).as_bytes(),
            BytesView::Binary(a) => a.value(i),
            BytesView::LargeBinary(a) => a.value(i),
            BytesView::BinaryView(a) => a.value(i),
        }
    }
}

/// A read-only typed view of one Arrow column as a storage column type.
pub(crate) enum ColumnView<'a> {
    Bool(&'a arrow_array::BooleanArray),
    I16(&'a PrimitiveArray<Int16Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    F64(&'a PrimitiveArray<Float64Type>),
    Date(&'a PrimitiveArray<Date32Type>),
    Ts(&'a PrimitiveArray<TimestampMicrosecondType>),
    Text(BytesView<'a>),
    Bytes(BytesView<'a>),
    List {
        list: &'a ListArray,
        child: Box<ColumnView<'a>>,
    },
    /// An all-NULL column (`DataType::Null` input).
    AllNull,
}

impl<'a> ColumnView<'a> {
    /// View `array` as values of `ty`; `column` names it in errors.
    pub(crate) fn new(array: &'a dyn Array, ty: DataType, column: &str) -> Result<Self> {
        if array.data_type() == &ArrowType::Null {
            return Ok(ColumnView::AllNull);
        }
        let mismatch = || Error::InvalidValue {
            column: column.to_string(),
            detail: format!(
                "an Arrow column of type {} cannot be stored as {ty}",
                array.data_type()
            ),
        };
        match ty {
            DataType::List(elem) => {
                let list = array.as_list_opt::<i32>().ok_or_else(mismatch)?;
                let child =
                    ColumnView::new(list.values().as_ref(), DataType::Scalar(elem), column)?;
                Ok(ColumnView::List {
                    list,
                    child: Box::new(child),
                })
            }
            DataType::Scalar(s) => {
                let dt = array.data_type();
                Ok(match (s, dt) {
                    (ScalarType::Bool, ArrowType::Boolean) => ColumnView::Bool(array.as_boolean()),
                    (ScalarType::Int16, ArrowType::Int16) => ColumnView::I16(array.as_primitive()),
                    (ScalarType::Int32, ArrowType::Int32) => ColumnView::I32(array.as_primitive()),
                    (ScalarType::Int64, ArrowType::Int64) => ColumnView::I64(array.as_primitive()),
                    (ScalarType::Float32, ArrowType::Float32) => {
                        ColumnView::F32(array.as_primitive())
                    }
                    (ScalarType::Float64, ArrowType::Float64) => {
                        ColumnView::F64(array.as_primitive())
                    }
                    (ScalarType::Date, ArrowType::Date32) => ColumnView::Date(array.as_primitive()),
                    (
                        ScalarType::Timestamp | ScalarType::TimestampTz,
                        ArrowType::Timestamp(TimeUnit::Microsecond, _),
                    ) => ColumnView::Ts(array.as_primitive()),
                    (ScalarType::Text, _) => {
                        ColumnView::Text(bytes_view(array, true).ok_or_else(mismatch)?)
                    }
                    (ScalarType::Bytes, _) => {
                        ColumnView::Bytes(bytes_view(array, false).ok_or_else(mismatch)?)
                    }
                    _ => return Err(mismatch()),
                })
            }
        }
    }

    fn array(&self) -> Option<&dyn Array> {
        Some(match self {
            ColumnView::Bool(a) => *a,
            ColumnView::I16(a) => *a,
            ColumnView::I32(a) => *a,
            ColumnView::I64(a) => *a,
            ColumnView::F32(a) => *a,
            ColumnView::F64(a) => *a,
            ColumnView::Date(a) => *a,
            ColumnView::Ts(a) => *a,
            ColumnView::Text(b) | ColumnView::Bytes(b) => match b {
                BytesView::Utf8(a) => *a,
                BytesView::LargeUtf8(a) => *a,
                BytesView::Utf8View(a) => *a,
                BytesView::Binary(a) => *a,
                BytesView::LargeBinary(a) => *a,
                BytesView::BinaryView(a) => *a,
            },
            ColumnView::List { list, .. } => *list,
            ColumnView::AllNull => return None,
        })
    }

    /// True if row `i` is NULL.
    #[inline]
    pub(crate) fn is_null(&self, i: usize) -> bool {
        self.array().is_none_or(|a| a.is_null(i))
    }

    /// Row `i` as an integer (integer-like, non-null rows only).
    #[inline]
    pub(crate) fn i64_at(&self, i: usize) -> Option<i64> {
        match self {
            ColumnView::I16(a) => Some(a.value(i) as i64),
            ColumnView::I32(a) => Some(a.value(i) as i64),
            ColumnView::I64(a) => Some(a.value(i)),
            ColumnView::Date(a) => Some(a.value(i) as i64),
            ColumnView::Ts(a) => Some(a.value(i)),
            _ => None,
        }
    }

    /// Row `i` as a [`Value`].
    pub(crate) fn value(&self, i: usize) -> Value {
        if self.is_null(i) {
            return Value::Null;
        }
        match self {
            ColumnView::Bool(a) => Value::Bool(a.value(i)),
            ColumnView::I16(a) => Value::Int16(a.value(i)),
            ColumnView::I32(a) => Value::Int32(a.value(i)),
            ColumnView::I64(a) => Value::Int64(a.value(i)),
            ColumnView::F32(a) => Value::Float32(a.value(i)),
            ColumnView::F64(a) => Value::Float64(a.value(i)),
            ColumnView::Date(a) => Value::Date(a.value(i)),
            ColumnView::Ts(a) => Value::Timestamp(a.value(i)),
            ColumnView::Text(b) => Value::Text(String::from_utf8_lossy(b.get(i)).into_owned()),
            ColumnView::Bytes(b) => Value::Bytes(b.get(i).to_vec()),
            ColumnView::List { list, child } => {
                let offsets = list.value_offsets();
                let (s, e) = (offsets[i] as usize, offsets[i + 1] as usize);
                Value::List((s..e).map(|j| child.value(j)).collect())
            }
            ColumnView::AllNull => Value::Null,
        }
    }

    /// Append row `i` (known non-null) in the row-codec encoding (see `rowcodec`).
    pub(crate) fn encode(&self, i: usize, out: &mut Vec<u8>, column: &str) -> Result<()> {
        use crate::codec::Put;
        match self {
            ColumnView::Bool(a) => out.push(u8::from(a.value(i))),
            ColumnView::I16(a) => out.extend_from_slice(&a.value(i).to_le_bytes()),
            ColumnView::I32(a) => out.extend_from_slice(&a.value(i).to_le_bytes()),
            ColumnView::Date(a) => out.extend_from_slice(&a.value(i).to_le_bytes()),
            ColumnView::I64(a) => out.extend_from_slice(&a.value(i).to_le_bytes()),
            ColumnView::Ts(a) => out.extend_from_slice(&a.value(i).to_le_bytes()),
            ColumnView::F32(a) => out.extend_from_slice(&a.value(i).to_le_bytes()),
            ColumnView::F64(a) => out.extend_from_slice(&a.value(i).to_le_bytes()),
            ColumnView::Text(b) | ColumnView::Bytes(b) => out.put_bytes_prefixed(b.get(i)),
            ColumnView::List { list, child } => {
                let offsets = list.value_offsets();
                let (s, e) = (offsets[i] as usize, offsets[i + 1] as usize);
                out.put_varint((e - s) as u64);
                for j in s..e {
                    if child.is_null(j) {
                        return Err(Error::InvalidValue {
                            column: column.to_string(),
                            detail: "array elements must not be NULL".into(),
                        });
                    }
                    child.encode(j, out, column)?;
                }
            }
            ColumnView::AllNull => {}
        }
        Ok(())
    }
}

fn bytes_view(array: &dyn Array, text: bool) -> Option<BytesView<'_>> {
    Some(match array.data_type() {
        ArrowType::Utf8 => BytesView::Utf8(array.as_string::<i32>()),
        ArrowType::LargeUtf8 => BytesView::LargeUtf8(array.as_string::<i64>()),
        ArrowType::Utf8View => BytesView::Utf8View(array.as_string_view()),
        ArrowType::Binary if !text => BytesView::Binary(array.as_binary::<i32>()),
        ArrowType::LargeBinary if !text => BytesView::LargeBinary(array.as_binary::<i64>()),
        ArrowType::BinaryView if !text => BytesView::BinaryView(array.as_binary_view()),
        _ => return None,
    })
}

/// A one-row Arrow array of `v` as a column of type `ty` (the canonical array of the
/// type, as scans and lookups produce it).
pub fn value_array(ty: DataType, v: &Value) -> ArrayRef {
    let mut b = ColumnBuilder::new(ty, 1);
    b.append_value(v);
    b.finish()
}

/// Builds the canonical Arrow array of one storage column type.
pub(crate) enum ColumnBuilder {
    Bool(BooleanBuilder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder, bool),
    List {
        elem: ScalarType,
        offsets: Vec<i32>,
        child: Box<ColumnBuilder>,
        nulls: NullBufferBuilder,
    },
}

impl ColumnBuilder {
    pub(crate) fn new(ty: DataType, capacity: usize) -> Self {
        match ty {
            DataType::Scalar(s) => Self::scalar(s, capacity),
            DataType::List(elem) => {
                let mut offsets = Vec::with_capacity(capacity + 1);
                offsets.push(0);
                ColumnBuilder::List {
                    elem,
                    offsets,
                    child: Box::new(Self::scalar(elem, capacity)),
                    nulls: NullBufferBuilder::new(capacity),
                }
            }
        }
    }

    fn scalar(s: ScalarType, n: usize) -> Self {
        match s {
            ScalarType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(n)),
            ScalarType::Int16 => ColumnBuilder::I16(Int16Builder::with_capacity(n)),
            ScalarType::Int32 => ColumnBuilder::I32(Int32Builder::with_capacity(n)),
            ScalarType::Int64 => ColumnBuilder::I64(Int64Builder::with_capacity(n)),
            ScalarType::Float32 => ColumnBuilder::F32(Float32Builder::with_capacity(n)),
            ScalarType::Float64 => ColumnBuilder::F64(Float64Builder::with_capacity(n)),
            ScalarType::Text => ColumnBuilder::Text(StringBuilder::with_capacity(n, n * 8)),
            ScalarType::Bytes => ColumnBuilder::Bytes(BinaryBuilder::with_capacity(n, n * 8)),
            ScalarType::Date => ColumnBuilder::Date(Date32Builder::with_capacity(n)),
            ScalarType::Timestamp => {
                ColumnBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(n), false)
            }
            ScalarType::TimestampTz => {
                ColumnBuilder::Ts(TimestampMicrosecondBuilder::with_capacity(n), true)
            }
        }
    }

    pub(crate) fn append_null(&mut self) {
        match self {
            ColumnBuilder::Bool(b) => b.append_null(),
            ColumnBuilder::I16(b) => b.append_null(),
            ColumnBuilder::I32(b) => b.append_null(),
            ColumnBuilder::I64(b) => b.append_null(),
            ColumnBuilder::F32(b) => b.append_null(),
            ColumnBuilder::F64(b) => b.append_null(),
            ColumnBuilder::Text(b) => b.append_null(),
            ColumnBuilder::Bytes(b) => b.append_null(),
            ColumnBuilder::Date(b) => b.append_null(),
            ColumnBuilder::Ts(b, _) => b.append_null(),
            ColumnBuilder::List { offsets, nulls, .. } => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                nulls.append_null();
            }
        }
    }

    /// Append an integer into an integer-like builder; other builders get a NULL.
    #[inline]
    pub(crate) fn append_i64(&mut self, v: i64) {
        match self {
            ColumnBuilder::I16(b) => b.append_value(v as i16),
            ColumnBuilder::I32(b) => b.append_value(v as i32),
            ColumnBuilder::Date(b) => b.append_value(v as i32),
            ColumnBuilder::I64(b) => b.append_value(v),
            ColumnBuilder::Ts(b, _) => b.append_value(v),
            other => other.append_null(),
        }
    }

    /// Append a value; a value of the wrong type appends NULL (callers validate first).
    pub(crate) fn append_value(&mut self, v: &Value) {
        match (self, v) {
            (b, Value::Null) => b.append_null(),
            (ColumnBuilder::Bool(b), Value::Bool(x)) => b.append_value(*x),
            (ColumnBuilder::F32(b), Value::Float32(x)) => b.append_value(*x),
            (ColumnBuilder::F64(b), Value::Float64(x)) => b.append_value(*x),
            (ColumnBuilder::Text(b), Value::Text(x)) => b.append_value(x),
            (ColumnBuilder::Bytes(b), Value::Bytes(x)) => b.append_value(x),
            (
                ColumnBuilder::List {
                    offsets,
                    child,
                    nulls,
                    ..
                },
                Value::List(items),
            ) => {
                for it in items {
                    child.append_value(it);
                }
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last + items.len() as i32);
                nulls.append_non_null();
            }
            (b, v) => match v.as_i64() {
                Some(x) => b.append_i64(x),
                None => b.append_null(),
            },
        }
    }

    /// Append one list element count after the caller appended the elements to
    /// [`ColumnBuilder::list_child`].
    pub(crate) fn finish_list_value(&mut self, count: usize) {
        if let ColumnBuilder::List { offsets, nulls, .. } = self {
            let last = offsets.last().copied().unwrap_or(0);
            offsets.push(last + count as i32);
            nulls.append_non_null();
        }
    }

    /// The element builder of a list builder.
    pub(crate) fn list_child(&mut self) -> Option<&mut ColumnBuilder> {
        match self {
            ColumnBuilder::List { child, .. } => Some(child),
            _ => None,
        }
    }

    pub(crate) fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
            ColumnBuilder::I16(mut b) => Arc::new(b.finish()),
            ColumnBuilder::I32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::I64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::F32(mut b) => Arc::new(b.finish()),
            ColumnBuilder::F64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Text(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Bytes(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Date(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Ts(mut b, tz) => {
                let a = b.finish();
                Arc::new(if tz { a.with_timezone("+00:00") } else { a })
            }
            ColumnBuilder::List {
                elem,
                offsets,
                child,
                mut nulls,
            } => {
                let values = child.finish();
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Arc::new(ListArray::new(
                    Arc::new(list_item_field(elem)),
                    offsets,
                    values,
                    nulls.finish(),
                ))
            }
        }
    }
}

/// An all-NULL array of a column type (a column missing from an older file).
pub(crate) fn null_array(ty: DataType, len: usize) -> ArrayRef {
    arrow_array::new_null_array(&ty.arrow_type(), len)
}

/// Read the timestamp column of a caller's batch (event times).
pub(crate) fn timestamp_view<'a>(
    array: &'a dyn Array,
    column: &str,
) -> Result<&'a PrimitiveArray<TimestampMicrosecondType>> {
    match array.data_type() {
        ArrowType::Timestamp(TimeUnit::Microsecond, _) => Ok(array.as_primitive()),
        other => Err(Error::InvalidValue {
            column: column.to_string(),
            detail: format!("event time must be a microsecond timestamp, got {other}"),
        }),
    }
}
