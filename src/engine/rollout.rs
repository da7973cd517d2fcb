//! Fleet rollouts: one reason applied to a selection of databases in waves, a
//! canary first, each next wave required only once the previous one completed
//! (its checks passing) and baked, the whole halted by a failure beyond
//! `max_failures`.
//!
//! A rollout's state lives in the store; the scheduler leader advances it on
//! every pass ([`Engine::advance_rollouts`]), so it survives restarts and
//! changes of leader. Each step of it is a guarded transition: a second
//! daemon, or an operator's `pause` in between, makes the other a no-op.
//! The times `rollout plan` shows come from the pure planner
//! ([`crate::schedule::plan_rollout`]), which follows the rule applied here.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Labels, Reason, WaveSpec};
use crate::notify::{MailEvent, RolloutContext, RolloutEvent};
use crate::schedule::{self, Blackout, Known, WaveMember, Window};
use crate::store::{MaintenanceRecord, MaintenanceState, NewRollout, RolloutMember, RolloutRecord, RolloutState, StoreError};

use super::{Engine, EngineError, EngineResult};

/// The bake when the creator names none.
pub const DEFAULT_BAKE: TimeDelta = TimeDelta::hours(1);
/// The deadline when the creator names none: a week after creation.
pub const DEFAULT_ROLLOUT_DEADLINE: TimeDelta = TimeDelta::days(7);

/// `rollout create`: what the caller asks for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateRollout {
    /// 1-40 lowercase letters, digits, '-' or '_', starting with a letter.
    pub name: String,
    /// `os-patch`, `minor-upgrade`, `settings` or `periodic`.
    #[schema(example = "os-patch")]
    pub reason: String,
    /// Select every database with all these labels (or name them in `databases`).
    #[serde(default)]
    pub select: Labels,
    /// The databases, by name (or select them by label in `select`).
    #[serde(default)]
    pub databases: Vec<String>,
    /// Cumulative sizes, a count or a percentage, the last `100%`.
    #[schema(example = "1,10%,50%,100%")]
    pub waves: String,
    /// Time after a wave's last maintenance finished before the next is required (default 1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_seconds: Option<u64>,
    /// RFC 3339: every maintenance's deadline (default a week from now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub required_by: Option<String>,
    /// Failures tolerated before the rollout halts.
    #[serde(default)]
    pub max_failures: u32,
    /// The database to take first (otherwise the first by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// Emails told, with the failed database's owners, when the rollout halts.
    #[serde(default)]
    pub notify: Vec<String>,
}

/// A rollout, its waves and each database's maintenance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutView {
    pub name: String,
    pub reason: String,
    pub state: RolloutState,
    /// As given: `1,10%,50%,100%`.
    pub waves_spec: String,
    /// The wave being run or baked, from 1.
    pub wave: usize,
    pub bake_seconds: i64,
    /// While baking: when the next wave is required.
    pub bake_until: Option<DateTime<Utc>>,
    pub required_by: DateTime<Utc>,
    pub max_failures: i32,
    /// Databases whose maintenance failed (or whose check failed).
    pub failures: usize,
    pub watchers: Vec<String>,
    pub halted_because: Option<String>,
    pub created_at: DateTime<Utc>,
    pub waves: Vec<WaveView>,
}

/// One wave of a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WaveView {
    /// From 1.
    pub number: usize,
    pub databases: Vec<MemberView>,
}

/// A database of a rollout and its maintenance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    pub database: String,
    pub maintenance_id: Option<i64>,
    /// `waiting` (its wave has not started), or its maintenance's state
    /// (`pending`, `ready`, `running`, `completed`, `failed`, `held`, `cancelled`...).
    pub state: String,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, or why its check failed.
    pub error: Option<String>,
}

/// `rollout plan`: when each wave's databases would run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RolloutPlan {
    pub name: String,
    pub state: RolloutState,
    pub bake_seconds: i64,
    pub required_by: DateTime<Utc>,
    pub waves: Vec<WavePlanView>,
}

/// One wave of a plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WavePlanView {
    pub number: usize,
    /// When its maintenances may be required (now, or the bake's end).
    pub ready_at: DateTime<Utc>,
    /// When its last maintenance starts (or finished).
    pub ends_at: DateTime<Utc>,
    pub databases: Vec<MemberPlanView>,
}

/// When one database of a plan runs.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemberPlanView {
    pub database: String,
    /// When it starts (or finished, when `finished`).
    pub start: DateTime<Utc>,
    /// Outside its window: no window fits before the deadline.
    pub forced: bool,
    pub finished: bool,
}

/// What an operator does to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RolloutAction {
    /// Hold what has not started; `resume` continues.
    Pause,
    /// Continue a halted or paused rollout: failed databases get a new
    /// maintenance, held ones are planned again.
    Resume,
    /// Cancel what has not started, for good.
    Abort,
}

/// Failed, or completed with a failed check.
fn is_failure(m: &MaintenanceRecord) -> bool {
    m.state == MaintenanceState::Failed || (m.state == MaintenanceState::Completed && m.check_error.is_some())
}

fn is_finished(m: &MaintenanceRecord) -> bool {
    matches!(m.state, MaintenanceState::Completed | MaintenanceState::Failed | MaintenanceState::Cancelled)
}

/// The rollout's members and their newest maintenance each, by database.
struct Members {
    list: Vec<RolloutMember>,
    maintenances: HashMap<i64, MaintenanceRecord>,
}

impl Members {
    fn of_wave(&self, wave: i32) -> impl Iterator<Item = &RolloutMember> {
        self.list.iter().filter(move |m| m.wave == wave)
    }

    fn failures(&self) -> Vec<&MaintenanceRecord> {
        let mut failed: Vec<&MaintenanceRecord> = self.maintenances.values().filter(|m| is_failure(m)).collect();
        failed.sort_by_key(|m| m.id);
        failed
    }

    fn waves(&self) -> i32 {
        self.list.iter().map(|m| m.wave + 1).max().unwrap_or(0)
    }

    fn names_of_wave(&self, wave: i32) -> Vec<String> {
        self.of_wave(wave).map(|m| m.name.clone()).collect()
    }

    /// What a webhook about `rollout` at `wave` (0-based) says, about `databases`.
    fn context(&self, rollout: &RolloutRecord, wave: i32, databases: Vec<String>) -> RolloutContext {
        RolloutContext {
            rollout_id: rollout.id,
            name: rollout.name.clone(),
            reason: rollout.reason.clone(),
            wave: usize::try_from(wave + 1).unwrap_or(0),
            waves: usize::try_from(self.waves()).unwrap_or(0),
            databases,
            maintenance_id: None,
            bake_until: None,
            halted_because: None,
            held: 0,
        }
    }
}

impl Engine {
    /// `rollout create`: checks the request, records the rollout with its
    /// waves, and requires the first wave's maintenances at once.
    pub async fn create_rollout(&self, request: &CreateRollout, now: DateTime<Utc>) -> EngineResult<RolloutView> {
        super::fleet::validate_name(&request.name).map_err(|_| {
            EngineError::Invalid(format!("invalid rollout name {:?}: use 1-40 lowercase letters, digits, '-' or '_', starting with a letter", request.name))
        })?;
        let reason = request.reason.parse::<Reason>().map_err(|e| EngineError::Invalid(e.to_string()))?;
        if reason == Reason::PlanChange {
            return Err(EngineError::Invalid("a rollout cannot change plans: use `pgmaint upgrade` per database".into()));
        }
        let spec: WaveSpec = request.waves.parse().map_err(EngineError::Invalid)?;
        let bake = match request.bake_seconds {
            Some(seconds) => i64::try_from(seconds).ok().and_then(TimeDelta::try_seconds).ok_or_else(|| EngineError::Invalid("bake too long".into()))?,
            None => DEFAULT_BAKE,
        };
        let required_by = match &request.required_by {
            Some(text) => schedule::parse_timestamp(text).map_err(|e| EngineError::Invalid(format!("required_by: {e}")))?,
            None => now + DEFAULT_ROLLOUT_DEADLINE,
        };
        for watcher in &request.notify {
            watcher.parse::<lettre::Address>().map_err(|e| EngineError::Invalid(format!("{watcher:?} is not an email address: {e}")))?;
        }
        crate::model::check_labels(&request.select).map_err(EngineError::Invalid)?;
        let mut selected = match (request.select.is_empty(), request.databases.is_empty()) {
            (false, true) => self
                .store
                .databases()
                .await?
                .into_iter()
                .filter(|d| request.select.iter().all(|(k, v)| d.labels.0.get(k) == Some(v)))
                .collect::<Vec<_>>(),
            (true, false) => {
                let mut named = Vec::new();
                for name in &request.databases {
                    named.push(self.store.database_named(name).await?);
                }
                named.sort_by(|a, b| a.name.cmp(&b.name));
                named.dedup_by(|a, b| a.id == b.id);
                named
            }
            _ => return Err(EngineError::Invalid("select the databases either by label (select) or by name (databases)".into())),
        };
        if selected.is_empty() {
            return Err(EngineError::Refused("no database matches the selection".into()));
        }
        if let Some(canary) = &request.canary {
            let at = selected.iter().position(|d| &d.name == canary).ok_or_else(|| EngineError::Invalid(format!("the canary {canary} is not in the selection")))?;
            let first = selected.remove(at);
            selected.insert(0, first);
        }
        for database in &selected {
            if let Some(open) = self.store.open_maintenance(database.id).await? {
                return Err(EngineError::Refused(format!("{} already has maintenance #{} open ({})", database.name, open.id, open.state.as_str())));
            }
        }
        let mut members = Vec::with_capacity(selected.len());
        let mut databases = selected.iter();
        for (wave, size) in spec.split(selected.len()).into_iter().enumerate() {
            let wave = i32::try_from(wave).map_err(|_| EngineError::Invalid("too many waves".into()))?;
            members.extend(databases.by_ref().take(size).map(|d| (d.id, wave)));
        }
        let record = self
            .store
            .insert_rollout(
                &NewRollout {
                    name: &request.name,
                    reason: reason.as_str(),
                    waves_spec: &spec.to_string(),
                    bake_secs: bake.num_seconds(),
                    required_by,
                    max_failures: i32::try_from(request.max_failures).map_err(|_| EngineError::Invalid("max_failures too large".into()))?,
                    watchers: &request.notify,
                },
                &members,
            )
            .await?;
        let members = self.members(&record).await?;
        self.tell_webhooks(RolloutEvent::WaveStarted, &members.context(&record, 0, members.names_of_wave(0))).await;
        self.advance_rollout(&record, now).await?;
        self.rollout(&request.name).await
    }

    /// Advances every running or baking rollout (the scheduler leader's job).
    pub async fn advance_rollouts(&self, now: DateTime<Utc>) -> EngineResult<()> {
        for rollout in self.store.active_rollouts().await? {
            self.advance_rollout(&rollout, now).await?;
        }
        Ok(())
    }

    async fn members(&self, rollout: &RolloutRecord) -> EngineResult<Members> {
        let list = self.store.rollout_members(rollout.id).await?;
        let maintenances = self.store.rollout_maintenances(rollout.id).await?.into_iter().map(|m| (m.database_id, m)).collect();
        Ok(Members { list, maintenances })
    }

    /// One step of a running or baking rollout: halt on too many failures;
    /// require the current wave's missing maintenances; bake once the wave
    /// has finished; after the bake, the next wave; completed after the last.
    async fn advance_rollout(&self, rollout: &RolloutRecord, now: DateTime<Utc>) -> EngineResult<()> {
        let members = self.members(rollout).await?;
        let failures = members.failures();
        if failures.len() > usize::try_from(rollout.max_failures).unwrap_or(0) {
            return self.halt(rollout, &members, &failures).await;
        }
        match rollout.state {
            RolloutState::Running => {
                let mut finished_at = Vec::new();
                for member in members.of_wave(rollout.wave) {
                    match members.maintenances.get(&member.database_id) {
                        Some(m) if is_finished(m) => finished_at.push(m.finished_at.unwrap_or(now)),
                        Some(_) => {}
                        None => self.require_member(rollout, &members, member.database_id, now).await?,
                    }
                }
                if finished_at.len() < members.of_wave(rollout.wave).count() {
                    return Ok(());
                }
                if rollout.wave + 1 >= members.waves() {
                    if self.store.transition_rollout(rollout.id, &[RolloutState::Running], RolloutState::Completed, None).await? {
                        let every = members.list.iter().map(|m| m.name.clone()).collect();
                        self.tell_webhooks(RolloutEvent::Completed, &members.context(rollout, rollout.wave, every)).await;
                    }
                } else {
                    let last = finished_at.into_iter().max().unwrap_or(now);
                    let until = last + TimeDelta::seconds(rollout.bake_secs);
                    if self.store.start_bake(rollout.id, rollout.wave, until).await? {
                        let ctx = RolloutContext { bake_until: Some(until), ..members.context(rollout, rollout.wave, members.names_of_wave(rollout.wave)) };
                        self.tell_webhooks(RolloutEvent::Baking, &ctx).await;
                    }
                }
            }
            // Baked: on to the next wave (a guarded move, so one caller requires it).
            RolloutState::Baking
                if rollout.bake_until.is_none_or(|until| until <= now) && self.store.next_wave(rollout.id, rollout.wave).await? =>
            {
                let next = rollout.wave + 1;
                self.tell_webhooks(RolloutEvent::WaveStarted, &members.context(rollout, next, members.names_of_wave(next))).await;
                for member in members.of_wave(next) {
                    self.require_member(rollout, &members, member.database_id, now).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Requires the rollout's maintenance of one database and plans it. A
    /// database that has a maintenance open for something else halts the rollout.
    async fn require_member(&self, rollout: &RolloutRecord, members: &Members, database_id: i64, now: DateTime<Utc>) -> EngineResult<()> {
        let database = self.store.database(database_id).await?;
        let reason = rollout.reason.parse::<Reason>().map_err(|e| EngineError::Invalid(e.to_string()))?;
        match self.require_for(&database, reason, rollout.required_by, Some(rollout.id)).await {
            Ok(record) => {
                self.replan(&record, now).await?;
                Ok(())
            }
            Err(EngineError::Store(StoreError::Conflict(_))) => {
                // Required already by another caller advancing this rollout (the leader and `create`): nothing to do.
                let open = self.store.open_maintenance(database.id).await?;
                if open.is_some_and(|m| m.rollout_id == Some(rollout.id)) {
                    return Ok(());
                }
                let because = format!("{} has another maintenance open", database.name);
                self.halt_because(rollout, members, &because, &[]).await
            }
            Err(error) => Err(error),
        }
    }

    /// Too many failures: the rollout halts, what has not started is held,
    /// and the failed databases' owners and the watchers are told.
    async fn halt(&self, rollout: &RolloutRecord, members: &Members, failures: &[&MaintenanceRecord]) -> EngineResult<()> {
        let mut names = Vec::new();
        for failed in failures {
            let database = self.store.database(failed.database_id).await?;
            let why = failed.error.as_deref().or(failed.check_error.as_deref()).unwrap_or("unknown error");
            names.push(format!("{} (maintenance #{}: {why})", database.name, failed.id));
        }
        let because = format!("{} failed: {}", if failures.len() == 1 { "a database" } else { "databases" }, names.join("; "));
        self.halt_because(rollout, members, &because, failures).await
    }

    async fn halt_because(&self, rollout: &RolloutRecord, members: &Members, because: &str, failures: &[&MaintenanceRecord]) -> EngineResult<()> {
        if !self.store.transition_rollout(rollout.id, &[RolloutState::Running, RolloutState::Baking], RolloutState::Halted, Some(because)).await? {
            return Ok(());
        }
        let held = self.store.hold_rollout_maintenances(rollout.id).await?;
        tracing::warn!(rollout = %rollout.name, held, because, "rollout halted");
        let mut failed_names = Vec::new();
        for failed in failures {
            failed_names.push(self.store.database(failed.database_id).await?.name);
        }
        let ctx = RolloutContext {
            maintenance_id: failures.first().map(|m| m.id),
            halted_because: Some(because.to_string()),
            held,
            ..members.context(rollout, rollout.wave, failed_names)
        };
        self.tell_webhooks(RolloutEvent::Halted, &ctx).await;
        for failed in failures {
            let database = self.store.database(failed.database_id).await?;
            let recipients: Vec<String> = database.owners.iter().chain(&rollout.watchers).cloned().collect();
            let status = format!(
                "Rollout {} halted at wave {} of {}: {held} maintenance(s) held until `pgmaint rollout resume {}`",
                rollout.name,
                rollout.wave + 1,
                members.waves(),
                rollout.name
            );
            self.tell(failed, MailEvent::RolloutHalted, &recipients, Some(status)).await;
        }
        Ok(())
    }

    /// `rollout pause|resume|abort`.
    pub async fn act_on_rollout(&self, name: &str, action: RolloutAction, now: DateTime<Utc>) -> EngineResult<RolloutView> {
        let rollout = self.store.rollout_named(name).await?;
        let refused = |what: &str| EngineError::Refused(format!("rollout {name} is {}: it cannot be {what}", rollout.state.as_str()));
        match action {
            RolloutAction::Pause => {
                if !self.store.transition_rollout(rollout.id, &[RolloutState::Running, RolloutState::Baking], RolloutState::Paused, None).await? {
                    return Err(refused("paused"));
                }
                self.store.hold_rollout_maintenances(rollout.id).await?;
            }
            RolloutAction::Resume => {
                if !matches!(rollout.state, RolloutState::Halted | RolloutState::Paused) {
                    return Err(refused("resumed"));
                }
                // While it is still halted (the leader leaves it alone), the
                // failed databases get new maintenances and the held ones are
                // released; only then does it run again, so the leader never
                // sees it running with the old failures.
                let members = self.members(&rollout).await?;
                for failed in members.failures() {
                    self.require_member(&rollout, &members, failed.database_id, now).await?;
                }
                for held in self.store.release_rollout_maintenances(rollout.id).await? {
                    self.replan(&held, now).await?;
                }
                if !self.store.transition_rollout(rollout.id, &[RolloutState::Halted, RolloutState::Paused], RolloutState::Running, None).await? {
                    return Err(refused("resumed"));
                }
                let rollout = self.store.rollout_named(name).await?;
                self.advance_rollout(&rollout, now).await?;
            }
            RolloutAction::Abort => {
                let live = [RolloutState::Running, RolloutState::Baking, RolloutState::Halted, RolloutState::Paused];
                if !self.store.transition_rollout(rollout.id, &live, RolloutState::Aborted, None).await? {
                    return Err(refused("aborted"));
                }
                self.store.cancel_rollout_maintenances(rollout.id).await?;
            }
        }
        self.rollout(name).await
    }

    /// `rollout show`.
    pub async fn rollout(&self, name: &str) -> EngineResult<RolloutView> {
        let rollout = self.store.rollout_named(name).await?;
        self.rollout_view(rollout).await
    }

    /// `rollout list`: every rollout, oldest first.
    pub async fn rollouts(&self) -> EngineResult<Vec<RolloutView>> {
        let mut views = Vec::new();
        for rollout in self.store.rollouts().await? {
            views.push(self.rollout_view(rollout).await?);
        }
        Ok(views)
    }

    async fn rollout_view(&self, rollout: RolloutRecord) -> EngineResult<RolloutView> {
        let members = self.members(&rollout).await?;
        let mut waves: Vec<WaveView> = (0..members.waves()).map(|w| WaveView { number: w as usize + 1, databases: Vec::new() }).collect();
        for member in &members.list {
            let m = members.maintenances.get(&member.database_id);
            waves[member.wave as usize].databases.push(MemberView {
                database: member.name.clone(),
                maintenance_id: m.map(|m| m.id),
                state: m.map_or("waiting", |m| m.state.as_str()).to_string(),
                scheduled_for: m.and_then(|m| m.scheduled_for),
                started_at: m.and_then(|m| m.started_at),
                finished_at: m.and_then(|m| m.finished_at),
                error: m.and_then(|m| m.error.clone().or_else(|| m.check_error.clone())),
            });
        }
        Ok(RolloutView {
            failures: members.failures().len(),
            wave: rollout.wave as usize + 1,
            name: rollout.name,
            reason: rollout.reason,
            state: rollout.state,
            waves_spec: rollout.waves_spec,
            bake_seconds: rollout.bake_secs,
            bake_until: rollout.bake_until,
            required_by: rollout.required_by,
            max_failures: rollout.max_failures,
            watchers: rollout.watchers,
            halted_because: rollout.halted_because,
            created_at: rollout.created_at,
            waves,
        })
    }

    /// `rollout plan`: when each wave's databases would run from now, by the
    /// pure planner, from what the store knows of each maintenance.
    pub async fn plan_rollout(&self, name: &str, now: DateTime<Utc>) -> EngineResult<RolloutPlan> {
        let rollout = self.store.rollout_named(name).await?;
        let members = self.members(&rollout).await?;
        let mut inputs: Vec<(String, i32, Window, TimeDelta, Vec<Blackout>, Known)> = Vec::new();
        for member in &members.list {
            let database = self.store.database(member.database_id).await?;
            let (window, length) = self.window_of(&database)?;
            let blackouts = self.store.blackouts(database.id).await?.into_iter().filter_map(|(s, e)| Blackout::new(s, e)).collect();
            let known = match members.maintenances.get(&member.database_id) {
                Some(m) if is_finished(m) => Known::Finished(m.finished_at.unwrap_or(now)),
                Some(m) if m.state != MaintenanceState::Held => match m.scheduled_for {
                    Some(at) => Known::Scheduled { at, forced: m.forced },
                    None => Known::Nothing,
                },
                _ => Known::Nothing,
            };
            inputs.push((member.name.clone(), member.wave, window, length, blackouts, known));
        }
        let mut waves: Vec<Vec<WaveMember<'_>>> = vec![Vec::new(); members.waves() as usize];
        for (_, wave, window, length, blackouts, known) in &inputs {
            waves[*wave as usize].push(WaveMember { window, length: *length, blackouts, known: *known });
        }
        let planned = schedule::plan_rollout(&waves, TimeDelta::seconds(rollout.bake_secs), rollout.required_by, now)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let mut names = inputs.iter().map(|(name, ..)| name.clone());
        let waves = planned
            .into_iter()
            .enumerate()
            .map(|(i, wave)| WavePlanView {
                number: i + 1,
                ready_at: wave.ready_at,
                ends_at: wave.ends_at,
                databases: wave
                    .members
                    .iter()
                    .map(|p| MemberPlanView { database: names.next().unwrap_or_default(), start: p.start, forced: p.forced, finished: p.finished })
                    .collect(),
            })
            .collect();
        Ok(RolloutPlan { name: rollout.name, state: rollout.state, bake_seconds: rollout.bake_secs, required_by: rollout.required_by, waves })
    }
}
