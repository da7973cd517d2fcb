//! Durations as people type them (`4h`, `90m`, `1h30m`, `2d`, `45s`) and the
//! bounds of a window's length; kept apart from chrono so every input is
//! validated once, with checked arithmetic, before any planning happens.

use chrono::TimeDelta;

use super::ScheduleError;

/// The length of a window when none is given: 4 hours.
pub const DEFAULT_WINDOW_LENGTH: TimeDelta = TimeDelta::hours(4);
/// The shortest window length accepted: 1 minute.
pub const MIN_WINDOW_LENGTH: TimeDelta = TimeDelta::minutes(1);
/// The longest window length accepted: 7 days.
pub const MAX_WINDOW_LENGTH: TimeDelta = TimeDelta::days(7);

const UNITS: [(u8, i64); 4] = [(b'd', 86_400), (b'h', 3_600), (b'm', 60), (b's', 1)];

/// Parses a positive duration made of `d`, `h`, `m` and `s` components, largest
/// unit first, each at most once: `4h`, `90m`, `1h30m`, `2d`, `45s`, `1d12h`.
pub fn parse_duration(text: &str) -> Result<TimeDelta, ScheduleError> {
    let bad = || ScheduleError::InvalidDuration(text.to_string());
    let bytes = text.trim().as_bytes();
    if bytes.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut next_unit = 0; // index into UNITS of the smallest unit still allowed
    let mut i = 0;
    while i < bytes.len() {
        let digits_start = i;
        let mut value: i64 = 0;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            value = value.checked_mul(10).and_then(|v| v.checked_add(i64::from(bytes[i] - b'0'))).ok_or_else(bad)?;
            i += 1;
        }
        if i == digits_start || i == bytes.len() {
            return Err(bad());
        }
        let unit = bytes[i].to_ascii_lowercase();
        let position = UNITS[next_unit..].iter().position(|(u, _)| *u == unit).ok_or_else(bad)? + next_unit;
        next_unit = position + 1;
        total = value.checked_mul(UNITS[position].1).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
        i += 1;
    }
    if total <= 0 {
        return Err(bad());
    }
    TimeDelta::try_seconds(total).ok_or_else(bad)
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `2d`, `45s`);
/// sub-second parts are dropped and a zero or negative duration prints as `0s`.
pub fn format_duration(duration: TimeDelta) -> String {
    let mut seconds = duration.num_seconds();
    if seconds <= 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if seconds >= size {
            out.push_str(&(seconds / size).to_string());
            out.push(char::from(unit));
            seconds %= size;
        }
    }
    out
}

/// Parses a window length (`--length`, the fleet file's `length`): a
/// [`parse_duration`] between 1 minute and 7 days.
pub fn parse_window_length(text: &str) -> Result<TimeDelta, ScheduleError> {
    let length = parse_duration(text)?;
    check_window_length(length)?;
    Ok(length)
}

/// Rejects a window length outside 1 minute ..= 7 days.
pub fn check_window_length(length: TimeDelta) -> Result<(), ScheduleError> {
    if (MIN_WINDOW_LENGTH..=MAX_WINDOW_LENGTH).contains(&length) {
        Ok(())
    } else {
        Err(ScheduleError::LengthOutOfRange(format_signed(length)))
    }
}

fn format_signed(duration: TimeDelta) -> String {
    if duration < TimeDelta::zero() {
        format!("-{}", format_duration(-duration))
    } else if duration > TimeDelta::zero() && duration < TimeDelta::seconds(1) {
        format!("{}ms", duration.num_milliseconds())
    } else {
        format_duration(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("4h").unwrap(), TimeDelta::hours(4));
        assert_eq!(parse_duration("90m").unwrap(), TimeDelta::minutes(90));
        assert_eq!(parse_duration("1h30m").unwrap(), TimeDelta::minutes(90));
        assert_eq!(parse_duration("2d").unwrap(), TimeDelta::days(2));
        assert_eq!(parse_duration("45s").unwrap(), TimeDelta::seconds(45));
        assert_eq!(parse_duration("1d2h3m4s").unwrap(), TimeDelta::seconds(93_784));
        assert_eq!(parse_duration(" 72H ").unwrap(), TimeDelta::hours(72));
    }

    #[test]
    fn rejects_malformed_and_non_positive() {
        for bad in ["", "h", "4", "4x", "0s", "0h0m", "30m1h", "1h1h", "-4h", "4 h", "1.5h", "99999999999999999999s", "9223372036854775807d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn window_length_bounds() {
        assert!(parse_window_length("1m").is_ok());
        assert!(parse_window_length("7d").is_ok());
        assert!(parse_window_length("59s").is_err());
        assert!(parse_window_length("7d1s").is_err());
        assert_eq!(parse_window_length("8d").unwrap_err().to_string(), "window length 8d is out of range (1m to 7d)");
    }

    #[test]
    fn formats_like_it_parses() {
        assert_eq!(format_duration(TimeDelta::minutes(90)), "1h30m");
        assert_eq!(format_duration(TimeDelta::days(2)), "2d");
        assert_eq!(format_duration(TimeDelta::seconds(93_784)), "1d2h3m4s");
    }
}
