//! SQL type names and table options, mapped to storage types.
//!
//! PostgreSQL spellings map to storage column types: `BIGINT`/`INT8`, `INTEGER`/`INT4`,
//! `SMALLINT`/`INT2`, `REAL`/`FLOAT4`, `DOUBLE PRECISION`/`FLOAT8`/`FLOAT`, `BOOLEAN`,
//! `TEXT`/`VARCHAR(n)`/`CHAR(n)`, `BYTEA`, `DATE`, `TIMESTAMP`, `TIMESTAMPTZ`, and arrays
//! of any of them (`REAL[]`, `TEXT[]`, ...). Types the engine cannot store exactly
//! (NUMERIC, JSON, UUID, INTERVAL, ...) are rejected with a hint rather than silently
//! converted.

use hindsight_storage::{DataType, ScalarType};
use sqlparser::ast::{ArrayElemTypeDef, DataType as SqlType, ExactNumberInfo, TimezoneInfo};

use crate::error::{Result, SqlError};

/// The storage type for a SQL type name.
pub fn storage_type(t: &SqlType) -> Result<DataType> {
    match t {
        SqlType::Array(elem) => {
            let inner = match elem {
                ArrayElemTypeDef::SquareBracket(inner, _)
                | ArrayElemTypeDef::AngleBracket(inner)
                | ArrayElemTypeDef::Parenthesis(inner) => inner.as_ref(),
                ArrayElemTypeDef::None => {
                    return Err(SqlError::unsupported("ARRAY needs an element type")
                        .with_hint("write e.g. REAL[] or TEXT[]"));
                }
            };
            match storage_type(inner)? {
                DataType::Scalar(s) => Ok(DataType::List(s)),
                DataType::List(_) => Err(SqlError::unsupported(
                    "multi-dimensional arrays are not supported",
                )
                .with_hint("use a one-dimensional array such as REAL[]")),
            }
        }
        other => scalar_type(other).map(DataType::Scalar),
    }
}

fn scalar_type(t: &SqlType) -> Result<ScalarType> {
    use SqlType as T;
    Ok(match t {
        T::Boolean | T::Bool => ScalarType::Bool,
        T::SmallInt(_) | T::Int2(_) => ScalarType::Int16,
        T::Int(_) | T::Integer(_) | T::Int4(_) => ScalarType::Int32,
        T::BigInt(_) | T::Int8(_) => ScalarType::Int64,
        T::Real | T::Float4 => ScalarType::Float32,
        T::Double(ExactNumberInfo::None) | T::DoublePrecision | T::Float8 | T::Float64 => {
            ScalarType::Float64
        }
        T::Float(info) => match info {
            ExactNumberInfo::Precision(p) | ExactNumberInfo::PrecisionAndScale(p, _)
                if *p <= 24 =>
            {
                ScalarType::Float32
            }
            _ => ScalarType::Float64,
        },
        T::Text
        | T::String(_)
        | T::Varchar(_)
        | T::CharVarying(_)
        | T::CharacterVarying(_)
        | T::Char(_)
        | T::Character(_)
        | T::Nvarchar(_) => ScalarType::Text,
        T::Bytea | T::Blob(_) | T::Binary(_) | T::Varbinary(_) => ScalarType::Bytes,
        T::Date => ScalarType::Date,
        T::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            ScalarType::Timestamp
        }
        T::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => ScalarType::TimestampTz,
        T::Custom(name, _) if name.to_string().eq_ignore_ascii_case("timestamptz") => {
            ScalarType::TimestampTz
        }
        T::Custom(name, _) if name.to_string().eq_ignore_ascii_case("int8") => ScalarType::Int64,
        T::Numeric(_) | T::Decimal(_) | T::Dec(_) => {
            return Err(
                SqlError::unsupported(format!("type {t} is not supported")).with_hint(
                    "use DOUBLE PRECISION for approximate numbers or BIGINT for scaled integers",
                ),
            );
        }
        other => {
            return Err(
                SqlError::unsupported(format!("type {other} is not supported")).with_hint(
                    "supported types: BOOLEAN, SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, \
                 TEXT, VARCHAR(n), BYTEA, DATE, TIMESTAMP, TIMESTAMPTZ, and arrays of these",
                ),
            );
        }
    })
}

/// PostgreSQL's name of a storage type (for messages and catalogs).
pub fn pg_type_name(t: DataType) -> String {
    let s = match t.scalar() {
        ScalarType::Bool => "boolean",
        ScalarType::Int16 => "smallint",
        ScalarType::Int32 => "integer",
        ScalarType::Int64 => "bigint",
        ScalarType::Float32 => "real",
        ScalarType::Float64 => "double precision",
        ScalarType::Text => "text",
        ScalarType::Bytes => "bytea",
        ScalarType::Date => "date",
        ScalarType::Timestamp => "timestamp without time zone",
        ScalarType::TimestampTz => "timestamp with time zone",
    };
    if t.is_list() {
        format!("{s}[]")
    } else {
        s.to_string()
    }
}

/// The storage type that holds values of Arrow type `t` (CREATE TABLE AS, view
/// columns), if one does.
pub fn storage_type_of_arrow(t: &datafusion::arrow::datatypes::DataType) -> Option<DataType> {
    use datafusion::arrow::datatypes::DataType as A;
    let scalar = |t: &A| -> Option<ScalarType> {
        Some(match t {
            A::Boolean => ScalarType::Bool,
            A::Int8 | A::Int16 | A::UInt8 => ScalarType::Int16,
            A::Int32 | A::UInt16 => ScalarType::Int32,
            A::Int64 | A::UInt32 | A::UInt64 => ScalarType::Int64,
            A::Float16 | A::Float32 => ScalarType::Float32,
            A::Float64 | A::Decimal128(..) | A::Decimal256(..) => ScalarType::Float64,
            A::Utf8 | A::LargeUtf8 | A::Utf8View => ScalarType::Text,
            A::Binary | A::LargeBinary | A::BinaryView => ScalarType::Bytes,
            A::Date32 | A::Date64 => ScalarType::Date,
            A::Timestamp(_, None) => ScalarType::Timestamp,
            A::Timestamp(_, Some(_)) => ScalarType::TimestampTz,
            _ => return None,
        })
    };
    match t {
        A::List(f) | A::LargeList(f) | A::FixedSizeList(f, _) => {
            scalar(f.data_type()).map(DataType::List)
        }
        other => scalar(other).map(DataType::Scalar),
    }
}

/// PostgreSQL's name of the type a value of Arrow type `t` has (what `pg_typeof`
/// and messages say): the names of [`pg_type_name`] for the storage types, and the
/// types DataFusion computes besides them.
pub fn arrow_pg_type_name(t: &datafusion::arrow::datatypes::DataType) -> String {
    use datafusion::arrow::datatypes::DataType as A;
    let s = match t {
        A::Null => "unknown",
        A::Boolean => "boolean",
        A::Int8 | A::Int16 | A::UInt8 => "smallint",
        A::Int32 | A::UInt16 => "integer",
        A::Int64 => "bigint",
        A::UInt32 => "oid",
        A::UInt64 | A::Decimal128(..) | A::Decimal256(..) => "numeric",
        A::Float16 | A::Float32 => "real",
        A::Float64 => "double precision",
        A::Utf8 | A::LargeUtf8 | A::Utf8View => "text",
        A::Binary | A::LargeBinary | A::BinaryView | A::FixedSizeBinary(_) => "bytea",
        A::Date32 | A::Date64 => "date",
        A::Time32(_) | A::Time64(_) => "time without time zone",
        A::Timestamp(_, None) => "timestamp without time zone",
        A::Timestamp(_, Some(_)) => "timestamp with time zone",
        A::Interval(_) | A::Duration(_) => "interval",
        A::List(f) | A::LargeList(f) | A::FixedSizeList(f, _) => {
            return format!("{}[]", arrow_pg_type_name(f.data_type()));
        }
        A::Struct(_) => "record",
        _ => "text",
    };
    s.to_string()
}

/// Parse an interval such as `'2 days'`, `'36 hours'`, `'1 day 12:00:00'`, `'90 min'`
/// into microseconds.
pub fn parse_interval_micros(text: &str) -> Result<i64> {
    let bad = || {
        SqlError::new(
            crate::error::ErrorKind::InvalidDatetimeFormat,
            format!("invalid interval \"{text}\""),
        )
        .with_hint("write an interval such as '2 days', '6 hours' or '1 day 12:00:00'")
    };
    let mut total: i128 = 0;
    let mut words = text.split_whitespace().peekable();
    let mut any = false;
    while let Some(w) = words.next() {
        if w.contains(':') {
            let parts: Vec<&str> = w.split(':').collect();
            let mut secs: f64 = 0.0;
            for p in &parts {
                secs = secs * 60.0 + p.parse::<f64>().map_err(|_| bad())?;
            }
            if parts.len() == 2 {
                secs *= 60.0; // HH:MM
            }
            total += (secs * 1e6).round() as i128;
            any = true;
            continue;
        }
        let (num, unit) = match w.find(|c: char| c.is_ascii_alphabetic()) {
            Some(i) if i > 0 => (&w[..i], w[i..].to_string()),
            _ => (w, words.next().ok_or_else(bad)?.to_string()),
        };
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit = unit.to_ascii_lowercase();
        let scale: f64 = match unit.trim_end_matches(',') {
            "us" | "usec" | "usecs" | "microsecond" | "microseconds" => 1.0,
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1e3,
            "s" | "sec" | "secs" | "second" | "seconds" => 1e6,
            "m" | "min" | "mins" | "minute" | "minutes" => 60e6,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600e6,
            "d" | "day" | "days" => 86_400e6,
            "w" | "week" | "weeks" => 7.0 * 86_400e6,
            _ => return Err(bad()),
        };
        total += (n * scale).round() as i128;
        any = true;
    }
    if !any || total <= 0 || total > i64::MAX as i128 {
        return Err(bad());
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::parse;
    use sqlparser::ast::{ColumnDef, CreateTable, Statement};

    fn col_types(sql: &str) -> Vec<Result<DataType>> {
        let Statement::CreateTable(CreateTable { columns, .. }) = parse(sql).unwrap().remove(0)
        else {
            panic!()
        };
        columns
            .iter()
            .map(|c: &ColumnDef| storage_type(&c.data_type))
            .collect()
    }

    #[test]
    fn postgres_type_names_map_to_storage_types() {
        let t = col_types(
            "CREATE TABLE x (a BIGINT, b INT, c SMALLINT, d REAL, e DOUBLE PRECISION, f TEXT, \
             g VARCHAR(10), h BYTEA, i DATE, j TIMESTAMP, k TIMESTAMPTZ, l REAL[], m DOUBLE PRECISION[], \
             n TEXT[], o BOOLEAN, p FLOAT8, q INT8[], r TIMESTAMP WITH TIME ZONE)",
        );
        let want = [
            DataType::Scalar(ScalarType::Int64),
            DataType::Scalar(ScalarType::Int32),
            DataType::Scalar(ScalarType::Int16),
            DataType::Scalar(ScalarType::Float32),
            DataType::Scalar(ScalarType::Float64),
            DataType::Scalar(ScalarType::Text),
            DataType::Scalar(ScalarType::Text),
            DataType::Scalar(ScalarType::Bytes),
            DataType::Scalar(ScalarType::Date),
            DataType::Scalar(ScalarType::Timestamp),
            DataType::Scalar(ScalarType::TimestampTz),
            DataType::List(ScalarType::Float32),
            DataType::List(ScalarType::Float64),
            DataType::List(ScalarType::Text),
            DataType::Scalar(ScalarType::Bool),
            DataType::Scalar(ScalarType::Float64),
            DataType::List(ScalarType::Int64),
            DataType::Scalar(ScalarType::TimestampTz),
        ];
        for (got, want) in t.into_iter().zip(want) {
            assert_eq!(got.unwrap(), want);
        }
    }

    #[test]
    fn numeric_is_rejected_with_a_hint() {
        let e = col_types("CREATE TABLE x (a NUMERIC(10,2))")
            .remove(0)
            .unwrap_err();
        assert!(e.hint.unwrap().contains("DOUBLE PRECISION"));
    }

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval_micros("2 days").unwrap(), 2 * 86_400_000_000);
        assert_eq!(
            parse_interval_micros("1 day 12:00:00").unwrap(),
            36 * 3_600_000_000
        );
        assert_eq!(parse_interval_micros("90 min").unwrap(), 5_400_000_000);
        assert_eq!(parse_interval_micros("7d").unwrap(), 7 * 86_400_000_000);
        assert!(parse_interval_micros("soon").is_err());
        assert!(parse_interval_micros("-1 day").is_err());
    }
}
