//! The planner: given a window, a deadline, blackouts, the replacement's
//! readiness and `now`, when should a maintenance run? Pure and allocation
//! free, because the fleet-wide calendar calls it for every database.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};

use super::occurrence::next_occurrence_unchecked;
use super::{check_window_length, Blackout, Occurrence, ScheduleError, Window};


/// When a maintenance runs, and whether it had to be forced outside a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// When the maintenance starts.
    pub scheduled_for: DateTime<Utc>,
    /// The end of the window it runs in; `None` when forced.
    pub window_end: Option<DateTime<Utc>>,
    /// Why no window could be used; `None` when it runs in a window.
    pub forced: Option<ForcedReason>,
}

impl Plan {
    pub fn is_forced(&self) -> bool {
        self.forced.is_some()
    }
}

/// Why a maintenance is forced to run outside any window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForcedReason {
    /// No occurrence starting at or after max(now, ready) ends by the
    /// required-by time (this includes a required-by time already past).
    NoWindowBeforeDeadline,
    /// Some do, but every one of them overlaps a blackout.
    AllWindowsBlackedOut,
}

impl fmt::Display for ForcedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForcedReason::NoWindowBeforeDeadline => "no maintenance window between now and the required-by time ends before it",
            ForcedReason::AllWindowsBlackedOut => "every window before the required-by time overlaps a blackout",
        })
    }
}

/// Plans one maintenance.
///
/// With t0 = max(`now`, `ready_at`), the result is the earliest occurrence of
/// `window` that starts at or after t0, ends at or before `required_by` and
/// overlaps no blackout (`[start, end)` against `[b.start, b.end)`). If there
/// is none, the run is forced: it starts at max(t0, `required_by` - `length`),
/// so that it finishes by the deadline when that is still possible.
///
/// Blackouts may come in any order and may overlap. The only error is a
/// `length` outside 1 minute ..= 7 days.
pub fn plan(
    window: &Window,
    length: TimeDelta,
    required_by: DateTime<Utc>,
    now: DateTime<Utc>,
    ready_at: Option<DateTime<Utc>>,
    blackouts: &[Blackout],
) -> Result<Plan, ScheduleError> {
    check_window_length(length)?;
    let t0 = match ready_at {
        Some(ready) if ready > now => ready,
        _ => now,
    };
    let mut after = t0;
    let mut any_fits = false;
    // Each turn either returns or moves `after` past the end of a blackout
    // that the occurrence overlapped, which no later occurrence can overlap:
    // at most blackouts.len() + 1 turns.
    while let Some(occ) = next_occurrence_unchecked(window, length, after) {
        if occ.end > required_by {
            break;
        }
        any_fits = true;
        match latest_conflicting_end(&occ, blackouts) {
            None => return Ok(Plan { scheduled_for: occ.start, window_end: Some(occ.end), forced: None }),
            // Every occurrence starting before that end overlaps that blackout
            // too (it starts later, so it ends later), so jump past it.
            Some(end) => after = end,
        }
    }
    let latest_start = required_by.checked_sub_signed(length).unwrap_or(DateTime::<Utc>::MIN_UTC);
    Ok(Plan {
        scheduled_for: latest_start.max(t0),
        window_end: None,
        forced: Some(if any_fits { ForcedReason::AllWindowsBlackedOut } else { ForcedReason::NoWindowBeforeDeadline }),
    })
}

/// The latest end among the blackouts that overlap `occ`, if any.
#[inline]
fn latest_conflicting_end(occ: &Occurrence, blackouts: &[Blackout]) -> Option<DateTime<Utc>> {
    if blackouts.len() > LINEAR_SCAN_MAX && is_normalized(blackouts) {
        // Sorted and disjoint: starts and ends both ascend, so the blackouts
        // overlapping `occ` are a contiguous run found by two binary searches.
        let first = blackouts.partition_point(|b| b.end() <= occ.start);
        let past = blackouts.partition_point(|b| b.start() < occ.end);
        return (first < past).then(|| blackouts[past - 1].end());
    }
    let mut latest: Option<DateTime<Utc>> = None;
    for b in blackouts {
        if b.overlaps(occ.start, occ.end) && !matches!(latest, Some(l) if l >= b.end()) {
            latest = Some(b.end());
        }
    }
    latest
}

/// Up to this many blackouts are scanned one by one (the common case: a few).
const LINEAR_SCAN_MAX: usize = 16;

/// Whether the blackouts are in order and do not overlap, as
/// [`normalize_blackouts`] leaves them.
fn is_normalized(blackouts: &[Blackout]) -> bool {
    blackouts.windows(2).all(|pair| pair[0].end() <= pair[1].start())
}

/// Sorts blackouts and merges the ones that overlap or touch. The planner
/// gives the same answers either way, but with many blackouts (a recurring
/// one expanded over months) it then finds conflicts by binary search
/// instead of scanning them all for every candidate occurrence.
pub fn normalize_blackouts(blackouts: &mut Vec<Blackout>) {
    blackouts.sort_unstable();
    let mut merged: usize = 0;
    for i in 0..blackouts.len() {
        let current = blackouts[i];
        if merged > 0 && current.start() <= blackouts[merged - 1].end() {
            let last = &mut blackouts[merged - 1];
            if current.end() > last.end() {
                *last = Blackout::new(last.start(), current.end()).unwrap_or(*last);
            }
        } else {
            blackouts[merged] = current;
            merged += 1;
        }
    }
    blackouts.truncate(merged);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{format_timestamp, parse_timestamp};

    fn ts(text: &str) -> DateTime<Utc> {
        parse_timestamp(text).unwrap()
    }

    fn b(text: &str) -> Blackout {
        text.parse().unwrap()
    }

    fn run(window: &str, required_by: &str, now: &str, ready: Option<&str>, blackouts: &[Blackout]) -> Plan {
        plan(&window.parse().unwrap(), TimeDelta::hours(4), ts(required_by), ts(now), ready.map(ts), blackouts).unwrap()
    }

    #[test]
    fn first_window_when_free() {
        let p = run("Sunday 02:30 America/New_York", "2027-04-01T00:00:00Z", "2027-03-10T00:00:00Z", None, &[]);
        assert_eq!(format_timestamp(p.scheduled_for), "2027-03-14T07:30:00Z");
        assert_eq!(p.window_end.map(format_timestamp).as_deref(), Some("2027-03-14T11:30:00Z"));
        assert!(!p.is_forced());
    }

    #[test]
    fn window_ending_exactly_at_the_deadline_counts() {
        let p = run("Sunday 10:00", "2027-03-14T14:00:00Z", "2027-03-14T10:00:00Z", None, &[]);
        assert_eq!(format_timestamp(p.scheduled_for), "2027-03-14T10:00:00Z");
        let p = run("Sunday 10:00", "2027-03-14T13:59:59Z", "2027-03-14T10:00:00Z", None, &[]);
        assert_eq!(p.forced, Some(ForcedReason::NoWindowBeforeDeadline));
        assert_eq!(format_timestamp(p.scheduled_for), "2027-03-14T10:00:00Z");
    }

    #[test]
    fn ready_at_delays_the_start() {
        let p = run("Sunday 10:00", "2027-04-01T00:00:00Z", "2027-03-01T00:00:00Z", Some("2027-03-14T10:00:01Z"), &[]);
        assert_eq!(format_timestamp(p.scheduled_for), "2027-03-21T10:00:00Z");
        // A readiness in the past changes nothing.
        let p = run("Sunday 10:00", "2027-04-01T00:00:00Z", "2027-03-10T00:00:00Z", Some("2027-01-01T00:00:00Z"), &[]);
        assert_eq!(format_timestamp(p.scheduled_for), "2027-03-14T10:00:00Z");
    }

    #[test]
    fn blackouts_push_to_a_later_window() {
        let blackouts = [b("2027-03-20T00:00:00Z/2027-03-21T10:00:01Z"), b("2027-03-14T13:59:59Z/2027-03-15T00:00:00Z")];
        let p = run("Sunday 10:00", "2027-04-01T00:00:00Z", "2027-03-10T00:00:00Z", None, &blackouts);
        assert_eq!(format_timestamp(p.scheduled_for), "2027-03-28T10:00:00Z");
        // A blackout that ends exactly when the window starts, or starts when it ends, is no conflict.
        let blackouts = [b("2027-03-14T06:00:00Z/2027-03-14T10:00:00Z"), b("2027-03-14T14:00:00Z/2027-03-14T20:00:00Z")];
        let p = run("Sunday 10:00", "2027-04-01T00:00:00Z", "2027-03-10T00:00:00Z", None, &blackouts);
        assert_eq!(format_timestamp(p.scheduled_for), "2027-03-14T10:00:00Z");
    }

    #[test]
    fn forced_because_every_window_is_blacked_out() {
        let blackouts = [b("2027-03-01T00:00:00Z/2027-04-01T00:00:00Z")];
        let p = run("Sunday 10:00", "2027-03-30T00:00:00Z", "2027-03-10T00:00:00Z", None, &blackouts);
        assert_eq!(p.forced, Some(ForcedReason::AllWindowsBlackedOut));
        assert_eq!(p.window_end, None);
        assert_eq!(format_timestamp(p.scheduled_for), "2027-03-29T20:00:00Z");
        assert_eq!(p.forced.unwrap().to_string(), "every window before the required-by time overlaps a blackout");
    }

    #[test]
    fn forced_because_no_window_ends_in_time() {
        let p = run("Sunday 10:00", "2027-03-13T00:00:00Z", "2027-03-10T00:00:00Z", None, &[]);
        assert_eq!(p.forced, Some(ForcedReason::NoWindowBeforeDeadline));
        assert_eq!(format_timestamp(p.scheduled_for), "2027-03-12T20:00:00Z");
        assert_eq!(p.forced.unwrap().to_string(), "no maintenance window between now and the required-by time ends before it");
        // Too late to finish in time: run now.
        let p = run("Sunday 10:00", "2027-03-10T02:00:00Z", "2027-03-10T00:00:00Z", None, &[]);
        assert_eq!(format_timestamp(p.scheduled_for), "2027-03-10T00:00:00Z");
        // A deadline already past is allowed and forces a run now.
        let p = run("Sunday 10:00", "2027-01-01T00:00:00Z", "2027-03-10T00:00:00Z", None, &[]);
        assert_eq!((p.forced, format_timestamp(p.scheduled_for)), (Some(ForcedReason::NoWindowBeforeDeadline), "2027-03-10T00:00:00Z".to_string()));
    }

    #[test]
    fn rejects_bad_lengths() {
        let window: Window = "Sunday 10:00".parse().unwrap();
        let now = ts("2027-03-10T00:00:00Z");
        assert!(plan(&window, TimeDelta::seconds(59), now, now, None, &[]).is_err());
        assert!(plan(&window, TimeDelta::days(8), now, now, None, &[]).is_err());
        assert!(plan(&window, TimeDelta::MAX, DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC, None, &[]).is_err());
    }

    #[test]
    fn extreme_instants() {
        let window: Window = "Sunday 10:00 Pacific/Kiritimati".parse().unwrap();
        let (min, max) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        for (rb, now) in [(min, min), (max, max), (min, max), (max, min)] {
            let p = plan(&window, TimeDelta::days(7), rb, now, Some(max), &[Blackout::new(min, max).unwrap()]).unwrap();
            assert!(p.is_forced());
        }
    }
}
