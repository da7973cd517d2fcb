//! Owner email and webhooks: what to tell the owners of a database about its
//! maintenance (and chat channels about maintenances and rollouts), and
//! getting it to them exactly once.
//!
//! Owners hear when a maintenance is scheduled and whenever its time changes,
//! at each configured lead time before it (7 days and 24 hours by default), when
//! it starts, when it completes (with its duration and the write pause
//! measured), when it fails or is postponed, and when it has to run outside the
//! window. Every mail starts with the one-line maintenance status (as `info` shows it) and,
//! when the event carries a time, has an `.ics` invite (UTC) so the slot lands
//! in the owners' calendars and moves when the maintenance moves.
//!
//! The path of a mail:
//! 1. [`Notifier::queue`] renders it ([`render`], pure but for the clock) and
//!    stores it in the outbox of the state store, keyed by (maintenance, event
//!    key, recipient): queuing the same thing again (a restarted daemon
//!    re-deciding what to announce) is a no-op.
//! 2. [`Notifier::deliver_due`] claims due mail with a lease, sends it over
//!    SMTP (or writes `.eml` files when there is no `[smtp]`), and marks it
//!    sent, or failed with an exponential backoff (5 s doubling to 10 min, with
//!    jitter) while the relay is down.
//!
//! Webhooks ([`webhook`]) take the same path: each event is also rendered as
//! a JSON body for every `[notify] webhooks` URL, queued under (maintenance or
//! rollout, event key, URL), and POSTed by the same delivery loop, with the
//! same leases and backoff; a non-2xx answer is a failed attempt.
//!
//! Exactly once, precisely: a mail is never queued twice, never held by two
//! daemons at once, and never sent again once marked sent. The one window left
//! is SMTP's own: a daemon that dies after the relay accepted a mail and before
//! it recorded that sends it again after a restart. Each mail keeps one
//! Message-ID across attempts, so receiving systems that de-duplicate by it
//! show one copy. A webhook likewise: a receiver that answered 2xx just as the
//! daemon died, before it recorded that, gets the POST again; `event`,
//! `maintenance_id`, `rollout` and `at` let it recognise the repeat.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Config, SmtpTls};
use crate::store::{Channel, Store, StoreError};

pub mod ics;
pub mod webhook;

pub use crate::store::{Outgoing, Queued};
pub use webhook::{RolloutContext, RolloutEvent, WebhookUrl};

/// What happened to a maintenance that the owners are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailEvent {
    /// First planned.
    Scheduled,
    /// Moved to a new time (the time it moved to).
    Rescheduled(DateTime<Utc>),
    /// This long before the scheduled time (one of `[notify] lead_times`).
    Reminder(Duration),
    Started,
    /// Done; the context carries the duration and the write pause.
    Completed,
    /// Gave up; the context carries the error.
    Failed,
    /// Did not run at the planned time (a new time follows as `Rescheduled`).
    Postponed,
    /// Will run outside the window (no window fits before `required_by`).
    Forced,
    /// It failed (or its check did) and its rollout halted: told to the
    /// database's owners and the rollout's watchers.
    RolloutHalted,
}

impl MailEvent {
    /// The event's stable name: `scheduled`, `rescheduled-2026-12-01T14:30:00Z`,
    /// `reminder-168h`, `started`, `completed`, `failed`, `postponed`, `forced`.
    pub fn as_key(&self) -> String {
        match self {
            MailEvent::Scheduled => "scheduled".to_string(),
            MailEvent::Rescheduled(at) => format!("rescheduled-{}", key_time(*at)),
            MailEvent::Reminder(lead) => format!("reminder-{}", lead_key(*lead)),
            MailEvent::Started => "started".to_string(),
            MailEvent::Completed => "completed".to_string(),
            MailEvent::Failed => "failed".to_string(),
            MailEvent::Postponed => "postponed".to_string(),
            MailEvent::Forced => "forced".to_string(),
            MailEvent::RolloutHalted => "rollout-halted".to_string(),
        }
    }

    /// The key the outbox stores (with the maintenance and the recipient, the
    /// mail's identity). Events that can happen again for one maintenance once
    /// its time moves (a reminder, a start after a postponement, a new
    /// postponement, a forced run) carry the scheduled time they are about:
    /// `reminder-168h@2026-12-01T14:30:00Z`. The others are [`MailEvent::as_key`].
    pub fn outbox_key(&self, scheduled_for: Option<DateTime<Utc>>) -> String {
        let key = self.as_key();
        match (self, scheduled_for) {
            (MailEvent::Reminder(_) | MailEvent::Started | MailEvent::Postponed | MailEvent::Forced, Some(at)) => {
                format!("{key}@{}", key_time(at))
            }
            _ => key,
        }
    }

    /// The event's name in a webhook's payload: [`MailEvent::as_key`] without
    /// the time or lead it names.
    pub fn kind(&self) -> &'static str {
        match self {
            MailEvent::Scheduled => "scheduled",
            MailEvent::Rescheduled(_) => "rescheduled",
            MailEvent::Reminder(_) => "reminder",
            MailEvent::Started => "started",
            MailEvent::Completed => "completed",
            MailEvent::Failed => "failed",
            MailEvent::Postponed => "postponed",
            MailEvent::Forced => "forced",
            MailEvent::RolloutHalted => "rollout-halted",
        }
    }

    /// The outbox key of the event about the maintenance `ctx` describes (a
    /// mail's and a webhook's alike).
    fn outbox_key_for(&self, ctx: &MailContext) -> String {
        self.outbox_key(ctx.scheduled_for.or(self.time(ctx)))
    }

    /// The time the event is about: the new time of a reschedule, else the scheduled time.
    fn time(&self, ctx: &MailContext) -> Option<DateTime<Utc>> {
        match self {
            MailEvent::Rescheduled(at) => Some(*at),
            _ => ctx.scheduled_for,
        }
    }
}

fn key_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `168h`, `90m`, `45s`: the largest unit that divides the lead time exactly.
fn lead_key(lead: Duration) -> String {
    let secs = lead.as_secs();
    if secs > 0 && secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else if lead.subsec_nanos() == 0 {
        format!("{secs}s")
    } else {
        format!("{}ms", lead.as_millis())
    }
}

/// Everything a mail says about a maintenance; the caller fills it from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct MailContext {
    pub maintenance_id: i64,
    pub database: String,
    pub plan: String,
    pub strategy: String,
    pub reason: String,
    /// The status line as `pgmaint maintenance show` prints it, e.g. `Maintenance
    /// scheduled for 2026-12-01 14:30:00 +0000, required by 2026-12-04 21:00:00
    /// +0000, replacement ready, window is Tuesdays 14:30 to 18:30 UTC`.
    pub status_line: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    /// End of the window the maintenance runs in (the invite's end).
    pub window_end: Option<DateTime<Utc>>,
    pub required_by: DateTime<Utc>,
    /// How long the maintenance took (completed).
    pub duration: Option<Duration>,
    /// How long writes were paused, measured (completed).
    pub write_pause_ms: Option<f64>,
    /// Why it failed or was postponed.
    pub error: Option<String>,
    /// Why it runs outside the window.
    pub forced_reason: Option<String>,
    /// The rollout that required it, if any.
    pub rollout: Option<String>,
}

/// The organizer of the invites [`render`] makes (the file transport's From).
pub const DEFAULT_ORGANIZER: &str = "pgmaint@localhost";

/// Renders the mail for one recipient, stamped now; see [`render_at`].
pub fn render(event: &MailEvent, ctx: &MailContext, recipient: &str) -> Outgoing {
    render_at(event, ctx, recipient, DEFAULT_ORGANIZER, Utc::now())
}

/// Renders the mail for one recipient: a plain-text body that starts with the
/// status line, and for events with a time an invite (`METHOD:REQUEST`, or
/// `CANCEL` for a failed or postponed maintenance) from `organizer`. `now` is
/// the invite's DTSTAMP and orders its revisions (SEQUENCE).
pub fn render_at(event: &MailEvent, ctx: &MailContext, recipient: &str, organizer: &str, now: DateTime<Utc>) -> Outgoing {
    let db = &ctx.database;
    let at = event.time(ctx);
    let (subject, what) = summary(event, ctx, now);

    let mut body = format!("{}\n\n{what}\n\n", ctx.status_line);
    body.push_str(&format!("Database:    {db} ({})\n", ctx.plan));
    body.push_str(&format!("Reason:      {}\n", ctx.reason));
    body.push_str(&format!("Strategy:    {}\n", ctx.strategy));
    if let Some(at) = at {
        body.push_str(&format!("Scheduled:   {}\n", stamp(at)));
    }
    body.push_str(&format!("Required by: {}\n", stamp(ctx.required_by)));
    if let Some(reason) = &ctx.forced_reason {
        body.push_str(&format!("Outside the window because: {reason}\n"));
    }
    if let Some(e) = &ctx.error {
        body.push_str(&format!("Error:       {e}\n"));
    }
    if let Some(d) = ctx.duration {
        body.push_str(&format!("Duration:    {}\n", human_duration(d)));
    }
    if let Some(ms) = ctx.write_pause_ms {
        body.push_str(&format!("Write pause: {}\n", pause_text(ms)));
    }
    if let Some(expect) = expectation(&ctx.strategy) {
        body.push_str(&format!("\n{expect}\n"));
    }
    body.push_str("\n-- \npgmaint\n");

    let method = match event {
        MailEvent::Scheduled | MailEvent::Rescheduled(_) | MailEvent::Reminder(_) | MailEvent::Forced => Some(ics::Method::Request),
        MailEvent::Failed | MailEvent::Postponed => Some(ics::Method::Cancel),
        MailEvent::Started | MailEvent::Completed | MailEvent::RolloutHalted => None,
    };
    let calendar = match (method, at) {
        (Some(method), Some(start)) => Some(ics::Invite {
            method,
            uid: format!("maintenance-{}.{}@pgmaint", ctx.maintenance_id, ctx.database),
            sequence: ics::sequence_at(now),
            stamp: now,
            start,
            end: ctx.window_end.filter(|end| *end > start),
            summary: format!("Maintenance of {db} ({})", ctx.reason),
            description: format!("{}\n\n{what}", ctx.status_line),
            organizer: address_of(organizer),
            attendee: address_of(recipient),
        }
        .to_string()),
        _ => None,
    };

    Outgoing {
        channel: Channel::Mail,
        maintenance_id: Some(ctx.maintenance_id),
        rollout_id: None,
        event: event.outbox_key_for(ctx),
        recipient: recipient.trim().to_string(),
        subject: format!("[pgmaint] {subject}"),
        body,
        calendar,
    }
}

/// The subject and the one sentence saying what happened, shared by a mail
/// and a webhook's `text`. `now` is when a start happened and what a late
/// reminder counts the time left from.
fn summary(event: &MailEvent, ctx: &MailContext, now: DateTime<Utc>) -> (String, String) {
    let db = &ctx.database;
    let at = event.time(ctx);
    let when = at.map(stamp).unwrap_or_else(|| "a time not yet set".to_string());
    match event {
        MailEvent::Scheduled => (
            format!("Maintenance of {db} scheduled for {}", at.map(short_stamp).unwrap_or_default()),
            format!("A maintenance of database {db} is scheduled for {when}{}.", until(ctx.window_end)),
        ),
        MailEvent::Rescheduled(_) => (
            format!("Maintenance of {db} moved to {}", at.map(short_stamp).unwrap_or_default()),
            format!("The maintenance of database {db} has moved to {when}{}.", until(ctx.window_end)),
        ),
        MailEvent::Reminder(lead) => {
            let left = at.and_then(|at| (at - now).to_std().ok()).unwrap_or(*lead);
            (
                format!("Reminder: maintenance of {db} in {}", human_duration(left)),
                format!("Reminder: the maintenance of database {db} starts in {}, at {when}{}.", human_duration(left), until(ctx.window_end)),
            )
        }
        MailEvent::Started => (
            format!("Maintenance of {db} started"),
            format!("The maintenance of database {db} started at {}.", stamp(now)),
        ),
        MailEvent::Completed => {
            let mut what = format!("The maintenance of database {db} completed");
            if let Some(d) = ctx.duration {
                what.push_str(&format!(" in {}", human_duration(d)));
            }
            match ctx.write_pause_ms {
                Some(ms) => what.push_str(&format!("; writes were paused for {}.", pause_text(ms))),
                None => what.push('.'),
            }
            (format!("Maintenance of {db} completed"), what)
        }
        MailEvent::Failed => (
            format!("Maintenance of {db} failed"),
            format!(
                "The maintenance of database {db} failed{}. It will be planned again.",
                ctx.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
        ),
        MailEvent::Postponed => (
            format!("Maintenance of {db} postponed"),
            format!(
                "The maintenance of database {db} planned for {when} was postponed{}. The new time will follow in another mail.",
                ctx.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
        ),
        MailEvent::RolloutHalted => (
            format!("Rollout halted: maintenance of {db} failed"),
            format!(
                "The maintenance of database {db} failed{}, so the rollout it belongs to has halted: no further wave is \
                 required and its maintenances that have not started are held.",
                ctx.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ),
        ),
        MailEvent::Forced => (
            format!("Maintenance of {db} will run outside its window"),
            format!(
                "The maintenance of database {db} must run OUTSIDE its window, at {when}{}{}.",
                until(ctx.window_end),
                ctx.forced_reason.as_deref().map(|r| format!(", because {r}")).unwrap_or_default()
            ),
        ),
    }
}

/// The bare address of `Name <a@b>` or `a@b`.
fn address_of(text: &str) -> String {
    text.parse::<Mailbox>().map(|m| m.email.to_string()).unwrap_or_else(|_| text.trim().to_string())
}

/// `2026-12-01 14:30:00 +0000`, as the status line writes times.
fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S +0000").to_string()
}

fn short_stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn until(end: Option<DateTime<Utc>>) -> String {
    end.map(|end| format!(" (window until {})", stamp(end))).unwrap_or_default()
}

fn pause_text(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// `7 days`, `1 day 2 hours`, `90 minutes` is `1 hour 30 minutes`, `42.5 seconds`: at most two units.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        let s = d.as_secs_f64();
        return if s.fract() == 0.0 { plural(secs, "second") } else { format!("{s:.1} seconds") };
    }
    let units = [(86_400, "day"), (3600, "hour"), (60, "minute"), (1, "second")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, name) in units {
        if rest >= size {
            parts.push(plural(rest / size, name));
            rest %= size;
        } else if !parts.is_empty() {
            break; // `1 day 5 minutes` says less than `1 day`; stop at the first gap
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// What the owners should expect from the strategy.
fn expectation(strategy: &str) -> Option<&'static str> {
    Some(match strategy {
        "restart" => "The database restarts in place. Clients connected through the pgmaint endpoint wait through it (typically well under a second) without an error; clients connected to the server directly are disconnected and should reconnect and retry with exponential backoff.",
        "switchover" => "Clients are moved to a freshly prepared replacement. Through the pgmaint endpoint, writes pause briefly (typically well under a second) and resume on the replacement without an error; the connection URL does not change. Clients connected to the server directly are disconnected and should retry with exponential backoff.",
        "failover" => "Clients are moved to the high-availability standby. Through the pgmaint endpoint, writes pause briefly (typically well under a second) and resume without an error. Until a new standby has caught up, high availability is unavailable.",
        "copy" => "The database refuses writes (SQLSTATE 25006, read-only transaction; reads go on) while its data is copied into a new server, about 10 seconds per GB; then clients are moved to the new server and writes resume. Applications should retry refused writes with exponential backoff or show a read-only mode; the connection URL does not change.",
        _ => return None,
    })
}


/// The wait before retry number `attempts + 1`: `base` doubled per failed
/// attempt so far, at most `max` (no jitter).
pub fn backoff_delay(attempts: i32, base: Duration, max: Duration) -> Duration {
    let doublings = attempts.clamp(0, 30) as u32;
    base.checked_mul(1u32 << doublings).map_or(max, |d| d.min(max))
}

/// [`backoff_delay`] made up to a fifth shorter by `jitter` (0 to 1), so
/// daemons that failed together do not retry together.
fn retry_delay(attempts: i32, base: Duration, max: Duration, jitter: f64) -> Duration {
    backoff_delay(attempts, base, max).mul_f64(1.0 - jitter.clamp(0.0, 1.0) * 0.2)
}

/// Failures setting up or running delivery. A mail that cannot be sent is not
/// an error here: it is recorded in the outbox and retried.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("smtp relay {host}: {source}")]
    Relay { host: String, source: lettre::transport::smtp::Error },
    #[error("mail directory {}: {source}", dir.display())]
    MailDir { dir: PathBuf, source: std::io::Error },
    #[error("webhook client: {0}")]
    WebhookClient(reqwest::Error),
}

/// What one [`Notifier::deliver_due`] did (mail and webhooks together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: usize,
    /// Attempts that failed and will be retried.
    pub failed: usize,
    /// Messages refused for good for long enough, no longer tried.
    pub given_up: usize,
}

enum Transport {
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, describe: String },
    File { transport: AsyncFileTransport<Tokio1Executor>, dir: PathBuf },
}

/// Why one message was not sent.
struct SendFailure {
    text: String,
    /// Refused for good: the relay's 5xx, a mail that cannot be built, a
    /// webhook's 4xx.
    permanent: bool,
    /// The relay or the URL could not be reached at all: the rest of the
    /// batch for it would fail alike.
    outage: bool,
}

/// Queues and delivers owner mail and webhooks through the outbox.
pub struct Notifier {
    store: Store,
    transport: Transport,
    from: Mailbox,
    /// `[notify] webhooks`: every event is also POSTed to each.
    webhooks: Vec<WebhookUrl>,
    http: reqwest::Client,
    backoff_base: Duration,
    backoff_max: Duration,
    /// How long a claimed mail is ours; a batch never takes longer.
    lease: Duration,
    batch: i64,
    /// How long one SMTP conversation or webhook POST may take.
    send_timeout: Duration,
    /// A mail the relay refuses for good is given up once it is this old.
    give_up_after: Duration,
}

impl Notifier {
    /// SMTP per `[smtp]` (tls none: plain; starttls: required STARTTLS; tls:
    /// SMTPS), or without it `.eml` files in `[notify] mail_dir` (created).
    pub fn from_config(config: &Config, store: Store) -> Result<Notifier, NotifyError> {
        let send_timeout = Duration::from_secs(20);
        let transport = match &config.smtp {
            Some(smtp) => {
                let relay_error = |source| NotifyError::Relay { host: smtp.host.clone(), source };
                let builder = match smtp.tls {
                    SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str()),
                    SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(relay_error)?,
                    SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(relay_error)?,
                };
                let mut builder = builder.port(smtp.port).timeout(Some(send_timeout));
                if let Some(c) = &smtp.credentials {
                    builder = builder.credentials(Credentials::new(c.username.clone(), c.password.clone()));
                }
                Transport::Smtp { transport: builder.build(), describe: format!("smtp {}:{} ({})", smtp.host, smtp.port, smtp.tls) }
            }
            None => {
                let dir = config.notify.mail_dir.clone();
                std::fs::create_dir_all(&dir).map_err(|source| NotifyError::MailDir { dir: dir.clone(), source })?;
                Transport::File { transport: AsyncFileTransport::new(&dir), dir }
            }
        };
        Ok(Notifier {
            store,
            transport,
            from: config.mail_from(),
            webhooks: config.notify.webhooks.clone(),
            http: webhook::client(send_timeout).map_err(NotifyError::WebhookClient)?,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(600),
            lease: Duration::from_secs(300),
            batch: 10,
            send_timeout,
            give_up_after: Duration::from_secs(24 * 3600),
        })
    }

    /// Retries wait `base` doubled per failed attempt, at most `max` (default 5 s to 10 min).
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Notifier {
        self.backoff_base = base;
        self.backoff_max = max.max(base);
        self
    }

    /// A message refused for good (the relay's 5xx, an unusable address, a
    /// webhook's 4xx) is retried like any other until it is this old, then
    /// given up (default 24 h).
    pub fn with_give_up_after(mut self, age: Duration) -> Notifier {
        self.give_up_after = age;
        self
    }

    /// Where mail goes, for logs: `smtp mx:25 (none)` or `files in /var/lib/pgmaint/mail`.
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Smtp { describe, .. } => describe.clone(),
            Transport::File { dir, .. } => format!("files in {}", dir.display()),
        }
    }

    /// The webhooks' redacted URLs, for logs.
    pub fn describe_webhooks(&self) -> Vec<String> {
        self.webhooks.iter().map(WebhookUrl::redacted).collect()
    }

    /// Renders the event for each owner, and for each webhook, and queues it;
    /// returns how many messages were new (an owner or URL already told about
    /// this event is not told again). A rollout's halt goes to webhooks once
    /// per halt, through [`Notifier::queue_rollout`], not once per failed
    /// maintenance as its mail does.
    pub async fn queue(&self, event: &MailEvent, ctx: &MailContext, owners: &[String]) -> Result<usize, NotifyError> {
        let now = Utc::now();
        let organizer = self.from.email.to_string();
        let mut queued = 0;
        for owner in owners.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            let mail = render_at(event, ctx, owner, &organizer, now);
            if self.store.enqueue(&mail).await? {
                queued += 1;
            }
        }
        if *event != MailEvent::RolloutHalted && !self.webhooks.is_empty() {
            let payload = webhook::maintenance_payload(event, ctx, now);
            queued += self.queue_webhooks(&payload, &event.outbox_key_for(ctx), Some(ctx.maintenance_id), None).await?;
        }
        Ok(queued)
    }

    /// Queues a rollout's event for each webhook; returns how many were new.
    pub async fn queue_rollout(&self, event: RolloutEvent, ctx: &RolloutContext) -> Result<usize, NotifyError> {
        let now = Utc::now();
        let payload = webhook::rollout_payload(event, ctx, now);
        self.queue_webhooks(&payload, &event.outbox_key(ctx, now), None, Some(ctx.rollout_id)).await
    }

    async fn queue_webhooks(&self, payload: &webhook::Payload, key: &str, maintenance_id: Option<i64>, rollout_id: Option<i64>) -> Result<usize, NotifyError> {
        let mut queued = 0;
        for url in &self.webhooks {
            if self.store.enqueue(&webhook::outgoing(payload, key.to_string(), maintenance_id, rollout_id, url)).await? {
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Sends the mail and POSTs the webhooks that are due. A message that fails
    /// is retried after a backoff; when the relay (or a webhook's URL) cannot
    /// be reached, the rest of the batch for it is deferred with it rather
    /// than each waiting for its own connect timeout.
    pub async fn deliver_due(&self) -> Result<DeliveryReport, NotifyError> {
        let mut report = DeliveryReport::default();
        // Room for one more conversation before the lease on a batch runs out.
        let margin = self.send_timeout + Duration::from_secs(5);
        loop {
            let batch = self.store.due_mail(self.batch, self.lease).await?;
            let claimed = Instant::now();
            let claimed_count = batch.len();
            // Unreachable destinations: the relay ("" for every mail), or a URL.
            let mut outages: HashMap<String, String> = HashMap::new();
            for mail in batch {
                let destination = match mail.channel {
                    Channel::Mail => String::new(),
                    Channel::Webhook => mail.recipient.clone(),
                };
                if let Some(text) = outages.get(&destination) {
                    self.record_failure(&mail, text, false, &mut report).await?;
                    continue;
                }
                if claimed.elapsed() + margin > self.lease {
                    // Left claimed: due again when the lease ends, so nobody sends it twice.
                    tracing::warn!(id = mail.id, "outbox batch ran long; the rest is left for the next round");
                    break;
                }
                match self.send(&mail).await {
                    Ok(()) => {
                        self.store.mark_sent(mail.id).await?;
                        let what = match mail.channel {
                            Channel::Mail => "mail sent",
                            Channel::Webhook => "webhook delivered",
                        };
                        tracing::info!(id = mail.id, event = %mail.event, recipient = %webhook::shown(mail.channel, &mail.recipient), "{what}");
                        report.sent += 1;
                    }
                    Err(failure) => {
                        self.record_failure(&mail, &failure.text, failure.permanent, &mut report).await?;
                        if failure.outage {
                            outages.insert(destination, failure.text);
                        }
                    }
                }
            }
            // A short batch means nothing else is due; after a failure, what
            // failed may be due again at once with a tiny backoff: stop either way.
            if (claimed_count as i64) < self.batch || report.failed > 0 || report.given_up > 0 {
                return Ok(report);
            }
        }
    }

    async fn record_failure(&self, mail: &Queued, text: &str, permanent: bool, report: &mut DeliveryReport) -> Result<(), NotifyError> {
        let age = (Utc::now() - mail.created_at).to_std().unwrap_or_default();
        let recipient = webhook::shown(mail.channel, &mail.recipient);
        if permanent && age >= self.give_up_after {
            tracing::error!(id = mail.id, %recipient, error = text, "giving up on a message refused for good");
            self.store.give_up_mail(mail.id, text).await?;
            report.given_up += 1;
            return Ok(());
        }
        let delay = retry_delay(mail.attempts, self.backoff_base, self.backoff_max, rand::random::<f64>());
        let retry_at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        tracing::warn!(id = mail.id, %recipient, attempts = mail.attempts + 1, retry_in = ?delay, error = text, "message not sent");
        self.store.mark_failed(mail.id, text, retry_at).await?;
        report.failed += 1;
        Ok(())
    }

    fn message(&self, mail: &Queued) -> Result<Message, SendFailure> {
        let refuse = |text: String| SendFailure { text, permanent: true, outage: false };
        let to: Mailbox = mail.recipient.parse().map_err(|e| refuse(format!("recipient {:?}: {e}", mail.recipient)))?;
        let builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .date_now()
            // One Message-ID for every attempt: a copy sent twice is recognisably the same mail.
            .message_id(Some(format!(
                "<pgmaint.{}.{}.{}@{}>",
                mail.maintenance_id.unwrap_or(0),
                mail.id,
                mail.created_at.timestamp_micros(),
                self.from.email.domain()
            )))
            .user_agent(format!("pgmaint/{}", env!("CARGO_PKG_VERSION")));
        let text = SinglePart::plain(mail.body.clone());
        let built = match &mail.calendar {
            Some(calendar) => {
                let method = ics::method_of(calendar).unwrap_or("REQUEST");
                let content_type = ContentType::parse(&format!("text/calendar; charset=utf-8; method={method}"))
                    .map_err(|e| refuse(format!("calendar content type: {e}")))?;
                let invite = Attachment::new("invite.ics".to_string()).body(calendar.clone(), content_type);
                builder.multipart(MultiPart::mixed().singlepart(text).singlepart(invite))
            }
            None => builder.singlepart(text),
        };
        built.map_err(|e| refuse(format!("building the mail: {e}")))
    }

    /// One message, within `send_timeout` all told (lettre's own timeout is
    /// per command), so a batch always ends within its lease.
    async fn send(&self, item: &Queued) -> Result<(), SendFailure> {
        let sending = async {
            match item.channel {
                Channel::Mail => self.send_message(self.message(item)?).await,
                Channel::Webhook => webhook::post(&self.http, &item.recipient, &item.body).await,
            }
        };
        match tokio::time::timeout(self.send_timeout, sending).await {
            Ok(result) => result,
            Err(_) => Err(SendFailure {
                text: format!("no answer within {:?}", self.send_timeout),
                permanent: false,
                outage: true,
            }),
        }
    }

    async fn send_message(&self, message: Message) -> Result<(), SendFailure> {
        match &self.transport {
            Transport::Smtp { transport, .. } => match transport.send(message).await {
                Ok(_) => Ok(()),
                Err(e) => Err(SendFailure {
                    text: error_chain(&e),
                    permanent: e.is_permanent(),
                    outage: !e.is_response(),
                }),
            },
            Transport::File { transport, .. } => match transport.send(message).await {
                Ok(_) => Ok(()),
                Err(e) => Err(SendFailure { text: error_chain(&e), permanent: false, outage: true }),
            },
        }
    }
}

/// The error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
