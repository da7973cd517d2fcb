//! Changing a database's plan through the real binary and
//! an in-process API over real servers, each under writers, audited:
//! - essential: `upgrade` copies at once; writes are refused (25006), never
//!   lost, and resume on the new server;
//! - premium: `upgrade` prepares a replacement on the new plan, `maintenance
//!   run` switches over with zero client errors and zero lost commits, the
//!   follower is repointed and a new HA standby built;
//! - follower switchover by hand: follow, catch up, unfollow, promote.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgmaint::config::ApiConfig;
use pgmaint::engine::Engine;
use pgmaint::store::{AppHooks, InstanceRole};
use pgmaint::workload::{self, PrimaryWatch, Workload};
use serde_json::Value;
use tokio::sync::Notify;

use crate::api_test::{pgmaint, TestApi};
use crate::copy_test::{ids, scalar, writer};
use crate::engine_test::{all_servers, assert_follower_complete, engine, spec};
use crate::harness::{connect_conninfo, TestEnv};

async fn serve(env: &TestEnv, engine: &Arc<Engine>) -> (TestApi, PathBuf) {
    let socket = env.dir.join("api.sock");
    let config = ApiConfig { socket: socket.clone(), socket_group: None, tcp: None, token_file: None };
    (TestApi::start(engine.clone(), config, Arc::new(Notify::new())).await, socket)
}

/// `SHOW shared_buffers` on the server the endpoint routes `name` to.
async fn shared_buffers(engine: &Engine, name: &str) -> String {
    scalar(&connect_conninfo(&engine.endpoint().client_conninfo(name)).await, "SHOW shared_buffers").await
}

async fn info(socket: &Path, name: &str) -> Value {
    pgmaint(socket, &["info", name, "--json"]).await.ok("info --json").json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn essential_upgrade_copies_at_once_refusing_writes_without_losing_any() {
    let env = TestEnv::new("upgrade-essential");
    let engine = Arc::new(engine(&env).await);
    engine.create_database(&spec("blog", "essential-0", None)).await.expect("create blog");
    engine.create_app("web", "blog", &AppHooks::default(), "test").await.expect("create app");
    // The app's own role over TCP: the new server gets the roles recreated.
    let url = engine.endpoint_url("blog").await.unwrap();
    let blog = connect_conninfo(&url).await;
    blog.batch_execute(
        "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz DEFAULT now());
         CREATE TABLE posts (id serial PRIMARY KEY, body text);
         INSERT INTO posts (body) SELECT repeat('p', 200) FROM generate_series(1, 50000);",
    )
    .await
    .unwrap();
    drop(blog);
    assert_eq!(shared_buffers(&engine, "blog").await, "32MB");
    let (server, socket) = serve(&env, &engine).await;

    // Bad input: exit 2; unknown database: exit 1.
    for (args, code) in [(&["upgrade", "blog", "gold-1"][..], 2), (&["upgrade", "blog", "essential-0"], 2), (&["upgrade", "nowhere", "essential-1"], 1)] {
        let ran = pgmaint(&socket, args).await;
        assert_eq!(ran.code, code, "{args:?}: stdout {:?} stderr {:?}", ran.stdout, ran.stderr);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(url.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let upgraded = pgmaint(&socket, &["upgrade", "blog", "essential-2", "--json"]).await.ok("upgrade").json();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writing.await.unwrap();

    assert_eq!((upgraded["strategy"].as_str(), upgraded["from_plan"].as_str(), upgraded["to_plan"].as_str()), (Some("copy"), Some("essential-0"), Some("essential-2")));
    let run = &upgraded["run"];
    assert_eq!(run["outcome"], "completed", "{upgraded}");
    let steps: Vec<&str> = run["steps"].as_array().unwrap().iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(steps, ["prepare_target", "before_hook", "block_writes", "copy_data", "pause", "repoint", "resume", "release", "retire_old", "after_hook"]);

    // Refused while read-only, never lost, writing again on the new server.
    let acked: BTreeSet<i64> = writes.attempts.iter().filter(|(_, ok)| *ok).map(|(id, _)| *id).collect();
    eprintln!(
        "essential upgrade: write pause {:?} ms; writer {} attempts, {} acknowledged, {} refused (25006), other errors {:?}",
        run["write_pause_ms"],
        writes.attempts.len(),
        acked.len(),
        writes.refused,
        writes.other_errors
    );
    assert!(writes.refused > 0, "the writer was never refused");
    assert!(writes.other_errors.is_empty(), "errors other than read-only refusals: {:?}", writes.other_errors);
    assert!(writes.acked_after_refusals > 0, "writes did not resume after the copy");
    let blog = connect_conninfo(&url).await;
    let lost: Vec<i64> = acked.difference(&ids(&blog).await).copied().collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert_eq!(scalar(&blog, "SELECT count(*) FROM posts").await, "50000");
    assert_eq!(scalar(&blog, "SHOW default_transaction_read_only").await, "off");
    assert_eq!(scalar(&blog, "SELECT nextval('posts_id_seq')").await, "50001", "sequences carried over");

    // The database is on the new plan, on a new server sized for it; the old one is retired.
    let shown = info(&socket, "blog").await;
    assert_eq!(shown["plan"], "essential-2");
    assert!(shown["maintenance"].is_null(), "{shown}");
    assert_eq!(shared_buffers(&engine, "blog").await, "64MB");
    let database = engine.store().database_named("blog").await.unwrap();
    let retired: Vec<_> = engine.store().instances(database.id).await.unwrap().into_iter().filter(|i| i.role == InstanceRole::Retired).collect();
    assert_eq!(retired.len(), 1);
    assert!(!engine.provider().is_running(&retired[0].location).await.unwrap(), "the old server still runs");
    let releases = engine.releases("web").await.unwrap();
    assert_eq!(releases[0].change, "Plan change blog to essential-2");

    // The text form, once more to the next size.
    let text = pgmaint(&socket, &["upgrade", "blog", "essential-3"]).await.ok("upgrade (text)");
    assert!(text.stdout.starts_with("blog is now on essential-3 (was essential-2): its data was copied while it refused writes\n"), "{}", text.stdout);
    assert!(text.stdout.contains("Strategy:     copy\n"), "{}", text.stdout);
    assert_eq!(shared_buffers(&engine, "blog").await, "80MB");

    // History shows the copies.
    let history = pgmaint(&socket, &["maintenance", "history", "blog", "--json"]).await.ok("history").json();
    assert_eq!((history[0]["strategy"].as_str(), history[0]["reason"].as_str(), history[0]["state"].as_str()), (Some("copy"), Some("plan-change"), Some("completed")));

    server.stop().await;
    engine.stop_fleet().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premium_upgrade_prepares_a_replacement_on_the_new_plan_and_switches_over() {
    let env = TestEnv::new("upgrade-premium");
    let engine = Arc::new(engine(&env).await);
    engine.create_database(&spec("orders", "premium-0", None)).await.expect("create orders");
    engine.create_database(&spec("orders-f", "standard-0", Some("orders"))).await.expect("create follower");
    let (server, socket) = serve(&env, &engine).await;
    let url = engine.endpoint().client_conninfo("orders");
    workload::prepare(&url).await.unwrap();

    let upgraded = pgmaint(&socket, &["upgrade", "orders", "premium-2", "--required-by", "3d", "--json"]).await.ok("upgrade").json();
    assert_eq!((upgraded["strategy"].as_str(), upgraded["to_plan"].as_str()), (Some("switchover"), Some("premium-2")), "{upgraded}");
    let maintenance = &upgraded["maintenance"];
    assert_eq!((maintenance["reason"].as_str(), maintenance["target_plan"].as_str()), (Some("plan-change"), Some("premium-2")));
    let id = maintenance["id"].as_i64().unwrap();
    let shown = pgmaint(&socket, &["maintenance", "show", "orders"]).await.ok("maintenance show");
    assert!(shown.stdout.contains("replacement currently being prepared"), "{}", shown.stdout);
    assert!(shown.stdout.contains("Plan change to premium-2"), "{}", shown.stdout);
    let twice = pgmaint(&socket, &["upgrade", "orders", "premium-4"]).await;
    assert_eq!(twice.code, 1, "a second plan change while one is open: {:?}", twice.stderr);

    // The daemon prepares ahead of the window; here the test does, and watches `info`.
    engine.prepare_maintenance(id).await.expect("prepare");
    let text = pgmaint(&socket, &["info", "orders"]).await.ok("info");
    assert!(text.stdout.contains("Plan Change:        premium-0 -> premium-2"), "{}", text.stdout);
    assert!(text.stdout.contains("Progress:           replacement on premium-2 ready"), "{}", text.stdout);
    assert!(text.stdout.contains("replacement ready"), "{}", text.stdout);

    let watch = PrimaryWatch::start(all_servers(&engine, "orders").await);
    let writers = Workload::start(&url, 4);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let ran = pgmaint(&socket, &["maintenance", "run", "orders", "--force", "--json"]).await.ok("maintenance run").json();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let load = writers.stop().await.unwrap();
    let (most_writable, samples) = watch.stop().await.unwrap();
    eprintln!("premium plan change: {ran}; {} commits, max commit gap {:?}", load.acknowledged.len(), load.max_commit_gap);

    assert_eq!(ran["outcome"], "completed", "{ran}");
    let steps: Vec<&str> = ran["steps"].as_array().unwrap().iter().filter_map(|s| s["step"].as_str()).collect();
    for step in ["fence", "promote", "repoint", "resume", "repoint_followers", "retire_standby", "rebuild_standby", "retire_old"] {
        assert!(steps.contains(&step), "no {step} in {steps:?}");
    }
    assert!(load.acknowledged.len() > 100, "writers barely wrote: {}", load.acknowledged.len());
    assert_eq!(load.client_errors, 0, "client errors: {:?}", load.error_samples);
    assert!(samples > 10 && most_writable <= 1, "{most_writable} writable primaries at once ({samples} samples)");
    let lost = load.lost_on(&url).await.unwrap();
    assert!(lost.is_empty(), "{} acknowledged commits lost", lost.len());
    assert_follower_complete(&engine, "orders-f", &load).await;

    let shown = info(&socket, "orders").await;
    assert_eq!((shown["plan"].as_str(), shown["ha"].as_str()), (Some("premium-2"), Some("available")), "{shown}");
    assert_eq!(shared_buffers(&engine, "orders").await, "64MB");
    let database = engine.store().database_named("orders").await.unwrap();
    let standby = engine.store().instance_in_role(database.id, InstanceRole::HaStandby).await.unwrap().expect("a new HA standby");
    let standby_server = connect_conninfo(&engine.provider().address(&standby.location).conninfo("postgres")).await;
    assert_eq!(scalar(&standby_server, "SHOW shared_buffers").await, "64MB", "the new standby is on the new plan");
    let retired = engine.store().instances(database.id).await.unwrap().into_iter().filter(|i| i.role == InstanceRole::Retired).count();
    assert_eq!(retired, 2, "the old primary and the old standby are retired");

    // A follower's plan change swaps replicas: no promotion, still following.
    let follower = pgmaint(&socket, &["upgrade", "orders-f", "standard-2", "--json"]).await.ok("upgrade follower").json();
    let follower_id = follower["maintenance"]["id"].as_i64().unwrap();
    engine.prepare_maintenance(follower_id).await.expect("prepare follower replacement");
    let moved = pgmaint(&socket, &["maintenance", "run", "orders-f", "--force", "--json"]).await.ok("run follower plan change").json();
    let steps: Vec<&str> = moved["steps"].as_array().unwrap().iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(steps, ["before_hook", "pause", "repoint", "resume", "retire_old", "after_hook"], "{moved}");
    let shown = info(&socket, "orders-f").await;
    assert_eq!((shown["plan"].as_str(), shown["following"].as_str()), (Some("standard-2"), Some("orders")), "{shown}");
    let replica = connect_conninfo(&engine.endpoint().client_conninfo("orders-f")).await;
    assert_eq!(scalar(&replica, "SELECT pg_is_in_recovery()").await, "t", "the follower's replacement was promoted");
    assert_eq!(scalar(&replica, "SHOW shared_buffers").await, "64MB");
    assert_follower_complete(&engine, "orders-f", &load).await;

    server.stop().await;
    engine.stop_fleet().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_switchover_by_hand() {
    let env = TestEnv::new("follower-switchover");
    let engine = Arc::new(engine(&env).await);
    let env_file = env.dir.join("web.env");
    engine.create_database(&spec("orders", "standard-0", None)).await.expect("create orders");
    let hooks = AppHooks { env_file: Some(env_file.to_str().unwrap()), ..AppHooks::default() };
    engine.create_app("web", "orders", &hooks, "test").await.expect("create app");
    engine.create_database(&spec("orders-f", "standard-0", Some("orders"))).await.expect("create old follower");
    let (server, socket) = serve(&env, &engine).await;
    for name in ["DATABASE_CONNECTION_POOL", "REPORTING"] {
        pgmaint(&socket, &["apps", "attach", "web", "orders", "--as", name]).await.ok("apps attach");
    }
    let url = engine.endpoint().client_conninfo("orders");
    workload::prepare(&url).await.unwrap();
    let writers = Workload::start(&url, 4);

    // A follower on the new plan, created while writes go on.
    pgmaint(&socket, &["databases", "create", "orders-2", "--plan", "standard-2", "--follow", "orders"]).await.ok("create follower");
    let mut caught_up = None;
    for _ in 0..100 {
        let shown = info(&socket, "orders-2").await;
        assert_eq!(shown["following"], "orders");
        if shown["caught_up"] == true {
            caught_up = shown["behind_by"].as_i64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = caught_up.expect("the follower never caught up within 200 commits");
    assert!(caught_up <= 200);
    let text = pgmaint(&socket, &["info", "orders-2"]).await.ok("info");
    assert!(text.stdout.contains("Following:          orders\n"), "{}", text.stdout);
    assert!(text.stdout.contains("Behind By:          ") && text.stdout.contains(" commits\n"), "{}", text.stdout);

    // Maintenance mode on, writers to zero, wait for Behind By: 0 commits.
    pgmaint(&socket, &["apps", "maintenance", "on", "web"]).await.ok("maintenance on");
    let load = writers.stop().await.unwrap();
    assert_eq!(load.client_errors, 0, "{:?}", load.error_samples);
    let mut behind = None;
    for _ in 0..100 {
        behind = info(&socket, "orders-2").await["behind_by"].as_i64();
        if behind == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(behind, Some(0));

    // Unfollow: refused without a confirmation (no terminal) or with a wrong one.
    let unconfirmed = pgmaint(&socket, &["databases", "unfollow", "orders-2"]).await;
    assert_eq!(unconfirmed.code, 1);
    assert!(unconfirmed.stderr.contains("--confirm"), "{}", unconfirmed.stderr);
    let wrong = pgmaint(&socket, &["databases", "unfollow", "orders-2", "--confirm", "shop"]).await;
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("--confirm web"), "{}", wrong.stderr);
    // Nor while another maintenance of it is open.
    let open = engine.store().insert_maintenance(engine.store().database_named("orders-2").await.unwrap().id, "settings", "restart", chrono::Utc::now(), None).await.unwrap();
    let busy = pgmaint(&socket, &["databases", "unfollow", "orders-2", "--confirm", "web"]).await;
    assert_eq!(busy.code, 1);
    assert!(busy.stderr.contains(&format!("has maintenance #{} (settings) open", open.id)), "{}", busy.stderr);
    let claim = engine.store().claim_maintenance(open.id, "test", 30.0).await.unwrap().unwrap();
    engine.store().finish_maintenance(claim, pgmaint::store::MaintenanceState::Failed, "failed", Some("closed by the test"), None).await.unwrap();
    assert_eq!(info(&socket, "orders-2").await["following"], "orders", "a refused unfollow changed something");
    let unfollowed = pgmaint(&socket, &["databases", "unfollow", "orders-2", "--confirm", "web"]).await.ok("unfollow");
    assert!(unfollowed.stdout.contains("Forked From:        orders\n"), "{}", unfollowed.stdout);
    assert!(!unfollowed.stdout.contains("Following:"), "{}", unfollowed.stdout);
    // It was a maintenance like any other: in the history, completed.
    let history = pgmaint(&socket, &["maintenance", "history", "orders-2", "--json"]).await.ok("history").json();
    assert_eq!((history[0]["strategy"].as_str(), history[0]["reason"].as_str(), history[0]["state"].as_str()), (Some("unfollow"), Some("unfollow"), Some("completed")), "{history}");
    let again = pgmaint(&socket, &["databases", "unfollow", "orders-2", "--confirm", "web"]).await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("orders-2 is not a follower"), "{}", again.stderr);
    let new_url = engine.endpoint().client_conninfo("orders-2");
    let promoted_server = connect_conninfo(&new_url).await;
    assert_eq!(scalar(&promoted_server, "SELECT pg_is_in_recovery()").await, "f");
    assert_eq!(scalar(&promoted_server, "SHOW shared_buffers").await, "64MB");
    let lost = load.lost_on(&new_url).await.unwrap();
    assert!(lost.is_empty(), "{} acknowledged commits missing from the unfollowed database", lost.len());

    // Promote: refused for a follower; then DATABASE_URL and the default pooler move.
    let still = pgmaint(&socket, &["databases", "promote", "orders-f", "--app", "web"]).await;
    assert_eq!(still.code, 1);
    assert!(still.stderr.contains("unfollow it first"), "{}", still.stderr);
    let promoted = pgmaint(&socket, &["databases", "promote", "orders-2", "--app", "web", "--repoint-followers", "--json"]).await.ok("promote").json();
    eprintln!("promotion: {promoted}");
    assert_eq!(promoted["moved"], serde_json::json!(["DATABASE_CONNECTION_POOL_URL", "DATABASE_URL"]));
    assert_eq!(promoted["reattach"], serde_json::json!(["REPORTING_URL"]));
    assert_eq!((promoted["previous"].as_str(), promoted["previous_attached_as"].as_str()), (Some("orders"), Some("ORDERS_URL")));
    assert_eq!(promoted["release"]["change"], "Promote orders-2");
    let new_public = engine.endpoint_url("orders-2").await.unwrap();
    let old_public = engine.endpoint_url("orders").await.unwrap();
    let written = std::fs::read_to_string(&env_file).unwrap();
    assert!(written.contains(&format!("DATABASE_URL={new_public}\n")), "{written}");
    assert!(written.contains(&format!("DATABASE_CONNECTION_POOL_URL={new_public}\n")), "{written}");
    assert!(written.contains(&format!("ORDERS_URL={old_public}\n")) && written.contains(&format!("REPORTING_URL={old_public}\n")), "{written}");

    // The old primary's follower: repointed when it can follow (it had not
    // replayed past the fork), otherwise back on the old primary, streaming.
    let fate = promoted["followers"][0]["outcome"].as_str().unwrap().to_string();
    assert_eq!(promoted["followers"][0]["name"], "orders-f");
    promoted_server.batch_execute("INSERT INTO pgmaint_audit (id, writer) VALUES (-42, 0)").await.unwrap();
    let follower_url = engine.endpoint().client_conninfo("orders-f");
    let (expect_leader, expect_row) = if fate == "repointed" { ("orders-2", true) } else { ("orders", false) };
    assert!(fate == "repointed" || fate.starts_with("not repointed"), "{fate}");
    assert_eq!(promoted["followers"][0]["fate"], if fate == "repointed" { "repointed" } else { "not_repointed" }, "{promoted}");
    assert_eq!(info(&socket, "orders-f").await["following"], expect_leader);
    let mut seen = false;
    for _ in 0..100 {
        let follower = connect_conninfo(&follower_url).await;
        seen = scalar(&follower, "SELECT count(*) FROM pgmaint_audit WHERE id = -42").await == "1";
        if seen == expect_row {
            if !expect_row {
                // Still a streaming follower of the old primary.
                assert_eq!(scalar(&follower, "SELECT status FROM pg_stat_wal_receiver").await, "streaming");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, expect_row, "follower outcome {fate}");

    // Promoting back without --repoint-followers lists the followers that stay behind.
    let back = pgmaint(&socket, &["databases", "promote", "orders", "--app", "web"]).await.ok("promote back");
    assert!(back.stdout.starts_with("Promoted orders to DATABASE_CONNECTION_POOL_URL and DATABASE_URL of web (v5)\n"), "{}", back.stdout);
    assert!(back.stdout.contains("orders-2 stays attached to web as ORDERS_2_URL\n"), "{}", back.stdout);
    let listed = back.stdout.contains("Follower orders-f still follows orders-2: re-create it with");
    assert_eq!(listed, fate == "repointed", "{}", back.stdout);
    assert_eq!(info(&socket, "orders-f").await["following"], expect_leader, "a promotion without --repoint-followers moved a follower");
    eprintln!("follower switchover: caught up at {caught_up} commits behind; orders-f {fate}; {} commits, 0 lost", load.acknowledged.len());

    server.stop().await;
    engine.stop_fleet().await.unwrap();
}

#[tokio::test]
async fn a_failed_essential_copy_leaves_the_database_writable_on_its_old_server() {
    let env = TestEnv::new("upgrade-essential-failed");
    let engine = engine(&env).await;
    engine.create_database(&spec("notes", "essential-0", None)).await.expect("create notes");
    let url = engine.endpoint().client_conninfo("notes");
    connect_conninfo(&url).await.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1);").await.unwrap();
    let database = engine.store().database_named("notes").await.unwrap();
    let old = engine.store().current_instance(database.id).await.unwrap();
    let maintenance = engine.store().insert_maintenance(database.id, "plan-change", "copy", chrono::Utc::now(), Some("essential-1")).await.unwrap();
    engine.prepare_maintenance(maintenance.id).await.expect("prepare the target");
    // The new server goes away before the copy: the copy cannot succeed.
    let target = engine.store().instance(engine.store().maintenance(maintenance.id).await.unwrap().candidate_id.unwrap()).await.unwrap();
    engine.provider().stop(&target.location, pgmaint::provider::StopMode::Kill).await.unwrap();

    let error = engine.run_maintenance(maintenance.id).await.expect_err("a copy into a stopped server");
    eprintln!("failed as expected: {error}");
    let record = engine.store().maintenance(maintenance.id).await.unwrap();
    assert_eq!(record.state, pgmaint::store::MaintenanceState::Failed);
    let after = engine.store().database(database.id).await.unwrap();
    assert_eq!(after.plan, "essential-0", "a failed plan change changed the plan");
    assert_eq!(engine.store().current_instance(database.id).await.unwrap().id, old.id);
    assert_eq!(engine.store().instance(target.id).await.unwrap().role, InstanceRole::Retired);
    let client = connect_conninfo(&url).await;
    assert_eq!(scalar(&client, "SHOW default_transaction_read_only").await, "off");
    client.batch_execute("INSERT INTO t VALUES (2)").await.expect("the database takes writes again");
    assert_eq!(scalar(&client, "SELECT count(*) FROM t").await, "2");
    engine.stop_fleet().await.unwrap();
}
