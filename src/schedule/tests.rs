//! Property tests for the whole module: the occurrence rule and the planner
//! checked against an independent brute-force reference, the planner's
//! invariants, parsing round trips, and fuzzing of every parser and of the
//! computations with absurd inputs (they must return, never panic).
//!
//! The reference never asks chrono-tz to read a local time: it only asks for
//! the offset at UTC instants, and finds the instants whose wall clock shows
//! the window's start by trying every offset (or, in a gap, by scanning UTC
//! minute by minute for the jump over it). The implementation instead reads
//! local times with chrono-tz and its gap information.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::*;

/// Zones with every kind of trouble: northern and southern DST, 30-minute DST
/// (Lord_Howe), odd offsets (Kathmandu, Chatham, Eucla), midnight transitions
/// (Santiago, Havana, Beirut, Asuncion), negative DST (Dublin, Casablanca's
/// Ramadan), a skipped day (Apia 2011-12-30), 2-hour DST (Troll), and no DST.
const ZONES: &[Tz] = &[
    Tz::America__New_York,
    Tz::Europe__London,
    Tz::Europe__Berlin,
    Tz::Australia__Sydney,
    Tz::Australia__Lord_Howe,
    Tz::America__Santiago,
    Tz::Asia__Tokyo,
    Tz::UTC,
    Tz::Pacific__Apia,
    Tz::Asia__Kathmandu,
    Tz::America__Havana,
    Tz::Asia__Beirut,
    Tz::America__Asuncion,
    Tz::Europe__Dublin,
    Tz::Africa__Casablanca,
    Tz::Pacific__Chatham,
    Tz::Australia__Eucla,
    Tz::America__St_Johns,
    Tz::Asia__Tehran,
    Tz::America__Sao_Paulo,
    Tz::Antarctica__Troll,
    Tz::Asia__Gaza,
    Tz::Pacific__Kiritimati,
    Tz::America__Nuuk,
    Tz::Europe__Moscow,
];

const Y2000: i64 = 946_684_800; // 2000-01-01T00:00:00Z
const Y2041: i64 = 2_240_611_200; // 2041-01-01T00:00:00Z

fn utc(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

// ---------------------------------------------------------------------------
// The reference implementation
// ---------------------------------------------------------------------------

/// The UTC offset (seconds) in force at a UTC instant: the only question the
/// reference asks chrono-tz.
fn offset_at(zone: Tz, t: i64) -> i64 {
    i64::from(zone.offset_from_utc_datetime(&utc(t).naive_utc()).fix().local_minus_utc())
}

/// Local wall-clock seconds (as if the local time were UTC).
fn local_seconds(local: NaiveDateTime) -> i64 {
    local.and_utc().timestamp()
}

/// The occurrence rule by scanning UTC minute by minute around the local time:
/// the first instant whose wall clock shows it (the earlier one in a fold); if
/// the wall clock jumps over it (a gap), the local time read with the offset in
/// force just before the jump.
fn reference_start_scan(zone: Tz, local: i64) -> i64 {
    let mut previous: Option<(i64, i64)> = None;
    let mut t = local - 16 * 3600;
    while t <= local + 16 * 3600 {
        let wall = t + offset_at(zone, t);
        if wall == local {
            return t;
        }
        if let Some((before, before_wall)) = previous {
            if before_wall < local && wall > local {
                return local - offset_at(zone, before);
            }
        }
        previous = Some((t, wall));
        t += 60;
    }
    panic!("no instant found for local {local} in {zone}");
}

/// The same rule, faster: every UTC offset in use from 2000 to 2040 is a
/// multiple of 15 minutes between -16 h and +16 h (checked by
/// `transitions_are_found_and_offsets_are_quarter_hours`), so the instants
/// whose wall clock shows `local` are among `local - k * 15 min`; the earliest
/// of them is the answer. None means a gap: fall back to the scan.
fn reference_start(zone: Tz, local: i64) -> i64 {
    (-64..=64)
        .map(|k| k * 900)
        .filter(|o| offset_at(zone, local - o) == *o)
        .map(|o| local - o)
        .min()
        .unwrap_or_else(|| reference_start_scan(zone, local))
}

/// The earliest occurrence starting at or after `after`, by trying every local
/// date from three days before, one by one.
fn reference_next(window: &Window, after: i64) -> i64 {
    let mut date = utc(after).date_naive() - TimeDelta::days(3);
    loop {
        if date.weekday() == window.day() {
            let start = reference_start(window.zone(), local_seconds(date.and_time(window.start())));
            if start >= after {
                return start;
            }
        }
        date = date.succ_opt().unwrap();
    }
}

/// The planner by brute force: every occurrence in turn, no jumping.
fn reference_plan(window: &Window, length: i64, required_by: i64, now: i64, ready_at: Option<i64>, blackouts: &[(i64, i64)]) -> (i64, Option<i64>, Option<ForcedReason>) {
    let t0 = ready_at.map_or(now, |r| r.max(now));
    let mut after = t0;
    let mut any_fits = false;
    loop {
        let start = reference_next(window, after);
        let end = start + length;
        if end > required_by {
            break;
        }
        any_fits = true;
        if !blackouts.iter().any(|&(bs, be)| start < be && bs < end) {
            return (start, Some(end), None);
        }
        after = start + 1;
    }
    let reason = if any_fits { ForcedReason::AllWindowsBlackedOut } else { ForcedReason::NoWindowBeforeDeadline };
    ((required_by - length).max(t0), None, Some(reason))
}

/// The instants (to the minute) from `from` to `to` where the zone's offset
/// changes, with the offsets before and after; a search independent of the code
/// under test, used to aim tests at every gap and fold.
fn transitions(zone: Tz, from: i64, to: i64) -> Vec<(i64, i64, i64)> {
    let mut found = Vec::new();
    let step = 6 * 3600;
    let mut t = from;
    while t < to {
        let (a, b) = (offset_at(zone, t), offset_at(zone, t + step));
        if a != b {
            let (mut lo, mut hi) = (t, t + step); // offset(lo) == a, offset(hi) != a
            while hi - lo > 60 {
                let mid = lo + (hi - lo) / 2 / 60 * 60;
                let mid = if mid == lo { lo + 60 } else { mid };
                if offset_at(zone, mid) == a {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            found.push((hi, a, offset_at(zone, hi)));
        }
        t += step;
    }
    found
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn zone() -> impl Strategy<Value = Tz> {
    prop::sample::select(ZONES)
}

/// Windows biased towards the small hours (where transitions happen) and
/// towards midnight, quarter and half hours.
fn window() -> impl Strategy<Value = Window> {
    let hour = prop_oneof![3 => 0u32..4, 1 => 0u32..24, 1 => Just(23u32)];
    let minute = prop_oneof![2 => prop::sample::select(vec![0u32, 15, 30, 45, 59]), 1 => 0u32..60];
    (0u8..7, hour, minute, zone()).prop_map(|(day, hour, minute, zone)| Window::new(Weekday::try_from(day).unwrap(), hour, minute, zone).unwrap())
}

fn instant_2000_2040() -> impl Strategy<Value = i64> {
    Y2000..Y2041 - 200 * 86_400
}

fn length_seconds() -> impl Strategy<Value = i64> {
    prop_oneof![3 => (1i64..=12).prop_map(|h| h * 3600), 1 => 60i64..=7 * 86_400, 1 => Just(7 * 86_400), 1 => Just(60)]
}

/// Any instant chrono can hold, with the extremes and the near extremes likely.
fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (DateTime::<Utc>::MIN_UTC.timestamp(), DateTime::<Utc>::MAX_UTC.timestamp());
    prop_oneof![
        min..=max,
        min..min + 30 * 86_400,
        max - 30 * 86_400..=max,
        Y2000..Y2041,
        Just(min),
        Just(max),
    ]
    .prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
}

/// Any length, including negative, zero and enormous ones.
fn any_length() -> impl Strategy<Value = TimeDelta> {
    prop_oneof![
        any::<i64>().prop_map(|ms| TimeDelta::try_milliseconds(ms).unwrap_or(TimeDelta::MAX)),
        (-100i64..8 * 86_400).prop_map(TimeDelta::seconds),
        Just(TimeDelta::MAX),
        Just(TimeDelta::MIN),
        Just(TimeDelta::zero()),
    ]
}

// ---------------------------------------------------------------------------
// Hand-picked transitions, exhaustively
// ---------------------------------------------------------------------------

#[test]
fn reference_agrees_with_hand_computed_cases() {
    let ny = Tz::America__New_York;
    let local = |y, m, d, h, mi| local_seconds(NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, mi, 0).unwrap());
    // The gap example: 02:30 on 2027-03-14 is 07:30Z; the fold example: 01:30 on 2026-11-01 is 05:30Z.
    assert_eq!(utc(reference_start(ny, local(2027, 3, 14, 2, 30))).to_rfc3339(), "2027-03-14T07:30:00+00:00");
    assert_eq!(utc(reference_start(ny, local(2026, 11, 1, 1, 30))).to_rfc3339(), "2026-11-01T05:30:00+00:00");
    assert_eq!(reference_start_scan(ny, local(2027, 3, 14, 2, 30)), reference_start(ny, local(2027, 3, 14, 2, 30)));
    assert_eq!(reference_start_scan(ny, local(2026, 11, 1, 1, 30)), reference_start(ny, local(2026, 11, 1, 1, 30)));
}

/// Every gap and fold of every test zone from 2000 to 2040: windows at every
/// quarter hour from an hour before to an hour after it, both local dates.
#[test]
fn every_transition_2000_2040_matches_the_reference() {
    let mut checked = 0;
    for &zone in ZONES {
        for (at, before, after) in transitions(zone, Y2000, Y2041) {
            let walls = [at + before, at + after];
            let (lo, hi) = (walls[0].min(walls[1]) - 3600, walls[0].max(walls[1]) + 3600);
            let mut local = lo - lo.rem_euclid(900);
            while local <= hi {
                let l = DateTime::from_timestamp(local, 0).unwrap().naive_utc();
                let window = Window::new(l.weekday(), l.hour(), l.minute(), zone).unwrap();
                let expected = reference_start(zone, local);
                assert_eq!(start_on(&window, l.date()).map(|t| t.timestamp()), Some(expected), "{window} on {}", l.date());
                for after in [expected - 5 * 86_400, expected - 1, expected] {
                    let occ = next_occurrence(&window, TimeDelta::hours(4), utc(after)).unwrap();
                    assert_eq!(occ.start.timestamp(), expected, "{window} after {}", utc(after));
                    assert_eq!(occ.end.timestamp(), expected + 4 * 3600);
                }
                let later = next_occurrence(&window, TimeDelta::hours(4), utc(expected + 1)).unwrap();
                assert_eq!(later.start.timestamp(), reference_next(&window, expected + 1), "{window} after {}", utc(expected + 1));
                checked += 1;
                local += 900;
            }
        }
    }
    assert!(checked > 10_000, "only {checked} cases");
}

/// The reference's shortcut (offsets are quarter hours) holds for the test zones.
#[test]
fn transitions_are_found_and_offsets_are_quarter_hours() {
    for &zone in ZONES {
        let found = transitions(zone, Y2000, Y2041);
        for &(at, before, after) in &found {
            assert_eq!((before % 900, after % 900), (0, 0), "{zone} at {}", utc(at));
            assert!(before.abs() <= 16 * 3600 && after.abs() <= 16 * 3600);
        }
        assert_eq!(offset_at(zone, Y2000) % 900, 0);
    }
    // Apia's skipped day is among them: -10 (DST) to +14 (DST) at 2011-12-30T10:00Z.
    assert!(transitions(Tz::Pacific__Apia, Y2000, Y2041).contains(&(1_325_239_200, -36_000, 50_400)));
    assert!(transitions(Tz::Asia__Tokyo, Y2000, Y2041).is_empty());
}

/// Every zone chrono-tz knows, 2020 to 2030: the starts on both local dates of
/// each transition, at the wall-clock times on either side of it.
#[test]
fn all_zones_at_their_transitions_2020_2030() {
    let (from, to) = (1_577_836_800, 1_893_456_000); // 2020 .. 2030
    for &zone in chrono_tz::TZ_VARIANTS.iter() {
        for (at, before, after) in transitions(zone, from, to) {
            if (before % 900, after % 900) != (0, 0) {
                continue;
            }
            for wall in [at + before, at + after, at + before - 1800, at + after + 1800, (at + before).min(at + after) + 900] {
                let local = wall - wall.rem_euclid(60);
                let l = DateTime::from_timestamp(local, 0).unwrap().naive_utc();
                let window = Window::new(l.weekday(), l.hour(), l.minute(), zone).unwrap();
                assert_eq!(start_on(&window, l.date()).map(|t| t.timestamp()), Some(reference_start_scan(zone, local)), "{window} on {}", l.date());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Random cases against the reference
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    #[test]
    fn next_occurrence_matches_the_reference(window in window(), after in instant_2000_2040(), length in length_seconds()) {
        let occ = next_occurrence(&window, TimeDelta::seconds(length), utc(after)).unwrap();
        prop_assert_eq!(occ.start.timestamp(), reference_next(&window, after), "{} after {}", window, utc(after));
        prop_assert_eq!(occ.end.timestamp(), occ.start.timestamp() + length);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The fast reference agrees with the plain minute scan.
    #[test]
    fn reference_shortcut_matches_the_scan(window in window(), after in instant_2000_2040()) {
        let date = utc(after).date_naive();
        let local = local_seconds(date.and_time(window.start()));
        prop_assert_eq!(reference_start(window.zone(), local), reference_start_scan(window.zone(), local));
    }
}

/// Blackouts within `horizon` seconds of `base`, some empty, some overlapping.
fn blackouts(base: i64, horizon: i64, max: usize) -> impl Strategy<Value = Vec<(i64, i64)>> {
    prop::collection::vec((0..horizon, prop_oneof![Just(0i64), 1i64..86_400, 1i64..20 * 86_400]), 0..=max)
        .prop_map(move |v| v.into_iter().map(|(s, len)| (base + s, base + s + len)).collect())
}

type PlanCase = (Window, i64, i64, i64, Option<i64>, Vec<(i64, i64)>);

fn plan_case() -> impl Strategy<Value = PlanCase> {
    (window(), length_seconds(), instant_2000_2040())
        .prop_flat_map(|(window, length, now)| {
            (
                Just(window),
                Just(length),
                now - 10 * 86_400..now + 90 * 86_400,
                Just(now),
                prop::option::of(now - 10 * 86_400..now + 30 * 86_400),
                blackouts(now - 20 * 86_400, 110 * 86_400, 5),
                prop::collection::vec((0u8..4, -1i64..=1), 8),
            )
        })
        .prop_map(|(window, length, required_by, now, ready_at, raw, snaps)| snap(window, length, required_by, now, ready_at, raw, &snaps))
}

/// Moves some of a case's instants onto (or a second off) the boundaries that
/// matter: the deadline onto an occurrence's end, `now` or the readiness onto
/// an occurrence's start, a blackout's start onto an occurrence's end or its
/// end onto an occurrence's start. Random instants would almost never hit them.
#[allow(clippy::too_many_arguments)]
fn snap(window: Window, length: i64, required_by: i64, now: i64, ready_at: Option<i64>, mut raw: Vec<(i64, i64)>, snaps: &[(u8, i64)]) -> PlanCase {
    let mut starts = Vec::new();
    let mut t = now - 30 * 86_400;
    while t < now + 130 * 86_400 {
        let start = reference_next(&window, t);
        starts.push(start);
        t = start + 1;
    }
    let nearest = |x: i64, shift: i64| starts.iter().map(|s| s + shift).min_by_key(|p| (p - x).abs()).unwrap();
    let on = |i: usize| snaps[i].0 == 0;
    let delta = |i: usize| snaps[i].1;
    let required_by = if on(0) { nearest(required_by, length) + delta(0) } else { required_by };
    let now2 = if on(1) { nearest(now, 0) + delta(1) } else { now };
    let ready_at = if on(2) { ready_at.map(|r| nearest(r, 0) + delta(2)) } else { ready_at };
    for (i, b) in raw.iter_mut().enumerate().take(5) {
        let (kind, d) = snaps[3 + i];
        match kind {
            0 => {
                let start = nearest(b.0, length) + d;
                *b = (start, b.1.max(start));
            }
            1 => {
                let end = nearest(b.1, 0) + d;
                *b = (b.0.min(end), end);
            }
            _ => {}
        }
    }
    (window, length, required_by, now2, ready_at, raw)
}

fn to_blackouts(raw: &[(i64, i64)]) -> Vec<Blackout> {
    raw.iter().map(|&(s, e)| Blackout::new(utc(s), utc(e)).unwrap()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn plan_matches_the_reference((window, length, required_by, now, ready_at, raw) in plan_case()) {
        let got = plan(&window, TimeDelta::seconds(length), utc(required_by), utc(now), ready_at.map(utc), &to_blackouts(&raw)).unwrap();
        let (start, end, reason) = reference_plan(&window, length, required_by, now, ready_at, &raw);
        prop_assert_eq!(got.scheduled_for.timestamp(), start);
        prop_assert_eq!(got.window_end.map(|t| t.timestamp()), end);
        prop_assert_eq!(got.forced, reason);
    }

    #[test]
    fn plan_invariants((window, length, required_by, now, ready_at, raw) in plan_case()) {
        let len = TimeDelta::seconds(length);
        let list = to_blackouts(&raw);
        let got = plan(&window, len, utc(required_by), utc(now), ready_at.map(utc), &list).unwrap();
        let t0 = utc(ready_at.map_or(now, |r| r.max(now)));
        let usable = |start: DateTime<Utc>| start + len <= utc(required_by) && !list.iter().any(|b| b.overlaps(start, start + len));
        // Every occurrence from t0 up to the answer (or the deadline) in turn.
        let mut earlier_usable = None;
        let mut any_fits = false;
        let mut after = t0;
        loop {
            let occ = next_occurrence(&window, len, after).unwrap();
            if occ.end > utc(required_by) || (got.forced.is_none() && occ.start >= got.scheduled_for) {
                break;
            }
            any_fits = true;
            if usable(occ.start) {
                earlier_usable = Some(occ.start);
                break;
            }
            after = occ.start + TimeDelta::seconds(1);
        }
        match got.forced {
            None => {
                prop_assert!(got.scheduled_for >= t0);
                let end = got.window_end.unwrap();
                prop_assert_eq!(end, got.scheduled_for + len);
                prop_assert!(end <= utc(required_by));
                prop_assert!(!list.iter().any(|b| b.overlaps(got.scheduled_for, end)));
                prop_assert_eq!(next_occurrence(&window, len, got.scheduled_for).unwrap().start, got.scheduled_for);
                prop_assert_eq!(earlier_usable, None, "an earlier window was usable");
            }
            Some(reason) => {
                prop_assert_eq!(earlier_usable, None, "forced although a window was usable");
                prop_assert_eq!(got.window_end, None);
                prop_assert_eq!(reason == ForcedReason::AllWindowsBlackedOut, any_fits);
                prop_assert_eq!(got.scheduled_for, (utc(required_by) - len).max(t0));
            }
        }
    }

    /// Many blackouts, sorted and merged or not: the same answer (the merged
    /// form takes the binary-search path).
    #[test]
    fn normalized_blackouts_give_the_same_plan(
        (window, length, required_by, now, ready_at, _) in plan_case(),
        raw in (instant_2000_2040()).prop_flat_map(|base| blackouts(base, 200 * 86_400, 60)),
        shift in -200i64 * 86_400..0,
    ) {
        // Move the blackouts near `now`.
        let offset = raw.first().map_or(0, |&(s, _)| now - s) + shift / 4;
        let list: Vec<Blackout> = raw.iter().map(|&(s, e)| Blackout::new(utc(s + offset), utc(e + offset)).unwrap()).collect();
        let mut merged = list.clone();
        normalize_blackouts(&mut merged);
        prop_assert!(merged.windows(2).all(|w| w[0].end() < w[1].start()));
        let len = TimeDelta::seconds(length);
        let a = plan(&window, len, utc(required_by), utc(now), ready_at.map(utc), &list).unwrap();
        let b = plan(&window, len, utc(required_by), utc(now), ready_at.map(utc), &merged).unwrap();
        prop_assert_eq!(a, b);
    }
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn window_round_trips(day in 0u8..7, hour in 0u32..24, minute in 0u32..60, zone in prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()), length in 60i64..=7 * 86_400) {
        let window = Window::new(Weekday::try_from(day).unwrap(), hour, minute, zone).unwrap();
        prop_assert_eq!(window.to_string().parse::<Window>().unwrap(), window);
        prop_assert_eq!(window.to_string().to_uppercase().parse::<Window>().unwrap(), window);
        prop_assert_eq!(window.to_string().to_lowercase().parse::<Window>().unwrap(), window);
        // The short and singular day forms, an unpadded hour.
        let day_name = format!("{:?}", window.day());
        let text = format!("{} {}:{:02} {}", day_name, hour, minute, zone.name());
        prop_assert_eq!(text.parse::<Window>().unwrap(), window);
        let described = window.describe(TimeDelta::seconds(length)).to_string();
        let end = (hour * 60 + minute + (length / 60) as u32) % (24 * 60);
        let expected_end = format!(" to {:02}:{:02} {}", end / 60, end % 60, zone.name());
        prop_assert!(described.ends_with(&expected_end), "{}", described);
        prop_assert!(described.starts_with(&window.to_string()[..window.to_string().len() - zone.name().len() - 1]));
    }

    #[test]
    fn durations_round_trip(seconds in 1i64..1_000_000_000) {
        let d = TimeDelta::seconds(seconds);
        prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
    }

    #[test]
    fn timestamps_and_blackouts_round_trip(a in -62_135_596_800i64..253_402_300_799, b in -62_135_596_800i64..253_402_300_799) {
        let (start, end) = (utc(a.min(b)), utc(a.max(b)));
        prop_assert_eq!(parse_timestamp(&format_timestamp(start)).unwrap(), start);
        let text = format!("{}/{}", format_timestamp(start), format_timestamp(end));
        let blackout: Blackout = text.parse().unwrap();
        prop_assert_eq!((blackout.start(), blackout.end()), (start, end));
        if a != b {
            let reversed = format!("{}/{}", format_timestamp(end), format_timestamp(start));
            prop_assert_eq!(reversed.parse::<Blackout>().unwrap_err(), ScheduleError::BlackoutEndsBeforeStart(reversed.clone()));
        }
    }
}

// ---------------------------------------------------------------------------
// Fuzzing: never panic
// ---------------------------------------------------------------------------

const EXAMPLE_FLEET: &str = include_str!("../../examples/fleet.toml");

/// Strings that are nearly inputs: pieces of valid ones glued together.
fn near_input() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "Sunday", "sun", "Mondays", " ", "  ", "\t", "14:30", "9:05", "24:00", "23:59", "-1:00", ":", "UTC", "America/New_York", "utc/", "/", "Z",
        "2027-03-14T07:30:00Z", "2027-03-14", "T", "+99:99", "4h", "30m", "1d", "0s", "9223372036854775807", "-", "h", "ä", "\u{0}", "s",
        "0 0 0 24 12 *", "*", "?", "L", "#", ",", "\n", "[[database]]", "=", "\"", "name", "window", "[", "]", "{", "}",
    ]);
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// The example fleet file with a few characters replaced, removed or inserted.
fn mutated_fleet() -> impl Strategy<Value = String> {
    prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..6).prop_map(|edits| {
        let mut chars: Vec<char> = EXAMPLE_FLEET.chars().collect();
        for (index, kind, c) in edits {
            let i = index.index(chars.len().max(1));
            match kind {
                0 if !chars.is_empty() => chars[i] = c,
                1 if !chars.is_empty() => {
                    chars.remove(i);
                }
                _ => chars.insert(i.min(chars.len()), c),
            }
        }
        chars.into_iter().collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(text in prop_oneof![any::<String>(), near_input()]) {
        let _ = text.parse::<Window>();
        let _ = parse_duration(&text);
        let _ = parse_window_length(&text);
        let _ = parse_timestamp(&text);
        let _ = text.parse::<Blackout>();
        let _ = RecurringBlackout::new(&text, TimeDelta::hours(1));
        let _ = Fleet::from_toml(&text);
        let _ = parse_day(&text);
        let _ = parse_zone(&text);
    }

    #[test]
    fn fleet_parser_never_panics(text in mutated_fleet()) {
        if let Ok(fleet) = Fleet::from_toml(&text) {
            let from = utc(1_798_761_600); // 2027-01-01
            let _ = fleet.plan(from, from + TimeDelta::days(60));
        } else {
            let err = Fleet::from_toml(&text).unwrap_err();
            prop_assert!(!err.in_file("fleet.toml").contains('\n'));
        }
    }

    #[test]
    fn computations_never_panic(
        window in window(),
        any_zone in prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()),
        after in any_instant(),
        required_by in any_instant(),
        ready_at in prop::option::of(any_instant()),
        length in any_length(),
        b in prop::collection::vec((any_instant(), any_instant()), 0..4),
        days in any::<i32>(),
    ) {
        let window = Window::new(window.day(), window.start().hour(), window.start().minute(), any_zone).unwrap();
        let list: Vec<Blackout> = b.iter().map(|&(x, y)| Blackout::new(x.min(y), x.max(y)).unwrap()).collect();
        let next = next_occurrence(&window, length, after);
        if let Ok(occ) = next {
            prop_assert!(occ.start >= after);
            prop_assert_eq!(occ.end - occ.start, length);
        }
        if let Ok(p) = plan(&window, length, required_by, after, ready_at, &list) {
            prop_assert!(p.scheduled_for >= after);
        } else {
            prop_assert!(check_window_length(length).is_err());
        }
        if let Some(date) = NaiveDate::from_num_days_from_ce_opt(days) {
            let _ = start_on(&window, date);
        }
        let recurring = RecurringBlackout::new("0 30 1 * * Sun", TimeDelta::hours(2)).unwrap();
        let from = after.min(required_by);
        let to = after.max(required_by).min(from.checked_add_signed(TimeDelta::days(400)).unwrap_or(from));
        let _ = recurring.expand(any_zone, from, to);
    }
}
