//! Figures the `/metrics` endpoint refreshes on every scrape: how many
//! maintenances are in each state (the outbox depth comes from `outbox.rs`).

use super::{Store, StoreResult};

impl Store {
    /// `(state, count)` for every state that has at least one maintenance, by state name.
    pub async fn maintenance_counts_by_state(&self) -> StoreResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as("SELECT state, count(*) FROM maintenances GROUP BY state ORDER BY state")
            .fetch_all(self.pool())
            .await?)
    }
}
