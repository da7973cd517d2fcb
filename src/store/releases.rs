//! Releases of an app's config: v1, v2, ... each a full copy of the config
//! (a map of KEY -> value) with the change that made it, who and when.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Store, StoreResult};

/// An app's config: environment variable names and their values.
pub type Config = BTreeMap<String, String>;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReleaseRecord {
    pub app_id: i64,
    pub version: i32,
    pub change: String,
    pub made_by: String,
    pub config: Json<Config>,
    pub created_at: DateTime<Utc>,
}

const RELEASE_COLUMNS: &str = "app_id, version, change, made_by, config, created_at";

impl Store {
    /// Records release `version` of an app (`created_at` defaults to now).
    /// `None` when that version already exists: another release got there
    /// first, and the caller should read the newest release again.
    pub async fn insert_release(
        &self,
        app_id: i64,
        version: i32,
        change: &str,
        made_by: &str,
        config: &Config,
        created_at: Option<DateTime<Utc>>,
    ) -> StoreResult<Option<ReleaseRecord>> {
        Ok(sqlx::query_as(&format!(
            "INSERT INTO releases (app_id, version, change, made_by, config, created_at) \
             VALUES ($1, $2, $3, $4, $5, COALESCE($6, now())) \
             ON CONFLICT (app_id, version) DO NOTHING RETURNING {RELEASE_COLUMNS}"
        ))
        .bind(app_id)
        .bind(version)
        .bind(change)
        .bind(made_by)
        .bind(Json(config))
        .bind(created_at)
        .fetch_optional(self.pool())
        .await?)
    }

    /// An app's releases, newest first.
    pub async fn releases(&self, app_id: i64) -> StoreResult<Vec<ReleaseRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE app_id = $1 ORDER BY version DESC"))
            .bind(app_id)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn release(&self, app_id: i64, version: i32) -> StoreResult<Option<ReleaseRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE app_id = $1 AND version = $2"))
            .bind(app_id)
            .bind(version)
            .fetch_optional(self.pool())
            .await?)
    }

    /// The newest release, whose config is the app's current config.
    pub async fn latest_release(&self, app_id: i64) -> StoreResult<Option<ReleaseRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE app_id = $1 ORDER BY version DESC LIMIT 1"))
            .bind(app_id)
            .fetch_optional(self.pool())
            .await?)
    }
}
