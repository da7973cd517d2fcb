//! The `pgmaint` command: the daemon, the demo and the control verbs.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pgmaint::api::Client;
use pgmaint::model::Strategy;

#[derive(Parser, Debug)]
#[command(name = "pgmaint", version, about = "Maintenance control plane for self-hosted PostgreSQL fleets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The daemon's API socket, for the control verbs (before or after the verb).
    #[arg(long, global = true, env = "PGMAINT_SOCKET", default_value = cli::control::DEFAULT_SOCKET, value_name = "PATH")]
    socket: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Maintenance windows: when the next occurrence of a window starts.
    #[command(subcommand)]
    Window(WindowCommand),
    /// Plan a maintenance into a window (pure; needs no daemon).
    Plan(cli::planning::PlanArgs),
    /// Build a small fleet here and watch it maintained: the quickest look at pgmaint.
    Demo(cli::demo::DemoArgs),
    /// The long-running daemon that plans and runs maintenance.
    Daemon(cli::daemon::DaemonArgs),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The daemon's configuration file (`check`), and apps' config vars (`set`, `unset`, `show`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The control verbs (databases, info, maintenance, wait, apps, releases, rollback): clients of the daemon's API.
    #[command(flatten)]
    Control(cli::control::ControlCommand),
}

#[derive(Subcommand, Debug)]
enum WindowCommand {
    /// The earliest occurrence of WINDOW that starts at or after --after.
    Next(cli::planning::WindowNextArgs),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Plan N random databases and report the time per database.
    Planner(cli::planning::BenchPlannerArgs),
    /// Plan a rollout of N random databases in W waves (`rollout plan`'s planner) and report the time.
    RolloutPlan(cli::planning::BenchRolloutPlanArgs),
    /// A switchover under a writer workload: max commit gap, errors, lost commits, step times.
    Switchover(cli::bench_maintenance::BenchMaintenanceArgs),
    /// A failover to the HA standby under a writer workload.
    Failover(cli::bench_maintenance::BenchMaintenanceArgs),
    /// A paused restart under a writer workload.
    Restart(cli::bench_maintenance::BenchMaintenanceArgs),
    /// `copy` of a generated multi-GB database: downtime per GB (reference: about 3 minutes).
    Copy(cli::bench_copy::BenchCopyArgs),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Parse and validate FILE and summarise it; exit status 2 if it is not valid.
    Check(cli::config_check::CheckArgs),
    /// Set an app's config vars: one new release, its env file rewritten, its restart hook run.
    Set(cli::control::ConfigSetArgs),
    /// Unset an app's config var: a new release.
    Unset(cli::control::ConfigUnsetArgs),
    /// An app's current config vars, as KEY=VALUE lines.
    Show(cli::control::ConfigShowArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Window(WindowCommand::Next(args)) => cli::planning::window_next(args),
        Command::Demo(args) => cli::demo::demo(args),
        Command::Daemon(args) => cli::daemon::daemon(args),
        Command::Plan(args) => cli::planning::plan(args),
        Command::Bench(BenchCommand::Planner(args)) => cli::planning::bench_planner(args),
        Command::Bench(BenchCommand::RolloutPlan(args)) => cli::planning::bench_rollout_plan(args),
        Command::Bench(BenchCommand::Switchover(args)) => cli::bench_maintenance::bench(Strategy::Switchover, args),
        Command::Bench(BenchCommand::Failover(args)) => cli::bench_maintenance::bench(Strategy::Failover, args),
        Command::Bench(BenchCommand::Restart(args)) => cli::bench_maintenance::bench(Strategy::Restart, args),
        Command::Bench(BenchCommand::Copy(args)) => cli::bench_copy::bench(args),
        Command::Config(ConfigCommand::Check(args)) => cli::config_check::check(args),
        Command::Config(ConfigCommand::Set(args)) => cli::control::config_set(args, &Client::new(&cli.socket)),
        Command::Config(ConfigCommand::Unset(args)) => cli::control::config_unset(args, &Client::new(&cli.socket)),
        Command::Config(ConfigCommand::Show(args)) => cli::control::config_show(args, &Client::new(&cli.socket)),
        Command::Control(command) => cli::control::run(command, &cli.socket),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("pgmaint: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
