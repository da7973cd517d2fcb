//! Kill drills: the daemon dies at every step boundary of every strategy, a
//! new daemon process finishes the job, and the audit finds nothing lost and
//! never two writable primaries.

use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use pgmaint::engine::{Engine, FAILPOINT_ENV, FAILPOINT_EXIT_CODE};
use pgmaint::model::Reason;
use pgmaint::store::{InstanceRole, MaintenanceRecord, MaintenanceState};
use pgmaint::workload::{self, PrimaryWatch, Workload};

use crate::engine_test::{engine, spec};
use crate::harness::TestEnv;

/// Runs `pgmaint daemon --once` against the test's fleet, with an optional failpoint.
fn daemon_once(env: &TestEnv, state_url: &str, failpoint: Option<&str>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmaint"));
    command
        .args(["daemon", "--once", "--node", "drill", "--data-dir"])
        .arg(env.dir.join("d"))
        .args(["--state-url", state_url])
        .env("PGMAINT_LOG", "warn");
    match failpoint {
        Some(fp) => command.env(FAILPOINT_ENV, fp),
        None => command.env_remove(FAILPOINT_ENV),
    };
    command.output().expect("run pgmaint daemon")
}

/// Every server the database has now, for the writable watch.
async fn watch_servers(engine: &Engine, watch: &PrimaryWatch, name: &str) {
    let database = engine.store().database_named(name).await.unwrap();
    for role in [InstanceRole::Current, InstanceRole::HaStandby, InstanceRole::Replacement] {
        if let Some(instance) = engine.store().instance_in_role(database.id, role).await.unwrap() {
            watch.watch(engine.provider().cluster(&instance.location).conninfo(name));
        }
    }
}

/// For each failpoint: require a maintenance, kill the daemon there, run a
/// fresh daemon, check the maintenance completed. Writers run throughout.
async fn drill(env: &TestEnv, engine: &Engine, name: &str, reason: Reason, failpoints: &[&str]) {
    let require = async || engine.require_maintenance(name, reason, Utc::now() + chrono::Duration::days(1)).await.unwrap();
    drill_with(env, engine, name, require, failpoints).await;
}

async fn drill_with(env: &TestEnv, engine: &Engine, name: &str, require: impl AsyncFn() -> MaintenanceRecord, failpoints: &[&str]) {
    let state_url = env.dir.join("state").display().to_string();
    let state_url = format!("postgresql://postgres@localhost/postgres?host={state_url}&port=5432");
    let url = engine.endpoint().client_conninfo(name);
    workload::prepare(&url).await.unwrap();
    let watch = PrimaryWatch::start(Vec::new());
    watch_servers(engine, &watch, name).await;
    let writers = Workload::start(&url, 4);
    for failpoint in failpoints {
        let maintenance = require().await;
        engine.store().schedule_maintenance(maintenance.id, Utc::now(), None, Some("run by the kill drill")).await.unwrap();
        let killed = daemon_once(env, &state_url, Some(failpoint));
        if failpoint.ends_with(":panic") {
            // A panic ends the maintenance's task, not the daemon: it logs it and leaves the work unfinished.
            let stderr = String::from_utf8_lossy(&killed.stderr);
            assert!(stderr.contains("panicked"), "{failpoint}: no panic reported: {stderr}");
            assert_ne!(engine.store().maintenance(maintenance.id).await.unwrap().state, MaintenanceState::Completed);
        } else {
            assert_eq!(
                killed.status.code(),
                Some(FAILPOINT_EXIT_CODE),
                "{failpoint}: the daemon did not stop at the failpoint: {}",
                String::from_utf8_lossy(&killed.stderr)
            );
        }
        watch_servers(engine, &watch, name).await;
        let finished = daemon_once(env, &state_url, None);
        assert!(finished.status.success(), "{failpoint}: resuming daemon failed: {}", String::from_utf8_lossy(&finished.stderr));
        let record = engine.store().maintenance(maintenance.id).await.unwrap();
        assert_eq!(record.state, MaintenanceState::Completed, "{failpoint}: maintenance ended {:?} ({:?})", record.state, record.error);
        watch_servers(engine, &watch, name).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let load = writers.stop().await.unwrap();
    let (most_writable, _) = watch.stop().await.unwrap();
    assert!(most_writable <= 1, "{most_writable} writable primaries at once");
    let lost = load.lost_on(&url).await.unwrap();
    assert!(lost.is_empty(), "{} acknowledged commits lost", lost.len());
    // Only a copy refuses writes (read-only while it runs); nothing else may fail a client.
    assert!(load.error_samples.iter().all(|e| e.ends_with("(SQLSTATE 25006)")), "client errors: {:?}", load.error_samples);
    eprintln!(
        "{name}: {} kills survived, {} commits, {} client errors (e.g. {:?}), max commit gap {:?}",
        failpoints.len(),
        load.acknowledged.len(),
        load.client_errors,
        &load.error_samples[..load.error_samples.len().min(3)],
        load.max_commit_gap
    );
}

fn every_boundary(steps: &[&'static str]) -> Vec<String> {
    steps.iter().flat_map(|s| [format!("{s}:before"), format!("{s}:after")]).collect()
}

#[tokio::test]
async fn switchover_survives_a_kill_at_every_step() {
    let env = TestEnv::new("kill-switchover");
    let engine = engine(&env).await;
    engine.create_database(&spec("shop", "standard-0", None)).await.unwrap();
    engine.create_database(&spec("shop-f", "standard-0", Some("shop"))).await.unwrap();
    let steps = ["prepare_replacement", "checkpoint", "pause", "fence", "confirm_wal", "promote", "repoint", "resume", "repoint_followers", "retire_old"];
    let failpoints = every_boundary(&steps);
    drill(&env, &engine, "shop", Reason::OsPatch, &failpoints.iter().map(String::as_str).collect::<Vec<_>>()).await;
}

#[tokio::test]
async fn failover_and_restart_survive_kills() {
    let env = TestEnv::new("kill-failover");
    let engine = engine(&env).await;
    engine.create_database(&spec("ledger", "premium-0", None)).await.unwrap();
    let failover = every_boundary(&["check_standby", "fence", "promote", "repoint", "rebuild_standby"]);
    drill(&env, &engine, "ledger", Reason::Periodic, &failover.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let mut restart = every_boundary(&["restart_standby", "pause", "restart", "wait_ready", "resume"]);
    restart.push("restart:after:panic".into());
    drill(&env, &engine, "ledger", Reason::Settings, &restart.iter().map(String::as_str).collect::<Vec<_>>()).await;
}

#[tokio::test]
async fn essential_plan_change_survives_a_kill_at_every_step() {
    let env = TestEnv::new("kill-plan-change");
    let engine = engine(&env).await;
    engine.create_database(&spec("notes", "essential-0", None)).await.unwrap();
    let database = engine.store().database_named("notes").await.unwrap();
    let plans = std::cell::Cell::new(0u32);
    // Each drill moves the database to the next plan size, as `upgrade` would (run by the daemon here).
    let require = async || {
        plans.set(plans.get() + 1);
        let plan = format!("essential-{}", plans.get());
        engine.store().insert_maintenance(database.id, "plan-change", "copy", Utc::now(), Some(&plan)).await.unwrap()
    };
    let steps = ["prepare_target", "block_writes", "copy_data", "pause", "repoint", "resume", "retire_old"];
    let failpoints = every_boundary(&steps);
    drill_with(&env, &engine, "notes", require, &failpoints.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let record = engine.store().database_named("notes").await.unwrap();
    assert_eq!(record.plan, format!("essential-{}", failpoints.len()), "every plan change completed in order");
    let current = engine.store().current_instance(record.id).await.unwrap();
    let server = crate::harness::connect_conninfo(&engine.provider().cluster(&current.location).conninfo("notes")).await;
    assert_eq!(crate::copy_test::scalar(&server, "SHOW default_transaction_read_only").await, "off", "the database takes writes");
}
