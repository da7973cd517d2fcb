//! The control API's wire types: every request body and every answer, in one
//! place, shared by the server, its [`super::Client`] and the CLI, and the
//! source of the OpenAPI document's schemas.
//!
//! The engine's views (`DatabaseInfo`, `MaintenanceView`, releases, the
//! promotion...) are the answers themselves and are re-exported here; what
//! only the API says (a run's report in milliseconds, a plan change's answer,
//! the copy's events, small acknowledgements) is defined here. Where the CLI
//! needs a fact it finds it in a field, never in a sentence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::engine::{
    AdoptDatabase, AppView, ConfigView, CreateDatabase, DatabaseInfo, PatroniMemberView, DatabaseSummary, Fate, FollowerFate, HistoryEntry, MaintenanceStatus, MaintenanceView,
    Promotion, ReleaseInfo, ReleaseOutcome, ReleaseSummary, Role, Rotation, WindowStatus,
};
pub use crate::engine::{CreateRollout, MemberPlanView, MemberView, RolloutAction, RolloutPlan, RolloutView, WavePlanView, WaveView};
pub use crate::store::RolloutState;
pub use crate::pg::copy::{CopyPhase, CopyProgress, CopyReport, TableCopy};

use crate::engine::{PlanChange, PlanChangeOutcome, RunReport};
use crate::model::Strategy;

/// Every error answer: `{"error": "..."}` with a fitting status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorAnswer {
    pub error: String,
}

/// `POST /v1/databases/{name}/maintenance`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequireMaintenance {
    /// `os-patch`, `minor-upgrade`, `settings`, `plan-change` or `periodic`.
    #[schema(example = "os-patch")]
    pub reason: String,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub required_by: String,
}

/// `PUT /v1/databases/{name}/labels`: labels to set and keys to remove (others are kept).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct SetLabels {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// What `PUT /v1/databases/{name}/labels` answers: the database's labels now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatabaseLabels {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// `POST /v1/rollouts/{name}/actions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActOnRollout {
    pub action: RolloutAction,
}

/// `PUT /v1/databases/{name}/window`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetWindow {
    /// `Sunday 14:30 [ZONE]`.
    #[schema(example = "Tuesday 14:30")]
    pub window: String,
}

/// `POST /v1/databases/{name}/maintenance/run`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RunMaintenance {
    /// Run even though an attached app is not in maintenance mode.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/databases/{name}/wait`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WaitIdle {
    pub timeout_seconds: u64,
}

/// `POST /v1/databases/{target}/copy`. The answer is `application/x-ndjson`:
/// [`CopyEvent`] lines. Checks that fail before the copy starts (wrong
/// confirmation, unknown database) are plain error answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CopyDatabase {
    pub source: String,
    /// Must repeat the target's name: its data is replaced.
    pub confirm: String,
    /// Parallel table streams (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 32)]
    pub workers: Option<usize>,
}

/// `POST /v1/databases/{name}/upgrade`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpgradeDatabase {
    /// The new plan, e.g. `standard-4`.
    #[schema(example = "standard-4")]
    pub plan: String,
    /// RFC 3339: the plan-change maintenance's deadline (standard tier and up;
    /// default a week from now). The essential tier's change runs at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub required_by: Option<String>,
}

/// `POST /v1/databases/{name}/credentials/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RotateCredentials {
    /// How long the previous password keeps working at most, when some
    /// attached app did not restart with the new one (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
}

/// The previous password's grace when the caller names none: 5 minutes.
pub const DEFAULT_ROTATION_GRACE_SECONDS: u64 = 300;

/// `POST /v1/databases/{name}/unfollow`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Unfollow {
    /// The database's name, or an app attached to it or to its leader.
    pub confirm: String,
}

/// `POST /v1/databases/{name}/promote`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PromoteDatabase {
    /// The app whose DATABASE_URL becomes this database.
    pub app: String,
    /// Repoint the previous primary's followers that can follow this database.
    #[serde(default)]
    pub repoint_followers: bool,
}

/// `POST /v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateApp {
    pub name: String,
    /// The database attached as the app's DATABASE_URL.
    pub attach: String,
    /// Run through `sh -c` when maintenance mode is turned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_hook: Option<String>,
    /// Run through `sh -c` when maintenance mode is turned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_hook: Option<String>,
    /// Rewritten with the config (KEY=VALUE lines, mode 0640) at every release; absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
    /// Run through `sh -c` after every release, with PGMAINT_APP and PGMAINT_RELEASE=vN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_hook: Option<String>,
}

/// `POST /v1/apps/{name}/attachments`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttachDatabase {
    pub database: String,
    /// Attach as `NAME_URL` (default: the database's name upper-cased, `-` as `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `PUT /v1/apps/{name}/config`: the vars to set (others are kept).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetConfig {
    pub config: BTreeMap<String, String>,
}

/// `POST /v1/apps/{name}/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Rollback {
    /// The release to copy; the one before the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub version: Option<i32>,
}

/// `PUT /v1/apps/{name}/maintenance`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetAppMaintenance {
    pub on: bool,
}

/// What `DELETE /v1/databases/{name}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Destroyed {
    pub destroyed: String,
}

/// What `POST /v1/databases/{name}/wait` answers once the database is idle.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Idle {
    pub name: String,
    /// Always `false`: a database still busy at the timeout is a 409.
    pub busy: bool,
}

/// What `POST .../maintenance/run` answers: the engine's run report, in milliseconds and seconds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunReportBody {
    pub maintenance_id: i64,
    pub strategy: Strategy,
    /// `completed`, or `postponed: <why>`.
    pub outcome: String,
    /// Why the run was called off (the old primary serves again) and the
    /// maintenance postponed to its next window; `null` when it completed.
    pub postponed_because: Option<String>,
    /// From PAUSE done to RESUME done.
    pub write_pause_ms: Option<f64>,
    pub steps: Vec<StepTiming>,
}

/// One step of a run and how long it took.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StepTiming {
    pub step: String,
    pub seconds: f64,
}

impl From<&RunReport> for RunReportBody {
    fn from(report: &RunReport) -> Self {
        RunReportBody {
            maintenance_id: report.maintenance_id,
            strategy: report.strategy,
            outcome: report.outcome.clone(),
            postponed_because: report.postponed_because.clone(),
            write_pause_ms: report.write_pause.map(|d| d.as_secs_f64() * 1000.0),
            steps: report.steps.iter().map(|(step, took)| StepTiming { step: step.clone(), seconds: took.as_secs_f64() }).collect(),
        }
    }
}

/// What `POST .../upgrade` answers: the planned maintenance (standard tier
/// and up) or the finished run (essential tier).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpgradeAnswer {
    pub database: String,
    pub from_plan: String,
    pub to_plan: String,
    /// `switchover` (a replacement on the new plan, in the window) or `copy` (essential, at once).
    pub strategy: Strategy,
    /// The plan-change maintenance now planned (standard tier and up).
    pub maintenance: Option<MaintenanceView>,
    /// The finished run (essential tier).
    pub run: Option<RunReportBody>,
}

impl UpgradeAnswer {
    pub fn new(database: String, to_plan: String, change: PlanChange) -> UpgradeAnswer {
        let (strategy, maintenance, run) = match change.outcome {
            PlanChangeOutcome::Scheduled(view) => (view.strategy, Some(*view), None),
            PlanChangeOutcome::Done(report) => (report.strategy, None, Some(RunReportBody::from(&report))),
        };
        UpgradeAnswer { database, from_plan: change.from_plan, to_plan, strategy, maintenance, run }
    }
}

/// One line of the copy's NDJSON answer: `progress` lines, then one `done` or `error`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CopyEvent {
    Progress(CopyProgress),
    Done(CopyDone),
    Error(CopyFailed),
}

/// The copy finished and was verified.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CopyDone {
    pub source: String,
    pub target: String,
    pub report: CopyReport,
}

/// The copy failed after it started (the source takes writes again).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CopyFailed {
    pub error: String,
    /// The HTTP status the failure would have had as a plain answer.
    pub status: u16,
}
