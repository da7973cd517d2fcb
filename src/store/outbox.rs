//! The notification outbox: owners' mail and webhooks. Each (maintenance,
//! event, recipient), or (rollout, event, URL) for a rollout's own events, is
//! queued once and delivered once, across daemon restarts and several daemons.
//!
//! A message is rendered when it is queued and stored whole, so what is sent
//! does not depend on the state at sending time. Delivery claims due rows with
//! a lease (`next_attempt_at` pushed past the lease in the same `UPDATE ...
//! RETURNING` that selects them `FOR UPDATE SKIP LOCKED`), so two daemons never
//! hold the same message, and a daemon that dies holding some leaves them due
//! again once the lease runs out. Mail and webhooks share every step; only the
//! sending differs ([`Channel`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Store, StoreResult};

/// How a message leaves: by mail to an address, or POSTed to a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Channel {
    Mail,
    Webhook,
}

/// A rendered message, ready to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub channel: Channel,
    /// The maintenance it is about (every mail, a maintenance's webhooks).
    pub maintenance_id: Option<i64>,
    /// The rollout it is about, for a rollout's own events (no maintenance).
    pub rollout_id: Option<i64>,
    /// The event's stable key (`scheduled`, `reminder-168h@...`); with the
    /// maintenance (or the rollout) and the recipient it names the message once and for all.
    pub event: String,
    /// An email address, or the webhook's URL.
    pub recipient: String,
    /// A mail's subject; a webhook's `text`.
    pub subject: String,
    /// A mail's plain text; a webhook's JSON body.
    pub body: String,
    /// An RFC 5545 calendar object (CRLF line endings), sent as `invite.ics`.
    pub calendar: Option<String>,
}

/// A row of the outbox.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Queued {
    pub id: i64,
    pub channel: Channel,
    pub maintenance_id: Option<i64>,
    pub rollout_id: Option<i64>,
    pub event: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub calendar: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Failed delivery attempts so far.
    pub attempts: i32,
    /// When the message is next due; while a sender holds it, when its lease ends.
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub given_up_at: Option<DateTime<Utc>>,
}

const OUTBOX_COLUMNS: &str = "id, channel, maintenance_id, rollout_id, event, recipient, subject, body, calendar, created_at, \
     attempts, next_attempt_at, last_error, sent_at, given_up_at";

impl Store {
    /// Queues `message`; false (and nothing changes) if this maintenance (or
    /// rollout), event and recipient were queued before.
    pub async fn enqueue(&self, message: &Outgoing) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO outbox (channel, maintenance_id, rollout_id, event, recipient, subject, body, calendar) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(message.channel)
        .bind(message.maintenance_id)
        .bind(message.rollout_id)
        .bind(&message.event)
        .bind(&message.recipient)
        .bind(&message.subject)
        .bind(&message.body)
        .bind(&message.calendar)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims up to `limit` unsent messages that are due, oldest first, for `lease`:
    /// until then no other caller gets them. The caller reports each one with
    /// [`Store::mark_sent`] or [`Store::mark_failed`]; one it never reports is
    /// due again when the lease ends.
    pub async fn due_mail(&self, limit: i64, lease: Duration) -> StoreResult<Vec<Queued>> {
        let mut rows: Vec<Queued> = sqlx::query_as(&format!(
            "UPDATE outbox SET next_attempt_at = clock_timestamp() + make_interval(secs => $2) \
             WHERE id IN (SELECT id FROM outbox \
                          WHERE sent_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= clock_timestamp() \
                          ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING {OUTBOX_COLUMNS}"
        ))
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(self.pool())
        .await?;
        rows.sort_by_key(|m| m.id);
        Ok(rows)
    }

    /// Records that the message was handed over (to the relay, or a 2xx from
    /// the URL); the first report wins.
    pub async fn mark_sent(&self, id: i64) -> StoreResult<()> {
        sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = $1 AND sent_at IS NULL")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records a failed attempt and when to try again. A mail already sent stays sent.
    pub async fn mark_failed(&self, id: i64, error: &str, retry_at: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3 \
             WHERE id = $1 AND sent_at IS NULL",
        )
        .bind(id)
        .bind(error)
        .bind(retry_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a last failed attempt after which the mail is no longer tried.
    pub async fn give_up_mail(&self, id: i64, error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, given_up_at = now() \
             WHERE id = $1 AND sent_at IS NULL",
        )
        .bind(id)
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Messages still waiting to be sent (neither sent nor given up): the outbox depth metric.
    pub async fn outbox_depth(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL AND given_up_at IS NULL")
            .fetch_one(self.pool())
            .await?)
    }

    /// Makes every waiting mail due now (after the relay was repaired, say):
    /// returns how many. Attempts and errors are kept.
    pub async fn retry_outbox_now(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE outbox SET next_attempt_at = now() \
             WHERE sent_at IS NULL AND given_up_at IS NULL AND next_attempt_at > now()",
        )
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// The maintenance's messages (mail and webhooks) that were sent, in the order they were sent.
    pub async fn sent_mail(&self, maintenance_id: i64) -> StoreResult<Vec<Queued>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE maintenance_id = $1 AND sent_at IS NOT NULL ORDER BY sent_at, id"
        ))
        .bind(maintenance_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every message queued about the maintenance, sent or not, in queue order.
    pub async fn outbox_mail(&self, maintenance_id: i64) -> StoreResult<Vec<Queued>> {
        Ok(sqlx::query_as(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE maintenance_id = $1 ORDER BY id"))
            .bind(maintenance_id)
            .fetch_all(self.pool())
            .await?)
    }
}
