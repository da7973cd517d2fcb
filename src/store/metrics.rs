//! Figures the `/metrics` endpoint refreshes on every scrape: how many
//! maintenances are in each state, and how much owner mail waits to be sent.

use super::{Store, StoreResult};

impl Store {
    /// `(state, count)` for every state that has at least one maintenance, by state name.
    pub async fn maintenance_counts_by_state(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as("SELECT state, count(*) FROM maintenances GROUP BY state ORDER BY state")
            .fetch_all(self.pool())
            .await?)
    }

    /// Owner mails recorded in the outbox and not sent yet.
    pub async fn outbox_depth(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetch_one(self.pool()).await?)
    }
}
