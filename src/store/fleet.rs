//! Databases, their windows and the server instances behind them.

use chrono::{DateTime, Utc};

use crate::model::Labels;

use super::{Store, StoreError, StoreResult, Writer};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DatabaseRecord {
    pub id: i64,
    pub name: String,
    pub plan: String,
    pub following_id: Option<i64>,
    pub forked_from: Option<String>,
    /// The PostgreSQL database it serves inside its servers (a follower's is its leader's).
    pub dbname: String,
    pub owners: Vec<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub last_maintained_at: Option<DateTime<Utc>>,
    /// From `windows`: the window as the operator wrote it, and its length.
    pub window_spec: Option<String>,
    pub window_length_secs: Option<i32>,
    /// `KEY=VALUE` labels, by key.
    pub labels: sqlx::types::Json<Labels>,
}

/// Which part a server plays for its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceRole {
    Current,
    HaStandby,
    Replacement,
    Retired,
}

impl InstanceRole {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceRole::Current => "current",
            InstanceRole::HaStandby => "ha_standby",
            InstanceRole::Replacement => "replacement",
            InstanceRole::Retired => "retired",
        }
    }

    fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "current" => InstanceRole::Current,
            "ha_standby" => InstanceRole::HaStandby,
            "replacement" => InstanceRole::Replacement,
            "retired" => InstanceRole::Retired,
            other => return Err(StoreError::Corrupt(format!("instance role {other:?}"))),
        })
    }
}

#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub id: i64,
    pub database_id: i64,
    pub role: InstanceRole,
    pub location: String,
    pub slot_name: Option<String>,
    pub retired_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: i64,
    database_id: i64,
    role: String,
    location: String,
    slot_name: Option<String>,
    retired_at: Option<DateTime<Utc>>,
}

impl TryFrom<InstanceRow> for InstanceRecord {
    type Error = StoreError;
    fn try_from(row: InstanceRow) -> StoreResult<Self> {
        Ok(InstanceRecord {
            id: row.id,
            database_id: row.database_id,
            role: InstanceRole::parse(&row.role)?,
            location: row.location,
            slot_name: row.slot_name,
            retired_at: row.retired_at,
        })
    }
}

pub struct NewDatabase<'a> {
    pub name: &'a str,
    pub plan: &'a str,
    pub following_id: Option<i64>,
    /// The PostgreSQL database inside the servers; its own name when `None`.
    pub dbname: Option<&'a str>,
    pub owners: &'a [String],
    pub window_spec: &'a str,
    pub window_length_secs: i32,
    pub labels: &'a Labels,
}

const DATABASE_COLUMNS: &str = "d.id, d.name, d.plan, d.following_id, d.forked_from, d.dbname, d.owners, d.status, \
     d.created_at, d.last_maintained_at, d.labels, w.spec AS window_spec, w.length_secs AS window_length_secs \
     FROM databases d LEFT JOIN windows w ON w.database_id = d.id";

/// Inserts a database in `status` and its window within `tx`; the name must be free.
pub(super) async fn insert_database_row(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, new: &NewDatabase<'_>, status: &str) -> StoreResult<i64> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO databases (name, plan, following_id, owners, dbname, labels, status) VALUES ($1, $2, $3, $4, COALESCE($5, $1), $6, $7) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(new.name)
    .bind(new.plan)
    .bind(new.following_id)
    .bind(new.owners)
    .bind(new.dbname)
    .bind(sqlx::types::Json(new.labels))
    .bind(status)
    .fetch_optional(&mut **tx)
    .await?;
    let id = id.ok_or_else(|| StoreError::Conflict(format!("database {} already exists", new.name)))?;
    sqlx::query("INSERT INTO windows (database_id, spec, length_secs) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(new.window_spec)
        .bind(new.window_length_secs)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

impl Store {
    /// Records a new database and its window; the name must be free.
    pub async fn insert_database(&self, new: &NewDatabase<'_>) -> StoreResult<DatabaseRecord> {
        let mut tx = self.pool().begin().await?;
        let id = insert_database_row(&mut tx, new, "creating").await?;
        tx.commit().await?;
        self.database(id).await
    }

    pub async fn database(&self, id: i64) -> StoreResult<DatabaseRecord> {
        sqlx::query_as(&format!("SELECT {DATABASE_COLUMNS} WHERE d.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("database #{id} not found")))
    }

    /// `database NAME not found` when there is none: the message the CLI prints.
    pub async fn database_named(&self, name: &str) -> StoreResult<DatabaseRecord> {
        sqlx::query_as(&format!("SELECT {DATABASE_COLUMNS} WHERE d.name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("database {name} not found")))
    }

    pub async fn databases(&self) -> StoreResult<Vec<DatabaseRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {DATABASE_COLUMNS} ORDER BY d.name")).fetch_all(self.pool()).await?)
    }

    pub async fn followers_of(&self, database_id: i64) -> StoreResult<Vec<DatabaseRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {DATABASE_COLUMNS} WHERE d.following_id = $1 ORDER BY d.name"))
            .bind(database_id)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn set_database_status(&self, database_id: i64, status: &str) -> StoreResult<()> {
        sqlx::query("UPDATE databases SET status = $2 WHERE id = $1")
            .bind(database_id)
            .bind(status)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Sets the labels in `set` and removes the keys in `remove`, in one
    /// statement; answers with the labels the database has now.
    pub async fn set_labels(&self, database_id: i64, set: &Labels, remove: &[String]) -> StoreResult<Labels> {
        let labels: Option<sqlx::types::Json<Labels>> =
            sqlx::query_scalar("UPDATE databases SET labels = (labels - $3::text[]) || $2 WHERE id = $1 RETURNING labels")
                .bind(database_id)
                .bind(sqlx::types::Json(set))
                .bind(remove)
                .fetch_optional(self.pool())
                .await?;
        labels.map(|json| json.0).ok_or_else(|| StoreError::NotFound(format!("database #{database_id} not found")))
    }

    /// A follower becomes a database of its own, remembering where it came from.
    pub async fn fork_database(&self, writer: Writer, database_id: i64, forked_from: &str) -> StoreResult<()> {
        let mut tx = self.begin_as(writer).await?;
        sqlx::query("UPDATE databases SET following_id = NULL, forked_from = $2 WHERE id = $1")
            .bind(database_id)
            .bind(forked_from)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A follower now follows `leader_id`.
    pub async fn set_following(&self, writer: Writer, database_id: i64, leader_id: i64) -> StoreResult<()> {
        let mut tx = self.begin_as(writer).await?;
        sqlx::query("UPDATE databases SET following_id = $2 WHERE id = $1").bind(database_id).bind(leader_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes a database's window.
    pub async fn set_window(&self, database_id: i64, spec: &str, length_secs: i32) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO windows (database_id, spec, length_secs) VALUES ($1, $2, $3) \
             ON CONFLICT (database_id) DO UPDATE SET spec = excluded.spec, length_secs = excluded.length_secs",
        )
        .bind(database_id)
        .bind(spec)
        .bind(length_secs)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Blackout periods of a database (and fleet-wide ones), as (start, end).
    pub async fn blackouts(&self, database_id: i64) -> StoreResult<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        Ok(sqlx::query_as("SELECT starts_at, ends_at FROM blackouts WHERE database_id = $1 OR database_id IS NULL ORDER BY starts_at")
            .bind(database_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Forgets a database and everything recorded about it.
    pub async fn delete_database(&self, database_id: i64) -> StoreResult<()> {
        let mut tx = self.pool().begin().await?;
        // Maintenances reference instances; drop them first.
        sqlx::query("DELETE FROM maintenances WHERE database_id = $1").bind(database_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM databases WHERE id = $1").bind(database_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Retired servers of the whole fleet retired before `cutoff` and not
    /// removed yet, except those an unfinished maintenance still acts on
    /// (a switch retires the old primary at its repoint, then stops it later).
    pub async fn retired_before(&self, cutoff: DateTime<Utc>) -> StoreResult<Vec<InstanceRecord>> {
        let rows: Vec<InstanceRow> = sqlx::query_as(
            "SELECT i.id, i.database_id, i.role, i.location, i.slot_name, i.retired_at FROM instances i \
             WHERE i.role = 'retired' AND i.removed_at IS NULL AND i.retired_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM maintenances m WHERE m.state NOT IN ('completed', 'failed') \
                             AND i.id IN (m.candidate_id, m.old_instance_id)) \
             ORDER BY i.id",
        )
        .bind(cutoff)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Records that a retired server's files are gone.
    pub async fn mark_removed(&self, instance_id: i64) -> StoreResult<()> {
        sqlx::query("UPDATE instances SET removed_at = now() WHERE id = $1 AND role = 'retired'").bind(instance_id).execute(self.pool()).await?;
        Ok(())
    }

    /// Every instance of a database that still exists, whatever its role.
    pub async fn instances(&self, database_id: i64) -> StoreResult<Vec<InstanceRecord>> {
        let rows: Vec<InstanceRow> = sqlx::query_as(
            "SELECT id, database_id, role, location, slot_name, retired_at FROM instances \
             WHERE database_id = $1 AND removed_at IS NULL ORDER BY id",
        )
        .bind(database_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Records a server for a database. Written BEFORE the server is built, so a
    /// crash mid-build leaves a row that tells the next run where to look.
    pub async fn insert_instance(&self, writer: Writer, database_id: i64, role: InstanceRole, location: &str, slot_name: Option<&str>) -> StoreResult<InstanceRecord> {
        let mut tx = self.begin_as(writer).await?;
        let row: InstanceRow = sqlx::query_as(
            "INSERT INTO instances (database_id, role, location, slot_name) VALUES ($1, $2, $3, $4) \
             RETURNING id, database_id, role, location, slot_name, retired_at",
        )
        .bind(database_id)
        .bind(role.as_str())
        .bind(location)
        .bind(slot_name)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    pub async fn instance(&self, id: i64) -> StoreResult<InstanceRecord> {
        let row: InstanceRow = sqlx::query_as("SELECT id, database_id, role, location, slot_name, retired_at FROM instances WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("instance #{id} not found")))?;
        row.try_into()
    }

    /// The instance playing `role` for a database, if any (the newest one).
    pub async fn instance_in_role(&self, database_id: i64, role: InstanceRole) -> StoreResult<Option<InstanceRecord>> {
        let row: Option<InstanceRow> = sqlx::query_as(
            "SELECT id, database_id, role, location, slot_name, retired_at FROM instances \
             WHERE database_id = $1 AND role = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(database_id)
        .bind(role.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The server clients reach for this database; every live database has one.
    pub async fn current_instance(&self, database_id: i64) -> StoreResult<InstanceRecord> {
        self.instance_in_role(database_id, InstanceRole::Current)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("database #{database_id} has no current server")))
    }

    /// Makes `new_current` the database's current server and retires the old one,
    /// in one transaction, with the database taking `plan` if given (a plan
    /// change). Repeating it is harmless.
    pub async fn promote_instance(&self, writer: Writer, database_id: i64, new_current: i64, plan: Option<&str>) -> StoreResult<()> {
        let mut tx = self.begin_as(writer).await?;
        sqlx::query("UPDATE instances SET role = 'retired', retired_at = now() WHERE database_id = $1 AND role = 'current' AND id <> $2")
            .bind(database_id)
            .bind(new_current)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE instances SET role = 'current' WHERE id = $1")
            .bind(new_current)
            .execute(&mut *tx)
            .await?;
        if let Some(plan) = plan {
            sqlx::query("UPDATE databases SET plan = $2 WHERE id = $1").bind(database_id).bind(plan).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_instance_role(&self, writer: Writer, instance_id: i64, role: InstanceRole) -> StoreResult<()> {
        let mut tx = self.begin_as(writer).await?;
        sqlx::query("UPDATE instances SET role = $2, retired_at = CASE WHEN $2 = 'retired' THEN now() END WHERE id = $1")
            .bind(instance_id)
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
