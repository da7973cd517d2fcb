//! The control API served in-process over a real engine (state server,
//! PostgreSQL, PgBouncer), driven by the real `pgmaint` binary with `--socket`,
//! plus the socket's access control and the TCP listener's bearer token.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use pgmaint::api::{self, Client};
use pgmaint::config::ApiConfig;
use pgmaint::model::reference_time;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::engine_test::engine;
use crate::harness::TestEnv;

const BIN: &str = env!("CARGO_BIN_EXE_pgmaint");

/// What one run of the binary did.
#[derive(Debug)]
pub(crate) struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(self, what: &str) -> Ran {
        assert_eq!(self.code, 0, "{what} failed: stdout {:?} stderr {:?}", self.stdout, self.stderr);
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `pgmaint ARGS --socket SOCKET` (as `user` through runuser when given).
async fn pgmaint_as(user: Option<&str>, socket: &Path, args: &[&str]) -> Ran {
    let mut command = match user {
        Some(user) => {
            // The build directory may be closed to other users (a 0700 checkout):
            // run a copy of the binary from the test's own, world-readable directory.
            let copy = socket.parent().expect("socket directory").join("pgmaint-for-other-user");
            std::fs::copy(BIN, &copy).expect("copy pgmaint");
            std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod copy");
            let mut command = tokio::process::Command::new("runuser");
            command.args(["-u", user, "--"]).arg(&copy);
            command
        }
        None => tokio::process::Command::new(BIN),
    };
    let output = command.args(args).arg("--socket").arg(socket).env_remove("PGMAINT_SOCKET").output().await.expect("run pgmaint");
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

pub(crate) async fn pgmaint(socket: &Path, args: &[&str]) -> Ran {
    pgmaint_as(None, socket, args).await
}

/// The control API served in-process for a test, until `stop`.
pub(crate) struct TestApi {
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), api::ApiError>>,
}

impl TestApi {
    /// Serves `engine` on `config` and waits until its socket exists.
    pub(crate) async fn start(engine: Arc<pgmaint::engine::Engine>, config: ApiConfig, nudge: Arc<Notify>) -> TestApi {
        let socket = config.socket.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            api::serve(engine, &config, nudge, api::install_metrics(), async {
                let _ = stopped.await;
            })
            .await
        });
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        TestApi { stop, server }
    }

    /// Stops the server and checks it ended cleanly.
    pub(crate) async fn stop(self) {
        self.stop.send(()).unwrap();
        self.server.await.unwrap().expect("serve");
    }
}

/// A raw HTTP/1.1 GET over TCP with an optional Authorization header; returns the status line.
async fn raw_get(addr: SocketAddr, authorization: Option<&str>) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let header = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    stream.write_all(format!("GET /v1/databases HTTP/1.1\r\nHost: t\r\n{header}Connection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or_default().to_string()
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_verbs_through_the_binary() {
    let env = TestEnv::new("api-control");
    let engine = Arc::new(engine(&env).await);
    let socket: PathBuf = env.dir.join("api.sock");
    let token_file = env.dir.join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tcp = SocketAddr::from(([127, 0, 0, 1], crate::harness::free_port()));
    let config = ApiConfig { socket: socket.clone(), socket_group: None, tcp: Some(tcp), token_file: Some(token_file) };
    let nudge = Arc::new(Notify::new());
    let server = TestApi::start(engine.clone(), config, nudge.clone()).await;
    let mode = std::fs::metadata(&socket).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let hooks = env.dir.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();

    // databases create / list
    let created = pgmaint(&socket, &["databases", "create", "blog", "--plan", "essential-0", "--window", "Sunday 02:00", "--owner", "owner@example.com"])
        .await
        .ok("databases create");
    assert!(created.stdout.starts_with("=== blog\n"), "{}", created.stdout);
    assert!(tokio::time::timeout(Duration::from_secs(1), nudge.notified()).await.is_ok(), "a create did not nudge the daemon");
    let listed = pgmaint(&socket, &["databases", "list"]).await.ok("databases list");
    let listed = lines(&listed.stdout).iter().map(|l| l.split_whitespace().collect::<Vec<_>>()).collect::<Vec<_>>();
    assert_eq!(listed[0][..3], ["NAME", "PLAN", "ROLE"]);
    assert_eq!(listed[1][..5], ["blog", "essential-0", "primary", "-", "available"]);
    let listed = pgmaint(&socket, &["databases", "list", "--json"]).await.ok("databases list --json").json();
    assert_eq!(listed[0]["name"], "blog");

    // info, text and JSON
    let info = pgmaint(&socket, &["info", "blog"]).await.ok("info");
    let info_lines = lines(&info.stdout);
    assert_eq!(info_lines[0], "=== blog");
    assert!(info_lines.contains(&"Plan:               essential-0"), "{}", info.stdout);
    assert!(info_lines.contains(&"Status:             available"), "{}", info.stdout);
    assert!(info_lines.contains(&"Maintenance:        not required"), "{}", info.stdout);
    assert!(info_lines.contains(&"Maintenance window: Sundays 02:00 to 06:00 UTC"), "{}", info.stdout);
    assert!(info_lines.iter().any(|l| l.starts_with("Data Size:          ") && l.ends_with("MB")), "{}", info.stdout);
    assert!(info_lines.iter().any(|l| l.starts_with("Endpoint:           postgresql://")), "{}", info.stdout);
    assert!(!info.stdout.contains("Following:") && !info.stdout.contains("HA:"), "{}", info.stdout);
    let info = pgmaint(&socket, &["info", "blog", "--json"]).await.ok("info --json").json();
    assert_eq!((&info["name"], &info["plan"], &info["role"], &info["status"]), (&"blog".into(), &"essential-0".into(), &"primary".into(), &"available".into()));
    assert!(info["endpoint_url"].as_str().unwrap().starts_with("postgresql://"));
    for absent in ["following", "behind_by", "ha", "maintenance"] {
        assert!(info[absent].is_null(), "{absent}: {}", info[absent]);
    }

    // maintenance require / show: the reference's one line
    assert_eq!(pgmaint(&socket, &["maintenance", "show", "blog"]).await.ok("show").stdout, "No maintenance required\n");
    let required_by = Utc::now() + chrono::Duration::days(30);
    let required_text = required_by.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let view = pgmaint(&socket, &["maintenance", "require", "blog", "--reason", "os-patch", "--required-by", &required_text, "--json"])
        .await
        .ok("require")
        .json();
    assert_eq!(view["strategy"], "restart");
    let shown = pgmaint(&socket, &["maintenance", "show", "blog"]).await.ok("show").stdout;
    assert_eq!(lines(&shown).len(), 1, "{shown}");
    let required_ref = reference_time(required_by);
    assert!(shown.starts_with("Maintenance scheduled for "), "{shown}");
    assert!(shown.ends_with(&format!(", required by {required_ref}, window is Sundays 02:00 to 06:00 UTC\n")), "{shown}");
    let at = |v: &Value| v["maintenance"]["scheduled_for"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    let first = at(&pgmaint(&socket, &["maintenance", "show", "blog", "--json"]).await.ok("show --json").json());
    assert_eq!((first.weekday(), first.hour(), first.minute()), (Weekday::Sun, 2, 0));

    // window: re-plans into the new window
    let moved = pgmaint(&socket, &["maintenance", "window", "blog", "Wednesday 14:30"]).await.ok("window");
    assert!(moved.stdout.ends_with(", window is Wednesdays 14:30 to 18:30 UTC\n"), "{}", moved.stdout);
    let second = at(&pgmaint(&socket, &["maintenance", "show", "blog", "--json"]).await.ok("show --json").json());
    assert_eq!((second.weekday(), second.hour(), second.minute()), (Weekday::Wed, 14, 30));
    assert!(second > Utc::now() && second + chrono::Duration::hours(4) <= required_by, "{second}");

    // apps; run refused without maintenance mode, forced run succeeds
    let on_hook = format!("echo \"$PGMAINT_APP $PGMAINT_MAINTENANCE\" > {}/on", hooks.display());
    let off_hook = format!("echo \"$PGMAINT_APP $PGMAINT_MAINTENANCE\" > {}/off", hooks.display());
    pgmaint(&socket, &["apps", "create", "web", "--attach", "blog", "--on-hook", &on_hook, "--off-hook", &off_hook]).await.ok("apps create");
    let refused = pgmaint(&socket, &["maintenance", "run", "blog"]).await;
    assert_eq!(refused.code, 1, "run without maintenance mode: {:?}", refused.stderr);
    assert!(refused.stderr.contains("maintenance mode") && refused.stderr.contains("--force"), "{}", refused.stderr);
    let ran = pgmaint(&socket, &["maintenance", "run", "blog", "--force"]).await.ok("run --force");
    assert!(ran.stdout.starts_with("Maintenance #") && ran.stdout.contains(": completed\n"), "{}", ran.stdout);
    assert!(ran.stdout.contains("Strategy:     restart\n") && ran.stdout.contains("Write pause:  "), "{}", ran.stdout);
    assert_eq!(pgmaint(&socket, &["maintenance", "show", "blog"]).await.ok("show").stdout, "No maintenance required\n");
    let history = pgmaint(&socket, &["maintenance", "history", "blog"]).await.ok("history").stdout;
    let rows = lines(&history);
    assert!(rows[0].starts_with("ID") && rows[0].contains("WRITE PAUSE") && rows[0].ends_with("OUTCOME"), "{history}");
    assert!(rows[1].contains(" restart ") && rows[1].contains(" os-patch ") && rows[1].ends_with("completed"), "{history}");
    let history = pgmaint(&socket, &["maintenance", "history", "blog", "--json"]).await.ok("history --json").json();
    assert!(history[0]["write_pause_ms"].as_f64().is_some() && history[0]["duration_seconds"].as_f64().is_some(), "{history}");
    pgmaint(&socket, &["wait", "blog", "--timeout", "30s"]).await.ok("wait");

    // another user cannot use the socket (0600, owned by the server's user)
    if nix::unistd::Uid::effective().is_root() {
        let denied = pgmaint_as(Some("nobody"), &socket, &["apps", "maintenance", "on", "web"]).await;
        assert_eq!(denied.code, 1, "{denied:?}", denied = denied.stderr);
        assert!(denied.stderr.contains("permission denied"), "{}", denied.stderr);
        assert!(!hooks.join("on").exists(), "another user's request was carried out");
    } else {
        eprintln!("not root: skipping the other-user check");
    }

    // app maintenance mode, with hooks that prove they ran
    assert_eq!(pgmaint(&socket, &["apps", "maintenance", "show", "web"]).await.ok("apps show").stdout, "off\n");
    pgmaint(&socket, &["apps", "maintenance", "on", "web"]).await.ok("apps maintenance on");
    assert_eq!(std::fs::read_to_string(hooks.join("on")).unwrap(), "web on\n");
    assert_eq!(pgmaint(&socket, &["apps", "maintenance", "show", "web"]).await.ok("apps show").stdout, "on\n");
    pgmaint(&socket, &["apps", "maintenance", "off", "web"]).await.ok("apps maintenance off");
    assert_eq!(std::fs::read_to_string(hooks.join("off")).unwrap(), "web off\n");
    assert_eq!(pgmaint(&socket, &["apps", "maintenance", "show", "web"]).await.ok("apps show").stdout, "off\n");

    // errors and exit codes
    let unknown = pgmaint(&socket, &["info", "nope"]).await;
    assert_eq!((unknown.code, unknown.stderr.trim()), (1, "pgmaint: database nope not found"));
    let bad_ts = pgmaint(&socket, &["maintenance", "require", "blog", "--reason", "os-patch", "--required-by", "next tuesday"]).await;
    assert_eq!(bad_ts.code, 2, "{}", bad_ts.stderr);
    let server_400 = pgmaint(&socket, &["databases", "create", "Bad Name", "--plan", "essential-0"]).await;
    assert_eq!(server_400.code, 2, "{}", server_400.stderr);
    assert!(server_400.stderr.contains("invalid database name"), "{}", server_400.stderr);

    // The served OpenAPI (3.1) document describes every route the server answers; /metrics has the gauges
    let client = Client::new(&socket);
    let document = serde_json::to_value(client.openapi().await.unwrap()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let routes = api::routes();
    assert!(routes.len() > 20, "{routes:?}");
    for route in routes {
        let (method, path) = (route.verb.as_str(), route.path);
        assert!(document["paths"][path][method]["responses"].is_object(), "OpenAPI lacks {method} {path}");
    }
    let metrics = client.metrics().await.unwrap();
    for expected in [
        "pgmaint_maintenances{state=\"completed\"} 1",
        "pgmaint_maintenances{state=\"pending\"} 0",
        "pgmaint_outbox_depth 0",
        "pgmaint_last_write_pause_ms ",
        "pgmaint_tick_seconds ",
    ] {
        assert!(metrics.contains(expected), "/metrics lacks {expected:?}:\n{metrics}");
    }

    // TCP: the bearer token is required
    assert!(raw_get(tcp, None).await.contains(" 401 "), "no token was accepted");
    assert!(raw_get(tcp, Some("Bearer wrong-token")).await.contains(" 401 "), "a wrong token was accepted");
    assert!(raw_get(tcp, Some("Bearer s3cret-token")).await.contains(" 200 "), "the right token was refused");
    assert_eq!(Client::tcp(tcp, "wrong-token").list_databases().await.unwrap_err().status(), Some(401));
    assert_eq!(Client::tcp(tcp, "s3cret-token").list_databases().await.unwrap()[0].name, "blog");

    // destroy needs the name repeated
    assert_eq!(pgmaint(&socket, &["databases", "destroy", "blog", "--confirm", "blgo"]).await.code, 1);
    pgmaint(&socket, &["databases", "destroy", "blog", "--confirm", "blog"]).await.ok("destroy");
    assert_eq!(pgmaint(&socket, &["databases", "list"]).await.ok("list").stdout, "No databases\n");

    server.stop().await;
    assert!(!socket.exists(), "the socket was left behind");
}
