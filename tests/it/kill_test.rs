//! Kill drills: the daemon dies at every step boundary of every strategy, a
//! new daemon process finishes the job, and the audit finds nothing lost and
//! never two writable primaries. Failure drills: a step that undoes on
//! failure fails at each of its boundaries, and its declared recovery leaves
//! one writable server, routed to, under the same audit.

use tokio::process::Command;
use std::time::Duration;

use chrono::Utc;
use pgmaint::engine::runbook::{Recovery, Runbook};
use pgmaint::engine::{Engine, FAILPOINT_ENV, FAILPOINT_EXIT_CODE};
use pgmaint::model::Reason;
use pgmaint::store::{AppHooks, InstanceRole, MaintenanceRecord, MaintenanceState};
use pgmaint::workload::{self, PrimaryWatch, Workload, WorkloadReport};

use crate::engine_test::{engine, spec};
use crate::harness::TestEnv;

/// `pgmaint daemon --once` against the test's fleet, with an optional failpoint.
fn daemon_once(env: &TestEnv, failpoint: Option<&str>) -> Command {
    let state_url = format!("postgresql://postgres@localhost/postgres?host={}&port=5432", env.dir.join("state").display());
    let config = env.dir.join("drill.toml");
    std::fs::write(&config, env.endpoint_config()).expect("drill config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmaint"));
    command
        .args(["daemon", "--once", "--node", "drill", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(env.dir.join("d"))
        .args(["--state-url", &state_url])
        .env("PGMAINT_LOG", "warn");
    match failpoint {
        Some(fp) => command.env(FAILPOINT_ENV, fp),
        None => command.env_remove(FAILPOINT_ENV),
    };
    command
}

/// A drill's audit: 4 writers through the endpoint and a watch over the
/// maintained database's servers (added with [`watch_servers`]).
struct Audit {
    url: String,
    watch: PrimaryWatch,
    writers: Workload,
}

impl Audit {
    async fn start(engine: &Engine, writes_to: &str) -> Audit {
        let url = engine.endpoint_url(writes_to).await.unwrap();
        workload::prepare(&url).await.unwrap();
        Audit { watch: PrimaryWatch::start(Vec::new()), writers: Workload::start(&url, 4), url }
    }

    /// Stops both and asserts: never two writable servers at once, no
    /// acknowledged commit lost, and no client error but the read-only
    /// refusals of a copy (its source is read-only while it runs).
    async fn finish(self) -> WorkloadReport {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let load = self.writers.stop().await.unwrap();
        let (most_writable, _) = self.watch.stop().await.unwrap();
        assert!(most_writable <= 1, "{most_writable} writable primaries at once");
        let lost = load.lost_on(&self.url).await.unwrap();
        assert!(lost.is_empty(), "{} acknowledged commits lost", lost.len());
        assert!(load.error_samples.iter().all(|e| e.ends_with("(SQLSTATE 25006)")), "client errors: {:?}", load.error_samples);
        load
    }
}

/// Every server the database has now, for the writable watch.
async fn watch_servers(engine: &Engine, watch: &PrimaryWatch, database_id: i64) {
    let database = engine.store().database(database_id).await.unwrap();
    for role in [InstanceRole::Current, InstanceRole::HaStandby, InstanceRole::Replacement] {
        if let Some(instance) = engine.store().instance_in_role(database.id, role).await.unwrap() {
            watch.watch(engine.provider().address(&instance.location).conninfo(&database.dbname));
        }
    }
}

/// For each failpoint: require a maintenance, kill the daemon there, run a
/// fresh daemon, check the maintenance completed and then what `check` says
/// of it. Writers run on `writes_to` (the maintained database itself, or a
/// follower's leader) and a watch checks that no two servers of the
/// maintained database are writable at once, but both stand still while a
/// daemon process runs (it is waited for on the test's one thread): what
/// they check is what survives from one run to the next. The failure drills
/// below run theirs concurrently.
async fn drill_with(
    env: &TestEnv,
    engine: &Engine,
    label: &str,
    writes_to: &str,
    require: impl AsyncFn() -> MaintenanceRecord,
    check: impl AsyncFn(&MaintenanceRecord),
    failpoints: &[&str],
) {
    let audit = Audit::start(engine, writes_to).await;
    for failpoint in failpoints {
        let maintenance = require().await;
        let database_id = maintenance.database_id;
        watch_servers(engine, &audit.watch, database_id).await;
        engine.store().schedule_maintenance(maintenance.id, Utc::now(), None, Some("run by the kill drill")).await.unwrap();
        let killed = daemon_once(env, Some(failpoint)).as_std_mut().output().expect("run pgmaint daemon");
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
        watch_servers(engine, &audit.watch, database_id).await;
        let finished = daemon_once(env, None).as_std_mut().output().expect("run pgmaint daemon");
        assert!(finished.status.success(), "{failpoint}: resuming daemon failed: {}", String::from_utf8_lossy(&finished.stderr));
        let record = engine.store().maintenance(maintenance.id).await.unwrap();
        assert_eq!(record.state, MaintenanceState::Completed, "{failpoint}: maintenance ended {:?} ({:?})", record.state, record.error);
        watch_servers(engine, &audit.watch, database_id).await;
        check(&record).await;
    }
    let load = audit.finish().await;
    eprintln!(
        "{label}: {} kills survived, {} commits, {} client errors (e.g. {:?}), max commit gap {:?}",
        failpoints.len(),
        load.acknowledged.len(),
        load.client_errors,
        &load.error_samples[..load.error_samples.len().min(3)],
        load.max_commit_gap
    );
}

/// Every step boundary of a runbook, as failpoints, in the order a run meets them.
pub(crate) fn every_boundary(runbook: Runbook) -> Vec<String> {
    runbook.all_steps().iter().flat_map(|s| [format!("{s}:before"), format!("{s}:after")]).collect()
}

async fn drill_runbook(
    env: &TestEnv,
    engine: &Engine,
    writes_to: &str,
    runbook: Runbook,
    require: impl AsyncFn() -> MaintenanceRecord,
    check: impl AsyncFn(&MaintenanceRecord),
    extra: &[&str],
) {
    let mut failpoints = every_boundary(runbook);
    failpoints.extend(extra.iter().map(|s| s.to_string()));
    drill_with(env, engine, runbook.name(), writes_to, require, check, &failpoints.iter().map(String::as_str).collect::<Vec<_>>()).await;
    record_coverage(runbook, failpoints.len());
}

/// The check of a drill whose audit (nothing lost, one writable primary) says it all.
async fn audited_only(_: &MaintenanceRecord) {}

/// Appends `<runbook> <boundaries> boundaries of <steps> steps` to the file
/// `./dev test` prints after the run.
pub(crate) fn record_coverage(runbook: Runbook, boundaries: usize) {
    use std::io::Write;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kill-drill-coverage.txt");
    let line = format!("{:<16} {boundaries} boundaries of {} steps\n", runbook.name().replace(' ', "-"), runbook.all_steps().len());
    let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        eprintln!("kill drill coverage not recorded in {}: {error}", path.display());
    }
}

/// Requires `reason` on `name`, for the daemon to run.
fn requiring<'a>(engine: &'a Engine, name: &'a str, reason: Reason) -> impl AsyncFn() -> MaintenanceRecord + 'a {
    async move || engine.require_maintenance(name, reason, Utc::now() + chrono::Duration::days(1)).await.unwrap()
}

/// Requires a plan change of `name` to the next size of `tier` each time, as `upgrade` would.
fn changing_plan<'a>(engine: &'a Engine, database_id: i64, tier: &'a str, strategy: &'a str, sizes: &'a std::cell::Cell<u32>) -> impl AsyncFn() -> MaintenanceRecord + 'a {
    async move || {
        sizes.set(sizes.get() + 1);
        let plan = format!("{tier}-{}", sizes.get());
        engine.store().insert_maintenance(database_id, "plan-change", strategy, Utc::now(), Some(&plan)).await.unwrap()
    }
}

/// Both boundaries of every step of `runbook` whose failure is undone by a
/// recovery (not merely retried later), as failpoints.
fn recovered_boundaries(runbook: Runbook) -> Vec<String> {
    let undone = runbook.steps().iter().filter(|declared| declared.recovery != Recovery::Retry);
    undone.flat_map(|declared| [format!("{}:before", declared.step), format!("{}:after", declared.step)]).collect()
}

/// For each boundary of [`recovered_boundaries`]: require a maintenance, run
/// a daemon whose step fails there once. The maintenance fails with that
/// error (its recovery succeeded), and the database is left on one writable
/// server: the candidate for the boundaries in `forward`, else the one it
/// had. Writers and the watch run throughout, the daemon included: nothing
/// is lost, no two servers are ever writable at once, and clients see no
/// error but a copy's read-only refusals.
async fn failure_drill(env: &TestEnv, engine: &Engine, name: &str, runbook: Runbook, require: impl AsyncFn() -> MaintenanceRecord, forward: &[&str]) {
    let audit = Audit::start(engine, name).await;
    let boundaries = recovered_boundaries(runbook);
    assert!(forward.iter().all(|f| boundaries.iter().any(|b| b == f)), "{forward:?} are not boundaries of {boundaries:?}");
    for boundary in &boundaries {
        let maintenance = require().await;
        let database_id = maintenance.database_id;
        let had = engine.store().current_instance(database_id).await.unwrap();
        watch_servers(engine, &audit.watch, database_id).await;
        engine.store().schedule_maintenance(maintenance.id, Utc::now(), None, Some("run by the failure drill")).await.unwrap();
        let ran = daemon_once(env, Some(&format!("{boundary}:fail"))).output().await.expect("run pgmaint daemon");
        assert!(ran.status.success(), "{boundary}: the daemon failed: {}", String::from_utf8_lossy(&ran.stderr));
        let record = engine.store().maintenance(maintenance.id).await.unwrap();
        let error = record.error.clone().unwrap_or_default();
        assert_eq!(record.state, MaintenanceState::Failed, "{boundary}: maintenance ended {:?} ({error})", record.state);
        assert!(error.contains(&format!("failpoint {boundary} reached")) && !error.contains("recovery failed"), "{boundary}: {error}");
        watch_servers(engine, &audit.watch, database_id).await;
        let current = engine.store().current_instance(database_id).await.unwrap();
        let expected = match forward.contains(&boundary.as_str()) {
            true => record.candidate_id.expect("a candidate"),
            false => had.id,
        };
        assert_eq!(current.id, expected, "{boundary}: the database's server (forward: {})", forward.contains(&boundary.as_str()));
        let server = crate::harness::connect_conninfo(&engine.provider().address(&current.location).conninfo("postgres")).await;
        assert_eq!(crate::copy_test::scalar(&server, "SELECT pg_is_in_recovery()").await, "f", "{boundary}: the current server is writable");
    }
    let load = audit.finish().await;
    assert!(load.acknowledged.len() > 100, "the writers wrote through the drill: {} commits", load.acknowledged.len());
    eprintln!("{name}: {} failed steps recovered, {} commits, max commit gap {:?}", boundaries.len(), load.acknowledged.len(), load.max_commit_gap);
}

#[tokio::test]
async fn a_switchover_or_a_restart_failing_at_any_undone_step_leaves_one_writable_server() {
    let env = TestEnv::new("fail-switchover");
    let engine = engine(&env).await;
    engine.create_database(&spec("shop", "standard-0", None)).await.unwrap();
    let promoted = ["promote:after", "repoint:before", "repoint:after"];
    failure_drill(&env, &engine, "shop", Runbook::Switchover, requiring(&engine, "shop", Reason::OsPatch), &promoted).await;
    failure_drill(&env, &engine, "shop", Runbook::Restart, requiring(&engine, "shop", Reason::Settings), &[]).await;
}

#[tokio::test]
async fn switchover_survives_a_kill_at_every_step() {
    let env = TestEnv::new("kill-switchover");
    let engine = engine(&env).await;
    engine.create_database(&spec("shop", "standard-0", None)).await.unwrap();
    engine.create_database(&spec("shop-f", "standard-0", Some("shop"))).await.unwrap();
    // An attached app: every switchover must leave exactly one release, however it was interrupted.
    let hooks = AppHooks { on_maintenance_on: None, on_maintenance_off: None, env_file: None, restart_hook: None };
    engine.create_app("web", "shop", &hooks, "test").await.unwrap();
    drill_runbook(&env, &engine, "shop", Runbook::Switchover, requiring(&engine, "shop", Reason::OsPatch), audited_only, &[]).await;
    let switchovers = engine.releases("web").await.unwrap().into_iter().filter(|r| r.change == "Switchover shop").count();
    assert_eq!(switchovers, every_boundary(Runbook::Switchover).len(), "one release per switchover, none lost or doubled");
    // The follower's own switchover: both servers replicas, nothing promoted.
    drill_runbook(&env, &engine, "shop", Runbook::FollowerMove, requiring(&engine, "shop-f", Reason::OsPatch), audited_only, &[]).await;
}

#[tokio::test]
async fn failover_and_restart_survive_a_kill_at_every_step() {
    let env = TestEnv::new("kill-failover");
    let engine = engine(&env).await;
    engine.create_database(&spec("ledger", "premium-0", None)).await.unwrap();
    drill_runbook(&env, &engine, "ledger", Runbook::Failover, requiring(&engine, "ledger", Reason::Periodic), audited_only, &[]).await;
    drill_runbook(&env, &engine, "ledger", Runbook::Restart, requiring(&engine, "ledger", Reason::Settings), audited_only, &["restart:after:panic"]).await;
}

#[tokio::test]
async fn premium_plan_change_survives_a_kill_at_every_step() {
    let env = TestEnv::new("kill-plan-change-ha");
    let engine = engine(&env).await;
    engine.create_database(&spec("vault", "premium-0", None)).await.unwrap();
    let database = engine.store().database_named("vault").await.unwrap();
    let sizes = std::cell::Cell::new(0u32);
    // On an HA tier every step applies: the old plan's standby is retired and a new one built.
    drill_runbook(&env, &engine, "vault", Runbook::PlanChange, changing_plan(&engine, database.id, "premium", "switchover", &sizes), audited_only, &[]).await;
    let record = engine.store().database_named("vault").await.unwrap();
    assert_eq!(record.plan, format!("premium-{}", sizes.get()), "every plan change completed in order");
}

#[tokio::test]
async fn essential_plan_change_survives_a_kill_at_every_step() {
    let env = TestEnv::new("kill-plan-change");
    let engine = engine(&env).await;
    engine.create_database(&spec("notes", "essential-0", None)).await.unwrap();
    let database = engine.store().database_named("notes").await.unwrap();
    let sizes = std::cell::Cell::new(0u32);
    drill_runbook(&env, &engine, "notes", Runbook::EssentialCopy, changing_plan(&engine, database.id, "essential", "copy", &sizes), audited_only, &[]).await;
    let record = engine.store().database_named("notes").await.unwrap();
    assert_eq!(record.plan, format!("essential-{}", sizes.get()), "every plan change completed in order");
    let current = engine.store().current_instance(record.id).await.unwrap();
    let server = crate::harness::connect_conninfo(&engine.provider().address(&current.location).conninfo("notes")).await;
    assert_eq!(crate::copy_test::scalar(&server, "SHOW default_transaction_read_only").await, "off", "the database takes writes");
}

#[tokio::test]
async fn unfollow_survives_a_kill_at_every_step() {
    let env = TestEnv::new("kill-unfollow");
    let engine = engine(&env).await;
    let leader = engine.create_database(&spec("lead", "standard-0", None)).await.unwrap();
    let leader_server = engine.store().current_instance(leader.id).await.unwrap();
    let followers = std::cell::Cell::new(0u32);
    // Each drill unfollows a fresh follower, on an HA tier so that every step applies.
    let unfollowing = async || {
        followers.set(followers.get() + 1);
        let follower = engine.create_database(&spec(&format!("lead-f{}", followers.get()), "premium-0", Some("lead"))).await.unwrap();
        engine.store().insert_maintenance(follower.id, "unfollow", "unfollow", Utc::now(), None).await.unwrap()
    };
    let unfollowed = async |maintenance: &MaintenanceRecord| {
        let database = engine.store().database(maintenance.database_id).await.unwrap();
        let name = database.name.as_str();
        let info = engine.info(name).await.unwrap();
        assert_eq!((info.following.as_deref(), info.forked_from.as_deref()), (None, Some("lead")), "{name}");
        assert_eq!(info.ha.as_deref(), Some("available"), "{name}: its HA standby");
        // Writable as its own role: it owns the objects its leader's role made.
        let own = crate::harness::connect_conninfo(&engine.endpoint_url(name).await.unwrap()).await;
        own.batch_execute("INSERT INTO pgmaint_audit (id, writer) VALUES (-1, 0)").await.unwrap_or_else(|e| panic!("{name} refused a write: {e:?}"));
        // Every declared step done exactly once, in order, however the run was cut.
        let done: Vec<String> = engine.store().steps(maintenance.id).await.unwrap().into_iter().filter(|s| s.status == "done").map(|s| s.step).collect();
        let declared: Vec<String> = Runbook::Unfollow.all_steps().iter().map(|s| s.to_string()).collect();
        assert_eq!(done, declared, "{name}: steps done");
        let history = engine.history(name).await.unwrap();
        assert_eq!((history[0].strategy.as_str(), history[0].state), ("unfollow", MaintenanceState::Completed), "{name}");
        // The leader: the same server, writable, and no slot kept for the unfollowed database.
        assert_eq!(engine.store().current_instance(leader.id).await.unwrap().id, leader_server.id, "the leader moved");
        let lead = crate::harness::connect_conninfo(&engine.provider().address(&leader_server.location).conninfo("postgres")).await;
        assert_eq!(crate::copy_test::scalar(&lead, "SELECT pg_is_in_recovery()").await, "f", "the leader is writable");
        let slot = engine.store().current_instance(database.id).await.unwrap().slot_name.unwrap();
        let kept = crate::copy_test::scalar(&lead, &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'")).await;
        assert_eq!(kept, "0", "{name}: the leader still keeps its slot");
        // Its servers stop here: the next drill's follower is the only other writable one.
        engine.destroy_database(name, name).await.unwrap();
    };
    drill_runbook(&env, &engine, "lead", Runbook::Unfollow, unfollowing, unfollowed, &[]).await;
    let leader = engine.store().database(leader.id).await.unwrap();
    assert_eq!((leader.plan.as_str(), leader.following_id, leader.forked_from), ("standard-0", None, None), "the leader's record changed");
}

#[test]
fn every_runbook_has_a_drill() {
    // The drills above, by runbook (Patroni's in patroni_test): a new runbook without one fails here.
    let drilled = [
        Runbook::Switchover,
        Runbook::FollowerMove,
        Runbook::Failover,
        Runbook::Restart,
        Runbook::PlanChange,
        Runbook::EssentialCopy,
        Runbook::PatroniRolling,
        Runbook::PatroniLeaderFirst,
        Runbook::Unfollow,
    ];
    for runbook in Runbook::ALL {
        assert!(drilled.contains(&runbook), "no kill drill for the {} runbook", runbook.name());
    }
}
