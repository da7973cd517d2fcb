//! `pgmaint bench switchover --provider patroni`: builds a throwaway etcd +
//! 3-member Patroni cluster on 127.0.0.1 and measures, on the same cluster
//! and in one run, what writers feel of (a) pgmaint's switchover of the
//! adopted cluster through its endpoint (PAUSE, Patroni's own switchover,
//! repoint, RESUME) and (b) the standard Patroni setup: HAProxy with
//! Patroni's documented `/primary` health check in front, and `patronictl
//! switchover`. It prints the longest commit gap, client errors and lost
//! acknowledged writes of each, and pgmaint's step times (where the time
//! goes). A program that prints figures, not a timed test.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmaint::config::PatroniConfig;
use pgmaint::engine::{AdoptDatabase, Engine};
use pgmaint::lab::haproxy::{measure_stock_switchover, HaproxyFront};
use pgmaint::lab::{LabOptions, LabPorts, LabRole, PatroniLab};
use pgmaint::model::Reason;
use pgmaint::workload::{self, Workload};
use serde::Serialize;

use super::bench_maintenance::BenchMaintenanceArgs;
use super::{run_on_fleet, Failure, Outcome};

/// The cluster's own client role the writers log in as (through either front).
const WRITER_ROLE: &str = "bench_writer";

#[derive(Serialize)]
struct Side {
    max_commit_gap_ms: f64,
    client_errors: usize,
    error_samples: Vec<String>,
    acknowledged: usize,
    lost: usize,
}

#[derive(Serialize)]
struct PatroniBench {
    writers: usize,
    seconds: f64,
    pgmaint: Side,
    /// pgmaint's steps of the run, in order, with their times.
    pgmaint_steps_ms: Vec<(String, f64)>,
    pgmaint_write_pause_ms: Option<f64>,
    stock: Side,
    /// How long `patronictl switchover` took, and when HAProxy routed to the new leader.
    patronictl_ms: f64,
    haproxy_routed_after_ms: f64,
    /// pgmaint's longest gap over the stock setup's: the target is at most 0.5.
    ratio: f64,
}

pub fn bench(args: BenchMaintenanceArgs) -> Outcome {
    if args.floor {
        return Err(Failure::usage("--floor measures pgmaint-made servers; with --provider patroni the stock Patroni setup is the comparison"));
    }
    if args.writers == 0 || args.seconds.is_nan() || args.seconds <= 0.0 {
        return Err(Failure::usage("--writers and --seconds must be positive"));
    }
    let dir = tempfile::Builder::new().prefix("pgmaint-bench-patroni-").tempdir_in("/tmp").map_err(Failure::failed)?;
    let user = pgmaint::provider::local::ServerUser::detect().map_err(Failure::failed)?;
    user.own_dir(dir.path(), 0o755).map_err(Failure::failed)?;
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::failed)?;
    let role = LabRole { name: "pgmaint".into(), password: pgmaint::access::new_password() };
    let mut options = LabOptions::new(LabPorts::from_fn(3, free_port));
    options.scope = "bench".into();
    options.pgmaint_role = Some(role.clone());
    eprintln!("starting etcd and a 3-member Patroni cluster...");
    let lab = runtime.block_on(PatroniLab::start(&dir.path().join("lab"), options)).map_err(|e| Failure::failed(format!("{e}")))?;
    let password_file = dir.path().join("pgmaint-pg.pw");
    let written = std::fs::write(&password_file, &role.password)
        .and_then(|()| std::fs::set_permissions(&password_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)));
    let mut config = super::scratch_config(&dir.path().join("pgmaint"));
    config.patroni = Some(PatroniConfig {
        pg_user: role.name.clone(),
        pg_password_file: Some(password_file),
        rest_user: None,
        rest_password_file: None,
        rest_ca_file: None,
        host_hook: None,
        max_lag: 1024 * 1024,
        member_timeout: Duration::from_secs(120),
    });
    let report = written.map_err(Failure::failed).and_then(|()| {
        run_on_fleet(&config, false, async |engine: Arc<Engine>| measure(&engine, &lab, dir.path(), &args).await)
    });
    let stopped = runtime.block_on(lab.stop());
    let report = report?;
    stopped.map_err(|e| Failure::failed(format!("stopping the lab: {e}")))?;
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(Failure::failed)?);
    } else {
        print_human(&report);
    }
    Ok(())
}

/// A port below 32768 nothing listens on now on 127.0.0.1 (Linux hands out
/// 32768 and up to outgoing connections).
fn free_port() -> u16 {
    loop {
        let port = rand::random::<u16>() % 12_000 + 20_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn measure(engine: &Engine, lab: &PatroniLab, dir: &Path, args: &BenchMaintenanceArgs) -> anyhow::Result<PatroniBench> {
    let leader = lab.member_named(&lab.leader_name().await?).ok_or_else(|| anyhow::anyhow!("no leader"))?.clone();
    let writer_password = pgmaint::access::new_password();
    let (admin, connection) = tokio_postgres::connect(&lab.conninfo(&leader, "postgres"), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    admin.batch_execute(&format!("CREATE ROLE {WRITER_ROLE} LOGIN PASSWORD {}; GRANT ALL ON SCHEMA public TO {WRITER_ROLE}", pgmaint::pg::literal(&writer_password))).await?;
    engine
        .adopt(&AdoptDatabase {
            name: "bench".into(),
            patroni: lab.rest_urls(),
            dbname: "postgres".into(),
            plan: None,
            window: None,
            owners: Vec::new(),
            labels: Default::default(),
        })
        .await?;
    let half = Duration::from_secs_f64(args.seconds / 2.0);

    // (a) pgmaint: a maintenance with nothing to restart is a pure switchover.
    let endpoint = endpoint_conninfo(engine, &writer_password)?;
    workload::prepare(&endpoint).await?;
    eprintln!("(a) pgmaint: {} writers through its endpoint for {} s, switchover halfway...", args.writers, args.seconds);
    let load = Workload::start(&endpoint, args.writers);
    tokio::time::sleep(half).await;
    engine.require("bench", Reason::Settings, chrono::Utc::now() + chrono::TimeDelta::days(1), chrono::Utc::now()).await?;
    let ran = engine.run_now("bench", true).await?;
    tokio::time::sleep(half).await;
    let report = load.stop().await?;
    let new_leader = lab.member_named(&lab.leader_name().await?).ok_or_else(|| anyhow::anyhow!("no leader"))?.clone();
    let lost = report.lost_on(&lab.conninfo(&new_leader, "postgres")).await?;
    let pgmaint_side = Side {
        max_commit_gap_ms: ms(report.max_commit_gap),
        client_errors: report.client_errors,
        error_samples: report.error_samples.clone(),
        acknowledged: report.acknowledged.len(),
        lost: lost.len(),
    };

    // (b) stock: HAProxy with Patroni's /primary check, and patronictl switchover.
    let front = HaproxyFront::start(lab, &dir.join("haproxy"), free_port()).await?;
    let stock_conninfo = format!("{} user={WRITER_ROLE} password={}", front.conninfo("postgres"), quote(&writer_password));
    let candidate = lab.members().iter().find(|m| m.name != new_leader.name).ok_or_else(|| anyhow::anyhow!("no candidate"))?.name.clone();
    eprintln!("(b) stock: {} writers through HAProxy, patronictl switchover to {candidate} after {} s...", args.writers, half.as_secs_f64());
    let load = Workload::start(&stock_conninfo, args.writers);
    tokio::time::sleep(half).await;
    let started = Instant::now();
    let stock = measure_stock_switchover(lab, &front, load, &candidate).await?;
    eprintln!("    stock path settled after {:.1} s", started.elapsed().as_secs_f64());
    front.stop().await?;
    let stock_side = Side {
        max_commit_gap_ms: ms(stock.longest_gap),
        client_errors: stock.client_errors,
        error_samples: stock.error_samples,
        acknowledged: stock.acknowledged,
        lost: stock.lost,
    };
    Ok(PatroniBench {
        writers: args.writers,
        seconds: args.seconds,
        ratio: pgmaint_side.max_commit_gap_ms / stock_side.max_commit_gap_ms.max(f64::MIN_POSITIVE),
        pgmaint: pgmaint_side,
        pgmaint_steps_ms: ran.steps.iter().map(|(step, took)| (step.clone(), ms(*took))).collect(),
        pgmaint_write_pause_ms: ran.write_pause.map(ms),
        stock: stock_side,
        patronictl_ms: ms(stock.switchover.took),
        haproxy_routed_after_ms: ms(stock.routed_after),
    })
}

/// The endpoint over TCP as the writer role (the URL `info` gives, with a login).
fn endpoint_conninfo(engine: &Engine, password: &str) -> anyhow::Result<String> {
    let url = engine.endpoint().url_without_login("bench");
    let address = url.strip_prefix("postgresql://").and_then(|rest| rest.split('/').next()).ok_or_else(|| anyhow::anyhow!("endpoint URL {url}"))?;
    let (host, port) = address.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("endpoint address {address}"))?;
    Ok(format!("host={host} port={port} dbname=bench user={WRITER_ROLE} password={}", quote(password)))
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn print_human(report: &PatroniBench) {
    println!("writers             {} for {} s on each side", report.writers, report.seconds);
    for (name, side) in [("pgmaint", &report.pgmaint), ("stock", &report.stock)] {
        println!(
            "{name:<8} longest commit gap {:>8.1} ms, {} client errors, {} acknowledged, {} lost",
            side.max_commit_gap_ms, side.client_errors, side.acknowledged, side.lost
        );
        for sample in side.error_samples.iter().take(3) {
            println!("         e.g. {sample}");
        }
    }
    if let Some(pause) = report.pgmaint_write_pause_ms {
        println!("pgmaint write pause {pause:.1} ms (PAUSE done to RESUME done)");
    }
    for (step, took) in &report.pgmaint_steps_ms {
        println!("  step {step:<18} {took:.1} ms");
    }
    println!("stock: patronictl switchover {:.1} ms; HAProxy routed to the new leader after {:.1} ms", report.patronictl_ms, report.haproxy_routed_after_ms);
    println!("ratio               {:.2} (pgmaint / stock longest gap; target at most 0.5)", report.ratio);
}
