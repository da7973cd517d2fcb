//! `pgmaint bench planner`: plans N random databases and reports the time per
//! database, so "planning a fleet is fast" is a figure, not a hope. The inputs
//! come from a fixed seed and are built before the clock starts; only the
//! planning loop is timed.

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::planning::{print_json, BenchPlannerArgs};
use super::{Failure, Outcome};
use pgmaint::schedule::{plan, Blackout, Window};

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
