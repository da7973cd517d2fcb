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
}
