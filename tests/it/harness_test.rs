//! The harness itself: servers start, stop, restart, survive kill -9, and replicate.

use pgmaint::provider::StopMode;

use crate::harness::{connect, TestEnv};

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
