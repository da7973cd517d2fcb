//! How clients reach a database: the endpoint that stays put while servers change.
//!
//! Applications never connect to a PostgreSQL server directly; they connect to
//! an endpoint that pgmaint owns (a PgBouncer), whose URL never changes. That
//! indirection is what lets a maintenance restart, replace or fail over the
//! server behind a database while clients only see a short pause: PAUSE the
//! database in the pooler, change the server, repoint the pooler, RESUME.
//!
//! Only this module talks to PgBouncer. Every call first observes (is it
//! running? is the database paused? where does it point?) and is safe to
//! repeat after a crash of pgmaint; PgBouncer itself runs daemonised, so the
//! endpoint outlives pgmaint's own restarts.

mod pgbouncer;

pub use pgbouncer::{
    AdminConsole, ClientTls, DatabaseRow, EnsureOutcome, Paused, PgBouncer, PoolRow, Route, DEFAULT_PORT,
};

use std::time::Duration;

/// Everything that can go wrong while running or driving an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("could not run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("pgbouncer in {dir} did not start: {detail}")]
    Start { dir: String, detail: String },
    #[error("pgbouncer in {dir} did not stop: {detail}")]
    Stop { dir: String, detail: String },
    #[error("cannot reach the pgbouncer admin console at {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error("pgbouncer admin command {command:?} failed: {source}")]
    Admin { command: String, source: tokio_postgres::Error },
    #[error("pgbouncer admin command {command:?} got no answer within {timeout:?}")]
    AdminTimeout { command: String, timeout: Duration },
    /// PAUSE did not complete in time (a transaction kept a server busy). The
    /// database was resumed again unless `resume_error` says otherwise.
    #[error("PAUSE {db} did not complete within {timeout:?}{}", resume_note(.resume_error))]
    PauseTimeout { db: String, timeout: Duration, resume_error: Option<String> },
    /// After a reload, PgBouncer does not route the database where pgmaint asked.
    #[error("pgbouncer routes {db} to {actual}, expected {expected}")]
    RouteMismatch { db: String, expected: String, actual: String },
    #[error("invalid endpoint setting: {0}")]
    Invalid(String),
    #[error("unexpected pgbouncer output: {0}")]
    Parse(String),
    #[error(transparent)]
    Os(#[from] crate::provider::ProviderError),
}

fn resume_note(resume_error: &Option<String>) -> String {
    match resume_error {
        None => "; the database was resumed".to_string(),
        Some(e) => format!("; RESUME ALSO FAILED, the database may still be paused: {e}"),
    }
}

impl EndpointError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        EndpointError::Io { path: path.display().to_string(), source }
    }
}
