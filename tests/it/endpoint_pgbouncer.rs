//! The PgBouncer endpoint against real PostgreSQL servers and a real PgBouncer:
//! clients keep writing through PAUSE, a repoint to a promoted replica, a PAUSE
//! that times out; the daemon's life cycle is idempotent.
//!
//! Timings are printed (`cargo test --test it endpoint -- --nocapture`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmaint::endpoint::{AdminConsole, EndpointError, EnsureOutcome, PgBouncer, Route};
use pgmaint::provider::local::Cluster;
use pgmaint::provider::StopMode;

use crate::harness::{connect, connect_conninfo, TestEnv};

const DB: &str = "app";

/// A PgBouncer in the test's directory, killed when the test ends.
fn bouncer(env: &TestEnv) -> PgBouncer {
    let bouncer = PgBouncer::at(env.dir.join("bouncer"), env.user.clone());
    env.track_pidfile(bouncer.pid_file());
    bouncer
}

/// A primary with database `app` and table `t`, and a PgBouncer routing `app` to it.
async fn primary_behind_bouncer(env: &TestEnv) -> (Cluster, PgBouncer) {
    let primary = env.primary("p").await;
    connect(&primary).await.batch_execute("CREATE DATABASE app").await.unwrap();
    connect_conninfo(&primary.conninfo(DB)).await.batch_execute("CREATE TABLE t (id bigint PRIMARY KEY)").await.unwrap();
    let bouncer = bouncer(env);
    let outcome = bouncer.ensure_started(&[Route::to(DB, &primary.address(), DB)], &[]).await.unwrap();
    assert_eq!(outcome, EnsureOutcome::Started);
    (primary, bouncer)
}

/// What the writers saw: acknowledged ids with their commit times, and errors.
#[derive(Default)]
struct Written {
    acked: Vec<(i64, Instant)>,
    errors: Vec<String>,
}

impl Written {
    /// The longest time between two consecutive acknowledged commits (all writers together).
    fn max_gap(&self) -> Duration {
        let mut times: Vec<Instant> = self.acked.iter().map(|(_, t)| *t).collect();
        times.sort();
        times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
    }
}

/// `n` writers, each with its own connection through the endpoint, inserting
/// unique ids with the simple query protocol until stopped.
struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Written>>,
}

impl Writers {
    async fn start(bouncer: &PgBouncer, n: i64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..n {
            let client = connect_conninfo(&bouncer.client_conninfo(DB)).await;
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut written = Written::default();
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let id = w * 1_000_000 + i;
                    i += 1;
                    match client.simple_query(&format!("INSERT INTO t VALUES ({id})")).await {
                        Ok(_) => written.acked.push((id, Instant::now())),
                        Err(e) => written.errors.push(format!("writer {w} id {id}: {e:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                written
            }));
        }
        Writers { stop, tasks }
    }

    async fn finish(self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Written::default();
        for task in self.tasks {
            let w = task.await.unwrap();
            all.acked.extend(w.acked);
            all.errors.extend(w.errors);
        }
        all
    }
}

/// Every acknowledged id is in table `t` of `cluster`.
async fn assert_all_present(cluster: &Cluster, written: &Written) {
    let client = connect_conninfo(&cluster.conninfo(DB)).await;
    let rows = client.query("SELECT id FROM t", &[]).await.unwrap();
    let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let missing: Vec<i64> = written.acked.iter().map(|(id, _)| *id).filter(|id| !present.contains(id)).collect();
    assert!(missing.is_empty(), "{} acknowledged ids missing, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn endpoint_routes_clients_and_shows_route() {
    let env = TestEnv::new("endpoint-route");
    let (primary, bouncer) = primary_behind_bouncer(&env).await;

    // Clients connect through the URL applications use, and write.
    let client = connect_conninfo(&bouncer.client_conninfo(DB)).await;
    client.simple_query("INSERT INTO t VALUES (1)").await.unwrap();
    let count: i64 = connect_conninfo(&primary.conninfo(DB)).await.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(count, 1);

    let mut admin = bouncer.admin().await.unwrap();
    let row = admin.database(DB).await.unwrap().expect("route in SHOW DATABASES");
    assert!(row.matches(&Route::to(DB, &primary.address(), DB)), "{row:?}");
    assert_eq!(row.force_user, None, "server connections log in as the client's own role");
    assert!(!row.paused);
    let pools = admin.show_pools().await.unwrap();
    let pool = pools.iter().find(|p| p.database == DB).expect("pool for app");
    assert_eq!(pool.pool_mode, "transaction");
    assert!(!admin.is_paused(DB).await.unwrap());
    // Resuming a database that is not paused is fine (a restarted pgmaint resumes blindly).
    admin.resume(DB).await.unwrap();
    admin.resume("not_configured").await.unwrap();

    // Round trips of the admin commands on an idle database: persistent
    // connection, and a fresh connection per command for comparison.
    let (mut pause, mut resume, mut reload, mut fresh) = (vec![], vec![], vec![], vec![]);
    for _ in 0..20 {
        let t = Instant::now();
        admin.pause(DB, Duration::from_secs(5)).await.unwrap();
        pause.push(t.elapsed());
        assert!(admin.is_paused(DB).await.unwrap());
        let t = Instant::now();
        admin.resume(DB).await.unwrap();
        resume.push(t.elapsed());
        let t = Instant::now();
        admin.reload().await.unwrap();
        reload.push(t.elapsed());
        let t = Instant::now();
        bouncer.admin().await.unwrap().reload().await.unwrap();
        fresh.push(t.elapsed());
    }
    eprintln!(
        "admin round trips (median of 20, persistent connection): PAUSE {:?} RESUME {:?} RELOAD {:?}; fresh connection + RELOAD {:?}",
        median(pause),
        median(resume),
        median(reload),
        median(fresh)
    );
    client.simple_query("INSERT INTO t VALUES (2)").await.unwrap();
}

#[tokio::test]
async fn endpoint_pause_holds_writes_without_errors() {
    let env = TestEnv::new("endpoint-pause");
    let (primary, bouncer) = primary_behind_bouncer(&env).await;
    let mut admin = bouncer.admin().await.unwrap();
    let writers = Writers::start(&bouncer, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t = Instant::now();
    let waited = admin.pause(DB, Duration::from_secs(5)).await.unwrap();
    let pause_rtt = t.elapsed();
    assert!(admin.is_paused(DB).await.unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = admin.show_pools().await.unwrap().into_iter().find(|p| p.database == DB).unwrap();
    let t = Instant::now();
    admin.resume(DB).await.unwrap();
    let resume_rtt = t.elapsed();
    assert!(!admin.is_paused(DB).await.unwrap());

    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = writers.finish().await;
    assert!(written.errors.is_empty(), "client errors: {:?}", written.errors);
    assert!(written.acked.len() > 100, "only {} commits", written.acked.len());
    assert_all_present(&primary, &written).await;
    let gap = written.max_gap();
    eprintln!(
        "pause under 4 writers: PAUSE {pause_rtt:?} (pgbouncer waited {waited:?}), RESUME {resume_rtt:?}, \
         clients waiting while paused {}, sv_active+sv_idle while paused {}, {} commits, max commit gap {gap:?}",
        waiting.cl_waiting,
        waiting.sv_active + waiting.sv_idle,
        written.acked.len()
    );
    assert!(gap >= Duration::from_millis(200), "max commit gap {gap:?}: PAUSE did not hold writes");
    assert!(gap < Duration::from_secs(2), "max commit gap {gap:?}");
}

#[tokio::test]
async fn endpoint_repoint_to_promoted_replica() {
    let env = TestEnv::new("endpoint-repoint");
    let (primary, bouncer) = primary_behind_bouncer(&env).await;
    let replica = env.replica("r", &primary).await;
    let mut admin = bouncer.admin().await.unwrap();
    let writers = Writers::start(&bouncer, 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let section = Instant::now();
    let t = Instant::now();
    admin.pause(DB, Duration::from_secs(5)).await.unwrap();
    let pause_rtt = t.elapsed();

    let t = Instant::now();
    primary.stop(StopMode::Fast).await.unwrap();
    let stop_time = t.elapsed();

    // The candidate must hold everything up to the old primary's shutdown checkpoint.
    let t = Instant::now();
    let checkpoint = primary.control_data().await.unwrap().latest_checkpoint;
    let r = connect(&replica).await;
    loop {
        let received: String = r
            .query_one("SELECT coalesce(pg_last_wal_receive_lsn(), '0/0')::text", &[])
            .await
            .unwrap()
            .get(0);
        if received.parse::<pgmaint::model::Lsn>().unwrap() > checkpoint {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "replica stuck at {received}, checkpoint {checkpoint}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let catch_up = t.elapsed();

    let t = Instant::now();
    let promoted: bool = r.query_one("SELECT pg_promote(true, 60)", &[]).await.unwrap().get(0);
    assert!(promoted);
    let promote_time = t.elapsed();

    let t = Instant::now();
    admin.repoint(&Route::to(DB, &replica.address(), DB)).await.unwrap();
    let repoint_rtt = t.elapsed();

    let t = Instant::now();
    admin.resume(DB).await.unwrap();
    let resume_rtt = t.elapsed();
    let section = section.elapsed();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = writers.finish().await;
    assert!(written.errors.is_empty(), "client errors: {:?}", written.errors);
    assert_all_present(&replica, &written).await;
    let row = admin.database(DB).await.unwrap().unwrap();
    assert!(row.matches(&Route::to(DB, &replica.address(), DB)) && !row.paused, "{row:?}");
    assert_eq!(bouncer.routes().unwrap(), vec![Route::to(DB, &replica.address(), DB)]);
    // Repointing again is a harmless no-op.
    admin.repoint(&Route::to(DB, &replica.address(), DB)).await.unwrap();
    let gap = written.max_gap();
    eprintln!(
        "switchover in miniature: PAUSE {pause_rtt:?}, fast stop {stop_time:?}, WAL check {catch_up:?}, \
         promote {promote_time:?}, repoint (ini + RELOAD + SHOW) {repoint_rtt:?}, RESUME {resume_rtt:?}; \
         paused section {section:?}; {} commits, max commit gap {gap:?}, 0 client errors",
        written.acked.len()
    );
}

#[tokio::test]
async fn endpoint_pause_timeout_resumes() {
    let env = TestEnv::new("endpoint-pause-timeout");
    let (primary, bouncer) = primary_behind_bouncer(&env).await;
    let mut admin = bouncer.admin().await.unwrap();

    // A client holds a transaction open through the endpoint.
    let holder = connect_conninfo(&bouncer.client_conninfo(DB)).await;
    holder.simple_query("BEGIN").await.unwrap();
    holder.simple_query("INSERT INTO t VALUES (-1)").await.unwrap();

    let t = Instant::now();
    let err = admin.pause(DB, Duration::from_millis(300)).await.unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, EndpointError::PauseTimeout { resume_error: None, .. }), "{err}");
    assert!(took < Duration::from_secs(2), "pause with a 300 ms timeout took {took:?}");
    eprintln!("PAUSE timeout: {err} (returned after {took:?})");
    assert!(!admin.is_paused(DB).await.unwrap(), "left paused after a PAUSE timeout");
    // A new client can write at once; the console still works.
    let client = connect_conninfo(&bouncer.client_conninfo(DB)).await;
    client.simple_query("INSERT INTO t VALUES (1)").await.unwrap();
    holder.simple_query("COMMIT").await.unwrap();
    let count: i64 = connect_conninfo(&primary.conninfo(DB)).await.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(count, 2);
    admin.pause(DB, Duration::from_secs(5)).await.unwrap();
    admin.resume(DB).await.unwrap();
    assert!(!admin.is_paused(DB).await.unwrap());
}

#[tokio::test]
async fn endpoint_resumes_on_every_path() {
    let env = TestEnv::new("endpoint-guards");
    let (_primary, bouncer) = primary_behind_bouncer(&env).await;
    let mut admin = bouncer.admin().await.unwrap();

    // Normal path: the body acts while paused, then RESUME.
    let seen_paused: bool = admin
        .with_paused(DB, Duration::from_secs(5), |admin| Box::pin(async move { admin.is_paused(DB).await }))
        .await
        .unwrap();
    assert!(seen_paused);
    assert!(!admin.is_paused(DB).await.unwrap());

    // The body fails: its error comes back, the database is resumed.
    let err = admin
        .with_paused(DB, Duration::from_secs(5), |_| Box::pin(async { Err::<(), _>(anyhow::anyhow!("promotion failed")) }))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "promotion failed");
    assert!(!admin.is_paused(DB).await.unwrap());

    // The body panics: resumed, then the panic goes on.
    let panicking = bouncer.clone();
    let joined = tokio::spawn(async move {
        let mut admin = panicking.admin().await.unwrap();
        admin
            .with_paused(DB, Duration::from_secs(5), |_| {
                Box::pin(async {
                    if DB == "app" {
                        panic!("bug in the paused section");
                    }
                    Ok::<(), EndpointError>(())
                })
            })
            .await
    })
    .await;
    assert!(joined.unwrap_err().is_panic());
    assert!(!admin.is_paused(DB).await.unwrap());

    // A guard dropped without resume (early return, cancelled future) resumes in Drop.
    let guard = admin.pause_guarded(DB, Duration::from_secs(5)).await.unwrap();
    drop(guard);
    assert!(!admin.is_paused(DB).await.unwrap());
    let cancelled = async {
        let mut guard = admin.pause_guarded(DB, Duration::from_secs(5)).await.unwrap();
        assert!(guard.admin().is_paused(DB).await.unwrap());
        std::future::pending::<()>().await;
    };
    assert!(tokio::time::timeout(Duration::from_millis(200), cancelled).await.is_err());
    assert!(!admin.is_paused(DB).await.unwrap());

    // A pgmaint that died mid-pause: a new console resumes blindly.
    admin.pause(DB, Duration::from_secs(5)).await.unwrap();
    drop(admin);
    let mut fresh: AdminConsole = bouncer.admin().await.unwrap();
    assert!(fresh.is_paused(DB).await.unwrap(), "PAUSE does not outlive its console");
    fresh.resume(DB).await.unwrap();
    fresh.resume(DB).await.unwrap();
    assert!(!fresh.is_paused(DB).await.unwrap());
}

#[tokio::test]
async fn endpoint_life_cycle_is_idempotent() {
    let env = TestEnv::new("endpoint-life-cycle");
    let primary = env.primary("p").await;
    let other = env.primary("q").await;
    let bouncer = bouncer(&env);
    let routes = [Route::to("postgres", &primary.address(), "postgres")];

    assert!(!bouncer.is_running());
    assert_eq!(bouncer.ensure_started(&routes, &[]).await.unwrap(), EnsureOutcome::Started);
    let pid = bouncer.pid().expect("pid");
    assert_eq!(bouncer.ensure_started(&routes, &[]).await.unwrap(), EnsureOutcome::Unchanged);
    assert_eq!(bouncer.pid(), Some(pid), "second ensure_started restarted pgbouncer");

    // It runs as the server user when we are root.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid: u32 = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    if nix::unistd::geteuid().is_root() {
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        assert_eq!(uid, postgres.uid.as_raw(), "pgbouncer runs as uid {uid}");
    }

    // A new route set is written and reloaded without a restart, removed routes go.
    let moved = [Route::to("postgres", &other.address(), "postgres"), Route::to("second", &primary.address(), "postgres")];
    assert_eq!(bouncer.ensure_started(&moved, &[]).await.unwrap(), EnsureOutcome::Reloaded);
    assert_eq!(bouncer.pid(), Some(pid));
    let mut admin = bouncer.admin().await.unwrap();
    for route in &moved {
        assert!(admin.database(&route.name).await.unwrap().unwrap().matches(route));
    }
    assert_eq!(bouncer.ensure_started(&routes, &[]).await.unwrap(), EnsureOutcome::Reloaded);
    assert!(admin.database("second").await.unwrap().is_none(), "removed route still served");

    // A crash between writing the ini file and RELOAD: the next call notices.
    std::fs::write(bouncer.ini_file(), std::fs::read_to_string(bouncer.ini_file()).unwrap().replace(
        &routes[0].host.to_string(),
        &other.socket_dir().display().to_string(),
    ))
    .unwrap();
    assert_eq!(bouncer.ensure_started(&routes, &[]).await.unwrap(), EnsureOutcome::Reloaded);
    admin.reload().await.unwrap();
    assert!(admin.database("postgres").await.unwrap().unwrap().matches(&routes[0]));

    // Settings in force are observed too, not just routes.
    let before = admin.show_config().await.unwrap();
    assert!(before.contains(&("server_login_retry".to_string(), "0.1".to_string())), "{before:?}");
    assert!(before.contains(&("pool_mode".to_string(), "transaction".to_string())));
    std::fs::write(bouncer.ini_file(), std::fs::read_to_string(bouncer.ini_file()).unwrap().replace("server_check_delay = 1", "server_check_delay = 30")).unwrap();
    admin.reload().await.unwrap();
    assert_eq!(bouncer.ensure_started(&routes, &[]).await.unwrap(), EnsureOutcome::Reloaded);
    assert_eq!(bouncer.ensure_started(&routes, &[]).await.unwrap(), EnsureOutcome::Unchanged);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", bouncer.pid().unwrap())).unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    let soft: u64 = open_files.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(soft > 1100, "pgbouncer's fd limit is too low for max_client_conn 1000: {open_files}");

    // Stop, stop again, start again.
    bouncer.stop().await.unwrap();
    assert!(!bouncer.is_running());
    assert!(!bouncer.pid_file().exists());
    bouncer.stop().await.unwrap();
    assert_eq!(bouncer.ensure_started(&routes, &[]).await.unwrap(), EnsureOutcome::Started);
    connect_conninfo(&bouncer.client_conninfo("postgres")).await.simple_query("SELECT 1").await.unwrap();

    // kill -9 leaves a stale pidfile; ensure_started starts it anyway.
    let pid = bouncer.pid().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    for _ in 0..200 {
        if !bouncer.is_running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!bouncer.is_running());
    assert_eq!(bouncer.ensure_started(&routes, &[]).await.unwrap(), EnsureOutcome::Started);
    assert_ne!(bouncer.pid(), Some(pid));

    let _ = bouncer.ensure_started(&[Route::to("pgbouncer", &primary.address(), "x")], &[]).await.unwrap_err();
}
