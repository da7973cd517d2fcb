//! `pgmaint window next`, `pgmaint plan` and `pgmaint bench planner`: the
//! planning verbs. They parse and check arguments (bad input is exit 2 with a
//! one-line message naming the argument), read the clock and the fleet file
//! (the only I/O; `schedule` itself is pure), and format the answers as
//! readable lines or as JSON with UTC times at seconds precision.

use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{Failure, Outcome};
use pgmaint::schedule::{
    format_timestamp, next_occurrence, parse_timestamp, parse_window_length, plan as plan_one, Blackout, Fleet, Plan, PlannedMaintenance,
    ScheduleError, Window, DEFAULT_WINDOW_LENGTH,
};

#[derive(clap::Args, Debug)]
pub struct WindowNextArgs {
    /// The window, "<day> <HH:MM> [<IANA zone>]", e.g. "Sunday 02:30 America/New_York"
    /// (quoted, or as separate words); the zone defaults to UTC.
    #[arg(value_name = "WINDOW", required = true, num_args = 1..)]
    pub window: Vec<String>,
    /// Find the earliest occurrence starting at or after this instant (RFC 3339).
    #[arg(long, value_name = "TS")]
    pub after: String,
    /// How long the window lasts, 1m to 7d (e.g. 4h, 90m, 1h30m) [default: 4h].
    #[arg(long, value_name = "DUR")]
    pub length: Option<String>,
    /// Print JSON: {"start":..,"end":..,"window":..}.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The window, "<day> <HH:MM> [<IANA zone>]".
    #[arg(long, value_name = "WINDOW", required_unless_present = "fleet", conflicts_with = "fleet")]
    pub window: Option<String>,
    /// The maintenance must be finished by then (RFC 3339).
    #[arg(long, value_name = "TS", required_unless_present = "fleet", conflicts_with = "fleet")]
    pub required_by: Option<String>,
    /// Plan as if it were this instant [default: the current time].
    #[arg(long, value_name = "TS", conflicts_with = "fleet")]
    pub now: Option<String>,
    /// Do not start before this instant (when the replacement is ready).
    #[arg(long, value_name = "TS", conflicts_with = "fleet")]
    pub ready_at: Option<String>,
    /// A period in which nothing may run, START/END (RFC 3339); repeatable.
    #[arg(long = "blackout", value_name = "START/END", conflicts_with = "fleet")]
    pub blackouts: Vec<String>,
    /// How long the window lasts, 1m to 7d [default: 4h].
    #[arg(long, value_name = "DUR", conflicts_with = "fleet")]
    pub length: Option<String>,
    /// Plan every database of a fleet file (TOML; see examples/fleet.toml) between --from and --to.
    #[arg(long, value_name = "FILE", requires_all = ["from", "to"])]
    pub fleet: Option<PathBuf>,
    /// With --fleet: the start of the calendar (RFC 3339).
    #[arg(long, value_name = "TS", requires = "fleet")]
    pub from: Option<String>,
    /// With --fleet: the end of the calendar (RFC 3339), exclusive.
    #[arg(long, value_name = "TS", requires = "fleet")]
    pub to: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct BenchPlannerArgs {
    /// How many random databases to plan.
    #[arg(long, value_name = "N")]
    pub databases: u64,
    /// Print JSON: {"databases":N,"seconds":S,"ns_per_database":X}.
    #[arg(long)]
    pub json: bool,
}

/// `pgmaint window next WINDOW --after TS [--length DUR] [--json]`
pub fn window_next(args: WindowNextArgs) -> Outcome {
    let window = window_arg(None, &args.window.join(" "))?;
    let after = timestamp_arg("--after", &args.after)?;
    let length = length_arg(args.length.as_deref())?;
    let occ = next_occurrence(&window, length, after).map_err(Failure::failed)?;
    let described = window.describe(length).to_string();
    if args.json {
        #[derive(Serialize)]
        struct Json {
            start: String,
            end: String,
            window: String,
        }
        print_json(&Json { start: format_timestamp(occ.start), end: format_timestamp(occ.end), window: described })
    } else {
        println!("window  {described}");
        println!("starts  {}  ({})", format_timestamp(occ.start), local(occ.start, window.zone()));
        println!("ends    {}  ({})", format_timestamp(occ.end), local(occ.end, window.zone()));
        Ok(())
    }
}

/// `pgmaint plan --window ... --required-by ...` or `pgmaint plan --fleet FILE --from TS --to TS`
pub fn plan(args: PlanArgs) -> Outcome {
    match &args.fleet {
        Some(path) => plan_fleet(path, &args),
        None => plan_single(&args),
    }
}

/// `pgmaint bench planner --databases N [--json]`
pub fn bench_planner(args: BenchPlannerArgs) -> Outcome {
    super::bench_planner::run(args)
}

#[derive(clap::Args, Debug)]
pub struct BenchRolloutPlanArgs {
    /// How many random databases the rollout selects.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub databases: u64,
    /// How many waves (equal cumulative percentages).
    #[arg(long, value_name = "W", default_value_t = 10)]
    pub waves: u64,
    /// Print JSON: {"databases":N,"waves":W,"seconds":S,...}.
    #[arg(long)]
    pub json: bool,
}

pub fn bench_rollout_plan(args: BenchRolloutPlanArgs) -> Outcome {
    super::bench_planner::run_rollout(args)
}

fn plan_single(args: &PlanArgs) -> Outcome {
    // clap makes both present when --fleet is absent.
    let window = window_arg(Some("--window"), args.window.as_deref().unwrap_or_default())?;
    let required_by = timestamp_arg("--required-by", args.required_by.as_deref().unwrap_or_default())?;
    let now = match &args.now {
        Some(text) => timestamp_arg("--now", text)?,
        None => Utc::now(),
    };
    let ready_at = args.ready_at.as_deref().map(|text| timestamp_arg("--ready-at", text)).transpose()?;
    let blackouts = args
        .blackouts
        .iter()
        .map(|text| text.parse::<Blackout>().map_err(|e| Failure::usage(format!("--blackout: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let length = length_arg(args.length.as_deref())?;
    let planned = plan_one(&window, length, required_by, now, ready_at, &blackouts).map_err(Failure::failed)?;
    if args.json {
        #[derive(Serialize)]
        struct Json {
            scheduled_for: String,
            window_end: Option<String>,
            forced: bool,
            reason: Option<String>,
        }
        print_json(&Json {
            scheduled_for: format_timestamp(planned.scheduled_for),
            window_end: planned.window_end.map(format_timestamp),
            forced: planned.is_forced(),
            reason: planned.forced.map(|r| r.to_string()),
        })
    } else {
        println!("scheduled for  {}  ({})", format_timestamp(planned.scheduled_for), local(planned.scheduled_for, window.zone()));
        match (planned.window_end, planned.forced) {
            (Some(end), _) => println!("in window      {}, until {}", window.describe(length), format_timestamp(end)),
            (None, Some(reason)) => println!("FORCED         outside any window: {reason}"),
            (None, None) => {}
        }
        println!("required by    {}", format_timestamp(required_by));
        Ok(())
    }
}

fn plan_fleet(path: &std::path::Path, args: &PlanArgs) -> Outcome {
    let shown = path.display().to_string();
    let from = timestamp_arg("--from", args.from.as_deref().unwrap_or_default())?;
    let to = timestamp_arg("--to", args.to.as_deref().unwrap_or_default())?;
    if to < from {
        return Err(Failure::usage(format!("--to ({}) is before --from ({})", format_timestamp(to), format_timestamp(from))));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("{shown}: cannot read the fleet file: {e}")))?;
    let fleet = Fleet::from_toml(&text).map_err(|e| Failure::usage(e.in_file(&shown)))?;
    let calendar = fleet.plan(from, to).map_err(|e| Failure::failed(e.in_file(&shown)))?;
    if args.json {
        print_json(&FleetJson {
            from: format_timestamp(from),
            to: format_timestamp(to),
            maintenances: calendar.iter().map(MaintenanceJson::from).collect(),
        })
    } else {
        print_calendar(&calendar, fleet.databases.len(), from, to);
        Ok(())
    }
}

#[derive(Serialize)]
struct FleetJson {
    from: String,
    to: String,
    maintenances: Vec<MaintenanceJson>,
}

#[derive(Serialize)]
struct MaintenanceJson {
    database: String,
    window: String,
    required_by: String,
    scheduled_for: String,
    window_end: Option<String>,
    forced: bool,
    reason: Option<String>,
}

impl From<&PlannedMaintenance<'_>> for MaintenanceJson {
    fn from(m: &PlannedMaintenance<'_>) -> Self {
        let Plan { scheduled_for, window_end, forced } = m.plan;
        MaintenanceJson {
            database: m.database.name.clone(),
            window: m.database.window.describe(m.database.length).to_string(),
            required_by: format_timestamp(m.required_by),
            scheduled_for: format_timestamp(scheduled_for),
            window_end: window_end.map(format_timestamp),
            forced: forced.is_some(),
            reason: forced.map(|r| r.to_string()),
        }
    }
}

fn print_calendar(calendar: &[PlannedMaintenance<'_>], databases: usize, from: DateTime<Utc>, to: DateTime<Utc>) {
    println!(
        "{} maintenance{} of {} database{} from {} to {}",
        calendar.len(),
        if calendar.len() == 1 { "" } else { "s" },
        databases,
        if databases == 1 { "" } else { "s" },
        format_timestamp(from),
        format_timestamp(to)
    );
    if calendar.is_empty() {
        return;
    }
    let header = ["SCHEDULED FOR", "DATABASE", "WINDOW", "REQUIRED BY", "WINDOW END", "NOTE"].map(str::to_string);
    let rows: Vec<[String; 6]> = calendar
        .iter()
        .map(|m| {
            [
                format_timestamp(m.plan.scheduled_for),
                m.database.name.clone(),
                m.database.window.describe(m.database.length).to_string(),
                format_timestamp(m.required_by),
                m.plan.window_end.map_or_else(|| "-".to_string(), format_timestamp),
                m.plan.forced.map_or_else(String::new, |r| format!("forced: {r}")),
            ]
        })
        .collect();
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", line.trim_end());
    }
}

fn window_arg(flag: Option<&str>, text: &str) -> Result<Window, Failure> {
    text.parse::<Window>().map_err(|e: ScheduleError| {
        let prefix = flag.map_or_else(String::new, |flag| format!("{flag}: "));
        Failure::usage(format!("{prefix}invalid window \"{}\": {e}", text.trim()))
    })
}

fn timestamp_arg(name: &str, text: &str) -> Result<DateTime<Utc>, Failure> {
    parse_timestamp(text).map_err(|e| Failure::usage(format!("{name}: {e}")))
}

fn length_arg(text: Option<&str>) -> Result<TimeDelta, Failure> {
    text.map_or(Ok(DEFAULT_WINDOW_LENGTH), |text| parse_window_length(text).map_err(|e| Failure::usage(format!("--length: {e}"))))
}

/// An instant on the window's wall clock: `Sun 2027-03-14 03:30 EDT`.
fn local(t: DateTime<Utc>, zone: Tz) -> String {
    t.with_timezone(&zone).format("%a %Y-%m-%d %H:%M %Z").to_string()
}

pub(super) fn print_json(value: &impl Serialize) -> Outcome {
    let text = serde_json::to_string(value).map_err(Failure::failed)?;
    println!("{text}");
    Ok(())
}
