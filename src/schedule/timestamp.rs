//! Instants in and out: RFC 3339 on input (any offset), UTC with a `Z` at
//! seconds precision on output, so JSON is stable whatever the caller's zone.

use chrono::{DateTime, SecondsFormat, Utc};

use super::ScheduleError;

/// Parses an RFC 3339 time stamp (`2027-03-14T07:30:00Z`, `2027-03-14T03:30:00-04:00`).
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, ScheduleError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ScheduleError::InvalidTimestamp(text.to_string()))
}

/// A deadline: an RFC 3339 time stamp, or a duration from `now` (`3d`, `12h`).
pub fn parse_deadline(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ScheduleError> {
    match super::parse_duration(text) {
        Ok(duration) => now.checked_add_signed(duration).ok_or_else(|| ScheduleError::OutOfRange(text.to_string())),
        Err(_) => parse_timestamp(text),
    }
}

/// Formats an instant as UTC with a `Z`, seconds precision: `2027-03-14T07:30:00Z`.
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_prints_utc() {
        let t = parse_timestamp("2027-03-14T03:30:00-04:00").unwrap();
        assert_eq!(format_timestamp(t), "2027-03-14T07:30:00Z");
        assert_eq!(format_timestamp(parse_timestamp("2027-03-14T07:30:00.9Z").unwrap()), "2027-03-14T07:30:00Z");
        for bad in ["", "2027-03-14", "2027-03-14 07:30", "2027-13-01T00:00:00Z", "yesterday"] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn deadlines_are_time_stamps_or_durations_from_now() {
        let now = parse_timestamp("2027-03-14T07:30:00Z").unwrap();
        assert_eq!(format_timestamp(parse_deadline("3d", now).unwrap()), "2027-03-17T07:30:00Z");
        assert_eq!(format_timestamp(parse_deadline("2027-04-01T00:00:00+02:00", now).unwrap()), "2027-03-31T22:00:00Z");
        for bad in ["", "soon", "-3d", "2027-04-01"] {
            assert!(parse_deadline(bad, now).is_err(), "{bad:?} was accepted");
        }
    }
}
