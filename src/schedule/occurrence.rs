//! When a window actually happens. A window is a wall-clock promise, so this is
//! where daylight-saving time is dealt with, once, for everyone:
//!
//! The occurrence of a window on a local date starts at the local start time
//! read with the UTC offset in force just before any transition at that time
//! (Python's zoneinfo with `fold=0`, Java's `ZonedDateTime.of`): a start inside
//! a spring-forward gap lands the gap's length later on the wall clock, an
//! ambiguous fall-back start takes the earlier instant. It then lasts its
//! length in real time.

use chrono::offset::LocalResult;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

use super::{check_window_length, format_timestamp, ScheduleError, Window};

/// One occurrence of a window: `[start, end)`, `end - start` being the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Occurrence {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The start of the window's occurrence on the local date `date` (whatever its
/// weekday), or `None` if that instant is outside chrono's range.
pub fn start_on(window: &Window, date: NaiveDate) -> Option<DateTime<Utc>> {
    local_start(window.zone(), date.and_time(window.start()))
}

/// Reads a local wall-clock time in `zone` with the offset in force just before
/// any transition at that time.
fn local_start(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let offset = match zone.offset_from_local_datetime(&local) {
        LocalResult::Single(offset) => offset.fix(),
        // chrono-tz lists the span before the transition first.
        LocalResult::Ambiguous(before, _) => before.fix(),
        // In a gap: the offset of the last instant before it.
        LocalResult::None => GapInfo::new(&local, &zone)?.begin?.1.fix(),
    };
    Some(local.checked_sub_offset(offset)?.and_utc())
}

/// The earliest occurrence of `window` whose start is at or after `after`
/// (an occurrence starting exactly at `after` counts). `length` must be
/// between 1 minute and 7 days.
pub fn next_occurrence(window: &Window, length: TimeDelta, after: DateTime<Utc>) -> Result<Occurrence, ScheduleError> {
    check_window_length(length)?;
    next_occurrence_unchecked(window, length, after).ok_or_else(|| ScheduleError::OutOfRange(format_timestamp(after)))
}

/// [`next_occurrence`] for a length already checked; `None` when the
/// occurrence would lie beyond chrono's range.
pub(crate) fn next_occurrence_unchecked(window: &Window, length: TimeDelta, after: DateTime<Utc>) -> Option<Occurrence> {
    let zone = window.zone();
    let offset = zone.offset_from_utc_datetime(&after.naive_utc()).fix();
    let today = match after.naive_utc().checked_add_offset(offset) {
        Some(local) => local.date(),
        // Near the lower end of chrono's range a negative offset underflows.
        None if offset.local_minus_utc() < 0 => NaiveDate::MIN,
        None => return None,
    };
    // A start in a gap moves later on the wall clock by at most a day or so
    // (Pacific/Apia skipped 2011-12-30 entirely), and offsets differ by less
    // than two days, so the occurrence two days before the local date of
    // `after` is always early enough to begin with, and the one a week later
    // always late enough: at most two candidates are computed.
    let first = today.checked_sub_days(chrono::Days::new(2)).unwrap_or(NaiveDate::MIN);
    let ahead = (7 + window.day().num_days_from_monday() - first.weekday().num_days_from_monday()) % 7;
    let mut date = first.checked_add_days(chrono::Days::new(u64::from(ahead)))?;
    for _ in 0..3 {
        // Unrepresentable starts can only be below the range here, since the
        // dates start two days before `after`; those are too early anyway.
        if let Some(start) = start_on(window, date) {
            if start >= after {
                return Some(Occurrence { start, end: start.checked_add_signed(length)? });
            }
        }
        date = date.checked_add_days(chrono::Days::new(7))?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::parse_timestamp;

    fn next(window: &str, after: &str) -> (String, String) {
        let occ = next_occurrence(&window.parse().unwrap(), TimeDelta::hours(4), parse_timestamp(after).unwrap()).unwrap();
        (format_timestamp(occ.start), format_timestamp(occ.end))
    }

    #[test]
    fn new_york_spring_forward_gap() {
        // 02:30 does not exist on 2027-03-14 in New York: read with EST (-5),
        // it is 07:30Z, i.e. 03:30 EDT.
        assert_eq!(next("Sunday 02:30 America/New_York", "2027-03-10T00:00:00Z"), ("2027-03-14T07:30:00Z".into(), "2027-03-14T11:30:00Z".into()));
    }

    #[test]
    fn new_york_fall_back_takes_the_earlier_instant() {
        // 01:30 happens twice on 2026-11-01: first in EDT (05:30Z), then EST (06:30Z).
        assert_eq!(next("Sunday 01:30 America/New_York", "2026-10-30T00:00:00Z"), ("2026-11-01T05:30:00Z".into(), "2026-11-01T09:30:00Z".into()));
        // After the first 01:30 has passed, the second one is not an occurrence.
        assert_eq!(next("Sunday 01:30 America/New_York", "2026-11-01T05:30:01Z").0, "2026-11-08T06:30:00Z");
    }

    #[test]
    fn fall_back_window_lasts_its_length_in_real_time() {
        // 01:00 EDT = 05:00Z; 4 real hours later is 09:00Z, 04:00 EST on the wall
        // clock (not 05:00: the hour between 01:00 and 02:00 happens twice).
        let (start, end) = next("Sunday 01:00 America/New_York", "2026-10-31T00:00:00Z");
        assert_eq!((start.as_str(), end.as_str()), ("2026-11-01T05:00:00Z", "2026-11-01T09:00:00Z"));
    }

    #[test]
    fn start_equal_to_after_counts() {
        assert_eq!(next("Sunday 07:30", "2027-03-14T07:30:00Z").0, "2027-03-14T07:30:00Z");
        assert_eq!(next("Sunday 07:30", "2027-03-14T07:30:01Z").0, "2027-03-21T07:30:00Z");
    }

    #[test]
    fn london_sydney_lord_howe() {
        // London springs forward at 01:00 GMT on 2027-03-28: 01:30 reads as GMT.
        assert_eq!(next("Sunday 01:30 Europe/London", "2027-03-27T00:00:00Z").0, "2027-03-28T01:30:00Z");
        // London falls back at 02:00 BST on 2027-10-31: 01:30 BST is 00:30Z.
        assert_eq!(next("Sunday 01:30 Europe/London", "2027-10-30T00:00:00Z").0, "2027-10-31T00:30:00Z");
        // Sydney springs forward on 2027-10-03 at 02:00 AEST: 02:30 reads as +10.
        assert_eq!(next("Sunday 02:30 Australia/Sydney", "2027-10-01T00:00:00Z").0, "2027-10-02T16:30:00Z");
        // Sydney falls back on 2027-04-04 at 03:00 AEDT: 02:30 takes AEDT (+11).
        assert_eq!(next("Sunday 02:30 Australia/Sydney", "2027-04-01T00:00:00Z").0, "2027-04-03T15:30:00Z");
        // Lord Howe moves 30 minutes: forward at 02:00 (+10:30 -> +11) on 2027-10-03,
        // back at 02:00 (+11 -> +10:30) on 2027-04-04.
        assert_eq!(next("Sunday 02:15 Australia/Lord_Howe", "2027-10-01T00:00:00Z").0, "2027-10-02T15:45:00Z");
        assert_eq!(next("Sunday 01:45 Australia/Lord_Howe", "2027-04-01T00:00:00Z").0, "2027-04-03T14:45:00Z");
    }

    #[test]
    fn apia_skipped_friday() {
        // Samoa skipped Friday 2011-12-30: 09:00 that day reads with -10 (DST),
        // i.e. 19:00Z, 09:00 on Saturday the 31st on the wall clock.
        assert_eq!(next("Friday 09:00 Pacific/Apia", "2011-12-25T00:00:00Z").0, "2011-12-30T19:00:00Z");
        assert_eq!(next("Friday 09:00 Pacific/Apia", "2011-12-30T19:00:01Z").0, "2012-01-05T19:00:00Z");
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let window: Window = "Sunday 23:59 Pacific/Kiritimati".parse().unwrap();
        assert!(next_occurrence(&window, TimeDelta::hours(4), DateTime::<Utc>::MAX_UTC).is_err());
        assert!(next_occurrence(&window, TimeDelta::hours(4), DateTime::<Utc>::MIN_UTC).is_ok());
        assert!(next_occurrence(&window, TimeDelta::zero(), DateTime::<Utc>::MIN_UTC).is_err());
    }
}
