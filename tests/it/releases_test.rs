//! Releases of an app's config through the real binary against the API served
//! in-process over a real engine: env file, restart hook, listing, info,
//! rollback (with and without a number), retention, JSON shapes; and the
//! release a switchover makes for the apps attached to the database.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use pgmaint::config::ApiConfig;
use pgmaint::engine::{Engine, DEFAULT_MAKER};
use pgmaint::model::Reason;
use pgmaint::store::AppHooks;
use tokio::sync::Notify;

use crate::api_test::{pgmaint, TestApi};
use crate::engine_test::{engine, spec};
use crate::harness::TestEnv;

/// The user the server sees at the other end of the socket: this process's.
fn me() -> String {
    let uid = nix::unistd::Uid::effective();
    nix::unistd::User::from_uid(uid).unwrap().map_or_else(|| uid.to_string(), |u| u.name)
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Rows of the `releases` table as (Rel, Change, By, rest) split on runs of two spaces.
fn release_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(2)
        .map(|line| line.split("  ").map(str::trim).filter(|cell| !cell.is_empty()).map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_through_the_binary() {
    let env = TestEnv::new("releases-cli");
    // The configured default window is the one a database created without `--window` gets.
    let engine: Arc<Engine> = Arc::new(engine(&env).await.with_default_window("Monday 03:00".into()));
    let socket: PathBuf = env.dir.join("api.sock");
    let config = ApiConfig { socket: socket.clone(), socket_group: None, tcp: None, token_file: None };
    let server = TestApi::start(engine.clone(), config, Arc::new(Notify::new())).await;
    let hooks = env.dir.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let env_file = hooks.join("web.env");
    let restarts = hooks.join("restarts");
    let me = me();

    pgmaint(&socket, &["databases", "create", "blog", "--plan", "essential-0"]).await.ok("databases create");
    let window = pgmaint(&socket, &["info", "blog", "--json"]).await.ok("info --json").json()["window"].clone();
    assert_eq!(window, "Mondays 03:00 to 07:00 UTC");
    let url = engine.endpoint_url("blog").await.unwrap();

    // v1: created with DATABASE_URL; env file written, restart hook run
    let hook = format!("echo \"$PGMAINT_APP $PGMAINT_RELEASE\" >> {}", restarts.display());
    let created = pgmaint(&socket, &["apps", "create", "web", "--attach", "blog", "--env-file", env_file.to_str().unwrap(), "--restart-hook", &hook])
        .await
        .ok("apps create");
    assert_eq!(created.stdout, "Created app web with blog attached as DATABASE_URL, v1\n");
    assert_eq!(read(&env_file), format!("DATABASE_URL={url}\n"));
    assert_eq!(std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(read(&restarts), "web v1\n");

    // v2: config set
    let set = pgmaint(&socket, &["config", "set", "web", "READ_ONLY=true", "LOG_LEVEL=debug"]).await.ok("config set");
    assert_eq!(set.stdout, "Setting LOG_LEVEL, READ_ONLY and restarting web... done, v2\n");
    assert_eq!(read(&env_file), format!("DATABASE_URL={url}\nLOG_LEVEL=debug\nREAD_ONLY=true\n"));
    assert_eq!(read(&restarts), "web v1\nweb v2\n");
    let shown = pgmaint(&socket, &["config", "show", "web"]).await.ok("config show");
    assert_eq!(shown.stdout, format!("DATABASE_URL={url}\nLOG_LEVEL=debug\nREAD_ONLY=true\n"));
    let shown = pgmaint(&socket, &["config", "show", "web", "--json"]).await.ok("config show --json").json();
    assert_eq!((shown["app"].as_str(), shown["version"].as_i64(), shown["config"]["READ_ONLY"].as_str()), (Some("web"), Some(2), Some("true")));

    // v3: config unset
    let unset = pgmaint(&socket, &["config", "unset", "web", "LOG_LEVEL"]).await.ok("config unset");
    assert_eq!(unset.stdout, "Unsetting LOG_LEVEL and restarting web... done, v3\n");
    assert_eq!(read(&env_file), format!("DATABASE_URL={url}\nREAD_ONLY=true\n"));
    let missing = pgmaint(&socket, &["config", "unset", "web", "LOG_LEVEL"]).await;
    assert_eq!((missing.code, missing.stderr.trim()), (1, "pgmaint: app web has no config var LOG_LEVEL"));

    // the listing: newest first, Rel Change By When
    let listed = pgmaint(&socket, &["releases", "web"]).await.ok("releases");
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert_eq!(lines[0], "=== web Releases");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["Rel", "Change", "By", "When"]);
    let rows = release_rows(&listed.stdout);
    let expected = [("v3", "Unset LOG_LEVEL"), ("v2", "Set LOG_LEVEL, READ_ONLY"), ("v1", "Attach blog")];
    assert_eq!(rows.len(), 3, "{}", listed.stdout);
    for (row, (rel, change)) in rows.iter().zip(expected) {
        assert_eq!((row[0].as_str(), row[1].as_str(), row[2].as_str()), (rel, change, me.as_str()), "{}", listed.stdout);
        assert!(row[3].ends_with(" +0000") && row[3].starts_with("20"), "{}", listed.stdout);
        assert_eq!(row.len(), 4, "a fresh release is not expired: {}", listed.stdout);
    }
    let listed = pgmaint(&socket, &["releases", "web", "--json"]).await.ok("releases --json").json();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert_eq!((listed[0]["release"].as_str(), listed[0]["version"].as_i64(), listed[0]["expired"].as_bool()), (Some("v3"), Some(3), Some(false)));
    assert_eq!((listed[2]["change"].as_str(), listed[2]["made_by"].as_str(), listed[2]["app"].as_str()), (Some("Attach blog"), Some(me.as_str()), Some("web")));
    assert!(listed[0]["created_at"].as_str().unwrap().parse::<chrono::DateTime<Utc>>().is_ok());
    assert!(listed[0].get("config").is_none(), "the listing carries no config");

    // releases info v1
    let info = pgmaint(&socket, &["releases", "info", "web", "v1"]).await.ok("releases info");
    assert!(info.stdout.starts_with("=== Release v1 of web\nChange:  Attach blog\n"), "{}", info.stdout);
    assert!(info.stdout.contains(&format!("By:      {me}\n")), "{}", info.stdout);
    assert!(info.stdout.ends_with(&format!("=== web Config vars at v1\nDATABASE_URL={url}\n")), "{}", info.stdout);
    let info = pgmaint(&socket, &["releases", "info", "web", "2", "--json"]).await.ok("releases info --json").json();
    assert_eq!(info["config"], serde_json::json!({ "DATABASE_URL": url, "LOG_LEVEL": "debug", "READ_ONLY": "true" }));
    assert_eq!(info["change"], "Set LOG_LEVEL, READ_ONLY");

    // rollback to v2 -> v4, and without a number -> v5 copying v3
    let rolled = pgmaint(&socket, &["rollback", "web", "v2"]).await.ok("rollback v2");
    assert_eq!(rolled.stdout, "Rolling back web to v2... done, v4\n");
    assert_eq!(rolled.stderr, "", "no warning expected");
    assert_eq!(read(&env_file), format!("DATABASE_URL={url}\nLOG_LEVEL=debug\nREAD_ONLY=true\n"));
    assert_eq!(read(&restarts), "web v1\nweb v2\nweb v3\nweb v4\n");
    let rolled = pgmaint(&socket, &["rollback", "web", "--json"]).await.ok("rollback").json();
    assert_eq!((rolled["release"].as_str(), rolled["change"].as_str(), rolled["rolled_back_to"].as_i64()), (Some("v5"), Some("Rollback to v3"), Some(3)));
    assert_eq!(rolled["config"], serde_json::json!({ "DATABASE_URL": url, "READ_ONLY": "true" }));
    assert_eq!(rolled["warnings"], serde_json::json!([]));
    assert!(rolled["restart_error"].is_null() && rolled["expired"] == false && rolled["made_by"] == me.as_str(), "{rolled}");
    let top = release_rows(&pgmaint(&socket, &["releases", "web"]).await.ok("releases").stdout);
    assert_eq!((top[0][0].as_str(), top[0][1].as_str()), ("v5", "Rollback to v3"));
    assert_eq!((top[1][0].as_str(), top[1][1].as_str()), ("v4", "Rollback to v2"));

    // apps attach: REPORTING_URL, a new release; twice is refused
    let attached = pgmaint(&socket, &["apps", "attach", "web", "blog", "--as", "REPORTING"]).await.ok("apps attach");
    assert_eq!(attached.stdout, "Attaching blog to web as REPORTING_URL and restarting... done, v6\n");
    assert!(read(&env_file).contains(&format!("REPORTING_URL={url}\n")));
    let again = pgmaint(&socket, &["apps", "attach", "web", "blog", "--as", "REPORTING"]).await;
    assert_eq!(again.code, 1, "{}", again.stderr);

    // errors: bad version syntax exits 2, unknown version 1
    for bad in [&["rollback", "web", "vx"][..], &["releases", "info", "web", "3x"][..]] {
        let ran = pgmaint(&socket, bad).await;
        assert_eq!(ran.code, 2, "{bad:?}: {}", ran.stderr);
        assert!(ran.stderr.contains("expected vN"), "{}", ran.stderr);
    }
    let unknown = pgmaint(&socket, &["releases", "info", "web", "v99"]).await;
    assert_eq!((unknown.code, unknown.stderr.trim()), (1, "pgmaint: app web has no release v99 (its latest is v6)"));
    assert_eq!(pgmaint(&socket, &["rollback", "web", "v99"]).await.code, 1);
    assert_eq!(pgmaint(&socket, &["releases", "nope"]).await.code, 1);
    let bad_key = pgmaint(&socket, &["config", "set", "web", "1BAD=x"]).await;
    assert_eq!(bad_key.code, 2, "{}", bad_key.stderr);

    // a rolled-back URL of a database that no longer exists is warned about
    let app = engine.store().app_named("web").await.unwrap();
    let store = engine.store();
    let gone_url = engine.endpoint().client_url("gone_1", "no-longer", "gone");
    let mut with_gone = store.latest_release(app.id).await.unwrap().unwrap().config.0;
    with_gone.insert("GONE_URL".into(), gone_url.clone());
    store.insert_release(app.id, 7, "Attach gone", "someone", &with_gone, None).await.unwrap().expect("v7");
    pgmaint(&socket, &["config", "set", "web", "A=1"]).await.ok("config set A");
    let warned = pgmaint(&socket, &["rollback", "web", "v7"]).await.ok("rollback v7");
    assert_eq!(warned.stdout, "Rolling back web to v7... done, v9\n");
    assert!(warned.stderr.starts_with("warning: GONE_URL is the URL of database gone, which no longer exists"), "{}", warned.stderr);
    let warned = pgmaint(&socket, &["rollback", "web", "v7", "--json"]).await.ok("rollback v7 --json");
    assert!(warned.json()["warnings"][0].as_str().unwrap().contains("database gone"), "{}", warned.stdout);
    assert!(warned.stderr.contains("warning: GONE_URL"), "{}", warned.stderr);

    // retention: a release older than 30 days (not the latest) has expired
    let old = Utc::now() - chrono::Duration::days(40);
    store.insert_release(app.id, 11, "Set OLD", "someone", &with_gone, Some(old)).await.unwrap().expect("v11");
    pgmaint(&socket, &["config", "set", "web", "B=2"]).await.ok("config set B");
    let listed = pgmaint(&socket, &["releases", "web"]).await.ok("releases").stdout;
    let rows = release_rows(&listed);
    assert_eq!((rows[0][0].as_str(), rows[0].len()), ("v12", 4), "{listed}");
    assert_eq!((rows[1][0].as_str(), rows[1][1].as_str(), rows[1].last().unwrap().as_str()), ("v11", "Set OLD", "expired"), "{listed}");
    let refused = pgmaint(&socket, &["rollback", "web", "v11"]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("cannot roll back web to v11: it has expired"), "{}", refused.stderr);
    let info = pgmaint(&socket, &["releases", "info", "web", "v11", "--json"]).await.ok("info v11").json();
    assert_eq!((info["expired"].as_bool(), info["config"].is_null()), (Some(true), true), "{info}");
    assert!(pgmaint(&socket, &["releases", "info", "web", "v11"]).await.ok("info v11").stdout.contains("expired"));

    // a restart hook that fails: the release exists, the verb fails
    let failing = pgmaint(&socket, &["apps", "create", "worker", "--attach", "blog", "--restart-hook", "echo nope >&2; exit 3"]).await;
    assert_eq!(failing.code, 1, "{}", failing.stderr);
    assert!(failing.stderr.contains("v1 was created but not applied") && failing.stderr.contains("nope"), "{}", failing.stderr);
    assert_eq!(engine.releases("worker").await.unwrap().len(), 1);

    server.stop().await;
}

#[tokio::test]
async fn a_switchover_releases_the_attached_apps() {
    let env = TestEnv::new("releases-switchover");
    let engine = engine(&env).await;
    engine.create_database(&spec("orders", "standard-0", None)).await.unwrap();
    let restarts = env.dir.join("restarts");
    let hook = format!("echo \"$PGMAINT_APP $PGMAINT_RELEASE\" >> {}", restarts.display());
    let hooks = AppHooks { restart_hook: Some(&hook), ..AppHooks::default() };
    engine.create_app("shop", "orders", &hooks, "alice").await.unwrap();

    let maintenance = engine.require_maintenance("orders", Reason::OsPatch, Utc::now() + chrono::Duration::days(1)).await.unwrap();
    assert_eq!(maintenance.strategy, "switchover");
    engine.prepare_maintenance(maintenance.id).await.unwrap();
    let report = engine.run_now("orders", true).await.unwrap();
    assert_eq!(report.outcome, "completed");

    let releases = engine.releases("shop").await.unwrap();
    assert_eq!(releases.len(), 2, "{releases:?}");
    assert_eq!((releases[0].release.as_str(), releases[0].change.as_str(), releases[0].made_by.as_str()), ("v2", "Switchover orders", DEFAULT_MAKER));
    assert_eq!((releases[1].change.as_str(), releases[1].made_by.as_str()), ("Attach orders", "alice"));
    let v1 = engine.release("shop", 1).await.unwrap().config;
    assert_eq!(engine.release("shop", 2).await.unwrap().config, v1, "a switchover changes no config");
    assert_eq!(read(&restarts), "shop v1\nshop v2\n");
}
