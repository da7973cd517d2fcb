//! Adopted Patroni clusters: which database is which cluster (its scope, its
//! system identifier, the REST URLs pgmaint asks), adopted in one
//! transaction with the database's record and its leader as current server.

use super::fleet::{insert_database_row, NewDatabase};
use super::{DatabaseRecord, Store, StoreError, StoreResult, Writer};

/// A Patroni cluster pgmaint maintains.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AdoptedCluster {
    pub database_id: i64,
    pub scope: String,
    pub system_identifier: String,
    pub rest_urls: Vec<String>,
}

impl Store {
    /// Records an adopted cluster as database `new`, with the server at
    /// `leader_location` current; the name must be free, and no other
    /// database may be the same cluster (same system identifier).
    pub async fn insert_adopted(&self, new: &NewDatabase<'_>, cluster: &AdoptedCluster, leader_location: &str) -> StoreResult<DatabaseRecord> {
        let mut tx = self.pool().begin().await?;
        let taken: Option<String> = sqlx::query_scalar(
            "SELECT d.name FROM patroni_clusters p JOIN databases d ON d.id = p.database_id WHERE p.system_identifier = $1",
        )
        .bind(&cluster.system_identifier)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(name) = taken {
            return Err(StoreError::Conflict(format!("this Patroni cluster (system identifier {}) is already adopted as {name}", cluster.system_identifier)));
        }
        let id = insert_database_row(&mut tx, new, "available").await?;
        sqlx::query("INSERT INTO instances (database_id, role, location) VALUES ($1, 'current', $2)")
            .bind(id)
            .bind(leader_location)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO patroni_clusters (database_id, scope, system_identifier, rest_urls) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(&cluster.scope)
            .bind(&cluster.system_identifier)
            .bind(&cluster.rest_urls)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.database(id).await
    }

    /// The cluster database `database_id` is, if it was adopted.
    pub async fn adopted_cluster(&self, database_id: i64) -> StoreResult<Option<AdoptedCluster>> {
        Ok(sqlx::query_as("SELECT database_id, scope, system_identifier, rest_urls FROM patroni_clusters WHERE database_id = $1")
            .bind(database_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Whether any database is an adopted cluster.
    pub async fn has_adopted_clusters(&self) -> StoreResult<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM patroni_clusters)").fetch_one(self.pool()).await?)
    }

    /// Patroni's leader moved: the database's current server is now at `location`.
    pub async fn move_current_server(&self, writer: Writer, database_id: i64, location: &str) -> StoreResult<()> {
        let mut tx = self.begin_as(writer).await?;
        sqlx::query("UPDATE instances SET location = $2 WHERE database_id = $1 AND role = 'current'")
            .bind(database_id)
            .bind(location)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
