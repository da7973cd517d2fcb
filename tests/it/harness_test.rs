//! The harness itself: servers start, stop, restart, survive kill -9, and replicate.

use pgmaint::provider::StopMode;

use crate::harness::{connect, connect_conninfo, free_port, TestEnv};

#[tokio::test]
async fn server_life_cycle_keeps_committed_data() {
    let env = TestEnv::new("harness-life-cycle");
    let server = env.primary("p").await;
    assert!(server.is_running().await.unwrap());

    let client = connect(&server).await;
    client.batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)").await.unwrap();
    drop(client);

    server.restart().await.unwrap();
    connect(&server).await.batch_execute("INSERT INTO t VALUES (2)").await.unwrap();

    server.kill().await.unwrap();
    assert!(!server.is_running().await.unwrap(), "postmaster still running after kill -9");
    server.start().await.unwrap();
    let count: i64 = connect(&server).await.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(count, 2, "committed rows lost across restart and kill -9");

    // The fence: every process frozen, then killed. A session it had no
    // longer answers, the pid file stays (as after a crash), and a start
    // right away removes the stale lock files and recovers.
    let session = connect(&server).await;
    server.stop(StopMode::Kill).await.unwrap();
    assert!(session.simple_query("SELECT 1").await.is_err(), "a session of the killed server still answers");
    assert!(server.data_dir().join("postmaster.pid").exists(), "the kill left no pid file: was it a clean stop?");
    assert!(!server.is_running().await.unwrap(), "running after the kill");
    server.start().await.unwrap();
    let count: i64 = connect(&server).await.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
    assert_eq!(count, 2, "committed rows lost across the kill");

    server.stop(StopMode::Fast).await.unwrap();
    server.stop(StopMode::Fast).await.unwrap(); // stopping twice is fine
    let control = server.control_data().await.unwrap();
    assert!(control.is_clean_primary_shutdown(), "state after fast stop: {}", control.state);
}

#[tokio::test]
async fn replica_streams_from_primary() {
    let env = TestEnv::new("harness-replica");
    let primary = env.primary("p").await;
    let replica = env.replica("r", &primary).await;

    connect(&primary).await.batch_execute("CREATE TABLE t AS SELECT 42 AS v").await.unwrap();
    let replica_client = connect(&replica).await;
    let in_recovery: bool = replica_client.query_one("SELECT pg_is_in_recovery()", &[]).await.unwrap().get(0);
    assert!(in_recovery);
    let mut seen = None;
    for _ in 0..200 {
        if let Ok(row) = replica_client.query_one("SELECT v FROM t", &[]).await {
            seen = Some(row.get::<_, i32>(0));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(seen, Some(42), "row never replicated");
}

/// A real etcd + 3 Patroni members: one leader and two streaming replicas,
/// SCRAM over TCP, the bootstrap role, replication, and nothing left after stop.
#[tokio::test]
async fn patroni_lab_elects_a_leader_and_streams() {
    let env = TestEnv::new("harness-patroni");
    let started = std::time::Instant::now();
    let lab = env.patroni(3).await;
    eprintln!("patroni lab of 3 ready in {:.1}s", started.elapsed().as_secs_f64());

    let members = lab.cluster().await.unwrap();
    let leaders: Vec<_> = members.iter().filter(|m| m.is_leader()).collect();
    assert_eq!(leaders.len(), 1, "{members:?}");
    let replicas: Vec<_> = members.iter().filter(|m| m.role == "replica").collect();
    assert_eq!(replicas.len(), 2, "{members:?}");
    for replica in &replicas {
        assert_eq!((replica.state.as_str(), replica.timeline, replica.lag_bytes()), ("running", leaders[0].timeline, Some(0)));
    }
    assert_eq!(lab.leader_name().await.unwrap(), leaders[0].name);

    let leader = lab.member_named(&leaders[0].name).unwrap();
    let client = connect_conninfo(&lab.conninfo(leader, "postgres")).await;
    let wrong = lab.conninfo(leader, "postgres").replace(lab.superuser_password(), "wrong");
    let refused = tokio_postgres::connect(&wrong, tokio_postgres::NoTls).await.err().expect("a wrong password was accepted");
    assert_eq!(refused.as_db_error().map(|e| e.code().code()), Some("28P01"), "{refused}");
    let pgmaint = connect_conninfo(&lab.pgmaint_conninfo(leader, "postgres").unwrap()).await;
    let superuser: bool = pgmaint.query_one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", &[]).await.unwrap().get(0);
    assert!(superuser, "the bootstrap role is not a superuser");

    client.batch_execute("CREATE TABLE t AS SELECT 42 AS v").await.unwrap();
    let replica = lab.member_named(&replicas[0].name).unwrap();
    let replica_client = connect_conninfo(&lab.conninfo(replica, "postgres")).await;
    let mut seen = None;
    for _ in 0..200 {
        if let Ok(row) = replica_client.query_one("SELECT v FROM t", &[]).await {
            seen = Some(row.get::<_, i32>(0));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(seen, Some(42), "the row never reached replica {}", replica.name);
    drop((client, pgmaint, replica_client));

    let pids = lab.pids();
    assert_eq!(pids.len(), 7, "etcd, 3 Patroni and 3 postmasters: {pids:?}");
    let stopping = std::time::Instant::now();
    lab.stop().await.unwrap();
    eprintln!("patroni lab stopped in {:.1}s", stopping.elapsed().as_secs_f64());
    // Orphans are reparented to PID 1, which may not reap them here: a zombie has exited.
    let running = |pid: &i32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()).is_some_and(|state| state != 'Z' && state != 'X')
    };
    let alive: Vec<i32> = pids.into_iter().filter(running).collect();
    assert!(alive.is_empty(), "still running after stop: {alive:?}");
}

/// The stock setup: HAProxy with Patroni's `/primary` check sends clients to
/// the leader, and after `patronictl switchover` to the new one.
#[tokio::test]
async fn haproxy_follows_a_patronictl_switchover() {
    use pgmaint::lab::haproxy::{measure_stock_switchover, HaproxyFront};

    let env = TestEnv::new("harness-haproxy");
    let lab = env.patroni(3).await;
    let front = HaproxyFront::start(&lab, &env.dir.join("haproxy"), free_port()).await.unwrap();
    env.track_pidfile(front.pidfile().to_path_buf());

    let old_leader = lab.leader_name().await.unwrap();
    let port: i32 = connect_conninfo(&front.conninfo("postgres")).await.query_one("SELECT inet_server_port()", &[]).await.unwrap().get(0);
    assert_eq!(port, i32::from(lab.member_named(&old_leader).unwrap().pg_port), "HAProxy did not reach the leader");

    pgmaint::workload::prepare(&front.conninfo("postgres")).await.unwrap();
    let workload = pgmaint::workload::Workload::start(&front.conninfo("postgres"), 2);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let candidate = lab.members().iter().find(|m| m.name != old_leader).unwrap().name.clone();
    let outcome = measure_stock_switchover(&lab, &front, workload, &candidate).await.unwrap();
    eprintln!("stock switchover: {outcome:?}");
    assert_eq!((outcome.switchover.from.as_str(), outcome.switchover.to.as_str()), (old_leader.as_str(), candidate.as_str()));
    assert_eq!(lab.leader_name().await.unwrap(), candidate);
    assert!(outcome.acknowledged > 0);

    let client = connect_conninfo(&front.conninfo("postgres")).await;
    let row = client.query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[]).await.unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, bool>(1)), (i32::from(lab.member_named(&candidate).unwrap().pg_port), false));
    drop(client);
    front.stop().await.unwrap();
    lab.stop().await.unwrap();
}
