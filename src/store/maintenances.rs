//! Maintenances, their claims (lease + fencing token) and their step logs.
//!
//! A daemon claims a maintenance before running it; every claim increments
//! the fencing token, and every write a runner makes carries the token it
//! claimed with, so a runner that lost its lease (paused, partitioned) can no
//! longer change anything.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Store, StoreError, StoreResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceState {
    /// Required and planned; a switchover's replacement is not being built yet.
    Pending,
    /// The replacement is being prepared.
    Preparing,
    /// Runnable at `scheduled_for`.
    Ready,
    Running,
    Completed,
    Failed,
    /// Not run while its rollout is halted or paused.
    Held,
    /// Its rollout was aborted before it started.
    Cancelled,
}

impl MaintenanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceState::Pending => "pending",
            MaintenanceState::Preparing => "preparing",
            MaintenanceState::Ready => "ready",
            MaintenanceState::Running => "running",
            MaintenanceState::Completed => "completed",
            MaintenanceState::Failed => "failed",
            MaintenanceState::Held => "held",
            MaintenanceState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "pending" => MaintenanceState::Pending,
            "preparing" => MaintenanceState::Preparing,
            "ready" => MaintenanceState::Ready,
            "running" => MaintenanceState::Running,
            "completed" => MaintenanceState::Completed,
            "failed" => MaintenanceState::Failed,
            "held" => MaintenanceState::Held,
            "cancelled" => MaintenanceState::Cancelled,
            other => return Err(StoreError::Corrupt(format!("maintenance state {other:?}"))),
        })
    }
}

#[derive(Debug, Clone)]
pub struct MaintenanceRecord {
    pub id: i64,
    pub database_id: i64,
    pub reason: String,
    pub strategy: String,
    pub required_by: DateTime<Utc>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub forced: bool,
    pub forced_reason: Option<String>,
    pub state: MaintenanceState,
    pub step: Option<String>,
    pub candidate_id: Option<i64>,
    pub old_instance_id: Option<i64>,
    pub fencing_token: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub write_pause_ms: Option<f64>,
    pub outcome: Option<String>,
    pub error: Option<String>,
    /// A `plan-change` maintenance's new plan.
    pub target_plan: Option<String>,
    /// What its preparation is doing, as its runner last saw it.
    pub progress: Option<String>,
    /// Why its check (the after_maintenance hook) failed; `None` when it passed.
    pub check_error: Option<String>,
    /// The rollout that required it.
    pub rollout_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub(super) struct MaintenanceRow {
    id: i64,
    database_id: i64,
    reason: String,
    strategy: String,
    required_by: DateTime<Utc>,
    scheduled_for: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    forced: bool,
    forced_reason: Option<String>,
    state: String,
    step: Option<String>,
    candidate_id: Option<i64>,
    old_instance_id: Option<i64>,
    fencing_token: i64,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    write_pause_ms: Option<f64>,
    outcome: Option<String>,
    error: Option<String>,
    target_plan: Option<String>,
    progress: Option<String>,
    check_error: Option<String>,
    rollout_id: Option<i64>,
}

impl TryFrom<MaintenanceRow> for MaintenanceRecord {
    type Error = StoreError;
    fn try_from(r: MaintenanceRow) -> StoreResult<Self> {
        Ok(MaintenanceRecord {
            id: r.id,
            database_id: r.database_id,
            reason: r.reason,
            strategy: r.strategy,
            required_by: r.required_by,
            scheduled_for: r.scheduled_for,
            window_end: r.window_end,
            forced: r.forced,
            forced_reason: r.forced_reason,
            state: MaintenanceState::parse(&r.state)?,
            step: r.step,
            candidate_id: r.candidate_id,
            old_instance_id: r.old_instance_id,
            fencing_token: r.fencing_token,
            started_at: r.started_at,
            finished_at: r.finished_at,
            write_pause_ms: r.write_pause_ms,
            outcome: r.outcome,
            error: r.error,
            target_plan: r.target_plan,
            progress: r.progress,
            check_error: r.check_error,
            rollout_id: r.rollout_id,
        })
    }
}

pub(super) const MAINTENANCE_COLUMNS: &str = "id, database_id, reason, strategy, required_by, scheduled_for, window_end, forced, forced_reason, \
     state, step, candidate_id, old_instance_id, fencing_token, started_at, finished_at, write_pause_ms, outcome, error, target_plan, progress, check_error, rollout_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Intent,
    Done,
    Failed,
    Skipped,
}

impl StepStatus {
    fn as_str(self) -> &'static str {
        match self {
            StepStatus::Intent => "intent",
            StepStatus::Done => "done",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StepRecord {
    pub step: String,
    pub status: String,
    pub detail: Value,
    pub at: DateTime<Utc>,
}

/// A runner's right to act on one maintenance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub maintenance_id: i64,
    pub token: i64,
}

/// Who makes a write to the fleet's records: a runner holding a claim (its
/// write happens only while its fencing token is still the maintenance's),
/// or an operator's request outside any maintenance (`databases create`,
/// `promote`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    Runner(Claim),
    Operator,
}

impl Store {
    /// Records a required maintenance; a database has at most one open maintenance.
    pub async fn insert_maintenance(
        &self,
        database_id: i64,
        reason: &str,
        strategy: &str,
        required_by: DateTime<Utc>,
        target_plan: Option<&str>,
    ) -> StoreResult<MaintenanceRecord> {
        self.insert_maintenance_for(database_id, reason, strategy, required_by, target_plan, None).await
    }

    /// [`Store::insert_maintenance`], required by `rollout_id` if given (held
    /// when that rollout is halted or paused).
    pub async fn insert_maintenance_for(
        &self,
        database_id: i64,
        reason: &str,
        strategy: &str,
        required_by: DateTime<Utc>,
        target_plan: Option<&str>,
        rollout_id: Option<i64>,
    ) -> StoreResult<MaintenanceRecord> {
        let row: Option<MaintenanceRow> = sqlx::query_as(&format!(
            "INSERT INTO maintenances (database_id, reason, strategy, required_by, target_plan, rollout_id, state) \
             VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN (SELECT state FROM rollouts WHERE id = $6) IN ('halted', 'paused') THEN 'held' ELSE 'pending' END) \
             ON CONFLICT DO NOTHING RETURNING {MAINTENANCE_COLUMNS}"
        ))
        .bind(database_id)
        .bind(reason)
        .bind(strategy)
        .bind(required_by)
        .bind(target_plan)
        .bind(rollout_id)
        .fetch_optional(self.pool())
        .await?;
        row.ok_or_else(|| StoreError::Conflict("a maintenance is already open for this database".into()))?.try_into()
    }

    pub async fn maintenance(&self, id: i64) -> StoreResult<MaintenanceRecord> {
        let row: MaintenanceRow = sqlx::query_as(&format!("SELECT {MAINTENANCE_COLUMNS} FROM maintenances WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("maintenance #{id} not found")))?;
        row.try_into()
    }

    /// The database's maintenance that is not yet completed, failed or cancelled.
    pub async fn open_maintenance(&self, database_id: i64) -> StoreResult<Option<MaintenanceRecord>> {
        let row: Option<MaintenanceRow> = sqlx::query_as(&format!(
            "SELECT {MAINTENANCE_COLUMNS} FROM maintenances \
             WHERE database_id = $1 AND state NOT IN ('completed', 'failed', 'cancelled')"
        ))
        .bind(database_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Every maintenance of a database, newest first.
    pub async fn maintenance_history(&self, database_id: i64) -> StoreResult<Vec<MaintenanceRecord>> {
        let rows: Vec<MaintenanceRow> = sqlx::query_as(&format!(
            "SELECT {MAINTENANCE_COLUMNS} FROM maintenances WHERE database_id = $1 ORDER BY id DESC"
        ))
        .bind(database_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Maintenances not yet finished, oldest first: what a daemon has to drive.
    pub async fn unfinished_maintenances(&self) -> StoreResult<Vec<MaintenanceRecord>> {
        let rows: Vec<MaintenanceRow> = sqlx::query_as(&format!(
            "SELECT {MAINTENANCE_COLUMNS} FROM maintenances \
             WHERE state NOT IN ('completed', 'failed', 'cancelled') ORDER BY id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Sets when the maintenance will run (the planner's answer). Returns
    /// whether the time changed (the owners are told when it does).
    pub async fn schedule_maintenance(&self, id: i64, scheduled_for: DateTime<Utc>, window_end: Option<DateTime<Utc>>, forced_reason: Option<&str>) -> StoreResult<bool> {
        let changed: Option<bool> = sqlx::query_scalar(
            "UPDATE maintenances m SET scheduled_for = $2, window_end = $3, forced = $4 IS NOT NULL, forced_reason = $4 \
             FROM maintenances old WHERE m.id = $1 AND old.id = m.id \
             RETURNING old.scheduled_for IS DISTINCT FROM $2",
        )
        .bind(id)
        .bind(scheduled_for)
        .bind(window_end)
        .bind(forced_reason)
        .fetch_optional(self.pool())
        .await?;
        changed.ok_or_else(|| StoreError::NotFound(format!("maintenance #{id} not found")))
    }

    /// Takes (or renews) the right to run a maintenance for `lease_secs`, unless
    /// another holder's lease is still valid. Each new claim gets a larger token.
    pub async fn claim_maintenance(&self, id: i64, holder: &str, lease_secs: f64) -> StoreResult<Option<Claim>> {
        let token: Option<i64> = sqlx::query_scalar(
            "UPDATE maintenances SET claimed_by = $2, lease_until = clock_timestamp() + make_interval(secs => $3), \
                 fencing_token = fencing_token + 1 \
             WHERE id = $1 AND (claimed_by IS NULL OR claimed_by = $2 OR lease_until < clock_timestamp()) \
             RETURNING fencing_token",
        )
        .bind(id)
        .bind(holder)
        .bind(lease_secs)
        .fetch_optional(self.pool())
        .await?;
        Ok(token.map(|token| Claim { maintenance_id: id, token }))
    }

    /// Extends a claim's lease; fails if the claim was taken over.
    pub async fn renew_claim(&self, claim: Claim, lease_secs: f64) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE maintenances SET lease_until = clock_timestamp() + make_interval(secs => $3) \
             WHERE id = $1 AND fencing_token = $2",
        )
        .bind(claim.maintenance_id)
        .bind(claim.token)
        .bind(lease_secs)
        .execute(self.pool())
        .await?;
        fenced(done.rows_affected(), claim)
    }

    /// Gives a claim up so another runner can take it at once.
    pub async fn release_claim(&self, claim: Claim) -> StoreResult<()> {
        sqlx::query("UPDATE maintenances SET claimed_by = NULL, lease_until = NULL WHERE id = $1 AND fencing_token = $2")
            .bind(claim.maintenance_id)
            .bind(claim.token)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Moves a claimed maintenance to `state`, recording the step it is at.
    pub async fn set_maintenance_state(&self, claim: Claim, state: MaintenanceState) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE maintenances SET state = $3, \
                 started_at = CASE WHEN $3 = 'running' THEN coalesce(started_at, now()) ELSE started_at END, \
                 finished_at = CASE WHEN $3 IN ('completed', 'failed') THEN now() ELSE finished_at END \
             WHERE id = $1 AND fencing_token = $2",
        )
        .bind(claim.maintenance_id)
        .bind(claim.token)
        .bind(state.as_str())
        .execute(self.pool())
        .await?;
        fenced(done.rows_affected(), claim)
    }

    /// Names the server that will be promoted, and the one it replaces.
    pub async fn set_maintenance_instances(&self, claim: Claim, candidate_id: Option<i64>, old_instance_id: Option<i64>) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE maintenances SET candidate_id = $3, old_instance_id = $4 WHERE id = $1 AND fencing_token = $2",
        )
        .bind(claim.maintenance_id)
        .bind(claim.token)
        .bind(candidate_id)
        .bind(old_instance_id)
        .execute(self.pool())
        .await?;
        fenced(done.rows_affected(), claim)
    }

    /// Writes a step's intent, result or skip to the log, and the current step on the maintenance.
    ///
    /// Step records commit asynchronously (`synchronous_commit = off`): they are
    /// durable against a crash of pgmaint, which is what the step machine
    /// guards against, and cost no disk flush inside the critical section. A
    /// crash of the state store itself may lose the newest records; every step
    /// observes the servers before acting, so re-running it is still safe.
    pub async fn record_step(&self, claim: Claim, step: &str, status: StepStatus, detail: Value) -> StoreResult<()> {
        self.record_steps(claim, &[(step, status, detail)]).await
    }

    /// Records several step outcomes in one fenced transaction, in order (the
    /// runner's writes inside the endpoint's pause are batched this way).
    pub async fn record_steps(&self, claim: Claim, records: &[(&str, StepStatus, Value)]) -> StoreResult<()> {
        let Some((last, _, _)) = records.last() else { return Ok(()) };
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
        let done = sqlx::query("UPDATE maintenances SET step = $3 WHERE id = $1 AND fencing_token = $2")
            .bind(claim.maintenance_id)
            .bind(claim.token)
            .bind(*last)
            .execute(&mut *tx)
            .await?;
        fenced(done.rows_affected(), claim)?;
        let steps: Vec<&str> = records.iter().map(|(step, _, _)| *step).collect();
        let statuses: Vec<&str> = records.iter().map(|(_, status, _)| status.as_str()).collect();
        let details: Vec<Value> = records.iter().map(|(_, _, detail)| detail.clone()).collect();
        sqlx::query(
            "INSERT INTO maintenance_steps (maintenance_id, step, status, detail) \
             SELECT $1, step, status, detail FROM unnest($2::text[], $3::text[], $4::jsonb[]) WITH ORDINALITY AS r(step, status, detail, n) ORDER BY n",
        )
        .bind(claim.maintenance_id)
        .bind(&steps)
        .bind(&statuses)
        .bind(&details)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn steps(&self, maintenance_id: i64) -> StoreResult<Vec<StepRecord>> {
        Ok(sqlx::query_as("SELECT step, status, detail, at FROM maintenance_steps WHERE maintenance_id = $1 ORDER BY id")
            .bind(maintenance_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Steps recorded as done (or skipped) since the last `reset_step` (the
    /// engine's record of a postponement): what a resumed runner need not do again.
    pub async fn steps_done_since(&self, maintenance_id: i64, reset_step: &str) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT step FROM maintenance_steps WHERE maintenance_id = $1 AND status IN ('done', 'skipped') \
             AND id > coalesce((SELECT max(id) FROM maintenance_steps WHERE maintenance_id = $1 AND step = $2), 0) \
             ORDER BY id",
        )
        .bind(maintenance_id)
        .bind(reset_step)
        .fetch_all(self.pool())
        .await?)
    }

    /// The details of `step`'s records done since the last `reset_step`, oldest
    /// first: what earlier runners of this attempt found and decided.
    pub async fn step_details_since(&self, maintenance_id: i64, reset_step: &str, step: &str) -> StoreResult<Vec<Value>> {
        Ok(sqlx::query_scalar(
            "SELECT detail FROM maintenance_steps WHERE maintenance_id = $1 AND step = $3 AND status = 'done' \
             AND id > coalesce((SELECT max(id) FROM maintenance_steps WHERE maintenance_id = $1 AND step = $2), 0) \
             ORDER BY id",
        )
        .bind(maintenance_id)
        .bind(reset_step)
        .bind(step)
        .fetch_all(self.pool())
        .await?)
    }

    /// Closes a maintenance: its outcome, error, and the write pause measured.
    pub async fn finish_maintenance(&self, claim: Claim, state: MaintenanceState, outcome: &str, error: Option<&str>, write_pause_ms: Option<f64>) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE maintenances SET state = $3, outcome = $4, error = $5, \
                 write_pause_ms = coalesce($6, write_pause_ms), finished_at = now(), claimed_by = NULL, lease_until = NULL \
             WHERE id = $1 AND fencing_token = $2",
        )
        .bind(claim.maintenance_id)
        .bind(claim.token)
        .bind(state.as_str())
        .bind(outcome)
        .bind(error)
        .bind(write_pause_ms)
        .execute(self.pool())
        .await?;
        fenced(done.rows_affected(), claim)?;
        if state == MaintenanceState::Completed {
            sqlx::query("UPDATE databases SET last_maintained_at = now() WHERE id = (SELECT database_id FROM maintenances WHERE id = $1)")
                .bind(claim.maintenance_id)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }

    /// Records the write pause as soon as it is measured (before later steps).
    pub async fn set_write_pause(&self, claim: Claim, write_pause_ms: f64) -> StoreResult<()> {
        let done = sqlx::query("UPDATE maintenances SET write_pause_ms = $3 WHERE id = $1 AND fencing_token = $2")
            .bind(claim.maintenance_id)
            .bind(claim.token)
            .bind(write_pause_ms)
            .execute(self.pool())
            .await?;
        fenced(done.rows_affected(), claim)
    }

    /// Records that the maintenance's check (its after_maintenance hook) failed, and why.
    pub async fn set_check_error(&self, claim: Claim, error: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE maintenances SET check_error = $3 WHERE id = $1 AND fencing_token = $2")
            .bind(claim.maintenance_id)
            .bind(claim.token)
            .bind(error)
            .execute(self.pool())
            .await?;
        fenced(done.rows_affected(), claim)
    }

    /// Records what the maintenance's preparation is doing now (shown by `info`).
    pub async fn set_progress(&self, claim: Claim, progress: &str) -> StoreResult<()> {
        let done = sqlx::query("UPDATE maintenances SET progress = $3 WHERE id = $1 AND fencing_token = $2")
            .bind(claim.maintenance_id)
            .bind(claim.token)
            .bind(progress)
            .execute(self.pool())
            .await?;
        fenced(done.rows_affected(), claim)
    }
}

fn fenced(rows: u64, claim: Claim) -> StoreResult<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(stale(claim))
    }
}

fn stale(claim: Claim) -> StoreError {
    StoreError::Conflict(format!("maintenance #{} was claimed by another runner (token {} is stale)", claim.maintenance_id, claim.token))
}

impl Store {
    /// A transaction for `writer`: a runner's holds the maintenance row (FOR
    /// SHARE) with its token checked, so no new claim can slip in before it
    /// commits and a stale runner changes nothing.
    pub(super) async fn begin_as(&self, writer: Writer) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool().begin().await?;
        if let Writer::Runner(claim) = writer {
            let held: Option<i64> = sqlx::query_scalar("SELECT id FROM maintenances WHERE id = $1 AND fencing_token = $2 FOR SHARE")
                .bind(claim.maintenance_id)
                .bind(claim.token)
                .fetch_optional(&mut *tx)
                .await?;
            if held.is_none() {
                return Err(stale(claim));
            }
        }
        Ok(tx)
    }
}
