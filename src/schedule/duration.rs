//! Durations as people type them (`4h`, `90m`, `1h30m`, `2d`, `100ms`, `2w`):
//! the one grammar and the one formatter of the command line (`--timeout`,
//! `--length`, `--required-by 3d`), the fleet file and the daemon's
//! configuration, and the bounds of a window's length. Kept apart from chrono
//! so every input is validated once, with checked arithmetic, before any
//! planning happens.

use std::time::Duration;

use chrono::TimeDelta;

use super::{DurationError, ScheduleError};

/// The length of a window when none is given: 4 hours.
pub const DEFAULT_WINDOW_LENGTH: TimeDelta = TimeDelta::hours(4);
/// The shortest window length accepted: 1 minute.
pub const MIN_WINDOW_LENGTH: TimeDelta = TimeDelta::minutes(1);
/// The longest window length accepted: 7 days.
pub const MAX_WINDOW_LENGTH: TimeDelta = TimeDelta::days(7);

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;

/// The units, largest first, in milliseconds.
const UNITS: [(&str, u64); 6] = [("w", WEEK), ("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", SECOND), ("ms", 1)];

/// The longest duration read: chrono's `TimeDelta::MAX` (`i64::MAX` milliseconds,
/// some 292 million years), so every duration read is also a `TimeDelta`.
const MAX_MILLIS: u64 = i64::MAX as u64;

/// Reads a duration: one or more `<integer><unit>` parts, units `w`, `d`, `h`,
/// `m`, `s` and `ms` in any case, each at most once and largest first, spaces
/// allowed around and between parts: `1h30m`, `1h 30m`, `10 s`, `100ms`, `90d`,
/// `2w`, `0s`. Zero is a duration here (`retire_grace = "0s"`); see
/// [`parse_duration`] for a positive one.
pub fn parse_std_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = s;
    let mut total: u64 = 0;
    let mut next_unit = 0; // index into UNITS of the largest unit still allowed
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::NotADuration(s.to_string()));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| DurationError::TooLong(s.to_string()))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(if rest.starts_with('.') {
                DurationError::Fraction(s.to_string())
            } else {
                DurationError::NoUnit { text: s.to_string(), number }
            });
        }
        let Some(index) = UNITS.iter().position(|(name, _)| name.eq_ignore_ascii_case(unit)) else {
            return Err(DurationError::UnknownUnit { text: s.to_string(), unit: unit.to_string() });
        };
        if index < next_unit {
            return Err(DurationError::OutOfOrder(s.to_string()));
        }
        next_unit = index + 1;
        total = number
            .checked_mul(UNITS[index].1)
            .and_then(|ms| total.checked_add(ms))
            .filter(|ms| *ms <= MAX_MILLIS)
            .ok_or_else(|| DurationError::TooLong(s.to_string()))?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(Duration::from_millis(total))
}

/// Reads a positive duration ([`parse_std_duration`]'s grammar, but not zero)
/// as a `TimeDelta`: `4h`, `90m`, `1h30m`, `2d`, `45s`, `1d12h`, `500ms`.
pub fn parse_duration(text: &str) -> Result<TimeDelta, ScheduleError> {
    let duration = parse_std_duration(text)?;
    if duration.is_zero() {
        return Err(DurationError::NotPositive(text.trim().to_string()).into());
    }
    TimeDelta::from_std(duration).map_err(|_| DurationError::TooLong(text.trim().to_string()).into())
}

/// A duration [`format_duration`] prints: the configuration's
/// `std::time::Duration` or planning's `chrono::TimeDelta`.
pub trait DurationValue {
    /// Whole milliseconds (sub-millisecond parts are dropped); negative for a negative `TimeDelta`.
    fn whole_millis(&self) -> i128;
}

impl DurationValue for Duration {
    fn whole_millis(&self) -> i128 {
        i128::try_from(self.as_millis()).unwrap_or(i128::MAX)
    }
}

impl DurationValue for TimeDelta {
    fn whole_millis(&self) -> i128 {
        i128::from(self.num_milliseconds())
    }
}

/// Formats a duration the way [`parse_std_duration`] reads it: `90d`, `36h`,
/// `1h30m`, `1m30s500ms`, `0s`. Weeks are never written ("14d" reads better
/// than "2w") and days only from two days on ("24h", "36h", "2d1h");
/// sub-millisecond parts are dropped. A negative `TimeDelta` (an error message
/// about one) gets a minus sign, which the grammar does not read back.
pub fn format_duration(duration: impl DurationValue) -> String {
    let millis = duration.whole_millis();
    let mut rest = millis.unsigned_abs();
    if rest == 0 {
        return "0s".to_string();
    }
    let mut out = if millis < 0 { "-".to_string() } else { String::new() };
    for (name, size) in &UNITS[1..] {
        let size = u128::from(*size);
        if *name == "d" && rest < 2 * size {
            continue;
        }
        if rest >= size {
            out.push_str(&format!("{}{name}", rest / size));
            rest %= size;
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
        Err(ScheduleError::LengthOutOfRange(format_duration(length)))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
        // What the configuration accepted before the grammars were one.
        assert_eq!(parse_duration("4 h").unwrap(), TimeDelta::hours(4));
        assert_eq!(parse_duration("2w").unwrap(), TimeDelta::days(14));
        assert_eq!(parse_duration("1s500ms").unwrap(), TimeDelta::milliseconds(1500));
        assert_eq!(parse_duration("1M30S").unwrap(), TimeDelta::seconds(90));
    }

    #[test]
    fn rejects_malformed_and_non_positive() {
        for bad in ["", "h", "4", "4x", "0s", "0h0m", "30m1h", "1h1h", "-4h", "1.5h", "99999999999999999999s", "9223372036854775807d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(parse_duration(" 0s ").unwrap_err(), ScheduleError::InvalidDuration(DurationError::NotPositive("0s".into())));
        assert_eq!(parse_duration("0s").unwrap_err().to_string(), "invalid duration: \"0s\" is not longer than zero");
        assert_eq!(
            parse_duration("4x").unwrap_err().to_string(),
            "invalid duration: \"4x\": unknown unit \"x\" (use ms, s, m, h, d or w)"
        );
    }

    #[test]
    fn window_length_bounds() {
        assert!(parse_window_length("1m").is_ok());
        assert!(parse_window_length("7d").is_ok());
        assert!(parse_window_length("59s").is_err());
        assert!(parse_window_length("7d1s").is_err());
        assert_eq!(parse_window_length("8d").unwrap_err().to_string(), "window length 8d is out of range (1m to 7d)");
        assert_eq!(parse_window_length("59s999ms").unwrap_err().to_string(), "window length 59s999ms is out of range (1m to 7d)");
        assert_eq!(check_window_length(TimeDelta::minutes(-90)).unwrap_err().to_string(), "window length -1h30m is out of range (1m to 7d)");
    }

    #[test]
    fn formats_like_it_parses() {
        assert_eq!(format_duration(TimeDelta::minutes(90)), "1h30m");
        assert_eq!(format_duration(TimeDelta::days(2)), "2d");
        // Days from two days on: 26 hours are "26h", as the configuration has always printed them.
        assert_eq!(format_duration(TimeDelta::seconds(93_784)), "26h3m4s");
        assert_eq!(format_duration(TimeDelta::seconds(2 * 86_400 + 93_784)), "3d2h3m4s");
        assert_eq!(format_duration(TimeDelta::milliseconds(-1500)), "-1s500ms");
        assert_eq!(format_duration(TimeDelta::nanoseconds(999_999)), "0s");
    }

    /// The configuration's grammar (units `ms` and `w`, spaces, zero) and its
    /// messages, which name the problem for `FILE:LINE: bad value for "KEY"`.
    #[test]
    fn durations() {
        const HOUR: u64 = 3600;
        const DAY: u64 = 24 * HOUR;
        let ok = [
            ("100ms", Duration::from_millis(100)),
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("24h", Duration::from_secs(DAY)),
            ("7d", Duration::from_secs(7 * DAY)),
            ("2w", Duration::from_secs(14 * DAY)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("10 s", Duration::from_secs(10)),
            ("1m30s500ms", Duration::from_millis(90_500)),
            (" 0s ", Duration::ZERO),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_std_duration(text), Ok(expected), "{text}");
        }
        for (text, words) in [
            ("", "empty"),
            ("10", "no unit"),
            ("1.5h", "fractions"),
            ("10 s 5", "no unit"),
            ("10sec", "unknown unit"),
            ("30m1h", "largest first"),
            ("1m1m", "largest first"),
            ("-5s", "not a duration"),
            ("h", "not a duration"),
            ("99999999999999999999s", "too long"),
            ("999999999999999w", "too long"),
        ] {
            let e = parse_std_duration(text).unwrap_err().to_string();
            assert!(e.contains(words), "{text}: {e}");
        }
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(DAY), "24h"),
            (Duration::from_secs(DAY + DAY / 2), "36h"),
            (Duration::from_secs(2 * DAY + HOUR), "2d1h"),
            (Duration::from_secs(90 * DAY), "90d"),
            (Duration::from_millis(90_500), "1m30s500ms"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_std_duration(text), Ok(d));
        }
    }

    #[test]
    fn the_longest_duration_is_a_time_delta() {
        let longest = format_duration(TimeDelta::MAX);
        assert_eq!(longest, "106751991167d7h12m55s807ms");
        assert_eq!(parse_duration(&longest).unwrap(), TimeDelta::milliseconds(i64::MAX));
        assert_eq!(
            parse_std_duration("106751991167d7h12m55s808ms"),
            Err(DurationError::TooLong("106751991167d7h12m55s808ms".into()))
        );
    }

    /// A duration spelled in parts: each unit at most once, largest first, in
    /// any case, with or without spaces; and its value, added up independently.
    fn spelled() -> impl Strategy<Value = (String, u64)> {
        let part = (0u64..10_000, any::<bool>(), any::<bool>(), any::<bool>());
        prop::collection::vec(prop::option::of(part), UNITS.len()).prop_filter_map("no part", |parts| {
            let mut text = String::new();
            let mut millis = 0;
            for ((name, size), part) in UNITS.iter().zip(parts) {
                let Some((n, upper, space_before_unit, space_after)) = part else { continue };
                let unit = if upper { name.to_ascii_uppercase() } else { name.to_string() };
                text.push_str(&format!("{n}{}{unit}{}", if space_before_unit { " " } else { "" }, if space_after { " " } else { "" }));
                millis += n * size;
            }
            (!text.is_empty()).then_some((text, millis))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Formatting then parsing gives the duration back, over the whole range.
        #[test]
        fn formatting_round_trips(millis in prop_oneof![0..=MAX_MILLIS, 0u64..100_000_000]) {
            let d = Duration::from_millis(millis);
            prop_assert_eq!(parse_std_duration(&format_duration(d)), Ok(d));
            if millis > 0 {
                let delta = TimeDelta::milliseconds(millis as i64);
                prop_assert_eq!(parse_duration(&format_duration(delta)), Ok(delta));
            }
        }

        /// Any spelling reads as the sum of its parts, and prints in the one canonical form.
        #[test]
        fn spellings_read_as_their_sum((text, millis) in spelled()) {
            let d = parse_std_duration(&text).unwrap();
            prop_assert_eq!(d, Duration::from_millis(millis), "{}", text);
            let canonical = format_duration(d);
            prop_assert_eq!(parse_std_duration(&canonical), Ok(d));
            prop_assert_eq!(format_duration(parse_std_duration(&canonical).unwrap()), canonical);
        }
    }
}
