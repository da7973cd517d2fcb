//! Owner mail against a real SMTP server (Python's aiosmtpd) and a real state
//! store: each mail is delivered once, survives an SMTP outage and a daemon
//! restart, is never sent twice by two daemons, and falls back to `.eml` files.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use pgmaint::config::{Config, SmtpConfig, SmtpTls};
use pgmaint::notify::{MailContext, MailEvent, Notifier};
use pgmaint::store::{MaintenanceRecord, NewDatabase, Store};
use serde_json::Value;

use crate::harness::TestEnv;

const PYTHON: &str = "/usr/bin/python3";

use crate::harness::free_port;

/// aiosmtpd on 127.0.0.1:`port`, storing what it receives in a Maildir;
/// killed when dropped (and by the test's env, through its pidfile).
struct SmtpServer {
    child: Child,
    maildir: PathBuf,
}

impl SmtpServer {
    fn start(env: &TestEnv, port: u16) -> SmtpServer {
        let maildir = env.dir.join(format!("smtp-{port}"));
        let log_path = env.dir.join(format!("smtp-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("smtp log");
        let mut child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn aiosmtpd (Debian's python3-aiosmtpd)");
        let pidfile = env.dir.join(format!("smtp-{port}.pid"));
        std::fs::write(&pidfile, child.id().to_string()).expect("pidfile");
        env.track_pidfile(pidfile);
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("aiosmtpd on port {port} exited ({status}): {}", std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut banner = [0u8; 256];
                let n = stream.read(&mut banner).unwrap_or(0);
                let banner = String::from_utf8_lossy(&banner[..n]).to_string();
                // Ours, not some other server that holds the port: still running, and aiosmtpd's banner.
                if banner.starts_with("220") && banner.contains("Python SMTP") && child.try_wait().unwrap().is_none() {
                    break;
                }
                panic!("port {port} answers {banner:?}, not our aiosmtpd");
            }
            assert!(Instant::now() < deadline, "aiosmtpd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpServer { child, maildir }
    }

    /// Every message received, parsed by Python's `email` package: to, rcpt
    /// (the envelope recipient), subject, message_id, content_type, and parts
    /// (content_type, method, filename, decoded text).
    fn messages(&self) -> Vec<Value> {
        parse_messages(&self.maildir, "maildir")
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses a Maildir (`kind` = "maildir") or a directory of `.eml` files ("eml").
fn parse_messages(dir: &Path, kind: &str) -> Vec<Value> {
    const SCRIPT: &str = r#"
import email, email.policy, json, mailbox, os, sys
path, kind = sys.argv[1], sys.argv[2]
parse = lambda f: email.message_from_binary_file(f, policy=email.policy.default)
if kind == "maildir":
    messages = list(mailbox.Maildir(path, factory=parse, create=False)) if os.path.isdir(path) else []
else:
    messages = []
    for name in sorted(os.listdir(path)):
        with open(os.path.join(path, name), "rb") as f:
            messages.append(parse(f))
out = []
for msg in messages:
    parts = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        parts.append({
            "content_type": part.get_content_type(),
            "method": part.get_param("method"),
            "filename": part.get_filename(),
            "text": part.get_content(),
        })
    out.append({
        "to": str(msg["To"]), "rcpt": msg["X-RcptTo"], "subject": str(msg["Subject"]),
        "message_id": str(msg["Message-ID"]), "content_type": msg.get_content_type(), "parts": parts,
    })
print(json.dumps(out))
"#;
    let output = Command::new(PYTHON).args(["-c", SCRIPT]).arg(dir).arg(kind).output().expect("run python3");
    assert!(output.status.success(), "parsing mail: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("json")
}

fn recipients(messages: &[Value]) -> Vec<String> {
    let mut to: Vec<String> = messages.iter().map(|m| m["to"].as_str().unwrap().to_string()).collect();
    to.sort();
    to
}

pub(crate) struct Fixture {
    pub(crate) store: Store,
    pub(crate) maintenance: MaintenanceRecord,
    owners: Vec<String>,
}

/// A state store with one database owned by `owners` and a maintenance scheduled for it.
pub(crate) async fn fixture(env: &TestEnv, owners: &[&str]) -> Fixture {
    let server = env.primary("state").await;
    let store = Store::connect(&server.url("postgres")).await.expect("state store");
    let owners: Vec<String> = owners.iter().map(|o| o.to_string()).collect();
    let db = store
        .insert_database(&NewDatabase { name: "orders", plan: "standard-2", following_id: None, dbname: None, owners: &owners, labels: &Default::default(), window_spec: "Tuesday 14:30", window_length_secs: 14400 })
        .await
        .unwrap();
    let required_by = Utc::now() + chrono::Duration::days(10);
    let m = store.insert_maintenance(db.id, "os-patch", "switchover", required_by, None).await.unwrap();
    let scheduled_for = Utc::now() + chrono::Duration::days(6);
    store.schedule_maintenance(m.id, scheduled_for, None, None).await.unwrap();
    let maintenance = store.maintenance(m.id).await.unwrap();
    Fixture { store, maintenance, owners }
}

fn status_line(m: &MaintenanceRecord) -> String {
    format!(
        "Maintenance scheduled for {}, required by {}, replacement ready, window is Tuesdays 14:30 to 18:30 UTC",
        m.scheduled_for.unwrap().format("%Y-%m-%d %H:%M:%S +0000"),
        m.required_by.format("%Y-%m-%d %H:%M:%S +0000")
    )
}

pub(crate) fn context(m: &MaintenanceRecord) -> MailContext {
    MailContext {
        maintenance_id: m.id,
        database: "orders".into(),
        plan: "standard-2".into(),
        strategy: m.strategy.clone(),
        reason: m.reason.clone(),
        status_line: status_line(m),
        scheduled_for: m.scheduled_for,
        window_end: m.scheduled_for.map(|s| s + chrono::Duration::hours(4)),
        required_by: m.required_by,
        duration: None,
        write_pause_ms: None,
        error: None,
        forced_reason: None,
        rollout: None,
    }
}

fn smtp_config(env: &TestEnv, port: u16) -> Config {
    let mut config = Config::with_data_dir(env.dir.join("data"));
    config.smtp = Some(SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: SmtpTls::None,
        credentials: None,
        from: "pgmaint <pgmaint@example.com>".parse().unwrap(),
    });
    config
}

#[tokio::test]
async fn smtp_delivers_each_mail_once_with_an_invite() {
    let env = TestEnv::new("notify-smtp");
    let f = fixture(&env, &["alice@example.com", "bob@example.com"]).await;
    let port = free_port();
    let smtp = SmtpServer::start(&env, port);
    let config = smtp_config(&env, port);
    let notifier = Notifier::from_config(&config, f.store.clone()).unwrap();
    assert_eq!(notifier.describe(), format!("smtp 127.0.0.1:{port} (none)"));
    let ctx = context(&f.maintenance);

    assert_eq!(notifier.queue(&MailEvent::Scheduled, &ctx, &f.owners).await.unwrap(), 2);
    assert_eq!(notifier.queue(&MailEvent::Scheduled, &ctx, &f.owners).await.unwrap(), 0, "queued once");
    assert_eq!(f.store.outbox_depth().await.unwrap(), 2);
    let report = notifier.deliver_due().await.unwrap();
    assert_eq!((report.sent, report.failed, report.given_up), (2, 0, 0));
    assert_eq!(f.store.outbox_depth().await.unwrap(), 0);

    let messages = smtp.messages();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert_eq!(recipients(&messages), f.owners);
    let start = f.maintenance.scheduled_for.unwrap().format("%Y%m%dT%H%M%SZ").to_string();
    for message in &messages {
        assert_eq!(message["content_type"], "multipart/mixed");
        assert!(message["subject"].as_str().unwrap().starts_with("[pgmaint] Maintenance of orders scheduled for "));
        assert_eq!(message["rcpt"].as_str().unwrap().trim_matches(|c| "[]' ".contains(c)), message["to"].as_str().unwrap());
        let parts = message["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 2, "{parts:#?}");
        assert_eq!(parts[0]["content_type"], "text/plain");
        assert!(parts[0]["text"].as_str().unwrap().starts_with(&ctx.status_line), "{}", parts[0]["text"]);
        assert_eq!(parts[1]["content_type"], "text/calendar");
        assert_eq!(parts[1]["method"], "REQUEST");
        assert_eq!(parts[1]["filename"], "invite.ics");
        // Python's parser hands text parts over with LF line ends; unfold the continuation lines.
        let ics = parts[1]["text"].as_str().unwrap().replace("\r\n", "\n").replace("\n ", "");
        assert!(ics.starts_with("BEGIN:VCALENDAR\nVERSION:2.0\n") && ics.ends_with("END:VCALENDAR\n"), "{ics}");
        assert!(ics.contains(&format!("DTSTART:{start}")), "{ics}");
        assert!(ics.contains(&format!("mailto:{}", message["to"].as_str().unwrap())), "{ics}");
    }
    let ids: std::collections::HashSet<_> = messages.iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2);

    // Nothing more is due: a second round sends nothing.
    assert_eq!(notifier.deliver_due().await.unwrap().sent, 0);
    assert_eq!(smtp.messages().len(), 2);
    let sent = f.store.sent_mail(f.maintenance.id).await.unwrap();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|m| m.event == "scheduled" && m.attempts == 0 && m.sent_at.is_some()));

    // Completion: plain text, no invite, duration and write pause in the text.
    let done = MailContext { duration: Some(Duration::from_secs(42)), write_pause_ms: Some(840.0), ..ctx.clone() };
    assert_eq!(notifier.queue(&MailEvent::Completed, &done, &f.owners).await.unwrap(), 2);
    assert_eq!(notifier.deliver_due().await.unwrap().sent, 2);
    let messages = smtp.messages();
    assert_eq!(messages.len(), 4);
    let completed: Vec<_> = messages.iter().filter(|m| m["subject"].as_str().unwrap().contains("completed")).collect();
    assert_eq!(completed.len(), 2);
    for message in completed {
        assert_eq!(message["content_type"], "text/plain");
        let text = message["parts"][0]["text"].as_str().unwrap();
        assert!(text.starts_with(&ctx.status_line) && text.contains("completed in 42 seconds; writes were paused for 840 ms"), "{text}");
    }
}

#[tokio::test]
async fn smtp_outage_is_retried_with_backoff_without_loss_or_duplicates() {
    let env = TestEnv::new("notify-outage");
    let f = fixture(&env, &["alice@example.com", "bob@example.com"]).await;
    let port = free_port(); // nothing listens there yet: the relay is down
    let config = smtp_config(&env, port);
    let notifier = Notifier::from_config(&config, f.store.clone()).unwrap();
    let ctx = context(&f.maintenance);
    assert_eq!(notifier.queue(&MailEvent::Scheduled, &ctx, &f.owners).await.unwrap(), 2);

    let before = Utc::now();
    let report = notifier.deliver_due().await.unwrap();
    assert_eq!((report.sent, report.failed), (0, 2));
    let queued = f.store.outbox_mail(f.maintenance.id).await.unwrap();
    assert_eq!(queued.len(), 2);
    for mail in &queued {
        assert_eq!(mail.attempts, 1);
        assert!(mail.sent_at.is_none());
        let error = mail.last_error.as_deref().unwrap();
        assert!(error.to_lowercase().contains("refused"), "{error}");
        // 5 s, less at most a fifth of jitter.
        assert!(mail.next_attempt_at >= before + chrono::Duration::seconds(4), "{} vs {before}", mail.next_attempt_at);
        assert!(mail.next_attempt_at <= Utc::now() + chrono::Duration::seconds(5));
    }
    assert_eq!(f.store.outbox_depth().await.unwrap(), 2);

    // The relay comes back; the retry is not due yet, and the backoff is honoured.
    let smtp = SmtpServer::start(&env, port);
    assert_eq!(notifier.deliver_due().await.unwrap(), Default::default());
    assert!(smtp.messages().is_empty());

    // Make the retry due now; it goes out, once per owner.
    assert_eq!(f.store.retry_outbox_now().await.unwrap(), 2);
    let report = notifier.deliver_due().await.unwrap();
    assert_eq!((report.sent, report.failed), (2, 0));
    let messages = smtp.messages();
    assert_eq!(recipients(&messages), f.owners);
    let sent = f.store.sent_mail(f.maintenance.id).await.unwrap();
    assert!(sent.iter().all(|m| m.attempts == 1 && m.last_error.is_some()), "the failed attempt stays on record");

    // A restarted daemon (a new Notifier on the same store) re-decides what to
    // announce and delivers: nothing more goes out.
    let restarted = Notifier::from_config(&config, f.store.clone()).unwrap();
    assert_eq!(restarted.queue(&MailEvent::Scheduled, &ctx, &f.owners).await.unwrap(), 0);
    assert_eq!(restarted.deliver_due().await.unwrap(), Default::default());
    assert_eq!(smtp.messages().len(), 2);
    assert_eq!(f.store.outbox_depth().await.unwrap(), 0);
}

#[tokio::test]
async fn two_daemons_never_send_the_same_mail() {
    let env = TestEnv::new("notify-two");
    let owners: Vec<String> = (0..25).map(|i| format!("owner{i:02}@example.com")).collect();
    let owner_refs: Vec<&str> = owners.iter().map(String::as_str).collect();
    let f = fixture(&env, &owner_refs).await;
    let port = free_port();
    let smtp = SmtpServer::start(&env, port);
    let config = smtp_config(&env, port);
    let a = Notifier::from_config(&config, f.store.clone()).unwrap();
    let b = Notifier::from_config(&config, f.store.clone()).unwrap();
    let ctx = context(&f.maintenance);
    // Both daemons decide to announce the same reminder.
    let reminder = MailEvent::Reminder(Duration::from_secs(7 * 24 * 3600));
    let (qa, qb) = tokio::join!(a.queue(&reminder, &ctx, &f.owners), b.queue(&reminder, &ctx, &f.owners));
    assert_eq!(qa.unwrap() + qb.unwrap(), 25);
    let (ra, rb) = tokio::join!(a.deliver_due(), b.deliver_due());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.sent + rb.sent, 25, "{ra:?} {rb:?}");
    assert_eq!((ra.failed, rb.failed), (0, 0));
    let messages = smtp.messages();
    assert_eq!(recipients(&messages), f.owners, "each owner exactly once");
}

#[tokio::test]
async fn unusable_addresses_do_not_hold_up_the_others() {
    let env = TestEnv::new("notify-bad-address");
    let f = fixture(&env, &["not an address", "carol@example.com"]).await;
    let port = free_port();
    let smtp = SmtpServer::start(&env, port);
    let config = smtp_config(&env, port);
    let ctx = context(&f.maintenance);
    let notifier = Notifier::from_config(&config, f.store.clone()).unwrap();
    assert_eq!(notifier.queue(&MailEvent::Scheduled, &ctx, &f.owners).await.unwrap(), 2);
    let report = notifier.deliver_due().await.unwrap();
    assert_eq!((report.sent, report.failed, report.given_up), (1, 1, 0), "retried until it is old enough to give up");
    assert_eq!(recipients(&smtp.messages()), ["carol@example.com"]);

    // Once it has failed long enough, it is given up and stops counting as waiting.
    f.store.retry_outbox_now().await.unwrap();
    let impatient = Notifier::from_config(&config, f.store.clone()).unwrap().with_give_up_after(Duration::ZERO);
    let report = impatient.deliver_due().await.unwrap();
    assert_eq!((report.sent, report.failed, report.given_up), (0, 0, 1));
    assert_eq!(f.store.outbox_depth().await.unwrap(), 0);
    let mail = f.store.outbox_mail(f.maintenance.id).await.unwrap();
    let bad = mail.iter().find(|m| m.recipient == "not an address").unwrap();
    assert!(bad.given_up_at.is_some() && bad.attempts == 2 && bad.last_error.as_deref().unwrap().contains("recipient"));
    f.store.retry_outbox_now().await.unwrap();
    assert_eq!(impatient.deliver_due().await.unwrap(), Default::default(), "given up stays given up");
}

#[tokio::test]
async fn without_smtp_mail_is_written_as_eml_files() {
    let env = TestEnv::new("notify-files");
    let f = fixture(&env, &["alice@example.com", "bob@example.com"]).await;
    let config = Config::with_data_dir(env.dir.join("data"));
    assert!(config.smtp.is_none());
    let notifier = Notifier::from_config(&config, f.store.clone()).unwrap();
    let mail_dir = config.notify.mail_dir.clone();
    assert!(mail_dir.is_dir(), "created by from_config");
    assert_eq!(notifier.describe(), format!("files in {}", mail_dir.display()));
    let ctx = context(&f.maintenance);
    assert_eq!(notifier.queue(&MailEvent::Scheduled, &ctx, &f.owners).await.unwrap(), 2);
    assert_eq!(notifier.deliver_due().await.unwrap().sent, 2);
    assert_eq!(notifier.deliver_due().await.unwrap().sent, 0);

    let files: Vec<_> = std::fs::read_dir(&mail_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|p| p.extension().and_then(|e| e.to_str()) == Some("eml")));
    let messages = parse_messages(&mail_dir, "eml");
    assert_eq!(recipients(&messages), f.owners);
    for message in &messages {
        assert!(message["parts"][0]["text"].as_str().unwrap().starts_with(&ctx.status_line));
        assert_eq!(message["parts"][1]["filename"], "invite.ics");
        assert!(message["parts"][1]["text"].as_str().unwrap().contains("BEGIN:VEVENT"));
        assert!(message["message_id"].as_str().unwrap().ends_with("@localhost>"));
    }
}

#[tokio::test]
async fn outbox_claims_are_leased_and_sent_stays_sent() {
    let env = TestEnv::new("notify-outbox");
    let f = fixture(&env, &["alice@example.com", "bob@example.com"]).await;
    let ctx = context(&f.maintenance);
    let mails: Vec<_> = f.owners.iter().map(|o| pgmaint::notify::render(&MailEvent::Scheduled, &ctx, o)).collect();
    for mail in &mails {
        assert!(f.store.enqueue(mail).await.unwrap());
        assert!(!f.store.enqueue(mail).await.unwrap(), "the same (maintenance, event, recipient) twice");
    }
    // A daemon claims both and dies: nobody else gets them until its lease ends.
    let lease = Duration::from_millis(500);
    let claimed = f.store.due_mail(10, lease).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(f.store.due_mail(10, lease).await.unwrap().is_empty(), "held by the first claim");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let reclaimed = f.store.due_mail(1, lease).await.unwrap();
    assert_eq!(reclaimed.len(), 1, "the limit holds");
    assert_eq!(reclaimed[0].id, claimed[0].id, "oldest first");

    // A late failure report cannot un-send a mail.
    f.store.mark_sent(reclaimed[0].id).await.unwrap();
    f.store.mark_failed(reclaimed[0].id, "late report", Utc::now()).await.unwrap();
    let sent = f.store.sent_mail(f.maintenance.id).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].attempts, sent[0].last_error.as_deref()), (0, None));
    assert_eq!(f.store.outbox_depth().await.unwrap(), 1);
}
