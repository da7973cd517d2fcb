//! Webhooks: every event the owners are mailed about, and a rollout's own
//! events (a wave started, a bake, a halt, completion), POSTed as JSON to each
//! `[notify] webhooks` URL, for a chat channel or any other receiver.
//!
//! The body is what Slack's and Mattermost's incoming webhooks take (`text`),
//! with the facts beside it for programs:
//!
//! ```json
//! {"text": "[pgmaint] The maintenance of database orders completed in 42 seconds; writes were paused for 31 ms.",
//!  "event": "completed", "database": "orders", "maintenance_id": 7, "rollout": null, ...}
//! ```
//!
//! A body is rendered when the event happens and queued in the outbox beside
//! the mail (one row per event and URL), so delivery, retries and restarts are
//! the outbox's. A webhook URL carries its secret in its path, query or
//! userinfo: logs and recorded errors only ever show [`redact`]'s form.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Url;
use serde::Serialize;

use super::{stamp, summary, MailContext, MailEvent, SendFailure};
use crate::store::{Channel, Outgoing};

/// A webhook URL from the configuration: http or https, with a host. Its
/// `Debug` shows the redacted form.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    /// Parses `text`; the error never repeats the URL (it may hold a secret).
    pub fn parse(text: &str) -> Result<WebhookUrl, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("the scheme is \"{}\", not http or https", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".to_string());
        }
        Ok(WebhookUrl(url))
    }

    /// The whole URL, secrets included: for the outbox (the state store) only.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// What logs show: see [`redact`].
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.redacted())
    }
}

/// `scheme://host[:port]/first-segment`, with `/…` when more of the path
/// follows: no userinfo, no query, no fragment, and no later path segment
/// (`https://hooks.slack.com/services/…` hides the token in Slack's path).
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(url) => redact_url(&url),
        Err(_) => "(not a URL)".to_string(),
    }
}

fn redact_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let mut segments = url.path_segments().into_iter().flatten().filter(|s| !s.is_empty());
    let path = match (segments.next(), segments.next()) {
        (None, _) => String::new(),
        (Some(first), None) => format!("/{first}"),
        (Some(first), Some(_)) => format!("/{first}/…"),
    };
    format!("{}://{host}{port}{path}", url.scheme())
}

/// A rollout's own events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutEvent {
    /// A wave's maintenances were required (the first wave at creation).
    WaveStarted,
    /// A wave finished; the next one waits for the bake.
    Baking,
    /// Failures beyond `max_failures` (or a database busy with another
    /// maintenance) stopped it; what has not started is held.
    Halted,
    /// Its last wave finished.
    Completed,
}

impl RolloutEvent {
    /// The payload's `event`.
    pub fn name(self) -> &'static str {
        match self {
            RolloutEvent::WaveStarted => "rollout-wave-started",
            RolloutEvent::Baking => "rollout-baking",
            RolloutEvent::Halted => "rollout-halted",
            RolloutEvent::Completed => "rollout-completed",
        }
    }

    /// The outbox key (with the rollout and the URL, the webhook's identity):
    /// a wave starts once, a bake is of one wave until one time, a rollout
    /// completes once; a halt is one transition, named by when it happened
    /// (a resumed rollout may halt again).
    pub fn outbox_key(self, ctx: &RolloutContext, now: DateTime<Utc>) -> String {
        let name = self.name();
        match self {
            RolloutEvent::WaveStarted => format!("{name}-{}", ctx.wave),
            RolloutEvent::Baking => format!("{name}-{}@{}", ctx.wave, ctx.bake_until.map(key_stamp).unwrap_or_default()),
            RolloutEvent::Halted => format!("{name}@{}", now.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
            RolloutEvent::Completed => name.to_string(),
        }
    }
}

fn key_stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What a rollout event says; the engine fills it from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutContext {
    pub rollout_id: i64,
    pub name: String,
    pub reason: String,
    /// The wave the event is about, from 1.
    pub wave: usize,
    pub waves: usize,
    /// The wave's databases (started, baking), the failed ones (halted), or
    /// every database of the rollout (completed).
    pub databases: Vec<String>,
    /// The first failed database's maintenance (halted).
    pub maintenance_id: Option<i64>,
    /// When the next wave is required (baking).
    pub bake_until: Option<DateTime<Utc>>,
    /// Why it halted, and how many maintenances were held.
    pub halted_because: Option<String>,
    pub held: u64,
}

/// The JSON body of a webhook. Every key is always present (`null` when it
/// does not apply), so receivers see one shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payload {
    /// One line for a chat channel.
    pub text: String,
    /// `scheduled`, `rescheduled`, `reminder`, `started`, `completed`,
    /// `failed`, `postponed`, `forced`, `rollout-wave-started`,
    /// `rollout-baking`, `rollout-halted`, `rollout-completed`.
    pub event: &'static str,
    pub database: Option<String>,
    pub maintenance_id: Option<i64>,
    /// The rollout's name (a rollout's event, or a maintenance it required).
    pub rollout: Option<String>,
    pub reason: String,
    pub strategy: Option<String>,
    /// The maintenance's status line, as `pgmaint maintenance show` prints it.
    pub status: Option<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub required_by: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub write_pause_ms: Option<f64>,
    /// Why it failed, was postponed, or the rollout halted.
    pub error: Option<String>,
    /// Why it runs outside its window.
    pub forced_reason: Option<String>,
    pub wave: Option<usize>,
    pub waves: Option<usize>,
    pub databases: Option<Vec<String>>,
    pub bake_until: Option<DateTime<Utc>>,
    /// When the event happened.
    pub at: DateTime<Utc>,
}

/// The body for a maintenance's event.
pub fn maintenance_payload(event: &MailEvent, ctx: &MailContext, now: DateTime<Utc>) -> Payload {
    let (_, what) = summary(event, ctx, now);
    let rollout = ctx.rollout.as_deref().map(|r| format!(" (rollout {r})")).unwrap_or_default();
    Payload {
        text: format!("[pgmaint] {what}{rollout}"),
        event: event.kind(),
        database: Some(ctx.database.clone()),
        maintenance_id: Some(ctx.maintenance_id),
        rollout: ctx.rollout.clone(),
        reason: ctx.reason.clone(),
        strategy: Some(ctx.strategy.clone()),
        status: Some(ctx.status_line.clone()),
        scheduled_for: ctx.scheduled_for,
        required_by: Some(ctx.required_by),
        duration_seconds: ctx.duration.map(|d| d.as_secs_f64()),
        write_pause_ms: ctx.write_pause_ms,
        error: ctx.error.clone(),
        forced_reason: ctx.forced_reason.clone(),
        wave: None,
        waves: None,
        databases: None,
        bake_until: None,
        at: now,
    }
}

/// The body for a rollout's event.
pub fn rollout_payload(event: RolloutEvent, ctx: &RolloutContext, now: DateTime<Utc>) -> Payload {
    let RolloutContext { name, reason, wave, waves, .. } = ctx;
    let text = match event {
        RolloutEvent::WaveStarted => {
            format!("[pgmaint] Rollout {name} ({reason}): wave {wave} of {waves} started: {}.", name_list(&ctx.databases))
        }
        RolloutEvent::Baking => {
            let until = match ctx.bake_until {
                Some(until) => format!("baking until {}", stamp(until)),
                None => "baking".to_string(),
            };
            format!("[pgmaint] Rollout {name} ({reason}): wave {wave} of {waves} completed; {until}, then wave {}.", wave + 1)
        }
        RolloutEvent::Halted => format!(
            "[pgmaint] Rollout {name} ({reason}) HALTED at wave {wave} of {waves}: {}. {} maintenance(s) held until `pgmaint rollout resume {name}`.",
            ctx.halted_because.as_deref().unwrap_or("a database failed"),
            ctx.held
        ),
        RolloutEvent::Completed => format!(
            "[pgmaint] Rollout {name} ({reason}) completed: {} database(s) in {waves} wave(s).",
            ctx.databases.len()
        ),
    };
    let halted = event == RolloutEvent::Halted;
    Payload {
        text,
        event: event.name(),
        database: if halted { ctx.databases.first().cloned() } else { None },
        maintenance_id: ctx.maintenance_id,
        rollout: Some(name.clone()),
        reason: reason.clone(),
        strategy: None,
        status: None,
        scheduled_for: None,
        required_by: None,
        duration_seconds: None,
        write_pause_ms: None,
        error: ctx.halted_because.clone(),
        forced_reason: None,
        wave: Some(*wave),
        waves: Some(*waves),
        databases: Some(ctx.databases.clone()),
        bake_until: ctx.bake_until,
        at: now,
    }
}

/// `a, b, c`, or the first ten and how many more.
fn name_list(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// The outbox row POSTing `payload` to `url`.
pub(super) fn outgoing(payload: &Payload, key: String, maintenance_id: Option<i64>, rollout_id: Option<i64>, url: &WebhookUrl) -> Outgoing {
    Outgoing {
        channel: Channel::Webhook,
        maintenance_id,
        rollout_id,
        event: key,
        recipient: url.as_str().to_string(),
        subject: payload.text.clone(),
        body: serde_json::to_string(payload).expect("a payload serializes"),
        calendar: None,
    }
}

/// The HTTP client webhooks are POSTed with: `timeout` for the whole
/// exchange, no redirects followed (a 3xx is a failed attempt).
pub(super) fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(format!("pgmaint/{}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// POSTs one stored body. The failure's text never holds the URL.
pub(super) async fn post(client: &reqwest::Client, url: &str, body: &str) -> Result<(), SendFailure> {
    let sent = client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string()).send().await;
    match sent {
        Ok(answer) => classify(answer.status()),
        Err(error) => {
            let unreachable = error.is_connect() || error.is_timeout();
            let permanent = error.is_builder();
            Err(SendFailure { text: super::error_chain(&error.without_url()), permanent, outage: unreachable && !permanent })
        }
    }
}

/// A 2xx is delivered; 408, 429 and 5xx are worth retrying; any other answer
/// (a 3xx, a 4xx: a wrong or revoked URL) is refused for good, retried until
/// old enough to give up like a mail the relay refuses.
fn classify(status: reqwest::StatusCode) -> Result<(), SendFailure> {
    if status.is_success() {
        return Ok(());
    }
    let transient = status.is_server_error() || status == reqwest::StatusCode::REQUEST_TIMEOUT || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
    Err(SendFailure { text: format!("HTTP {status}"), permanent: !transient, outage: false })
}

/// What a log line may show of an outbox row's recipient.
pub(super) fn shown(channel: Channel, recipient: &str) -> String {
    match channel {
        Channel::Mail => recipient.to_string(),
        Channel::Webhook => redact(recipient),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::super::human_duration;
    use super::*;

    fn url(text: &str) -> WebhookUrl {
        WebhookUrl::parse(text).unwrap()
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        assert!(WebhookUrl::parse("https://hooks.example.com/services/T0/B0/xyz").is_ok());
        assert!(WebhookUrl::parse("http://127.0.0.1:20001/hook").is_ok());
        let ftp = WebhookUrl::parse("ftp://files.example.com/x?token=s3cret").unwrap_err();
        assert_eq!(ftp, "the scheme is \"ftp\", not http or https");
        assert!(WebhookUrl::parse("hooks.example.com/x").unwrap_err().starts_with("not a URL"));
        assert!(WebhookUrl::parse("mailto:a@b.c").unwrap_err().contains("not http or https"));
    }

    #[test]
    fn redaction_keeps_no_secret() {
        let cases = [
            ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/services/…"),
            ("http://user:s3cret@127.0.0.1:20001/hook?token=s3cret#frag", "http://127.0.0.1:20001/hook"),
            ("https://chat.example.com/", "https://chat.example.com"),
            ("https://chat.example.com:8443/hooks/s3cret", "https://chat.example.com:8443/hooks/…"),
        ];
        for (raw, shown) in cases {
            assert_eq!(redact(raw), shown);
            assert_eq!(url(raw).redacted(), shown);
            assert!(!format!("{:?}", url(raw)).contains("s3cret"));
            assert!(!format!("{:?}", url(raw)).contains("SECRET"));
        }
        assert_eq!(redact("not a url"), "(not a URL)");
        assert_eq!(shown(Channel::Webhook, "https://h.example/a/b?k=v"), "https://h.example/a/…");
        assert_eq!(shown(Channel::Mail, "dba@example.com"), "dba@example.com");
    }

    #[test]
    fn answers_are_delivered_retried_or_refused() {
        assert!(classify(reqwest::StatusCode::OK).is_ok());
        assert!(classify(reqwest::StatusCode::NO_CONTENT).is_ok());
        for (code, permanent) in [(500, false), (503, false), (429, false), (408, false), (404, true), (410, true), (301, true)] {
            let failure = classify(reqwest::StatusCode::from_u16(code).unwrap()).unwrap_err();
            assert_eq!(failure.permanent, permanent, "{code}");
            assert!(!failure.outage, "{code}");
            assert!(failure.text.starts_with(&format!("HTTP {code}")), "{}", failure.text);
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap()
    }

    fn maintenance() -> MailContext {
        MailContext {
            maintenance_id: 7,
            database: "orders".into(),
            plan: "standard-2".into(),
            strategy: "switchover".into(),
            reason: "os-patch".into(),
            status_line: "Maintenance running".into(),
            scheduled_for: Some(at(14, 30)),
            window_end: Some(at(18, 30)),
            required_by: at(21, 0),
            duration: None,
            write_pause_ms: None,
            error: None,
            forced_reason: None,
            rollout: None,
        }
    }

    #[test]
    fn maintenance_payloads_say_what_happened_with_the_facts() {
        let now = at(14, 31);
        let done = MailContext { duration: Some(Duration::from_secs(42)), write_pause_ms: Some(31.0), ..maintenance() };
        let payload = maintenance_payload(&MailEvent::Completed, &done, now);
        assert_eq!(payload.text, "[pgmaint] The maintenance of database orders completed in 42 seconds; writes were paused for 31 ms.");
        let json: serde_json::Value = serde_json::to_value(&payload).unwrap();
        assert_eq!(json["event"], "completed");
        assert_eq!(json["database"], "orders");
        assert_eq!(json["maintenance_id"], 7);
        assert_eq!(json["rollout"], serde_json::Value::Null, "present, null");
        assert_eq!(json["strategy"], "switchover");
        assert_eq!(json["duration_seconds"], 42.0);
        assert_eq!(json["write_pause_ms"], 31.0);
        assert_eq!(json["scheduled_for"], "2026-12-01T14:30:00Z");
        assert_eq!(json.as_object().unwrap().len(), 19, "{json:#}");

        let in_rollout = MailContext { rollout: Some("patch-dec".into()), error: Some("hook refused".into()), ..maintenance() };
        let failed = maintenance_payload(&MailEvent::Failed, &in_rollout, now);
        assert_eq!(failed.text, "[pgmaint] The maintenance of database orders failed: hook refused. It will be planned again. (rollout patch-dec)");
        assert_eq!((failed.event, failed.rollout.as_deref(), failed.error.as_deref()), ("failed", Some("patch-dec"), Some("hook refused")));
        let started = maintenance_payload(&MailEvent::Started, &maintenance(), now);
        assert_eq!(started.text, "[pgmaint] The maintenance of database orders started at 2026-12-01 14:31:00 +0000.");
        let reminder = maintenance_payload(&MailEvent::Reminder(Duration::from_secs(3600)), &maintenance(), at(13, 30));
        assert_eq!(reminder.event, "reminder");
        assert!(reminder.text.contains(&format!("starts in {}", human_duration(Duration::from_secs(3600)))), "{}", reminder.text);
        assert_eq!(maintenance_payload(&MailEvent::Rescheduled(at(15, 0)), &maintenance(), now).event, "rescheduled");
    }

    fn rollout() -> RolloutContext {
        RolloutContext {
            rollout_id: 3,
            name: "patch-dec".into(),
            reason: "os-patch".into(),
            wave: 1,
            waves: 3,
            databases: vec!["a1".into()],
            maintenance_id: None,
            bake_until: None,
            halted_because: None,
            held: 0,
        }
    }

    #[test]
    fn rollout_payloads_and_keys() {
        let now = at(15, 0);
        let started = RolloutContext { wave: 2, databases: (1..=12).map(|i| format!("db{i}")).collect(), ..rollout() };
        let payload = rollout_payload(RolloutEvent::WaveStarted, &started, now);
        assert_eq!(
            payload.text,
            "[pgmaint] Rollout patch-dec (os-patch): wave 2 of 3 started: db1, db2, db3, db4, db5, db6, db7, db8, db9, db10 and 2 more."
        );
        assert_eq!((payload.event, payload.wave, payload.waves, payload.database.as_deref()), ("rollout-wave-started", Some(2), Some(3), None));
        assert_eq!(RolloutEvent::WaveStarted.outbox_key(&started, now), "rollout-wave-started-2");

        let baking = RolloutContext { bake_until: Some(at(16, 0)), ..rollout() };
        let payload = rollout_payload(RolloutEvent::Baking, &baking, now);
        assert_eq!(payload.text, "[pgmaint] Rollout patch-dec (os-patch): wave 1 of 3 completed; baking until 2026-12-01 16:00:00 +0000, then wave 2.");
        assert_eq!(RolloutEvent::Baking.outbox_key(&baking, now), "rollout-baking-1@2026-12-01T16:00:00Z");

        let halted = RolloutContext {
            databases: vec!["a1".into()],
            maintenance_id: Some(11),
            halted_because: Some("a database failed: a1 (maintenance #11: drain refused)".into()),
            held: 2,
            ..rollout()
        };
        let payload = rollout_payload(RolloutEvent::Halted, &halted, now);
        assert_eq!(
            payload.text,
            "[pgmaint] Rollout patch-dec (os-patch) HALTED at wave 1 of 3: a database failed: a1 (maintenance #11: drain refused). \
             2 maintenance(s) held until `pgmaint rollout resume patch-dec`."
        );
        assert_eq!((payload.database.as_deref(), payload.maintenance_id, payload.rollout.as_deref()), (Some("a1"), Some(11), Some("patch-dec")));
        assert_eq!(RolloutEvent::Halted.outbox_key(&halted, now), "rollout-halted@2026-12-01T15:00:00.000000Z");

        let completed = RolloutContext { wave: 3, databases: vec!["a1".into(), "a2".into()], ..rollout() };
        let payload = rollout_payload(RolloutEvent::Completed, &completed, now);
        assert_eq!(payload.text, "[pgmaint] Rollout patch-dec (os-patch) completed: 2 database(s) in 3 wave(s).");
        assert_eq!(RolloutEvent::Completed.outbox_key(&completed, now), "rollout-completed");
        let json = serde_json::to_value(&payload).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 19, "one shape for every event");
    }

    #[test]
    fn rows_carry_the_whole_url_and_the_json_body() {
        let hook = url("http://127.0.0.1:20001/hook?token=s3cret");
        let payload = maintenance_payload(&MailEvent::Started, &maintenance(), at(14, 31));
        let row = outgoing(&payload, "started@x".into(), Some(7), None, &hook);
        assert_eq!((row.channel, row.recipient.as_str(), row.maintenance_id), (Channel::Webhook, "http://127.0.0.1:20001/hook?token=s3cret", Some(7)));
        let body: serde_json::Value = serde_json::from_str(&row.body).unwrap();
        assert_eq!(body["text"], payload.text);
        assert_eq!(row.subject, payload.text);
    }
}
