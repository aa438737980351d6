//! Result cells in text and binary format: from Arrow arrays (queries) and from
//! storage values (point lookups), byte for byte the same for the same value.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Int8Type, IntervalMonthDayNanoType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type,
};
use hindsight_sql::pgtext::{self, CellRef};
use hindsight_storage::Value;

use super::oids::{PG_EPOCH_DAYS, PG_EPOCH_US, pg_type};

/// Append row `i` of `array` as one DataRow field (length prefix and bytes; -1 for
/// NULL) in the given format (0 text, 1 binary).
pub fn encode_cell(array: &dyn Array, i: usize, binary: bool, buf: &mut BytesMut) {
    if array.is_null(i) {
        buf.put_i32(-1);
        return;
    }
    with_length(buf, |buf| {
        if binary {
            encode_binary(array, i, buf);
        } else {
            encode_text(array, i, buf);
        }
    });
}

/// Append row `i` of list `array` as a vector type's DataRow field: in text its
/// elements separated by spaces (`1 2`); in binary as the array it is.
pub fn encode_vector_cell(array: &dyn Array, i: usize, binary: bool, buf: &mut BytesMut) {
    let Some(list) = array
        .as_list_opt::<i32>()
        .filter(|_| !binary && !array.is_null(i))
    else {
        encode_cell(array, i, binary, buf);
        return;
    };
    let items = list.value(i);
    with_length(buf, |buf| {
        for j in 0..items.len() {
            if j > 0 {
                buf.put_u8(b' ');
            }
            encode_text(items.as_ref(), j, buf);
        }
    });
}

/// Append one storage value of a point lookup's row as a DataRow field: `ty` is the
/// column's storage type and `arrow` the Arrow type it is described as (its
/// canonical one). Byte for byte what [`encode_cell`] writes for the same value in
/// an Arrow column: the common types share [`CellRef`]'s writers, the others go
/// through a one-row Arrow array.
pub fn encode_value(
    v: &Value,
    ty: hindsight_storage::DataType,
    arrow: &DataType,
    binary: bool,
    buf: &mut BytesMut,
) {
    if v.is_null() {
        buf.put_i32(-1);
        return;
    }
    match value_ref(v, arrow) {
        Some(c) => with_length(buf, |buf| {
            if binary {
                encode_cell_ref_binary(c, buf);
            } else {
                pgtext::write_cell_ref(c, &mut Writer(buf));
            }
        }),
        None => encode_cell(
            hindsight_storage::value_array(ty, v).as_ref(),
            0,
            binary,
            buf,
        ),
    }
}

/// Write a length-prefixed field: the 4-byte length is filled in after `body`.
fn with_length(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let at = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = (buf.len() - at - 4) as i32;
    if let Some(slot) = buf.get_mut(at..at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// A storage value as a [`CellRef`] when its column is described as `ty`.
fn value_ref<'a>(v: &'a Value, ty: &DataType) -> Option<CellRef<'a>> {
    Some(match (v, ty) {
        (Value::Bool(b), DataType::Boolean) => CellRef::Bool(*b),
        (Value::Int16(x), DataType::Int16) => CellRef::Int16(*x),
        (Value::Int32(x), DataType::Int32) => CellRef::Int32(*x),
        (Value::Int64(x), DataType::Int64) => CellRef::Int64(*x),
        (Value::Float32(x), DataType::Float32) => CellRef::Float32(*x),
        (Value::Float64(x), DataType::Float64) => CellRef::Float64(*x),
        (Value::Text(s), DataType::Utf8 | DataType::Utf8View) => CellRef::Text(s),
        (Value::Bytes(b), DataType::Binary) => CellRef::Bytes(b),
        (Value::Date(d), DataType::Date32) => CellRef::Date(*d),
        (Value::Timestamp(t), DataType::Timestamp(TimeUnit::Microsecond, tz)) => {
            CellRef::Timestamp {
                micros: *t,
                tz: tz.is_some(),
            }
        }
        _ => return None,
    })
}

/// A [`CellRef`] in PostgreSQL's binary format.
fn encode_cell_ref_binary(c: CellRef<'_>, buf: &mut BytesMut) {
    match c {
        CellRef::Bool(b) => buf.put_u8(u8::from(b)),
        CellRef::Int16(v) => buf.put_i16(v),
        CellRef::Int32(v) => buf.put_i32(v),
        CellRef::Int64(v) => buf.put_i64(v),
        CellRef::Float32(v) => buf.put_f32(v),
        CellRef::Float64(v) => buf.put_f64(v),
        CellRef::Text(s) => buf.put_slice(s.as_bytes()),
        CellRef::Bytes(b) => buf.put_slice(b),
        CellRef::Date(d) => buf.put_i32(d - PG_EPOCH_DAYS),
        CellRef::Timestamp { micros, .. } => buf.put_i64(micros - PG_EPOCH_US),
    }
}

fn encode_text(array: &dyn Array, i: usize, buf: &mut BytesMut) {
    let mut w = Writer(buf);
    if pgtext::write_cell(array, i, &mut w) {
        return;
    }
    match array.data_type() {
        DataType::Interval(_) | DataType::Duration(_) => {
            w.0.put_slice(interval_text(array, i).as_bytes());
        }
        _ => {
            if let Some(s) = pgtext::cell(array, i) {
                w.0.put_slice(s.as_bytes());
            }
        }
    }
}

struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// (months, days, microseconds) of an interval or duration cell.
fn interval_parts(array: &dyn Array, i: usize) -> (i32, i32, i64) {
    match array.data_type() {
        DataType::Interval(_) => {
            if let Some(a) = array.as_primitive_opt::<IntervalMonthDayNanoType>() {
                let v = a.value(i);
                return (v.months, v.days, v.nanoseconds / 1000);
            }
            if let Some(a) =
                array.as_primitive_opt::<datafusion::arrow::datatypes::IntervalDayTimeType>()
            {
                let v = a.value(i);
                return (0, v.days, i64::from(v.milliseconds) * 1000);
            }
            if let Some(a) =
                array.as_primitive_opt::<datafusion::arrow::datatypes::IntervalYearMonthType>()
            {
                return (a.value(i), 0, 0);
            }
            (0, 0, 0)
        }
        DataType::Duration(unit) => {
            use datafusion::arrow::datatypes::{
                DurationMicrosecondType, DurationMillisecondType, DurationNanosecondType,
                DurationSecondType,
            };
            let us = match unit {
                TimeUnit::Second => array
                    .as_primitive::<DurationSecondType>()
                    .value(i)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<DurationMillisecondType>()
                    .value(i)
                    .saturating_mul(1000),
                TimeUnit::Microsecond => array.as_primitive::<DurationMicrosecondType>().value(i),
                TimeUnit::Nanosecond => {
                    array.as_primitive::<DurationNanosecondType>().value(i) / 1000
                }
            };
            (0, 0, us)
        }
        _ => (0, 0, 0),
    }
}

/// An interval in PostgreSQL's default output style: `1 year 2 mons 3 days 04:05:06.5`.
fn interval_text(array: &dyn Array, i: usize) -> String {
    let (months, days, us) = interval_parts(array, i);
    let mut parts = Vec::new();
    let (years, mons) = (months / 12, months % 12);
    let unit = |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if years != 0 {
        parts.push(unit(years.into(), "year", "years"));
    }
    if mons != 0 {
        parts.push(unit(mons.into(), "mon", "mons"));
    }
    if days != 0 {
        parts.push(unit(days.into(), "day", "days"));
    }
    if us != 0 || parts.is_empty() {
        let sign = if us < 0 { "-" } else { "" };
        let a = us.unsigned_abs();
        let s = format!("{sign}{}", pgtext::clock(a / 1_000_000, a % 1_000_000));
        parts.push(s);
    }
    parts.join(" ")
}

fn timestamp_micros(array: &dyn Array, i: usize) -> i64 {
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => array
            .as_primitive::<TimestampSecondType>()
            .value(i)
            .saturating_mul(1_000_000),
        DataType::Timestamp(TimeUnit::Millisecond, _) => array
            .as_primitive::<TimestampMillisecondType>()
            .value(i)
            .saturating_mul(1000),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            array.as_primitive::<TimestampMicrosecondType>().value(i)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => array
            .as_primitive::<TimestampNanosecondType>()
            .value(i)
            .div_euclid(1000),
        _ => 0,
    }
}

fn encode_binary(array: &dyn Array, i: usize, buf: &mut BytesMut) {
    if let Some(c) = pgtext::cell_ref(array, i) {
        return encode_cell_ref_binary(c, buf);
    }
    match array.data_type() {
        DataType::Int8 => buf.put_i16(array.as_primitive::<Int8Type>().value(i).into()),
        DataType::UInt8 => buf.put_i16(array.as_primitive::<UInt8Type>().value(i).into()),
        DataType::UInt16 => buf.put_i32(array.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt32 => buf.put_u32(array.as_primitive::<UInt32Type>().value(i)),
        DataType::Float16 => buf.put_f32(
            array
                .as_primitive::<datafusion::arrow::datatypes::Float16Type>()
                .value(i)
                .to_f32(),
        ),
        DataType::LargeBinary => buf.put_slice(array.as_binary::<i64>().value(i)),
        DataType::BinaryView => buf.put_slice(array.as_binary_view().value(i)),
        DataType::FixedSizeBinary(_) => buf.put_slice(array.as_fixed_size_binary().value(i)),
        DataType::Timestamp(..) => buf.put_i64(timestamp_micros(array, i) - PG_EPOCH_US),
        DataType::Interval(_) | DataType::Duration(_) => {
            let (months, days, us) = interval_parts(array, i);
            buf.put_i64(us);
            buf.put_i32(days);
            buf.put_i32(months);
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let values = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(i),
                DataType::LargeList(_) => array.as_list::<i64>().value(i),
                _ => array.as_fixed_size_list().value(i),
            };
            buf.put_i32(1); // dimensions
            buf.put_i32(i32::from(values.null_count() > 0));
            buf.put_u32(pg_type(values.data_type()).oid);
            buf.put_i32(values.len() as i32);
            buf.put_i32(1); // lower bound
            for j in 0..values.len() {
                encode_cell(values.as_ref(), j, true, buf);
            }
        }
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let text = pgtext::cell(array, i).unwrap_or_default();
            encode_numeric(&text, buf);
        }
        // Everything else travels as text (its OID is text too).
        _ => encode_text(array, i, buf),
    }
}

/// A decimal string (`-123.4500`) in NUMERIC's binary format: base-10000 digits.
pub(super) fn encode_numeric(text: &str, buf: &mut BytesMut) {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let dscale = frac.len() as i16;
    // Pad the integer part on the left and the fraction on the right to multiples of 4.
    let ipad = (4 - int.len() % 4) % 4;
    let fpad = (4 - frac.len() % 4) % 4;
    let digits_str: String = "0".repeat(ipad) + int + frac + &"0".repeat(fpad);
    let mut digits: Vec<i16> = digits_str
        .as_bytes()
        .chunks(4)
        .map(|c| {
            c.iter()
                .fold(0i16, |acc, d| acc * 10 + i16::from(d.saturating_sub(b'0')))
        })
        .collect();
    let mut weight = ((ipad + int.len()) / 4) as i16 - 1;
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    buf.put_i16(digits.len() as i16);
    buf.put_i16(weight);
    buf.put_u16(if neg && !digits.is_empty() { 0x4000 } else { 0 });
    buf.put_i16(dscale);
    for d in digits {
        buf.put_i16(d);
    }
}
