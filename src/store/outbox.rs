//! The owners' mail outbox: each (maintenance, event, recipient) is queued once
//! and sent once, across daemon restarts and several daemons.
//!
//! Mail is rendered when it is queued and stored whole, so what is sent does not
//! depend on the state at sending time. Delivery claims due rows with a lease
//! (`next_attempt_at` pushed past the lease in the same `UPDATE ... RETURNING`
//! that selects them `FOR UPDATE SKIP LOCKED`), so two daemons never hold the
//! same mail, and a daemon that dies holding mail leaves it due again once the
//! lease runs out.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Store, StoreResult};

/// A rendered mail, ready to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub maintenance_id: i64,
    /// The event's stable key (`scheduled`, `reminder-168h-...`); with the
    /// maintenance and the recipient it names the mail once and for all.
    pub event: String,
    pub recipient: String,
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// An RFC 5545 calendar object (CRLF line endings), sent as `invite.ics`.
    pub calendar: Option<String>,
}

/// A row of the outbox.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct QueuedMail {
    pub id: i64,
    pub maintenance_id: Option<i64>,
    pub event: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub calendar: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Failed delivery attempts so far.
    pub attempts: i32,
    /// When the mail is next due; while a sender holds it, when its lease ends.
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub given_up_at: Option<DateTime<Utc>>,
}

const OUTBOX_COLUMNS: &str = "id, maintenance_id, event, recipient, subject, body, calendar, created_at, attempts, \
     next_attempt_at, last_error, sent_at, given_up_at";

impl Store {
    /// Queues `mail`; false (and nothing changes) if this maintenance, event and
    /// recipient were queued before.
    pub async fn enqueue(&self, mail: &OutgoingMail) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO outbox (maintenance_id, event, recipient, subject, body, calendar) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (maintenance_id, event, recipient) DO NOTHING",
        )
        .bind(mail.maintenance_id)
        .bind(&mail.event)
        .bind(&mail.recipient)
        .bind(&mail.subject)
        .bind(&mail.body)
        .bind(&mail.calendar)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims up to `limit` unsent mails that are due, oldest first, for `lease`:
    /// until then no other caller gets them. The caller reports each one with
    /// [`Store::mark_sent`] or [`Store::mark_failed`]; one it never reports is
    /// due again when the lease ends.
    pub async fn due_mail(&self, limit: i64, lease: Duration) -> StoreResult<Vec<QueuedMail>> {
        let mut rows: Vec<QueuedMail> = sqlx::query_as(&format!(
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

    /// Records that the mail was handed to the relay (the first report wins).
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

    /// Mail still waiting to be sent (neither sent nor given up): the outbox depth metric.
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

    /// The maintenance's mail that was sent, in the order it was sent.
    pub async fn sent_mail(&self, maintenance_id: i64) -> StoreResult<Vec<QueuedMail>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE maintenance_id = $1 AND sent_at IS NOT NULL ORDER BY sent_at, id"
        ))
        .bind(maintenance_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every mail queued for the maintenance, sent or not, in queue order.
    pub async fn outbox_mail(&self, maintenance_id: i64) -> StoreResult<Vec<QueuedMail>> {
        Ok(sqlx::query_as(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE maintenance_id = $1 ORDER BY id"))
            .bind(maintenance_id)
            .fetch_all(self.pool())
            .await?)
    }
}
