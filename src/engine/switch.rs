//! Switchover and failover: the critical section of DESIGN.md.
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
use crate::model::{Progress, Strategy};
use crate::pg::{wait_until, Server};
use crate::provider::local::{Cluster, StopMode};
use crate::store::{InstanceRecord, InstanceRole};

use super::fleet::{plan_of, slot_for};
use super::run::{resume_after, Run};
use super::{connect, Engine, EngineError, EngineResult, WAL_CONFIRM_TIMEOUT};

const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a repointed follower may take to stream from the new primary before it is rebuilt.
const FOLLOWER_REPOINT_TIMEOUT: Duration = Duration::from_secs(20);

/// The servers a switch moves between.
struct Switch {
    old: Cluster,
    candidate: Cluster,
    candidate_instance: InstanceRecord,
    /// A connection to the candidate opened before the pause, kept throughout.
    candidate_server: Server,
    route: Route,
}

impl Engine {
    /// Builds the replacement replica for a switchover (idempotent: an existing
    /// replacement is reused and only waited for).
    pub(super) async fn prepare_replacement(&self, run: &mut Run) -> EngineResult<Value> {
        let started = Instant::now();
        let candidate = self.candidate_instance(run).await?;
        let upstream = match run.database.following_id {
            Some(leader) => self.current_cluster(leader).await?,
            None => self.current_cluster(run.database.id).await?,
        };
        let slot = candidate.slot_name.clone().unwrap_or_else(|| slot_for(&candidate.location));
        let plan = self.plan_after(run)?;
        let build = self.build_replica(&upstream, &candidate.location, &slot, &plan);
        self.with_progress(run.claim, build, || replacement_progress(upstream.clone(), slot.clone(), plan.name().to_string())).await?;
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
        let slot = standby.slot_name.clone().unwrap_or_else(|| slot_for(&standby.location));
        self.wait_caught_up(&self.provider.cluster(&old.location), &slot).await?;
        run.maintenance = self.store.maintenance(run.maintenance.id).await?;
        Ok(json!({ "candidate": standby.location }))
    }

    /// The switch itself, then the follow-up steps.
    pub(super) async fn switch(&self, run: &mut Run) -> EngineResult<()> {
        let missing = || EngineError::Invalid(format!("maintenance #{} has no candidate server", run.maintenance.id));
        let candidate_instance = self.store.instance(run.maintenance.candidate_id.ok_or_else(missing)?).await?;
        let old_instance = self.store.instance(run.maintenance.old_instance_id.ok_or_else(missing)?).await?;
        let candidate = self.provider.cluster(&candidate_instance.location);
        let old = self.provider.cluster(&old_instance.location);
        let switch = Switch {
            route: Route::to_cluster(&run.database.name, &candidate, &run.database.dbname),
            candidate_server: connect(&candidate).await?,
            old,
            candidate,
            candidate_instance,
        };
        let mut admin = self.endpoint.admin().await?;
        if run.database.following_id.is_some() {
            return self.move_follower(run, &switch, &mut admin).await;
        }

        self.step(run, "checkpoint", async |_: &Engine, _: &mut Run| {
            if switch.old.is_running().await? && switch.candidate_server.is_in_recovery().await? {
                connect(&switch.old).await?.checkpoint().await?;
            }
            Ok(json!({}))
        })
        .await?;

        let paused_at = self.pause_endpoint(run, &mut admin).await?;

        if let Err(error) = self.switch_while_paused(run, &switch, &mut admin).await {
            return Err(self.recover(run, &switch, &mut admin, error).await);
        }

        let resumed_before = run.done.contains("resume");
        self.resume_endpoint(run, &mut admin, paused_at).await?;
        if !resumed_before {
            self.release_after_switch(run.database.id, switch_change(run)).await;
        }

        self.step(run, "repoint_followers", async |engine: &Engine, run: &mut Run| engine.repoint_followers(run, &switch).await).await?;
        // A plan change leaves the HA standby on the old plan behind, streaming from nothing.
        if run.maintenance.target_plan.is_some() {
            self.step(run, "retire_standby", async |engine: &Engine, run: &mut Run| engine.retire_ha_standby(run.database.id).await).await?;
        }
        let plan = plan_of(&self.store.database(run.database.id).await?)?;
        if plan.tier().has_ha_standby() && (run.strategy == Strategy::Failover || run.maintenance.target_plan.is_some()) {
            self.step(run, "rebuild_standby", async |engine: &Engine, run: &mut Run| {
                let started = Instant::now();
                engine.build_ha_standby(run.database.id).await?;
                Ok(json!({ "seconds": started.elapsed().as_secs_f64() }))
            })
            .await?;
        }
        self.retire_old(run, &switch.old).await
    }

    /// A follower moves to its replacement without any promotion: both are
    /// read-only replicas of the same leader, so the endpoint is repointed
    /// under a short pause and the old server retired.
    async fn move_follower(&self, run: &mut Run, switch: &Switch, admin: &mut AdminConsole) -> EngineResult<()> {
        let paused_at = self.pause_endpoint(run, admin).await?;
        let repointed = self.step(run, "repoint", async |engine: &Engine, run: &mut Run| engine.adopt_candidate(run, &switch.candidate_instance, &switch.route, admin).await).await;
        if let Err(error) = repointed {
            return Err(resume_after(admin, &run.database.name, error).await);
        }
        self.resume_endpoint(run, admin, paused_at).await?;
        self.retire_old(run, &switch.old).await
    }

    /// The candidate becomes the database's current server (on the new plan,
    /// for a plan change) and the endpoint routes to it.
    pub(super) async fn adopt_candidate(&self, run: &Run, candidate: &InstanceRecord, route: &Route, admin: &mut AdminConsole) -> EngineResult<Value> {
        let plan = run.maintenance.target_plan.as_deref();
        self.store.promote_instance(run.database.id, candidate.id, plan).await?;
        admin.repoint(route).await?;
        Ok(json!({ "route": route.target(), "plan": plan }))
    }

    /// The old server stays stopped, kept for the retirement grace period.
    pub(super) async fn retire_old(&self, run: &mut Run, old: &Cluster) -> EngineResult<()> {
        self.step(run, "retire_old", async |_: &Engine, _: &mut Run| {
            old.stop(StopMode::Fast).await?;
            Ok(json!({ "retired": old.root().display().to_string() }))
        })
        .await
    }

    /// Stops the database's HA standby and marks it retired (a new one is built on the new plan).
    async fn retire_ha_standby(&self, database_id: i64) -> EngineResult<Value> {
        let Some(standby) = self.store.instance_in_role(database_id, InstanceRole::HaStandby).await? else {
            return Ok(json!({ "standby": null }));
        };
        self.provider.cluster(&standby.location).stop(StopMode::Fast).await?;
        self.store.set_instance_role(standby.id, InstanceRole::Retired).await?;
        Ok(json!({ "standby": standby.location }))
    }

    /// Fence, confirm, promote, repoint: the part clients wait through.
    async fn switch_while_paused(&self, run: &mut Run, switch: &Switch, admin: &mut AdminConsole) -> EngineResult<()> {
        self.step(run, "fence", async |_: &Engine, _: &mut Run| {
            if switch.candidate_server.is_in_recovery().await? {
                switch.old.stop(StopMode::Fast).await?;
            }
            let control = switch.old.control_data().await?;
            Ok(json!({ "state": control.state, "shutdown_checkpoint": control.latest_checkpoint.to_string() }))
        })
        .await?;

        self.step(run, "confirm_wal", async |_: &Engine, _: &mut Run| {
            if !switch.candidate_server.is_in_recovery().await? {
                return Ok(json!({ "already_promoted": true }));
            }
            let control = switch.old.control_data().await?;
            if !control.is_clean_primary_shutdown() {
                return Err(EngineError::Postponed(format!(
                    "the old primary did not stop cleanly (state {:?}), so the candidate cannot be shown to hold every commit",
                    control.state
                )));
            }
            let checkpoint = control.latest_checkpoint;
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
        })
        .await?;

        self.step(run, "promote", async |_: &Engine, _: &mut Run| {
            switch.candidate_server.promote(PROMOTE_TIMEOUT).await?;
            switch.candidate_server.check_writable().await?;
            Ok(json!({ "timeline": switch.candidate_server.timeline().await? }))
        })
        .await?;

        self.step(run, "repoint", async |engine: &Engine, run: &mut Run| engine.adopt_candidate(run, &switch.candidate_instance, &switch.route, admin).await).await
    }

    /// Something failed while paused. Observe, then leave exactly one writable
    /// primary behind and RESUME: forward if the candidate was promoted, back
    /// to the old primary if it was not.
    async fn recover(&self, run: &mut Run, switch: &Switch, admin: &mut AdminConsole, error: EngineError) -> EngineError {
        let promoted = match switch.candidate_server.is_in_recovery().await {
            Ok(in_recovery) => !in_recovery,
            // Cannot tell: never restart the old primary on a guess.
            Err(_) => true,
        };
        let outcome = if promoted {
            self.step(run, "repoint", async |engine: &Engine, run: &mut Run| engine.adopt_candidate(run, &switch.candidate_instance, &switch.route, admin).await).await
        } else {
            self.step(run, "rollback", async |_: &Engine, _: &mut Run| {
                switch.old.start().await?;
                connect(&switch.old).await?.check_writable().await?;
                Ok(json!({ "restarted": switch.old.root().display().to_string() }))
            })
            .await
        };
        let resumed = admin.resume(&run.database.name).await;
        match (outcome, resumed) {
            (Ok(()), Ok(())) => error,
            (Err(second), _) => EngineError::Invalid(format!("{error}; then recovery failed: {second}")),
            (_, Err(second)) => EngineError::Invalid(format!("{error}; then RESUME failed: {second}")),
        }
    }

    /// Points every follower at the new primary; one that cannot follow is rebuilt.
    async fn repoint_followers(&self, run: &mut Run, switch: &Switch) -> EngineResult<Value> {
        let mut report = Vec::new();
        for follower in self.store.followers_of(run.database.id).await? {
            let started = Instant::now();
            let instance = self.store.current_instance(follower.id).await?;
            let slot = instance.slot_name.clone().unwrap_or_else(|| slot_for(&instance.location));
            let cluster = self.provider.cluster(&instance.location);
            let repointed = self.repoint_follower(&cluster, &switch.candidate, &switch.candidate_server, &slot).await;
            let how = match repointed {
                Ok(()) => "repointed".to_string(),
                Err(error) => {
                    tracing::warn!(follower = %follower.name, %error, "follower could not be repointed; rebuilding it");
                    self.rebuild_follower(&follower.name, follower.id, &switch.candidate).await?;
                    format!("rebuilt ({error})")
                }
            };
            report.push(json!({ "follower": follower.name, "how": how, "seconds": started.elapsed().as_secs_f64() }));
        }
        Ok(json!({ "followers": report }))
    }

    pub(super) async fn repoint_follower(&self, follower: &Cluster, new_primary: &Cluster, new_primary_server: &Server, slot: &str) -> EngineResult<()> {
        new_primary_server.ensure_slot(slot).await?;
        let server = connect(follower).await?;
        let conninfo = format!("{} application_name={slot}", new_primary.conninfo("postgres"));
        server.set_primary(&conninfo, Some(slot)).await?;
        let expected_host = new_primary.socket_dir().display().to_string();
        wait_until(FOLLOWER_REPOINT_TIMEOUT, Duration::from_millis(20), "follower streaming from the new primary", || async {
            Ok(server.wal_receiver().await?.is_some_and(|r| r.status == "streaming" && r.sender_host.as_deref() == Some(expected_host.as_str())))
        })
        .await?;
        Ok(())
    }

    /// Replaces a follower that cannot follow the new primary with a fresh copy of it.
    async fn rebuild_follower(&self, name: &str, follower_id: i64, new_primary: &Cluster) -> EngineResult<()> {
        let location = self.provider.new_location(name);
        let slot = slot_for(&location);
        let instance = self.store.insert_instance(follower_id, InstanceRole::Replacement, &location, Some(&slot)).await?;
        let old = self.current_cluster(follower_id).await?;
        let plan = plan_of(&self.store.database(follower_id).await?)?;
        self.build_replica(new_primary, &instance.location, &slot, &plan).await?;
        self.store.promote_instance(follower_id, instance.id, None).await?;
        self.publish_routes().await?;
        old.stop(StopMode::Fast).await?;
        Ok(())
    }
}

/// The change a switch records in attached apps' releases.
pub(super) fn switch_change(run: &Run) -> String {
    match (&run.maintenance.target_plan, run.strategy) {
        (Some(plan), _) => format!("Plan change {} to {plan}", run.database.name),
        (None, Strategy::Failover) => format!("Failover {}", run.database.name),
        (None, _) => format!("Switchover {}", run.database.name),
    }
}

/// What the upstream server shows of a replacement being built: its base
/// backup, then its streaming lag.
async fn replacement_progress(upstream: Cluster, slot: String, plan: String) -> Option<Progress> {
    let server = connect(&upstream).await.ok()?;
    if let Some(backup) = server.basebackup_progress(&slot).await.ok()? {
        return Some(Progress::BaseBackup { plan, done_bytes: backup.streamed_bytes, total_bytes: backup.total_bytes });
    }
    let replica = server.replicas().await.ok()?.into_iter().find(|r| r.application_name == slot)?;
    Some(Progress::CatchingUp { plan, behind_bytes: replica.lag_bytes? })
}
