//! The control API: HTTP+JSON on a Unix socket (and, optionally, on TCP with a
//! bearer token), its OpenAPI document, Prometheus metrics, and the client the
//! `pgmaint` verbs use.
//!
//! The daemon serves it with [`serve`]; the CLI talks to it with [`Client`].
//! Routes (all JSON; an error is `{"error": "..."}` with a fitting status):
//!
//! | route | does |
//! |---|---|
//! | `GET /v1/databases` | list the fleet |
//! | `POST /v1/databases` | create a database ([`CreateDatabase`]) |
//! | `GET /v1/databases/{name}` | the `info` block |
//! | `DELETE /v1/databases/{name}?confirm=NAME` | destroy a database |
//! | `POST /v1/databases/{name}/maintenance` | require a maintenance ([`RequireMaintenance`]) |
//! | `GET /v1/databases/{name}/maintenance` | the pending maintenance and its status line |
//! | `PUT /v1/databases/{name}/window` | set the window, re-plan ([`SetWindow`]) |
//! | `POST /v1/databases/{name}/maintenance/run` | run it now ([`RunMaintenance`]) |
//! | `GET /v1/databases/{name}/maintenance/history` | past maintenances |
//! | `POST /v1/databases/{name}/wait` | block until idle ([`WaitIdle`]) |
//! | `POST /v1/databases/{name}/copy` | replace its data with another database's ([`CopyDatabase`]); streams NDJSON progress |
//! | `POST /v1/apps` | create an app ([`CreateApp`]) |
//! | `PUT /v1/apps/{name}/maintenance` | maintenance mode on/off ([`SetAppMaintenance`]) |
//! | `GET /v1/apps/{name}/maintenance` | maintenance mode |
//! | `POST /v1/apps/{name}/attachments` | attach a database as `NAME_URL`, a new release ([`AttachDatabase`]) |
//! | `GET /v1/apps/{name}/config` | the current config |
//! | `PUT /v1/apps/{name}/config` | set config vars, a new release ([`SetConfig`]) |
//! | `DELETE /v1/apps/{name}/config/{key}` | unset a config var, a new release |
//! | `GET /v1/apps/{name}/releases` | releases, newest first |
//! | `GET /v1/apps/{name}/releases/{version}` | one release (`v3` or `3`) and its config |
//! | `POST /v1/apps/{name}/rollback` | a new release copying an older one's config ([`Rollback`]) |
//! | `GET /openapi.json` | the OpenAPI 3.0 document ([`openapi::document`]) |
//! | `GET /metrics` | Prometheus text ([`metrics`]) |
//!
//! Releases are made by the caller: the Unix socket peer's user, else the
//! `X-Pgmaint-User` header (see [`USER_HEADER`]), else `pgmaint`.
//!
//! Status codes: 400 bad input, 401 missing or wrong token (TCP only), 404
//! unknown database or app, 409 refused in the current state (not in
//! maintenance mode, already open, busy), 500 anything else.

mod client;
pub mod metrics;
pub mod openapi;
mod server;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use client::{Client, ClientError};
pub use metrics::install_metrics;
pub use server::serve;

use crate::engine::RunReport;

/// The window a database gets when `POST /v1/databases` names none.
pub const DEFAULT_WINDOW: &str = "Sunday 02:00 UTC";

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("another pgmaint daemon already answers on {0}")]
    SocketInUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("API socket {path}: {source}")]
    Socket { path: PathBuf, source: std::io::Error },
    #[error("API socket group {0:?} does not exist")]
    UnknownGroup(String),
    #[error("API socket group {group:?}: {source}")]
    Group { group: String, source: nix::Error },
    #[error("API TCP listener {addr}: {source}")]
    Tcp { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("API TCP listener {0} needs a token_file")]
    NoTokenFile(std::net::SocketAddr),
    #[error("API token file {path}: {source}")]
    TokenFile { path: PathBuf, source: std::io::Error },
    #[error("API token file {0} is empty")]
    EmptyToken(PathBuf),
    #[error("API server: {0}")]
    Serve(std::io::Error),
}

/// `POST /v1/databases`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateDatabase {
    pub name: String,
    pub plan: String,
    /// Make it a streaming follower of this database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow: Option<String>,
    /// `Sunday 14:30 [ZONE]`; [`DEFAULT_WINDOW`] when absent. Always 4 hours long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Emails told before and after each maintenance.
    #[serde(default)]
    pub owners: Vec<String>,
}

/// `POST /v1/databases/{name}/maintenance`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequireMaintenance {
    /// `os-patch`, `minor-upgrade`, `settings`, `plan-change` or `periodic`.
    pub reason: String,
    /// RFC 3339.
    pub required_by: String,
}

/// `PUT /v1/databases/{name}/window`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetWindow {
    /// `Sunday 14:30 [ZONE]`.
    pub window: String,
}

/// `POST /v1/databases/{name}/maintenance/run`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunMaintenance {
    /// Run even though an attached app is not in maintenance mode.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/databases/{name}/wait`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitIdle {
    pub timeout_seconds: u64,
}

/// `POST /v1/databases/{target}/copy`. The answer is `application/x-ndjson`:
/// `{"event":"progress",...}` lines, then `{"event":"done","report":{...}}` or
/// `{"event":"error","error":"...","status":N}`. Checks that fail before the
/// copy starts (wrong confirmation, unknown database) are plain error answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CopyDatabase {
    pub source: String,
    /// Must repeat the target's name: its data is replaced.
    pub confirm: String,
    /// Parallel table streams (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

/// `POST /v1/databases/{name}/upgrade`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpgradeDatabase {
    /// The new plan, e.g. `standard-4`.
    pub plan: String,
    /// RFC 3339: the plan-change maintenance's deadline (standard tier and up;
    /// default a week from now). The essential tier's change runs at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_by: Option<String>,
}

/// What `POST .../upgrade` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpgradeAnswer {
    pub database: String,
    pub from_plan: String,
    pub to_plan: String,
    /// `switchover` (a replacement on the new plan, in the window) or `copy` (essential, at once).
    pub strategy: String,
    /// The plan-change maintenance now planned (standard tier and up).
    pub maintenance: Option<Value>,
    /// The finished run (essential tier).
    pub run: Option<RunReportBody>,
}

/// `POST /v1/databases/{name}/unfollow`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unfollow {
    /// The database's name, or an app attached to it or to its leader.
    pub confirm: String,
}

/// `POST /v1/databases/{name}/promote`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromoteDatabase {
    /// The app whose DATABASE_URL becomes this database.
    pub app: String,
    /// Repoint the previous primary's followers that can follow this database.
    #[serde(default)]
    pub repoint_followers: bool,
}

/// `POST /v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachDatabase {
    pub database: String,
    /// Attach as `NAME_URL` (default: the database's name upper-cased, `-` as `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `PUT /v1/apps/{name}/config`: the vars to set (others are kept).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetConfig {
    pub config: std::collections::BTreeMap<String, String>,
}

/// `POST /v1/apps/{name}/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rollback {
    /// The release to copy; the one before the latest when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
}

/// The header a client names its user in (used when the server cannot see the socket peer's).
pub const USER_HEADER: &str = "x-pgmaint-user";

/// `PUT /v1/apps/{name}/maintenance`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetAppMaintenance {
    pub on: bool,
}

/// What `POST .../maintenance/run` answers: the engine's [`RunReport`] as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReportBody {
    pub maintenance_id: i64,
    pub strategy: String,
    /// `completed`, or `postponed: <why>`.
    pub outcome: String,
    /// From PAUSE done to RESUME done.
    pub write_pause_ms: Option<f64>,
    pub steps: Vec<StepTiming>,
}

/// One step of a run and how long it took.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: String,
    pub seconds: f64,
}

impl From<&RunReport> for RunReportBody {
    fn from(report: &RunReport) -> Self {
        RunReportBody {
            maintenance_id: report.maintenance_id,
            strategy: report.strategy.as_str().to_string(),
            outcome: report.outcome.clone(),
            write_pause_ms: report.write_pause.map(|d| d.as_secs_f64() * 1000.0),
            steps: report.steps.iter().map(|(step, took)| StepTiming { step: step.clone(), seconds: took.as_secs_f64() }).collect(),
        }
    }
}
