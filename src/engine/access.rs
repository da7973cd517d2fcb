//! Each database's credentials on its servers and in its URL, and their
//! rotation (`credentials rotate`); see `crate::access` for the model.
//!
//! The state store is the record: which login is active, its password and
//! verifier, and the previous login with the time it stops working. Servers
//! get roles made to match it (on the primary; replicas follow), PgBouncer's
//! auth file lists every valid login's verifier.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::access::{new_password, scram_verifier, DatabaseRoles};
use crate::pg::access::{DatabaseAccess, Login};
use crate::store::{CredentialsRecord, DatabaseRecord, ValidLogin};

use super::releases::ReleaseOutcome;
use super::{Engine, EngineError, EngineResult};

/// What `credentials rotate` did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rotation {
    pub database: String,
    /// The login role the new URL names.
    pub role: String,
    pub rotated_at: DateTime<Utc>,
    /// The login the old URL names.
    pub previous_role: String,
    /// When the previous login stops working, at the latest.
    pub previous_valid_until: DateTime<Utc>,
    /// True when every attached app restarted with the new URL, so the
    /// previous login was retired at once.
    pub previous_retired: bool,
    /// The release `Rotate credentials NAME` of each attached app.
    pub releases: Vec<ReleaseOutcome>,
}

impl Engine {
    /// The database's credentials, made (a random password) on first use.
    pub(super) async fn credentials_of(&self, database: &DatabaseRecord) -> EngineResult<CredentialsRecord> {
        let roles = DatabaseRoles::of(&database.name);
        let password = new_password();
        Ok(self.store.ensure_credentials(database.id, &roles.logins[0], &password, &scram_verifier(&password)).await?)
    }

    /// The server the database's roles are made on: its own current server,
    /// or for a follower its leader's (the roles replicate to the follower).
    async fn roles_location(&self, database: &DatabaseRecord) -> EngineResult<String> {
        let mut owner = database.clone();
        while let Some(leader) = owner.following_id {
            owner = self.store.database(leader).await?;
        }
        self.current_location(owner.id).await
    }

    /// Makes the database's roles on the server at `location` match `credentials`:
    /// the active login (and the previous one during its grace) may log in,
    /// any other login of the database may not.
    pub(super) async fn apply_access(&self, location: &str, database: &DatabaseRecord, credentials: &CredentialsRecord) -> EngineResult<()> {
        let roles = DatabaseRoles::of(&database.name);
        let valid = credentials.valid_logins();
        let logins: Vec<Login> = roles
            .logins
            .iter()
            .map(|role| Login { role, verifier: valid.iter().find(|(r, _)| r == role).map(|(_, v)| v.as_str()) })
            .collect();
        let access = DatabaseAccess { dbname: &database.dbname, owner: &roles.owner, owns_database: database.following_id.is_none(), logins: &logins };
        Ok(self.connect(location).await?.ensure_access(&access).await?)
    }

    /// Creates (or repairs) the database's roles where they live.
    pub(super) async fn ensure_roles(&self, database: &DatabaseRecord) -> EngineResult<CredentialsRecord> {
        let credentials = self.credentials_of(database).await?;
        self.apply_access(&self.roles_location(database).await?, database, &credentials).await?;
        Ok(credentials)
    }

    /// A follower that became a primary of its own owns its database and the
    /// objects the owner role of its leader (named `leader`) made. Doing it
    /// again changes nothing.
    pub(super) async fn take_ownership(&self, database: &DatabaseRecord, leader: &str) -> EngineResult<()> {
        let location = self.current_location(database.id).await?;
        let credentials = self.credentials_of(database).await?;
        self.apply_access(&location, database, &credentials).await?;
        let session = crate::pg::Server::connect_to(&self.provider.address(&location), &database.dbname, super::CONNECT_TIMEOUT).await?;
        session.reassign_owned(&DatabaseRoles::of(leader).owner, &DatabaseRoles::of(&database.name).owner).await?;
        Ok(())
    }

    /// Every login PgBouncer must accept, with its verifier.
    pub(super) async fn valid_logins(&self) -> EngineResult<Vec<ValidLogin>> {
        let mut logins: Vec<ValidLogin> = self.store.all_credentials().await?.iter().flat_map(CredentialsRecord::valid_logins).collect();
        // PgBouncer logs in as pgmaint's role to look up adopted clusters' client passwords.
        if let Some(password) = self.patroni.as_ref().and_then(|access| access.pg_password().map(|p| (access.pg_user(), p))) {
            if self.store.has_adopted_clusters().await? {
                logins.push((password.0.to_string(), password.1.to_string()));
            }
        }
        Ok(logins)
    }

    /// The URL applications use for `database`: its active login over TCP.
    /// Maintenances never change it; a rotation does.
    /// An adopted cluster's URL has no login: clients keep their own roles.
    pub(super) async fn app_url(&self, database: &DatabaseRecord) -> EngineResult<String> {
        if self.is_adopted(database).await? {
            return Ok(self.endpoint.url_without_login(&database.name));
        }
        let credentials = self.store.credentials(database.id).await?;
        Ok(self.endpoint.client_url(&credentials.login_role, &credentials.password, &database.name))
    }

    /// `credentials rotate NAME [--grace DUR]`: the database's other login
    /// gets a new password and becomes the one in its URL; each attached app
    /// gets a release `Rotate credentials NAME` and its restart hook. The
    /// previous login is retired at once when every app restarted, else
    /// when `grace` ends (the daemon's leader pass retires it then).
    pub async fn rotate_credentials(&self, name: &str, grace: std::time::Duration, made_by: &str) -> EngineResult<Rotation> {
        let database = self.store.database_named(name).await?;
        self.refuse_if_adopted(&database, "rotating pgmaint-made credentials (its clients bring their own roles)").await?;
        let current = self.credentials_of(&database).await?;
        if let (Some(role), Some(until)) = (&current.retired_role, current.retire_at) {
            return Err(EngineError::Refused(format!(
                "the previous rotation's login {role} of {name} stays valid until {}; rotate again after that",
                until.format("%Y-%m-%d %H:%M:%S %z")
            )));
        }
        let grace = TimeDelta::from_std(grace).map_err(|_| EngineError::Invalid("grace period too long".into()))?;
        let roles = DatabaseRoles::of(&database.name);
        let next = roles.other_login(&current.login_role).to_string();
        let password = new_password();
        let verifier = scram_verifier(&password);
        let old_url = self.endpoint.client_url(&current.login_role, &current.password, &database.name);
        let rotated = self.store.rotate_credentials(database.id, &next, &password, &verifier, Utc::now() + grace).await?;
        // The new login works on the server and the endpoint before any app is given it.
        self.apply_access(&self.roles_location(&database).await?, &database, &rotated).await?;
        self.publish_routes().await?;
        let new_url = self.endpoint.client_url(&next, &password, &database.name);
        let rotated_at = rotated.rotated_at.unwrap_or_else(Utc::now);
        let change = format!("Rotate credentials {name}");
        let releases = self.record_attachment_release(database.id, &change, Some(rotated_at), made_by, &old_url, &new_url).await?;
        let previous_retired = releases.iter().all(|r| r.restart_error.is_none());
        if previous_retired {
            self.retire_previous_login(&database, &current.login_role).await?;
        }
        tracing::info!(database = name, role = %next, previous_retired, "credentials rotated");
        Ok(Rotation {
            database: database.name,
            role: next,
            rotated_at,
            previous_role: current.login_role,
            previous_valid_until: rotated.retire_at.unwrap_or(rotated_at),
            previous_retired,
            releases,
        })
    }

    /// The previous login stops working: NOLOGIN on the server, out of PgBouncer's auth file.
    async fn retire_previous_login(&self, database: &DatabaseRecord, role: &str) -> EngineResult<()> {
        self.connect(&self.roles_location(database).await?).await?.retire_login(role).await?;
        self.store.clear_retired_login(database.id, role).await?;
        self.publish_routes().await?;
        tracing::info!(database = %database.name, role, "previous login retired");
        Ok(())
    }

    /// Retires the previous logins whose grace ended by `now` (the leader's pass).
    pub async fn expire_logins(&self, now: DateTime<Utc>) -> EngineResult<usize> {
        let expired = self.store.expired_logins(now).await?;
        for credentials in &expired {
            let database = self.store.database(credentials.database_id).await?;
            if let Some(role) = &credentials.retired_role {
                self.retire_previous_login(&database, role).await?;
            }
        }
        Ok(expired.len())
    }
}
