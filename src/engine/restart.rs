//! Restart: PAUSE, fast restart, wait until the server serves again, RESUME
//! (the `Runbook::Restart` steps).
//!
//! On HA tiers the standby restarts first (clients never see it). A
//! follower is read-only, so "serves again" means it accepts connections and
//! is replaying; a primary must accept a write.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::pg::{wait_until, Server};
use crate::provider::{StartWait, StopMode};
use crate::store::InstanceRole;

use super::run::Run;
use super::{Engine, EngineResult};

/// How long a restarted server may take to serve again.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

impl Engine {
    /// `restart_standby`: the HA standby restarts (or starts) and serves again.
    pub(super) async fn restart_standby(&self, run: &Run) -> EngineResult<Value> {
        let Some(standby) = self.store.instance_in_role(run.database.id, InstanceRole::HaStandby).await? else {
            return Ok(json!({ "standby": null }));
        };
        self.provider.stop(&standby.location, StopMode::Fast).await?;
        self.provider.start(&standby.location, StartWait::UntilServing).await?;
        Ok(json!({ "standby": standby.location }))
    }

    /// `wait_ready`: the restarted server accepts connections and, if it is
    /// a primary, a write.
    pub(super) async fn wait_ready(&self, location: &str, is_follower: bool) -> EngineResult<Value> {
        let address = self.provider.address(location);
        let started = Instant::now();
        wait_until(READY_TIMEOUT, Duration::from_millis(1), "server ready after restart", || async {
            let Ok(server) = Server::connect_to(&address, "postgres", Duration::from_secs(2)).await else { return Ok(false) };
            Ok(if is_follower { server.is_in_recovery().await? } else { server.check_writable().await.is_ok() })
        })
        .await?;
        Ok(json!({ "ms": started.elapsed().as_secs_f64() * 1000.0 }))
    }
}
