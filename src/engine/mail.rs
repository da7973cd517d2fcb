//! Telling a database's owners (and the webhooks): which event, with what
//! facts. Queuing goes through the outbox, so a failure here never stops a
//! maintenance or a rollout; it is logged and the outbox's exactly-once keys
//! make a retry harmless.

use std::time::Duration;

use crate::notify::{MailContext, MailEvent, RolloutContext, RolloutEvent};
use crate::store::MaintenanceRecord;

use super::{Engine, EngineResult};

impl Engine {
    /// Queues `event` of `maintenance` for every owner of its database and every webhook.
    pub(super) async fn tell_owners(&self, maintenance: &MaintenanceRecord, event: MailEvent) {
        match self.store.database(maintenance.database_id).await {
            Ok(database) => self.tell(maintenance, event, &database.owners, None).await,
            Err(error) => tracing::warn!(maintenance = maintenance.id, %error, "could not queue owner mail"),
        }
    }

    /// Queues `event` of `maintenance` for `recipients`, the mail starting
    /// with `status_line` if given (else the maintenance's own).
    pub(super) async fn tell(&self, maintenance: &MaintenanceRecord, event: MailEvent, recipients: &[String], status_line: Option<String>) {
        let Some(notifier) = &self.notifier else { return };
        let queued = async {
            let mut ctx = self.mail_context(maintenance.id).await?;
            if let Some(line) = status_line {
                ctx.status_line = line;
            }
            Ok::<_, super::EngineError>(notifier.queue(&event, &ctx, recipients).await)
        }
        .await;
        match queued {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(maintenance = maintenance.id, %error, "could not queue owner mail"),
            Err(error) => tracing::warn!(maintenance = maintenance.id, %error, "could not queue owner mail"),
        }
    }

    /// The facts a mail about maintenance `id` states, read fresh from the store.
    async fn mail_context(&self, id: i64) -> EngineResult<MailContext> {
        let m = self.store.maintenance(id).await?;
        let database = self.store.database(m.database_id).await?;
        let status_line = match self.maintenance_view(&database).await? {
            Some(view) if view.id == m.id => view.status_line,
            _ => format!("Maintenance {} ({})", m.state.as_str(), m.outcome.as_deref().unwrap_or("")),
        };
        let duration = match (m.started_at, m.finished_at) {
            (Some(s), Some(f)) => (f - s).to_std().ok(),
            _ => None,
        };
        Ok(MailContext {
            maintenance_id: m.id,
            database: database.name,
            plan: database.plan,
            strategy: m.strategy,
            reason: m.reason,
            status_line,
            scheduled_for: m.scheduled_for,
            window_end: m.window_end,
            required_by: m.required_by,
            duration,
            write_pause_ms: m.write_pause_ms,
            error: m.error.or(m.check_error),
            forced_reason: m.forced_reason,
            rollout: self.store.rollout_name_of(m.id).await?,
        })
    }

    /// Queues a rollout's event for every webhook.
    pub(super) async fn tell_webhooks(&self, event: RolloutEvent, ctx: &RolloutContext) {
        let Some(notifier) = &self.notifier else { return };
        if let Err(error) = notifier.queue_rollout(event, ctx).await {
            tracing::warn!(rollout = %ctx.name, event = event.name(), %error, "could not queue the rollout's webhooks");
        }
    }

    /// Queues the reminders now due for every planned maintenance.
    pub async fn queue_reminders(&self, now: chrono::DateTime<chrono::Utc>, lead_times: &[Duration]) -> EngineResult<()> {
        if self.notifier.is_none() {
            return Ok(());
        }
        for maintenance in self.store.unfinished_maintenances().await? {
            let Some(at) = maintenance.scheduled_for else { continue };
            for lead in crate::schedule::reminders_due(at, now, lead_times) {
                self.tell_owners(&maintenance, MailEvent::Reminder(lead)).await;
            }
        }
        Ok(())
    }

    /// Sends the mail and webhooks that are due (any daemon may; the outbox hands each to one).
    pub async fn deliver_mail(&self) {
        if let Some(notifier) = &self.notifier {
            match notifier.deliver_due().await {
                Ok(report) if report.failed > 0 => tracing::warn!(sent = report.sent, failed = report.failed, "some owner mail or webhooks could not be sent yet"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "owner mail and webhook delivery failed"),
            }
        }
    }
}
