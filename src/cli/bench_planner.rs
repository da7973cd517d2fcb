//! `pgmaint bench planner`: plans N random databases and reports the time per
//! database, so "planning a fleet is fast" is a figure, not a hope; `pgmaint
//! bench rollout-plan` plans a rollout of N random databases in W waves. The
//! inputs come from a fixed seed and are built before the clock starts; only
//! the planning is timed.

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::planning::{print_json, BenchPlannerArgs, BenchRolloutPlanArgs};
use super::{Failure, Outcome};
use pgmaint::model::WaveSpec;
use pgmaint::schedule::{plan, plan_rollout, Blackout, Known, WaveMember, Window};

/// The largest N accepted (about 100 bytes of input per database).
const MAX_DATABASES: u64 = 20_000_000;
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// 2027-01-01T00:00:00Z: a fixed "now" keeps runs comparable.
const NOW: i64 = 1_798_761_600;

/// One generated database; blackouts inline so the loop touches no heap.
struct Database {
    window: Window,
    length: TimeDelta,
    required_by: DateTime<Utc>,
    blackouts: [Blackout; 3],
    blackout_count: usize,
}

pub fn run(args: BenchPlannerArgs) -> Outcome {
    if args.databases == 0 || args.databases > MAX_DATABASES {
        return Err(Failure::usage(format!("--databases: must be between 1 and {MAX_DATABASES}, not {}", args.databases)));
    }
    let now = DateTime::from_timestamp(NOW, 0).ok_or_else(|| Failure::failed("bad benchmark epoch"))?;
    let databases = generate(args.databases as usize, now);

    let started = Instant::now();
    let mut forced = 0usize;
    for db in &databases {
        let planned = plan(
            black_box(&db.window),
            black_box(db.length),
            black_box(db.required_by),
            black_box(now),
            None,
            black_box(&db.blackouts[..db.blackout_count]),
        );
        if let Ok(p) = black_box(planned) {
            forced += usize::from(p.forced.is_some());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    black_box(forced);

    let n = databases.len();
    let ns_per_database = (seconds * 1e9 / n as f64 * 10.0).round() / 10.0;
    if args.json {
        #[derive(Serialize)]
        struct Json {
            databases: usize,
            seconds: f64,
            ns_per_database: f64,
        }
        print_json(&Json { databases: n, seconds, ns_per_database })
    } else {
        println!("planned {n} databases in {seconds:.4} s: {ns_per_database} ns per database ({forced} forced)");
        Ok(())
    }
}

/// Plans a rollout of `--databases` random databases in `--waves` waves of
/// equal cumulative percentages, with a 1 h bake and a 120-day deadline.
pub fn run_rollout(args: BenchRolloutPlanArgs) -> Outcome {
    if args.databases == 0 || args.databases > MAX_DATABASES {
        return Err(Failure::usage(format!("--databases: must be between 1 and {MAX_DATABASES}, not {}", args.databases)));
    }
    if args.waves == 0 || args.waves > 100 {
        return Err(Failure::usage(format!("--waves: must be between 1 and 100, not {}", args.waves)));
    }
    let now = DateTime::from_timestamp(NOW, 0).ok_or_else(|| Failure::failed("bad benchmark epoch"))?;
    let databases = generate(args.databases as usize, now);
    let spec: WaveSpec = (1..=args.waves).map(|w| format!("{}%", w * 100 / args.waves)).collect::<Vec<_>>().join(",").parse().map_err(Failure::failed)?;
    let mut members = databases.iter().map(|db| WaveMember {
        window: &db.window,
        length: db.length,
        blackouts: &db.blackouts[..db.blackout_count],
        known: Known::Nothing,
    });
    let waves: Vec<Vec<WaveMember<'_>>> = spec.split(databases.len()).into_iter().map(|size| members.by_ref().take(size).collect()).collect();
    let required_by = now + TimeDelta::days(120);

    let started = Instant::now();
    let planned = plan_rollout(black_box(&waves), TimeDelta::hours(1), required_by, now).map_err(Failure::failed)?;
    let seconds = started.elapsed().as_secs_f64();
    let forced: usize = planned.iter().map(|w| w.members.iter().filter(|m| m.forced).count()).sum();
    let last_ends = planned.last().map(|w| w.ends_at).unwrap_or(now);

    let n = databases.len();
    if args.json {
        #[derive(Serialize)]
        struct Json {
            databases: usize,
            waves: usize,
            seconds: f64,
            forced: usize,
            last_wave_ends_at: DateTime<Utc>,
        }
        print_json(&Json { databases: n, waves: planned.len(), seconds, forced, last_wave_ends_at: last_ends })
    } else {
        println!(
            "planned a rollout of {n} databases in {} waves in {seconds:.4} s ({forced} forced; the last wave ends {})",
            planned.len(),
            pgmaint::schedule::format_timestamp(last_ends)
        );
        Ok(())
    }
}

/// Random windows (any zone chrono-tz knows), lengths of 1 to 8 hours,
/// deadlines 0 to 120 days ahead and 0 to 3 blackouts of 1 hour to 7 days
/// starting in the next 120 days.
fn generate(n: usize, now: DateTime<Utc>) -> Vec<Database> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let zones = chrono_tz::TZ_VARIANTS;
    let days_120 = 120 * 86_400;
    let placeholder = Blackout::new(now, now).expect("empty blackout");
    (0..n)
        .map(|_| {
            let day = Weekday::try_from(rng.gen_range(0..7u8)).unwrap_or(Weekday::Sun);
            let zone = zones[rng.gen_range(0..zones.len())];
            let window = Window::new(day, rng.gen_range(0..24), rng.gen_range(0..60), zone).expect("valid window");
            let length = TimeDelta::minutes(rng.gen_range(4..=32) * 15);
            let required_by = now + TimeDelta::seconds(rng.gen_range(0..days_120));
            let mut blackouts = [placeholder; 3];
            let blackout_count = rng.gen_range(0..=3);
            for b in blackouts.iter_mut().take(blackout_count) {
                let start = now + TimeDelta::seconds(rng.gen_range(0..days_120));
                let end = start + TimeDelta::seconds(rng.gen_range(3_600..=7 * 86_400));
                *b = Blackout::new(start, end).expect("ordered blackout");
            }
            Database { window, length, required_by, blackouts, blackout_count }
        })
        .collect()
}
