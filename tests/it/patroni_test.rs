//! Adopted Patroni clusters, for real: etcd and a 3-member Patroni cluster on
//! 127.0.0.1, a pgmaint daemon process, and the `pgmaint` binary as an
//! operator types it: adopt, clients with their own roles through the
//! endpoint, a pending restart detected and rolled member by member, a
//! daemon killed mid-handover and resumed, an `os-patch` whose host hook
//! sees replicas first and the old leader last under 8 writers, and a hook
//! failing on a replica (the leader untouched, the owners told).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api_test::{pgmaint, Ran};
use crate::harness::TestEnv;
use crate::manual_run_test::{wait_for_socket, DaemonProcess};
use pgmaint::engine::runbook::Runbook;
use pgmaint::engine::FAILPOINT_EXIT_CODE;
use pgmaint::lab::PatroniLab;
use pgmaint::workload::{self, PrimaryWatch, Workload};

fn in_three_days() -> String {
    (chrono::Utc::now() + chrono::TimeDelta::days(3)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

const OWNER: &str = "owner@example.com";
const SHOPPER_PASSWORD: &str = "shopper-Secret-1";

/// A daemon configuration for `lab`, with `[patroni]` and `extra` lines in it.
fn write_config(env: &TestEnv, lab: &PatroniLab, extra: &str) -> PathBuf {
    let role = lab.pgmaint_role().expect("the lab has pgmaint's role");
    let password_file = env.dir.join("pgmaint-pg.pw");
    std::fs::write(&password_file, format!("{}\n", role.password)).unwrap();
    std::fs::set_permissions(&password_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = env.dir.join("pgmaint.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ntick = \"1s\"\nlease = \"4s\"\n\n[patroni]\npg_user = \"{}\"\npg_password_file = \"{}\"\nmember_timeout = \"90s\"\n{extra}\n{}",
            role.name,
            password_file.display(),
            env.endpoint_config()
        ),
    )
    .unwrap();
    config
}

/// Adopts the lab as `shop` (its `postgres` database) and makes a client role of the cluster's own.
async fn adopt(socket: &Path, lab: &PatroniLab) -> Value {
    let urls = lab.rest_urls().join(",");
    let info = pgmaint(socket, &["databases", "adopt", "shop", "--patroni", &urls, "--dbname", "postgres", "--owner", OWNER, "--json"]).await.ok("adopt").json();
    let leader = lab.member_named(&lab.leader_name().await.unwrap()).unwrap().clone();
    let admin = crate::harness::connect_conninfo(&lab.conninfo(&leader, "postgres")).await;
    admin
        .batch_execute(&format!("CREATE ROLE shopper LOGIN PASSWORD '{SHOPPER_PASSWORD}'; GRANT ALL ON SCHEMA public TO shopper"))
        .await
        .expect("a client role of the cluster's own");
    info
}

/// A daemon whose `host_hook` is the test's `hook.sh`, with the lab adopted as `shop`.
async fn adopt_with_hook(env: &TestEnv, lab: &PatroniLab) -> (PathBuf, PathBuf, PathBuf, DaemonProcess) {
    let config = write_config(env, lab, &format!("host_hook = \"sh {}/hook.sh\"", env.dir.display()));
    let data_dir = env.dir.join("d");
    let socket = data_dir.join("pgmaint.sock");
    let daemon = DaemonProcess::start(env, &config, &data_dir);
    wait_for_socket(&socket, &daemon).await;
    adopt(&socket, lab).await;
    (config, data_dir, socket, daemon)
}

/// The endpoint as the cluster's own client role `shopper`.
fn shopper(env: &TestEnv, password: &str) -> String {
    format!("host=127.0.0.1 port={} user=shopper password={password} dbname=shop connect_timeout=10", env.endpoint.port())
}

/// The port of the server behind the endpoint (which member it routes to).
async fn routed_port(env: &TestEnv) -> u16 {
    let client = crate::harness::connect_conninfo(&shopper(env, SHOPPER_PASSWORD)).await;
    let port: i32 = client.query_one("SELECT inet_server_port()", &[]).await.unwrap().get(0);
    port as u16
}

async fn info(socket: &Path) -> Value {
    pgmaint(socket, &["info", "shop", "--json"]).await.ok("info").json()
}

/// Waits until `info`'s maintenance satisfies `done`.
async fn wait_for_maintenance(socket: &Path, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let info = info(socket).await;
        if done(&info["maintenance"]) {
            return info;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {info:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Changes `parameters` in Patroni's dynamic configuration (they wait for a
/// restart) and waits until the daemon requires `settings` with `strategy`.
async fn change_settings_and_detect(lab: &PatroniLab, socket: &Path, parameters: Value, strategy: &str) {
    let patched = reqwest::Client::new()
        .patch(format!("{}/config", lab.rest_urls()[0]))
        .json(&serde_json::json!({ "postgresql": { "parameters": parameters } }))
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success(), "PATCH /config: {}", patched.status());
    let detected = wait_for_maintenance(socket, "detection of the pending restart", |m| m["reason"] == "settings").await;
    assert_eq!(detected["maintenance"]["strategy"], strategy, "{detected:#}");
}

fn history(ran: Ran) -> Vec<Value> {
    ran.ok("history").json().as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopted_cluster_detects_a_pending_restart_and_rolls_it_through_a_killed_daemon() {
    let env = TestEnv::new("patroni-settings");
    let lab = env.patroni(3).await;
    let config = write_config(&env, &lab, "");
    let data_dir = env.dir.join("d");
    let socket = data_dir.join("pgmaint.sock");
    let daemon = DaemonProcess::start(&env, &config, &data_dir);
    wait_for_socket(&socket, &daemon).await;

    let adopted = adopt(&socket, &lab).await;
    let first_leader = lab.leader_name().await.unwrap();
    assert_eq!(adopted["leader"], first_leader.as_str(), "{adopted:#}");
    assert_eq!(adopted["members"].as_array().map(Vec::len), Some(3), "{adopted:#}");
    assert_eq!(adopted["endpoint_url"], format!("postgresql://{}/shop", env.endpoint).as_str());
    assert!(adopted["members"].as_array().unwrap().iter().all(|m| m["server_version"].as_u64().is_some_and(|v| v >= 150000)), "{adopted:#}");
    let text = pgmaint(&socket, &["info", "shop"]).await.ok("info").stdout;
    assert!(text.contains("Patroni leader:") && text.contains(&first_leader) && text.contains("PENDING RESTART"), "{text}");

    // Clients keep their own roles and passwords; pgmaint's role is no client login.
    let leader_port = lab.member_named(&first_leader).unwrap().pg_port;
    assert_eq!(routed_port(&env).await, leader_port, "the endpoint routes to Patroni's leader");
    let wrong = tokio_postgres::connect(&shopper(&env, "wrong-password"), tokio_postgres::NoTls).await;
    assert!(wrong.is_err(), "a wrong password gets in");
    let role = lab.pgmaint_role().unwrap();
    let as_pgmaint = format!("host=127.0.0.1 port={} user={} password={} dbname=shop", env.endpoint.port(), role.name, role.password);
    assert!(tokio_postgres::connect(&as_pgmaint, tokio_postgres::NoTls).await.is_err(), "pgmaint's role logged in through the endpoint");

    // What needs pgmaint-made servers is refused, saying why; adopting twice too.
    let follow = pgmaint(&socket, &["databases", "create", "shop-f", "--plan", "standard-0", "--follow", "shop"]).await;
    assert!(follow.code != 0 && follow.stderr.contains("adopted Patroni cluster"), "{follow:?}");
    let again = pgmaint(&socket, &["databases", "adopt", "shop2", "--patroni", &lab.rest_urls()[1], "--dbname", "postgres"]).await;
    assert!(again.code != 0 && again.stderr.contains("already adopted as shop"), "{again:?}");
    let with_secret = pgmaint(&socket, &["databases", "adopt", "shop3", "--patroni", "http://admin:s3cret@127.0.0.1:1", "--dbname", "postgres"]).await;
    assert!(with_secret.code == 2 && with_secret.stderr.contains("rest_user") && !with_secret.stderr.contains("s3cret"), "{with_secret:?}");

    // A setting that waits for a restart: Patroni reports it, pgmaint requires `settings`.
    change_settings_and_detect(&lab, &socket, serde_json::json!({"shared_buffers": "48MB"}), "rolling").await;

    // The operator runs it now; the daemon dies right after Patroni's handover.
    daemon.stop().await;
    let mut dying = DaemonProcess::start_with_failpoint(&env, &config, &data_dir, Some("handover:after:exit"));
    wait_for_socket(&socket, &dying).await;
    let run = pgmaint(&socket, &["maintenance", "run", "shop", "--force"]).await;
    assert_ne!(run.code, 0, "the run survived its daemon: {run:?}");
    died_at(&mut dying, "handover:after").await;
    drop(dying);
    std::fs::remove_file(&socket).expect("the dead daemon's socket");
    // A fresh daemon resumes the maintenance where it stood, and finishes it.
    let daemon = DaemonProcess::start(&env, &config, &data_dir);
    wait_for_socket(&socket, &daemon).await;
    pgmaint(&socket, &["wait", "shop", "--timeout", "120s"]).await.ok("wait");
    let past = history(pgmaint(&socket, &["maintenance", "history", "shop", "--json"]).await);
    assert_eq!(past.first().map(|m| (m["reason"].clone(), m["state"].clone())), Some(("settings".into(), "completed".into())), "{past:#?}\n{}", daemon.log());

    // Every member restarted (none pending), leadership moved, the endpoint follows it.
    let members = lab.cluster().await.unwrap();
    assert!(members.iter().all(|m| !m.pending_restart), "{members:?}");
    let new_leader = lab.leader_name().await.unwrap();
    assert_ne!(new_leader, first_leader, "the rolling restart hands leadership over");
    assert_eq!(routed_port(&env).await, lab.member_named(&new_leader).unwrap().pg_port);
    let info = info(&socket).await;
    assert_eq!(info["leader"], new_leader.as_str());
    assert!(info["members"].as_array().unwrap().iter().all(|m| m["pending_restart"] == false), "{info:#}");
    let (_, log) = daemon.stop().await;
    assert!(!log.contains(&role.password), "the daemon logged pgmaint's password");
    lab.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_patch_hooks_replicas_first_under_writers_and_a_failing_hook_stops_before_the_leader() {
    let env = TestEnv::new("patroni-os-patch");
    let lab = env.patroni(3).await;
    let dir = env.dir.clone();
    std::fs::write(
        dir.join("hook.sh"),
        format!(
            "echo \"$PGMAINT_DATABASE $PGMAINT_MEMBER $PGMAINT_ROLE $PGMAINT_REASON $PGMAINT_HOST:$PGMAINT_PORT\" >> {0}/order.log\n\
             if [ -e {0}/broken-$PGMAINT_MEMBER ]; then echo \"apt: $PGMAINT_MEMBER is broken\"; exit 4; fi\n",
            dir.display()
        ),
    )
    .unwrap();
    let (_, data_dir, socket, daemon) = adopt_with_hook(&env, &lab).await;
    let first_leader = lab.leader_name().await.unwrap();
    let mut replicas: Vec<String> = lab.members().iter().map(|m| m.name.clone()).filter(|name| *name != first_leader).collect();
    replicas.sort();
    // An app attached to the adopted database: its URL carries no login (clients bring their own).
    let env_file = dir.join("web.env");
    pgmaint(&socket, &["apps", "create", "web", "--attach", "shop", "--env-file", env_file.to_str().unwrap()]).await.ok("apps create");
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), format!("DATABASE_URL=postgresql://{}/shop\n", env.endpoint));

    // 8 writers through the endpoint, as the cluster's own role, while every member is patched.
    let writers = shopper(&env, SHOPPER_PASSWORD);
    workload::prepare(&writers).await.unwrap();
    let load = Workload::start(&writers, 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    pgmaint(&socket, &["maintenance", "require", "shop", "--reason", "os-patch", "--required-by", &in_three_days()]).await.ok("require");
    // Nothing is prepared ahead for a Patroni cluster: a pending maintenance is not busy.
    pgmaint(&socket, &["wait", "shop", "--timeout", "5s"]).await.ok("wait on a pending rolling maintenance");
    let ran = pgmaint(&socket, &["maintenance", "run", "shop", "--force"]).await.ok("run");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.stop().await.unwrap();
    assert_eq!(report.client_errors, 0, "client errors: {:?}\n{}", report.error_samples, ran.stdout);
    let new_leader = lab.leader_name().await.unwrap();
    assert_ne!(new_leader, first_leader);
    let lost = report.lost_on(&lab.conninfo(lab.member_named(&new_leader).unwrap(), "postgres")).await.unwrap();
    assert!(report.acknowledged.len() > 100 && lost.is_empty(), "{} acknowledged, lost {lost:?}", report.acknowledged.len());
    let order: Vec<String> = std::fs::read_to_string(dir.join("order.log")).unwrap().lines().map(str::to_string).collect();
    let members: Vec<&str> = order.iter().map(|line| line.split(' ').nth(1).unwrap()).collect();
    assert_eq!(members, [replicas[0].as_str(), replicas[1].as_str(), first_leader.as_str()], "replicas first, the old leader last: {order:?}");
    assert!(order.iter().all(|line| line.starts_with("shop ") && line.contains(" replica os-patch 127.0.0.1:")), "{order:?}");
    let releases = pgmaint(&socket, &["releases", "web", "--json"]).await.ok("releases").json();
    assert_eq!(releases[0]["change"], "Switchover shop", "{releases:#}");
    eprintln!("os-patch under 8 writers: longest commit gap {:?}, {} commits; {}", report.max_commit_gap, report.acknowledged.len(), ran.stdout.trim());

    // A hook failing on a replica stops the maintenance before the switchover.
    let mut replicas: Vec<String> = lab.members().iter().map(|m| m.name.clone()).filter(|name| *name != new_leader).collect();
    replicas.sort();
    std::fs::write(dir.join(format!("broken-{}", replicas[0])), "").unwrap();
    std::fs::remove_file(dir.join("order.log")).unwrap();
    pgmaint(&socket, &["maintenance", "require", "shop", "--reason", "os-patch", "--required-by", &in_three_days()]).await.ok("require again");
    let failed = pgmaint(&socket, &["maintenance", "run", "shop", "--force"]).await;
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains(&format!("the host hook on member {} failed", replicas[0])) && failed.stderr.contains("is broken"), "{failed:?}");
    assert_eq!(lab.leader_name().await.unwrap(), new_leader, "the leader was touched");
    let order = std::fs::read_to_string(dir.join("order.log")).unwrap();
    assert_eq!(order.lines().count(), 1, "the maintenance went on after the failing hook: {order}");
    let past = history(pgmaint(&socket, &["maintenance", "history", "shop", "--json"]).await);
    assert_eq!(past[0]["state"], "failed", "{past:#?}");
    assert!(past[0]["error"].as_str().is_some_and(|e| e.contains("is broken")), "{past:#?}");
    let mail_dir = data_dir.join("mail");
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::rollout_test::mails_with(&mail_dir, &[OWNER, "shop", "failed"]) == 0 {
        assert!(Instant::now() < deadline, "the owners were not told of the failure");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    daemon.stop().await;
    lab.stop().await.unwrap();
}

/// Waits until `daemon` exits at its failpoint (and fails the test if it does not).
async fn died_at(daemon: &mut DaemonProcess, failpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = daemon.try_status() {
            break status;
        }
        assert!(Instant::now() < deadline, "{failpoint}: the daemon never reached it; log:\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(FAILPOINT_EXIT_CODE), "{failpoint}: the daemon did not stop there; log:\n{}", daemon.log());
}

/// Kills a daemon at each step boundary of `runbook` in turn, all within
/// the one maintenance open on `shop`: each fresh daemon resumes where the
/// last one died (repeating the step it died in, which finds its work done)
/// and dies at the next boundary; the last one, without a failpoint,
/// finishes it. Answers the number of boundaries.
async fn kill_at_every_boundary(env: &TestEnv, config: &Path, data_dir: &Path, runbook: Runbook) -> usize {
    let socket = data_dir.join("pgmaint.sock");
    let boundaries = crate::kill_test::every_boundary(runbook);
    for (at, failpoint) in boundaries.iter().enumerate() {
        let _ = std::fs::remove_file(&socket);
        let mut dying = DaemonProcess::start_with_failpoint(env, config, data_dir, Some(failpoint));
        if at == 0 {
            wait_for_socket(&socket, &dying).await;
            let run = pgmaint(&socket, &["maintenance", "run", "shop", "--force"]).await;
            assert_ne!(run.code, 0, "{failpoint}: the run survived its daemon: {run:?}");
        }
        // Later daemons resume the running maintenance by themselves.
        died_at(&mut dying, failpoint).await;
    }
    let _ = std::fs::remove_file(&socket);
    let daemon = DaemonProcess::start(env, config, data_dir);
    wait_for_socket(&socket, &daemon).await;
    pgmaint(&socket, &["wait", "shop", "--timeout", "120s"]).await.ok("wait");
    let past = history(pgmaint(&socket, &["maintenance", "history", "shop", "--json"]).await);
    assert_eq!(past[0]["state"], "completed", "{past:#?}\n{}", daemon.log());
    daemon.stop().await;
    crate::kill_test::record_coverage(runbook, boundaries.len());
    boundaries.len()
}

/// Both Patroni runbooks survive a kill at every step boundary, under
/// writers through the endpoint: no acknowledged write is lost, no client
/// sees an error, and never are two members writable at once. First an
/// `os-patch` (replicas, then the handover, then the old leader), then
/// settings that lower `max_connections` (the leader restarted first, in
/// place: no handover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patroni_runbooks_survive_a_kill_at_every_step_boundary() {
    let env = TestEnv::new("patroni-drill");
    let lab = env.patroni(3).await;
    let dir = env.dir.clone();
    std::fs::write(dir.join("hook.sh"), format!("echo \"$PGMAINT_MEMBER\" >> {}/order.log\n", dir.display())).unwrap();
    let (config, data_dir, socket, daemon) = adopt_with_hook(&env, &lab).await;
    let first_leader = lab.leader_name().await.unwrap();
    pgmaint(&socket, &["maintenance", "require", "shop", "--reason", "os-patch", "--required-by", &in_three_days()]).await.ok("require");
    daemon.stop().await;

    let writers = shopper(&env, SHOPPER_PASSWORD);
    workload::prepare(&writers).await.unwrap();
    let watch = PrimaryWatch::start(lab.members().iter().map(|m| lab.conninfo(m, "postgres")).collect());
    let load = Workload::start(&writers, 4);
    let mut kills = kill_at_every_boundary(&env, &config, &data_dir, Runbook::PatroniRolling).await;
    let leader = lab.leader_name().await.unwrap();
    assert_ne!(leader, first_leader);
    // Each replica patched once (a resumed run skips the members recorded
    // done); the old leader last, again only when the run died inside its step.
    let patched: Vec<String> = std::fs::read_to_string(dir.join("order.log")).unwrap().lines().map(str::to_string).collect();
    let replicas: Vec<&String> = patched.iter().filter(|m| **m != first_leader).collect();
    assert_eq!(replicas.len(), 2, "{patched:?}");
    assert_ne!(replicas[0], replicas[1], "{patched:?}");
    assert!(patched[2..].iter().all(|m| *m == first_leader) && patched.len() <= 4, "{patched:?}");

    // Lowering max_connections: detected, and the leader goes first.
    let daemon = DaemonProcess::start(&env, &config, &data_dir);
    wait_for_socket(&socket, &daemon).await;
    change_settings_and_detect(&lab, &socket, serde_json::json!({"max_connections": 90}), "rolling-leader-first").await;
    daemon.stop().await;
    kills += kill_at_every_boundary(&env, &config, &data_dir, Runbook::PatroniLeaderFirst).await;
    assert_eq!(lab.leader_name().await.unwrap(), leader, "leader first restarts the leader in place");
    let members = lab.cluster().await.unwrap();
    assert!(members.iter().all(|m| !m.pending_restart), "{members:?}");
    let leader_conn = crate::harness::connect_conninfo(&lab.conninfo(lab.member_named(&leader).unwrap(), "postgres")).await;
    let max_connections: String = leader_conn.query_one("SHOW max_connections", &[]).await.unwrap().get(0);
    assert_eq!(max_connections, "90");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = load.stop().await.unwrap();
    let (most_writable, _) = watch.stop().await.unwrap();
    assert!(most_writable <= 1, "{most_writable} writable members at once");
    let lost = report.lost_on(&lab.conninfo(lab.member_named(&leader).unwrap(), "postgres")).await.unwrap();
    assert!(lost.is_empty(), "{} acknowledged commits lost", lost.len());
    assert_eq!(report.client_errors, 0, "client errors: {:?}", report.error_samples);
    eprintln!("patroni runbooks: {kills} kills survived, {} commits, longest commit gap {:?}", report.acknowledged.len(), report.max_commit_gap);
    lab.stop().await.unwrap();
}
