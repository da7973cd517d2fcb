//! The control API: HTTP+JSON on a Unix socket (and, optionally, on TCP with a
//! bearer token), its OpenAPI document, Prometheus metrics, and the client the
//! `pgmaint` verbs use.
//!
//! The daemon serves it with [`serve`]; the CLI talks to it with [`Client`];
//! both speak the wire types of [`types`]. Routes ([`routes`] lists them; all
//! JSON; an error is `{"error": "..."}` with a fitting status):
//!
//! | route | does |
//! |---|---|
//! | `GET /v1/databases` | list the fleet |
//! | `POST /v1/databases` | create a database ([`CreateDatabase`]) |
//! | `POST /v1/databases/adopt` | adopt a Patroni cluster ([`AdoptDatabase`]) |
//! | `GET /v1/databases/{name}` | the `info` block |
//! | `DELETE /v1/databases/{name}?confirm=NAME` | destroy a database |
//! | `POST /v1/databases/{name}/maintenance` | require a maintenance ([`RequireMaintenance`]) |
//! | `GET /v1/databases/{name}/maintenance` | the pending maintenance and its status line |
//! | `PUT /v1/databases/{name}/window` | set the window, re-plan ([`SetWindow`]) |
//! | `PUT /v1/databases/{name}/labels` | set and remove labels ([`SetLabels`]) |
//! | `POST /v1/databases/{name}/maintenance/run` | run it now ([`RunMaintenance`]) |
//! | `GET /v1/databases/{name}/maintenance/history` | past maintenances |
//! | `POST /v1/databases/{name}/wait` | block until idle ([`WaitIdle`]) |
//! | `POST /v1/databases/{name}/copy` | replace its data with another database's ([`CopyDatabase`]); streams NDJSON [`CopyEvent`]s |
//! | `POST /v1/databases/{name}/upgrade` | change its plan ([`UpgradeDatabase`]) |
//! | `POST /v1/databases/{name}/unfollow` | a follower stops following ([`Unfollow`]) |
//! | `POST /v1/databases/{name}/promote` | make it an app's DATABASE_URL ([`PromoteDatabase`]) |
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
//! | `GET /v1/rollouts` | every rollout |
//! | `POST /v1/rollouts` | create a rollout ([`CreateRollout`]) |
//! | `GET /v1/rollouts/{name}` | a rollout, its waves and their maintenances |
//! | `POST /v1/rollouts/{name}/actions` | pause, resume or abort it ([`ActOnRollout`]) |
//! | `GET /v1/rollouts/{name}/plan` | when each wave would run ([`RolloutPlan`]) |
//! | `GET /openapi.json` | the OpenAPI 3.1 document, generated from [`types`] ([`openapi::document`]) |
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
pub mod types;

use std::path::PathBuf;

pub use client::{Client, ClientError};
pub use metrics::install_metrics;
pub use server::{routes, serve, Route, Verb};
pub use types::*;

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

/// The header a client names its user in (used when the server cannot see the socket peer's).
pub const USER_HEADER: &str = "x-pgmaint-user";
