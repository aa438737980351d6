//! PostgreSQL types on the wire: the OID each Arrow type is sent as, the encoding of
//! result cells in text and binary format, and the decoding of bound parameters.
//!
//! Invariants: the OID chosen for a column ([`pg_type`]) and the bytes written for it
//! ([`encode_cell`]) agree for both formats, so a driver that decodes binary results by
//! OID reads back exactly the value stored. Parameter bytes come from the network and
//! are decoded without panicking: a short or malformed value is a 22P02/08P01 error.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Field, Int8Type, IntervalMonthDayNanoType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type,
};
use datafusion::common::ScalarValue;
use hindsight_sql::pgtext::{self, CellRef};
use hindsight_sql::{parse_pg_array, parse_pg_bytea};
use hindsight_storage::Value;

use crate::cursor::Cursor;
use crate::sqlstate::ProtocolError;

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days between the Unix epoch and PostgreSQL's epoch.
const PG_EPOCH_DAYS: i32 = 10_957;

pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BOOL_ARRAY: u32 = 1000;
    pub const BYTEA_ARRAY: u32 = 1001;
    pub const INT2_ARRAY: u32 = 1005;
    pub const INT4_ARRAY: u32 = 1007;
    pub const TEXT_ARRAY: u32 = 1009;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const VARCHAR_ARRAY: u32 = 1015;
    pub const INT8_ARRAY: u32 = 1016;
    pub const FLOAT4_ARRAY: u32 = 1021;
    pub const FLOAT8_ARRAY: u32 = 1022;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMP_ARRAY: u32 = 1115;
    pub const DATE_ARRAY: u32 = 1182;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const JSON: u32 = 114;
}

/// How a column is described in RowDescription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgType {
    pub oid: u32,
    /// pg_type.typlen: fixed width in bytes, or -1 for variable length.
    pub size: i16,
}

const fn t(oid: u32, size: i16) -> PgType {
    PgType { oid, size }
}

/// The PostgreSQL type an Arrow column is sent as.
pub fn pg_type(dt: &DataType) -> PgType {
    match dt {
        DataType::Boolean => t(oid::BOOL, 1),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => t(oid::INT2, 2),
        DataType::Int32 | DataType::UInt16 => t(oid::INT4, 4),
        DataType::Int64 | DataType::UInt32 => t(oid::INT8, 8),
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            t(oid::NUMERIC, -1)
        }
        DataType::Float16 | DataType::Float32 => t(oid::FLOAT4, 4),
        DataType::Float64 => t(oid::FLOAT8, 8),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => t(oid::BYTEA, -1),
        DataType::Date32 | DataType::Date64 => t(oid::DATE, 4),
        DataType::Time32(_) | DataType::Time64(_) => t(oid::TIME, 8),
        DataType::Timestamp(_, None) => t(oid::TIMESTAMP, 8),
        DataType::Timestamp(_, Some(_)) => t(oid::TIMESTAMPTZ, 8),
        DataType::Interval(_) | DataType::Duration(_) => t(oid::INTERVAL, 16),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            t(array_oid(pg_type(f.data_type()).oid), -1)
        }
        _ => t(oid::TEXT, -1),
    }
}

/// The array type of an element type.
fn array_oid(elem: u32) -> u32 {
    match elem {
        oid::BOOL => oid::BOOL_ARRAY,
        oid::BYTEA => oid::BYTEA_ARRAY,
        oid::INT2 => oid::INT2_ARRAY,
        oid::INT4 => oid::INT4_ARRAY,
        oid::INT8 => oid::INT8_ARRAY,
        oid::FLOAT4 => oid::FLOAT4_ARRAY,
        oid::FLOAT8 => oid::FLOAT8_ARRAY,
        oid::DATE => oid::DATE_ARRAY,
        oid::TIMESTAMP => oid::TIMESTAMP_ARRAY,
        oid::TIMESTAMPTZ => oid::TIMESTAMPTZ_ARRAY,
        _ => oid::TEXT_ARRAY,
    }
}

/// The Arrow type a client-declared parameter OID stands for (None: infer it).
pub fn arrow_type_of_oid(o: u32) -> Option<DataType> {
    let list = |dt: DataType| Some(DataType::List(Arc::new(Field::new_list_field(dt, true))));
    match o {
        oid::BOOL => Some(DataType::Boolean),
        oid::INT2 => Some(DataType::Int16),
        oid::INT4 | oid::OID => Some(DataType::Int32),
        oid::INT8 => Some(DataType::Int64),
        oid::FLOAT4 => Some(DataType::Float32),
        oid::FLOAT8 | oid::NUMERIC => Some(DataType::Float64),
        oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::JSON => Some(DataType::Utf8),
        oid::BYTEA => Some(DataType::Binary),
        oid::DATE => Some(DataType::Date32),
        oid::TIMESTAMP => Some(DataType::Timestamp(TimeUnit::Microsecond, None)),
        oid::TIMESTAMPTZ => Some(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("+00:00".into()),
        )),
        oid::BOOL_ARRAY => list(DataType::Boolean),
        oid::INT2_ARRAY => list(DataType::Int16),
        oid::INT4_ARRAY => list(DataType::Int32),
        oid::INT8_ARRAY => list(DataType::Int64),
        oid::FLOAT4_ARRAY => list(DataType::Float32),
        oid::FLOAT8_ARRAY => list(DataType::Float64),
        oid::TEXT_ARRAY | oid::VARCHAR_ARRAY => list(DataType::Utf8),
        oid::TIMESTAMPTZ_ARRAY => list(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("+00:00".into()),
        )),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Result cells

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
        DataType::UInt32 => buf.put_i64(array.as_primitive::<UInt32Type>().value(i).into()),
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
fn encode_numeric(text: &str, buf: &mut BytesMut) {
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

// ---------------------------------------------------------------------------
// Parameters

/// PostgreSQL's name of the type an Arrow type is sent as (for messages).
pub fn type_name(ty: &DataType) -> &'static str {
    match pg_type(ty).oid {
        oid::BOOL => "boolean",
        oid::INT2 => "smallint",
        oid::INT4 => "integer",
        oid::INT8 => "bigint",
        oid::FLOAT4 => "real",
        oid::FLOAT8 => "double precision",
        oid::NUMERIC => "numeric",
        oid::BYTEA => "bytea",
        oid::DATE => "date",
        oid::TIME => "time",
        oid::TIMESTAMP => "timestamp without time zone",
        oid::TIMESTAMPTZ => "timestamp with time zone",
        oid::INTERVAL => "interval",
        oid::TEXT => "text",
        _ => "array",
    }
}

fn invalid(what: &str, ty: &DataType) -> ProtocolError {
    ProtocolError::InvalidParameter(format!(
        "invalid input syntax for type {}: \"{what}\"",
        type_name(ty)
    ))
}

/// Decode one bound parameter. `declared` is the OID the client gave in Parse (0:
/// none), `target` the type the statement needs (None: not inferable, sent as text).
pub fn decode_param(
    value: Option<&[u8]>,
    binary: bool,
    declared: u32,
    target: Option<&DataType>,
) -> Result<ScalarValue, ProtocolError> {
    let target = target
        .cloned()
        .or_else(|| arrow_type_of_oid(declared))
        .unwrap_or(DataType::Utf8);
    let Some(bytes) = value else {
        return ScalarValue::try_from(&target)
            .map_err(|e| ProtocolError::InvalidParameter(e.to_string()));
    };
    if binary {
        let wire_type = arrow_type_of_oid(declared).unwrap_or_else(|| target.clone());
        let v = decode_binary(bytes, &wire_type)?;
        return cast(v, &target);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8)?;
    decode_text(text, &target)
}

fn cast(v: ScalarValue, target: &DataType) -> Result<ScalarValue, ProtocolError> {
    if &v.data_type() == target {
        return Ok(v);
    }
    v.cast_to(target)
        .map_err(|e| ProtocolError::InvalidParameter(e.to_string()))
}

/// A parameter in text format, parsed as the target type.
pub fn decode_text(text: &str, target: &DataType) -> Result<ScalarValue, ProtocolError> {
    match target {
        DataType::Utf8 => Ok(ScalarValue::Utf8(Some(text.to_string()))),
        DataType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "y" | "yes" | "on" | "1" => Ok(ScalarValue::Boolean(Some(true))),
            "f" | "false" | "n" | "no" | "off" | "0" => Ok(ScalarValue::Boolean(Some(false))),
            _ => Err(invalid(text, target)),
        },
        DataType::Float32 | DataType::Float64 => {
            let v = parse_float(text).ok_or_else(|| invalid(text, target))?;
            cast(ScalarValue::Float64(Some(v)), target)
        }
        DataType::Binary => parse_pg_bytea(text)
            .map(|b| ScalarValue::Binary(Some(b)))
            .ok_or_else(|| invalid(text, target)),
        DataType::Timestamp(_, _) | DataType::Date32 => {
            let v = parse_timestamp_text(text).ok_or_else(|| invalid(text, target))?;
            cast(
                ScalarValue::TimestampMicrosecond(Some(v), Some("+00:00".into())),
                target,
            )
        }
        DataType::List(f) => {
            let items = parse_pg_array(text).ok_or_else(|| invalid(text, target))?;
            let values = items
                .iter()
                .map(|item| match item {
                    None => ScalarValue::try_from(f.data_type())
                        .map_err(|e| ProtocolError::InvalidParameter(e.to_string())),
                    Some(s) => decode_text(s, f.data_type()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &values,
                f.data_type(),
            )))
        }
        // Integers (every key and most parameters): parsed directly; anything the
        // standard parser refuses gets Arrow's cast and its error below.
        DataType::Int64 if let Ok(v) = text.trim().parse::<i64>() => {
            Ok(ScalarValue::Int64(Some(v)))
        }
        DataType::Int32 if let Ok(v) = text.trim().parse::<i32>() => {
            Ok(ScalarValue::Int32(Some(v)))
        }
        DataType::Int16 if let Ok(v) = text.trim().parse::<i16>() => {
            Ok(ScalarValue::Int16(Some(v)))
        }
        other => ScalarValue::try_from_string(text.trim().to_string(), other)
            .map_err(|_| invalid(text, other)),
    }
}

/// A timestamp in PostgreSQL's text forms (`2026-01-01 00:00:00+00`, ISO 8601, a bare
/// date) as microseconds since the epoch; no offset means UTC.
fn parse_timestamp_text(text: &str) -> Option<i64> {
    use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
    string_to_datetime(&chrono::Utc, text.trim())
        .ok()
        .map(|d| d.timestamp_micros())
}

fn parse_float(text: &str) -> Option<f64> {
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" | "inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => t.parse().ok(),
    }
}

/// Fixed-width big-endian read.
fn be<const N: usize>(bytes: &[u8], ty: &DataType) -> Result<[u8; N], ProtocolError> {
    bytes.try_into().map_err(|_| {
        ProtocolError::InvalidParameter(format!(
            "insufficient data left in message: {} bytes for a binary {}",
            bytes.len(),
            type_name(ty)
        ))
    })
}

/// A parameter in binary format, laid out as `wire` (the declared type).
fn decode_binary(bytes: &[u8], wire: &DataType) -> Result<ScalarValue, ProtocolError> {
    Ok(match wire {
        DataType::Boolean => ScalarValue::Boolean(Some(be::<1>(bytes, wire)?[0] != 0)),
        // Integers: accept any of the three widths (drivers send what the value needs).
        DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let v: i64 = match bytes.len() {
                2 => i16::from_be_bytes(be(bytes, wire)?).into(),
                4 => i32::from_be_bytes(be(bytes, wire)?).into(),
                _ => i64::from_be_bytes(be(bytes, wire)?),
            };
            return cast(ScalarValue::Int64(Some(v)), wire);
        }
        DataType::Float32 => ScalarValue::Float32(Some(f32::from_be_bytes(be(bytes, wire)?))),
        DataType::Float64 => ScalarValue::Float64(Some(f64::from_be_bytes(be(bytes, wire)?))),
        DataType::Utf8 => ScalarValue::Utf8(Some(
            std::str::from_utf8(bytes)
                .map_err(|_| ProtocolError::InvalidUtf8)?
                .to_string(),
        )),
        DataType::Binary => ScalarValue::Binary(Some(bytes.to_vec())),
        DataType::Date32 => {
            ScalarValue::Date32(Some(i32::from_be_bytes(be(bytes, wire)?) + PG_EPOCH_DAYS))
        }
        DataType::Timestamp(_, tz) => ScalarValue::TimestampMicrosecond(
            Some(i64::from_be_bytes(be(bytes, wire)?).saturating_add(PG_EPOCH_US)),
            tz.clone(),
        ),
        DataType::List(f) => decode_binary_array(bytes, f.data_type())?,
        other => {
            return Err(ProtocolError::InvalidParameter(format!(
                "binary format is not supported for parameters of type {}",
                type_name(other)
            )));
        }
    })
}

/// A one-dimensional array in binary format.
fn decode_binary_array(bytes: &[u8], elem: &DataType) -> Result<ScalarValue, ProtocolError> {
    let mut r = Cursor::new(bytes);
    let short = || ProtocolError::InvalidParameter("malformed binary array".into());
    let ndim = r.i32().ok_or_else(short)?;
    let _has_null = r.i32().ok_or_else(short)?;
    let elem_oid = r.i32().ok_or_else(short)? as u32;
    let wire_elem = arrow_type_of_oid(elem_oid).unwrap_or_else(|| elem.clone());
    let mut values = Vec::new();
    if ndim > 1 {
        return Err(ProtocolError::InvalidParameter(
            "multi-dimensional arrays are not supported".into(),
        ));
    }
    if ndim == 1 {
        let len = r.i32().ok_or_else(short)?;
        let _lower = r.i32().ok_or_else(short)?;
        for _ in 0..len.max(0) {
            let n = r.i32().ok_or_else(short)?;
            if n < 0 {
                values.push(
                    ScalarValue::try_from(elem)
                        .map_err(|e| ProtocolError::InvalidParameter(e.to_string()))?,
                );
            } else {
                let item = r.bytes(n as usize).ok_or_else(short)?;
                values.push(cast(decode_binary(item, &wire_elem)?, elem)?);
            }
        }
    }
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &values, elem,
    )))
}

#[cfg(test)]
mod tests {
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
