//! The control verbs: clients of the daemon's API, in the reference's vocabulary.
//!
//! `databases create|list|destroy`, `info`, `maintenance require|show|window|run|history`,
//! `wait`, `apps create|attach`, `apps maintenance on|off|show`, `config set|unset|show`,
//! `releases [info]`, `rollback`, `credentials rotate`. Every verb takes
//! `--socket PATH` (env `PGMAINT_SOCKET`) and `--json` (print the API's JSON).
//! Exit status: 0 done; 1 refused, not found, or the daemon unreachable;
//! 2 bad input (caught here before any request, or a 400 from the server).

use std::future::Future;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use pgmaint::api::{
    AdoptDatabase, AttachDatabase, Client, ClientError, CopyDatabase, CopyEvent, CopyPhase, CopyProgress, CreateApp, CreateDatabase, DatabaseInfo, ReleaseInfo,
    ReleaseOutcome, ReleaseSummary, RequireMaintenance, RotateCredentials, RunReportBody, SetConfig, SetLabels,
};
use pgmaint::engine::parse_version;
use pgmaint::model::{check_label_key, describe_labels, human_size, parse_labels, reference_time, Labels, Plan, Reason, NO_MAINTENANCE};
use pgmaint::schedule::{self, Window};

use super::{Failure, Outcome};

/// Where the packaged daemon listens (its default data directory's socket).
pub const DEFAULT_SOCKET: &str = "/var/lib/pgmaint/pgmaint.sock";

/// How to print (the daemon's socket is the global `--socket`).
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Print the API's JSON answer instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ControlCommand {
    /// Create, list and destroy databases.
    #[command(subcommand)]
    Databases(DatabasesCommand),
    /// A database's plan, status, size, leader, HA, maintenance, window and endpoint.
    Info(NameArgs),
    /// A database's maintenance: require, show, window, run, history.
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// Block until a database has finished what it is doing (creation, preparation, maintenance).
    Wait(WaitArgs),
    /// Apps: the consumers of databases, and their maintenance mode.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// An app's releases, newest first (`releases APP`), or one of them (`releases info APP vN`).
    Releases(ReleasesArgs),
    /// Roll an app's config back: a new release copying vN's (the previous release's without vN).
    Rollback(RollbackArgs),
    /// Change a database's plan: at once (essential, read-only meanwhile), or
    /// by a replacement on the new plan switched over in the window.
    Upgrade(super::plan_change::UpgradeArgs),
    /// Fleet rollouts: waves with a canary, bake time, and an automatic halt on failure.
    #[command(subcommand)]
    Rollout(super::rollout::RolloutCommand),
    /// Replace TARGET's data with a copy of SOURCE (schema, data, indexes,
    /// sequences, verified); SOURCE refuses writes while it runs.
    Copy(CopyArgs),
    /// A database's credentials: `credentials rotate NAME [--grace 5m]`.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
}

#[derive(Subcommand, Debug)]
pub enum CredentialsCommand {
    /// A new password (on the database's other login role); each attached app
    /// gets release `Rotate credentials NAME` and its restart hook; the old
    /// password stops working once every app restarted, or after --grace.
    Rotate(RotateArgs),
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The database.
    pub name: String,
    /// How long the old password keeps working at most (`5m`, `1h`, `30s`).
    #[arg(long, default_value = "5m")]
    pub grace: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReleasesArgs {
    #[command(subcommand)]
    pub command: Option<ReleasesCommand>,
    /// The app.
    #[arg(required = true)]
    pub app: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Subcommand, Debug)]
pub enum ReleasesCommand {
    /// A release's change, who made it, when, and the config at it.
    Info(ReleaseInfoArgs),
}

#[derive(Args, Debug)]
pub struct ReleaseInfoArgs {
    pub app: String,
    /// `v3` (or `3`).
    pub version: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    pub app: String,
    /// The release to copy (`v3`); the one before the latest when absent.
    pub version: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

/// `pgmaint config set|unset|show` (beside `config check`).
#[derive(Args, Debug)]
pub struct ConfigSetArgs {
    pub app: String,
    /// KEY=VALUE (repeatable): one release for all of them.
    #[arg(required = true, value_name = "KEY=VALUE")]
    pub values: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct ConfigUnsetArgs {
    pub app: String,
    pub key: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct ConfigShowArgs {
    pub app: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// The database copied from (read, never changed).
    pub source: String,
    /// The database whose data is replaced.
    pub target: String,
    /// Repeat the target's name: its data is replaced and cannot be recovered.
    #[arg(long, value_name = "TARGET")]
    pub confirm: String,
    /// Tables streamed in parallel.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Print every event the API streams (one JSON object a line) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum DatabasesCommand {
    /// Create a database (or a follower of one) and wait until it is available.
    Create(CreateArgs),
    /// Take over the maintenance of an existing Patroni cluster (its members stay Patroni's).
    Adopt(AdoptArgs),
    /// List the fleet.
    List(ConnectionArgs),
    /// Destroy a database, its servers and its records.
    Destroy(DestroyArgs),
    /// Set (KEY=VALUE...) and remove (--remove KEY) a database's labels.
    Label(LabelArgs),
    /// Stop a follower following, for good: it becomes a writable database (destructive).
    Unfollow(super::plan_change::UnfollowArgs),
    /// Make a database an app's DATABASE_URL (a release `Promote NAME`).
    Promote(super::plan_change::PromoteArgs),
}

#[derive(Subcommand, Debug)]
pub enum MaintenanceCommand {
    /// Record that a database needs maintenance by a deadline; it is planned into the window.
    Require(RequireArgs),
    /// One line: the pending maintenance, or `No maintenance required`.
    Show(NameArgs),
    /// Set the weekly window ("Sunday 14:30 [ZONE]", 4 hours) and re-plan into it.
    Window(WindowArgs),
    /// Run the pending maintenance now (needs the attached apps in maintenance mode, or --force).
    Run(RunArgs),
    /// Past maintenances of a database, newest first.
    History(NameArgs),
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// Create an app attached to a database as DATABASE_URL.
    Create(AppCreateArgs),
    /// Turn an app's maintenance mode on or off, or show it (`on` or `off`).
    Maintenance(AppMaintenanceArgs),
    /// Attach another database to an app as NAME_URL: a new release.
    Attach(AttachArgs),
}

#[derive(Args, Debug)]
pub struct AttachArgs {
    pub app: String,
    pub database: String,
    /// Attach as NAME_URL (default: the database's name upper-cased, `-` as `_`).
    #[arg(long = "as", value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct ConnectionArgs {
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    /// The database.
    pub name: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    pub name: String,
    /// `<tier>-<size>`, e.g. essential-0, standard-2, premium-4.
    #[arg(long)]
    pub plan: String,
    /// Create a streaming follower of this database.
    #[arg(long, value_name = "DB")]
    pub follow: Option<String>,
    #[command(flatten)]
    pub record: RecordArgs,
    #[command(flatten)]
    pub connection: Connection,
}

/// What `databases create` and `databases adopt` record of a new database.
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// The weekly maintenance window: "Sunday 14:30 [ZONE]" (default: the daemon's
    /// `[maintenance] default_window`, "Sunday 02:00 UTC" unless configured).
    #[arg(long)]
    pub window: Option<String>,
    /// An owner told before and after each maintenance (repeatable).
    #[arg(long = "owner", value_name = "EMAIL")]
    pub owners: Vec<String>,
    /// A label a rollout can select by (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
}

impl RecordArgs {
    /// The window (checked) and the labels, parsed.
    fn checked(&self) -> Result<Labels, Failure> {
        if let Some(window) = &self.window {
            window.parse::<Window>().map_err(|e| Failure::usage(format!("window {window:?}: {e}")))?;
        }
        parse_labels(&self.labels).map_err(Failure::usage)
    }
}

#[derive(Args, Debug)]
pub struct AdoptArgs {
    pub name: String,
    /// The cluster's Patroni REST API URLs, comma-separated (any one answering is enough).
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',', required = true)]
    pub patroni: Vec<String>,
    /// The PostgreSQL database clients use inside the cluster.
    #[arg(long, value_name = "DB")]
    pub dbname: String,
    /// `<tier>-<size>`, as recorded (default standard-0); an adopted cluster never changes plan.
    #[arg(long)]
    pub plan: Option<String>,
    #[command(flatten)]
    pub record: RecordArgs,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct LabelArgs {
    pub name: String,
    /// Labels to set.
    #[arg(value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A label to remove (repeatable).
    #[arg(long = "remove", value_name = "KEY")]
    pub remove: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct DestroyArgs {
    pub name: String,
    /// Repeat the database's name: destroying cannot be undone.
    #[arg(long, value_name = "NAME")]
    pub confirm: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct RequireArgs {
    pub name: String,
    /// os-patch, minor-upgrade, settings, plan-change or periodic.
    #[arg(long)]
    pub reason: String,
    /// The deadline, RFC 3339 (e.g. 2027-03-14T07:30:00Z).
    #[arg(long, value_name = "TS")]
    pub required_by: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct WindowArgs {
    pub name: String,
    /// "Sunday 14:30" or "Sunday 14:30 Asia/Tokyo".
    pub window: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    pub name: String,
    /// Run even though an attached app is not in maintenance mode.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    pub name: String,
    /// Give up after this long (e.g. 90s, 10m, 1h).
    #[arg(long, default_value = "1h", value_name = "DUR")]
    pub timeout: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Args, Debug)]
pub struct AppCreateArgs {
    pub app: String,
    /// The database to attach as DATABASE_URL.
    #[arg(long, value_name = "DB")]
    pub attach: String,
    /// Run (sh -c) when maintenance mode is turned on; PGMAINT_APP and PGMAINT_MAINTENANCE are set.
    #[arg(long, value_name = "CMD")]
    pub on_hook: Option<String>,
    /// Run (sh -c) when maintenance mode is turned off.
    #[arg(long, value_name = "CMD")]
    pub off_hook: Option<String>,
    /// Rewrite this file with the config (KEY=VALUE lines, mode 0640) at every release.
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// Run (sh -c) after every release; PGMAINT_APP and PGMAINT_RELEASE=vN are set.
    #[arg(long, value_name = "CMD")]
    pub restart_hook: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeAction {
    On,
    Off,
    Show,
}

#[derive(Args, Debug)]
pub struct AppMaintenanceArgs {
    /// on, off or show.
    pub action: ModeAction,
    pub app: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// Runs a control verb against the daemon listening on `socket`.
pub fn run(command: ControlCommand, socket: &Path) -> Outcome {
    let client = &Client::new(socket);
    match command {
        ControlCommand::Databases(DatabasesCommand::Create(args)) => create(args, client),
        ControlCommand::Databases(DatabasesCommand::Adopt(args)) => adopt(args, client),
        ControlCommand::Databases(DatabasesCommand::List(args)) => list(args.connection, client),
        ControlCommand::Databases(DatabasesCommand::Destroy(args)) => destroy(args, client),
        ControlCommand::Databases(DatabasesCommand::Label(args)) => label(args, client),
        ControlCommand::Databases(DatabasesCommand::Unfollow(args)) => super::plan_change::unfollow(args, client),
        ControlCommand::Databases(DatabasesCommand::Promote(args)) => super::plan_change::promote(args, client),
        ControlCommand::Upgrade(args) => super::plan_change::upgrade(args, client),
        ControlCommand::Info(args) => info(args, client),
        ControlCommand::Maintenance(MaintenanceCommand::Require(args)) => require(args, client),
        ControlCommand::Maintenance(MaintenanceCommand::Show(args)) => show(args, client),
        ControlCommand::Maintenance(MaintenanceCommand::Window(args)) => window(args, client),
        ControlCommand::Maintenance(MaintenanceCommand::Run(args)) => run_maintenance(args, client),
        ControlCommand::Maintenance(MaintenanceCommand::History(args)) => history(args, client),
        ControlCommand::Wait(args) => wait(args, client),
        ControlCommand::Apps(AppsCommand::Create(args)) => app_create(args, client),
        ControlCommand::Apps(AppsCommand::Maintenance(args)) => app_maintenance(args, client),
        ControlCommand::Apps(AppsCommand::Attach(args)) => attach(args, client),
        ControlCommand::Releases(ReleasesArgs { command: Some(ReleasesCommand::Info(args)), .. }) => release_info(args, client),
        ControlCommand::Releases(ReleasesArgs { command: None, app, connection }) => releases(app.unwrap_or_default(), connection, client),
        ControlCommand::Rollback(args) => rollback(args, client),
        ControlCommand::Copy(args) => copy(args, client),
        ControlCommand::Credentials(CredentialsCommand::Rotate(args)) => rotate(args, client),
        ControlCommand::Rollout(command) => super::rollout::run(command, client),
    }
}

/// Runs one request to completion on a small runtime.
pub(super) fn call<T>(request: impl Future<Output = Result<T, ClientError>>) -> Result<T, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Failure::failed)?;
    runtime.block_on(request).map_err(|error| match error.status() {
        Some(400) => Failure::usage(error),
        _ => Failure::failed(error),
    })
}

fn copy(args: CopyArgs, client: &Client) -> Outcome {
    if args.workers == 0 {
        return Err(Failure::usage("--workers must be at least 1"));
    }
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let json = args.json;
    let request = CopyDatabase { source: args.source.clone(), confirm: args.confirm.clone(), workers: Some(args.workers) };
    let mut last_phase: Option<CopyPhase> = None;
    let mut last_line = std::time::Instant::now();
    let on_event = |event: &CopyEvent| {
        if json {
            match serde_json::to_string(event) {
                Ok(line) => println!("{line}"),
                Err(error) => eprintln!("pgmaint: copy event: {error}"),
            }
            return;
        }
        let CopyEvent::Progress(progress) = event else { return };
        let line = progress_line(progress);
        if terminal {
            eprint!("\r\x1b[2K{line}");
        } else if Some(progress.phase) != last_phase || last_line.elapsed() >= std::time::Duration::from_secs(5) {
            eprintln!("{line}");
            last_line = std::time::Instant::now();
        }
        last_phase = Some(progress.phase);
    };
    if !json {
        eprintln!("Copying {} to {} ({} refuses writes until the copy ends)...", args.source, args.target, args.source);
    }
    let result = call(client.copy_database(&args.target, &request, on_event));
    if terminal && !json {
        eprintln!();
    }
    let done = result?;
    if json {
        return Ok(());
    }
    let report = &done.report;
    println!(
        "Copied {} to {}: {} tables, {} rows, {} in {:.1}s (verified)",
        done.source,
        done.target,
        report.tables.len(),
        report.rows,
        human_size(i64::try_from(report.bytes).unwrap_or(i64::MAX)),
        report.seconds
    );
    Ok(())
}

/// `data: 1.2 GB of ~2.0 GB, 3/8 tables, ETA 9s`.
fn progress_line(progress: &CopyProgress) -> String {
    let size = |bytes: u64| human_size(i64::try_from(bytes).unwrap_or(i64::MAX));
    let eta = match (progress.phase, progress.eta_seconds) {
        (CopyPhase::Data, Some(eta)) => format!(", ETA {eta:.0}s"),
        _ => String::new(),
    };
    format!(
        "{}: {} of ~{}, {}/{} tables{eta} ({:.1}s)",
        progress.phase,
        size(progress.bytes),
        size(progress.bytes_estimate),
        progress.tables_done,
        progress.tables_total,
        progress.elapsed_seconds
    )
}

pub(super) fn print_json(value: &impl serde::Serialize) -> Outcome {
    println!("{}", serde_json::to_string_pretty(value).map_err(Failure::failed)?);
    Ok(())
}

fn create(args: CreateArgs, client: &Client) -> Outcome {
    args.plan.parse::<Plan>().map_err(Failure::usage)?;
    let labels = args.record.checked()?;
    let request =
        CreateDatabase { name: args.name, plan: args.plan, follow: args.follow, window: args.record.window, owners: args.record.owners, labels };
    if !args.connection.json {
        eprintln!("Creating {} ({})...", request.name, request.plan);
    }
    let info = call(client.create_database(&request))?;
    if args.connection.json {
        return print_json(&info);
    }
    print!("{}", info_block(&info));
    Ok(())
}

fn adopt(args: AdoptArgs, client: &Client) -> Outcome {
    if let Some(plan) = &args.plan {
        plan.parse::<Plan>().map_err(Failure::usage)?;
    }
    let labels = args.record.checked()?;
    let request = AdoptDatabase {
        name: args.name,
        patroni: args.patroni.into_iter().map(|url| url.trim().to_string()).filter(|url| !url.is_empty()).collect(),
        dbname: args.dbname,
        plan: args.plan,
        window: args.record.window,
        owners: args.record.owners,
        labels,
    };
    if !args.connection.json {
        eprintln!("Adopting {} (Patroni REST API at {} URL{})...", request.name, request.patroni.len(), if request.patroni.len() == 1 { "" } else { "s" });
    }
    let info = call(client.adopt_database(&request))?;
    if args.connection.json {
        return print_json(&info);
    }
    print!("{}", info_block(&info));
    Ok(())
}

fn list(connection: Connection, client: &Client) -> Outcome {
    let databases = call(client.list_databases())?;
    if connection.json {
        return print_json(&databases);
    }
    if databases.is_empty() {
        println!("No databases");
        return Ok(());
    }
    let rows = databases
        .into_iter()
        .map(|d| {
            let labels = describe_labels(&d.labels);
            vec![d.name, d.plan, d.role.as_str().to_string(), d.following.unwrap_or_else(|| "-".into()), d.status, labels, d.window]
        })
        .collect();
    print!("{}", table(&["NAME", "PLAN", "ROLE", "FOLLOWING", "STATUS", "LABELS", "WINDOW"], rows));
    Ok(())
}

fn label(args: LabelArgs, client: &Client) -> Outcome {
    if args.set.is_empty() && args.remove.is_empty() {
        return Err(Failure::usage("give labels to set (KEY=VALUE) or --remove KEY"));
    }
    let set = parse_labels(&args.set).map_err(Failure::usage)?;
    args.remove.iter().try_for_each(|key| check_label_key(key)).map_err(Failure::usage)?;
    let answer = call(client.set_labels(&args.name, &SetLabels { set, remove: args.remove }))?;
    if args.connection.json {
        return print_json(&answer);
    }
    println!("Labels of {}: {}", answer.name, describe_labels(&answer.labels));
    Ok(())
}

fn destroy(args: DestroyArgs, client: &Client) -> Outcome {
    let destroyed = call(client.destroy_database(&args.name, &args.confirm))?;
    if args.connection.json {
        return print_json(&destroyed);
    }
    println!("Destroyed {}", args.name);
    Ok(())
}

fn info(args: NameArgs, client: &Client) -> Outcome {
    let info = call(client.info(&args.name))?;
    if args.connection.json {
        return print_json(&info);
    }
    print!("{}", info_block(&info));
    Ok(())
}

/// The `pg:info` block.
pub(super) fn info_block(info: &DatabaseInfo) -> String {
    let mut lines = vec![format!("=== {}", info.name)];
    let mut field = |label: &str, value: String| lines.push(format!("{:<20}{value}", format!("{label}:")));
    field("Plan", info.plan.clone());
    field("Status", info.status.clone());
    field("Data Size", info.data_size_bytes.map_or_else(|| "unknown".to_string(), human_size));
    if let Some(leader) = &info.following {
        field("Following", leader.clone());
        field("Behind By", info.behind_by.map_or_else(|| "unknown".to_string(), |n| format!("{n} commits")));
        if let Some(caught_up) = info.caught_up {
            field("Caught Up", if caught_up { "yes (within 200 commits)".into() } else { "no (more than 200 commits behind)".into() });
        }
    }
    if let Some(origin) = &info.forked_from {
        field("Forked From", origin.clone());
    }
    if let Some(ha) = &info.ha {
        field("HA", ha.clone());
    }
    field("Maintenance", info.maintenance.as_ref().map_or_else(|| "not required".to_string(), |m| m.info_field.clone()));
    if let Some(maintenance) = &info.maintenance {
        if let Some(plan) = &maintenance.target_plan {
            field("Plan Change", format!("{} -> {plan}", info.plan));
        }
        if let Some(progress) = &maintenance.progress_line {
            field("Progress", progress.clone());
        }
    }
    field("Labels", describe_labels(&info.labels));
    field("Maintenance window", info.window.clone());
    field("Endpoint", info.endpoint_url.clone());
    if let Some(members) = &info.members {
        field("Patroni leader", info.leader.clone().unwrap_or_else(|| "none (the cluster did not answer or has no leader)".into()));
        field("Timeline", info.timeline.map_or_else(|| "unknown".to_string(), |t| t.to_string()));
        field("Credentials", "clients' own roles (looked up on the cluster)".into());
        lines.push(String::new());
        let rows = members
            .iter()
            .map(|m| {
                vec![
                    m.name.clone(),
                    m.address.clone(),
                    m.role.clone(),
                    m.state.clone(),
                    m.lag_bytes.map_or_else(|| "-".to_string(), |lag| lag.to_string()),
                    if m.pending_restart { "yes".into() } else { "no".into() },
                    m.server_version.map_or_else(|| "unknown".to_string(), |v| v.to_string()),
                    m.timeline.map_or_else(|| "-".to_string(), |t| t.to_string()),
                ]
            })
            .collect();
        lines.push(table(&["MEMBER", "ADDRESS", "ROLE", "STATE", "LAG", "PENDING RESTART", "VERSION", "TL"], rows).trim_end().to_string());
    } else {
        let rotated = info.credentials_rotated_at.map(|at| format!("last rotated {}", at.format("%Y-%m-%d %H:%M:%S %z")));
        field("Credentials", rotated.unwrap_or_else(|| "never rotated".to_string()));
    }
    lines.push(String::new());
    lines.join("\n")
}

fn require(args: RequireArgs, client: &Client) -> Outcome {
    let reason: Reason = args.reason.parse().map_err(Failure::usage)?;
    let required_by = schedule::parse_timestamp(&args.required_by).map_err(Failure::usage)?;
    let request = RequireMaintenance { reason: reason.as_str().to_string(), required_by: schedule::format_timestamp(required_by) };
    let view = call(client.require_maintenance(&args.name, &request))?;
    if args.connection.json {
        return print_json(&view);
    }
    println!("Maintenance required for {} ({}, strategy {})", args.name, view.reason, view.strategy);
    println!("{}", view.status_line);
    Ok(())
}

fn show(args: NameArgs, client: &Client) -> Outcome {
    let status = call(client.maintenance(&args.name))?;
    if args.connection.json {
        return print_json(&status);
    }
    println!("{}", status.status_line);
    if let Some(maintenance) = &status.maintenance {
        if let Some(plan) = &maintenance.target_plan {
            println!("Plan change to {plan}");
        }
        if let Some(progress) = &maintenance.progress_line {
            println!("Progress: {progress}");
        }
    }
    Ok(())
}

fn window(args: WindowArgs, client: &Client) -> Outcome {
    args.window.parse::<Window>().map_err(|e| Failure::usage(format!("window {:?}: {e}", args.window)))?;
    let status = call(client.set_window(&args.name, &args.window))?;
    if args.connection.json {
        return print_json(&status);
    }
    if status.status.maintenance.is_some() {
        println!("{}", status.status.status_line);
    } else {
        println!("{NO_MAINTENANCE}, window is {}", status.window);
    }
    Ok(())
}

fn run_maintenance(args: RunArgs, client: &Client) -> Outcome {
    if !args.connection.json {
        eprintln!("Running maintenance on {}{}; this returns when it has finished...", args.name, if args.force { " (forced)" } else { "" });
    }
    let report = call(client.run_maintenance(&args.name, args.force))?;
    if args.connection.json {
        print_json(&report)?;
    } else {
        print!("{}", run_report(&args.name, &report));
    }
    run_outcome(&args.name, &report)
}

/// A run that was called off and postponed did not do the maintenance: the verb fails (exit 1).
fn run_outcome(name: &str, report: &RunReportBody) -> Outcome {
    match &report.postponed_because {
        Some(why) => Err(Failure::failed(format!("maintenance on {name} postponed: {why}"))),
        None => Ok(()),
    }
}

pub(super) fn run_report(name: &str, report: &RunReportBody) -> String {
    let mut out = format!("Maintenance #{} on {name}: {}\n", report.maintenance_id, report.outcome);
    out.push_str(&format!("{:<14}{}\n", "Strategy:", report.strategy));
    out.push_str(&format!("{:<14}{}\n", "Write pause:", report.write_pause_ms.map_or_else(|| "none".to_string(), milliseconds)));
    if !report.steps.is_empty() {
        out.push_str("Steps:\n");
        let width = report.steps.iter().map(|s| s.step.len()).max().unwrap_or(0);
        for step in &report.steps {
            out.push_str(&format!("  {:<width$}  {}\n", step.step, milliseconds(step.seconds * 1000.0)));
        }
    }
    out
}

fn milliseconds(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn history(args: NameArgs, client: &Client) -> Outcome {
    let rows = call(client.history(&args.name))?;
    if args.connection.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        println!("No maintenance history for {}", args.name);
        return Ok(());
    }
    let when = |t: Option<DateTime<Utc>>| t.map_or_else(|| "-".to_string(), reference_time);
    let rows = rows
        .into_iter()
        .map(|m| {
            let outcome = match (m.outcome, m.error, m.check_error) {
                (Some(outcome), Some(error), _) => format!("{outcome}: {error}"),
                (Some(outcome), None, Some(check)) => format!("{outcome}, check failed: {check}"),
                (Some(outcome), None, None) => outcome,
                (None, _, _) => m.state.as_str().to_string(),
            };
            vec![
                format!("#{}", m.id),
                m.strategy,
                m.reason,
                when(m.started_at),
                when(m.finished_at),
                m.duration_seconds.map_or_else(|| "-".to_string(), |s| format!("{s:.1}s")),
                m.write_pause_ms.map_or_else(|| "-".to_string(), milliseconds),
                outcome,
            ]
        })
        .collect();
    print!("{}", table(&["ID", "STRATEGY", "REASON", "STARTED", "ENDED", "DURATION", "WRITE PAUSE", "OUTCOME"], rows));
    Ok(())
}

fn wait(args: WaitArgs, client: &Client) -> Outcome {
    let timeout = schedule::parse_duration(&args.timeout).map_err(Failure::usage)?;
    // Whole seconds on the wire, rounded up: `--timeout 500ms` waits a second, not none.
    let seconds = u64::try_from((timeout.num_milliseconds() + 999) / 1000).map_err(|_| Failure::usage(format!("invalid timeout {:?}", args.timeout)))?;
    if !args.connection.json {
        eprintln!("Waiting for {}...", args.name);
    }
    let idle = call(client.wait(&args.name, seconds))?;
    if args.connection.json {
        return print_json(&idle);
    }
    println!("{} is idle", args.name);
    Ok(())
}

fn app_create(args: AppCreateArgs, client: &Client) -> Outcome {
    let env_file = match args.env_file {
        Some(path) => Some(std::path::absolute(&path).map_err(|e| Failure::usage(format!("env file {}: {e}", path.display())))?.display().to_string()),
        None => None,
    };
    let request =
        CreateApp { name: args.app, attach: args.attach, on_hook: args.on_hook, off_hook: args.off_hook, env_file, restart_hook: args.restart_hook };
    let app = call(client.create_app(&request))?;
    if args.connection.json {
        print_json(&app)?;
    } else {
        let version = app.release.as_ref().map(|r| format!(", {}", r.info.summary.release)).unwrap_or_default();
        println!("Created app {} with {} attached as DATABASE_URL{version}", app.name, request.attach);
    }
    app.release.as_ref().map_or(Ok(()), released_ok)
}

fn rotate(args: RotateArgs, client: &Client) -> Outcome {
    let grace = schedule::parse_duration(&args.grace).map_err(Failure::usage)?;
    let grace_seconds = u64::try_from(grace.num_seconds()).map_err(|_| Failure::usage(format!("invalid grace {:?}", args.grace)))?;
    let rotation = call(client.rotate_credentials(&args.name, &RotateCredentials { grace_seconds: Some(grace_seconds) }))?;
    if args.connection.json {
        print_json(&rotation)?;
    } else {
        println!("Rotated the credentials of {}: its URL now names role {}", rotation.database, rotation.role);
        for release in &rotation.releases {
            println!("Released {} {} ({})", release.info.summary.app, release.info.summary.release, release.info.summary.change);
        }
        if rotation.previous_retired {
            println!("The previous password (role {}) no longer works", rotation.previous_role);
        } else {
            let until = rotation.previous_valid_until.format("%Y-%m-%d %H:%M:%S %z");
            println!("The previous password (role {}) works until {until}, or until every app has restarted", rotation.previous_role);
        }
    }
    rotation.releases.iter().try_for_each(released_ok)
}

/// Warnings go to stderr (with or without --json); a release that could not be
/// applied (env file, restart hook) fails the verb after it was recorded.
fn released_ok(release: &ReleaseOutcome) -> Outcome {
    for warning in &release.warnings {
        eprintln!("warning: {warning}");
    }
    match &release.restart_error {
        Some(error) => Err(Failure::failed(format!("{} was created but not applied: {error}", release.info.summary.release))),
        None => Ok(()),
    }
}

/// Prints `<doing>... done, vN` (or the JSON) and checks the release.
fn report_release(release: &ReleaseOutcome, json: bool, doing: &str) -> Outcome {
    if json {
        print_json(release)?;
    } else {
        println!("{doing}... done, {}", release.info.summary.release);
    }
    released_ok(release)
}

fn attach(args: AttachArgs, client: &Client) -> Outcome {
    let request = AttachDatabase { database: args.database.clone(), name: args.name.clone() };
    let release = call(client.attach(&args.app, &request))?;
    let key = pgmaint::engine::attachment_key(&args.database, args.name.as_deref()).unwrap_or_default();
    report_release(&release, args.connection.json, &format!("Attaching {} to {} as {key} and restarting", args.database, args.app))
}

pub fn config_set(args: ConfigSetArgs, client: &Client) -> Outcome {
    let mut config = std::collections::BTreeMap::new();
    for pair in &args.values {
        let (key, value) = pair.split_once('=').ok_or_else(|| Failure::usage(format!("{pair:?} is not KEY=VALUE")))?;
        if key.is_empty() {
            return Err(Failure::usage(format!("{pair:?} has no key")));
        }
        config.insert(key.to_string(), value.to_string());
    }
    let keys: Vec<&str> = config.keys().map(String::as_str).collect();
    let doing = format!("Setting {} and restarting {}", keys.join(", "), args.app);
    let release = call(client.set_config(&args.app, &SetConfig { config: config.clone() }))?;
    report_release(&release, args.connection.json, &doing)
}

pub fn config_unset(args: ConfigUnsetArgs, client: &Client) -> Outcome {
    let release = call(client.unset_config(&args.app, &args.key))?;
    report_release(&release, args.connection.json, &format!("Unsetting {} and restarting {}", args.key, args.app))
}

pub fn config_show(args: ConfigShowArgs, client: &Client) -> Outcome {
    let shown = call(client.config(&args.app))?;
    if args.connection.json {
        return print_json(&shown);
    }
    for (key, value) in shown.config {
        println!("{key}={value}");
    }
    Ok(())
}

fn releases(app: String, connection: Connection, client: &Client) -> Outcome {
    let rows = call(client.releases(&app))?;
    if connection.json {
        return print_json(&rows);
    }
    print!("{}", releases_table(&app, rows));
    Ok(())
}

/// `=== APP Releases`, then `Rel  Change  By  When`, newest first; expired ones end with `expired`.
fn releases_table(app: &str, rows: Vec<ReleaseSummary>) -> String {
    if rows.is_empty() {
        return format!("{app} has no releases\n");
    }
    let rows = rows
        .into_iter()
        .map(|r| {
            let when = reference_time(r.created_at);
            vec![r.release, r.change, r.made_by, if r.expired { format!("{when}  expired") } else { when }]
        })
        .collect();
    format!("=== {app} Releases\n{}", table(&["Rel", "Change", "By", "When"], rows))
}

fn release_info(args: ReleaseInfoArgs, client: &Client) -> Outcome {
    let version = parse_version(&args.version).map_err(Failure::usage)?;
    let release = call(client.release(&args.app, version))?;
    if args.connection.json {
        return print_json(&release);
    }
    print!("{}", release_block(&args.app, &release));
    Ok(())
}

fn release_block(app: &str, release: &ReleaseInfo) -> String {
    let row = &release.summary;
    let mut out = format!("=== Release {} of {app}\n", row.release);
    out.push_str(&format!("{:<9}{}\n", "Change:", row.change));
    out.push_str(&format!("{:<9}{}\n", "By:", row.made_by));
    out.push_str(&format!("{:<9}{}\n", "When:", reference_time(row.created_at)));
    match &release.config {
        Some(config) if !row.expired => {
            out.push_str(&format!("=== {app} Config vars at {}\n", row.release));
            for (key, value) in config {
                out.push_str(&format!("{key}={value}\n"));
            }
        }
        _ => out.push_str(&format!("{:<9}expired: its config was discarded and it cannot be rolled back to\n", "Config:")),
    }
    out
}

fn rollback(args: RollbackArgs, client: &Client) -> Outcome {
    let version = args.version.as_deref().map(parse_version).transpose().map_err(Failure::usage)?;
    let release = call(client.rollback(&args.app, version))?;
    let target = release.rolled_back_to.map_or_else(|| "the previous release".to_string(), |version| format!("v{version}"));
    report_release(&release, args.connection.json, &format!("Rolling back {} to {target}", args.app))
}

fn app_maintenance(args: AppMaintenanceArgs, client: &Client) -> Outcome {
    let app = match args.action {
        ModeAction::On => call(client.set_app_maintenance(&args.app, true))?,
        ModeAction::Off => call(client.set_app_maintenance(&args.app, false))?,
        ModeAction::Show => call(client.app_maintenance(&args.app))?,
    };
    if args.connection.json {
        return print_json(&app);
    }
    let mode = if app.maintenance { "on" } else { "off" };
    match args.action {
        ModeAction::Show => println!("{mode}"),
        _ => println!("Maintenance mode is {mode} for {}", app.name),
    }
    Ok(())
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(super) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(&cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use pgmaint::api::{MaintenanceView, Role};
    use pgmaint::model::{Progress, Replacement, Strategy};
    use pgmaint::store::MaintenanceState;

    use super::*;

    #[test]
    fn info_block_has_the_reference_fields() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let info = DatabaseInfo {
            name: "orders".into(),
            plan: "standard-0".into(),
            role: Role::Follower,
            status: "available".into(),
            endpoint_url: "postgresql://orders_1:secret@127.0.0.1:6432/orders".into(),
            credentials_rotated_at: Some(at("2026-11-30T09:00:00Z")),
            following: Some("orders-leader".into()),
            forked_from: None,
            behind_by: Some(0),
            caught_up: Some(true),
            ha: None,
            data_size_bytes: Some(7_969_177),
            maintenance: Some(MaintenanceView {
                id: 7,
                reason: "plan-change".into(),
                strategy: Strategy::Switchover,
                state: MaintenanceState::Ready,
                step: None,
                required_by: at("2026-12-04T21:00:00Z"),
                scheduled_for: Some(at("2026-12-01T14:30:00Z")),
                window_end: Some(at("2026-12-01T18:30:00Z")),
                forced: false,
                forced_reason: None,
                replacement: Some(Replacement::Ready),
                status_line: String::new(),
                info_field: "scheduled for 2026-12-01 14:30:00 +0000, required by 2026-12-04 21:00:00 +0000, replacement ready".into(),
                target_plan: Some("standard-2".into()),
                progress: Some(Progress::Ready { plan: "standard-2".into() }),
                progress_line: Some("replacement on standard-2 ready".into()),
            }),
            window: "Tuesdays 14:30 to 18:30 UTC".into(),
            labels: [("tier".to_string(), "gold".to_string())].into(),
            leader: None,
            timeline: None,
            members: None,
        };
        assert_eq!(
            info_block(&info),
            "=== orders\n\
             Plan:               standard-0\n\
             Status:             available\n\
             Data Size:          7.6 MB\n\
             Following:          orders-leader\n\
             Behind By:          0 commits\n\
             Caught Up:          yes (within 200 commits)\n\
             Maintenance:        scheduled for 2026-12-01 14:30:00 +0000, required by 2026-12-04 21:00:00 +0000, replacement ready\n\
             Plan Change:        standard-0 -> standard-2\n\
             Progress:           replacement on standard-2 ready\n\
             Labels:             tier=gold\n\
             Maintenance window: Tuesdays 14:30 to 18:30 UTC\n\
             Endpoint:           postgresql://orders_1:secret@127.0.0.1:6432/orders\n\
             Credentials:        last rotated 2026-11-30 09:00:00 +0000\n"
        );
    }

    #[test]
    fn releases_read_like_the_reference() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let row = |rel: &str, change: &str, when: &str, expired: bool| ReleaseSummary {
            app: "web".into(),
            version: rel[1..].parse().unwrap(),
            release: rel.into(),
            change: change.into(),
            made_by: "root".into(),
            created_at: at(when),
            expired,
        };
        let text = releases_table(
            "web",
            vec![row("v10", "Set READ_ONLY", "2026-11-22T16:40:00Z", false), row("v9", "Attach blog", "2026-09-01T08:00:00Z", true)],
        );
        assert_eq!(
            text,
            "=== web Releases\n\
             Rel  Change         By    When\n\
             v10  Set READ_ONLY  root  2026-11-22 16:40:00 +0000\n\
             v9   Attach blog    root  2026-09-01 08:00:00 +0000  expired\n"
        );
        let info = ReleaseInfo { summary: row("v2", "Set A", "2026-11-22T16:40:00Z", false), config: Some([("A".to_string(), "1".to_string())].into()) };
        assert_eq!(
            release_block("web", &info),
            "=== Release v2 of web\nChange:  Set A\nBy:      root\nWhen:    2026-11-22 16:40:00 +0000\n=== web Config vars at v2\nA=1\n"
        );
    }

    #[test]
    fn a_postponed_run_fails_the_verb_with_its_reason() {
        let report = |postponed_because: Option<&str>| RunReportBody {
            maintenance_id: 3,
            strategy: Strategy::Switchover,
            // The words are for people; the verb decides on the field.
            outcome: "words that may change".into(),
            postponed_because: postponed_because.map(Into::into),
            write_pause_ms: Some(12.5),
            steps: Vec::new(),
        };
        assert!(run_outcome("orders", &report(None)).is_ok());
        let failure = run_outcome("orders", &report(Some("the candidate had not received the shutdown checkpoint"))).unwrap_err();
        assert_eq!(failure.code, 1);
        assert_eq!(failure.message, "maintenance on orders postponed: the candidate had not received the shutdown checkpoint");
    }

    #[test]
    fn tables_align() {
        let text = table(&["A", "BB"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(text, "A    BB\nxyz  1\n");
    }
}
