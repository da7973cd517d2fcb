//! Who can connect where, through the real binary and a real daemon with its
//! embedded state store: another local user (`nobody`) reaches no socket as
//! the superuser; a database's own role over TCP can work in its database and
//! nothing more; a follower's role reads; `credentials rotate` retires the
//! old password once the apps restarted, or when the grace ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::api_test::pgmaint;
use crate::harness::TestEnv;
use crate::manual_run_test::{wait_for_socket, DaemonProcess};

/// A connection over TCP with `url`, or the server's refusal.
async fn try_connect(url: &str) -> Result<tokio_postgres::Client, String> {
    match tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(url, tokio_postgres::NoTls)).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Ok(Err(e)) => Err(e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_string())),
        Err(_) => Err("timed out".into()),
    }
}

/// The server's message when `sql` fails, or a panic when it succeeds.
async fn refused(client: &tokio_postgres::Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("{sql:?} succeeded as the app role"),
        Err(e) => e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_string()),
    }
}

/// Every Unix socket under `dir`: (its directory, its port).
fn sockets_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if let Some(port) = name.strip_prefix(".s.PGSQL.").filter(|p| !p.ends_with(".lock")) {
                found.push((dir.clone(), port.to_string()));
            }
        }
    }
    found
}

/// `psql` as `nobody`: its exit status and stderr.
fn psql_as_nobody(conninfo: &str) -> (bool, String) {
    let out = std::process::Command::new("runuser")
        .args(["-u", "nobody", "--", "psql", "-X", "-w", "-c", "SELECT 1", conninfo])
        .current_dir("/")
        .output()
        .expect("runuser psql");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// `postgresql://ROLE:PASSWORD@HOST:PORT/DB` with another database or password.
fn with_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{db}")
}

fn with_password(url: &str, password: &str) -> String {
    let (user, rest) = url.strip_prefix("postgresql://").unwrap().split_once(':').unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    format!("postgresql://{user}:{password}@{host}")
}

fn password_of(url: &str) -> String {
    let rest = url.strip_prefix("postgresql://").unwrap();
    rest.split_once(':').unwrap().1.split_once('@').unwrap().0.to_string()
}

async fn info_url(socket: &Path, name: &str) -> String {
    pgmaint(socket, &["info", name, "--json"]).await.ok("info").json()["endpoint_url"].as_str().expect("endpoint_url").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_each_databases_own_role_gets_in_and_rotation_retires_the_old_password() {
    let env = TestEnv::new("access");
    let data_dir = env.dir.join("d");
    let config = env.dir.join("pgmaint.toml");
    std::fs::write(&config, "[daemon]\ntick = \"1s\"\nlease = \"4s\"\n".to_string() + &env.endpoint_config()).unwrap();
    let daemon = DaemonProcess::start(&env, &config, &data_dir);
    let socket = data_dir.join("pgmaint.sock");
    wait_for_socket(&socket, &daemon).await;
    for args in [["bardb", "standard-0"], ["other", "essential-0"]] {
        pgmaint(&socket, &["databases", "create", args[0], "--plan", args[1]]).await.ok("create");
    }
    pgmaint(&socket, &["databases", "create", "bardb-f", "--plan", "standard-0", "--follow", "bardb"]).await.ok("create follower");
    let url = info_url(&socket, "bardb").await;
    assert!(url.starts_with("postgresql://bardb_1:") && url.ends_with(&format!("@{}/bardb", env.endpoint)), "{url}");
    assert!(password_of(&url).len() >= 22, "a password of at least 128 bits: {url}");

    // Another local user reaches no socket under the data directory as the
    // superuser: the state store, every server, the endpoint, its admin console.
    let sockets = sockets_under(&data_dir);
    assert!(sockets.len() >= 5, "state store, 3 servers and PgBouncer at least: {sockets:?}");
    let bouncer = data_dir.join("bouncer");
    assert!(sockets.iter().any(|(dir, _)| *dir == bouncer) && sockets.iter().any(|(dir, _)| *dir == data_dir.join("state")), "{sockets:?}");
    for (dir, port) in &sockets {
        for db in ["postgres", "pgbouncer"] {
            let (ok, stderr) = psql_as_nobody(&format!("host={} port={port} user=postgres dbname={db}", dir.display()));
            assert!(!ok, "nobody connected to {}/.s.PGSQL.{port} as postgres ({db})", dir.display());
            assert!(stderr.contains("Permission denied"), "{}: {stderr}", dir.display());
        }
    }
    // Nor over TCP: the superuser never logs in there, with any password.
    let tcp_superuser = format!("host=127.0.0.1 port={} user=postgres dbname=bardb password=x", env.endpoint.port());
    assert!(try_connect(&tcp_superuser).await.is_err(), "postgres logged in over TCP");
    assert!(!psql_as_nobody(&format!("host=127.0.0.1 port={} user=postgres dbname=pgbouncer", env.endpoint.port())).0);

    // Over TCP the database's role works in its own database, and only there.
    let app = try_connect(&url).await.expect("the app role connects over TCP");
    app.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)").await.expect("create and write a table");
    let count: i64 = app.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(count, 2);
    let owner: String = app.query_one("SELECT tableowner::text FROM pg_tables WHERE tablename = 't'", &[]).await.unwrap().get(0);
    assert_eq!(owner, "bardb_owner", "tables belong to the database's owner role");
    for (sql, message) in [
        ("ALTER SYSTEM SET work_mem = '1MB'", "permission denied"),
        ("CREATE ROLE intruder", "permission denied"),
        ("COPY (SELECT 1) TO PROGRAM 'true'", "pg_execute_server_program"),
        ("CREATE DATABASE another", "permission denied"),
    ] {
        let refusal = refused(&app, sql).await;
        assert!(refusal.contains(message), "{sql}: {refusal}");
    }
    for other in ["other", "postgres"] {
        assert!(try_connect(&with_db(&url, other)).await.is_err(), "bardb's role connected to {other}");
    }
    let wrong = try_connect(&with_password(&url, "not-the-password")).await.expect_err("a wrong password was accepted");
    assert!(wrong.contains("authentication failed"), "{wrong}");

    // The follower's own role reads (what the leader wrote) and cannot write.
    let follower_url = info_url(&socket, "bardb-f").await;
    assert!(follower_url.starts_with("postgresql://bardb-f_1:"), "{follower_url}");
    let reader = try_connect(&follower_url).await.expect("the follower's role connects");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match reader.query_one("SELECT count(*) FROM t", &[]).await {
            Ok(row) if row.get::<_, i64>(0) == 2 => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("the follower's role could not read t: {other:?}"),
        }
    }
    assert!(reader.batch_execute("INSERT INTO t VALUES (3)").await.is_err(), "the follower's role wrote");

    // Rotation with every app restarted: the old password stops at once.
    let env_file = env.dir.join("web.env");
    pgmaint(&socket, &["apps", "create", "web", "--attach", "bardb", "--env-file", env_file.to_str().unwrap(), "--restart-hook", "true"]).await.ok("create web");
    assert_eq!(pgmaint(&socket, &["info", "bardb"]).await.ok("info").stdout.lines().find(|l| l.starts_with("Credentials:")), Some("Credentials:        never rotated"));
    let rotated = pgmaint(&socket, &["credentials", "rotate", "bardb", "--json"]).await.ok("rotate").json();
    assert_eq!((rotated["role"].as_str(), rotated["previous_retired"].as_bool()), (Some("bardb_2"), Some(true)), "{rotated}");
    assert_eq!(rotated["releases"][0]["change"], "Rotate credentials bardb");
    let new_url = info_url(&socket, "bardb").await;
    assert_ne!(new_url, url);
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), format!("DATABASE_URL={new_url}\n"), "the app's env file has the new URL");
    assert!(try_connect(&url).await.is_err(), "the old password still works after every app restarted");
    let app = try_connect(&new_url).await.expect("the new password works");
    app.batch_execute("INSERT INTO t VALUES (3)").await.expect("the new login writes the owner's table");
    assert!(pgmaint(&socket, &["info", "bardb"]).await.ok("info").stdout.contains("Credentials:        last rotated "));

    // An app whose restart failed keeps the old password working until the grace ends.
    let cron = pgmaint(&socket, &["apps", "create", "cron", "--attach", "bardb", "--restart-hook", "exit 3"]).await;
    assert_eq!(cron.code, 1, "its first release could not be applied: {}", cron.stderr);
    let started = Instant::now();
    let second = pgmaint(&socket, &["credentials", "rotate", "bardb", "--grace", "3s"]).await;
    assert_eq!(second.code, 1, "a failed restart hook fails the verb: {} {}", second.stdout, second.stderr);
    assert!(second.stdout.contains("The previous password (role bardb_2) works until"), "{}", second.stdout);
    let newest_url = info_url(&socket, "bardb").await;
    assert!(newest_url.starts_with("postgresql://bardb_1:") && newest_url != url, "{newest_url}");
    if started.elapsed() < Duration::from_secs(2) {
        assert!(try_connect(&new_url).await.is_ok(), "the previous password stopped before its grace ended");
    }
    let refused_again = pgmaint(&socket, &["credentials", "rotate", "bardb"]).await;
    assert_eq!(refused_again.code, 1, "a rotation during the grace is refused: {}", refused_again.stderr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_connect(&new_url).await.is_ok() {
        assert!(Instant::now() < deadline, "the previous password still works 30 s after its grace");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(started.elapsed() >= Duration::from_secs(3), "retired before the grace ended");
    try_connect(&newest_url).await.expect("the newest password works").batch_execute("INSERT INTO t VALUES (4)").await.unwrap();

    // No password ever reaches the daemon's log.
    let (status, log) = daemon.stop().await;
    assert!(status.success(), "daemon exit: {status}");
    for password in [&url, &new_url, &newest_url, &follower_url].map(|u| password_of(u)) {
        assert!(!log.contains(&password), "a password is in the daemon's log");
    }
}
