//! Manual runs as a new user types them, through the real binary and a real
//! daemon process, without pausing between commands: `maintenance require`
//! then at once `maintenance run --force` on a fleet of mixed tiers;
//! `require` then `wait`; the daemon's `--data-dir` override and the global
//! `--socket`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::api_test::{pgmaint, Ran};
use pgmaint::provider::local::Cluster;
use pgmaint::provider::StopMode;

use crate::harness::TestEnv;

const BIN: &str = env!("CARGO_BIN_EXE_pgmaint");

/// A daemon process, killed if the test ends without stopping it.
pub(crate) struct DaemonProcess {
    child: Child,
    log: PathBuf,
}

impl DaemonProcess {
    /// `pgmaint daemon --config FILE --data-dir DIR`, logging at `info` to a file.
    pub(crate) fn start(env: &TestEnv, config: &Path, data_dir: &Path) -> DaemonProcess {
        DaemonProcess::start_with_failpoint(env, config, data_dir, None)
    }

    /// The same with `PGMAINT_FAILPOINT` set (the daemon exits at it).
    pub(crate) fn start_with_failpoint(env: &TestEnv, config: &Path, data_dir: &Path, failpoint: Option<&str>) -> DaemonProcess {
        env.track_data_dir(data_dir);
        let log = env.dir.join("daemon.log");
        let mut child = Command::new(BIN);
        child
            .args(["daemon", "--node", "solo", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .env("PGMAINT_LOG", "info")
            .env_remove(pgmaint::engine::FAILPOINT_ENV)
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("daemon log"));
        if let Some(failpoint) = failpoint {
            child.env(pgmaint::engine::FAILPOINT_ENV, failpoint);
        }
        DaemonProcess { child: child.spawn().expect("start pgmaint daemon"), log }
    }

    /// How it exited, if it has.
    pub(crate) fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; the exit status and the whole log.
    pub(crate) async fn stop(mut self) -> (std::process::ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let mut child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
        (status, self.log())
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn wait_for_socket(socket: &Path, daemon: &DaemonProcess) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the daemon never served on {}; its log:\n{}", socket.display(), daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `pgmaint --socket S ARGS` with the socket before the verb.
async fn pgmaint_socket_first(socket: &Path, args: &[&str]) -> Ran {
    let output =
        tokio::process::Command::new(BIN).arg("--socket").arg(socket).args(args).env_remove("PGMAINT_SOCKET").output().await.unwrap();
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

/// (database, plan, reason, the strategy that reason takes on that plan)
fn fleet() -> Vec<(String, &'static str, &'static str, &'static str)> {
    let mut fleet = Vec::new();
    for i in 0..3 {
        fleet.push((format!("re{i}"), "essential-0", "settings", "restart"));
        fleet.push((format!("rs{i}"), "standard-0", "minor-upgrade", "restart"));
    }
    for i in 0..7 {
        fleet.push((format!("sw{i}"), "standard-0", "os-patch", "switchover"));
    }
    for i in 0..7 {
        fleet.push((format!("fo{i}"), "premium-0", "os-patch", "failover"));
    }
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_then_run_force_at_once_completes_on_every_database() {
    let env = TestEnv::new("manual-runs");
    let state = env.primary("state").await;
    // The file names another data directory and leaves the socket, mail and
    // state paths to be derived: --data-dir must move all of them.
    let config = env.dir.join("pgmaint.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ndata_dir = \"{}\"\ntick = \"1s\"\nlease = \"4s\"\n\n[state]\nurl = \"{}\"\n\n[maintenance]\nretire_grace = \"1s\"\n",
            env.dir.join("from-file").display(),
            state.url("postgres")
        ) + &env.endpoint_config(),
    )
    .unwrap();
    let data_dir = env.dir.join("d");
    let daemon = DaemonProcess::start(&env, &config, &data_dir);
    let socket = data_dir.join("pgmaint.sock");
    wait_for_socket(&socket, &daemon).await;
    assert!(!env.dir.join("from-file").join("pgmaint.sock").exists(), "served on the file's data directory");

    // The global --socket before the verb, and PGMAINT_SOCKET.
    let listed = pgmaint_socket_first(&socket, &["databases", "list", "--json"]).await.ok("pgmaint --socket S databases list");
    assert_eq!(listed.json(), serde_json::json!([]));
    let by_env = tokio::process::Command::new(BIN).args(["databases", "list"]).env("PGMAINT_SOCKET", &socket).output().await.unwrap();
    assert!(by_env.status.success(), "PGMAINT_SOCKET: {}", String::from_utf8_lossy(&by_env.stderr));

    // 20 databases of mixed tiers, created a few at a time.
    let fleet = fleet();
    let gate = Arc::new(Semaphore::new(4));
    let mut creations = Vec::new();
    for (name, plan, _, _) in fleet.clone() {
        let (socket, gate) = (socket.clone(), gate.clone());
        creations.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            pgmaint(&socket, &["databases", "create", &name, "--plan", plan, "--owner", "ops@example.com"]).await.ok(&format!("create {name}"));
        }));
    }
    for creation in creations {
        creation.await.unwrap();
    }

    // For each: require, then at once run --force, as the reference's sequence does.
    let required_by = (Utc::now() + chrono::TimeDelta::days(3)).to_rfc3339();
    let mut runs = Vec::new();
    for (name, _, reason, strategy) in fleet.clone() {
        let (socket, gate, required_by) = (socket.clone(), gate.clone(), required_by.clone());
        runs.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            pgmaint(&socket, &["maintenance", "require", &name, "--reason", reason, "--required-by", &required_by]).await.ok(&format!("require {name}"));
            let ran = pgmaint(&socket, &["maintenance", "run", &name, "--force", "--json"]).await.ok(&format!("run --force {name}"));
            let report = ran.json();
            assert_eq!(report["outcome"], "completed", "{name}: {report}");
            assert!(report["postponed_because"].is_null(), "{name}: {report}");
            assert_eq!(report["strategy"], strategy, "{name}: {report}");
        }));
    }
    for run in runs {
        run.await.unwrap();
    }

    for (name, _, reason, strategy) in &fleet {
        let history = pgmaint(&socket, &["maintenance", "history", name, "--json"]).await.ok("history").json();
        let entries = history.as_array().expect("a list");
        assert_eq!(entries.len(), 1, "{name} ran once: {history}");
        assert_eq!((entries[0]["state"].as_str(), entries[0]["reason"].as_str()), (Some("completed"), Some(*reason)), "{name}: {history}");
        assert_eq!(entries[0]["strategy"], Value::from(*strategy));
        let show = pgmaint(&socket, &["maintenance", "show", name]).await.ok("show");
        assert_eq!(show.stdout.trim(), "No maintenance required", "{name}");
    }
    // Mail went to the folder under the overriding data directory.
    let mails = std::fs::read_dir(data_dir.join("mail")).map(|dir| dir.count()).unwrap_or(0);
    assert!(mails >= fleet.len(), "only {mails} mails under {}", data_dir.join("mail").display());

    // The servers retired by the switchovers and failovers are removed once
    // their grace period (1s here) is over: only the live ones remain.
    let live: usize = fleet.iter().map(|(_, plan, _, _)| if plan.starts_with("premium") { 2 } else { 1 }).sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = std::fs::read_dir(data_dir.join("instances")).unwrap().count();
        if left == live {
            break;
        }
        assert!(Instant::now() < deadline, "{left} server directories left, {live} live servers");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (status, log) = daemon.stop().await;
    assert!(status.success(), "daemon exit: {status}");
    assert_quiet(&log);
}

/// The daemon logged no claim conflict and no error.
fn assert_quiet(log: &str) {
    let bad: Vec<&str> = log.lines().filter(|line| line.contains("ERROR") || line.contains("claimed by another runner")).collect();
    assert!(bad.is_empty(), "the daemon logged errors:\n{}", bad.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_after_require_returns_once_the_replacement_is_ready() {
    let env = TestEnv::new("manual-wait");
    let state = env.primary("state").await;
    let config = env.dir.join("pgmaint.toml");
    std::fs::write(&config, format!("[daemon]\ntick = \"1s\"\nlease = \"4s\"\n\n[state]\nurl = \"{}\"\n", state.url("postgres")) + &env.endpoint_config()).unwrap();
    let data_dir = env.dir.join("d");
    let daemon = DaemonProcess::start(&env, &config, &data_dir);
    let socket = data_dir.join("pgmaint.sock");
    wait_for_socket(&socket, &daemon).await;
    pgmaint(&socket, &["databases", "create", "docs", "--plan", "standard-0"]).await.ok("create");
    // Enough data that building the replacement takes a while after `require` returns.
    let info = pgmaint(&socket, &["info", "docs", "--json"]).await.ok("info").json();
    let url = info["endpoint_url"].as_str().expect("endpoint_url");
    crate::harness::connect_conninfo(url).await.batch_execute("CREATE TABLE filler AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 300000) g").await.unwrap();
    let required_by = (Utc::now() + chrono::TimeDelta::days(7)).to_rfc3339();
    pgmaint(&socket, &["maintenance", "require", "docs", "--reason", "os-patch", "--required-by", &required_by]).await.ok("require");
    pgmaint(&socket, &["wait", "docs", "--timeout", "2m"]).await.ok("wait");
    let show = pgmaint(&socket, &["maintenance", "show", "docs"]).await.ok("show");
    assert!(show.stdout.contains("replacement ready"), "after wait: {}", show.stdout);

    assert_quiet(&daemon.log());

    // A wait that cannot end in time exits 1 with a message: the primary of
    // `lost` is down, so its replacement cannot be prepared.
    pgmaint(&socket, &["databases", "create", "lost", "--plan", "standard-0"]).await.ok("create lost");
    for entry in std::fs::read_dir(data_dir.join("instances")).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("lost-") {
            Cluster::at(entry.path(), &env.bindir, env.user.clone()).stop(StopMode::Fast).await.unwrap();
        }
    }
    pgmaint(&socket, &["maintenance", "require", "lost", "--reason", "os-patch", "--required-by", &required_by]).await.ok("require lost");
    let started = Instant::now();
    let timed_out = pgmaint(&socket, &["wait", "lost", "--timeout", "2s"]).await;
    assert_eq!(timed_out.code, 1, "wait on a preparation that cannot finish: {} {}", timed_out.stdout, timed_out.stderr);
    assert!(timed_out.stderr.contains("lost is still busy after 2s"), "{}", timed_out.stderr);
    assert!(started.elapsed() >= Duration::from_secs(2), "wait returned after {:?}", started.elapsed());

    let (status, _) = daemon.stop().await;
    assert!(status.success(), "daemon exit: {status}");
}
