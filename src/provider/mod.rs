//! Where PostgreSQL servers live, and the only place (with `pg/`) that acts on them.
//!
//! The engine speaks to servers only through [`Provider`]: a server is an
//! opaque *location* the provider hands out and the state store records, an
//! [`ServerAddress`] to connect to, and a lifecycle (provision, replicate,
//! start, stop, restart, promote, retire, remove). A new kind of server (another host, an HA engine)
//! is one new implementation of this trait.
//!
//! `local` runs servers on this host under pgmaint's data directory with the
//! distribution's server binaries (initdb, pg_ctl, pg_basebackup).

pub mod address;
pub mod local;
pub mod patroni;
pub mod router;

use std::path::Path;
use std::time::Duration;

pub use address::{Host, ServerAddress};

use crate::model::Plan;
use crate::pg::{PgError, Server};

/// How a stop treats connected clients (pg_ctl's `-m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Disconnect clients, write a shutdown checkpoint: a clean stop.
    Fast,
    /// Kill every process of the server at once, as a power cut would (crash
    /// recovery on the next start); returns once none of them can act any
    /// more: a switch's fence, once the candidate holds the old primary's WAL.
    Kill,
}

/// Whether a start returns when the server serves, or at once (the caller polls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartWait {
    UntilServing,
    NoWait,
}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// Where servers live and how they are run: the engine's one seam to them.
/// Every method is safe to repeat after a crash (it observes, then acts).
#[async_trait::async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// A fresh, unused location for a new server of `database`.
    fn new_location(&self, database: &str) -> String;

    /// How pgmaint reaches the server at `location`.
    fn address(&self, location: &str) -> ServerAddress;

    /// Builds and starts a primary on `plan`, and waits until it serves.
    async fn provision_primary(&self, location: &str, plan: &Plan) -> ProviderResult<()>;

    /// Builds and starts a streaming replica of the server at `upstream`
    /// through replication slot `slot` (which must exist there), without
    /// waiting for it to serve: the caller waits for it to catch up.
    async fn build_replica(&self, location: &str, upstream: &str, slot: &str, plan: &Plan) -> ProviderResult<()>;

    async fn is_running(&self, location: &str) -> ProviderResult<bool>;

    /// Starts the server if it is not running.
    async fn start(&self, location: &str, wait: StartWait) -> ProviderResult<()>;

    /// Stops the server if it runs; returns once it has stopped: its
    /// postmaster and every process it started are gone.
    async fn stop(&self, location: &str, mode: StopMode) -> ProviderResult<()>;

    /// A fast stop then a start without waiting (the caller polls for
    /// readiness); a start alone if the server was stopped.
    async fn restart(&self, location: &str) -> ProviderResult<()>;

    /// Promotes the replica at `location` to a primary, through `session`, an
    /// open connection to it, waiting up to `timeout` for it to accept writes.
    async fn promote(&self, location: &str, session: &Server, timeout: Duration) -> ProviderResult<()>;

    /// Takes a server out of service: stopped, its files kept until `remove`.
    async fn retire(&self, location: &str) -> ProviderResult<()>;

    /// Stops a server and deletes it for good.
    async fn remove(&self, location: &str) -> ProviderResult<()>;

    /// The version of the newest server binaries this provider runs, as
    /// `server_version_num`: newer than a running server's means a minor
    /// upgrade waits for a restart.
    async fn installed_version_num(&self) -> ProviderResult<u32>;

    /// A client program (`pg_dump`, `psql`) at least as new as every server
    /// here, ready to run with the rights it needs.
    fn client_program(&self, name: &str) -> tokio::process::Command;
}

/// Failures of the programs and files that make up a server.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("could not run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} failed ({status}): {stderr}")]
    Command { program: String, status: String, stderr: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Os(String),
    #[error("{0}")]
    Parse(String),
    #[error(transparent)]
    Pg(#[from] PgError),
}

impl ProviderError {
    pub(crate) fn spawn(program: &str, source: std::io::Error) -> Self {
        ProviderError::Spawn { program: program.to_string(), source }
    }

    pub(crate) fn command(program: &str, out: &std::process::Output) -> Self {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        ProviderError::Command { program: program.to_string(), status: out.status.to_string(), stderr }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ProviderError::Io { path: path.display().to_string(), source }
    }

    /// Appends the last lines of a server log, where the real reason usually is.
    pub(crate) fn with_log(self, log: &Path) -> Self {
        match self {
            ProviderError::Command { program, status, stderr } => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
                ProviderError::Command { program, status, stderr: format!("{stderr}; log {}: {tail}", log.display()) }
            }
            other => other,
        }
    }
}
