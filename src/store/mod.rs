//! The state store: PostgreSQL through sqlx, and the only module that writes SQL for state.
//!
//! Everything pgmaint knows about its fleet lives here, so a daemon that is
//! killed and started again (or another daemon) can rebuild what should happen
//! next from the store alone. The schema is in `migrations/`, applied at start-up.

mod apps;
mod credentials;
mod fleet;
mod leases;
mod maintenances;
mod metrics;
mod outbox;
mod patroni;
mod releases;
mod rollouts;

pub use apps::{AppHooks, AppRecord};
pub use credentials::{CredentialsRecord, ValidLogin};
pub use fleet::{DatabaseRecord, InstanceRecord, InstanceRole, NewDatabase};
pub use maintenances::{Claim, MaintenanceRecord, MaintenanceState, StepRecord, StepStatus, Writer};
pub use outbox::{Channel, Outgoing, Queued};
pub use patroni::AdoptedCluster;
pub use releases::{Config, ReleaseRecord};
pub use rollouts::{NewRollout, RolloutMember, RolloutRecord, RolloutState};

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Failures talking to the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `url` without its password.
    #[error("state store {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("state store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("state store: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("state store holds an invalid value: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A `postgresql://user:password@host/...` URL with the password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// A handle on the state store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects to `url` (a `postgresql://` URL; Unix sockets via `?host=/dir`)
    /// and brings the schema up to date.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|source| StoreError::Connect { url: redact(url), source })?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect { url: redact(url), source })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn urls_in_messages_hide_the_password() {
        assert_eq!(super::redact("postgresql://pgmaint:S3cret@db.example/pgmaint"), "postgresql://pgmaint:***@db.example/pgmaint");
        assert_eq!(super::redact("postgresql://postgres@localhost/postgres?host=/x"), "postgresql://postgres@localhost/postgres?host=/x");
        assert_eq!(super::redact("not a url"), "not a url");
    }
}
