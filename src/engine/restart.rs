//! Restart: PAUSE, fast restart, wait until the server serves again, RESUME.
//!
//! On HA tiers the standby restarts first (clients never see it). A
//! follower is read-only, so "serves again" means it accepts connections and
//! is replaying; a primary must accept a write.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::pg::{wait_until, Server};
use crate::provider::local::{Cluster, StopMode};
use crate::store::InstanceRole;

use super::run::Run;
use super::{connect, Engine, EngineError, EngineResult};

/// How long a restarted server may take to serve again.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

impl Engine {
    pub(super) async fn restart(&self, run: &mut Run) -> EngineResult<()> {
        let cluster = self.current_cluster(run.database.id).await?;
        let is_follower = run.database.following_id.is_some();
        let mut admin = self.endpoint.admin().await?;

        if let Some(standby) = self.store.instance_in_role(run.database.id, InstanceRole::HaStandby).await? {
            self.step(run, "restart_standby", async |engine: &Engine, _: &mut Run| {
                let standby = engine.provider.cluster(&standby.location);
                if standby.is_running().await? {
                    standby.restart().await?;
                } else {
                    standby.start().await?;
                }
                Ok(json!({}))
            })
            .await?;
        }
        self.step(run, "checkpoint", async |_: &Engine, _: &mut Run| {
            if !is_follower && cluster.is_running().await? {
                connect(&cluster).await?.checkpoint().await?;
            }
            Ok(json!({}))
        })
        .await?;

        let paused_at = self.pause_endpoint(run, &mut admin).await?;

        let restarted = self.restart_while_paused(run, &cluster, is_follower).await;
        if let Err(error) = restarted {
            // Whatever failed, the server must be up and the endpoint resumed.
            let started = cluster.start().await;
            let resumed = admin.resume(&run.database.name).await;
            return Err(match (started, resumed) {
                (Ok(()), Ok(())) => error,
                (Err(second), _) => EngineError::Invalid(format!("{error}; then starting the server failed: {second}")),
                (_, Err(second)) => EngineError::Invalid(format!("{error}; then RESUME failed: {second}")),
            });
        }

        self.resume_endpoint(run, &mut admin, paused_at).await?;
        Ok(())
    }

    async fn restart_while_paused(&self, run: &mut Run, cluster: &Cluster, is_follower: bool) -> EngineResult<()> {
        self.step(run, "restart", async |_: &Engine, _: &mut Run| {
            restart_or_start(cluster).await?;
            Ok(json!({}))
        })
        .await?;
        self.step(run, "wait_ready", async |_: &Engine, _: &mut Run| {
            let started = Instant::now();
            wait_until(READY_TIMEOUT, Duration::from_millis(3), "server ready after restart", || async {
                let Ok(server) = Server::connect(&cluster.conninfo("postgres"), Duration::from_secs(2)).await else { return Ok(false) };
                Ok(if is_follower { server.is_in_recovery().await? } else { server.check_writable().await.is_ok() })
            })
            .await?;
            Ok(json!({ "ms": started.elapsed().as_secs_f64() * 1000.0 }))
        })
        .await
    }
}

/// A fast stop then a start without pg_ctl's 100 ms wait loop (the next step
/// polls for readiness); a start alone if a crash left the server stopped.
async fn restart_or_start(cluster: &Cluster) -> EngineResult<()> {
    cluster.stop(StopMode::Fast).await?;
    cluster.start_no_wait().await?;
    Ok(())
}
