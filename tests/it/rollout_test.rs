//! Fleet rollouts through the real binary and a real daemon process, with
//! `[hooks]` commands: a two-wave rollout whose canary completes runs its
//! second wave only after the bake (and across a daemon restart during the
//! bake), at the time `rollout plan` gave; one whose canary fails in
//! `before_maintenance` halts with its later wave untouched, owners and
//! watchers mailed and a `rollout-halted` webhook received, and finishes
//! after `resume` once the hook is fixed; a failing `after_maintenance` marks
//! a completed maintenance's check failed. A chat receiver gets each
//! rollout's waves, bake, halt and completion as webhooks, once each.
//! Essential databases with the restart strategy (`settings`) and a deadline
//! minutes away (runs forced at once) keep it quick.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::api_test::pgmaint;
use crate::harness::TestEnv;
use crate::manual_run_test::{wait_for_socket, DaemonProcess};
use crate::webhook_test::Receiver;

const BAKE_SECS: i64 = 10;

fn at(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap_or_else(|| panic!("not a time: {value}")).parse().unwrap()
}

/// The database `name` in a `rollout show --json` answer.
fn member<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["waves"].as_array().unwrap().iter().flat_map(|w| w["databases"].as_array().unwrap()).find(|m| m["database"] == name).unwrap()
}

async fn show(socket: &Path, name: &str) -> Value {
    pgmaint(socket, &["rollout", "show", name, "--json"]).await.ok("rollout show").json()
}

/// Polls `rollout show` until its state is `state`.
async fn until_state(socket: &Path, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let view = show(socket, name).await;
        if view["state"] == state {
            return view;
        }
        assert!(Instant::now() < deadline, "rollout {name} never became {state}: {view:#}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The `.eml` files under `dir` that contain every one of `words`.
pub(crate) fn mails_with(dir: &Path, words: &[&str]) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter(|text| words.iter().all(|w| text.contains(w)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_bake_between_waves_halt_on_a_failed_hook_and_resume() {
    let env = TestEnv::new("rollouts");
    let state = env.primary("state").await;
    let dir = env.dir.clone();
    // The before hook refuses a database while a file names it; the after
    // hook logs its environment and fails while another file names it.
    std::fs::write(dir.join("before.sh"), format!("if [ -e {0}/refuse-$PGMAINT_DATABASE ]; then echo \"draining $PGMAINT_DATABASE\"; echo \"drain of $PGMAINT_DATABASE refused\" >&2; exit 3; fi\n", dir.display())).unwrap();
    std::fs::write(
        dir.join("after.sh"),
        format!("echo \"$PGMAINT_DATABASE $PGMAINT_MAINTENANCE_ID $PGMAINT_REASON $PGMAINT_STRATEGY [$PGMAINT_ROLLOUT]\" >> {0}/after.log\nif [ -e {0}/unhealthy-$PGMAINT_DATABASE ]; then echo \"$PGMAINT_DATABASE answers 500\"; exit 1; fi\n", dir.display()),
    )
    .unwrap();
    let chat = Receiver::start(crate::harness::free_port(), 0).await;
    let config = dir.join("pgmaint.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ntick = \"1s\"\nlease = \"4s\"\n\n[state]\nurl = \"{}\"\n\n[hooks]\nbefore_maintenance = \"sh {1}/before.sh\"\nafter_maintenance = \"sh {1}/after.sh\"\nhook_timeout = \"30s\"\n\n[notify]\nwebhooks = [\"{2}\"]\n",
            state.url("postgres"),
            dir.display(),
            chat.url("/chat")
        ),
    )
    .unwrap();
    let data_dir = dir.join("d");
    let mut daemon = DaemonProcess::start(&env, &config, &data_dir);
    let socket = data_dir.join("pgmaint.sock");
    wait_for_socket(&socket, &daemon).await;

    for (name, group) in [("a1", "a"), ("a2", "a"), ("b1", "b"), ("b2", "b"), ("c1", "c")] {
        let owner = format!("owner-{name}@example.com");
        pgmaint(&socket, &["databases", "create", name, "--plan", "essential-0", "--label", &format!("group={group}"), "--owner", &owner]).await.ok("create");
    }
    // Labels: set, shown by info and list, removed.
    pgmaint(&socket, &["databases", "label", "c1", "tier=bronze", "team=web"]).await.ok("label");
    let removed = pgmaint(&socket, &["databases", "label", "c1", "--remove", "team", "--json"]).await.ok("label --remove").json();
    assert_eq!(removed["labels"], serde_json::json!({"group": "c", "tier": "bronze"}));
    let info = pgmaint(&socket, &["info", "c1"]).await.ok("info").stdout;
    assert!(info.contains("Labels:             group=c,tier=bronze"), "{info}");
    let listed = pgmaint(&socket, &["databases", "list"]).await.ok("list").stdout;
    assert!(listed.lines().any(|l| l.starts_with("a1 ") && l.contains("group=a")), "{listed}");
    assert_eq!(pgmaint(&socket, &["databases", "label", "c1", "Bad=1"]).await.code, 2, "a malformed label is bad input");

    // A deadline minutes away: no window fits, so each maintenance runs as soon as it is required.
    let required_by = (Utc::now() + chrono::TimeDelta::minutes(15)).to_rfc3339();
    let bake = format!("{BAKE_SECS}s");
    std::fs::write(dir.join("refuse-b1"), "").unwrap();
    let created = pgmaint(&socket, &["rollout", "create", "ra", "--reason", "settings", "--select", "group=a", "--waves", "1,100%", "--bake", &bake, "--required-by", &required_by, "--json"]).await.ok("create ra").json();
    assert_eq!(created["waves"].as_array().unwrap().len(), 2, "{created:#}");
    let planned = pgmaint(&socket, &["rollout", "plan", "ra", "--json"]).await.ok("plan ra").json();
    let planned_second = at(&planned["waves"][1]["databases"][0]["start"]);
    assert_eq!(planned["waves"][1]["databases"][0]["database"], "a2");
    pgmaint(&socket, &["rollout", "create", "rb", "--reason", "settings", "--databases", "b2,b1", "--canary", "b1", "--waves", "1,100%", "--bake", &bake, "--required-by", &required_by, "--notify", "watcher@example.com"]).await.ok("create rb");
    let duplicate = pgmaint(&socket, &["rollout", "create", "ra", "--reason", "settings", "--select", "group=c", "--waves", "100%"]).await;
    assert_eq!(duplicate.code, 1, "a rollout name is taken once: {}", duplicate.stderr);
    assert_eq!(pgmaint(&socket, &["rollout", "create", "rd", "--reason", "settings", "--select", "group=a", "--waves", "50%,10%"]).await.code, 2);

    // ra: the canary completes, the rollout bakes with a2 not required, and a
    // daemon restarted during the bake carries on.
    let baking = until_state(&socket, "ra", "baking").await;
    assert_eq!(member(&baking, "a1")["state"], "completed", "{baking:#}");
    assert_eq!(member(&baking, "a2")["state"], "waiting", "{baking:#}");
    let (status, _) = daemon.stop().await;
    assert!(status.success(), "daemon exit: {status}");
    daemon = DaemonProcess::start(&env, &config, &data_dir);
    wait_for_socket(&socket, &daemon).await;
    let done = until_state(&socket, "ra", "completed").await;
    let canary_finished = at(&member(&done, "a1")["finished_at"]);
    let second_started = at(&member(&done, "a2")["started_at"]);
    assert_eq!(member(&done, "a2")["state"], "completed", "{done:#}");
    assert!(second_started >= canary_finished + chrono::TimeDelta::seconds(BAKE_SECS), "wave 2 started {second_started}, the canary finished {canary_finished}");
    assert!((second_started - planned_second).num_seconds().abs() < 60, "planned {planned_second}, started {second_started}");

    // rb: the canary's before hook refuses; the rollout halts, b2 untouched.
    let halted = until_state(&socket, "rb", "halted").await;
    assert_eq!(member(&halted, "b1")["state"], "failed", "{halted:#}");
    assert_eq!(member(&halted, "b2")["state"], "waiting", "{halted:#}");
    assert_eq!(member(&halted, "b2")["maintenance_id"], Value::Null);
    assert!(halted["halted_because"].as_str().unwrap().contains("drain of b1 refused"), "{halted:#}");
    let history = pgmaint(&socket, &["maintenance", "history", "b1", "--json"]).await.ok("history").json();
    assert_eq!(history[0]["outcome"], "failed");
    assert!(history[0]["error"].as_str().unwrap().contains("draining b1\ndrain of b1 refused"), "{history:#}");
    let shown = pgmaint(&socket, &["maintenance", "show", "b1"]).await.ok("show").stdout;
    assert!(shown.contains("failed") && shown.contains("drain of b1 refused"), "{shown}");
    assert_eq!(pgmaint(&socket, &["rollout", "pause", "rb"]).await.code, 1, "a halted rollout cannot be paused");
    let mail = data_dir.join("mail");
    let deadline = Instant::now() + Duration::from_secs(30);
    while mails_with(&mail, &["watcher@example.com", "Rollout halted"]) == 0 || mails_with(&mail, &["owner-b1@example.com", "Rollout halted"]) == 0 {
        assert!(Instant::now() < deadline, "no rollout-halted mail to the watcher and b1's owner in {}", mail.display());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(mails_with(&mail, &["owner-b1@example.com", "drain of b1 refused"]) >= 1, "the owner's mail carries the hook's output");
    assert_eq!(mails_with(&mail, &["owner-b2@example.com"]), 0, "b2 was never touched");
    let rb = Value::from("rb");
    let halted_hook = chat.wait_for("rollout-halted", "rollout", &rb, Duration::from_secs(30)).await;
    assert_eq!((halted_hook["database"].as_str(), halted_hook["wave"].as_u64(), halted_hook["waves"].as_u64()), (Some("b1"), Some(1), Some(2)), "{halted_hook}");
    assert_eq!(halted_hook["maintenance_id"], history[0]["id"], "{halted_hook}");
    let text = halted_hook["text"].as_str().unwrap();
    assert!(text.starts_with("[pgmaint] Rollout rb (settings) HALTED at wave 1 of 2: ") && text.contains("drain of b1 refused"), "{text}");
    let b1_failed = chat.wait_for("failed", "database", &Value::from("b1"), Duration::from_secs(30)).await;
    assert_eq!(b1_failed["rollout"], "rb", "{b1_failed}");

    // Fixed: resume finishes it.
    std::fs::remove_file(dir.join("refuse-b1")).unwrap();
    pgmaint(&socket, &["rollout", "resume", "rb"]).await.ok("resume");
    let finished = until_state(&socket, "rb", "completed").await;
    assert_eq!((member(&finished, "b1")["state"].as_str(), member(&finished, "b2")["state"].as_str()), (Some("completed"), Some("completed")));
    let log = std::fs::read_to_string(dir.join("after.log")).unwrap();
    assert!(log.lines().any(|l| l.starts_with("b2 ") && l.ends_with(" settings restart [rb]")), "{log}");

    // A failing after hook: the maintenance completes, its check fails.
    std::fs::write(dir.join("unhealthy-c1"), "").unwrap();
    pgmaint(&socket, &["maintenance", "require", "c1", "--reason", "settings", "--required-by", &required_by]).await.ok("require c1");
    pgmaint(&socket, &["maintenance", "run", "c1", "--force"]).await.ok("run c1");
    let history = pgmaint(&socket, &["maintenance", "history", "c1", "--json"]).await.ok("history c1").json();
    assert_eq!(history[0]["outcome"], "completed", "{history:#}");
    assert!(history[0]["check_error"].as_str().unwrap().contains("c1 answers 500"), "{history:#}");
    let log = std::fs::read_to_string(dir.join("after.log")).unwrap();
    assert!(log.lines().any(|l| l.starts_with("c1 ") && l.ends_with(" settings restart []")), "{log}");

    // The chat channel heard each rollout's waves, bake and completion once, and rb's one halt.
    let ra = Value::from("ra");
    chat.wait_for("rollout-completed", "rollout", &rb, Duration::from_secs(30)).await;
    let count = |event: &str, rollout: &Value| chat.delivered(event, "rollout", rollout).len();
    for rollout in [&ra, &rb] {
        assert_eq!((count("rollout-wave-started", rollout), count("rollout-baking", rollout), count("rollout-completed", rollout)), (2, 1, 1), "{rollout}: {:#?}", chat.received());
    }
    assert_eq!((count("rollout-halted", &ra), count("rollout-halted", &rb)), (0, 1));
    let baking = &chat.delivered("rollout-baking", "rollout", &ra)[0];
    assert_eq!((baking["wave"].as_u64(), baking["databases"].clone()), (Some(1), serde_json::json!(["a1"])), "{baking}");
    assert!(baking["bake_until"].is_string(), "{baking}");

    let listed = pgmaint(&socket, &["rollout", "list"]).await.ok("rollout list").stdout;
    assert!(listed.lines().any(|l| l.starts_with("ra ") && l.contains("completed")), "{listed}");
    let (status, _) = daemon.stop().await;
    assert!(status.success(), "daemon exit: {status}");
}
