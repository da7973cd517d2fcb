//! `pgmaint rollout create|show|list|pause|resume|abort|plan`: fleet rollouts,
//! clients of the daemon's API like the other control verbs.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use pgmaint::api::{Client, CreateRollout, RolloutAction, RolloutPlan, RolloutView};
use pgmaint::model::{parse_labels, reference_time, Reason, WaveSpec};
use pgmaint::schedule::{self, format_duration};

use super::control::{call, print_json, table, Connection, ConnectionArgs};
use super::{Failure, Outcome};

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Roll a maintenance out over a selection of databases in waves, a canary first.
    Create(CreateArgs),
    /// A rollout's state and each wave's databases with their maintenance.
    Show(NameArgs),
    /// Every rollout.
    List(ConnectionArgs),
    /// Hold what has not started.
    Pause(NameArgs),
    /// Continue a halted or paused rollout (failed databases get a new maintenance).
    Resume(NameArgs),
    /// Cancel what has not started, for good.
    Abort(NameArgs),
    /// When each wave's databases would run (a dry run of the planner).
    Plan(NameArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    /// os-patch, minor-upgrade, settings or periodic.
    #[arg(long)]
    pub reason: String,
    /// Select the databases with this label (repeatable: all must match).
    #[arg(long = "select", value_name = "KEY=VALUE", required_unless_present = "databases", conflicts_with = "databases")]
    pub select: Vec<String>,
    /// Or name them: A,B,C.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    pub databases: Vec<String>,
    /// Cumulative wave sizes, counts or percentages, the last 100%: 1,10%,50%,100%.
    #[arg(long, value_name = "SPEC")]
    pub waves: String,
    /// Wait this long after a wave's last maintenance before the next wave (default 1h).
    #[arg(long, value_name = "DUR")]
    pub bake: Option<String>,
    /// Every maintenance's deadline: a time (RFC 3339) or a duration from now (default 7d).
    #[arg(long, value_name = "TS|DUR")]
    pub required_by: Option<String>,
    /// Failures tolerated before the rollout halts.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_failures: u32,
    /// Take this database first (default: the first by name).
    #[arg(long, value_name = "NAME")]
    pub canary: Option<String>,
    /// Told, with the failed database's owners, when the rollout halts (repeatable).
    #[arg(long = "notify", value_name = "EMAIL")]
    pub notify: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    /// The rollout.
    pub name: String,
    #[command(flatten)]
    pub connection: Connection,
}

pub fn run(command: RolloutCommand, client: &Client) -> Outcome {
    match command {
        RolloutCommand::Create(args) => create(args, client),
        RolloutCommand::Show(args) => show(call(client.rollout(&args.name))?, args.connection.json),
        RolloutCommand::List(args) => list(args, client),
        RolloutCommand::Pause(args) => act(args, RolloutAction::Pause, client),
        RolloutCommand::Resume(args) => act(args, RolloutAction::Resume, client),
        RolloutCommand::Abort(args) => act(args, RolloutAction::Abort, client),
        RolloutCommand::Plan(args) => plan(args, client),
    }
}

fn create(args: CreateArgs, client: &Client) -> Outcome {
    let reason: Reason = args.reason.parse().map_err(Failure::usage)?;
    args.waves.parse::<WaveSpec>().map_err(Failure::usage)?;
    let select = parse_labels(&args.select).map_err(Failure::usage)?;
    let bake_seconds = match &args.bake {
        Some(text) => Some(schedule::parse_std_duration(text).map_err(|e| Failure::usage(format!("--bake: {e}")))?.as_secs()),
        None => None,
    };
    let required_by = match &args.required_by {
        Some(text) => Some(schedule::format_timestamp(schedule::parse_deadline(text, Utc::now()).map_err(|e| Failure::usage(format!("--required-by: {e}")))?)),
        None => None,
    };
    let request = CreateRollout {
        name: args.name,
        reason: reason.as_str().to_string(),
        select,
        databases: args.databases,
        waves: args.waves,
        bake_seconds,
        required_by,
        max_failures: args.max_failures,
        canary: args.canary,
        notify: args.notify,
    };
    let view = call(client.create_rollout(&request))?;
    if args.connection.json {
        return print_json(&view);
    }
    let sizes: Vec<String> = view.waves.iter().map(|w| w.databases.len().to_string()).collect();
    println!(
        "Rollout {} created: {} databases in {} waves ({}); wave 1 required",
        view.name,
        view.waves.iter().map(|w| w.databases.len()).sum::<usize>(),
        view.waves.len(),
        sizes.join(", ")
    );
    Ok(())
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_string(), reference_time)
}

fn show(view: RolloutView, json: bool) -> Outcome {
    if json {
        return print_json(&view);
    }
    print!("{}", rollout_block(&view));
    Ok(())
}

/// The `rollout show` block.
fn rollout_block(view: &RolloutView) -> String {
    let mut out = format!("=== rollout {} ({}, wave {} of {})\n", view.name, view.state.as_str(), view.wave, view.waves.len());
    let mut field = |label: &str, value: String| out.push_str(&format!("{:<14}{value}\n", format!("{label}:")));
    field("Reason", view.reason.clone());
    field("Waves", view.waves_spec.clone());
    field("Bake", format_duration(std::time::Duration::from_secs(view.bake_seconds.unsigned_abs())));
    field("Required by", reference_time(view.required_by));
    field("Failures", format!("{} ({} tolerated)", view.failures, view.max_failures));
    if let Some(until) = view.bake_until {
        field("Baking until", reference_time(until));
    }
    if let Some(because) = &view.halted_because {
        field("Halted", because.clone());
    }
    if !view.watchers.is_empty() {
        field("Watchers", view.watchers.join(", "));
    }
    for wave in &view.waves {
        out.push_str(&format!("--- wave {}\n", wave.number));
        let rows = wave
            .databases
            .iter()
            .map(|m| {
                vec![
                    m.database.clone(),
                    m.maintenance_id.map_or_else(|| "-".to_string(), |id| format!("#{id}")),
                    m.state.clone(),
                    when(m.scheduled_for),
                    when(m.finished_at),
                    m.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&table(&["DATABASE", "MAINTENANCE", "STATE", "SCHEDULED", "FINISHED", "ERROR"], rows));
    }
    out
}

fn list(args: ConnectionArgs, client: &Client) -> Outcome {
    let views = call(client.rollouts())?;
    if args.connection.json {
        return print_json(&views);
    }
    if views.is_empty() {
        println!("No rollouts");
        return Ok(());
    }
    let rows = views
        .into_iter()
        .map(|v| {
            let databases: usize = v.waves.iter().map(|w| w.databases.len()).sum();
            vec![v.name, v.state.as_str().to_string(), format!("{} of {}", v.wave, v.waves.len()), databases.to_string(), v.failures.to_string(), v.reason]
        })
        .collect();
    print!("{}", table(&["NAME", "STATE", "WAVE", "DATABASES", "FAILURES", "REASON"], rows));
    Ok(())
}

fn act(args: NameArgs, action: RolloutAction, client: &Client) -> Outcome {
    let view = call(client.act_on_rollout(&args.name, action))?;
    if args.connection.json {
        return print_json(&view);
    }
    println!("Rollout {} is {}", view.name, view.state.as_str());
    Ok(())
}

fn plan(args: NameArgs, client: &Client) -> Outcome {
    let plan: RolloutPlan = call(client.plan_rollout(&args.name))?;
    if args.connection.json {
        return print_json(&plan);
    }
    let mut out = format!("=== plan of rollout {} ({})\n", plan.name, plan.state.as_str());
    for wave in &plan.waves {
        out.push_str(&format!("--- wave {}: ready {}, ends {}\n", wave.number, reference_time(wave.ready_at), reference_time(wave.ends_at)));
        let rows = wave
            .databases
            .iter()
            .map(|m| {
                let how = if m.finished { "finished" } else if m.forced { "forced (outside its window)" } else { "in its window" };
                vec![m.database.clone(), reference_time(m.start), how.to_string()]
            })
            .collect();
        out.push_str(&table(&["DATABASE", "START", "HOW"], rows));
    }
    print!("{out}");
    Ok(())
}
