//! The three strategies on real servers, under a real writer workload, audited:
//! zero client errors, zero lost commits, never two writable primaries.

use std::time::Duration;

use chrono::Utc;
use pgmaint::endpoint::PgBouncer;
use pgmaint::engine::{DatabaseSpec, Engine, Failpoint, RunReport};
use pgmaint::model::Reason;
use pgmaint::provider::local::LocalProvider;
use pgmaint::store::{InstanceRole, MaintenanceState, Store};
use pgmaint::workload::pgbench::{self, Pgbench};
use pgmaint::workload::{self, PrimaryWatch, Workload, WorkloadReport};

use crate::harness::TestEnv;

/// An engine over its own state server, local provider and PgBouncer.
pub async fn engine(env: &TestEnv) -> Engine {
    let state = env.primary("state").await;
    let store = Store::connect(&state.url("postgres")).await.expect("state store");
    let data_dir = env.dir.join("d");
    let provider = LocalProvider::open(&data_dir).await.expect("provider");
    env.track_data_dir(&data_dir);
    let endpoint = PgBouncer::at(data_dir.join("bouncer"), env.user.clone()).with_listen(&[env.endpoint]).expect("listen address");
    Engine::new(store, std::sync::Arc::new(provider), endpoint, "test")
}

pub fn spec(name: &str, plan: &str, follow: Option<&str>) -> DatabaseSpec {
    DatabaseSpec {
        name: name.into(),
        plan: plan.parse().unwrap(),
        follow: follow.map(Into::into),
        window: "Sunday 02:00".into(),
        window_length: Duration::from_secs(4 * 3600),
        owners: vec!["owner@example.com".into()],
        labels: Default::default(),
    }
}

/// Conninfo strings of every server a database has had (for the writable watch).
pub(crate) async fn all_servers(engine: &Engine, name: &str) -> Vec<String> {
    let database = engine.store().database_named(name).await.unwrap();
    let mut conninfos = Vec::new();
    for role in [InstanceRole::Current, InstanceRole::HaStandby, InstanceRole::Replacement] {
        if let Some(instance) = engine.store().instance_in_role(database.id, role).await.unwrap() {
            conninfos.push(engine.provider().address(&instance.location).conninfo(name));
        }
    }
    conninfos
}

/// Runs `maintenance` under 4 writers and asserts the audit.
async fn run_under_load(engine: &Engine, name: &str, reason: Reason) -> (RunReport, WorkloadReport) {
    let url = engine.endpoint_url(name).await.unwrap();
    workload::prepare(&url).await.unwrap();
    let maintenance = engine.require_maintenance(name, reason, Utc::now() + chrono::Duration::days(1)).await.unwrap();
    // A switchover's replacement is prepared ahead, as the daemon does before the window.
    engine.prepare_maintenance(maintenance.id).await.unwrap();
    let watch = PrimaryWatch::start(all_servers(engine, name).await);
    let writers = Workload::start(&url, 4);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let report = engine.run_maintenance(maintenance.id).await.expect("maintenance");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let load = writers.stop().await.unwrap();
    let (most_writable, samples) = watch.stop().await.unwrap();

    assert_eq!(report.outcome, "completed");
    assert!(load.acknowledged.len() > 100, "writers barely wrote: {}", load.acknowledged.len());
    assert_eq!(load.client_errors, 0, "client errors: {:?}", load.error_samples);
    assert!(samples > 10, "writable watch took only {samples} samples");
    assert!(most_writable <= 1, "{most_writable} writable primaries at once");
    let lost = load.lost_on(&url).await.unwrap();
    assert!(lost.is_empty(), "{} acknowledged commits lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    let record = engine.store().maintenance(maintenance.id).await.unwrap();
    assert_eq!(record.state, MaintenanceState::Completed);
    assert!(record.write_pause_ms.is_some());
    eprintln!(
        "{name} {:?}: pause {:?}, max commit gap {:?}, {} commits, steps {:?}",
        report.strategy, report.write_pause, load.max_commit_gap, load.acknowledged.len(), report.steps
    );
    (report, load)
}

/// Waits until the follower `name` holds every acknowledged id.
pub(crate) async fn assert_follower_complete(engine: &Engine, follower: &str, load: &WorkloadReport) {
    let conninfo = engine.endpoint_url(follower).await.unwrap();
    let mut lost = Vec::new();
    for _ in 0..100 {
        lost = load.lost_on(&conninfo).await.unwrap();
        if lost.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("follower {follower} misses {} acknowledged commits", lost.len());
}

#[tokio::test]
async fn switchover_repoints_endpoint_and_followers_without_loss() {
    let env = TestEnv::new("engine-switchover");
    let engine = engine(&env).await;
    engine.create_database(&spec("orders", "standard-0", None)).await.unwrap();
    engine.create_database(&spec("orders-f", "standard-0", Some("orders"))).await.unwrap();
    let database = engine.store().database_named("orders").await.unwrap();
    let before = engine.store().current_instance(database.id).await.unwrap();

    let (report, load) = run_under_load(&engine, "orders", Reason::OsPatch).await;
    assert_eq!(report.strategy.as_str(), "switchover");
    let after = engine.store().current_instance(database.id).await.unwrap();
    assert_ne!(before.id, after.id, "the database did not move");
    assert!(!engine.provider().is_running(&before.location).await.unwrap(), "old primary still running");
    assert_follower_complete(&engine, "orders-f", &load).await;
    let steps = engine.store().steps(report.maintenance_id).await.unwrap();
    let followers = steps.iter().find(|s| s.step == "repoint_followers" && s.status == "done").expect("repoint_followers done");
    assert_eq!(followers.detail["followers"][0]["how"], "repointed", "the follower was not repointed: {}", followers.detail);
}

/// The fence kills the old primary once the candidate holds the WAL read
/// inside the pause: WAL the old primary writes by itself in between may
/// reach a follower and not the candidate. Here the window is widened (a
/// stall before `fence`) and such WAL made on purpose: the follower, past the
/// new timeline's start, must be rebuilt, and lose nothing.
#[tokio::test]
async fn a_follower_with_wal_the_candidate_lacks_is_rebuilt() {
    let env = TestEnv::new("engine-follower-past");
    let engine = engine(&env).await.with_failpoint(Some(Failpoint::parse("fence:before:stall=3000").unwrap()));
    engine.create_database(&spec("orders", "standard-0", None)).await.unwrap();
    let follower = engine.create_database(&spec("orders-f", "standard-0", Some("orders"))).await.unwrap();
    let url = engine.endpoint_url("orders").await.unwrap();
    workload::prepare(&url).await.unwrap();
    let maintenance = engine.require_maintenance("orders", Reason::OsPatch, Utc::now() + chrono::Duration::days(1)).await.unwrap();
    engine.prepare_maintenance(maintenance.id).await.unwrap();
    let record = engine.store().maintenance(maintenance.id).await.unwrap();
    let server = async |id: Option<i64>| {
        let location = engine.store().instance(id.unwrap()).await.unwrap().location;
        crate::harness::connect_conninfo(&engine.provider().address(&location).conninfo("postgres")).await
    };
    let (old, candidate) = (server(record.old_instance_id).await, server(record.candidate_id).await);
    let follower_server = server(Some(engine.store().current_instance(follower.id).await.unwrap().id)).await;
    let writers = Workload::start(&url, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let meddle = async {
        // The paused section's intents are written just before PAUSE.
        while !engine.store().steps(maintenance.id).await.unwrap().iter().any(|s| s.step == "pause" && s.status == "intent") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // PAUSE and confirm_wal take milliseconds: the runner now stalls before the fence.
        tokio::time::sleep(Duration::from_millis(300)).await;
        candidate.batch_execute("ALTER SYSTEM SET primary_conninfo = 'host=/nonexistent'").await.unwrap();
        candidate.batch_execute("SELECT pg_reload_conf()").await.unwrap();
        while crate::copy_test::scalar(&candidate, "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'").await != "0" {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        old.batch_execute("CREATE TABLE written_after_the_confirmation ()").await.unwrap();
        let end = crate::copy_test::scalar(&old, "SELECT pg_current_wal_flush_lsn()").await;
        let has_it = format!("SELECT pg_last_wal_receive_lsn() >= '{end}'::pg_lsn");
        while crate::copy_test::scalar(&follower_server, &has_it).await != "t" {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(crate::copy_test::scalar(&candidate, &has_it).await, "f", "the candidate got the WAL too");
    };
    let (report, ()) = tokio::join!(engine.run_maintenance(maintenance.id), meddle);
    let report = report.expect("maintenance");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let load = writers.stop().await.unwrap();

    assert_eq!(report.outcome, "completed");
    assert_eq!(load.client_errors, 0, "client errors: {:?}", load.error_samples);
    assert!(load.lost_on(&url).await.unwrap().is_empty(), "commits lost");
    let steps = engine.store().steps(report.maintenance_id).await.unwrap();
    let followers = steps.iter().find(|s| s.step == "repoint_followers" && s.status == "done").expect("repoint_followers done");
    let how = followers.detail["followers"][0]["how"].as_str().unwrap_or_default().to_string();
    assert!(how.starts_with("rebuilt (its WAL ends at"), "the follower past the new timeline was not rebuilt: {}", followers.detail);
    assert_follower_complete(&engine, "orders-f", &load).await;
}

#[tokio::test]
async fn failover_promotes_standby_and_builds_a_new_one() {
    let env = TestEnv::new("engine-failover");
    let engine = engine(&env).await;
    engine.create_database(&spec("billing", "premium-0", None)).await.unwrap();
    let database = engine.store().database_named("billing").await.unwrap();
    let standby = engine.store().instance_in_role(database.id, InstanceRole::HaStandby).await.unwrap().expect("HA standby");

    let (report, _) = run_under_load(&engine, "billing", Reason::Periodic).await;
    assert_eq!(report.strategy.as_str(), "failover");
    assert_eq!(engine.store().current_instance(database.id).await.unwrap().id, standby.id, "the HA standby was not promoted");
    let new_standby = engine.store().instance_in_role(database.id, InstanceRole::HaStandby).await.unwrap().expect("new HA standby");
    assert_ne!(new_standby.id, standby.id);
    assert!(engine.provider().is_running(&new_standby.location).await.unwrap());
}

#[tokio::test]
async fn restart_pauses_instead_of_failing_clients() {
    let env = TestEnv::new("engine-restart");
    let engine = engine(&env).await;
    engine.create_database(&spec("blog", "essential-0", None)).await.unwrap();
    let (report, _) = run_under_load(&engine, "blog", Reason::Settings).await;
    assert_eq!(report.strategy.as_str(), "restart");
}

#[tokio::test]
async fn switchover_is_postponed_when_the_candidate_lacks_wal() {
    let env = TestEnv::new("engine-postpone");
    let engine = engine(&env).await;
    engine.create_database(&spec("stock", "standard-0", None)).await.unwrap();
    let database = engine.store().database_named("stock").await.unwrap();
    let old = engine.store().current_instance(database.id).await.unwrap();
    let url = engine.endpoint_url("stock").await.unwrap();
    workload::prepare(&url).await.unwrap();
    let maintenance = engine.require_maintenance("stock", Reason::OsPatch, Utc::now() + chrono::Duration::days(1)).await.unwrap();
    engine.prepare_maintenance(maintenance.id).await.unwrap();

    // Cut the replacement off from the primary: from now on it misses commits.
    let candidate_id = engine.store().maintenance(maintenance.id).await.unwrap().candidate_id.unwrap();
    let candidate = engine.provider().address(&engine.store().instance(candidate_id).await.unwrap().location);
    let candidate_client = crate::harness::connect_conninfo(&candidate.conninfo("postgres")).await;
    candidate_client.batch_execute("ALTER SYSTEM SET primary_conninfo = 'host=/nonexistent'").await.unwrap();
    candidate_client.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    let writers = Workload::start(&url, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = engine.run_maintenance(maintenance.id).await.expect("a postponement is not an error");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let load = writers.stop().await.unwrap();

    assert!(report.outcome.starts_with("postponed"), "outcome {}", report.outcome);
    assert_eq!(engine.store().current_instance(database.id).await.unwrap().id, old.id, "the database moved");
    let in_recovery: bool = crate::harness::connect_conninfo(&candidate.conninfo("postgres")).await.query_one("SELECT pg_is_in_recovery()", &[]).await.unwrap().get(0);
    assert!(in_recovery, "a candidate that lacks commits was promoted");
    assert_eq!(load.client_errors, 0, "client errors: {:?}", load.error_samples);
    assert!(load.lost_on(&url).await.unwrap().is_empty(), "commits lost");
    let record = engine.store().maintenance(maintenance.id).await.unwrap();
    assert_eq!(record.state, MaintenanceState::Ready, "a postponed maintenance waits for its next window");
    assert!(record.scheduled_for.unwrap() > Utc::now(), "not re-planned into the future");
}

/// pgbench's TPC-B-like script (libpq; BEGIN, three UPDATEs, a SELECT, an
/// INSERT, END per transaction) through a switchover and a failover: no
/// client aborted, no transaction failed, and every committed transaction's
/// history row is on the new primary.
#[tokio::test]
async fn libpq_clients_running_tpcb_see_no_error_through_a_switchover_and_a_failover() {
    let env = TestEnv::new("engine-tpcb");
    let engine = engine(&env).await;
    for (name, plan, reason, strategy) in [("ledger", "standard-0", Reason::OsPatch, "switchover"), ("books", "premium-0", Reason::Periodic, "failover")] {
        engine.create_database(&spec(name, plan, None)).await.unwrap();
        let url = engine.endpoint_url(name).await.unwrap();
        pgbench::initialize(&env.bindir, &url).await.expect("pgbench -i");
        let maintenance = engine.require_maintenance(name, reason, Utc::now() + chrono::Duration::days(1)).await.unwrap();
        engine.prepare_maintenance(maintenance.id).await.unwrap();
        let clients = Pgbench::start(&env.bindir, &url, 4, 5).expect("pgbench");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let run_started = std::time::Instant::now();
        let report = engine.run_maintenance(maintenance.id).await.expect("maintenance");
        let run_ended = std::time::Instant::now();
        let bench = clients.wait().await.expect("pgbench ran");
        assert_eq!(report.strategy.as_str(), strategy);
        assert_eq!(report.outcome, "completed");
        assert!(bench.exit_ok && bench.aborted_clients == 0 && bench.failed == 0, "{name}: pgbench saw errors: {:?}", bench.errors);
        assert!(bench.transactions > 100, "{name}: pgbench barely ran: {} transactions", bench.transactions);
        assert_eq!(bench.history_rows, bench.transactions, "{name}: committed transactions and history rows differ");
        let gap = bench.longest_gap_within(run_started, run_ended);
        assert!(gap > Duration::ZERO, "{name}: no commit gap measured around the maintenance");
        eprintln!("{name} {strategy}: {} transactions, longest gap around it {gap:?}, pause {:?}", bench.transactions, report.write_pause);
    }
}
