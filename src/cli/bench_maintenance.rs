//! `pgmaint bench switchover|failover|restart`: builds its own servers, runs
//! writers through the endpoint, performs the maintenance and prints what
//! clients felt (longest gap between commits, errors, lost commits) and the
//! time of each step. With `--floor` the same writers then live through the
//! hand floor (`bench_floor.rs`) on the same servers, and the ratio of the
//! two longest gaps is printed. A program that prints figures, not a timed test.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use pgmaint::engine::{DatabaseSpec, Engine};
use pgmaint::model::{Reason, Strategy};
use pgmaint::provider::local::LocalProvider;
use pgmaint::provider::{Provider, StopMode};
use pgmaint::workload::pgbench::{self, Pgbench};
use pgmaint::workload::{self, Workload};
use serde::Serialize;

use super::bench_floor::{restart_by_hand, HandSwitch};
use super::{run_on_fleet, Failure, Outcome};

#[derive(clap::Args, Debug)]
pub struct BenchMaintenanceArgs {
    /// Concurrent writers through the endpoint.
    #[arg(long, default_value_t = 8)]
    pub writers: usize,
    /// How long the writers run; the maintenance starts halfway.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Data to generate before the run (MB), so replacement preparation has something to copy.
    #[arg(long, default_value_t = 64)]
    pub data_mb: u32,
    /// Also measure a careful operator's procedure by hand on the same
    /// servers and writers (pgmaint at a third of the run, the hand at two
    /// thirds) and print the ratio of the longest commit gaps.
    #[arg(long)]
    pub floor: bool,
    /// What the clients run: `writers` (pgmaint's own, one audited INSERT per
    /// round trip) or `tpcb` (pgbench's TPC-B-like script through libpq:
    /// five statements per transaction, a client aborted at its first error).
    #[arg(long, value_enum, default_value_t = BenchWorkload::Writers)]
    pub workload: BenchWorkload,
    /// Where the servers come from: `local` (pgmaint makes them) or, for
    /// `switchover` only, `patroni` (a throwaway 3-member Patroni cluster,
    /// compared with HAProxy + `patronictl switchover` on the same cluster).
    #[arg(long, value_enum, default_value_t = BenchProvider::Local)]
    pub provider: BenchProvider,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--provider`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchProvider {
    Local,
    Patroni,
}

/// `--workload`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchWorkload {
    Writers,
    Tpcb,
}

/// The clients running through the endpoint.
#[expect(clippy::large_enum_variant, reason = "one value per run: boxing would buy nothing")]
enum Load {
    Writers(Workload),
    Tpcb(Pgbench),
}

/// What the clients felt, whichever they were.
struct Felt {
    acknowledged: usize,
    client_errors: usize,
    lost: usize,
    max_commit_gap: Duration,
    /// When each commit returned, in order.
    commit_times: Vec<Instant>,
}

impl Felt {
    fn longest_gap_within(&self, from: Instant, to: Instant) -> Duration {
        workload::longest_gap(&self.commit_times, from, to)
    }
}

impl Load {
    fn start(url: &str, args: &BenchMaintenanceArgs) -> anyhow::Result<Load> {
        Ok(match args.workload {
            BenchWorkload::Writers => Load::Writers(Workload::start(url, args.writers)),
            BenchWorkload::Tpcb => {
                let bindir = pgmaint::provider::local::find_bindir()?;
                Load::Tpcb(Pgbench::start(&bindir, url, args.writers, args.seconds.ceil() as u64)?)
            }
        })
    }

    async fn stop(self, url: &str) -> anyhow::Result<Felt> {
        Ok(match self {
            Load::Writers(writers) => {
                let load = writers.stop().await?;
                let lost = load.lost_on(url).await?.len();
                Felt {
                    acknowledged: load.acknowledged.len(),
                    client_errors: load.client_errors,
                    lost,
                    max_commit_gap: load.max_commit_gap,
                    commit_times: load.commit_times,
                }
            }
            Load::Tpcb(pgbench) => {
                let report = pgbench.wait().await?;
                if !report.errors.is_empty() {
                    eprintln!("pgbench said:\n  {}", report.errors.join("\n  "));
                }
                let refused = usize::from(!report.exit_ok && report.failed == 0 && report.aborted_clients == 0);
                Felt {
                    acknowledged: usize::try_from(report.transactions).unwrap_or(usize::MAX),
                    client_errors: usize::try_from(report.failed).unwrap_or(usize::MAX) + report.aborted_clients + refused,
                    lost: usize::try_from(report.lost()).unwrap_or(usize::MAX),
                    max_commit_gap: report.max_commit_gap,
                    commit_times: report.commit_times,
                }
            }
        })
    }
}

/// What the writers felt of the hand floor.
#[derive(Serialize)]
struct FloorReport {
    max_commit_gap_ms: f64,
    write_pause_ms: f64,
    /// pgmaint's longest gap over the floor's: at most 1.0 is the target.
    ratio: f64,
}

#[derive(Serialize)]
struct BenchReport {
    strategy: Strategy,
    workload: BenchWorkload,
    writers: usize,
    seconds: f64,
    data_mb: u32,
    acknowledged: usize,
    client_errors: usize,
    lost: usize,
    max_commit_gap_ms: f64,
    write_pause_ms: Option<f64>,
    /// Replacement (or HA standby) preparation, and a bare pg_basebackup of the same data.
    prepare_seconds: f64,
    bare_basebackup_seconds: Option<f64>,
    steps_ms: Vec<(String, f64)>,
    outcome: String,
    /// The longest commit gap around pgmaint's own run (with `--floor`, the
    /// writers also live through the hand floor, so `max_commit_gap_ms` is the larger of both).
    maintenance_gap_ms: f64,
    floor: Option<FloorReport>,
}

pub fn bench(strategy: Strategy, args: BenchMaintenanceArgs) -> Outcome {
    match (args.provider, strategy) {
        (BenchProvider::Local, _) => {}
        (BenchProvider::Patroni, Strategy::Switchover) if args.workload == BenchWorkload::Writers => return super::bench_patroni::bench(args),
        (BenchProvider::Patroni, Strategy::Switchover) => return Err(Failure::usage("--workload tpcb is measured with --provider local only")),
        (BenchProvider::Patroni, _) => return Err(Failure::usage("--provider patroni measures `bench switchover` only (Patroni decides failovers itself)")),
    }
    if args.writers == 0 || args.seconds.is_nan() || args.seconds <= 0.0 {
        return Err(Failure::usage("--writers and --seconds must be positive"));
    }
    let dir = tempfile::Builder::new().prefix("pgmaint-bench-").tempdir_in("/tmp").map_err(Failure::failed)?;
    let report =
        run_on_fleet(&super::scratch_config(dir.path()), false, async |engine: Arc<Engine>| measure(&engine, dir.path(), strategy, &args).await)?;
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(Failure::failed)?);
    } else {
        print_human(&report);
    }
    Ok(())
}

async fn measure(engine: &Engine, data_dir: &Path, strategy: Strategy, args: &BenchMaintenanceArgs) -> anyhow::Result<BenchReport> {
    let (plan, reason) = match strategy {
        Strategy::Restart => ("essential-0", Reason::Settings),
        Strategy::Switchover => ("standard-0", Reason::OsPatch),
        Strategy::Failover => ("premium-0", Reason::Periodic),
        Strategy::Copy => anyhow::bail!("the copy strategy is measured by `pgmaint bench copy`"),
        Strategy::Rolling | Strategy::RollingLeaderFirst => anyhow::bail!("adopted Patroni clusters are measured by `pgmaint bench switchover --provider patroni`"),
        Strategy::Unfollow => anyhow::bail!("an unfollow holds no write back: there is nothing to measure"),
    };
    let spec = |name: &str, follow: Option<&str>| DatabaseSpec {
        name: name.into(),
        plan: plan.parse().expect("a known plan"),
        follow: follow.map(Into::into),
        window: "Sunday 02:00".into(),
        window_length: Duration::from_secs(4 * 3600),
        owners: Vec::new(),
        labels: Default::default(),
    };
    eprintln!("building servers...");
    engine.create_database(&spec("bench", None)).await?;
    if strategy == Strategy::Switchover {
        engine.create_database(&spec("bench-follower", Some("bench"))).await?;
    }
    let url = engine.endpoint_url("bench").await?;
    workload::prepare(&url).await?;
    if args.workload == BenchWorkload::Tpcb {
        pgbench::initialize(&pgmaint::provider::local::find_bindir()?, &url).await?;
    }
    if args.data_mb > 0 {
        eprintln!("generating {} MB...", args.data_mb);
        let rows = u64::from(args.data_mb) * 900;
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .simple_query(&format!("CREATE TABLE bench_fill AS SELECT g AS id, repeat('x', 1000) AS pad FROM generate_series(1, {rows}) g"))
            .await?;
    }
    let bare_basebackup_seconds = match strategy {
        Strategy::Restart => None,
        _ => Some(bare_basebackup(engine, data_dir).await?),
    };

    let maintenance = engine.require_maintenance("bench", reason, Utc::now() + chrono::Duration::days(1)).await?;
    let prepare_started = Instant::now();
    engine.prepare_maintenance(maintenance.id).await?;
    let prepare_seconds = prepare_started.elapsed().as_secs_f64();

    let shares = if args.floor { 3.0 } else { 2.0 };
    let at = |share: f64| Duration::from_secs_f64(args.seconds * share / shares);
    eprintln!("{} {:?} clients for {} s, {strategy} at {:.1} s...", args.writers, args.workload, args.seconds, at(1.0).as_secs_f64());
    let writers = Load::start(&url, args)?;
    let began = Instant::now();
    tokio::time::sleep(at(1.0)).await;
    let run_started = Instant::now();
    let run = engine.run_maintenance(maintenance.id).await?;
    let run_window = (run_started, Instant::now());
    let local = LocalProvider::open(data_dir).await?;
    let mut hand_candidate = None;
    let floor = if args.floor {
        let hand = match strategy {
            Strategy::Restart => None,
            _ => Some(HandSwitch::prepare(engine, &local, "bench").await?),
        };
        tokio::time::sleep(at(2.0).saturating_sub(began.elapsed())).await;
        eprintln!("the hand floor at {:.1} s...", began.elapsed().as_secs_f64());
        let started = Instant::now();
        let pause = match hand {
            Some(hand) => {
                hand_candidate = Some(hand.candidate().to_string());
                hand.run(engine, &local).await?
            }
            None => restart_by_hand(engine, &local, "bench").await?,
        };
        Some((started, Instant::now(), pause))
    } else {
        None
    };
    tokio::time::sleep(at(shares).saturating_sub(began.elapsed())).await;
    let load = writers.stop(&url).await?;
    if let Some(candidate) = &hand_candidate {
        local.stop(candidate, StopMode::Fast).await?;
    }
    let maintenance_gap = load.longest_gap_within(run_window.0, run_window.1);
    let floor = floor.map(|(from, to, pause)| {
        let gap = load.longest_gap_within(from, to);
        FloorReport { max_commit_gap_ms: ms(gap), write_pause_ms: ms(pause), ratio: maintenance_gap.as_secs_f64() / gap.as_secs_f64().max(1e-6) }
    });
    Ok(BenchReport {
        strategy,
        workload: args.workload,
        writers: args.writers,
        seconds: args.seconds,
        data_mb: args.data_mb,
        acknowledged: load.acknowledged,
        client_errors: load.client_errors,
        lost: load.lost,
        max_commit_gap_ms: ms(load.max_commit_gap),
        write_pause_ms: run.write_pause.map(ms),
        prepare_seconds,
        bare_basebackup_seconds,
        steps_ms: run.steps.iter().map(|(step, took)| (step.clone(), ms(*took))).collect(),
        outcome: run.outcome,
        maintenance_gap_ms: ms(maintenance_gap),
        floor,
    })
}

/// A plain pg_basebackup of the current primary, for comparison with
/// preparation (the bench's servers are local ones under `data_dir`).
async fn bare_basebackup(engine: &Engine, data_dir: &Path) -> anyhow::Result<f64> {
    let local = LocalProvider::open(data_dir).await?;
    let database = engine.store().database_named("bench").await?;
    let primary = local.cluster(&engine.store().current_instance(database.id).await?.location);
    let scratch = local.cluster(&engine.provider().new_location("bare"));
    let started = Instant::now();
    scratch.clone_from(&primary, None, "bare").await?;
    let took = started.elapsed().as_secs_f64();
    scratch.remove().await?;
    Ok(took)
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

fn print_human(report: &BenchReport) {
    println!("strategy            {}", report.strategy);
    println!("clients             {} {:?} for {} s ({} MB of data)", report.writers, report.workload, report.seconds, report.data_mb);
    println!("acknowledged        {}", report.acknowledged);
    println!("client errors       {}", report.client_errors);
    println!("lost commits        {}", report.lost);
    println!("max commit gap      {:.1} ms", report.max_commit_gap_ms);
    if let Some(pause) = report.write_pause_ms {
        println!("write pause         {pause:.1} ms (PAUSE done to RESUME done)");
    }
    println!("preparation         {:.2} s", report.prepare_seconds);
    if let Some(bare) = report.bare_basebackup_seconds {
        println!("bare pg_basebackup  {bare:.2} s");
    }
    for (step, took) in &report.steps_ms {
        println!("  step {step:<18} {took:.1} ms");
    }
    println!("outcome             {}", report.outcome);
    if let Some(floor) = &report.floor {
        println!("pgmaint's gap       {:.1} ms (around its own run)", report.maintenance_gap_ms);
        println!("hand floor gap      {:.1} ms (write pause {:.1} ms)", floor.max_commit_gap_ms, floor.write_pause_ms);
        println!("ratio               {:.2} (pgmaint / hand floor; target at most 1.0)", floor.ratio);
    }
}
