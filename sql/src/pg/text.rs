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

/// [`float`] into a writer, without allocating. PostgreSQL prints the shortest
/// digits that read back as the same double (its `float8out` is Ryu), in decimal
/// notation for decimal exponents -4..15 and as `d.ddde+XX` otherwise. Żmij (`zmij`)
/// gives Ryu's digits (ties included, unlike `core::fmt`) in a third of the time, in
/// Ryu's notation but for `e+XX` exponents; that notation is rearranged into
/// PostgreSQL's.
pub fn write_float(v: f64, w: &mut impl std::fmt::Write) {
    if v.is_nan() {
        let _ = w.write_str("NaN");
        return;
    }
    if v.is_infinite() {
        let _ = w.write_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let mut buf = zmij::Buffer::new();
    let s = buf.format_finite(v);
    if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        // Żmij uses decimal notation in this range too (it switches to exponents
        // outside 1e-5..1e16), with ".0" after whole numbers, which PostgreSQL drops.
        let _ = w.write_str(s.strip_suffix(".0").unwrap_or(s));
        return;
    }
    write_shortest(s, 15, w);
}

/// A `real` (float4) as PostgreSQL prints it: shortest digits (Ryu's, as its
/// `float4out`; Żmij computes the same), decimal notation for decimal exponents
/// -4..6, else `d.ddde+XX`.
pub fn write_float32(v: f32, w: &mut impl std::fmt::Write) {
    if v.is_nan() {
        let _ = w.write_str("NaN");
    } else if v.is_infinite() {
        let _ = w.write_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let mut buf = zmij::Buffer::new();
        write_shortest(buf.format_finite(v), 6, w);
    }
}

/// Żmij's text of a finite number (`-12.5`, `1.5e-7`, `1e+30`, `0.001`, `3.0`) in
/// PostgreSQL's notation: decimal when the first digit's decimal exponent is in
/// -4..`max_exp`, else one digit, the others after a point, and `e+XX`/`e-XX`.
fn write_shortest(s: &str, max_exp: i32, w: &mut impl std::fmt::Write) {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let int = int.trim_start_matches('0');
    // The significant digits and the decimal exponent of the first one.
    let (lead, tail, exp10) = if int.is_empty() {
        let zeros = frac.len() - frac.trim_start_matches('0').len();
        (frac.trim_start_matches('0'), "", exp - zeros as i32 - 1)
    } else {
        (int, frac, exp + int.len() as i32 - 1)
    };
    let mut digits = [0u8; 24];
    let mut n = 0;
    for &d in lead.as_bytes().iter().chain(tail.as_bytes()) {
        if let Some(slot) = digits.get_mut(n) {
            *slot = d;
            n += 1;
        }
    }
    while n > 1 && digits.get(n - 1) == Some(&b'0') {
        n -= 1;
    }
    if n == 0 {
        let _ = w.write_str(if neg { "-0" } else { "0" });
        return;
    }
    let digits = std::str::from_utf8(digits.get(..n).unwrap_or_default()).unwrap_or("0");
    let sign = if neg { "-" } else { "" };
    let _ = if (-4..max_exp).contains(&exp10) {
        if exp10 < 0 {
            let zeros = "0000".get(..(-exp10 - 1) as usize).unwrap_or_default();
            write!(w, "{sign}0.{zeros}{digits}")
        } else {
            let int_len = exp10 as usize + 1;
            match digits.split_at_checked(int_len) {
                Some((i, "")) => write!(w, "{sign}{i}"),
                Some((i, f)) => write!(w, "{sign}{i}.{f}"),
                None => write!(
                    w,
                    "{sign}{digits}{:0>pad$}",
                    "",
                    pad = int_len - digits.len()
                ),
            }
        }
    } else {
        let (first, rest) = digits.split_at(1);
        write!(
            w,
            "{sign}{first}{}{rest}e{}{:02}",
            if rest.is_empty() { "" } else { "." },
            if exp10 < 0 { '-' } else { '+' },
            exp10.unsigned_abs()
        )
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
    let (y, m, d) = hindsight_storage::civil_from_days(i64::from(days));
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
        CellRef::Float32(v) => {
            write_float32(v, w);
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
            let mut s = String::new();
            write_float32(array.as_primitive::<Float32Type>().value(i), &mut s);
            s
        }
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            datafusion::arrow::util::display::array_value_to_string(array, i).ok()?
        }
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => bytea_cell(array, i),
        DataType::Date32 => date(array.as_primitive::<Date32Type>().value(i)),
        DataType::Date64 => date(
            (array
                .as_primitive::<Date64Type>()
                .value(i)
                .div_euclid(86_400_000)) as i32,
        ),
        DataType::Timestamp(unit, tz) => timestamp_cell(array, i, *unit, tz.is_some()),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            array_cell(array, i)
        }
        _ => datafusion::arrow::util::display::array_value_to_string(array, i).ok()?,
    })
}

/// A bytea cell: `\x` and two hex digits per byte.
fn bytea_cell(array: &dyn Array, i: usize) -> String {
    let bytes: &[u8] = match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().value(i),
        DataType::LargeBinary => array.as_binary::<i64>().value(i),
        DataType::BinaryView => array.as_binary_view().value(i),
        _ => array.as_fixed_size_binary().value(i),
    };
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("\\x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A timestamp cell in any unit; `with_tz`: timestamptz (UTC, `+00`).
fn timestamp_cell(array: &dyn Array, i: usize, unit: TimeUnit, with_tz: bool) -> String {
    let v = match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(i),
        TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(i),
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(i),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(i),
    };
    let mut s = timestamp(to_micros(unit, v));
    if with_tz {
        s.push_str("+00");
    }
    s
}

/// An array cell: `{a,b,NULL}`, with text, time and bytea elements quoted.
fn array_cell(array: &dyn Array, i: usize) -> String {
    let values = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(i),
        DataType::LargeList(_) => array.as_list::<i64>().value(i),
        _ => array.as_fixed_size_list().value(i),
    };
    let quoted = matches!(
        values.data_type(),
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Timestamp(..)
            | DataType::Date32
            | DataType::Binary
    );
    let items: Vec<String> = (0..values.len())
        .map(|j| match cell(values.as_ref(), j) {
            None => "NULL".to_string(),
            Some(s) if quoted => quote_array_element(&s),
            Some(s) => s,
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};

    /// Doubles as PostgreSQL 15 prints them (`'<value>'::float8::text`, read off a
    /// real server): random bit patterns, values near 1e15 with binary fractions
    /// (where shortest digits tie), small and large magnitudes, the boundaries.
    const PG_FLOAT8_TEXT: &[(u64, &str)] = &[
        (0xf2a74de452e6b438, "-1.989032661366619e+244"),
        (0x42f8b1ed9639ed8e, "434439589175000.9"),
        (0x3f09d0a183145785, "4.923813720318554e-05"),
        (0x440bddb8ea360b4c, "6.425485839826167e+19"),
        (0x5d9dc9f81818e811, "9.081404891174467e+142"),
        (0x42cc7b64dd95a450, "62632597597000.625"),
        (0x3f2c3e6d058b98b0, "0.00021548348265482608"),
        (0xc411f4e8bdc573cd, "-8.281055326216567e+19"),
        (0x11e20b8f6b0d549b, "1.5600333448142914e-222"),
        (0x42d6b22a6e992828, "99817887524000.62"),
        (0x3f3bdbe7b484f302, "0.0004250946699533715"),
        (0x440c5993390b3da0, "6.53704249344076e+19"),
        (0xf28c105d1fb17c23, "-5.988180159386011e+243"),
        (0x4303ae39e966dd47, "692448538713000.9"),
        (0x3f431e07d394fdd3, "0.000583413907555947"),
        (0xc413004ef48c114c, "-8.762759033277193e+19"),
        (0x658cda1495e60af5, "1.496516389830383e+181"),
        (0x42c5ea8a794d4050, "48194179472000.625"),
        (0x3f4c228aea306060, "0.0008586099905896309"),
        (0xc4023f9cbf03822c, "-4.207814273366475e+19"),
        (0x8a6a63ec24ede6a4, "-1.7163996725272777e-258"),
        (0x4301d62e567eb003, "627571139008000.4"),
        (0x3f425f77ae6def2c, "0.0005606970197358"),
        (0x43ff928b1519916c, "3.6400538952240906e+19"),
        (0x94e3bf911a61dbe2, "-4.805547711536507e-208"),
        (0x4303f799a2969142, "702532973417000.2"),
        (0x3f387252cc94e025, "0.00037302514518300556"),
        (0x43e0908f770d39b0, "9.548893141911568e+18"),
        (0x907a70c31012f037, "-2.72491267476498e-229"),
        (0x43034b5ccf323902, "678860817844000.2"),
        (0x3f40487373d894ba, "0.0004969180806183783"),
        (0x43d602a5cf67fd00, "6.344049316037132e+18"),
        (0x506bf2efc6f87718, "2.5890158147660442e+79"),
        (0x43023eccd09eb404, "641949871888000.5"),
        (0x3f37bd0e6061f91f, "0.00036222077358862183"),
        (0xc405d20d4d161c3d, "-5.031468302849013e+19"),
        (0xb2f14c942e05319a, "-2.628241891952923e-63"),
        (0x42eea77a8c51a004, "269637315104000.12"),
        (0x3f42d62f7163ad01, "0.0005748492865484124"),
        (0x43d17bcc56032ac0, "5.039300762290291e+18"),
        (0x57ee05cde00902c7, "3.6967297937384553e+115"),
        (0x42fc02971fe45006, "492759215392000.4"),
        (0x3f43f7994a30033d, "0.0006093500600173673"),
        (0xc412826c17d03914, "-8.535982650806639e+19"),
        (0x6b0a18e8830e07bc, "4.189310710358099e+207"),
        (0x43079467b262e103, "829637194964000.4"),
        (0x3f2408359bee9ab8, "0.00015283255012584428"),
        (0xc3bea230540841c0, "-2.2073799048388772e+18"),
        (0xf646e1f40a097c97, "-5.629271400715247e+261"),
        (0x42d3350dd0a52028, "84474343888000.62"),
        (0x3f42ca78c1a5d8f3, "0.0005734529143371067"),
        (0x441048a4206510d8, "7.509556236617764e+19"),
        (0x571242425051c1cc, "2.7444240984593666e+111"),
        (0x42f5e5f4b9d2e98a, "385238360207000.6"),
        (0x3f404aa1e248e968, "0.0004971781205036887"),
        (0x4409c0537e69effc, "5.937839516431886e+19"),
        (0xd70820fe119a72d1, "-1.813366227079492e+111"),
        (0x42fd9b5f0743fe8e, "520850423169000.9"),
        (0x3f45c6213a8b3a85, "0.0006644880532691999"),
        (0xc4130d8c96577d66, "-8.786611448055605e+19"),
        (0x4f426dcbb394fb36, "6.512205859834416e+73"),
        (0x430205f907e2bf47, "634139589761000.9"),
        (0x3f4af04c73e6b60b, "0.0008221028618231053"),
        (0xc402aef0a3ad806d, "-4.3080893581170156e+19"),
        (0xe315128862c33a4f, "-1.9881605394901064e+169"),
        (0x42f5a5ca718ad302, "380828963614000.1"),
        (0x3f4ed33adf22789c, "0.0009407079180794478"),
        (0xc3f912aed515c7d4, "-2.8907178091930796e+19"),
        (0x1df9fd789c653938, "2.8207895627764684e-164"),
        (0x42ce42d8b41b8820, "66544904714000.25"),
        (0x3f492e597f186a8e, "0.0007684647554840483"),
        (0xc410132673633130, "-7.413195559626316e+19"),
        (0x65dc9f503f63af83, "4.750750204750985e+182"),
        (0x42ff37f6c067f802, "549203575472000.1"),
        (0x3f25ea4c5806e5ba, "0.00016719991618944862"),
        (0xc3f10fdf58cf2a2c, "-1.9671148733139173e+19"),
        (0xe22571594720771f, "-6.174026694114651e+164"),
        (0x4309878768be2184, "898236258174000.5"),
        (0x3f4c50c49ca77db1, "0.0008641204852288168"),
        (0xc403380a6c8efd5f, "-4.431578709722057e+19"),
        (0xc30aa61fa22475ca, "-937625523621561.2"),
        (0x42dc12218377de68, "123456789012345.62"),
        (0x430c6bf526340000, "1e+15"),
        (0x4341c37937e08000, "1e+16"),
        (0x3f1a36e2eb1c432d, "0.0001"),
        (0x3f18e757928e0c9e, "9.5e-05"),
        (0x0000000000000001, "5e-324"),
        (0x7e41eb2d66005835, "1.5e+300"),
        (0xbe90c6f7a0b5ed8d, "-2.5e-07"),
        (0x3fb999999999999a, "0.1"),
        (0x3fd5555555555555, "0.3333333333333333"),
        (0x4340000000000000, "9.007199254740992e+15"),
        (0x4480f0cf064dd592, "1e+22"),
        (0x444b1ae4d6e2ef50, "1e+21"),
    ];

    #[test]
    fn floats_print_exactly_as_postgresql_does() {
        for &(bits, pg) in PG_FLOAT8_TEXT {
            assert_eq!(
                float(f64::from_bits(bits)),
                pg,
                "{:e}",
                f64::from_bits(bits)
            );
        }
        assert_eq!(float(-0.0), "-0");
        assert_eq!(float(f64::NAN), "NaN");
        // float4, read off the same server.
        for (v, pg) in [
            (1234567f32, "1.234567e+06"),
            (123456f32, "123456"),
            (0.0001f32, "0.0001"),
            (0.00001f32, "1e-05"),
            (1.23457f32, "1.23457"),
            (1e10f32, "1e+10"),
            (16777216f32, "1.6777216e+07"),
            (1.5e-7f32, "1.5e-07"),
        ] {
            let mut s = String::new();
            write_float32(v, &mut s);
            assert_eq!(s, pg);
        }
        assert_eq!(float(f64::NEG_INFINITY), "-Infinity");
    }

    /// Every finite double and float reads back as itself, in PostgreSQL's shape,
    /// with Ryu's (PostgreSQL's) digits.
    #[test]
    fn float_text_round_trips() {
        let mut x: u64 = 0x243F_6A88_85A3_08D3;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let s = float(v);
            assert_eq!(s.parse::<f64>().unwrap().to_bits(), v.to_bits(), "{s}");
            assert!(!s.ends_with(".0") && !s.contains(".e"), "{s}");
            assert_eq!(
                digits(&s),
                digits(ryu::Buffer::new().format_finite(v)),
                "{s}"
            );
            let v32 = f32::from_bits(x as u32);
            if v32.is_finite() {
                let mut s = String::new();
                write_float32(v32, &mut s);
                assert_eq!(s.parse::<f32>().unwrap().to_bits(), v32.to_bits(), "{s}");
                assert_eq!(
                    digits(&s),
                    digits(ryu::Buffer::new().format_finite(v32)),
                    "{s}"
                );
            }
        }
    }

    /// The significant digits of a number's text, whatever its notation: PostgreSQL's
    /// float8out and float4out print Ryu's shortest digits, ties included.
    fn digits(s: &str) -> String {
        let mantissa = s.split(['e', 'E']).next().unwrap_or(s);
        let d: String = mantissa.chars().filter(char::is_ascii_digit).collect();
        d.trim_start_matches('0').trim_end_matches('0').to_owned()
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
