//! The state store against a real PostgreSQL: migrations, records, claims and fencing.

use chrono::{Duration, Utc};
use pgmaint::store::{InstanceRole, MaintenanceState, NewDatabase, StepStatus, Store, Writer};

use crate::harness::TestEnv;

async fn store(env: &TestEnv) -> Store {
    let server = env.primary("state").await;
    let url = server.url("postgres");
    let store = Store::connect(&url).await.expect("connect + migrate");
    // Migrating again (a daemon restart) is a no-op.
    Store::connect(&url).await.expect("second migrate");
    store
}

#[tokio::test]
async fn databases_instances_and_maintenances_round_trip() {
    let env = TestEnv::new("store-records");
    let store = store(&env).await;
    let owners = vec!["dba@example.com".to_string()];
    let db = store
        .insert_database(&NewDatabase { name: "orders", plan: "standard-2", following_id: None, dbname: None, owners: &owners, labels: &Default::default(), window_spec: "Tuesday 14:30", window_length_secs: 14400 })
        .await
        .unwrap();
    assert_eq!(db.window_spec.as_deref(), Some("Tuesday 14:30"));
    assert_eq!(db.owners, owners);
    let duplicate = store
        .insert_database(&NewDatabase { name: "orders", plan: "standard-2", following_id: None, dbname: None, owners: &[], labels: &Default::default(), window_spec: "Tuesday 14:30", window_length_secs: 14400 })
        .await;
    assert!(duplicate.unwrap_err().to_string().contains("already exists"));
    assert_eq!(store.database_named("nope").await.unwrap_err().to_string(), "database nope not found");

    let first = store.insert_instance(Writer::Operator, db.id, InstanceRole::Current, "/x/orders-1", None).await.unwrap();
    let second = store.insert_instance(Writer::Operator, db.id, InstanceRole::Replacement, "/x/orders-2", Some("orders_2")).await.unwrap();
    store.promote_instance(Writer::Operator, db.id, second.id, None).await.unwrap();
    store.promote_instance(Writer::Operator, db.id, second.id, None).await.unwrap(); // repeatable
    assert_eq!(store.current_instance(db.id).await.unwrap().id, second.id);
    assert_eq!(store.instance(first.id).await.unwrap().role, InstanceRole::Retired);
    assert_eq!(db.dbname, "orders", "a primary serves the PostgreSQL database of its own name");
    store.promote_instance(Writer::Operator, db.id, second.id, Some("standard-4")).await.unwrap();
    assert_eq!(store.database(db.id).await.unwrap().plan, "standard-4", "a plan change completes with the switch");

    let required_by = Utc::now() + Duration::days(3);
    let m = store.insert_maintenance(db.id, "os-patch", "switchover", required_by, None).await.unwrap();
    assert!(store.insert_maintenance(db.id, "settings", "restart", required_by, None).await.is_err(), "two open maintenances");
    assert_eq!(store.open_maintenance(db.id).await.unwrap().unwrap().id, m.id);
    assert_eq!(m.state, MaintenanceState::Pending);
}

#[tokio::test]
async fn claims_are_exclusive_and_stale_tokens_are_fenced() {
    let env = TestEnv::new("store-claims");
    let store = store(&env).await;
    let db = store
        .insert_database(&NewDatabase { name: "a", plan: "standard-0", following_id: None, dbname: None, owners: &[], labels: &Default::default(), window_spec: "Sunday 02:00", window_length_secs: 14400 })
        .await
        .unwrap();
    let m = store.insert_maintenance(db.id, "settings", "restart", Utc::now(), None).await.unwrap();

    let first = store.claim_maintenance(m.id, "daemon-a", 30.0).await.unwrap().expect("first claim");
    assert!(store.claim_maintenance(m.id, "daemon-b", 30.0).await.unwrap().is_none(), "lease must exclude b");
    store.record_step(first, "pause", StepStatus::Intent, serde_json::json!({})).await.unwrap();

    // a's lease runs out; b takes over with a larger token and a's writes bounce.
    store.renew_claim(first, 0.0).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = store.claim_maintenance(m.id, "daemon-b", 30.0).await.unwrap().expect("takeover after expiry");
    assert!(second.token > first.token);
    assert!(store.record_step(first, "pause", StepStatus::Done, serde_json::json!({})).await.is_err());
    assert!(store.set_maintenance_state(first, MaintenanceState::Completed).await.is_err());

    // Every write that decides which server is current is fenced too: the stale runner changes nothing.
    let leader = store
        .insert_database(&NewDatabase { name: "l", plan: "standard-0", following_id: None, dbname: None, owners: &[], labels: &Default::default(), window_spec: "Sunday 02:00", window_length_secs: 14400 })
        .await
        .unwrap();
    let current = store.insert_instance(Writer::Operator, db.id, InstanceRole::Current, "/x/a-1", Some("s1")).await.unwrap();
    let spare = store.insert_instance(Writer::Runner(second), db.id, InstanceRole::Replacement, "/x/a-2", Some("s2")).await.unwrap();
    let stale = Writer::Runner(first);
    assert!(store.insert_instance(stale, db.id, InstanceRole::Replacement, "/x/a-3", Some("s3")).await.is_err());
    assert!(store.promote_instance(stale, db.id, spare.id, Some("standard-9")).await.is_err());
    assert!(store.set_instance_role(stale, current.id, InstanceRole::Retired).await.is_err());
    assert!(store.set_following(stale, db.id, leader.id).await.is_err());
    assert!(store.fork_database(stale, db.id, "l").await.is_err());
    let instances = store.instances(db.id).await.unwrap();
    assert_eq!(instances.len(), 2, "the stale runner inserted a server");
    assert_eq!(store.current_instance(db.id).await.unwrap().id, current.id, "the stale runner moved the database");
    let after = store.database(db.id).await.unwrap();
    assert_eq!((after.plan.as_str(), after.following_id, after.forked_from), ("standard-0", None, None), "the stale runner changed the database");
    // The current runner's writes go through.
    store.promote_instance(Writer::Runner(second), db.id, spare.id, None).await.unwrap();
    assert_eq!(store.current_instance(db.id).await.unwrap().id, spare.id);
    store.set_maintenance_state(second, MaintenanceState::Running).await.unwrap();
    store.record_step(second, "pause", StepStatus::Done, serde_json::json!({"ms": 1})).await.unwrap();
    assert_eq!(store.steps_done_since(m.id, "postponed").await.unwrap(), ["pause"]);
    let steps = store.steps(m.id).await.unwrap();
    assert_eq!(steps.iter().map(|s| s.status.as_str()).collect::<Vec<_>>(), ["intent", "done"]);
    store.finish_maintenance(second, MaintenanceState::Completed, "completed", None, Some(12.5)).await.unwrap();
    let done = store.maintenance(m.id).await.unwrap();
    assert_eq!(done.state, MaintenanceState::Completed);
    assert_eq!(done.write_pause_ms, Some(12.5));
    assert!(store.database(db.id).await.unwrap().last_maintained_at.is_some());
}
