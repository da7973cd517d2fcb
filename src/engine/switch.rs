//! Switchover and failover: the steps of the critical section of DESIGN.md
//! (their order is declared in `runbook.rs`).
//!
//! Ahead of the window the candidate (a fresh replacement, or the HA standby)
//! is a caught-up streaming replica. Then: CHECKPOINT the old primary, PAUSE
//! the endpoint, fast-stop the old primary (the fence: stop before promote),
//! confirm the candidate received WAL up to the old primary's shutdown
//! checkpoint, promote it, prove it takes writes, repoint the endpoint, RESUME.
//! Then followers are repointed, a failover gets a new HA standby, and the old
//! primary stays stopped (retired). If the candidate might lack a commit, it is
//! not promoted: the old primary starts again and the maintenance is postponed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::endpoint::{AdminConsole, Route};
use crate::model::Progress;
use crate::pg::{wait_until, Server};
use crate::provider::{FinalWal, StopMode};
use crate::store::{InstanceRecord, InstanceRole, Writer};

use super::execute::Switch;
use super::fleet::{new_slot_name, plan_of, slot_of};
use super::run::Run;
use super::{Engine, EngineError, EngineResult, WAL_CONFIRM_TIMEOUT};

const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a repointed follower may take to stream from the new primary before it is rebuilt.
const FOLLOWER_REPOINT_TIMEOUT: Duration = Duration::from_secs(20);

impl Engine {
    /// Builds the replacement replica for a switchover (idempotent: an existing
    /// replacement is reused and only waited for).
    pub(super) async fn prepare_replacement(&self, run: &mut Run) -> EngineResult<Value> {
        let started = Instant::now();
        let candidate = self.candidate_instance(run).await?;
        let upstream = match run.database.following_id {
            Some(leader) => self.current_location(leader).await?,
            None => self.current_location(run.database.id).await?,
        };
        let slot = slot_of(&candidate)?.to_string();
        let plan = self.plan_after(run)?;
        let build = self.build_replica(&upstream, &candidate.location, &slot, &plan);
        self.with_progress(run.claim, build, || self.replacement_progress(&upstream, &slot, plan.name())).await?;
        self.record_progress(run.claim, &Progress::Ready { plan: plan.name().to_string() }).await;
        run.maintenance = self.store.maintenance(run.maintenance.id).await?;
        Ok(json!({ "candidate": candidate.location, "seconds": started.elapsed().as_secs_f64() }))
    }

    /// A failover's candidate is the HA standby: it must exist and be caught up.
    pub(super) async fn check_ha_standby(&self, run: &mut Run) -> EngineResult<Value> {
        let old = self.store.current_instance(run.database.id).await?;
        let standby = self
            .store
            .instance_in_role(run.database.id, InstanceRole::HaStandby)
            .await?
            .ok_or_else(|| EngineError::Invalid(format!("database {} has no HA standby to fail over to", run.database.name)))?;
        self.store.set_maintenance_instances(run.claim, Some(standby.id), Some(old.id)).await?;
        self.wait_caught_up(&old.location, slot_of(&standby)?).await?;
        run.maintenance = self.store.maintenance(run.maintenance.id).await?;
        Ok(json!({ "candidate": standby.location }))
    }

    /// The candidate becomes the database's current server (on the new plan,
    /// for a plan change) and the endpoint routes to it.
    ///
    /// The record and the route are written side by side (clients wait on
    /// both): if either fails or the runner dies between them, `repoint` runs
    /// again, and both writes are idempotent.
    pub(super) async fn adopt_candidate(&self, run: &Run, candidate: &InstanceRecord, route: &Route, admin: &mut AdminConsole) -> EngineResult<Value> {
        let plan = run.maintenance.target_plan.as_deref();
        let (recorded, routed) =
            tokio::join!(self.store.promote_instance(Writer::Runner(run.claim), run.database.id, candidate.id, plan), admin.repoint(route));
        recorded?;
        routed?;
        Ok(json!({ "route": route.target(), "plan": plan }))
    }

    /// Stops the database's HA standby and marks it retired (a new one is built on the new plan).
    pub(super) async fn retire_ha_standby(&self, run: &Run) -> EngineResult<Value> {
        let database_id = run.database.id;
        let Some(standby) = self.store.instance_in_role(database_id, InstanceRole::HaStandby).await? else {
            return Ok(json!({ "standby": null }));
        };
        self.provider.retire(&standby.location).await?;
        self.store.set_instance_role(Writer::Runner(run.claim), standby.id, InstanceRole::Retired).await?;
        Ok(json!({ "standby": standby.location }))
    }

    /// `fence`: the old primary stops (fast) before anything is promoted;
    /// its final WAL position is the evidence the next step checks against.
    pub(super) async fn fence(&self, switch: &Switch) -> EngineResult<FinalWal> {
        if switch.candidate_server.is_in_recovery().await? {
            self.provider.stop(&switch.old, StopMode::Fast).await?;
        }
        Ok(self.provider.final_wal(&switch.old).await?)
    }

    /// `confirm_wal`: the candidate received WAL past the old primary's
    /// shutdown checkpoint, so it holds every acknowledged commit; otherwise
    /// the switch is called off (postponed) and nothing is promoted.
    /// `fenced` is the evidence this runner's fence read, if it did (a
    /// resumed runner reads it again: the stopped server's files do not change).
    pub(super) async fn confirm_wal(&self, switch: &Switch, fenced: Option<FinalWal>) -> EngineResult<Value> {
        if !switch.candidate_server.is_in_recovery().await? {
            return Ok(json!({ "already_promoted": true }));
        }
        let last = match fenced {
            Some(last) => last,
            None => self.provider.final_wal(&switch.old).await?,
        };
        if !last.clean {
            return Err(EngineError::Postponed(format!(
                "the old primary did not stop cleanly (state {:?}), so the candidate cannot be shown to hold every commit",
                last.state
            )));
        }
        let checkpoint = last.position;
        let confirmed = wait_until(WAL_CONFIRM_TIMEOUT, Duration::from_millis(2), "WAL confirmation", || async {
            Ok(switch.candidate_server.received_lsn().await?.is_some_and(|received| received > checkpoint))
        })
        .await;
        let received = switch.candidate_server.received_lsn().await?;
        match confirmed {
            Ok(()) => Ok(json!({ "shutdown_checkpoint": checkpoint.to_string(), "received": received.map(|l| l.to_string()) })),
            Err(_) => Err(EngineError::Postponed(format!(
                "the candidate received WAL up to {} only; the old primary's shutdown checkpoint is at {checkpoint}",
                received.map(|l| l.to_string()).unwrap_or_else(|| "nothing".into())
            ))),
        }
    }

    /// `promote`: the candidate becomes a primary and proves it takes writes.
    pub(super) async fn promote_candidate(&self, switch: &Switch) -> EngineResult<Value> {
        self.provider.promote(&switch.candidate.location, &switch.candidate_server, PROMOTE_TIMEOUT).await?;
        switch.candidate_server.check_writable().await?;
        Ok(json!({ "timeline": switch.candidate_server.timeline().await? }))
    }

    /// Points every follower at the new primary; one that cannot follow is rebuilt.
    pub(super) async fn repoint_followers(&self, run: &Run, switch: &Switch) -> EngineResult<Value> {
        let mut report = Vec::new();
        for follower in self.store.followers_of(run.database.id).await? {
            let started = Instant::now();
            let instance = self.store.current_instance(follower.id).await?;
            let repointed = self.repoint_follower(&instance.location, &switch.candidate.location, &switch.candidate_server, slot_of(&instance)?).await;
            let how = match repointed {
                Ok(()) => "repointed".to_string(),
                Err(error) => {
                    tracing::warn!(follower = %follower.name, %error, "follower could not be repointed; rebuilding it");
                    self.rebuild_follower(Writer::Runner(run.claim), &follower.name, follower.id, &switch.candidate.location).await?;
                    format!("rebuilt ({error})")
                }
            };
            report.push(json!({ "follower": follower.name, "how": how, "seconds": started.elapsed().as_secs_f64() }));
        }
        Ok(json!({ "followers": report }))
    }

    /// Points the follower at `follower` to stream from the primary at
    /// `new_primary` through `slot`, and waits until it does.
    pub(super) async fn repoint_follower(&self, follower: &str, new_primary: &str, new_primary_server: &Server, slot: &str) -> EngineResult<()> {
        new_primary_server.ensure_slot(slot).await?;
        let server = self.connect(follower).await?;
        let address = self.provider.address(new_primary);
        let conninfo = format!("{} application_name={slot}", address.conninfo("postgres"));
        server.set_primary(&conninfo, Some(slot)).await?;
        let expected_host = address.host.to_string();
        wait_until(FOLLOWER_REPOINT_TIMEOUT, Duration::from_millis(20), "follower streaming from the new primary", || async {
            Ok(server.wal_receiver().await?.is_some_and(|r| r.status == "streaming" && r.sender_host.as_deref() == Some(expected_host.as_str())))
        })
        .await?;
        Ok(())
    }

    /// Replaces a follower that cannot follow the new primary with a fresh copy of it.
    async fn rebuild_follower(&self, writer: Writer, name: &str, follower_id: i64, new_primary: &str) -> EngineResult<()> {
        let location = self.provider.new_location(name);
        let slot = new_slot_name(name);
        let instance = self.store.insert_instance(writer, follower_id, InstanceRole::Replacement, &location, Some(&slot)).await?;
        let old = self.current_location(follower_id).await?;
        let plan = plan_of(&self.store.database(follower_id).await?)?;
        self.build_replica(new_primary, &instance.location, &slot, &plan).await?;
        self.store.promote_instance(writer, follower_id, instance.id, None).await?;
        self.publish_routes().await?;
        self.provider.retire(&old).await?;
        Ok(())
    }
}

impl Engine {
    /// What the upstream server shows of a replacement being built: its base
    /// backup, then its streaming lag.
    async fn replacement_progress(&self, upstream: &str, slot: &str, plan: &str) -> Option<Progress> {
        let server = self.connect(upstream).await.ok()?;
        let plan = plan.to_string();
        if let Some(backup) = server.basebackup_progress(slot).await.ok()? {
            return Some(Progress::BaseBackup { plan, done_bytes: backup.streamed_bytes, total_bytes: backup.total_bytes });
        }
        let replica = server.replicas().await.ok()?.into_iter().find(|r| r.application_name == slot)?;
        Some(Progress::CatchingUp { plan, behind_bytes: replica.lag_bytes? })
    }
}
