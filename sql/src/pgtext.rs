//! Arrow values in PostgreSQL's text output format.
//!
//! Used for text-format result columns on the wire and by the SQL tests, so both see
//! exactly what `psql` would show: `t`/`f`, shortest round-trip floats, `Infinity`,
//! `2026-01-01 00:00:00+00` (fractional seconds without trailing zeros), `{1,2,3}`
//! arrays with PostgreSQL quoting, `\x0a0b` bytea. NULL is `None`.

use std::fmt::Write as _;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type,
    Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};

/// Format a float like PostgreSQL (shortest representation that round-trips).
pub fn float(v: f64) -> String {
    let mut s = String::new();
    write_float(v, &mut s);
    s
}

/// [`float`] into a writer: no allocation in the common range.
pub fn write_float(v: f64, w: &mut impl std::fmt::Write) {
    let _ = if v.is_nan() {
        w.write_str("NaN")
    } else if v.is_infinite() {
        w.write_str(if v > 0.0 { "Infinity" } else { "-Infinity" })
    } else if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        // The shortest round-trip digits of a double in this range have a decimal
        // exponent in -4..15, so no exponent form. Ryu prints this range in decimal
        // notation too (it switches to exponents outside 1e-5..1e16), with ".0" after
        // whole numbers, which PostgreSQL does not print.
        let mut buf = ryu::Buffer::new();
        let s = buf.format_finite(v);
        w.write_str(s.strip_suffix(".0").unwrap_or(s))
    } else {
        // PostgreSQL: shortest digits; exponent form below 1e-4 or from 1e15 on, with
        // at least two exponent digits.
        let e = format!("{v:e}");
        let (mantissa, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        if !(-4..15).contains(&exp) {
            write!(
                w,
                "{mantissa}e{}{:02}",
                if exp < 0 { '-' } else { '+' },
                exp.abs()
            )
        } else {
            write!(w, "{v}")
        }
    };
}

/// An integer's decimal digits into a writer.
pub fn write_int(v: impl itoa::Integer, w: &mut impl std::fmt::Write) {
    let _ = w.write_str(itoa::Buffer::new().format(v));
}

/// Microseconds since the epoch as `YYYY-MM-DD HH:MM:SS[.ffffff]`.
pub fn timestamp(us: i64) -> String {
    let mut s = String::new();
    write_timestamp(us, &mut s);
    s
}

/// [`timestamp`] into a writer.
pub fn write_timestamp(us: i64, w: &mut impl std::fmt::Write) {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    write_date(days as i32, w);
    let _ = w.write_char(' ');
    write_clock(rem as u64, frac as u64, w);
}

/// Two decimal digits of `v` (< 100).
fn two_digits(v: u64) -> [u8; 2] {
    [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]
}

/// `HH:MM:SS[.ffffff]` of a number of seconds and microseconds (no trailing zeros in
/// the fraction, as PostgreSQL prints times and interval clocks).
pub fn clock(secs: u64, frac_us: u64) -> String {
    let mut s = String::new();
    write_clock(secs, frac_us, &mut s);
    s
}

/// [`clock`] into a writer.
pub fn write_clock(secs: u64, frac_us: u64, w: &mut impl std::fmt::Write) {
    let hours = secs / 3600;
    if hours >= 100 {
        let _ = write!(w, "{hours}");
    } else {
        let [a, b] = two_digits(hours);
        let _ = w.write_char(char::from(a));
        let _ = w.write_char(char::from(b));
    }
    let [m1, m2] = two_digits((secs % 3600) / 60);
    let [s1, s2] = two_digits(secs % 60);
    let hms = [b':', m1, m2, b':', s1, s2];
    let _ = w.write_str(std::str::from_utf8(&hms).unwrap_or_default());
    if frac_us != 0 {
        let mut frac = frac_us;
        let mut width = 6;
        while frac.is_multiple_of(10) {
            frac /= 10;
            width -= 1;
        }
        let _ = write!(w, ".{frac:0width$}");
    }
}

/// Days since the epoch as `YYYY-MM-DD` (years beyond 9999 or before 1 as PostgreSQL
/// would not show them; such dates are out of range for clients anyway).
pub fn date(days: i32) -> String {
    let mut s = String::new();
    write_date(days, &mut s);
    s
}

/// [`date`] into a writer.
pub fn write_date(days: i32, w: &mut impl std::fmt::Write) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = if y <= 0 {
        write!(w, "{:04}-{m:02}-{d:02} BC", 1 - y)
    } else if y <= 9999 {
        let y = y as u64;
        let [y1, y2] = two_digits(y / 100);
        let [y3, y4] = two_digits(y % 100);
        let [m1, m2] = two_digits(m as u64);
        let [d1, d2] = two_digits(d as u64);
        let ymd = [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2];
        w.write_str(std::str::from_utf8(&ymd).unwrap_or_default())
    } else {
        write!(w, "{y:04}-{m:02}-{d:02}")
    };
}

/// One non-NULL value of the types point lookups return most, borrowed: what the
/// text and binary writers of the wire format share between Arrow columns
/// ([`cell_ref`]) and the storage values of the online path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CellRef<'a> {
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Text(&'a str),
    Bytes(&'a [u8]),
    /// Days since the epoch.
    Date(i32),
    /// Microseconds since the epoch; `tz`: a `timestamptz` (printed with `+00`).
    Timestamp {
        micros: i64,
        tz: bool,
    },
}

/// Row `i` of `array` as a [`CellRef`], for the types it covers; `None` for others
/// (NULL is not handled here).
pub fn cell_ref(array: &dyn Array, i: usize) -> Option<CellRef<'_>> {
    Some(match array.data_type() {
        DataType::Boolean => CellRef::Bool(array.as_boolean().value(i)),
        DataType::Int16 => CellRef::Int16(array.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => CellRef::Int32(array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => CellRef::Int64(array.as_primitive::<Int64Type>().value(i)),
        DataType::Float32 => CellRef::Float32(array.as_primitive::<Float32Type>().value(i)),
        DataType::Float64 => CellRef::Float64(array.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => CellRef::Text(array.as_string::<i32>().value(i)),
        DataType::Utf8View => CellRef::Text(array.as_string_view().value(i)),
        DataType::Binary => CellRef::Bytes(array.as_binary::<i32>().value(i)),
        DataType::Date32 => CellRef::Date(array.as_primitive::<Date32Type>().value(i)),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => CellRef::Timestamp {
            micros: array.as_primitive::<TimestampMicrosecondType>().value(i),
            tz: tz.is_some(),
        },
        _ => return None,
    })
}

/// A [`CellRef`] in PostgreSQL's text format, without allocating.
pub fn write_cell_ref(c: CellRef<'_>, w: &mut impl std::fmt::Write) {
    let _ = match c {
        CellRef::Bool(b) => w.write_str(if b { "t" } else { "f" }),
        CellRef::Int16(v) => {
            write_int(v, w);
            Ok(())
        }
        CellRef::Int32(v) => {
            write_int(v, w);
            Ok(())
        }
        CellRef::Int64(v) => {
            write_int(v, w);
            Ok(())
        }
        // Shortest f32 digits, not the f64 widening's noise.
        CellRef::Float32(v) if v.is_finite() => write!(w, "{v}"),
        CellRef::Float32(v) => {
            write_float(f64::from(v), w);
            Ok(())
        }
        CellRef::Float64(v) => {
            write_float(v, w);
            Ok(())
        }
        CellRef::Text(s) => w.write_str(s),
        CellRef::Bytes(b) => {
            let _ = w.write_str("\\x");
            b.iter().try_for_each(|x| write!(w, "{x:02x}"))
        }
        CellRef::Date(d) => {
            write_date(d, w);
            Ok(())
        }
        CellRef::Timestamp { micros, tz } => {
            write_timestamp(micros, w);
            if tz { w.write_str("+00") } else { Ok(()) }
        }
    };
}

/// Row `i` of `array` in text format written to `w`, without allocating, for the
/// types [`cell_ref`] covers; `false` for other types (use [`cell`]). NULL is not
/// handled here.
pub fn write_cell(array: &dyn Array, i: usize, w: &mut impl std::fmt::Write) -> bool {
    match cell_ref(array, i) {
        Some(c) => {
            write_cell_ref(c, w);
            true
        }
        None => false,
    }
}

fn to_micros(unit: TimeUnit, v: i64) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v.div_euclid(1_000),
    }
}

fn quote_array_element(s: &str) -> String {
    let needs = s.is_empty()
        || s.eq_ignore_ascii_case("null")
        || s.chars()
            .any(|c| matches!(c, ',' | '{' | '}' | '"' | '\\') || c.is_whitespace());
    if !needs {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Row `i` of `array` in PostgreSQL text format; `None` for NULL.
pub fn cell(array: &dyn Array, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Null => return None,
        DataType::Boolean => (if array.as_boolean().value(i) {
            "t"
        } else {
            "f"
        })
        .to_string(),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(i).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(i).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(i).to_string(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(i).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(i).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::Float16 => float(f64::from(array.as_primitive::<Float16Type>().value(i))),
        DataType::Float32 => {
            // Shortest f32 digits, not the f64 widening's noise.
            let v = array.as_primitive::<Float32Type>().value(i);
            if v.is_finite() {
                format!("{v}")
            } else {
                float(f64::from(v))
            }
        }
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            datafusion::arrow::util::display::array_value_to_string(array, i).ok()?
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => {
            let bytes: Vec<u8> = match array.data_type() {
                DataType::Binary => array.as_binary::<i32>().value(i).to_vec(),
                DataType::LargeBinary => array.as_binary::<i64>().value(i).to_vec(),
                DataType::BinaryView => array.as_binary_view().value(i).to_vec(),
                _ => array.as_fixed_size_binary().value(i).to_vec(),
            };
            let mut s = String::with_capacity(2 + 2 * bytes.len());
            s.push_str("\\x");
            for b in bytes {
                let _ = write!(s, "{b:02x}");
            }
            s
        }
        DataType::Date32 => date(array.as_primitive::<Date32Type>().value(i)),
        DataType::Date64 => date(
            (array
                .as_primitive::<Date64Type>()
                .value(i)
                .div_euclid(86_400_000)) as i32,
        ),
        DataType::Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(i),
                TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(i),
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(i),
                TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(i),
            };
            let mut s = timestamp(to_micros(*unit, v));
            if tz.is_some() {
                s.push_str("+00");
            }
            s
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let values = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(i),
                DataType::LargeList(_) => array.as_list::<i64>().value(i),
                _ => array.as_fixed_size_list().value(i),
            };
            let items: Vec<String> = (0..values.len())
                .map(|j| match cell(values.as_ref(), j) {
                    None => "NULL".to_string(),
                    Some(s) => match values.data_type() {
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                            quote_array_element(&s)
                        }
                        DataType::Timestamp(..) | DataType::Date32 | DataType::Binary => {
                            quote_array_element(&s)
                        }
                        _ => s,
                    },
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        _ => datafusion::arrow::util::display::array_value_to_string(array, i).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};

    /// The formatting of the common range (Ryu, ".0" dropped) gives exactly the
    /// digits of Rust's shortest round-trip formatting, which the exponent range
    /// still uses.
    #[test]
    fn fast_float_digits_equal_the_standard_shortest_digits() {
        let mut x: u64 = 0x243F_6A88_85A3_08D3;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut checked = 0;
        for i in 0..2_000_000u64 {
            let v = match i % 4 {
                0 => f64::from_bits(next()),
                1 => (next() % 10_000_000) as f64 / 1000.0,
                2 => (next() % 1_000_000_000_000) as f64 * 1e3,
                _ => 1e-4 + (next() % 1_000_000) as f64 * 1e-9,
            };
            if v.is_finite() && (v == 0.0 || (1e-4..1e15).contains(&v.abs())) {
                assert_eq!(float(v), format!("{v}"), "{v:e}");
                checked += 1;
            }
        }
        assert!(checked > 1_000_000);
        assert_eq!(float(-0.0), "-0");
        assert_eq!(float(0.0), "0");
        assert_eq!(float(1e15 - 0.125), "999999999999999.9");
    }

    #[test]
    fn timestamps_and_dates_print_with_fixed_digits() {
        assert_eq!(timestamp(1_767_225_600_000_000), "2026-01-01 00:00:00");
        assert_eq!(
            timestamp(1_767_225_600_000_000 + 3_723_000_450),
            "2026-01-01 01:02:03.00045"
        );
        assert_eq!(date(-719_162), "0001-01-01");
        assert_eq!(date(-719_163), "0001-12-31 BC");
        assert_eq!(date(2_932_896), "9999-12-31");
        assert_eq!(date(2_932_897), "10000-01-01");
        assert_eq!(clock(360_000, 0), "100:00:00");
        assert_eq!(clock(59, 10), "00:00:59.00001");
    }

    #[test]
    fn values_format_like_psql() {
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(1.0), "1");
        assert_eq!(float(f64::INFINITY), "Infinity");
        assert_eq!(float(1e-5), "1e-05");
        assert_eq!(float(1e15), "1e+15");
        assert_eq!(float(123456.789), "123456.789");
        assert_eq!(float(1e-4), "0.0001");
        assert_eq!(float(-2.5e-7), "-2.5e-07");
        assert_eq!(float(999999999999999.9), "999999999999999.9");
        assert_eq!(float(1e14), "100000000000000");
        assert_eq!(float(-1.5e300), "-1.5e+300");
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_500_000), "1970-01-01 00:00:01.5");
        assert_eq!(timestamp(-1), "1969-12-31 23:59:59.999999");
        let ts =
            TimestampMicrosecondArray::from(vec![1_767_225_600_000_000]).with_timezone("+00:00");
        assert_eq!(cell(&ts, 0).unwrap(), "2026-01-01 00:00:00+00");
        let f = Float64Array::from(vec![Some(2.5), None]);
        assert_eq!(cell(&f, 0).unwrap(), "2.5");
        assert_eq!(cell(&f, 1), None);
        let s = StringArray::from(vec!["a b"]);
        assert_eq!(quote_array_element(&cell(&s, 0).unwrap()), "\"a b\"");
    }
}
