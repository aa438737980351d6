//! Bound parameters from the network, in text or binary format, decoded to the
//! type the statement needs; a short or malformed value is an error, never a panic.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use hindsight_sql::{parse_pg_array, parse_pg_bytea};

use super::oids::{PG_EPOCH_DAYS, PG_EPOCH_US, arrow_type_of_oid, type_name};
use crate::cursor::Cursor;
use crate::sqlstate::ProtocolError;

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
        DataType::UInt32 => ScalarValue::UInt32(Some(u32::from_be_bytes(be(bytes, wire)?))),
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
