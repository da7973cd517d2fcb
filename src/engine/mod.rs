//! The maintenance runner: the fleet's servers, and the persisted step machine
//! that restarts, switches over or fails over a database.
//!
//! The engine reads like the runbook it runs. Every step records its intent in
//! the state store before it acts and observes the real servers before acting,
//! so a runner killed anywhere can be started again and finish the job, or
//! return the database to a safe, writable state, without losing a commit and
//! without ever having two writable primaries. The engine never formats output.

mod access;
mod control;
mod detect;
mod execute;
mod copy;
mod failpoint;
mod fleet;
mod follower;
mod hooks;
mod jobs;
mod mail;
mod patroni;
mod releases;
mod restart;
mod rollout;
mod run;
pub mod runbook;
mod switch;
mod upgrade;

use std::time::Duration;

pub use access::Rotation;
pub use copy::DEFAULT_COPY_WORKERS;
pub use control::{
    AppView, CreateDatabase, DatabaseInfo, DatabaseSummary, HistoryEntry, MaintenanceStatus, MaintenanceView, Role, StoreGauges, WindowStatus,
};
pub use failpoint::{Failpoint, FailpointReached, Phase, FAILPOINT_ENV, FAILPOINT_EXIT_CODE};
pub use fleet::DatabaseSpec;
pub use follower::{Fate, FollowerFate, Promotion, CAUGHT_UP_COMMITS};
pub use releases::{
    attachment_key, parse_version, ConfigView, ReleaseInfo, ReleaseOutcome, ReleaseSummary, Retention, DEFAULT_MAKER,
};
pub use rollout::{CreateRollout, MemberPlanView, MemberView, RolloutAction, RolloutPlan, RolloutView, WavePlanView, WaveView};
pub use patroni::{AdoptDatabase, PatroniMemberView};
pub use run::RunReport;

pub use upgrade::{PlanChange, PlanChangeOutcome};

use crate::endpoint::{EndpointError, PgBouncer};
use crate::notify::Notifier;
use crate::pg::{PgError, Server};
use crate::provider::patroni::PatroniAccess;
use crate::provider::{Provider, ProviderError};
use crate::store::{Store, StoreError};

/// How long a PAUSE may wait for running transactions before the switch is called off.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a candidate may take to show it has the old primary's WAL, read inside the pause.
const WAL_CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a runner's claim on a maintenance lasts between renewals (the default).
const DEFAULT_CLAIM_LEASE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A step made to fail by a test's failpoint.
    #[error(transparent)]
    Failpoint(#[from] FailpointReached),
    /// Bad input: the request can never succeed as given.
    #[error("{0}")]
    Invalid(String),
    /// A valid request refused in the current state (not in maintenance mode, followers exist...).
    #[error("{0}")]
    Refused(String),
    /// The switch was called off before anything was promoted; the old primary serves again.
    #[error("postponed: {0}")]
    Postponed(String),
    /// A `[hooks]` command failed (its last lines of output).
    #[error("{0}")]
    Hook(String),
    #[error("maintenance #{0} is being run by another daemon")]
    Busy(i64),
    /// A step failed and then so did its recovery: the servers may need an
    /// operator (a server-side failure, never bad input).
    #[error("{error}; then recovery failed: {recovery}")]
    Recovery { error: Box<EngineError>, recovery: String },
    /// The end of the same maintenance's run by another task of this process,
    /// which this call joined instead of claiming it a second time.
    #[error("{message}")]
    Joined { kind: ErrorKind, message: String },
}

/// What kind of failure an error is, for those who answer for it (the API's status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A database, app or maintenance that does not exist.
    NotFound,
    /// Bad input: the request can never succeed as given.
    Invalid,
    /// Refused in the current state (it may succeed later or after another step).
    Conflict,
    /// The servers or the state store failed.
    Failed,
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Store(StoreError::NotFound(_)) => ErrorKind::NotFound,
            EngineError::Store(StoreError::Conflict(_)) => ErrorKind::Conflict,
            EngineError::Invalid(_) => ErrorKind::Invalid,
            EngineError::Refused(_) | EngineError::Busy(_) | EngineError::Postponed(_) => ErrorKind::Conflict,
            EngineError::Joined { kind, .. } => *kind,
            EngineError::Store(_)
            | EngineError::Provider(_)
            | EngineError::Pg(_)
            | EngineError::Endpoint(_)
            | EngineError::Failpoint(_)
            | EngineError::Recovery { .. }
            | EngineError::Hook(_) => {
                ErrorKind::Failed
            }
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// The fleet's servers, its endpoint and its state, and the runner that maintains them.
pub struct Engine {
    store: Store,
    provider: std::sync::Arc<dyn Provider>,
    endpoint: PgBouncer,
    node: String,
    claim_lease: Duration,
    failpoint: Option<Failpoint>,
    notifier: Option<Notifier>,
    retention: Retention,
    /// The window of a database created without one (`[maintenance] default_window`).
    default_window: String,
    /// Held while a release is made and applied, so env files follow release order.
    release_lock: tokio::sync::Mutex<()>,
    /// The commands run before and after every maintenance (`[hooks]`).
    hooks: crate::config::HooksConfig,
    /// The maintenances this process is preparing or running, so its tasks join rather than fence each other out.
    jobs: jobs::Jobs,
    /// How adopted Patroni clusters are reached (`[patroni]`); `None`: adoption is refused.
    patroni: Option<PatroniAccess>,
}

impl Engine {
    /// `node` names this runner in claims (e.g. host and pid).
    pub fn new(store: Store, provider: std::sync::Arc<dyn Provider>, endpoint: PgBouncer, node: impl Into<String>) -> Engine {
        Engine {
            store,
            provider,
            endpoint,
            node: node.into(),
            claim_lease: DEFAULT_CLAIM_LEASE,
            failpoint: None,
            notifier: None,
            retention: Retention::default(),
            default_window: control::DEFAULT_WINDOW.to_string(),
            release_lock: tokio::sync::Mutex::new(()),
            hooks: crate::config::HooksConfig::default(),
            jobs: jobs::Jobs::default(),
            patroni: None,
        }
    }

    /// How long a claim lasts without renewal: another daemon takes over a
    /// maintenance this long after its runner died. Runs renew it every third of it.
    pub fn with_claim_lease(mut self, lease: Duration) -> Engine {
        self.claim_lease = lease;
        self
    }

    /// Owners are mailed through `notifier` (without one, no mail is queued).
    pub fn with_notifier(mut self, notifier: Notifier) -> Engine {
        self.notifier = Some(notifier);
        self
    }

    /// Which releases keep a restorable config (the reference's 100 releases / 30 days by default).
    pub fn with_release_retention(mut self, retention: Retention) -> Engine {
        self.retention = retention;
        self
    }

    /// The window a database gets when its creator names none
    /// ([`control::DEFAULT_WINDOW`] unless the configuration says otherwise).
    pub fn with_default_window(mut self, window: String) -> Engine {
        self.default_window = window;
        self
    }

    /// The commands run before and after every maintenance (none by default).
    pub fn with_hooks(mut self, hooks: crate::config::HooksConfig) -> Engine {
        self.hooks = hooks;
        self
    }

    /// How adopted Patroni clusters are reached (`[patroni]`).
    pub fn with_patroni(mut self, access: Option<PatroniAccess>) -> Engine {
        self.patroni = access;
        self
    }

    /// The name this engine claims work under.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Arms a failpoint (tests and the kill drills use `PGMAINT_FAILPOINT`).
    pub fn with_failpoint(mut self, failpoint: Option<Failpoint>) -> Engine {
        self.failpoint = failpoint;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn endpoint(&self) -> &PgBouncer {
        &self.endpoint
    }

    pub fn provider(&self) -> &dyn Provider {
        self.provider.as_ref()
    }

    async fn failpoint(&self, step: &str, phase: Phase) -> Result<(), FailpointReached> {
        match &self.failpoint {
            Some(failpoint) => failpoint.hit(step, phase).await,
            None => Ok(()),
        }
    }
}

impl Engine {
    /// A session on the server at `location`, as pgmaint's own role.
    async fn connect(&self, location: &str) -> EngineResult<Server> {
        Ok(Server::connect_to(&self.provider.address(location), "postgres", CONNECT_TIMEOUT).await?)
    }
}
