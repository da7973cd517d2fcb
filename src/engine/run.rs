//! Running one maintenance: claim it, prepare what it needs, run its steps,
//! and close it as completed, postponed or failed.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::model::{Progress, Strategy};
use super::runbook::{Runbook, Step};
use crate::notify::MailEvent;
use crate::store::{Claim, DatabaseRecord, MaintenanceRecord, MaintenanceState, StepStatus};

use super::jobs::{self, Entry, JobEnd, JobKind};
use super::{Engine, EngineError, EngineResult, Phase};

/// How often a long preparation's progress is recorded.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a finished run measured.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub maintenance_id: i64,
    pub strategy: Strategy,
    /// `completed`, or `postponed: <why>`.
    pub outcome: String,
    /// Why the run was called off and the maintenance postponed (`None`: it completed).
    pub postponed_because: Option<String>,
    /// From PAUSE done to RESUME done, as the runner measured it.
    pub write_pause: Option<Duration>,
    /// Each step of this run with how long it took.
    pub steps: Vec<(String, Duration)>,
}

/// One claimed maintenance being run: what every step needs to know.
pub(super) struct Run {
    pub claim: Claim,
    pub maintenance: MaintenanceRecord,
    pub database: DatabaseRecord,
    pub strategy: Strategy,
    /// The steps this run takes, declared.
    pub runbook: Runbook,
    /// Steps already done in this attempt (by an earlier, interrupted runner).
    pub(super) done: HashSet<Step>,
    pub timings: Vec<(String, Duration)>,
    /// Inside the endpoint's pause, step records wait here and are written
    /// in one transaction after RESUME (see `Engine::step`).
    pub(super) paused_records: Option<PausedRecords>,
}

/// The records of a paused section: written as one batch at each end, none inside.
#[derive(Default)]
pub(super) struct PausedRecords {
    /// Steps after PAUSE whose intent is written together with PAUSE's own, before it.
    pub intents: Vec<Step>,
    /// Outcomes of PAUSE and the steps done inside the pause, written after RESUME.
    pub outcomes: Vec<(Step, Value)>,
    /// The batch of intents has been written: the section is open.
    pub open: bool,
}

impl Engine {
    /// Runs maintenance `id` now: claims it, prepares its replacement if that is
    /// not ready yet, and carries it out. Safe to call again after a crash.
    /// When another task of this process is already at it, this call joins it:
    /// it waits for a preparation to end and then runs, or waits for the run
    /// and reports that run's outcome.
    pub async fn run_maintenance(&self, id: i64) -> EngineResult<RunReport> {
        loop {
            match self.jobs.enter(id, JobKind::Run) {
                Entry::Mine(job) => {
                    let result = self.claim_and_run(id).await;
                    job.finish(JobEnd::of(&result, |report| JobEnd::Ran(report.clone())));
                    return result;
                }
                Entry::Theirs(kind, ended) => match (kind, jobs::ended(ended).await) {
                    (JobKind::Run, JobEnd::Ran(report)) => return Ok(report),
                    (JobKind::Run, JobEnd::Failed { kind, message }) => return Err(EngineError::Joined { kind, message }),
                    // A preparation ended (or a task was cancelled): run it now.
                    _ => continue,
                },
            }
        }
    }

    async fn claim_and_run(&self, id: i64) -> EngineResult<RunReport> {
        let claim = self.claim(id).await?;
        let id = claim.maintenance_id;
        let _renewal = self.keep_claimed(claim);
        let mut run = self.start_run(claim).await?;
        if matches!(run.maintenance.state, MaintenanceState::Pending | MaintenanceState::Preparing) {
            self.prepare_claimed(&mut run).await?;
        }
        self.store.set_maintenance_state(claim, MaintenanceState::Running).await?;
        self.tell_owners(&run.maintenance, MailEvent::Started).await;
        let result = self.execute(&mut run).await;
        let latest = self.store.maintenance(id).await?;
        let write_pause = latest.write_pause_ms.map(|ms| Duration::from_secs_f64(ms / 1000.0));
        let (outcome, postponed_because) = match result {
            Ok(()) => {
                self.store.finish_maintenance(claim, MaintenanceState::Completed, "completed", None, None).await?;
                self.tell_owners(&run.maintenance, MailEvent::Completed).await;
                ("completed".to_string(), None)
            }
            Err(EngineError::Postponed(why)) => {
                self.store.record_step(claim, Step::Postponed.name(), StepStatus::Done, json!({ "why": why })).await?;
                self.store.set_maintenance_state(claim, MaintenanceState::Ready).await?;
                self.store.release_claim(claim).await?;
                self.tell_owners(&run.maintenance, MailEvent::Postponed).await;
                // The next window, not right away again.
                let latest = self.store.maintenance(id).await?;
                self.replan(&latest, chrono::Utc::now() + chrono::TimeDelta::minutes(1)).await?;
                (format!("postponed: {why}"), Some(why))
            }
            Err(error) => {
                let message = error.to_string();
                self.store.finish_maintenance(claim, MaintenanceState::Failed, "failed", Some(&message), None).await?;
                self.tell_owners(&run.maintenance, MailEvent::Failed).await;
                return Err(error);
            }
        };
        Ok(RunReport { maintenance_id: id, strategy: run.strategy, outcome, postponed_because, write_pause, steps: run.timings })
    }

    /// Prepares maintenance `id` ahead of its window (a switchover's
    /// replacement). Nothing to do when a task of this process is already
    /// preparing or running it.
    pub async fn prepare_maintenance(&self, id: i64) -> EngineResult<()> {
        let Entry::Mine(job) = self.jobs.enter(id, JobKind::Prepare) else { return Ok(()) };
        let result = self.claim_and_prepare(id).await;
        job.finish(JobEnd::of(&result, |()| JobEnd::Prepared));
        result
    }

    async fn claim_and_prepare(&self, id: i64) -> EngineResult<()> {
        let claim = self.claim(id).await?;
        let _renewal = self.keep_claimed(claim);
        let mut run = self.start_run(claim).await?;
        self.prepare_claimed(&mut run).await?;
        self.store.release_claim(claim).await?;
        Ok(())
    }

    async fn claim(&self, id: i64) -> EngineResult<Claim> {
        self.store.claim_maintenance(id, &self.node, self.claim_lease.as_secs_f64()).await?.ok_or(EngineError::Busy(id))
    }

    /// Renews the claim every third of its lease while the returned guard lives,
    /// so a long step (a big pg_basebackup) is not mistaken for a dead runner.
    fn keep_claimed(&self, claim: Claim) -> RenewalGuard {
        let store = self.store.clone();
        let lease = self.claim_lease;
        RenewalGuard(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                if let Err(error) = store.renew_claim(claim, lease.as_secs_f64()).await {
                    tracing::warn!(maintenance = claim.maintenance_id, %error, "claim renewal failed");
                    return;
                }
            }
        }))
    }

    async fn start_run(&self, claim: Claim) -> EngineResult<Run> {
        let maintenance = self.store.maintenance(claim.maintenance_id).await?;
        if matches!(maintenance.state, MaintenanceState::Completed | MaintenanceState::Failed) {
            return Err(EngineError::Invalid(format!("maintenance #{} is already {}", maintenance.id, maintenance.state.as_str())));
        }
        let database = self.store.database(maintenance.database_id).await?;
        let strategy: Strategy = maintenance.strategy.parse().map_err(EngineError::Invalid)?;
        let runbook = Runbook::choose(strategy, database.following_id.is_some(), maintenance.target_plan.is_some());
        let mut done = HashSet::new();
        for name in self.store.steps_done_since(maintenance.id, Step::Postponed.name()).await? {
            done.insert(Step::from_name(&name).ok_or_else(|| EngineError::Invalid(format!("maintenance #{}: unknown step {name:?} in its log", maintenance.id)))?);
        }
        Ok(Run { claim, maintenance, database, strategy, runbook, done, timings: Vec::new(), paused_records: None })
    }

    /// The runbook's preparation step, if it has one.
    async fn prepare_claimed(&self, run: &mut Run) -> EngineResult<()> {
        if let Some(step) = run.runbook.preparation() {
            if step != Step::CheckStandby {
                self.store.set_maintenance_state(run.claim, MaintenanceState::Preparing).await?;
            }
            self.step(run, step, async |engine: &Engine, run: &mut Run| engine.prepare(step, run).await).await?;
        }
        self.store.set_maintenance_state(run.claim, MaintenanceState::Ready).await?;
        run.maintenance = self.store.maintenance(run.maintenance.id).await?;
        Ok(())
    }

    /// Runs `work`, recording what `observe` sees of it about once a second
    /// (for `info` and `maintenance show`).
    pub(super) async fn with_progress<T, Seen>(
        &self,
        claim: Claim,
        work: impl std::future::Future<Output = EngineResult<T>>,
        observe: impl Fn() -> Seen,
    ) -> EngineResult<T>
    where
        Seen: std::future::Future<Output = Option<Progress>>,
    {
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => return result,
                () = tokio::time::sleep(PROGRESS_EVERY) => {
                    if let Some(progress) = observe().await {
                        self.record_progress(claim, &progress).await;
                    }
                }
            }
        }
    }

    /// Records progress; a failure to record it never stops the work.
    pub(super) async fn record_progress(&self, claim: Claim, progress: &Progress) {
        let recorded = match serde_json::to_string(progress) {
            Ok(text) => self.store.set_progress(claim, &text).await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = recorded {
            tracing::warn!(maintenance = claim.maintenance_id, %error, "progress not recorded");
        }
    }

    /// One step of the runbook: skipped if an earlier runner finished it;
    /// otherwise its intent is recorded, it acts (observing first), and its
    /// result is recorded. Failpoints sit on both sides of the action.
    ///
    /// Nothing is written to the state store while the endpoint is paused
    /// (`run.paused_records`): the intents of PAUSE and of every step up to
    /// RESUME go out as one batch before PAUSE, and their outcomes as one
    /// batch once RESUME is done. This is safe because every paused step
    /// observes before it acts, PAUSE included (pausing a paused database is
    /// a no-op): a runner that dies in between leaves intents without
    /// outcomes, and its successor repeats those steps, which find their
    /// work done; a paused endpoint is resumed by the recovery of whichever
    /// step fails.
    pub(super) async fn step<F>(&self, run: &mut Run, step: Step, act: F) -> EngineResult<()>
    where
        F: AsyncFnOnce(&Engine, &mut Run) -> EngineResult<Value>,
    {
        if run.done.contains(&step) {
            return Ok(());
        }
        let name = step.name();
        let started = std::time::Instant::now();
        match run.paused_records.as_mut() {
            Some(records) if records.open => {}
            Some(records) => {
                // The step that opens the section (PAUSE): its intent and those of every step up to RESUME, at once.
                let mut batch = vec![(name, StepStatus::Intent, json!({}))];
                batch.extend(records.intents.iter().map(|s| (s.name(), StepStatus::Intent, json!({}))));
                self.store.record_steps(run.claim, &batch).await?;
                records.open = true;
            }
            None => self.store.record_step(run.claim, name, StepStatus::Intent, json!({})).await?,
        }
        let acted = match self.failpoint(name, Phase::Before).await {
            Ok(()) => act(self, run).await,
            Err(failed) => Err(failed.into()),
        };
        let acted = match acted {
            Ok(detail) => self.failpoint(name, Phase::After).await.map(|()| detail).map_err(EngineError::from),
            failed => failed,
        };
        match acted {
            Ok(detail) => {
                self.record_outcome(run, step, detail).await?;
                run.done.insert(step);
                run.timings.push((name.to_string(), started.elapsed()));
                Ok(())
            }
            Err(error) => {
                self.flush_paused_records(run).await?;
                self.store.record_step(run.claim, name, StepStatus::Failed, json!({ "error": error.to_string() })).await?;
                Err(error)
            }
        }
    }

    /// A step's outcome: written now, or with the paused section's batch.
    async fn record_outcome(&self, run: &mut Run, step: Step, detail: Value) -> EngineResult<()> {
        match run.paused_records.as_mut() {
            Some(records) => {
                records.outcomes.push((step, detail));
                if step == Step::Resume {
                    self.flush_paused_records(run).await?;
                }
            }
            None => self.store.record_step(run.claim, step.name(), StepStatus::Done, detail).await?,
        }
        Ok(())
    }

    /// Writes the outcomes held back in the paused section and closes it.
    pub(super) async fn flush_paused_records(&self, run: &mut Run) -> EngineResult<()> {
        let Some(records) = run.paused_records.take() else { return Ok(()) };
        let batch: Vec<(&str, StepStatus, Value)> = records.outcomes.into_iter().map(|(s, detail)| (s.name(), StepStatus::Done, detail)).collect();
        self.store.record_steps(run.claim, &batch).await?;
        Ok(())
    }
}

/// Stops a claim's renewal when the run that holds it ends.
struct RenewalGuard(tokio::task::JoinHandle<()>);

impl Drop for RenewalGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}
