//! The hand floor: what a careful operator achieves by hand, measured on the
//! same servers and the same writers as pgmaint's own run, so that
//! `bench ... --floor` prints a ratio rather than two figures taken at
//! different moments of a noisy machine.
//!
//! The switch is the reference measurement's `paused_fast` procedure: a
//! caught-up streaming replica, CHECKPOINT first, sessions opened ahead and
//! kept, PAUSE, fast stop of the primary as the fence, 1 ms polls until the
//! replica has received the primary's shutdown checkpoint, promote, repoint
//! PgBouncer, RESUME. A restart's floor is PAUSE, fast stop and start, 1 ms
//! polls until a write succeeds, RESUME. Nothing here is recorded anywhere:
//! an operator's hands, not a runbook.

use std::time::{Duration, Instant};

use anyhow::Context;
use pgmaint::endpoint::Route;
use pgmaint::engine::Engine;
use pgmaint::pg::Server;
use pgmaint::provider::local::LocalProvider;
use pgmaint::provider::{Provider, StopMode};

/// The primary's session, the candidate's session, and where each lives.
pub struct HandSwitch {
    database: String,
    dbname: String,
    primary: String,
    candidate: String,
    primary_session: Server,
    candidate_session: Server,
}

const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(1);
const LIMIT: Duration = Duration::from_secs(60);

impl HandSwitch {
    /// A fresh streaming replica of `database`'s current primary, built and
    /// waited for until caught up (outside the state store: the operator's own).
    pub async fn prepare(engine: &Engine, local: &LocalProvider, database: &str) -> anyhow::Result<HandSwitch> {
        let record = engine.store().database_named(database).await?;
        let primary = engine.store().current_instance(record.id).await?.location;
        let candidate = local.new_location(&format!("{database}-hand"));
        let slot = format!("hand_{:x}", rand::random::<u32>());
        let primary_session = Server::connect_to(&local.address(&primary), "postgres", SESSION_TIMEOUT).await?;
        primary_session.ensure_slot(&slot).await?;
        local.build_replica(&candidate, &primary, &slot, &record.plan.parse().map_err(anyhow::Error::msg)?).await?;
        poll("the hand replica to catch up", Duration::from_millis(10), async || {
            let replicas = primary_session.replicas().await?;
            Ok(replicas.iter().any(|r| r.application_name == slot && r.state == "streaming" && r.lag_bytes.is_some_and(|lag| lag < 1 << 20)))
        })
        .await?;
        let candidate_session = Server::connect_to(&local.address(&candidate), "postgres", SESSION_TIMEOUT).await?;
        Ok(HandSwitch { database: database.to_string(), dbname: record.dbname, primary, candidate, primary_session, candidate_session })
    }

    /// The switch by hand; returns the write pause (PAUSE done to RESUME done).
    pub async fn run(self, engine: &Engine, local: &LocalProvider) -> anyhow::Result<Duration> {
        self.primary_session.checkpoint().await?;
        let mut admin = engine.endpoint().admin().await?;
        admin.pause(&self.database, Duration::from_secs(5)).await?;
        let paused = Instant::now();
        local.stop(&self.primary, StopMode::Fast).await?;
        let fence = local.cluster(&self.primary).control_data().await?;
        anyhow::ensure!(fence.is_clean_primary_shutdown(), "the primary did not stop cleanly ({})", fence.state);
        let checkpoint = fence.latest_checkpoint;
        poll("the shutdown checkpoint to arrive", POLL, async || Ok(self.candidate_session.received_lsn().await?.is_some_and(|lsn| lsn > checkpoint))).await?;
        self.candidate_session.promote(LIMIT).await?;
        admin.repoint(&Route::to(&self.database, &local.address(&self.candidate), &self.dbname)).await?;
        admin.resume(&self.database).await?;
        Ok(paused.elapsed())
    }

    /// The hand replica, which serves the database once `run` is done.
    pub fn candidate(&self) -> &str {
        &self.candidate
    }
}

/// A restart by hand of `database`'s current server; returns the write pause.
pub async fn restart_by_hand(engine: &Engine, local: &LocalProvider, database: &str) -> anyhow::Result<Duration> {
    let record = engine.store().database_named(database).await?;
    let location = engine.store().current_instance(record.id).await?.location;
    let address = local.address(&location);
    Server::connect_to(&address, "postgres", SESSION_TIMEOUT).await?.checkpoint().await?;
    let mut admin = engine.endpoint().admin().await?;
    admin.pause(database, Duration::from_secs(5)).await?;
    let paused = Instant::now();
    local.restart(&location).await?;
    poll("the restarted server to take a write", POLL, async || {
        Ok(match Server::connect_to(&address, "postgres", Duration::from_secs(1)).await {
            Ok(server) => server.check_writable().await.is_ok(),
            Err(_) => false,
        })
    })
    .await?;
    admin.resume(database).await?;
    Ok(paused.elapsed())
}

/// Polls `check` every `every` until it holds, for at most a minute.
async fn poll(what: &str, every: Duration, check: impl AsyncFn() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + LIMIT;
    while !check().await.with_context(|| format!("waiting for {what}"))? {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
    Ok(())
}
