//! `pgmaint demo`: the README's first command. Builds a small fleet on this
//! machine (a standard database with a follower, a premium one with its HA
//! standby, an essential one), runs writers against each through the
//! endpoint, requires maintenances that come due within seconds, lets the
//! daemon loop run them, shows progress, audits, and ends with a summary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use pgmaint::config::Config;
use pgmaint::daemon::serve;
use pgmaint::engine::{DatabaseSpec, Engine};
use pgmaint::model::Reason;
use pgmaint::store::MaintenanceState;
use pgmaint::workload::{self, Workload};

use super::{run_on_fleet, Failure, Outcome};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Directory for the demo's servers and state (default: a new one under /tmp).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Writers per database.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Keep the fleet running at the end instead of stopping it.
    #[arg(long)]
    pub keep: bool,
}

/// The demo fleet: name, plan, leader, and the maintenance it gets.
const FLEET: [(&str, &str, Option<&str>, Option<Reason>); 4] = [
    ("orders", "standard-0", None, Some(Reason::OsPatch)),
    ("orders-follower", "standard-0", Some("orders"), None),
    ("billing", "premium-0", None, Some(Reason::Periodic)),
    ("blog", "essential-0", None, Some(Reason::Settings)),
];

pub fn demo(args: DemoArgs) -> Outcome {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => tempfile::Builder::new().prefix("pgmaint-demo-").tempdir_in("/tmp").map_err(Failure::failed)?.keep(),
    };
    let config = super::scratch_config(&dir);
    run_on_fleet(&config, args.keep, async |engine: Arc<Engine>| run(&engine, &config, &args).await)?;
    println!("\nEverything the demo made is in {}", dir.display());
    Ok(())
}

async fn run(engine: &Arc<Engine>, config: &Config, args: &DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    println!("pgmaint demo: building a fleet of {} databases on this machine", FLEET.len());
    for (name, plan, follow, _) in FLEET {
        // Windows open one to two minutes from now, so the demo needs no waiting around.
        let offset = if name == "orders" || follow.is_some() { 2 } else { 3 };
        let spec = DatabaseSpec {
            name: name.into(),
            plan: plan.parse().map_err(anyhow::Error::msg)?,
            follow: follow.map(Into::into),
            window: demo_window(Utc::now(), offset),
            window_length: Duration::from_secs(4 * 3600),
            owners: vec![format!("owner@{name}.example")],
            labels: Default::default(),
        };
        let took = Instant::now();
        engine.create_database(&spec).await?;
        let extra = match (follow, plan.starts_with("premium")) {
            (Some(leader), _) => format!(", following {leader}"),
            (None, true) => ", with an HA standby".to_string(),
            _ => String::new(),
        };
        println!("  created {name:<16} {plan}{extra} in {:.1} s", took.elapsed().as_secs_f64());
    }

    let mut writers = HashMap::new();
    for (name, _, follow, _) in FLEET {
        if follow.is_none() {
            let url = engine.endpoint_url(name).await?;
            workload::prepare(&url).await?;
            writers.insert(name, (url.clone(), Workload::start(&url, args.writers)));
        }
    }
    println!("  {} writers per primary are inserting through PgBouncer over TCP, each as its database's own role:", args.writers);
    for (name, _, _, _) in FLEET {
        println!("    {name:<16} {}", engine.endpoint_url(name).await?);
    }

    let mut maintenances = Vec::new();
    for (name, _, _, reason) in FLEET {
        if let Some(reason) = reason {
            let view = engine.require(name, reason, Utc::now() + chrono::Duration::days(3), Utc::now()).await?;
            println!("  required {reason} on {name}: {}", view.status_line);
            maintenances.push((name, view.id));
        }
    }

    println!("\nThe daemon loop runs them at their windows (meanwhile: pgmaint info orders --socket {}):", config.api.socket.display());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn({
        let engine = engine.clone();
        let config = config.clone();
        async move { serve(engine, &config, false, async { let _ = stop_rx.await; }).await }
    });
    let mut last_steps: HashMap<i64, String> = HashMap::new();
    loop {
        report_progress(engine, &maintenances, &mut last_steps).await?;
        let mut open = 0;
        for (_, id) in &maintenances {
            let state = engine.store().maintenance(*id).await?.state;
            open += usize::from(!matches!(state, MaintenanceState::Completed | MaintenanceState::Failed));
        }
        if open == 0 || daemon.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    daemon.await??;
    engine.deliver_mail().await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    println!("\nSummary ({:.0} s):", started.elapsed().as_secs_f64());
    println!("  {:<10} {:<11} {:<10} {:>12} {:>14} {:>8} {:>7} {:>5}", "database", "strategy", "outcome", "write pause", "max gap seen", "commits", "errors", "lost");
    for (name, id) in &maintenances {
        let record = engine.store().maintenance(*id).await?;
        let (url, workload) = writers.remove(name).expect("a workload per primary");
        let load = workload.stop().await?;
        let lost = load.lost_on(&url).await?.len();
        println!(
            "  {:<10} {:<11} {:<10} {:>9.1} ms {:>11.1} ms {:>8} {:>7} {:>5}",
            name,
            record.strategy,
            record.outcome.as_deref().unwrap_or("-"),
            record.write_pause_ms.unwrap_or_default(),
            load.max_commit_gap.as_secs_f64() * 1000.0,
            load.acknowledged.len(),
            load.client_errors,
            lost
        );
    }
    let mails = std::fs::read_dir(&config.notify.mail_dir).map(|d| d.count()).unwrap_or(0);
    println!("\nOwner emails (scheduled, reminders, started, completed; each with the status line, invites as .ics): {mails} files in {}", config.notify.mail_dir.display());
    Ok(())
}

/// Prints each maintenance's step whenever it changes.
async fn report_progress(engine: &Engine, maintenances: &[(&str, i64)], last: &mut HashMap<i64, String>) -> anyhow::Result<()> {
    for (name, id) in maintenances {
        let record = engine.store().maintenance(*id).await?;
        let now = format!("{} {}", record.state.as_str(), record.step.as_deref().unwrap_or(""));
        if last.get(id) != Some(&now) {
            println!("  {} {name:<8} {:<11} {now}", Utc::now().format("%H:%M:%S%.3f"), record.strategy);
            last.insert(*id, now);
        }
    }
    Ok(())
}

/// A window on today's weekday starting `minutes` whole minutes from now (UTC).
fn demo_window(now: chrono::DateTime<Utc>, minutes: i64) -> String {
    use chrono::{Datelike, Timelike};
    let start = now + chrono::Duration::minutes(minutes);
    format!("{} {:02}:{:02} UTC", start.weekday(), start.hour(), start.minute())
}
