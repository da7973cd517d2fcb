//! Apps (consumers of databases), their attachments and maintenance mode.

use super::{Store, StoreError, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppRecord {
    pub id: i64,
    pub name: String,
    pub maintenance_mode: bool,
    pub on_maintenance_on: Option<String>,
    pub on_maintenance_off: Option<String>,
}

const APP_COLUMNS: &str = "a.id, a.name, a.maintenance_mode, a.on_maintenance_on, a.on_maintenance_off";

impl Store {
    /// Creates an app attached to a database as `DATABASE_URL`.
    pub async fn insert_app(&self, name: &str, database_id: i64, on_hook: Option<&str>, off_hook: Option<&str>) -> StoreResult<AppRecord> {
        let mut tx = self.pool().begin().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO apps (name, on_maintenance_on, on_maintenance_off) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(on_hook)
        .bind(off_hook)
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

    /// The apps with an attachment to a database.
    pub async fn apps_attached_to(&self, database_id: i64) -> StoreResult<Vec<AppRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT DISTINCT {APP_COLUMNS} FROM apps a JOIN attachments t ON t.app_id = a.id WHERE t.database_id = $1 ORDER BY a.name"
        ))
        .bind(database_id)
        .fetch_all(self.pool())
        .await?)
    }
}
