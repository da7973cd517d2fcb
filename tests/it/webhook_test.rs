//! Webhooks against a real HTTP receiver (an axum server on 127.0.0.1) and a
//! real state store: a receiver answering 500 gets the event again after the
//! backoff and exactly once after it answers 200; a daemon POSTs a
//! maintenance's started and completed events once each to every URL; a
//! daemon restarted with webhooks left undelivered (their receiver was down)
//! delivers them. The URLs carry a secret that must appear in no log and no
//! recorded error.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, Uri};
use chrono::Utc;
use pgmaint::config::Config;
use pgmaint::notify::{MailEvent, Notifier, WebhookUrl};
use serde_json::Value;

use crate::api_test::pgmaint;
use crate::harness::{free_port, TestEnv};
use crate::manual_run_test::{wait_for_socket, DaemonProcess};
use crate::notify_test::{context, fixture};

/// One request the receiver took.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Path and query, as requested.
    pub(crate) uri: String,
    pub(crate) body: Value,
    /// What the receiver answered.
    pub(crate) status: u16,
    pub(crate) at: Instant,
}

/// A webhook receiver on 127.0.0.1:`port` recording every request; it answers
/// the first `fail_first` with 500 and the rest with 200. Stopped when dropped.
pub(crate) struct Receiver {
    pub(crate) port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start(port: u16, fail_first: usize) -> Receiver {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
            let log = log.clone();
            async move {
                let mut log = log.lock().unwrap();
                let status = if log.len() < fail_first { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
                let body = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
                log.push(Received { uri: uri.to_string(), body, status: status.as_u16(), at: Instant::now() });
                status
            }
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.expect("bind the receiver");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver");
        });
        Receiver { port, received, task }
    }

    /// The URL of `path_and_query` on this receiver.
    pub(crate) fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The bodies of the 2xx-answered requests whose `event` is `event` and whose `key` field is `value`.
    pub(crate) fn delivered(&self, event: &str, key: &str, value: &Value) -> Vec<Value> {
        self.received().into_iter().filter(|r| r.status == 200 && r.body["event"] == event && &r.body[key] == value).map(|r| r.body).collect()
    }

    /// Waits until `delivered(event, key, value)` is not empty; panics after `timeout`.
    pub(crate) async fn wait_for(&self, event: &str, key: &str, value: &Value, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(body) = self.delivered(event, key, value).into_iter().next() {
                return body;
            }
            assert!(Instant::now() < deadline, "no {event} webhook with {key} = {value} on port {} in {timeout:?}: {:#?}", self.port, self.received());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_failing_receiver_gets_the_event_again_after_the_backoff_and_once_after_200() {
    let env = TestEnv::new("webhook-retry");
    let f = fixture(&env, &[]).await;
    let receiver = Receiver::start(free_port(), 2).await;
    let mut config = Config::with_data_dir(env.dir.join("data"));
    config.notify.webhooks = vec![WebhookUrl::parse(&receiver.url("/hook?token=s3cret")).unwrap()];
    let base = Duration::from_millis(300);
    let notifier = Notifier::from_config(&config, f.store.clone()).unwrap().with_backoff(base, Duration::from_secs(5));
    let ctx = context(&f.maintenance);

    assert_eq!(notifier.queue(&MailEvent::Started, &ctx, &[]).await.unwrap(), 1, "one webhook, no owner");
    assert_eq!(notifier.queue(&MailEvent::Started, &ctx, &[]).await.unwrap(), 0, "queued once per event and URL");
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.received().len() < 3 {
        assert!(Instant::now() < deadline, "{:#?}", receiver.received());
        notifier.deliver_due().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing more once it answered 200, however often delivery runs.
    for _ in 0..5 {
        assert_eq!(notifier.deliver_due().await.unwrap(), Default::default());
    }
    let received = receiver.received();
    assert_eq!(received.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 500, 200], "{received:#?}");
    assert!(received.iter().all(|r| r.uri == "/hook?token=s3cret" && r.body == received[0].body), "the same POST each time");
    // 300 ms then 600 ms, each up to a fifth shorter.
    assert!(received[1].at - received[0].at >= base.mul_f64(0.8), "{:?}", received[1].at - received[0].at);
    assert!(received[2].at - received[1].at >= (base * 2).mul_f64(0.8), "{:?}", received[2].at - received[1].at);
    let body = &received[2].body;
    assert_eq!(body["event"], "started");
    assert_eq!(body["database"], "orders");
    assert_eq!(body["maintenance_id"], f.maintenance.id);
    assert!(body["text"].as_str().unwrap().starts_with("[pgmaint] The maintenance of database orders started at "), "{body}");

    let rows = f.store.sent_mail(f.maintenance.id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].attempts, rows[0].last_error.as_deref()), (2, Some("HTTP 500 Internal Server Error")));

    // Unreachable: a connection refused is a failed attempt whose error names no URL.
    config.notify.webhooks = vec![WebhookUrl::parse(&format!("http://127.0.0.1:{}/gone?token=s3cret", free_port())).unwrap()];
    let notifier = Notifier::from_config(&config, f.store.clone()).unwrap();
    assert_eq!(notifier.queue(&MailEvent::Completed, &ctx, &[]).await.unwrap(), 1);
    let report = notifier.deliver_due().await.unwrap();
    assert_eq!((report.sent, report.failed), (0, 1));
    let rows = f.store.outbox_mail(f.maintenance.id).await.unwrap();
    let error = rows.iter().find(|r| r.event == "completed").unwrap().last_error.clone().unwrap();
    assert!(!error.contains("s3cret") && !error.contains("127.0.0.1"), "{error}");
    assert_eq!(f.store.outbox_depth().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_posts_each_event_once_per_url_and_a_restarted_one_delivers_what_was_left() {
    let env = TestEnv::new("webhook-daemon");
    let state = env.primary("state").await;
    let chat = Receiver::start(free_port(), 0).await;
    let late_port = free_port(); // nothing listens there until the daemon is restarted
    let late_url = format!("http://127.0.0.1:{late_port}/late/s3cret");
    let config = env.dir.join("pgmaint.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ntick = \"1s\"\nlease = \"4s\"\n\n[state]\nurl = \"{}\"\n\n[notify]\nwebhooks = [\"{}\", \"{late_url}\"]\n{}",
            state.url("postgres"),
            chat.url("/chat?token=s3cret"),
            env.endpoint_config()
        ),
    )
    .unwrap();
    let data_dir = env.dir.join("d");
    let daemon = DaemonProcess::start(&env, &config, &data_dir);
    let socket = data_dir.join("pgmaint.sock");
    wait_for_socket(&socket, &daemon).await;

    pgmaint(&socket, &["databases", "create", "orders", "--plan", "essential-0", "--owner", "dba@example.com"]).await.ok("create");
    let required_by = (Utc::now() + chrono::TimeDelta::minutes(30)).to_rfc3339();
    pgmaint(&socket, &["maintenance", "require", "orders", "--reason", "settings", "--required-by", &required_by]).await.ok("require");
    pgmaint(&socket, &["maintenance", "run", "orders", "--force"]).await.ok("run");
    let history = pgmaint(&socket, &["maintenance", "history", "orders", "--json"]).await.ok("history").json();
    let id = history[0]["id"].clone();
    assert_eq!(history[0]["outcome"], "completed", "{history:#}");

    let orders = Value::from("orders");
    let started = chat.wait_for("started", "database", &orders, Duration::from_secs(30)).await;
    let completed = chat.wait_for("completed", "database", &orders, Duration::from_secs(30)).await;
    for body in [&started, &completed] {
        assert_eq!(body["maintenance_id"], id, "{body}");
        assert_eq!((body["reason"].as_str(), body["strategy"].as_str()), (Some("settings"), Some("restart")), "{body}");
        assert_eq!(body["rollout"], Value::Null);
        assert_eq!(body["error"], Value::Null, "{body}");
        assert!(body["forced_reason"].as_str().unwrap().contains("no maintenance window"), "{body}");
    }
    assert!(completed["text"].as_str().unwrap().starts_with("[pgmaint] The maintenance of database orders completed in "), "{completed}");
    assert!(completed["duration_seconds"].as_f64().unwrap() > 0.0, "{completed}");
    let (status, log) = daemon.stop().await;
    assert!(status.success(), "daemon exit: {status}");
    assert!(!log.contains("s3cret"), "a webhook's secret was logged:\n{log}");
    assert!(log.contains(&format!("http://127.0.0.1:{late_port}/late/…")), "failures name the redacted URL:\n{log}");
    assert_eq!(chat.delivered("started", "database", &orders).len(), 1);
    assert_eq!(chat.delivered("completed", "database", &orders).len(), 1);

    // The late receiver comes up; a new daemon delivers what the first could not.
    let late = Receiver::start(late_port, 0).await;
    let daemon = DaemonProcess::start(&env, &config, &data_dir);
    wait_for_socket(&socket, &daemon).await;
    let late_started = late.wait_for("started", "database", &orders, Duration::from_secs(90)).await;
    late.wait_for("completed", "database", &orders, Duration::from_secs(90)).await;
    assert_eq!(late_started["maintenance_id"], id);
    assert_eq!(late.received()[0].uri, "/late/s3cret");
    tokio::time::sleep(Duration::from_secs(3)).await; // a few more passes
    for receiver in [&chat, &late] {
        for event in ["scheduled", "started", "completed"] {
            assert_eq!(receiver.delivered(event, "database", &orders).len(), 1, "{event} on {}: {:#?}", receiver.port, receiver.received());
        }
    }
    let (status, log) = daemon.stop().await;
    assert!(status.success(), "daemon exit: {status}");
    assert!(!log.contains("s3cret"), "{log}");
}
