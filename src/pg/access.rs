//! Roles and grants on a managed server: a database's owner and login roles
//! made to match what the state store says, and nothing open to PUBLIC.
//!
//! Every statement is idempotent (create or alter), so the same call builds
//! the roles of a new database, recreates them on a server its data was
//! copied into, and applies a rotation. Passwords never appear: logins get
//! the SCRAM verifier pgmaint computed, so server logs hold no secret.

use super::{ident, literal, PgError, PgResult, Server};

/// One login role and whether it may log in now.
#[derive(Clone, Copy)]
pub struct Login<'a> {
    pub role: &'a str,
    /// The SCRAM verifier to log in with; `None` makes the role NOLOGIN without a password.
    pub verifier: Option<&'a str>,
}

/// What a database's roles must be on a server (run on the primary: replicas follow).
pub struct DatabaseAccess<'a> {
    /// The PostgreSQL database the roles are for.
    pub dbname: &'a str,
    /// The NOLOGIN role the logins act as.
    pub owner: &'a str,
    /// True: the owner owns the database. False (a follower's roles): it may
    /// connect and read everything (`pg_read_all_data`), nothing more.
    pub owns_database: bool,
    pub logins: &'a [Login<'a>],
}

impl Server {
    /// Makes the roles, ownership and grants of `access` true on this server
    /// (connected to any database as a superuser).
    pub async fn ensure_access(&self, access: &DatabaseAccess<'_>) -> PgResult<()> {
        let db = ident(access.dbname);
        let owner = ident(access.owner);
        let mut sql = vec![
            // Only a database's own roles (and superusers) may connect to it.
            "REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC".to_string(),
            format!("REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC"),
        ];
        if !self.role_exists(access.owner).await? {
            sql.push(format!("CREATE ROLE {owner} NOLOGIN"));
        }
        if access.owns_database {
            sql.push(format!("ALTER DATABASE {db} OWNER TO {owner}"));
            // A follower that became a primary of its own reads through ownership now.
            sql.push(format!("REVOKE pg_read_all_data FROM {owner}"));
        } else {
            sql.push(format!("GRANT CONNECT ON DATABASE {db} TO {owner}"));
            sql.push(format!("GRANT pg_read_all_data TO {owner}"));
        }
        for login in access.logins {
            let role = ident(login.role);
            let can_login = match login.verifier {
                Some(verifier) => format!("LOGIN PASSWORD {}", literal(verifier)),
                None => "NOLOGIN PASSWORD NULL".to_string(),
            };
            if self.role_exists(login.role).await? {
                sql.push(format!("ALTER ROLE {role} {can_login}"));
            } else {
                sql.push(format!("CREATE ROLE {role} {can_login}"));
            }
            sql.push(format!("GRANT {owner} TO {role}"));
            sql.push(format!("ALTER ROLE {role} SET role = {}", literal(access.owner)));
        }
        for statement in sql {
            self.client.batch_execute(&statement).await.map_err(|source| match source.as_db_error() {
                // The statement may hold a verifier: name the action, not the text.
                Some(db) => PgError::Unexpected(format!("setting up roles of {}: {}", access.dbname, db.message())),
                None => PgError::Query { what: "setting up roles", source },
            })?;
        }
        Ok(())
    }

    /// Takes `role`'s login away and ends its sessions.
    pub async fn retire_login(&self, role: &str) -> PgResult<()> {
        if !self.role_exists(role).await? {
            return Ok(());
        }
        self.execute("retire login", &format!("ALTER ROLE {} NOLOGIN PASSWORD NULL", ident(role))).await?;
        self.client
            .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", &[&role])
            .await
            .map_err(|source| PgError::Query { what: "end sessions of a retired login", source })?;
        Ok(())
    }

    /// Gives everything `from` owns in this session's database (and the
    /// database itself) to `to`: a forked follower takes over its leader's objects.
    pub async fn reassign_owned(&self, from: &str, to: &str) -> PgResult<()> {
        if !self.role_exists(from).await? {
            return Ok(());
        }
        self.execute("REASSIGN OWNED", &format!("REASSIGN OWNED BY {} TO {}", ident(from), ident(to))).await
    }

    async fn role_exists(&self, role: &str) -> PgResult<bool> {
        Ok(self
            .client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
            .await
            .map_err(|source| PgError::Query { what: "pg_roles", source })?
            .is_some())
    }
}
