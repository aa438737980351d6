//! Civil-time arithmetic shared by the engine's messages and the SQL layer's text
//! output: days since the epoch to a proleptic Gregorian date, and a UTC rendering
//! of microseconds for error messages.

/// Render microseconds since the epoch for error messages (UTC, ISO 8601).
pub fn fmt_micros(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let frac = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{frac:06}+00",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`; exact for every `i64` day the callers pass).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_render_as_utc_timestamps() {
        assert_eq!(fmt_micros(0), "1970-01-01 00:00:00.000000+00");
        assert_eq!(
            fmt_micros(1_704_067_200_000_000),
            "2024-01-01 00:00:00.000000+00"
        );
        assert_eq!(fmt_micros(-1), "1969-12-31 23:59:59.999999+00");
    }
}
