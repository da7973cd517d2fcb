//! `pgmaint copy SOURCE TARGET --confirm TARGET` through the real binary
//! against the API served in-process over a real engine: schema, data, index,
//! foreign key and sequence arrive; a wrong confirmation is refused; a writer
//! on the source is refused (25006) during the copy, loses nothing it was told
//! succeeded, and writes again afterwards.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgmaint::config::ApiConfig;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_postgres::error::SqlState;

use crate::api_test::{pgmaint, TestApi};
use crate::engine_test::{engine, spec};
use crate::harness::{connect_conninfo, TestEnv};

/// What the writer saw.
#[derive(Default)]
pub(crate) struct Writes {
    /// Every id sent, in order, with whether it was acknowledged.
    pub attempts: Vec<(i64, bool)>,
    /// Index in `attempts` of the first 25006 refusal.
    pub first_refusal: Option<usize>,
    pub refused: usize,
    /// Acknowledged after the last refusal (the source writable again).
    pub acked_after_refusals: usize,
    pub other_errors: Vec<String>,
}

/// Inserts ids 1, 2, 3... into `events` through the endpoint until told to stop,
/// reconnecting after a lost connection (simple protocol: transaction pooling).
pub(crate) async fn writer(conninfo: String, stop: Arc<AtomicBool>) -> Writes {
    let mut writes = Writes::default();
    let mut client: Option<tokio_postgres::Client> = None;
    let mut id = 0i64;
    while !stop.load(Ordering::Relaxed) {
        if !matches!(&client, Some(c) if !c.is_closed()) {
            match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                Ok((c, connection)) => {
                    tokio::spawn(connection);
                    client = Some(c);
                }
                Err(e) => {
                    writes.other_errors.push(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        id += 1;
        let result = client.as_ref().unwrap().simple_query(&format!("INSERT INTO events (id) VALUES ({id})")).await;
        match result {
            Ok(_) => {
                writes.attempts.push((id, true));
                if writes.refused > 0 {
                    writes.acked_after_refusals += 1;
                }
            }
            Err(e) if e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => {
                writes.attempts.push((id, false));
                writes.first_refusal.get_or_insert(writes.attempts.len() - 1);
                writes.refused += 1;
                writes.acked_after_refusals = 0;
            }
            Err(e) => {
                writes.attempts.push((id, false));
                writes.other_errors.push(match e.as_db_error() {
                    Some(db) => format!("{} ({})", db.message(), db.code().code()),
                    None => e.to_string(),
                });
                client = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    writes
}

pub(crate) async fn ids(client: &tokio_postgres::Client) -> BTreeSet<i64> {
    client.query("SELECT id FROM events", &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

pub(crate) async fn scalar(client: &tokio_postgres::Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    messages
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_through_the_binary_with_a_writer_on_the_source() {
    let env = TestEnv::new("copy");
    let engine = Arc::new(engine(&env).await);
    engine.create_database(&spec("shop", "essential-0", None)).await.expect("create shop");
    engine.create_database(&spec("staging", "essential-0", None)).await.expect("create staging");
    // Each side as its own role over TCP: the copy leaves staging's role in place.
    let shop_url = engine.endpoint_url("shop").await.unwrap();
    let staging_url = engine.endpoint_url("staging").await.unwrap();

    let shop = connect_conninfo(&shop_url).await;
    shop.batch_execute(
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
         CREATE INDEX customers_name ON customers (name);
         CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers (id),
                              amount numeric(10,2), note text, created timestamptz DEFAULT now());
         CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz DEFAULT now());
         INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 1000) g;
         INSERT INTO orders (customer_id, amount, note)
           SELECT 1 + g % 1000, g / 100.0, repeat('n', g % 50) FROM generate_series(1, 200000) g;",
    )
    .await
    .expect("source schema and data");
    let staging = connect_conninfo(&staging_url).await;
    staging.batch_execute("CREATE TABLE old_stuff (x int); INSERT INTO old_stuff VALUES (1), (2);").await.unwrap();
    drop(staging);

    let socket: PathBuf = env.dir.join("api.sock");
    let config = ApiConfig { socket: socket.clone(), socket_group: None, tcp: None, token_file: None };
    let server = TestApi::start(engine.clone(), config, Arc::new(Notify::new())).await;

    // A wrong confirmation changes nothing.
    let refused = pgmaint(&socket, &["copy", "shop", "staging", "--confirm", "stagign"]).await;
    assert_eq!(refused.code, 1, "stdout {:?} stderr {:?}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("--confirm staging"), "{}", refused.stderr);
    let staging = connect_conninfo(&staging_url).await;
    assert_eq!(scalar(&staging, "SELECT count(*) FROM old_stuff").await, "2");
    drop(staging);
    assert_eq!(pgmaint(&socket, &["copy", "nowhere", "staging", "--confirm", "staging"]).await.code, 1);

    // The copy, with a writer on the source all along.
    let stop = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn(writer(shop_url.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copied = pgmaint(&socket, &["copy", "shop", "staging", "--confirm", "staging", "--json"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let writes = writing.await.unwrap();
    assert_eq!(copied.code, 0, "stdout {:?} stderr {:?}", copied.stdout, copied.stderr);
    let events: Vec<Value> = copied.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let last = events.last().expect("events");
    assert_eq!(last["event"], "done", "{last}");
    let phases: BTreeSet<&str> = events.iter().filter(|e| e["event"] == "progress").filter_map(|e| e["phase"].as_str()).collect();
    for phase in ["schema", "data", "post-data", "sequences", "verify"] {
        assert!(phases.contains(phase), "no {phase} progress in {phases:?}");
    }
    let report = &last["report"];
    assert_eq!(report["tables"].as_array().unwrap().len(), 3, "{report}");
    assert!(report["bytes"].as_u64().unwrap() > 1_000_000, "{report}");
    eprintln!("copy report: {report}");

    // The writer: refused during the copy, nothing acknowledged lost, writing again after.
    assert!(writes.refused > 0, "the writer was never refused; attempts {}, errors {:?}", writes.attempts.len(), writes.other_errors);
    assert!(writes.acked_after_refusals > 0, "the source did not take writes again after the copy");
    let shop = connect_conninfo(&shop_url).await;
    let source_ids = ids(&shop).await;
    let acked: BTreeSet<i64> = writes.attempts.iter().filter(|(_, ok)| *ok).map(|(id, _)| *id).collect();
    let lost: Vec<&i64> = acked.difference(&source_ids).collect();
    assert!(lost.is_empty(), "acknowledged writes lost on the source: {lost:?}");
    let first_refusal = writes.first_refusal.unwrap();
    let before: Vec<(i64, bool)> = writes.attempts[..first_refusal].to_vec();
    let staging = connect_conninfo(&staging_url).await;
    let target_ids = ids(&staging).await;
    for (id, ok) in &before {
        assert!(!ok || target_ids.contains(id), "write {id}, acknowledged before the copy, missing from the copy");
    }
    let attempted_before: BTreeSet<i64> = before.iter().map(|(id, _)| *id).collect();
    assert!(target_ids.is_subset(&attempted_before), "the copy holds writes made after the source was frozen");
    eprintln!(
        "writer: {} attempts, {} acknowledged, {} refused (25006), {} other errors {:?}",
        writes.attempts.len(),
        acked.len(),
        writes.refused,
        writes.other_errors.len(),
        &writes.other_errors[..writes.other_errors.len().min(3)]
    );
    assert!(writes.other_errors.is_empty(), "errors other than read-only refusals: {:?}", writes.other_errors);
    shop.simple_query("INSERT INTO events (id) VALUES (-1)").await.expect("the source is writable after the copy");

    // Data, index, foreign key and sequence on the target; its old data gone.
    for table in ["customers", "orders"] {
        let sql = format!("SELECT count(*) FROM {table}");
        assert_eq!(scalar(&staging, &sql).await, scalar(&shop, &sql).await, "{table}");
    }
    assert_eq!(scalar(&staging, "SELECT count(*) FROM orders").await, "200000");
    assert_eq!(scalar(&staging, "SELECT sum(amount)::text FROM orders").await, scalar(&shop, "SELECT sum(amount)::text FROM orders").await);
    assert_eq!(scalar(&staging, "SELECT count(*) FROM pg_indexes WHERE indexname = 'customers_name'").await, "1");
    assert_eq!(scalar(&staging, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'orders'::regclass").await, "1");
    assert_eq!(scalar(&staging, "SELECT last_value FROM customers_id_seq").await, "1000");
    assert_eq!(scalar(&staging, "SELECT last_value FROM orders_id_seq").await, "200000");
    let fk = staging.simple_query("INSERT INTO orders (customer_id) VALUES (999999)").await.unwrap_err();
    assert_eq!(fk.code(), Some(&SqlState::FOREIGN_KEY_VIOLATION));
    assert_eq!(scalar(&staging, "INSERT INTO customers (name) VALUES ('new') RETURNING id").await, "1001");
    assert_eq!(scalar(&staging, "SELECT to_regclass('old_stuff') IS NULL").await, "t");
    assert_eq!(scalar(&shop, "SHOW default_transaction_read_only").await, "off");

    // The text form.
    let text = pgmaint(&socket, &["copy", "shop", "staging", "--confirm", "staging"]).await;
    assert_eq!(text.code, 0, "stdout {:?} stderr {:?}", text.stdout, text.stderr);
    assert!(text.stdout.starts_with("Copied shop to staging: 3 tables, "), "{}", text.stdout);
    assert!(text.stderr.contains("data: "), "{}", text.stderr);

    server.stop().await;
    engine.stop_fleet().await.unwrap();
}
