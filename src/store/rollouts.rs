//! Rollouts: a reason applied to a selection of databases in waves, their
//! members, and the rollout's maintenances (held, released, cancelled).
//!
//! Every change of a rollout's state is one guarded `UPDATE` (it happens only
//! from the state the caller saw), so two daemons, or a daemon and an
//! operator's `pause`, cannot both move it.

use chrono::{DateTime, Utc};

use super::maintenances::{MaintenanceRow, MAINTENANCE_COLUMNS};
use super::{MaintenanceRecord, Store, StoreError, StoreResult};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RolloutState {
    /// The current wave's maintenances are required and run in their windows.
    Running,
    /// The current wave completed; the next is required once the bake time has passed.
    Baking,
    /// Failures beyond `max_failures`: maintenances not started are held.
    Halted,
    /// Paused by an operator: maintenances not started are held.
    Paused,
    Completed,
    /// Aborted: maintenances not started were cancelled.
    Aborted,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Baking => "baking",
            RolloutState::Halted => "halted",
            RolloutState::Paused => "paused",
            RolloutState::Completed => "completed",
            RolloutState::Aborted => "aborted",
        }
    }

    fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "running" => RolloutState::Running,
            "baking" => RolloutState::Baking,
            "halted" => RolloutState::Halted,
            "paused" => RolloutState::Paused,
            "completed" => RolloutState::Completed,
            "aborted" => RolloutState::Aborted,
            other => return Err(StoreError::Corrupt(format!("rollout state {other:?}"))),
        })
    }
}

#[derive(Debug, Clone)]
pub struct RolloutRecord {
    pub id: i64,
    pub name: String,
    pub reason: String,
    pub waves_spec: String,
    pub bake_secs: i64,
    pub required_by: DateTime<Utc>,
    pub max_failures: i32,
    pub watchers: Vec<String>,
    pub state: RolloutState,
    /// The wave whose maintenances are required (0-based).
    pub wave: i32,
    pub bake_until: Option<DateTime<Utc>>,
    pub halted_because: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RolloutRow {
    id: i64,
    name: String,
    reason: String,
    waves_spec: String,
    bake_secs: i64,
    required_by: DateTime<Utc>,
    max_failures: i32,
    watchers: Vec<String>,
    state: String,
    wave: i32,
    bake_until: Option<DateTime<Utc>>,
    halted_because: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<RolloutRow> for RolloutRecord {
    type Error = StoreError;
    fn try_from(r: RolloutRow) -> StoreResult<Self> {
        Ok(RolloutRecord {
            id: r.id,
            name: r.name,
            reason: r.reason,
            waves_spec: r.waves_spec,
            bake_secs: r.bake_secs,
            required_by: r.required_by,
            max_failures: r.max_failures,
            watchers: r.watchers,
            state: RolloutState::parse(&r.state)?,
            wave: r.wave,
            bake_until: r.bake_until,
            halted_because: r.halted_because,
            created_at: r.created_at,
        })
    }
}

const ROLLOUT_COLUMNS: &str =
    "id, name, reason, waves_spec, bake_secs, required_by, max_failures, watchers, state, wave, bake_until, halted_because, created_at";

/// A rollout to record.
pub struct NewRollout<'a> {
    pub name: &'a str,
    pub reason: &'a str,
    pub waves_spec: &'a str,
    pub bake_secs: i64,
    pub required_by: DateTime<Utc>,
    pub max_failures: i32,
    pub watchers: &'a [String],
}

/// One database of a rollout, in order.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RolloutMember {
    pub database_id: i64,
    pub name: String,
    pub wave: i32,
}

impl Store {
    /// Records a rollout and its members (database id, wave), in order; the name must be free.
    pub async fn insert_rollout(&self, new: &NewRollout<'_>, members: &[(i64, i32)]) -> StoreResult<RolloutRecord> {
        let mut tx = self.pool().begin().await?;
        let row: Option<RolloutRow> = sqlx::query_as(&format!(
            "INSERT INTO rollouts (name, reason, waves_spec, bake_secs, required_by, max_failures, watchers) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING RETURNING {ROLLOUT_COLUMNS}"
        ))
        .bind(new.name)
        .bind(new.reason)
        .bind(new.waves_spec)
        .bind(new.bake_secs)
        .bind(new.required_by)
        .bind(new.max_failures)
        .bind(new.watchers)
        .fetch_optional(&mut *tx)
        .await?;
        let record: RolloutRecord = row.ok_or_else(|| StoreError::Conflict(format!("rollout {} already exists", new.name)))?.try_into()?;
        for (position, (database_id, wave)) in members.iter().enumerate() {
            sqlx::query("INSERT INTO rollout_members (rollout_id, database_id, wave, position) VALUES ($1, $2, $3, $4)")
                .bind(record.id)
                .bind(database_id)
                .bind(wave)
                .bind(i32::try_from(position).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(record)
    }

    /// `rollout NAME not found` when there is none: the message the CLI prints.
    pub async fn rollout_named(&self, name: &str) -> StoreResult<RolloutRecord> {
        let row: RolloutRow = sqlx::query_as(&format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("rollout {name} not found")))?;
        row.try_into()
    }

    /// Every rollout, oldest first.
    pub async fn rollouts(&self) -> StoreResult<Vec<RolloutRecord>> {
        let rows: Vec<RolloutRow> = sqlx::query_as(&format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts ORDER BY id")).fetch_all(self.pool()).await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The rollouts the scheduler leader advances: running or baking.
    pub async fn active_rollouts(&self) -> StoreResult<Vec<RolloutRecord>> {
        let rows: Vec<RolloutRow> =
            sqlx::query_as(&format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE state IN ('running', 'baking') ORDER BY id"))
                .fetch_all(self.pool())
                .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The soonest end of a bake, if a rollout is baking (the daemon wakes for it).
    pub async fn next_bake_end(&self) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar("SELECT min(bake_until) FROM rollouts WHERE state = 'baking'").fetch_one(self.pool()).await?)
    }

    /// The rollout's databases, in order.
    pub async fn rollout_members(&self, rollout_id: i64) -> StoreResult<Vec<RolloutMember>> {
        Ok(sqlx::query_as(
            "SELECT m.database_id, d.name, m.wave FROM rollout_members m JOIN databases d ON d.id = m.database_id \
             WHERE m.rollout_id = $1 ORDER BY m.position",
        )
        .bind(rollout_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// The newest maintenance the rollout required of each of its databases.
    pub async fn rollout_maintenances(&self, rollout_id: i64) -> StoreResult<Vec<MaintenanceRecord>> {
        let rows: Vec<MaintenanceRow> = sqlx::query_as(&format!(
            "SELECT DISTINCT ON (database_id) {MAINTENANCE_COLUMNS} FROM maintenances WHERE rollout_id = $1 ORDER BY database_id, id DESC"
        ))
        .bind(rollout_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// The name of the rollout that required maintenance `id`, if any.
    pub async fn rollout_name_of(&self, maintenance_id: i64) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT r.name FROM maintenances m JOIN rollouts r ON r.id = m.rollout_id WHERE m.id = $1")
            .bind(maintenance_id)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Moves a rollout from one of `from` to `to`, setting `halted_because`
    /// (cleared otherwise) and ending any bake; false when it was no longer in `from`.
    pub async fn transition_rollout(&self, id: i64, from: &[RolloutState], to: RolloutState, halted_because: Option<&str>) -> StoreResult<bool> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let done = sqlx::query(
            "UPDATE rollouts SET state = $3, halted_because = $4, bake_until = NULL WHERE id = $1 AND state = ANY($2)",
        )
        .bind(id)
        .bind(&from)
        .bind(to.as_str())
        .bind(halted_because)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A running rollout's wave `wave` completed: it bakes until `until`.
    pub async fn start_bake(&self, id: i64, wave: i32, until: DateTime<Utc>) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE rollouts SET state = 'baking', bake_until = $3 WHERE id = $1 AND wave = $2 AND state = 'running'")
            .bind(id)
            .bind(wave)
            .bind(until)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A baked rollout moves from wave `wave` to the next, running.
    pub async fn next_wave(&self, id: i64, wave: i32) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE rollouts SET state = 'running', wave = wave + 1, bake_until = NULL WHERE id = $1 AND wave = $2 AND state = 'baking'",
        )
        .bind(id)
        .bind(wave)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Holds the rollout's maintenances that have not started: they are not
    /// run, and a runner that claimed one meanwhile is fenced out (its token
    /// is stale). Returns how many.
    pub async fn hold_rollout_maintenances(&self, rollout_id: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE maintenances SET state = 'held', fencing_token = fencing_token + 1, claimed_by = NULL, lease_until = NULL \
             WHERE rollout_id = $1 AND state IN ('pending', 'preparing', 'ready')",
        )
        .bind(rollout_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Releases the rollout's held maintenances (they wait to be planned again).
    pub async fn release_rollout_maintenances(&self, rollout_id: i64) -> StoreResult<Vec<MaintenanceRecord>> {
        let rows: Vec<MaintenanceRow> = sqlx::query_as(&format!(
            "UPDATE maintenances SET state = 'pending' WHERE rollout_id = $1 AND state = 'held' RETURNING {MAINTENANCE_COLUMNS}"
        ))
        .bind(rollout_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Cancels the rollout's maintenances that have not started (fencing out
    /// any runner that claimed one meanwhile); returns how many.
    pub async fn cancel_rollout_maintenances(&self, rollout_id: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE maintenances SET state = 'cancelled', outcome = 'cancelled', finished_at = now(), \
                 fencing_token = fencing_token + 1, claimed_by = NULL, lease_until = NULL \
             WHERE rollout_id = $1 AND state IN ('pending', 'preparing', 'ready', 'held')",
        )
        .bind(rollout_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}
