//! Daemons as processes: one store shared by several, leadership moving when
//! its holder dies, a maintenance finished by another daemon after its runner
//! was killed, and SIGTERM waiting for a running maintenance.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use pgmaint::engine::{Engine, FAILPOINT_ENV};
use pgmaint::model::Reason;
use pgmaint::store::MaintenanceState;

use crate::engine_test::{engine, spec};
use crate::harness::TestEnv;

/// A config file for daemon `node` sharing the test's state store, with
/// short leases and its own API socket.
fn write_config(env: &TestEnv, node: &str, extra: &str) -> std::path::PathBuf {
    let state = env.dir.join("state");
    let text = format!(
        "[daemon]\ndata_dir = \"{}\"\ntick = \"1s\"\nlease = \"2s\"\n\n[state]\nurl = \"postgresql://postgres@localhost/postgres?host={}&port=5432\"\n\n[api]\nsocket = \"{}\"\n",
        env.dir.join("d").display(),
        state.display(),
        env.dir.join(format!("{node}.sock")).display()
    ) + &env.endpoint_config()
        + extra;
    let path = env.dir.join(format!("{node}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn daemon(env: &TestEnv, node: &str, failpoint: Option<&str>) -> Child {
    daemon_with(env, node, failpoint, &[], "")
}

fn daemon_with(env: &TestEnv, node: &str, failpoint: Option<&str>, extra: &[&str], extra_config: &str) -> Child {
    let config = write_config(env, node, extra_config);
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmaint"));
    command.args(["daemon", "--node", node, "--config"]).arg(&config).args(extra).env("PGMAINT_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::piped());
    match failpoint {
        Some(fp) => command.env(FAILPOINT_ENV, fp),
        None => command.env_remove(FAILPOINT_ENV),
    };
    command.spawn().expect("start pgmaint daemon")
}

/// Kills daemons left running when a test fails.
struct Daemons(Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn due_maintenance(engine: &Engine, name: &str, reason: Reason) -> i64 {
    let view = engine.require(name, reason, Utc::now() + chrono::Duration::days(1), Utc::now()).await.unwrap();
    engine.store().schedule_maintenance(view.id, Utc::now(), None, Some("run by the test")).await.unwrap();
    view.id
}

#[tokio::test]
async fn another_daemon_finishes_a_killed_runners_maintenance_and_takes_leadership() {
    let env = TestEnv::new("daemon-takeover");
    let engine = engine(&env).await;
    engine.create_database(&spec("shop", "essential-0", None)).await.unwrap();
    let id = due_maintenance(&engine, "shop", Reason::Settings).await;

    // Daemon a dies right after restarting the server, with the endpoint paused.
    let mut a = daemon(&env, "a", Some("restart:after"));
    let status = tokio::task::spawn_blocking(move || a.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(137), "daemon a did not stop at the failpoint");
    assert_eq!(engine.store().maintenance(id).await.unwrap().state, MaintenanceState::Running);

    // b and c start; one leads; once a's claim lapses, one of them finishes the job.
    let mut daemons = Daemons(vec![daemon(&env, "b", None), daemon(&env, "c", None)]);
    wait_for("the maintenance to complete", Duration::from_secs(60), || async {
        engine.store().maintenance(id).await.unwrap().state == MaintenanceState::Completed
    })
    .await;
    let mut admin = engine.endpoint().admin().await.unwrap();
    assert!(!admin.is_paused("shop").await.unwrap(), "endpoint left paused");

    wait_for("a leader", Duration::from_secs(10), || async { engine.store().lease_holder("scheduler").await.unwrap().is_some() }).await;
    let leader = engine.store().lease_holder("scheduler").await.unwrap().unwrap();
    assert!(leader == "b" || leader == "c", "leader {leader}");
    // Kill the leader without ceremony; the other takes over within the lease.
    let index = if leader == "b" { 0 } else { 1 };
    daemons.0[index].kill().unwrap();
    daemons.0[index].wait().unwrap();
    let survivor = if leader == "b" { "c" } else { "b" };
    wait_for("leadership to move", Duration::from_secs(15), || async {
        engine.store().lease_holder("scheduler").await.unwrap().as_deref() == Some(survivor)
    })
    .await;
}

#[tokio::test]
async fn sigterm_lets_a_running_failover_finish() {
    let env = TestEnv::new("daemon-sigterm");
    let engine = engine(&env).await;
    engine.create_database(&spec("cart", "premium-0", None)).await.unwrap();
    let id = due_maintenance(&engine, "cart", Reason::Periodic).await;
    let mut daemons = Daemons(vec![daemon(&env, "solo", None)]);
    // SIGTERM while the new HA standby is being built: the run is mid-way.
    wait_for("the failover to reach rebuild_standby", Duration::from_secs(60), || async {
        engine.store().maintenance(id).await.unwrap().step.as_deref() == Some("rebuild_standby")
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(daemons.0[0].id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut child = daemons.0.pop().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "daemon exit after SIGTERM: {status}");
    assert_eq!(engine.store().maintenance(id).await.unwrap().state, MaintenanceState::Completed, "SIGTERM cut the failover short");
    let mut admin = engine.endpoint().admin().await.unwrap();
    assert!(!admin.is_paused("cart").await.unwrap(), "endpoint left paused");
}

#[tokio::test]
async fn restart_pending_settings_and_the_periodic_refresh_are_detected_and_planned() {
    let env = TestEnv::new("daemon-detect");
    let engine = engine(&env).await;
    engine.create_database(&spec("wiki", "essential-0", None)).await.unwrap();
    engine.create_database(&spec("docs", "standard-0", None)).await.unwrap();
    let database = engine.store().database_named("wiki").await.unwrap();
    assert!(engine.store().open_maintenance(database.id).await.unwrap().is_none());

    // A setting that only a restart applies.
    let server = engine.provider().address(&engine.store().current_instance(database.id).await.unwrap().location);
    let client = crate::harness::connect_conninfo(&server.conninfo("postgres")).await;
    client.batch_execute("ALTER SYSTEM SET max_connections = 120").await.unwrap();
    client.batch_execute("SELECT pg_reload_conf()").await.unwrap();

    // A 14-day periodic interval makes a new database due for its refresh at once (14 days' notice).
    let mut once = daemon_with(&env, "detector", None, &["--once"], "\n[maintenance]\nperiodic_interval = \"14d\"\n");
    let status = tokio::task::spawn_blocking(move || once.wait()).await.unwrap().unwrap();
    assert!(status.success(), "daemon --once failed");
    let required = engine.store().open_maintenance(database.id).await.unwrap().expect("a maintenance was required");
    assert_eq!((required.reason.as_str(), required.strategy.as_str()), ("settings", "restart"));
    let planned = required.scheduled_for.expect("planned into a window");
    assert!(planned > Utc::now() && planned <= required.required_by, "planned at {planned}");

    let docs = engine.store().database_named("docs").await.unwrap();
    let periodic = engine.store().open_maintenance(docs.id).await.unwrap().expect("the periodic refresh was required");
    assert_eq!((periodic.reason.as_str(), periodic.strategy.as_str()), ("periodic", "switchover"));
    assert_eq!(periodic.required_by, docs.created_at + chrono::TimeDelta::days(14));
}
