//! Apps (consumers of databases), their attachments and maintenance mode.

use super::{Store, StoreError, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppRecord {
    pub id: i64,
    pub name: String,
    pub maintenance_mode: bool,
    pub on_maintenance_on: Option<String>,
    pub on_maintenance_off: Option<String>,
    /// Rewritten (KEY=VALUE lines) at every release.
    pub env_file: Option<String>,
    /// Run after every release.
    pub restart_hook: Option<String>,
}

/// An app's optional commands and files.
#[derive(Debug, Clone, Default)]
pub struct AppHooks<'a> {
    pub on_maintenance_on: Option<&'a str>,
    pub on_maintenance_off: Option<&'a str>,
    pub env_file: Option<&'a str>,
    pub restart_hook: Option<&'a str>,
}

const APP_COLUMNS: &str = "a.id, a.name, a.maintenance_mode, a.on_maintenance_on, a.on_maintenance_off, a.env_file, a.restart_hook";

impl Store {
    /// Creates an app attached to a database as `DATABASE_URL`.
    pub async fn insert_app(&self, name: &str, database_id: i64, hooks: &AppHooks<'_>) -> StoreResult<AppRecord> {
        let mut tx = self.pool().begin().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO apps (name, on_maintenance_on, on_maintenance_off, env_file, restart_hook) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(hooks.on_maintenance_on)
        .bind(hooks.on_maintenance_off)
        .bind(hooks.env_file)
        .bind(hooks.restart_hook)
        .fetch_optional(&mut *tx)
        .await?;
        let id = id.ok_or_else(|| StoreError::Conflict(format!("app {name} already exists")))?;
        sqlx::query("INSERT INTO attachments (app_id, database_id) VALUES ($1, $2)")
            .bind(id)
            .bind(database_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.app_named(name).await
    }

    /// `app NAME not found` when there is none.
    pub async fn app_named(&self, name: &str) -> StoreResult<AppRecord> {
        sqlx::query_as(&format!("SELECT {APP_COLUMNS} FROM apps a WHERE a.name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("app {name} not found")))
    }

    pub async fn set_app_maintenance(&self, app_id: i64, on: bool) -> StoreResult<()> {
        sqlx::query("UPDATE apps SET maintenance_mode = $2 WHERE id = $1").bind(app_id).bind(on).execute(self.pool()).await?;
        Ok(())
    }

    /// Attaches a database to an app under `name` (the config key, e.g. `ORDERS_URL`).
    pub async fn insert_attachment(&self, app_id: i64, database_id: i64, name: &str) -> StoreResult<()> {
        let inserted = sqlx::query("INSERT INTO attachments (app_id, database_id, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(app_id)
            .bind(database_id)
            .bind(name)
            .execute(self.pool())
            .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("the app already has an attachment named {name}")));
        }
        Ok(())
    }

    /// The apps with an attachment to a database.
    pub async fn apps_attached_to(&self, database_id: i64) -> StoreResult<Vec<AppRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT DISTINCT {APP_COLUMNS} FROM apps a JOIN attachments t ON t.app_id = a.id WHERE t.database_id = $1 ORDER BY a.name"
        ))
        .bind(database_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// An app's attachments as (config key, database id), by key.
    pub async fn attachments_of(&self, app_id: i64) -> StoreResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as("SELECT name, database_id FROM attachments WHERE app_id = $1 ORDER BY name")
            .bind(app_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// A promotion, in one transaction: the app's `keys` now attach
    /// `database_id` (created where missing), and the previous database stays
    /// attached under `keep_previous` = (its id, a free key) if given.
    pub async fn move_attachments(&self, app_id: i64, database_id: i64, keys: &[String], keep_previous: Option<(i64, &str)>) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        for key in keys {
            sqlx::query(
                "INSERT INTO attachments (app_id, database_id, name) VALUES ($1, $2, $3) \
                 ON CONFLICT (app_id, name) DO UPDATE SET database_id = excluded.database_id",
            )
            .bind(app_id)
            .bind(database_id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((previous_id, key)) = keep_previous {
            sqlx::query("INSERT INTO attachments (app_id, database_id, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(app_id)
                .bind(previous_id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
