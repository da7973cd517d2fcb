//! The leader's housekeeping. Detection: the maintenances the servers
//! themselves call for, found by looking at them (settings that wait for a
//! restart, newer installed server binaries) and at the calendar (the
//! periodic refresh). Removal: retired servers whose grace period is over.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::Reason;
use crate::pg::Server;
use crate::schedule::PERIODIC_NOTICE;

use super::{Engine, EngineError, EngineResult};

/// A detected restart-only maintenance (settings, minor upgrade) is required within this.
const DETECTED_RESTART_DEADLINE: TimeDelta = TimeDelta::days(7);

impl Engine {
    /// Requires, for each available database with no open maintenance, the
    /// maintenance its servers or its age call for; `periodic` is the longest
    /// a database may go unmaintained.
    pub async fn detect(&self, now: DateTime<Utc>, periodic: Duration) -> EngineResult<()> {
        let installed = self.provider.installed_version_num().await.ok();
        let periodic = TimeDelta::from_std(periodic).map_err(|_| EngineError::Invalid("periodic interval too long".into()))?;
        for database in self.store.databases().await? {
            if database.status != "available" || self.store.open_maintenance(database.id).await?.is_some() {
                continue;
            }
            let last = database.last_maintained_at.unwrap_or(database.created_at);
            if let Some(api) = self.patroni_api(&database).await? {
                let needs = match self.adopted_needs(&api).await {
                    Ok(needs) => needs,
                    Err(error) => {
                        tracing::warn!(database = %database.name, %error, "the Patroni cluster could not be asked what it needs");
                        continue;
                    }
                };
                let required = match needs {
                    Some(reason) => {
                        tracing::info!(database = %database.name, reason = reason.as_str(), "Patroni reports a member needs maintenance");
                        Some((reason, now + DETECTED_RESTART_DEADLINE))
                    }
                    None if now >= last + periodic - PERIODIC_NOTICE => Some((Reason::Periodic, last + periodic)),
                    None => None,
                };
                if let Some((reason, required_by)) = required {
                    self.require(&database.name, reason, required_by, now).await?;
                }
                continue;
            }
            let address = self.provider.address(&self.current_location(database.id).await?);
            let Ok(server) = Server::connect_to(&address, "postgres", Duration::from_secs(5)).await else { continue };
            let pending = server.pending_restart_settings().await?;
            let running = server.version_num().await?;
            let required = if !pending.is_empty() {
                tracing::info!(database = %database.name, settings = ?pending, "settings wait for a restart");
                Some((Reason::Settings, now + DETECTED_RESTART_DEADLINE))
            } else if installed.is_some_and(|v| v > running) {
                tracing::info!(database = %database.name, running, installed = ?installed, "newer server binaries are installed");
                Some((Reason::MinorUpgrade, now + DETECTED_RESTART_DEADLINE))
            } else if now >= last + periodic - PERIODIC_NOTICE {
                Some((Reason::Periodic, last + periodic))
            } else {
                None
            };
            if let Some((reason, required_by)) = required {
                self.require(&database.name, reason, required_by, now).await?;
            }
        }
        Ok(())
    }
}

impl Engine {
    /// Removes (files and all) every retired server whose retirement is
    /// older than `grace`; returns how many. A server that cannot be removed
    /// now is left for the next pass.
    pub async fn remove_retired(&self, now: DateTime<Utc>, grace: Duration) -> EngineResult<usize> {
        let grace = TimeDelta::from_std(grace).map_err(|_| EngineError::Invalid("retire grace too long".into()))?;
        let mut removed = 0;
        for instance in self.store.retired_before(now - grace).await? {
            match self.provider.remove(&instance.location).await {
                Ok(()) => {
                    self.store.mark_removed(instance.id).await?;
                    tracing::info!(server = %instance.location, "retired server removed after its grace period");
                    removed += 1;
                }
                Err(error) => tracing::warn!(server = %instance.location, %error, "retired server not removed yet"),
            }
        }
        Ok(removed)
    }
}
