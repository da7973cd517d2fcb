//! Plan changes: `upgrade NAME PLAN`, the reference's `addons:upgrade`.
//!
//! From the standard tier up a database moves to a replacement built on the
//! new plan: `upgrade` requires a `plan-change` maintenance carrying the new
//! plan, the daemon prepares the replacement ahead (its progress recorded for
//! `info`), and the switch runs in the window or at `maintenance run` like any
//! switchover; the database takes the new plan when the switch completes and
//! followers are repointed. The essential tier has no replicas, so there the
//! change happens at once and by copy: the database refuses writes (clients
//! get SQLSTATE 25006, nothing acknowledged is lost), its data is copied into
//! a new server on the new plan and verified, the endpoint is repointed under
//! a short PAUSE, and writes resume on the new server.

use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use crate::model::{Plan, Progress, Reason, Strategy, Tier};
use crate::pg::copy::{self, CopyProgress};
use crate::store::{InstanceRecord, InstanceRole, Writer};

use super::control::MaintenanceView;
use super::fleet::plan_of;
use super::run::{Run, RunReport};
use super::runbook::Step;
use super::{Engine, EngineError, EngineResult, DEFAULT_COPY_WORKERS};

/// How long a scheduled plan change may wait for its window when the caller gives no deadline.
const DEFAULT_PLAN_CHANGE_WITHIN: TimeDelta = TimeDelta::days(7);

/// What `upgrade` did.
#[derive(Debug)]
pub struct PlanChange {
    /// The plan the database was on.
    pub from_plan: String,
    pub outcome: PlanChangeOutcome,
}

/// A plan-change maintenance now planned into the window, or (essential
/// tier) the change already carried out.
#[derive(Debug)]
pub enum PlanChangeOutcome {
    Scheduled(Box<MaintenanceView>),
    Done(RunReport),
}

impl Engine {
    /// `upgrade NAME PLAN`: see the module note. `required_by` bounds a
    /// scheduled plan change (a week from `now` when `None`; it must be in
    /// the future); the essential tier's runs at once.
    pub async fn upgrade(&self, name: &str, plan: &str, required_by: Option<DateTime<Utc>>, now: DateTime<Utc>) -> EngineResult<PlanChange> {
        let target: Plan = plan.parse().map_err(|e| EngineError::Invalid(format!("{e}")))?;
        let required_by = required_by.unwrap_or(now + DEFAULT_PLAN_CHANGE_WITHIN);
        if required_by <= now {
            return Err(EngineError::Invalid("required_by must be in the future".into()));
        }
        let database = self.store.database_named(name).await?;
        self.refuse_if_adopted(&database, "a plan change").await?;
        let current = plan_of(&database)?;
        let change = |outcome| PlanChange { from_plan: database.plan.clone(), outcome };
        if target == current {
            return Err(EngineError::Invalid(format!("{name} is already on {plan}")));
        }
        let is_follower = database.following_id.is_some();
        if target.tier() == Tier::Essential {
            if is_follower {
                return Err(EngineError::Refused(format!("{name} is a follower; followers need the standard tier or above")));
            }
            let followers = self.store.followers_of(database.id).await?;
            if !followers.is_empty() {
                let names: Vec<String> = followers.into_iter().map(|f| f.name).collect();
                return Err(EngineError::Refused(format!(
                    "{name} has followers ({}); essential databases cannot have followers: unfollow or destroy them first",
                    names.join(", ")
                )));
            }
        }
        let strategy = Strategy::choose(Reason::PlanChange, current.tier(), is_follower);
        if strategy != Strategy::Copy {
            let record = self.store.insert_maintenance(database.id, Reason::PlanChange.as_str(), strategy.as_str(), required_by, Some(plan)).await?;
            self.replan(&record, now).await?;
            let view = self.maintenance_view(&database).await?.ok_or_else(|| EngineError::Invalid("the maintenance vanished".into()))?;
            return Ok(change(PlanChangeOutcome::Scheduled(Box::new(view))));
        }
        let record = self.store.insert_maintenance(database.id, Reason::PlanChange.as_str(), strategy.as_str(), now, Some(plan)).await?;
        let at_once = "a plan change within the essential tier happens at once";
        self.store.schedule_maintenance(record.id, now, None, Some(at_once)).await?;
        Ok(change(PlanChangeOutcome::Done(self.run_maintenance(record.id).await?)))
    }

    /// A copy's preparation: an empty primary on the new plan, with the database created.
    pub(super) async fn prepare_copy_target(&self, run: &mut Run) -> EngineResult<Value> {
        let target = self.candidate_instance(run).await?;
        let plan = self.plan_after(run)?;
        self.provider.provision_primary(&target.location, &plan).await?;
        self.connect(&target.location).await?.ensure_database(&run.database.dbname).await?;
        // A new cluster: the database's roles are recreated there, as recorded.
        let credentials = self.credentials_of(&run.database).await?;
        self.apply_access(&target.location, &run.database, &credentials).await?;
        run.maintenance = self.store.maintenance(run.maintenance.id).await?;
        Ok(json!({ "target": target.location, "plan": plan.name() }))
    }

    /// `block_writes`: the database refuses writes (read-only by setting,
    /// its sessions ended under a PAUSE so no transaction in flight is cut).
    pub(super) async fn block_writes(&self, run: &Run, old: &str) -> EngineResult<Value> {
        let admin = self.provider.address(old).conninfo("postgres");
        let was_read_only = self.with_endpoint_paused(&run.database.name, copy::block_writes(&admin, &run.database.dbname)).await?;
        Ok(json!({ "was_read_only": was_read_only }))
    }

    /// Copies the old server's database into the target, recording progress.
    /// `copy_data`: the old server's database copied into the target and verified.
    pub(super) async fn copy_into(&self, run: &Run, old: &str, target: &str) -> EngineResult<Value> {
        let (source, destination) = (self.copy_side(old, &run.database), self.copy_side(target, &run.database));
        let latest: Mutex<Option<CopyProgress>> = Mutex::new(None);
        let on_progress = |progress: CopyProgress| {
            if let Ok(mut latest) = latest.lock() {
                *latest = Some(progress);
            }
        };
        let provider = self.provider.clone();
        let programs = move |name: &str| provider.client_program(name);
        let plan = self.plan_after(run)?.name().to_string();
        let work = async { Ok(copy::copy_database(&source, &destination, &programs, DEFAULT_COPY_WORKERS, &on_progress).await?) };
        let report = self
            .with_progress(run.claim, work, || {
                let seen = latest.lock().ok().and_then(|seen| seen.clone());
                std::future::ready(seen.map(|seen| Progress::Copying {
                    plan: plan.clone(),
                    done_bytes: seen.bytes,
                    total_bytes: seen.bytes_estimate,
                    tables_done: seen.tables_done,
                    tables_total: seen.tables_total,
                    eta_seconds: seen.eta_seconds,
                }))
            })
            .await?;
        Ok(json!({ "bytes": report.bytes, "rows": report.rows, "tables": report.tables.len(), "seconds": report.seconds }))
    }

    /// After a failed copy: the old server takes writes again (unless the
    /// database was read-only by its own setting before).
    pub(super) async fn writable_again(&self, run: &Run, old: &str) -> EngineResult<()> {
        let was_read_only = match self.store.steps(run.maintenance.id).await {
            Ok(steps) => steps
                .iter()
                .rev()
                .find(|s| s.step == Step::BlockWrites.name() && s.status == "done")
                .and_then(|s| s.detail["was_read_only"].as_bool())
                .unwrap_or(false),
            Err(_) => false,
        };
        let admin = self.provider.address(old).conninfo("postgres");
        self.with_endpoint_paused(&run.database.name, copy::restore_writes(&admin, &run.database.dbname, was_read_only)).await
    }

    /// The server a maintenance moves to: the one recorded, or a new one
    /// (recorded before it is built, so a crash mid-build is finished later).
    pub(super) async fn candidate_instance(&self, run: &mut Run) -> EngineResult<InstanceRecord> {
        if let Some(id) = run.maintenance.candidate_id {
            return Ok(self.store.instance(id).await?);
        }
        let old = self.store.current_instance(run.database.id).await?;
        let location = self.provider.new_location(&run.database.name);
        let slot = super::fleet::new_slot_name(&run.database.name);
        let instance = self.store.insert_instance(Writer::Runner(run.claim), run.database.id, InstanceRole::Replacement, &location, Some(&slot)).await?;
        self.store.set_maintenance_instances(run.claim, Some(instance.id), Some(old.id)).await?;
        run.maintenance = self.store.maintenance(run.maintenance.id).await?;
        Ok(instance)
    }

}
