//! Times a person types, as microseconds since the Unix epoch (UTC), the unit every `*_micros`
//! field carries:
//!
//! - an RFC 3339 date, `2026-01-01` (midnight UTC), or date-time, `2026-01-01T09:30:00Z`,
//!   `2026-01-01T09:30:00.25+02:00` (an offset is required, as RFC 3339 requires);
//! - a time relative to now: `30d` (30 days ago), `-12h` (ago as well), `+2w` (two weeks ahead),
//!   with units `s`, `m` (minutes), `h`, `d` and `w`;
//! - `now`.
//!
//! The arithmetic is Howard Hinnant's `days_from_civil`: no calendar crate for one conversion.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};

const SECOND_MICROS: i64 = 1_000_000;
const DAY_SECONDS: i64 = 86_400;

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
}

/// Parses `text` (see the module docs) for `flag`, relative times counted from `now_micros`.
pub fn parse_time(flag: &str, text: &str, now_micros: i64) -> anyhow::Result<i64> {
    let trimmed = text.trim();
    let parsed = if trimmed.eq_ignore_ascii_case("now") {
        Ok(now_micros)
    } else if trimmed.len() >= 10 && trimmed.as_bytes()[4] == b'-' {
        parse_rfc3339(trimmed)
    } else {
        parse_relative(trimmed, now_micros)
    };
    parsed.with_context(|| {
        format!(
            "{flag} {text:?} must be a date (2026-01-01), an RFC 3339 time \
             (2026-01-01T09:30:00Z) or relative to now (30d ago, +2w ahead)"
        )
    })
}

/// `N<unit>` ago, `-N<unit>` ago, or `+N<unit>` ahead.
fn parse_relative(text: &str, now_micros: i64) -> anyhow::Result<i64> {
    let (ahead, rest) = match text.as_bytes().first() {
        Some(b'+') => (true, &text[1..]),
        Some(b'-') => (false, &text[1..]),
        _ => (false, text),
    };
    let split = rest
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| anyhow!("a relative time needs a unit (s, m, h, d, w)"))?;
    let (number, unit) = rest.split_at(split);
    if number.is_empty() {
        bail!("a relative time is a whole number and a unit (s, m, h, d, w)");
    }
    let count: i64 = number
        .parse()
        .map_err(|_| anyhow!("{number:?} is not a whole number"))?;
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => DAY_SECONDS,
        "w" => 7 * DAY_SECONDS,
        other => bail!("unknown unit {other:?} (s, m, h, d, w)"),
    };
    let offset = count
        .checked_mul(unit_seconds)
        .and_then(|seconds| seconds.checked_mul(SECOND_MICROS))
        .ok_or_else(|| anyhow!("{text:?} is too far away"))?;
    let time = if ahead {
        now_micros.checked_add(offset)
    } else {
        now_micros.checked_sub(offset)
    };
    time.ok_or_else(|| anyhow!("{text:?} is too far away"))
}

/// `YYYY-MM-DD`, or `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|+HH:MM|-HH:MM)`.
fn parse_rfc3339(text: &str) -> anyhow::Result<i64> {
    let bytes = text.as_bytes();
    let year = digits(text, 0, 4)?;
    expect_byte(bytes, 4, b'-')?;
    let month = digits(text, 5, 2)?;
    expect_byte(bytes, 7, b'-')?;
    let day = digits(text, 8, 2)?;
    if !(1..=12).contains(&month) {
        bail!("month {month} is not 1 to 12");
    }
    let month_days = days_in_month(year, month);
    if day < 1 || day > month_days {
        bail!("day {day} is not 1 to {month_days} in {year:04}-{month:02}");
    }
    let date_seconds = days_from_civil(year, month, day) * DAY_SECONDS;
    if bytes.len() == 10 {
        return Ok(date_seconds * SECOND_MICROS);
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        bail!("expected 'T' after the date");
    }
    let hour = digits(text, 11, 2)?;
    expect_byte(bytes, 13, b':')?;
    let minute = digits(text, 14, 2)?;
    expect_byte(bytes, 16, b':')?;
    let second = digits(text, 17, 2)?;
    if hour > 23 || minute > 59 || second > 59 {
        bail!("{hour:02}:{minute:02}:{second:02} is not a time of day");
    }
    let mut index = 19;
    let mut fraction_micros = 0;
    if bytes.get(index) == Some(&b'.') {
        index += 1;
        let start = index;
        while bytes.get(index).is_some_and(u8::is_ascii_digit) {
            index += 1;
        }
        if index == start {
            bail!("expected digits after '.'");
        }
        // Microseconds: the first six digits, padded; finer digits are dropped.
        let mut digits_text = text[start..index.min(start + 6)].to_owned();
        while digits_text.len() < 6 {
            digits_text.push('0');
        }
        fraction_micros = digits_text.parse::<i64>()?;
    }
    let offset_seconds = match bytes.get(index) {
        Some(b'Z' | b'z') if bytes.len() == index + 1 => 0,
        Some(sign @ (b'+' | b'-')) if bytes.len() == index + 6 => {
            let hours = digits(text, index + 1, 2)?;
            expect_byte(bytes, index + 3, b':')?;
            let minutes = digits(text, index + 4, 2)?;
            if hours > 23 || minutes > 59 {
                bail!("offset {} is out of range", &text[index..]);
            }
            let offset = hours * 3_600 + minutes * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => bail!("expected Z or an offset (+HH:MM) at the end"),
    };
    let seconds = date_seconds + hour * 3_600 + minute * 60 + second - offset_seconds;
    Ok(seconds * SECOND_MICROS + fraction_micros)
}

fn digits(text: &str, start: usize, count: usize) -> anyhow::Result<i64> {
    let part = text
        .get(start..start + count)
        .filter(|part| part.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| anyhow!("expected {count} digits at offset {start}"))?;
    Ok(part.parse()?)
}

fn expect_byte(bytes: &[u8], index: usize, expected: u8) -> anyhow::Result<()> {
    if bytes.get(index) != Some(&expected) {
        bail!("expected {:?} at offset {index}", char::from(expected));
    }
    Ok(())
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date: Howard Hinnant's `days_from_civil`.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `2026-01-05T14:03:00Z`: a time to the second, for reports and tables.
pub fn format_seconds(micros: i64) -> String {
    let whole = micros - micros.rem_euclid(SECOND_MICROS);
    let text = crate::output::format_micros(whole);
    text.replace(".000000Z", "Z")
}

/// `2026-01-05`: the UTC date of a time.
pub fn format_date(micros: i64) -> String {
    crate::output::format_micros(micros)[..10].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-01T00:00:00Z.
    const NOW: i64 = 1_772_323_200_000_000;

    fn check(text: &str, expected: Result<&str, &str>) {
        match (parse_time("--since", text, NOW), expected) {
            (Ok(micros), Ok(expected)) => {
                assert_eq!(crate::output::format_micros(micros), expected, "{text:?}")
            }
            (Err(error), Err(fragment)) => {
                let message = format!("{error:#}");
                assert!(message.contains(fragment), "{text:?}: {message}");
                assert!(message.starts_with("--since"), "{text:?}: {message}");
            }
            (got, expected) => panic!("{text:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn dates_and_date_times_parse_as_utc() {
        check("2026-01-01", Ok("2026-01-01T00:00:00.000000Z"));
        check("1970-01-01", Ok("1970-01-01T00:00:00.000000Z"));
        check("2000-02-29", Ok("2000-02-29T00:00:00.000000Z"));
        check("1969-12-31", Ok("1969-12-31T00:00:00.000000Z"));
        check("2026-01-01T00:00:00Z", Ok("2026-01-01T00:00:00.000000Z"));
        check("2026-01-01t09:30:15z", Ok("2026-01-01T09:30:15.000000Z"));
        check("2026-01-01 09:30:15Z", Ok("2026-01-01T09:30:15.000000Z"));
        check("2026-01-01T09:30:15.25Z", Ok("2026-01-01T09:30:15.250000Z"));
        check(
            "2026-01-01T09:30:15.1234567Z",
            Ok("2026-01-01T09:30:15.123456Z"),
        );
        check(
            "2026-01-01T01:30:00+02:00",
            Ok("2025-12-31T23:30:00.000000Z"),
        );
        check(
            "2025-12-31T23:00:00-01:30",
            Ok("2026-01-01T00:30:00.000000Z"),
        );
        check("  2026-01-01  ", Ok("2026-01-01T00:00:00.000000Z"));
    }

    #[test]
    fn relative_times_count_from_now() {
        check("now", Ok("2026-03-01T00:00:00.000000Z"));
        check("30d", Ok("2026-01-30T00:00:00.000000Z"));
        check("-1d", Ok("2026-02-28T00:00:00.000000Z"));
        check("+2w", Ok("2026-03-15T00:00:00.000000Z"));
        check("36h", Ok("2026-02-27T12:00:00.000000Z"));
        check("90m", Ok("2026-02-28T22:30:00.000000Z"));
        check("5s", Ok("2026-02-28T23:59:55.000000Z"));
        check("0d", Ok("2026-03-01T00:00:00.000000Z"));
    }

    #[test]
    fn malformed_times_say_what_was_expected() {
        check("2026-02-29", Err("day 29 is not 1 to 28 in 2026-02"));
        check("1900-02-29", Err("day 29 is not 1 to 28"));
        check("2026-13-01", Err("month 13"));
        check("2026-00-10", Err("month 0"));
        check("2026-01-01T24:00:00Z", Err("not a time of day"));
        check("2026-01-01T10:00:00", Err("expected Z or an offset"));
        check("2026-01-01T10:00Z", Err("expected ':' at offset 16"));
        check("2026-01-01T10:00:00.Z", Err("digits after '.'"));
        check("2026/01/01", Err("unknown unit"));
        check("30", Err("needs a unit"));
        check("30y", Err("unknown unit \"y\""));
        check("d", Err("a whole number and a unit"));
        check("soon", Err("a whole number and a unit"));
        check("99999999999999999d", Err("too far away"));
        check("", Err("needs a unit"));
    }

    #[test]
    fn days_from_civil_inverts_the_formatter() {
        for (year, month, day) in [(1970, 1, 1), (2000, 2, 29), (1969, 12, 31), (2100, 3, 1)] {
            let micros = days_from_civil(year, month, day) * DAY_SECONDS * SECOND_MICROS;
            assert_eq!(
                format_date(micros),
                format!("{year:04}-{month:02}-{day:02}")
            );
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2026, 1, 1), 20_454);
    }

    #[test]
    fn times_format_to_the_second() {
        assert_eq!(format_seconds(NOW + 999_999), "2026-03-01T00:00:00Z");
        assert_eq!(format_seconds(-1), "1969-12-31T23:59:59Z");
        assert_eq!(format_date(NOW), "2026-03-01");
    }
}
