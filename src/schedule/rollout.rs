//! Planning a rollout: when each wave's databases would run, given their
//! windows, blackouts, the bake time and the deadline. Pure, like the planner
//! it calls for every database; `rollout plan` and `bench rollout-plan` are
//! thin callers, and the engine advances rollouts by the same rule:
//!
//! - the first wave is ready now (or already under way);
//! - a database's maintenance is planned as any other ([`plan()`]), starting
//!   no earlier than its wave is ready;
//! - a wave ends when the last of its maintenances does, counted as ending
//!   when it starts for those not finished yet (a restart or switchover takes
//!   seconds to minutes, a bake is meant to be much longer);
//! - the next wave is ready `bake` after the wave before it ends (if that is
//!   past, its maintenances are planned from now).

use chrono::{DateTime, TimeDelta, Utc};

use super::{plan, Blackout, ScheduleError, Window};

/// What is known of a database's maintenance in the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Not required yet (or held): it is planned.
    Nothing,
    /// Required and planned (or running): it starts then.
    Scheduled { at: DateTime<Utc>, forced: bool },
    /// Finished then (completed, failed or cancelled).
    Finished(DateTime<Utc>),
}

/// One database of a wave.
#[derive(Debug, Clone, Copy)]
pub struct WaveMember<'a> {
    pub window: &'a Window,
    pub length: TimeDelta,
    pub blackouts: &'a [Blackout],
    pub known: Known,
}

/// When one database's maintenance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberPlan {
    pub start: DateTime<Utc>,
    /// Outside the database's window (no window fits before the deadline).
    pub forced: bool,
    /// Already finished (`start` is when it finished).
    pub finished: bool,
}

/// When a wave is ready, when each of its databases runs, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavePlan {
    pub ready_at: DateTime<Utc>,
    pub members: Vec<MemberPlan>,
    pub ends_at: DateTime<Utc>,
}

/// Plans every wave in order (see the module's rules). The only error is a
/// window length the planner refuses.
pub fn plan_rollout(waves: &[Vec<WaveMember<'_>>], bake: TimeDelta, required_by: DateTime<Utc>, now: DateTime<Utc>) -> Result<Vec<WavePlan>, ScheduleError> {
    let mut plans = Vec::with_capacity(waves.len());
    let mut ready_at = now;
    for wave in waves {
        let mut members = Vec::with_capacity(wave.len());
        let mut ends_at: Option<DateTime<Utc>> = None;
        for member in wave {
            let planned = match member.known {
                Known::Finished(at) => MemberPlan { start: at, forced: false, finished: true },
                Known::Scheduled { at, forced } => MemberPlan { start: at, forced, finished: false },
                Known::Nothing => {
                    let p = plan(member.window, member.length, required_by, ready_at.max(now), None, member.blackouts)?;
                    MemberPlan { start: p.scheduled_for, forced: p.is_forced(), finished: false }
                }
            };
            ends_at = ends_at.max(Some(planned.start));
            members.push(planned);
        }
        let ends_at = ends_at.unwrap_or(ready_at);
        plans.push(WavePlan { ready_at, members, ends_at });
        ready_at = ends_at.checked_add_signed(bake).unwrap_or(DateTime::<Utc>::MAX_UTC);
    }
    Ok(plans)
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;
    use chrono_tz::Tz;
    use proptest::prelude::*;

    use super::*;
    use crate::schedule::{next_occurrence, parse_timestamp};

    fn ts(text: &str) -> DateTime<Utc> {
        parse_timestamp(text).unwrap()
    }

    #[test]
    fn the_second_wave_waits_for_the_bake_then_its_window() {
        let daily: Vec<Window> = ["Monday 10:00", "Tuesday 10:00", "Wednesday 10:00"].iter().map(|w| w.parse().unwrap()).collect();
        let member = |window| WaveMember { window, length: TimeDelta::hours(4), blackouts: &[], known: Known::Nothing };
        let waves = vec![vec![member(&daily[0])], vec![member(&daily[1]), member(&daily[2])]];
        // Monday 2027-03-01: the canary on Monday 10:00; a 30h bake ends Tuesday 16:00,
        // after Tuesday's window started: next Tuesday; Wednesday's is free.
        let plans = plan_rollout(&waves, TimeDelta::hours(30), ts("2027-04-01T00:00:00Z"), ts("2027-03-01T00:00:00Z")).unwrap();
        assert_eq!(plans[0].members[0].start, ts("2027-03-01T10:00:00Z"));
        assert_eq!(plans[1].ready_at, ts("2027-03-02T16:00:00Z"));
        assert_eq!(plans[1].members[0].start, ts("2027-03-09T10:00:00Z"));
        assert_eq!(plans[1].members[1].start, ts("2027-03-03T10:00:00Z"));
        assert_eq!(plans[1].ends_at, ts("2027-03-09T10:00:00Z"));
    }

    #[test]
    fn what_is_known_is_kept() {
        let window: Window = "Sunday 02:00".parse().unwrap();
        let finished = WaveMember { window: &window, length: TimeDelta::hours(4), blackouts: &[], known: Known::Finished(ts("2027-03-01T12:00:00Z")) };
        let forced = WaveMember { known: Known::Nothing, ..finished };
        // The deadline leaves no window: forced at the latest start, or at once when the wave is ready after that.
        let plans = plan_rollout(&[vec![finished], vec![forced]], TimeDelta::minutes(20), ts("2027-03-02T00:00:00Z"), ts("2027-03-01T12:05:00Z")).unwrap();
        assert!(plans[0].members[0].finished);
        assert_eq!(plans[1].ready_at, ts("2027-03-01T12:20:00Z"));
        assert_eq!(plans[1].members[0], MemberPlan { start: ts("2027-03-01T20:00:00Z"), forced: true, finished: false });
        let late = plan_rollout(&[vec![finished], vec![forced]], TimeDelta::hours(24), ts("2027-03-02T00:00:00Z"), ts("2027-03-01T12:05:00Z")).unwrap();
        assert_eq!(late[1].members[0].start, ts("2027-03-02T12:00:00Z"), "the bake wins over the deadline");
    }

    fn window_strategy() -> impl Strategy<Value = Window> {
        (0u8..7, 0u32..24, 0u32..60, prop::sample::select(vec![Tz::UTC, Tz::Europe__Paris, Tz::America__New_York, Tz::Asia__Kolkata]))
            .prop_map(|(day, h, m, tz)| Window::new(Weekday::try_from(day).unwrap(), h, m, tz).unwrap())
    }

    proptest! {
        /// Every wave is ready `bake` after the one before ends; every database
        /// runs when the one-database planner says for its wave's ready time, so
        /// never before; a wave ends with its last start.
        #[test]
        fn waves_follow_the_bake_and_the_planner(
            windows in prop::collection::vec(window_strategy(), 1..40),
            cuts in prop::collection::vec(1usize..10, 1..6),
            bake_minutes in 0i64..20_000,
            horizon_days in 0i64..120,
            now_secs in 1_790_000_000i64..1_900_000_000,
        ) {
            let now = DateTime::from_timestamp(now_secs, 0).unwrap();
            let required_by = now + TimeDelta::days(horizon_days);
            let bake = TimeDelta::minutes(bake_minutes);
            let mut waves: Vec<Vec<WaveMember<'_>>> = Vec::new();
            let mut rest = &windows[..];
            for cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
                if rest.is_empty() { break; }
                let (wave, tail) = rest.split_at((*cut).min(rest.len()));
                waves.push(wave.iter().map(|window| WaveMember { window, length: TimeDelta::hours(4), blackouts: &[], known: Known::Nothing }).collect());
                rest = tail;
            }
            let plans = plan_rollout(&waves, bake, required_by, now).unwrap();
            prop_assert_eq!(plans.len(), waves.len());
            prop_assert_eq!(plans[0].ready_at, now);
            for (i, (wave, planned)) in waves.iter().zip(&plans).enumerate() {
                if i > 0 {
                    prop_assert_eq!(planned.ready_at, plans[i - 1].ends_at + bake);
                }
                for (member, p) in wave.iter().zip(&planned.members) {
                    let alone = plan(member.window, member.length, required_by, planned.ready_at.max(now), None, &[]).unwrap();
                    prop_assert_eq!(p.start, alone.scheduled_for);
                    prop_assert!(p.start >= planned.ready_at);
                    if !p.forced {
                        let occurrence = next_occurrence(member.window, member.length, p.start).unwrap();
                        prop_assert_eq!(occurrence.start, p.start, "a planned start is a window's start");
                    }
                }
                prop_assert_eq!(planned.ends_at, planned.members.iter().map(|m| m.start).max().unwrap());
            }
        }
    }
}
