//! Carrying a runbook out: each declared step in order, each failure met by
//! the recovery its declaration names, and the pause always ended by RESUME.
//!
//! `act` is the runbook's dictionary: what each step does. The steps
//! themselves live beside the strategy they belong to (`restart.rs`,
//! `switch.rs`, `upgrade.rs`, `follower.rs`); here they are only put in order
//! and guarded.

use std::time::Instant;

use serde_json::{json, Value};

use crate::endpoint::{AdminConsole, Route};
use crate::pg::Server;
use crate::provider::patroni::PatroniApi;
use crate::provider::{StartWait, StopMode};
use crate::store::{InstanceRecord, InstanceRole, Writer};

use super::fleet::plan_of;
use super::hooks::HookPoint;
use super::run::{PausedRecords, Run};
use super::runbook::{Declared, Recovery, Runbook, Step, When};
use super::switch::Fencing;
use super::{Engine, EngineError, EngineResult, PAUSE_TIMEOUT};

/// What the steps of one run share: the endpoint's admin console, when this
/// runner paused it, and the servers the maintenance acts on.
pub(super) struct Scene {
    pub admin: AdminConsole,
    /// When this runner's PAUSE took effect (not set if an earlier runner paused).
    pub paused_at: Option<Instant>,
    /// How far this runner got, inside its pause, towards a safe promotion.
    pub fencing: Fencing,
    pub servers: Servers,
}

/// The servers a runbook acts on, by location.
#[expect(clippy::large_enum_variant, reason = "one value per run: boxing would buy nothing")]
pub(super) enum Servers {
    /// A restart: the database's current server.
    InPlace { location: String, is_follower: bool },
    /// A switchover, failover, follower move or plan change.
    Switch(Switch),
    /// An essential copy: the old server and the new one on the new plan.
    Copy { old: String, target: InstanceRecord, route: Route },
    /// An adopted Patroni cluster, reached through its REST API.
    Patroni(PatroniApi),
    /// An unfollow: the follower's own server, and its leader's name.
    Unfollow { location: String, leader: String },
}

/// The servers a switch moves between.
pub(super) struct Switch {
    pub old: String,
    /// A connection to the old primary opened before the pause, if it
    /// answered (it does not when an earlier runner fenced it and died).
    pub old_server: Option<Server>,
    pub candidate: InstanceRecord,
    /// A connection to the candidate opened before the pause, kept throughout.
    pub candidate_server: Server,
    pub route: Route,
}

impl Engine {
    /// Runs the run's runbook from the first step not done yet.
    pub(super) async fn execute(&self, run: &mut Run) -> EngineResult<()> {
        let runbook = run.runbook;
        let mut scene = self.scene(run).await?;
        for (index, declared) in runbook.steps().iter().enumerate() {
            if !self.applies(declared.when, run).await? {
                continue;
            }
            let step = declared.step;
            if step == Step::Pause && !run.done.contains(&Step::Pause) && runbook.batches_paused_records() {
                run.paused_records = Some(PausedRecords { intents: self.paused_section(run, &runbook.steps()[index + 1..]).await?, ..PausedRecords::default() });
            }
            let acted = self.step(run, step, async |engine: &Engine, run: &mut Run| engine.act(step, run, &mut scene).await).await;
            if let Err(error) = acted {
                return Err(self.recover(declared.recovery, run, &mut scene, error).await);
            }
        }
        Ok(())
    }

    /// The steps after PAUSE up to RESUME (included) that this run will take.
    async fn paused_section(&self, run: &Run, rest: &[Declared]) -> EngineResult<Vec<Step>> {
        let mut steps = Vec::new();
        for declared in rest {
            if !run.done.contains(&declared.step) && self.applies(declared.when, run).await? {
                steps.push(declared.step);
            }
            if declared.step == Step::Resume {
                break;
            }
        }
        Ok(steps)
    }

    /// The preparation steps, run ahead of the window (or first thing in a run).
    pub(super) async fn prepare(&self, step: Step, run: &mut Run) -> EngineResult<Value> {
        match step {
            Step::PrepareReplacement => self.prepare_replacement(run).await,
            Step::CheckStandby => self.check_ha_standby(run).await,
            Step::PrepareTarget => self.prepare_copy_target(run).await,
            other => Err(EngineError::Invalid(format!("{other} is not a preparation step"))),
        }
    }

    async fn scene(&self, run: &Run) -> EngineResult<Scene> {
        let missing = || EngineError::Invalid(format!("maintenance #{} has no candidate server recorded", run.maintenance.id));
        let servers = match run.runbook {
            Runbook::PatroniRolling | Runbook::PatroniLeaderFirst => Servers::Patroni(
                self.patroni_api(&run.database).await?.ok_or_else(|| EngineError::Invalid(format!("{} is not an adopted Patroni cluster", run.database.name)))?,
            ),
            Runbook::Restart => {
                Servers::InPlace { location: self.current_location(run.database.id).await?, is_follower: run.database.following_id.is_some() }
            }
            Runbook::EssentialCopy => {
                let target = self.store.instance(run.maintenance.candidate_id.ok_or_else(missing)?).await?;
                let old = self.store.instance(run.maintenance.old_instance_id.ok_or_else(missing)?).await?.location;
                Servers::Copy { route: self.route_to(&run.database, &target.location), old, target }
            }
            Runbook::Unfollow => {
                Servers::Unfollow { location: self.current_location(run.database.id).await?, leader: self.unfollowed_leader(&run.database).await? }
            }
            Runbook::Switchover | Runbook::Failover | Runbook::FollowerMove | Runbook::PlanChange => {
                let candidate = self.store.instance(run.maintenance.candidate_id.ok_or_else(missing)?).await?;
                let old = self.store.instance(run.maintenance.old_instance_id.ok_or_else(missing)?).await?.location;
                // Only a switch that promotes reads the old primary's WAL.
                let old_server = match run.runbook.steps().iter().any(|declared| declared.step == Step::ConfirmWal) {
                    true => self.connect(&old).await.ok(),
                    false => None,
                };
                Servers::Switch(Switch {
                    route: self.route_to(&run.database, &candidate.location),
                    candidate_server: self.connect(&candidate.location).await?,
                    old_server,
                    old,
                    candidate,
                })
            }
        };
        Ok(Scene { admin: self.endpoint.admin().await?, paused_at: None, fencing: Fencing::Unconfirmed, servers })
    }

    async fn applies(&self, when: When, run: &Run) -> EngineResult<bool> {
        Ok(match when {
            When::Always => true,
            When::HasHaStandby => self.store.instance_in_role(run.database.id, InstanceRole::HaStandby).await?.is_some(),
            When::HaTierAfter => self.plan_after(run)?.tier().has_ha_standby(),
        })
    }

    /// What each step of a run does.
    async fn act(&self, step: Step, run: &mut Run, scene: &mut Scene) -> EngineResult<Value> {
        let name = run.database.name.clone();
        match (step, &scene.servers) {
            (Step::BeforeHook, _) => self.maintenance_hook(HookPoint::Before, run).await,
            (Step::AfterHook, _) => self.maintenance_hook(HookPoint::After, run).await,
            (Step::RestartStandby, _) => self.restart_standby(run).await,
            (Step::Checkpoint, Servers::InPlace { location, is_follower }) => {
                if !is_follower && self.provider.is_running(location).await? {
                    self.connect(location).await?.checkpoint().await?;
                }
                Ok(json!({}))
            }
            (Step::Checkpoint, Servers::Switch(switch)) => {
                // Not when the old primary is down (an earlier runner fenced it): `confirm_wal` starts it again.
                if let Some(old) = &switch.old_server {
                    if switch.candidate_server.is_in_recovery().await? {
                        old.checkpoint().await?;
                    }
                }
                Ok(json!({}))
            }
            (Step::Checkpoint, Servers::Patroni(api)) => self.checkpoint_leader(run, api).await,
            (Step::Restart, Servers::Patroni(api)) => self.restart_leader(api).await,
            (Step::WaitReady, Servers::Patroni(api)) => Ok(json!({ "leader": self.writable_leader(api, |_| true).await?.name })),
            (Step::RollReplicas, Servers::Patroni(api)) => self.roll_replicas(run, api).await,
            (Step::ChooseCandidate, Servers::Patroni(api)) => self.choose_candidate(api).await,
            (Step::MarkWal, Servers::Patroni(api)) => self.mark_wal(run, api).await,
            (Step::Handover, Servers::Patroni(api)) => self.handover(run, api).await,
            (Step::ConfirmWal, Servers::Patroni(api)) => self.confirm_handover(run, api).await,
            (Step::Repoint, Servers::Patroni(api)) => self.route_to_leader(run, api, &mut scene.admin).await,
            (Step::RollOldLeader, Servers::Patroni(api)) => self.roll_old_leader(run, api).await,
            (Step::Pause, _) => {
                let waited = scene.admin.pause(&name, PAUSE_TIMEOUT).await?;
                scene.paused_at = Some(Instant::now());
                Ok(json!({ "waited_ms": waited.as_secs_f64() * 1000.0 }))
            }
            (Step::Restart, Servers::InPlace { location, .. }) => {
                self.provider.restart(location).await?;
                Ok(json!({}))
            }
            (Step::WaitReady, Servers::InPlace { location, is_follower }) => self.wait_ready(location, *is_follower).await,
            (Step::ConfirmWal, Servers::Switch(switch)) => self.confirm_wal(switch, &mut scene.fencing).await,
            (Step::Fence, Servers::Switch(switch)) => self.fence(switch, &mut scene.fencing).await,
            (Step::Promote, Servers::Switch(switch)) => self.promote_candidate(switch, &mut scene.fencing).await,
            (Step::Promote, Servers::Unfollow { location, .. }) => self.promote_follower(location).await,
            (Step::Fork, Servers::Unfollow { leader, .. }) => self.fork_from_leader(run, leader).await,
            (Step::DropLeaderSlot, Servers::Unfollow { leader, .. }) => self.drop_leader_slot(run, leader).await,
            (Step::Repoint, Servers::Switch(switch)) => self.adopt_candidate(run, &switch.candidate, &switch.route, &mut scene.admin).await,
            (Step::Repoint, Servers::Copy { target, route, .. }) => self.adopt_candidate(run, target, route, &mut scene.admin).await,
            (Step::Resume, _) => {
                scene.admin.resume(&name).await?;
                if let Some(paused_at) = scene.paused_at {
                    self.store.set_write_pause(run.claim, paused_at.elapsed().as_secs_f64() * 1000.0).await?;
                }
                Ok(json!({}))
            }
            (Step::Release, _) => self.release_after_switch(run).await,
            (Step::RepointFollowers, Servers::Switch(switch)) => self.repoint_followers(run, switch).await,
            (Step::RetireStandby, _) => self.retire_ha_standby(run).await,
            (Step::RebuildStandby, _) => {
                let started = Instant::now();
                self.build_ha_standby(Writer::Runner(run.claim), run.database.id).await?;
                Ok(json!({ "seconds": started.elapsed().as_secs_f64() }))
            }
            (Step::RetireOld, Servers::Switch(Switch { old, .. }) | Servers::Copy { old, .. }) => {
                self.provider.retire(old).await?;
                Ok(json!({ "retired": old }))
            }
            (Step::BlockWrites, Servers::Copy { old, .. }) => self.block_writes(run, old).await,
            (Step::CopyData, Servers::Copy { old, target, .. }) => self.copy_into(run, old, &target.location).await,
            (step, _) => Err(EngineError::Invalid(format!("step {step} does not belong to the {} runbook", run.runbook.name()))),
        }
    }

    /// A step failed: its declared recovery, then (inside the pause) RESUME.
    /// The step's error stands if both succeed; otherwise the recovery's own
    /// failure is reported with it.
    async fn recover(&self, recovery: Recovery, run: &mut Run, scene: &mut Scene, error: EngineError) -> EngineError {
        let recovered = match (recovery, &scene.servers) {
            (Recovery::Retry, _) => Ok(()),
            (Recovery::StartServer, Servers::InPlace { location, .. }) => {
                self.provider.start(location, StartWait::UntilServing).await.map_err(EngineError::from)
            }
            (Recovery::ForwardOrBack, Servers::Switch(switch)) => self.forward_or_back(run, switch, scene.fencing, &mut scene.admin).await,
            (Recovery::FollowLeader, Servers::Patroni(api)) => self.route_to_leader(run, api, &mut scene.admin).await.map(drop),
            (Recovery::CallOffCopy, Servers::Copy { old, target, .. }) => self.call_off_copy(run, old, target).await,
            (Recovery::ForwardIfAdopted, Servers::Copy { old, target, .. }) => {
                let adopted = self.store.current_instance(run.database.id).await.is_ok_and(|current| current.id == target.id);
                // Forward if the state store names the new server already, else
                // back; either way the endpoint then routes where the store says.
                let settled = if adopted { Ok(()) } else { self.call_off_copy(run, old, target).await };
                settled.and(self.publish_routes().await)
            }
            (recovery, _) => Err(EngineError::Invalid(format!("recovery {recovery:?} does not fit the {} runbook", run.runbook.name()))),
        };
        let paused = run.done.contains(&Step::Pause) && !run.done.contains(&Step::Resume);
        let resumed = if paused { scene.admin.resume(&run.database.name).await.map_err(EngineError::from) } else { Ok(()) };
        match (recovered, resumed) {
            (Ok(()), Ok(())) => error,
            (Err(second), _) => EngineError::Recovery { error: Box::new(error), recovery: second.to_string() },
            (Ok(()), Err(second)) => EngineError::Recovery { error: Box::new(error), recovery: format!("RESUME failed: {second}") },
        }
    }

    /// A switch failed while paused. Observe, then leave exactly one writable
    /// primary: forward if the candidate was promoted, back to the old
    /// primary if it was not.
    ///
    /// Once this runner fenced the old primary it may have asked for the
    /// promotion, which can still be under way while the candidate says it
    /// is in recovery (a lost connection, a timeout): its replay must stand
    /// still first, as for a resumed runner (see `confirm_wal`), or the old
    /// primary could be started beside a candidate that goes on to promote.
    async fn forward_or_back(&self, run: &mut Run, switch: &Switch, fencing: Fencing, admin: &mut AdminConsole) -> EngineResult<()> {
        let candidate = &switch.candidate_server;
        let observed = async {
            if candidate.is_in_recovery().await? && fencing == Fencing::Fenced {
                self.replay_settled(candidate).await?;
            }
            Ok::<bool, EngineError>(!candidate.is_in_recovery().await?)
        };
        // Cannot tell: never restart the old primary on a guess.
        let promoted = observed.await.unwrap_or(true);
        if promoted {
            return self.step(run, Step::Repoint, async |engine: &Engine, run: &mut Run| engine.adopt_candidate(run, &switch.candidate, &switch.route, admin).await).await;
        }
        self.step(run, Step::Rollback, async |engine: &Engine, _: &mut Run| {
            engine.provider.start(&switch.old, StartWait::UntilServing).await?;
            engine.connect(&switch.old).await?.check_writable().await?;
            Ok(json!({ "restarted": switch.old }))
        })
        .await
    }

    /// Calls a copy off before the repoint: the old server takes writes again
    /// and the new one is stopped and retired.
    async fn call_off_copy(&self, run: &Run, old: &str, target: &InstanceRecord) -> EngineResult<()> {
        let writable = self.writable_again(run, old).await;
        if let Err(second) = self.provider.stop(&target.location, StopMode::Fast).await {
            tracing::warn!(database = %run.database.name, %second, "the abandoned copy target could not be stopped");
        }
        if let Err(second) = self.store.set_instance_role(Writer::Runner(run.claim), target.id, InstanceRole::Retired).await {
            tracing::warn!(database = %run.database.name, %second, "the abandoned copy target could not be retired");
        }
        writable
    }

    /// The plan the database is on once the maintenance completes.
    pub(super) fn plan_after(&self, run: &Run) -> EngineResult<crate::model::Plan> {
        match &run.maintenance.target_plan {
            Some(plan) => plan.parse().map_err(|e| EngineError::Invalid(format!("{e}"))),
            None => plan_of(&run.database),
        }
    }
}
