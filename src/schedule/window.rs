//! A maintenance window as an owner states it (`Sunday 14:30 Europe/Berlin`):
//! a weekday, a wall-clock start and an IANA zone. Parsing and printing live
//! here; when a window actually occurs is `occurrence`'s business.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveTime, TimeDelta, Timelike, Weekday};
use chrono_tz::Tz;

use super::ScheduleError;

/// A weekly maintenance window: every `day` at `start` (wall clock) in `zone`.
/// Its length is a separate input (see [`super::DEFAULT_WINDOW_LENGTH`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    day: Weekday,
    start: NaiveTime,
    zone: Tz,
}

const DAY_NAMES: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const DAY_DISPLAY: [&str; 7] = ["Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays"];

impl Window {
    /// A window starting at `hour:minute` (00:00 to 23:59); `None` if out of range.
    pub fn new(day: Weekday, hour: u32, minute: u32, zone: Tz) -> Option<Window> {
        let start = NaiveTime::from_hms_opt(hour, minute, 0).filter(|_| hour < 24 && minute < 60)?;
        Some(Window { day, start, zone })
    }

    /// The weekday, in the window's zone.
    pub fn day(&self) -> Weekday {
        self.day
    }

    /// The wall-clock start (whole minutes).
    pub fn start(&self) -> NaiveTime {
        self.start
    }

    /// The IANA zone the day and start are read in.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Prints the window with its length: `Sundays 14:30 to 18:30 UTC`. The end
    /// is the start plus the length on the wall clock, modulo 24 hours.
    pub fn describe(&self, length: TimeDelta) -> Described {
        Described { window: *self, length }
    }
}

/// [`Window::describe`]'s result: a window and its length, ready to print.
#[derive(Debug, Clone, Copy)]
pub struct Described {
    window: Window,
    length: TimeDelta,
}

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let start = i64::from(self.window.start.num_seconds_from_midnight() / 60);
        let end = (start + self.length.num_minutes().rem_euclid(24 * 60)).rem_euclid(24 * 60);
        write!(
            f,
            "{} {:02}:{:02} to {:02}:{:02} {}",
            DAY_DISPLAY[self.window.day.num_days_from_monday() as usize],
            start / 60,
            start % 60,
            end / 60,
            end % 60,
            self.window.zone.name()
        )
    }
}

/// Prints the parseable form, `Sundays 14:30 America/New_York`.
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:02}:{:02} {}",
            DAY_DISPLAY[self.day.num_days_from_monday() as usize],
            self.start.hour(),
            self.start.minute(),
            self.zone.name()
        )
    }
}

/// Reads `<day> <HH:MM> [<IANA zone>]`, e.g. `Sunday 14:30`, `sundays 9:05 asia/tokyo`.
impl FromStr for Window {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Window, ScheduleError> {
        let mut words = text.split_whitespace();
        let day = parse_day(words.next().ok_or(ScheduleError::EmptyWindow)?)?;
        let time = words.next().ok_or_else(|| ScheduleError::MissingTime(text.trim().to_string()))?;
        let (hour, minute) = parse_hh_mm(time)?;
        let zone = match words.next() {
            Some(name) => parse_zone(name)?,
            None => Tz::UTC,
        };
        if let Some(extra) = words.next() {
            return Err(ScheduleError::TrailingWords(extra.to_string()));
        }
        Window::new(day, hour, minute, zone).ok_or_else(|| ScheduleError::InvalidTime(time.to_string()))
    }
}

/// An English weekday, case-insensitive: `Sunday`, `sundays`, `Sun`, `SUN`.
pub fn parse_day(word: &str) -> Result<Weekday, ScheduleError> {
    let lower = word.to_ascii_lowercase();
    let singular = lower.strip_suffix('s').filter(|s| s.ends_with("day")).unwrap_or(&lower);
    DAY_NAMES
        .iter()
        .position(|name| *name == singular || (lower.len() == 3 && name.starts_with(lower.as_str())))
        .and_then(|i| Weekday::try_from(i as u8).ok())
        .ok_or_else(|| ScheduleError::UnknownDay(word.to_string()))
}

/// `HH:MM` or `H:MM`, 00:00 to 23:59, minutes always two digits.
fn parse_hh_mm(word: &str) -> Result<(u32, u32), ScheduleError> {
    let bad = || ScheduleError::InvalidTime(word.to_string());
    let (h, m) = word.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return Err(bad());
    }
    let (hour, minute): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if hour > 23 || minute > 59 {
        return Err(bad());
    }
    Ok((hour, minute))
}

/// An IANA zone name, case-insensitive (`europe/berlin`), as chrono-tz names it.
///
/// This is what `Tz::from_str_insensitive` does; that function sits behind
/// chrono-tz's `case-insensitive` feature (a build script and two more crates),
/// so the exact lookup is tried first and then the ~600 names are compared
/// ASCII-case-insensitively, which only happens while parsing input.
pub fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .copied()
        .find(|tz| tz.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| ScheduleError::UnknownZone(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str) -> Window {
        text.parse().unwrap()
    }

    #[test]
    fn day_forms() {
        for text in ["Sunday", "sundays", "Sun", "SUN", "SUNDAYS", "sUnDaY"] {
            assert_eq!(parse_day(text).unwrap(), Weekday::Sun, "{text}");
        }
        assert_eq!(parse_day("wed").unwrap(), Weekday::Wed);
        assert_eq!(parse_day("Thursdays").unwrap(), Weekday::Thu);
        for bad in ["Sundy", "Su", "Sunn", "Suns", "Tues", "day", "days", "", "Sundayss", "s"] {
            assert_eq!(parse_day(bad).unwrap_err(), ScheduleError::UnknownDay(bad.to_string()), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(w("Sunday 9:05").start(), NaiveTime::from_hms_opt(9, 5, 0).unwrap());
        assert_eq!(w("Sunday 09:05").start(), NaiveTime::from_hms_opt(9, 5, 0).unwrap());
        assert_eq!(w("Sunday 00:00").start(), NaiveTime::MIN);
        assert_eq!(w("Sunday 23:59").start(), NaiveTime::from_hms_opt(23, 59, 0).unwrap());
        for bad in ["24:00", "9:5", "009:05", "12:60", "12", "12:00:00", "+9:05", "-1:00", "a:bc", ":30", "12:"] {
            let text = format!("Sunday {bad}");
            assert_eq!(text.parse::<Window>().unwrap_err(), ScheduleError::InvalidTime(bad.to_string()), "{bad}");
        }
        assert_eq!("Sunday 24:00".parse::<Window>().unwrap_err().to_string(), "invalid time \"24:00\"");
    }

    #[test]
    fn zones() {
        assert_eq!(w("Sunday 14:30").zone(), Tz::UTC);
        assert_eq!(w("Sunday 14:30 america/new_york").zone(), Tz::America__New_York);
        assert_eq!(w("Sunday 14:30 ASIA/TOKYO").zone().name(), "Asia/Tokyo");
        assert_eq!(w("Sunday 14:30 utc").zone().name(), "UTC");
        assert_eq!("Sunday 14:30 Mars/Base".parse::<Window>().unwrap_err().to_string(), "unknown time zone \"Mars/Base\"");
        assert_eq!("Sundy 14:30".parse::<Window>().unwrap_err().to_string(), "unknown day \"Sundy\"");
        assert!(matches!("Sunday".parse::<Window>(), Err(ScheduleError::MissingTime(_))));
        assert!(matches!("   ".parse::<Window>(), Err(ScheduleError::EmptyWindow)));
        assert!(matches!("Sunday 14:30 UTC extra".parse::<Window>(), Err(ScheduleError::TrailingWords(_))));
    }

    #[test]
    fn display() {
        assert_eq!(w("Sunday 14:30").describe(TimeDelta::hours(4)).to_string(), "Sundays 14:30 to 18:30 UTC");
        assert_eq!(w("sun 22:00").describe(TimeDelta::hours(4)).to_string(), "Sundays 22:00 to 02:00 UTC");
        assert_eq!(w("Tuesday 9:05 Asia/Kathmandu").describe(TimeDelta::minutes(90)).to_string(), "Tuesdays 09:05 to 10:35 Asia/Kathmandu");
        assert_eq!(w("Fri 23:59").describe(TimeDelta::days(7)).to_string(), "Fridays 23:59 to 23:59 UTC");
        assert_eq!(w("Sunday 2:30 america/new_york").to_string(), "Sundays 02:30 America/New_York");
    }
}
