//! Blackouts: periods in which no maintenance may run (a sale, a freeze, an
//! end-of-month batch). One-off ones are `[start, end)` intervals; recurring
//! ones are a cron expression read in the window's zone plus a length, expanded
//! here into one-off intervals over a range so the planner only sees intervals.

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::{format_duration, parse_timestamp, DurationError, ScheduleError};

/// A period `[start, end)` in which no maintenance may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Blackout {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Blackout {
    /// `[start, end)`; `None` if `end` is before `start` (an empty one is allowed).
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Option<Blackout> {
        (start <= end).then_some(Blackout { start, end })
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// Whether `[start, end)` conflicts with this blackout: `start < self.end && self.start < end`.
    #[inline]
    pub fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        start < self.end && self.start < end
    }
}

/// Reads `START/END`, two RFC 3339 time stamps.
impl FromStr for Blackout {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Blackout, ScheduleError> {
        let (start, end) = text.split_once('/').ok_or_else(|| ScheduleError::InvalidBlackout(text.to_string()))?;
        let (start, end) = (parse_timestamp(start)?, parse_timestamp(end)?);
        Blackout::new(start, end).ok_or_else(|| ScheduleError::BlackoutEndsBeforeStart(text.to_string()))
    }
}

/// A blackout that recurs: it starts at every time a cron expression (the
/// `cron` crate's syntax: seconds first, 6 or 7 fields, e.g. `0 0 18 * * Fri`)
/// matches in a given zone, and lasts `length`. Local times that a
/// spring-forward gap skips do not fire; ones a fall-back repeats fire twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurringBlackout {
    schedule: cron::Schedule,
    length: TimeDelta,
}

/// The most intervals one [`RecurringBlackout::expand`] may produce.
pub const MAX_EXPANDED_BLACKOUTS: usize = 100_000;

// The `cron` crate only knows years 1970 to 2100.
const CRON_FIRST_YEAR_START: i64 = 0; // 1970-01-01T00:00:00Z
const CRON_LAST_YEAR_END: i64 = 4_133_980_800; // 2101-01-01T00:00:00Z

impl RecurringBlackout {
    /// Parses the cron expression; `length` must be positive.
    pub fn new(cron_expression: &str, length: TimeDelta) -> Result<RecurringBlackout, ScheduleError> {
        let schedule = cron::Schedule::from_str(cron_expression).map_err(|e| ScheduleError::InvalidCron {
            expr: cron_expression.to_string(),
            reason: e.to_string(),
        })?;
        if length <= TimeDelta::zero() {
            return Err(DurationError::NotPositive(format_duration(length)).into());
        }
        Ok(RecurringBlackout { schedule, length })
    }

    pub fn cron_expression(&self) -> &str {
        self.schedule.source()
    }

    pub fn length(&self) -> TimeDelta {
        self.length
    }

    /// The blackouts (cron times in `zone`, each lasting the length) that
    /// overlap `[from, to)`, in order, appended to `out`. Fails rather than
    /// allocate without bound when there would be more than
    /// [`MAX_EXPANDED_BLACKOUTS`] of them.
    pub fn expand_into(&self, zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>, out: &mut Vec<Blackout>) -> Result<(), ScheduleError> {
        let (Some(first), Some(last)) = (DateTime::from_timestamp(CRON_FIRST_YEAR_START, 0), DateTime::from_timestamp(CRON_LAST_YEAR_END, 0)) else {
            return Ok(());
        };
        let to = to.min(last);
        // cron's `after` is exclusive: a start s overlaps [from, to) iff from - length < s < to.
        let Some(after) = from.checked_sub_signed(self.length) else { return Ok(()) };
        let after = after.max(first - TimeDelta::seconds(1));
        if after >= to {
            return Ok(());
        }
        let mut count = 0;
        for start in self.schedule.after(&after.with_timezone(&zone)) {
            let start = start.with_timezone(&Utc);
            if start >= to {
                break;
            }
            count += 1;
            if count > MAX_EXPANDED_BLACKOUTS {
                return Err(ScheduleError::TooManyBlackouts(self.cron_expression().to_string(), MAX_EXPANDED_BLACKOUTS));
            }
            let end = start.checked_add_signed(self.length).unwrap_or(DateTime::<Utc>::MAX_UTC);
            out.push(Blackout { start, end });
        }
        Ok(())
    }

    /// [`RecurringBlackout::expand_into`] into a new vector.
    pub fn expand(&self, zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<Blackout>, ScheduleError> {
        let mut out = Vec::new();
        self.expand_into(zone, from, to, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::format_timestamp;

    fn ts(text: &str) -> DateTime<Utc> {
        parse_timestamp(text).unwrap()
    }

    #[test]
    fn parses_intervals() {
        let b: Blackout = "2027-01-01T00:00:00Z/2027-01-05T00:00:00+01:00".parse().unwrap();
        assert_eq!((b.start(), b.end()), (ts("2027-01-01T00:00:00Z"), ts("2027-01-04T23:00:00Z")));
        assert!("2027-01-01T00:00:00Z/2027-01-01T00:00:00Z".parse::<Blackout>().is_ok());
        assert_eq!(
            "2027-01-05T00:00:00Z/2027-01-01T00:00:00Z".parse::<Blackout>().unwrap_err().to_string(),
            "blackout \"2027-01-05T00:00:00Z/2027-01-01T00:00:00Z\" ends before it starts"
        );
        assert!(matches!("2027-01-01T00:00:00Z".parse::<Blackout>(), Err(ScheduleError::InvalidBlackout(_))));
        assert!(matches!("2027-01-01T00:00:00Z/soon".parse::<Blackout>(), Err(ScheduleError::InvalidTimestamp(_))));
    }

    #[test]
    fn overlap_is_half_open() {
        let b = Blackout::new(ts("2027-01-01T10:00:00Z"), ts("2027-01-01T12:00:00Z")).unwrap();
        assert!(!b.overlaps(ts("2027-01-01T06:00:00Z"), ts("2027-01-01T10:00:00Z")));
        assert!(b.overlaps(ts("2027-01-01T06:00:00Z"), ts("2027-01-01T10:00:01Z")));
        assert!(!b.overlaps(ts("2027-01-01T12:00:00Z"), ts("2027-01-01T16:00:00Z")));
        assert!(b.overlaps(ts("2027-01-01T11:59:59Z"), ts("2027-01-01T16:00:00Z")));
    }

    #[test]
    fn expands_in_the_zone() {
        // Fridays 18:00 in Berlin for 60 hours, over two weeks of March 2027
        // (Berlin springs forward on 2027-03-28).
        let r = RecurringBlackout::new("0 0 18 * * Fri", TimeDelta::hours(60)).unwrap();
        let got: Vec<_> = r
            .expand(chrono_tz::Europe::Berlin, ts("2027-03-20T00:00:00Z"), ts("2027-04-03T00:00:00Z"))
            .unwrap()
            .iter()
            .map(|b| (format_timestamp(b.start()), format_timestamp(b.end())))
            .collect();
        assert_eq!(
            got,
            [
                // The one of the 19th still runs on the 20th.
                ("2027-03-19T17:00:00Z".to_string(), "2027-03-22T05:00:00Z".to_string()),
                ("2027-03-26T17:00:00Z".to_string(), "2027-03-29T05:00:00Z".to_string()),
                ("2027-04-02T16:00:00Z".to_string(), "2027-04-05T04:00:00Z".to_string()),
            ]
        );
    }

    #[test]
    fn bad_cron_and_floods() {
        assert!(matches!(RecurringBlackout::new("every friday", TimeDelta::hours(1)), Err(ScheduleError::InvalidCron { .. })));
        assert!(RecurringBlackout::new("0 0 18 * * Fri", TimeDelta::zero()).is_err());
        let every_second = RecurringBlackout::new("* * * * * *", TimeDelta::seconds(1)).unwrap();
        assert!(matches!(every_second.expand(Tz::UTC, ts("2027-01-01T00:00:00Z"), ts("2028-01-01T00:00:00Z")), Err(ScheduleError::TooManyBlackouts(..))));
        // Outside the cron crate's years: nothing, and no panic.
        assert!(every_second.expand(Tz::UTC, DateTime::<Utc>::MIN_UTC, ts("1969-12-31T00:00:00Z")).unwrap().is_empty());
        assert!(every_second.expand(Tz::UTC, ts("2200-01-01T00:00:00Z"), DateTime::<Utc>::MAX_UTC).unwrap().is_empty());
    }
}
