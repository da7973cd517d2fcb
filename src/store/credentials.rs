//! Each database's login credentials and the state of their rotation
//! (see `crate::access` for the model).

use chrono::{DateTime, Utc};

use super::{Store, StoreError, StoreResult};

/// A database's active login, and the previous one while it is still valid.
#[derive(Clone, sqlx::FromRow)]
pub struct CredentialsRecord {
    pub database_id: i64,
    pub login_role: String,
    /// The active login's password: only for the database's URL.
    pub password: String,
    /// Its SCRAM-SHA-256 verifier, what servers and PgBouncer are given.
    pub verifier: String,
    /// The login replaced by the last rotation, valid until `retire_at`.
    pub retired_role: Option<String>,
    pub retired_verifier: Option<String>,
    pub retire_at: Option<DateTime<Utc>>,
    pub rotated_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for CredentialsRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsRecord")
            .field("database_id", &self.database_id)
            .field("login_role", &self.login_role)
            .field("password", &"***")
            .field("retired_role", &self.retired_role)
            .field("retire_at", &self.retire_at)
            .field("rotated_at", &self.rotated_at)
            .finish()
    }
}

/// A login that is valid now: (role, verifier).
pub type ValidLogin = (String, String);

impl CredentialsRecord {
    /// The logins PgBouncer and the servers must accept: the active one and,
    /// during a rotation's grace, the previous one.
    pub fn valid_logins(&self) -> Vec<ValidLogin> {
        let mut logins = vec![(self.login_role.clone(), self.verifier.clone())];
        if let (Some(role), Some(verifier)) = (&self.retired_role, &self.retired_verifier) {
            logins.push((role.clone(), verifier.clone()));
        }
        logins
    }
}

const COLUMNS: &str = "database_id, login_role, password, verifier, retired_role, retired_verifier, retire_at, rotated_at";

impl Store {
    /// Records a database's first login unless it has one; returns what is recorded.
    pub async fn ensure_credentials(&self, database_id: i64, login_role: &str, password: &str, verifier: &str) -> StoreResult<CredentialsRecord> {
        sqlx::query(
            "INSERT INTO credentials (database_id, login_role, password, verifier) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (database_id) DO NOTHING",
        )
        .bind(database_id)
        .bind(login_role)
        .bind(password)
        .bind(verifier)
        .execute(self.pool())
        .await?;
        self.credentials(database_id).await
    }

    pub async fn credentials(&self, database_id: i64) -> StoreResult<CredentialsRecord> {
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM credentials WHERE database_id = $1"))
            .bind(database_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("database #{database_id} has no credentials")))
    }

    pub async fn has_credentials(&self, database_id: i64) -> StoreResult<bool> {
        Ok(sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM credentials WHERE database_id = $1)")
            .bind(database_id)
            .fetch_one(self.pool())
            .await?)
    }

    /// Every database's credentials (for PgBouncer's auth file).
    pub async fn all_credentials(&self) -> StoreResult<Vec<CredentialsRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM credentials ORDER BY database_id")).fetch_all(self.pool()).await?)
    }

    /// A rotation: `login_role` becomes active with a new password; the
    /// active login becomes the retired one until `retire_at`. Refused while
    /// the previous rotation's login is still valid.
    pub async fn rotate_credentials(
        &self,
        database_id: i64,
        login_role: &str,
        password: &str,
        verifier: &str,
        retire_at: DateTime<Utc>,
    ) -> StoreResult<CredentialsRecord> {
        let rotated = sqlx::query(
            "UPDATE credentials SET retired_role = login_role, retired_verifier = verifier, retire_at = $5, \
                 login_role = $2, password = $3, verifier = $4, rotated_at = now() \
             WHERE database_id = $1 AND retired_role IS NULL",
        )
        .bind(database_id)
        .bind(login_role)
        .bind(password)
        .bind(verifier)
        .bind(retire_at)
        .execute(self.pool())
        .await?
        .rows_affected();
        if rotated == 0 {
            return Err(StoreError::Conflict(
                "the previous rotation's login is still valid; rotate again once it is retired".into(),
            ));
        }
        self.credentials(database_id).await
    }

    /// The previous login is retired: forget it.
    pub async fn clear_retired_login(&self, database_id: i64, role: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE credentials SET retired_role = NULL, retired_verifier = NULL, retire_at = NULL \
             WHERE database_id = $1 AND retired_role = $2",
        )
        .bind(database_id)
        .bind(role)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Credentials whose previous login's grace has ended at `now`.
    pub async fn expired_logins(&self, now: DateTime<Utc>) -> StoreResult<Vec<CredentialsRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {COLUMNS} FROM credentials WHERE retire_at <= $1 ORDER BY database_id"))
            .bind(now)
            .fetch_all(self.pool())
            .await?)
    }
}
