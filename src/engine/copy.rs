//! `copy`: replacing one database's data with another's (the reference's
//! `pg:copy`), with the source kept readable but refusing writes meanwhile.

use crate::pg::copy::{self, CopyProgress, CopyReport, CopySide};
use crate::access::DatabaseRoles;
use crate::pg::PgResult;
use crate::store::DatabaseRecord;

use super::{Engine, EngineError, EngineResult, PAUSE_TIMEOUT};

/// Parallel table streams when the caller does not say.
pub const DEFAULT_COPY_WORKERS: usize = 4;

impl Engine {
    /// Checks a copy request without acting: `confirm` must repeat the target,
    /// both must be distinct primaries (a follower cannot be written, and a
    /// copy from one would only read its leader).
    pub async fn check_copy(&self, source: &str, target: &str, confirm: &str) -> EngineResult<(DatabaseRecord, DatabaseRecord)> {
        if confirm != target {
            return Err(EngineError::Refused(format!("copying into {target} replaces all of its data; it needs --confirm {target}")));
        }
        if source == target {
            return Err(EngineError::Invalid("the source and the target are the same database".into()));
        }
        let source_db = self.store.database_named(source).await?;
        let target_db = self.store.database_named(target).await?;
        self.refuse_if_adopted(&target_db, "copying into it").await?;
        for database in [&source_db, &target_db] {
            if database.following_id.is_some() {
                return Err(EngineError::Refused(format!("{} is a follower; copy from and into primaries only", database.name)));
            }
        }
        Ok((source_db, target_db))
    }

    /// Copies every table of `source` into `target`, replacing the target's
    /// data. Writes on the source are refused (SQLSTATE 25006, read-only
    /// transaction) from start to end while reads go on; writability comes
    /// back on every path, failure included.
    pub async fn copy_database(
        &self,
        source: &str,
        target: &str,
        confirm: &str,
        workers: usize,
        progress: &(dyn Fn(CopyProgress) + Send + Sync),
    ) -> EngineResult<CopyReport> {
        let (source_db, target_db) = self.check_copy(source, target, confirm).await?;
        let source_side = self.copy_side(&self.current_location(source_db.id).await?, &source_db);
        let target_side = self.copy_side(&self.current_location(target_db.id).await?, &target_db);
        tracing::info!(source, target, "copy: source refuses writes from now");
        let was_read_only = self.with_endpoint_paused(source, copy::block_writes(&source_side.admin_conninfo(), &source_side.dbname)).await?;
        let provider = self.provider.clone();
        let programs = move |name: &str| provider.client_program(name);
        let result = copy::copy_database(&source_side, &target_side, &programs, workers, progress).await;
        let restored = self.with_endpoint_paused(source, copy::restore_writes(&source_side.admin_conninfo(), &source_side.dbname, was_read_only)).await;
        tracing::info!(source, target, ok = result.is_ok(), "copy: source writable again");
        let report = result?;
        restored?;
        Ok(report)
    }

    /// One side of a copy: `database` on the server at `location`. Copied
    /// into, it belongs to the database's own owner role (which stays).
    pub(super) fn copy_side(&self, location: &str, database: &DatabaseRecord) -> CopySide {
        CopySide {
            address: self.provider.address(location),
            dbname: database.dbname.clone(),
            owner: DatabaseRoles::of(&database.name).owner,
        }
    }

    /// Runs a change that ends the database's server sessions (blocking or
    /// restoring writes) with the endpoint PAUSEd, so no transaction is in
    /// flight when its session ends: clients wait a moment instead of failing.
    pub(super) async fn with_endpoint_paused<T>(&self, name: &str, change: impl std::future::Future<Output = PgResult<T>>) -> EngineResult<T> {
        let mut admin = self.endpoint.admin().await?;
        admin.pause(name, PAUSE_TIMEOUT).await?;
        let result = change.await;
        let resumed = admin.resume(name).await;
        let value = result?;
        resumed?;
        Ok(value)
    }
}
