//! What the control verbs ask of the engine: views of databases and their
//! maintenance, planning and re-planning, windows, running on demand, waiting,
//! destroying, and apps with their maintenance mode.
//!
//! The views and requests here are also the control API's wire types (hence
//! `Deserialize` and `ToSchema`): the server answers with them, and the client
//! and the CLI read them back, so there is one definition of each answer.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{check_labels, check_label_key, Labels, PendingStatus, Plan, Progress, Reason, Replacement, Strategy, NO_MAINTENANCE};
use crate::notify::MailEvent;
use crate::schedule::{self, Blackout, Window};
use crate::store::{AppHooks, AppRecord, DatabaseRecord, InstanceRole, MaintenanceRecord, MaintenanceState};

use super::fleet::DatabaseSpec;
use super::runbook::Runbook;
use super::releases::ReleaseOutcome;
use super::run::RunReport;
use super::{Engine, EngineError, EngineResult};

/// The window of a database created without one, unless the configuration's
/// `[maintenance] default_window` says otherwise ([`Engine::with_default_window`]).
pub const DEFAULT_WINDOW: &str = "Sunday 02:00 UTC";

/// A primary, or a streaming follower of another database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Follower,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Follower => "follower",
        }
    }
}

/// `databases create`: what the caller asks for. Without a window the
/// database gets the engine's default; every window lasts 4 hours.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateDatabase {
    /// 1-40 lowercase letters, digits, '-' or '_', starting with a letter.
    pub name: String,
    /// `<tier>-<size>`, tier one of essential, standard, premium, private, shield.
    #[schema(example = "standard-0")]
    pub plan: String,
    /// Make it a streaming follower of this database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<String>,
    /// `Sunday 14:30 [ZONE]`; the daemon's `[maintenance] default_window`
    /// (`Sunday 02:00 UTC` unless configured) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Sunday 14:30 Europe/Berlin")]
    pub window: Option<String>,
    /// Emails told before and after each maintenance.
    #[serde(default)]
    pub owners: Vec<String>,
    /// `KEY=VALUE` labels a rollout can select by.
    #[serde(default)]
    pub labels: Labels,
}

/// One line of `databases list`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatabaseSummary {
    pub name: String,
    pub plan: String,
    pub role: Role,
    pub following: Option<String>,
    pub status: String,
    /// `Tuesdays 14:30 to 18:30 UTC`.
    pub window: String,
    pub labels: Labels,
}

/// The `info` block.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatabaseInfo {
    pub name: String,
    pub plan: String,
    pub role: Role,
    pub status: String,
    /// `postgresql://ROLE:PASSWORD@HOST:PORT/DB`: the database's own login over TCP.
    pub endpoint_url: String,
    /// When its credentials were last rotated (`None`: never).
    pub credentials_rotated_at: Option<chrono::DateTime<chrono::Utc>>,
    pub following: Option<String>,
    pub forked_from: Option<String>,
    /// Commits the follower is behind its leader.
    pub behind_by: Option<i64>,
    /// Within 200 commits of its leader (the reference's "caught up").
    pub caught_up: Option<bool>,
    /// `available`, or why not; `None` on tiers without HA.
    pub ha: Option<String>,
    pub data_size_bytes: Option<i64>,
    pub maintenance: Option<MaintenanceView>,
    /// `Tuesdays 14:30 to 18:30 UTC`.
    pub window: String,
    pub labels: Labels,
    /// An adopted Patroni cluster's leader (by member name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// An adopted Patroni cluster's timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// An adopted Patroni cluster's members, as Patroni and each member report them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<super::PatroniMemberView>>,
}

/// A pending maintenance as the verbs show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MaintenanceView {
    pub id: i64,
    /// `os-patch`, `minor-upgrade`, `settings`, `plan-change`, `periodic`, or `unfollow` (`databases unfollow`).
    pub reason: String,
    pub strategy: Strategy,
    pub state: MaintenanceState,
    pub step: Option<String>,
    pub required_by: DateTime<Utc>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub forced: bool,
    pub forced_reason: Option<String>,
    pub replacement: Option<Replacement>,
    /// The one-line status in the reference's wording.
    pub status_line: String,
    /// The `Maintenance:` field of `info`.
    pub info_field: String,
    /// A plan change's new plan.
    pub target_plan: Option<String>,
    /// What its preparation (or copy) is doing, as its runner last recorded it.
    pub progress: Option<Progress>,
    /// The same in words: `replacement on standard-4: base backup 45% (...)`.
    pub progress_line: Option<String>,
}

/// `maintenance show`: the open maintenance, if any, and its one-line status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MaintenanceStatus {
    pub maintenance: Option<MaintenanceView>,
    /// The one-line status, or `No maintenance required`.
    pub status_line: String,
}

impl MaintenanceStatus {
    fn of(maintenance: Option<MaintenanceView>) -> MaintenanceStatus {
        let status_line = maintenance.as_ref().map_or_else(|| NO_MAINTENANCE.to_string(), |m| m.status_line.clone());
        MaintenanceStatus { maintenance, status_line }
    }
}

/// `maintenance window`: the new window and the maintenance re-planned into it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WindowStatus {
    /// `Wednesdays 14:30 to 18:30 UTC`.
    pub window: String,
    #[serde(flatten)]
    pub status: MaintenanceStatus,
}

/// One line of `maintenance history`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub id: i64,
    pub strategy: String,
    pub reason: String,
    pub state: MaintenanceState,
    pub required_by: DateTime<Utc>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub write_pause_ms: Option<f64>,
    /// `completed` or `failed`.
    pub outcome: Option<String>,
    /// Why it failed (a failed before_maintenance hook: its last lines of output).
    pub error: Option<String>,
    /// Why its check (the after_maintenance hook) failed; `null` when it passed or none is configured.
    pub check_error: Option<String>,
}

/// An app and its maintenance mode.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppView {
    pub name: String,
    pub maintenance: bool,
    /// The release a change made (v1 when the app is created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseOutcome>,
}

/// The fleet's figures `/metrics` reads from the state store at each scrape.
#[derive(Debug, Clone)]
pub struct StoreGauges {
    /// Maintenances per state (only the states that have some).
    pub maintenances_by_state: Vec<(String, i64)>,
    /// Owner mails recorded and not sent yet.
    pub outbox_depth: i64,
}

impl Engine {
    /// `databases create`: checks the request, creates the database (in the
    /// default window when it names none) and answers with its info once it
    /// is available.
    pub async fn create_requested_database(&self, request: &CreateDatabase) -> EngineResult<DatabaseInfo> {
        let plan: Plan = request.plan.parse().map_err(|e| EngineError::Invalid(format!("{e}")))?;
        check_labels(&request.labels).map_err(EngineError::Invalid)?;
        let window_text = request.window.as_deref().unwrap_or(&self.default_window);
        let window: Window = window_text.parse().map_err(|e| EngineError::Invalid(format!("window {window_text:?}: {e}")))?;
        for owner in &request.owners {
            owner.parse::<lettre::Address>().map_err(|e| EngineError::Invalid(format!("owner {owner:?} is not an email address: {e}")))?;
        }
        let spec = DatabaseSpec {
            name: request.name.clone(),
            plan,
            follow: request.follow.clone(),
            window: window.to_string(),
            window_length: Duration::from_secs(schedule::DEFAULT_WINDOW_LENGTH.num_seconds().unsigned_abs()),
            owners: request.owners.clone(),
            labels: request.labels.clone(),
        };
        self.create_database(&spec).await?;
        self.info(&spec.name).await
    }

    pub async fn list_databases(&self) -> EngineResult<Vec<DatabaseSummary>> {
        let mut out = Vec::new();
        for database in self.store.databases().await? {
            out.push(DatabaseSummary {
                following: self.leader_name(&database).await?,
                role: role_of(&database),
                window: self.window_display(&database)?,
                labels: database.labels.0,
                name: database.name,
                plan: database.plan,
                status: database.status,
            });
        }
        Ok(out)
    }

    async fn leader_name(&self, database: &DatabaseRecord) -> EngineResult<Option<String>> {
        Ok(match database.following_id {
            Some(id) => Some(self.store.database(id).await?.name),
            None => None,
        })
    }

    /// The database's window, parsed, with its length.
    pub(super) fn window_of(&self, database: &DatabaseRecord) -> EngineResult<(Window, TimeDelta)> {
        let spec = database.window_spec.as_deref().ok_or_else(|| EngineError::Invalid(format!("database {} has no window", database.name)))?;
        let window: Window = spec.parse().map_err(|e| EngineError::Invalid(format!("window {spec:?}: {e}")))?;
        Ok((window, TimeDelta::seconds(i64::from(database.window_length_secs.unwrap_or(4 * 3600)))))
    }

    fn window_display(&self, database: &DatabaseRecord) -> EngineResult<String> {
        let (window, length) = self.window_of(database)?;
        Ok(window.describe(length).to_string())
    }

    /// Everything `info` prints, observed from the servers where it must be.
    pub async fn info(&self, name: &str) -> EngineResult<DatabaseInfo> {
        let database = self.store.database_named(name).await?;
        let current = self.current_location(database.id).await?;
        let server = self.connect(&current).await.ok();
        let dbname = database.dbname.clone();
        let data_size_bytes = match &server {
            Some(server) => server.database_size(&dbname).await.ok(),
            None => None,
        };
        let behind_by = match (database.following_id, &server) {
            (Some(leader), Some(server)) => {
                let leader = self.connect(&self.current_location(leader).await?).await?;
                Some((leader.xid_horizon().await? - server.xid_horizon().await?).max(0))
            }
            _ => None,
        };
        let plan = super::fleet::plan_of(&database)?;
        let adopted = match self.patroni_api(&database).await? {
            Some(api) => match self.member_views(&api).await {
                Ok((cluster, members)) => Some((cluster.leader().map(|l| (l.name.clone(), l.timeline)), members)),
                Err(error) => {
                    tracing::warn!(database = %database.name, %error, "the Patroni cluster did not answer");
                    Some((None, Vec::new()))
                }
            },
            None => None,
        };
        let ha = if adopted.is_none() && plan.tier().has_ha_standby() && database.following_id.is_none() {
            Some(self.ha_state(&database, &current).await?)
        } else {
            None
        };
        Ok(DatabaseInfo {
            following: self.leader_name(&database).await?,
            role: role_of(&database),
            endpoint_url: self.app_url(&database).await?,
            credentials_rotated_at: match adopted {
                Some(_) => None,
                None => self.store.credentials(database.id).await?.rotated_at,
            },
            leader: adopted.as_ref().and_then(|(leader, _)| leader.as_ref().map(|(name, _)| name.clone())),
            timeline: adopted.as_ref().and_then(|(leader, _)| leader.as_ref().and_then(|(_, timeline)| *timeline)),
            members: adopted.map(|(_, members)| members),
            maintenance: self.maintenance_view(&database).await?,
            window: self.window_display(&database)?,
            caught_up: behind_by.map(|commits| commits <= super::CAUGHT_UP_COMMITS),
            behind_by,
            ha,
            data_size_bytes,
            forked_from: database.forked_from.clone(),
            status: database.status.clone(),
            plan: database.plan.clone(),
            labels: database.labels.0,
            name: database.name,
        })
    }

    /// `databases label`: sets the labels in `set`, removes the keys in
    /// `remove`; answers with the database's labels now.
    pub async fn set_labels(&self, name: &str, set: &Labels, remove: &[String]) -> EngineResult<Labels> {
        check_labels(set).map_err(EngineError::Invalid)?;
        remove.iter().try_for_each(|key| check_label_key(key)).map_err(EngineError::Invalid)?;
        let database = self.store.database_named(name).await?;
        Ok(self.store.set_labels(database.id, set, remove).await?)
    }

    /// `available` once the HA standby streams within a small lag, else why not.
    async fn ha_state(&self, database: &DatabaseRecord, primary: &str) -> EngineResult<String> {
        let Some(standby) = self.store.instance_in_role(database.id, InstanceRole::HaStandby).await? else {
            return Ok("unavailable (no standby)".into());
        };
        let slot = standby.slot_name.clone().unwrap_or_default();
        let replicas = match self.connect(primary).await {
            Ok(server) => server.replicas().await?,
            Err(_) => return Ok("unavailable (primary unreachable)".into()),
        };
        Ok(match replicas.iter().find(|r| r.application_name == slot) {
            Some(r) if r.state == "streaming" && r.lag_bytes.is_some_and(|lag| lag < 16 << 20) => "available".into(),
            Some(_) => "unavailable (standby catching up)".into(),
            None => "unavailable (standby being created)".into(),
        })
    }

    /// The open maintenance of a database with its status line, if any.
    pub async fn maintenance_view(&self, database: &DatabaseRecord) -> EngineResult<Option<MaintenanceView>> {
        let Some(m) = self.store.open_maintenance(database.id).await? else { return Ok(None) };
        let progress = m.progress.as_deref().and_then(|text| serde_json::from_str::<Progress>(text).ok());
        let strategy: Strategy = m.strategy.parse().map_err(EngineError::Invalid)?;
        let replacement = (strategy == Strategy::Switchover).then_some(match m.state {
            MaintenanceState::Pending | MaintenanceState::Preparing => Replacement::BeingPrepared,
            _ => Replacement::Ready,
        });
        let status = PendingStatus {
            scheduled_for: m.scheduled_for,
            required_by: m.required_by,
            strategy,
            replacement,
            window: self.window_display(database)?,
        };
        Ok(Some(MaintenanceView {
            id: m.id,
            reason: m.reason.clone(),
            strategy,
            state: m.state,
            step: m.step.clone(),
            required_by: m.required_by,
            scheduled_for: m.scheduled_for,
            window_end: m.window_end,
            forced: m.forced,
            forced_reason: m.forced_reason.clone(),
            replacement,
            status_line: status.line(),
            info_field: status.info_field(),
            target_plan: m.target_plan.clone(),
            progress_line: progress.as_ref().map(Progress::describe),
            progress,
        }))
    }

    /// `maintenance show`: the open maintenance of a database and its status
    /// line; with none open, a last maintenance that failed (or whose check
    /// failed) is named in the line, with why.
    pub async fn maintenance_status(&self, name: &str) -> EngineResult<MaintenanceStatus> {
        let database = self.store.database_named(name).await?;
        let mut status = MaintenanceStatus::of(self.maintenance_view(&database).await?);
        if status.maintenance.is_none() {
            if let Some(last) = self.store.maintenance_history(database.id).await?.into_iter().next() {
                match (last.state, &last.error, &last.check_error) {
                    (MaintenanceState::Failed, error, _) => {
                        status.status_line = format!("{NO_MAINTENANCE}; the last one (#{}) failed: {}", last.id, error.as_deref().unwrap_or("unknown error"));
                    }
                    (MaintenanceState::Completed, _, Some(check)) => {
                        status.status_line = format!("{NO_MAINTENANCE}; the last one (#{}) completed but its check failed: {check}", last.id);
                    }
                    _ => {}
                }
            }
        }
        Ok(status)
    }

    /// Records a required maintenance and plans it at once.
    pub async fn require(&self, name: &str, reason: Reason, required_by: DateTime<Utc>, now: DateTime<Utc>) -> EngineResult<MaintenanceView> {
        if reason == Reason::PlanChange {
            return Err(EngineError::Invalid(format!("a plan change needs its new plan: use `pgmaint upgrade {name} PLAN`")));
        }
        let record = self.require_maintenance(name, reason, required_by).await?;
        self.replan(&record, now).await?;
        let database = self.store.database(record.database_id).await?;
        self.maintenance_view(&database).await?.ok_or_else(|| EngineError::Invalid("the maintenance vanished".into()))
    }

    /// Plans (or re-plans) a maintenance into its database's window with the
    /// planner; returns whether its time changed.
    pub async fn replan(&self, maintenance: &MaintenanceRecord, now: DateTime<Utc>) -> EngineResult<bool> {
        let database = self.store.database(maintenance.database_id).await?;
        let (window, length) = self.window_of(&database)?;
        let blackouts: Vec<Blackout> = self.store.blackouts(database.id).await?.into_iter().filter_map(|(s, e)| Blackout::new(s, e)).collect();
        let planned = schedule::plan(&window, length, maintenance.required_by, now, None, &blackouts)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let forced = planned.forced.map(|reason| reason.to_string());
        let changed = self.store.schedule_maintenance(maintenance.id, planned.scheduled_for, planned.window_end, forced.as_deref()).await?;
        if changed {
            let event = match maintenance.scheduled_for {
                None => MailEvent::Scheduled,
                Some(_) => MailEvent::Rescheduled(planned.scheduled_for),
            };
            self.tell_owners(maintenance, event).await;
            if forced.is_some() {
                self.tell_owners(maintenance, MailEvent::Forced).await;
            }
        }
        Ok(changed)
    }

    /// Sets a database's window (keeping its length) and re-plans its pending maintenance.
    pub async fn set_window(&self, name: &str, spec: &str, now: DateTime<Utc>) -> EngineResult<WindowStatus> {
        let database = self.store.database_named(name).await?;
        let window: Window = spec.parse().map_err(|e| EngineError::Invalid(format!("window {spec:?}: {e}")))?;
        let canonical = window.to_string();
        self.store.set_window(database.id, &canonical, database.window_length_secs.unwrap_or(4 * 3600)).await?;
        if let Some(open) = self.store.open_maintenance(database.id).await? {
            if matches!(open.state, MaintenanceState::Pending | MaintenanceState::Preparing | MaintenanceState::Ready) {
                self.replan(&open, now).await?;
            }
        }
        let database = self.store.database(database.id).await?;
        Ok(WindowStatus { window: self.window_display(&database)?, status: MaintenanceStatus::of(self.maintenance_view(&database).await?) })
    }

    /// `maintenance run`: refused unless every attached app is in maintenance
    /// mode (or `force`); waits for a replacement still being prepared, then runs.
    pub async fn run_now(&self, name: &str, force: bool) -> EngineResult<RunReport> {
        let database = self.store.database_named(name).await?;
        let open = self
            .store
            .open_maintenance(database.id)
            .await?
            .ok_or_else(|| EngineError::Refused(format!("no maintenance is required for {name}; use `maintenance require` first")))?;
        if !force {
            let live: Vec<String> = self.store.apps_attached_to(database.id).await?.into_iter().filter(|a| !a.maintenance_mode).map(|a| a.name).collect();
            if !live.is_empty() {
                return Err(EngineError::Refused(format!(
                    "refusing to run maintenance on {name}: app{} {} {} not in maintenance mode (turn it on with `pgmaint apps maintenance on APP`, or pass --force)",
                    if live.len() > 1 { "s" } else { "" },
                    live.join(", "),
                    if live.len() > 1 { "are" } else { "is" }
                )));
            }
        }
        self.run_maintenance(open.id).await
    }

    pub async fn history(&self, name: &str) -> EngineResult<Vec<HistoryEntry>> {
        let database = self.store.database_named(name).await?;
        Ok(self
            .store
            .maintenance_history(database.id)
            .await?
            .into_iter()
            .map(|m| HistoryEntry {
                duration_seconds: match (m.started_at, m.finished_at) {
                    (Some(s), Some(f)) => Some((f - s).num_milliseconds() as f64 / 1000.0),
                    _ => None,
                },
                id: m.id,
                strategy: m.strategy,
                reason: m.reason,
                state: m.state,
                required_by: m.required_by,
                scheduled_for: m.scheduled_for,
                started_at: m.started_at,
                finished_at: m.finished_at,
                write_pause_ms: m.write_pause_ms,
                outcome: m.outcome,
                error: m.error,
                check_error: m.check_error,
            })
            .collect())
    }

    /// Has the database work in progress, or about to start? It is busy while
    /// it is being created, and while its open maintenance is being prepared
    /// or run (by this process or any daemon), waits to be prepared (anything
    /// but a restart is prepared ahead), or is due now.
    async fn is_busy(&self, name: &str, now: DateTime<Utc>) -> EngineResult<bool> {
        let database = self.store.database_named(name).await?;
        if database.status == "creating" {
            return Ok(true);
        }
        let Some(open) = self.store.open_maintenance(database.id).await? else { return Ok(false) };
        if self.jobs.is_active(open.id) {
            return Ok(true);
        }
        let due = open.scheduled_for.is_some_and(|at| at <= now);
        // Pending counts as busy where a preparation runs ahead of the window.
        let prepared_ahead = open
            .strategy
            .parse::<Strategy>()
            .is_ok_and(|strategy| Runbook::choose(strategy, database.following_id.is_some(), open.target_plan.is_some()).preparation().is_some());
        Ok(match open.state {
            MaintenanceState::Preparing | MaintenanceState::Running => true,
            MaintenanceState::Pending => prepared_ahead || due,
            MaintenanceState::Ready => due,
            MaintenanceState::Completed | MaintenanceState::Failed | MaintenanceState::Held | MaintenanceState::Cancelled => false,
        })
    }

    /// Blocks until `is_busy` is false, or `timeout` passes (refused: the CLI exits 1).
    pub async fn wait_idle(&self, name: &str, timeout: Duration) -> EngineResult<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.is_busy(name, Utc::now()).await? {
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Refused(format!("{name} is still busy after {}s", timeout.as_secs())));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Destroys a database: its servers, their files and its records.
    /// `confirm` must repeat the name; a database with followers is refused.
    pub async fn destroy_database(&self, name: &str, confirm: &str) -> EngineResult<()> {
        if confirm != name {
            return Err(EngineError::Refused(format!("destroying {name} needs --confirm {name}")));
        }
        let database = self.store.database_named(name).await?;
        let followers = self.store.followers_of(database.id).await?;
        if !followers.is_empty() {
            let names: Vec<String> = followers.into_iter().map(|f| f.name).collect();
            return Err(EngineError::Refused(format!("{name} has followers ({}); destroy them first", names.join(", "))));
        }
        // An adopted cluster is only forgotten: its servers are Patroni's.
        if !self.is_adopted(&database).await? {
            for instance in self.store.instances(database.id).await? {
                self.provider.remove(&instance.location).await?;
            }
        }
        self.store.delete_database(database.id).await?;
        self.publish_routes().await
    }

    /// Creates an app attached to `database` (as DATABASE_URL), with optional
    /// commands run when its maintenance mode is turned on or off, an env file
    /// and a restart hook; its first release, v1 `Attach DB`, holds DATABASE_URL.
    pub async fn create_app(&self, name: &str, database: &str, hooks: &AppHooks<'_>, made_by: &str) -> EngineResult<AppView> {
        super::fleet::validate_name(name)?;
        if let Some(path) = hooks.env_file {
            if !std::path::Path::new(path).is_absolute() {
                return Err(EngineError::Invalid(format!("the env file {path:?} must be an absolute path")));
            }
        }
        let database = self.store.database_named(database).await?;
        let app = self.store.insert_app(name, database.id, hooks).await?;
        let release = self.release_attachment(&app, &database, "DATABASE_URL", true, made_by).await?;
        Ok(AppView { release: Some(release), ..app_view(app) })
    }

    /// Turns an app's maintenance mode on or off and runs its hook for that.
    pub async fn set_app_maintenance(&self, name: &str, on: bool) -> EngineResult<AppView> {
        let app = self.store.app_named(name).await?;
        let hook = if on { app.on_maintenance_on.as_deref() } else { app.on_maintenance_off.as_deref() };
        if let Some(command) = hook {
            super::hooks::run_app_hook("hook", command, name, ("PGMAINT_MAINTENANCE", if on { "on" } else { "off" }))
                .await
                .map_err(EngineError::Refused)?;
        }
        self.store.set_app_maintenance(app.id, on).await?;
        Ok(AppView { name: app.name, maintenance: on, release: None })
    }

    pub async fn app(&self, name: &str) -> EngineResult<AppView> {
        Ok(app_view(self.store.app_named(name).await?))
    }

    /// The store's figures for `/metrics`.
    pub async fn store_gauges(&self) -> EngineResult<StoreGauges> {
        Ok(StoreGauges { maintenances_by_state: self.store.maintenance_counts_by_state().await?, outbox_depth: self.store.outbox_depth().await? })
    }
}

fn app_view(app: AppRecord) -> AppView {
    AppView { name: app.name, maintenance: app.maintenance_mode, release: None }
}

fn role_of(database: &DatabaseRecord) -> Role {
    if database.following_id.is_some() {
        Role::Follower
    } else {
        Role::Primary
    }
}
