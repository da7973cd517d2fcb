//! Named leases: one daemon at a time holds the scheduler's leadership.

use std::time::Duration;

use super::{Store, StoreResult};

impl Store {
    /// Takes or renews lease `name` for `holder` for `ttl`, unless another
    /// holder's lease is still valid. Returns the lease's fencing token, which
    /// grows each time the lease changes hands.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO leases AS l (name, holder, token, expires_at) \
             VALUES ($1, $2, 1, clock_timestamp() + make_interval(secs => $3)) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, \
                 token = l.token + CASE WHEN l.holder = $2 THEN 0 ELSE 1 END, \
                 expires_at = clock_timestamp() + make_interval(secs => $3) \
             WHERE l.holder = $2 OR l.expires_at < clock_timestamp() \
             RETURNING token",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_optional(self.pool())
        .await?)
    }

    /// Gives a lease up (a daemon shutting down), so another takes it at once.
    pub async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2").bind(name).bind(holder).execute(self.pool()).await?;
        Ok(())
    }

    /// Who holds lease `name` now, if anyone.
    pub async fn lease_holder(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1 AND expires_at > clock_timestamp()")
            .bind(name)
            .fetch_optional(self.pool())
            .await?)
    }
}
