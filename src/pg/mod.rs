//! Probes and actions on managed PostgreSQL servers over the wire (tokio-postgres).
//!
//! Every question the engine asks before acting ("is it promoted yet?", "has it
//! received the old primary's WAL?") and every SQL-level action it takes
//! (CHECKPOINT, pg_promote, repointing primary_conninfo) is here.

pub mod access;
pub mod copy;

use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::model::Lsn;
use crate::provider::ServerAddress;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// `target` is `user@host:port/dbname`: never the password.
    #[error("connecting to {target}: {source}")]
    Connect { target: String, source: tokio_postgres::Error },
    #[error("not a connection string: {0}")]
    Conninfo(tokio_postgres::Error),
    #[error("{what}: {source}")]
    Query { what: &'static str, source: tokio_postgres::Error },
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("{0}")]
    Unexpected(String),
}

pub type PgResult<T> = Result<T, PgError>;

/// How often a promotion still under way is asked for again (see [`Server::promote`]).
const PROMOTE_REPEAT: Duration = Duration::from_millis(4);

/// `user@host:port/dbname` of a connection's settings, for errors: no password.
pub(crate) fn describe(config: &tokio_postgres::Config) -> String {
    let (host, port) = host_and_port(config);
    format!("{}@{host}:{port}/{}", config.get_user().unwrap_or(""), config.get_dbname().unwrap_or(""))
}

/// The first host (a name, an address or a socket directory) and port of a connection's settings.
pub(crate) fn host_and_port(config: &tokio_postgres::Config) -> (String, u16) {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(dir)) => dir.display().to_string(),
        None => "localhost".to_string(),
    };
    (host, config.get_ports().first().copied().unwrap_or(5432))
}

/// One connection to a managed server.
pub struct Server {
    client: Client,
}

/// Where a standby's WAL receiver streams from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalReceiver {
    pub status: String,
    pub sender_host: Option<String>,
    pub slot_name: Option<String>,
}

/// A standby as its primary sees it in `pg_stat_replication`.
#[derive(Debug, Clone)]
pub struct ReplicaLag {
    pub application_name: String,
    pub state: String,
    pub replay_lsn: Option<Lsn>,
    pub lag_bytes: Option<i64>,
}

impl Server {
    /// Connects with a timeout; the connection task runs until the client is dropped.
    pub async fn connect(conninfo: &str, timeout: Duration) -> PgResult<Server> {
        let config: tokio_postgres::Config = conninfo.parse().map_err(PgError::Conninfo)?;
        Server::connect_config(&config, timeout).await
    }

    /// Connects to database `dbname` of the server at `address`.
    pub async fn connect_to(address: &ServerAddress, dbname: &str, timeout: Duration) -> PgResult<Server> {
        Server::connect_config(&address.pg_config(dbname), timeout).await
    }

    async fn connect_config(config: &tokio_postgres::Config, timeout: Duration) -> PgResult<Server> {
        let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
            .await
            .map_err(|_| PgError::Timeout("connect"))?
            .map_err(|source| PgError::Connect { target: describe(config), source })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Server { client })
    }

    /// First column of the first row of a simple query, as text.
    async fn scalar(&self, what: &'static str, sql: &str) -> PgResult<Option<String>> {
        let messages = self.client.simple_query(sql).await.map_err(|source| PgError::Query { what, source })?;
        Ok(messages.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        }).flatten())
    }

    async fn execute(&self, what: &'static str, sql: &str) -> PgResult<()> {
        self.client.batch_execute(sql).await.map_err(|source| PgError::Query { what, source })
    }

    async fn lsn(&self, what: &'static str, sql: &str) -> PgResult<Option<Lsn>> {
        match self.scalar(what, sql).await? {
            Some(text) => text.parse().map(Some).map_err(|e| PgError::Unexpected(format!("{what}: {e}"))),
            None => Ok(None),
        }
    }

    pub async fn is_in_recovery(&self) -> PgResult<bool> {
        Ok(self.scalar("pg_is_in_recovery", "SELECT pg_is_in_recovery()").await?.as_deref() == Some("t"))
    }

    /// The primary's current write position.
    pub async fn current_lsn(&self) -> PgResult<Lsn> {
        self.lsn("pg_current_wal_lsn", "SELECT pg_current_wal_lsn()").await?.ok_or_else(|| PgError::Unexpected("no current LSN".into()))
    }

    /// A primary's end of WAL, made durable: a transaction of pgmaint's own
    /// takes a transaction id and commits with `synchronous_commit` on, which
    /// flushes every record inserted before its commit record, so every
    /// commit acknowledged before this call (an asynchronous one too); then,
    /// after that commit, the flush position is read: all of it is at or
    /// below the position returned, and walsenders may send it. One round
    /// trip: an explicit COMMIT inside a multi-statement query ends the
    /// transaction before the last statement runs.
    pub async fn durable_wal_end(&self) -> PgResult<Lsn> {
        let what = "durable WAL end";
        let sql = "BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT; SELECT pg_current_wal_flush_lsn()";
        let messages = self.client.simple_query(sql).await.map_err(|source| PgError::Query { what, source })?;
        let last_row = messages.iter().rev().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        });
        let text = last_row.ok_or_else(|| PgError::Unexpected(format!("{what}: no row")))?;
        text.parse().map_err(|e| PgError::Unexpected(format!("{what}: {e}")))
    }

    /// Where a primary's current timeline forked from its parent (see
    /// `switch_out_of`), or None on timeline 1. The timeline is the one it
    /// writes WAL on now: `pg_control_checkpoint` lags behind a promotion
    /// until the first checkpoint after it.
    pub async fn timeline_start(&self) -> PgResult<Option<Lsn>> {
        let text = self.scalar("current timeline", "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)").await?.unwrap_or_default();
        match u32::from_str_radix(&text, 16) {
            Ok(1) => Ok(None),
            Ok(timeline) => self.switch_out_of(timeline - 1).await,
            Err(_) => Err(PgError::Unexpected(format!("current timeline {text:?}"))),
        }
    }

    /// A standby's end of WAL received and flushed (None if it never streamed).
    pub async fn received_lsn(&self) -> PgResult<Option<Lsn>> {
        self.lsn("pg_last_wal_receive_lsn", "SELECT pg_last_wal_receive_lsn()").await
    }

    /// A standby's end of WAL replayed.
    pub async fn replayed_lsn(&self) -> PgResult<Option<Lsn>> {
        self.lsn("pg_last_wal_replay_lsn", "SELECT pg_last_wal_replay_lsn()").await
    }

    /// The timeline of the server's latest checkpoint.
    pub async fn timeline(&self) -> PgResult<u32> {
        let text = self.scalar("timeline", "SELECT timeline_id FROM pg_control_checkpoint()").await?.unwrap_or_default();
        text.parse().map_err(|_| PgError::Unexpected(format!("timeline {text:?}")))
    }

    /// The start time of the postmaster, which changes on every restart.
    pub async fn postmaster_start_time(&self) -> PgResult<String> {
        Ok(self.scalar("pg_postmaster_start_time", "SELECT pg_postmaster_start_time()::text").await?.unwrap_or_default())
    }

    /// `server_version_num`, e.g. 150018.
    pub async fn version_num(&self) -> PgResult<u32> {
        let text = self.scalar("server_version_num", "SHOW server_version_num").await?.unwrap_or_default();
        text.parse().map_err(|_| PgError::Unexpected(format!("server_version_num {text:?}")))
    }

    /// Settings changed in the configuration that only a restart applies.
    pub async fn pending_restart_settings(&self) -> PgResult<Vec<String>> {
        let rows = self
            .client
            .query("SELECT name FROM pg_settings WHERE pending_restart ORDER BY name", &[])
            .await
            .map_err(|source| PgError::Query { what: "pending_restart", source })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Where timeline `timeline` ended, from the timeline history file of the
    /// next one (`pg_wal/XXXXXXXX.history`, which promotion writes before the
    /// server takes writes). Needs the right to read server files
    /// (superuser or `pg_read_server_files`); `None` when there is no such
    /// file or line.
    pub async fn switch_out_of(&self, timeline: u32) -> PgResult<Option<Lsn>> {
        let file = format!("pg_wal/{:08X}.history", timeline + 1);
        let text: Option<String> = self
            .client
            .query_one("SELECT pg_read_file($1, 0, 1000000, true)", &[&file])
            .await
            .map_err(|source| PgError::Query { what: "timeline history", source })?
            .get(0);
        let wanted = timeline.to_string();
        let point = text.as_deref().unwrap_or("").lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(wanted.as_str())).then(|| fields.next()).flatten()
        });
        point.map(|lsn| lsn.parse().map_err(|e| PgError::Unexpected(format!("{file}: {e}")))).transpose()
    }

    /// A setting's running value, as `current_setting` gives it.
    pub async fn setting(&self, name: &str) -> PgResult<String> {
        let row = self
            .client
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .map_err(|source| PgError::Query { what: "current_setting", source })?;
        Ok(row.get(0))
    }

    /// Transactions (xids) assigned: compared between primary and follower it
    /// gives "Behind By: N commits".
    pub async fn xid_horizon(&self) -> PgResult<i64> {
        let text = self.scalar("snapshot", "SELECT pg_snapshot_xmax(pg_current_snapshot())::text").await?.unwrap_or_default();
        text.parse().map_err(|_| PgError::Unexpected(format!("snapshot xmax {text:?}")))
    }

    /// Size of a database in bytes.
    pub async fn database_size(&self, dbname: &str) -> PgResult<i64> {
        let row = self
            .client
            .query_one("SELECT pg_database_size($1)", &[&dbname])
            .await
            .map_err(|source| PgError::Query { what: "pg_database_size", source })?;
        Ok(row.get(0))
    }

    /// Creates the application database if it does not exist yet.
    pub async fn ensure_database(&self, dbname: &str) -> PgResult<()> {
        let exists = self
            .client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
            .await
            .map_err(|source| PgError::Query { what: "pg_database", source })?
            .is_some();
        if !exists {
            self.execute("CREATE DATABASE", &format!("CREATE DATABASE {}", ident(dbname))).await?;
        }
        Ok(())
    }

    /// A checkpoint now, so that a shutdown checkpoint or a crash recovery soon after has little to do.
    pub async fn checkpoint(&self) -> PgResult<()> {
        self.execute("CHECKPOINT", "CHECKPOINT").await
    }

    /// Promotes a standby and waits until it is out of recovery. Already
    /// promoted is fine. Polls every millisecond (`pg_promote(wait => true)`
    /// checks only every 100 ms, and clients wait through this), and asks
    /// again every [`PROMOTE_REPEAT`]: PostgreSQL 15's startup process can
    /// take the request while it waits for a new WAL receiver and then sleep
    /// a whole `wal_retrieve_retry_interval` before acting on it (measured:
    /// 1 promotion in 16 stalled 5 s at the default interval, right after
    /// its primary stopped); a second request wakes it.
    pub async fn promote(&self, wait: Duration) -> PgResult<()> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut asked: Option<tokio::time::Instant> = None;
        while self.is_in_recovery().await? {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(PgError::Timeout("promotion"));
            }
            if asked.is_none_or(|at| now - at >= PROMOTE_REPEAT) {
                self.request_promotion().await?;
                asked = Some(now);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// `pg_promote(wait => false)`; refused because recovery just ended is fine.
    async fn request_promotion(&self) -> PgResult<()> {
        match self.scalar("pg_promote", "SELECT pg_promote(false)").await {
            Ok(Some(sent)) if sent == "t" => Ok(()),
            Ok(other) => Err(PgError::Unexpected(format!("pg_promote returned {other:?}"))),
            Err(PgError::Query { source, .. }) if source.code() == Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Proves the server accepts writes: assigning a transaction id is a write
    /// and fails on a read-only server. The commit does not wait for its WAL
    /// flush: the write being accepted is the proof, and a promoted
    /// candidate's check is inside the pause, where an fsync is felt.
    pub async fn check_writable(&self) -> PgResult<()> {
        self.scalar("write check", "SELECT txid_current(), set_config('synchronous_commit', 'off', true)").await.map(|_| ())
    }

    /// Creates a physical replication slot (reserving WAL now) unless it exists.
    pub async fn ensure_slot(&self, slot: &str) -> PgResult<()> {
        let exists = self
            .client
            .query_opt("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
            .await
            .map_err(|source| PgError::Query { what: "pg_replication_slots", source })?
            .is_some();
        if !exists {
            self.client
                .execute("SELECT pg_create_physical_replication_slot($1, true)", &[&slot])
                .await
                .map_err(|source| PgError::Query { what: "create slot", source })?;
        }
        Ok(())
    }

    /// Drops a replication slot if it exists and nothing uses it.
    pub async fn drop_slot(&self, slot: &str) -> PgResult<()> {
        self.client
            .execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", &[&slot])
            .await
            .map_err(|source| PgError::Query { what: "drop slot", source })?;
        Ok(())
    }

    /// Drops the physical replication slot `slot` once nothing streams
    /// through it, waiting up to `wait` for its walsender to go (a replica
    /// just promoted leaves within moments). Returns whether it was there.
    pub async fn drop_slot_once_inactive(&self, slot: &str, wait: Duration) -> PgResult<bool> {
        let active = || async {
            let row = self
                .client
                .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
                .await
                .map_err(|source| PgError::Query { what: "pg_replication_slots", source })?;
            Ok::<_, PgError>(row.map(|r| r.get::<_, bool>(0)))
        };
        if active().await?.is_none() {
            return Ok(false);
        }
        wait_until(wait, Duration::from_millis(10), "replication slot released", || async { Ok(active().await? != Some(true)) }).await?;
        self.drop_slot(slot).await?;
        Ok(true)
    }

    /// Points a standby at another primary (PG >= 13 applies this on reload).
    /// Each ALTER SYSTEM goes alone: in one multi-statement string they would
    /// run in an implicit transaction, which ALTER SYSTEM refuses.
    pub async fn set_primary(&self, primary_conninfo: &str, slot: Option<&str>) -> PgResult<()> {
        self.execute("repoint primary_conninfo", &format!("ALTER SYSTEM SET primary_conninfo = {}", literal(primary_conninfo))).await?;
        let slot_sql = match slot {
            Some(slot) => format!("ALTER SYSTEM SET primary_slot_name = {}", literal(slot)),
            None => "ALTER SYSTEM RESET primary_slot_name".to_string(),
        };
        self.execute("repoint primary_slot_name", &slot_sql).await?;
        self.execute("reload configuration", "SELECT pg_reload_conf()").await
    }

    /// The standby's WAL receiver, if one is running.
    pub async fn wal_receiver(&self) -> PgResult<Option<WalReceiver>> {
        let row = self
            .client
            .query_opt("SELECT status, sender_host, slot_name FROM pg_stat_wal_receiver", &[])
            .await
            .map_err(|source| PgError::Query { what: "pg_stat_wal_receiver", source })?;
        Ok(row.map(|r| WalReceiver { status: r.get(0), sender_host: r.get(1), slot_name: r.get(2) }))
    }

    /// The standbys streaming from this primary.
    pub async fn replicas(&self) -> PgResult<Vec<ReplicaLag>> {
        let rows = self
            .client
            .query(
                "SELECT application_name, state, replay_lsn::text, \
                        pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint \
                 FROM pg_stat_replication",
                &[],
            )
            .await
            .map_err(|source| PgError::Query { what: "pg_stat_replication", source })?;
        Ok(rows
            .iter()
            .map(|r| ReplicaLag {
                application_name: r.get(0),
                state: r.get::<_, Option<String>>(1).unwrap_or_default(),
                replay_lsn: r.get::<_, Option<String>>(2).and_then(|s| s.parse().ok()),
                lag_bytes: r.get(3),
            })
            .collect())
    }
}

/// A base backup this server is sending (`pg_stat_progress_basebackup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseBackupProgress {
    /// `streaming database files`, `waiting for wal archiving to finish`, ...
    pub phase: String,
    pub streamed_bytes: i64,
    /// Estimated; `None` until the server has estimated it.
    pub total_bytes: Option<i64>,
}

impl Server {
    /// The base backup that the client named `application_name` is taking, if any.
    pub async fn basebackup_progress(&self, application_name: &str) -> PgResult<Option<BaseBackupProgress>> {
        let row = self
            .client
            .query_opt(
                "SELECT p.phase, p.backup_streamed, p.backup_total FROM pg_stat_progress_basebackup p \
                 JOIN pg_stat_activity a ON a.pid = p.pid WHERE a.application_name = $1 LIMIT 1",
                &[&application_name],
            )
            .await
            .map_err(|source| PgError::Query { what: "pg_stat_progress_basebackup", source })?;
        Ok(row.map(|r| BaseBackupProgress { phase: r.get(0), streamed_bytes: r.get(1), total_bytes: r.get(2) }))
    }
}

/// Polls `probe` every `every` until it returns true or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, every: Duration, what: &'static str, mut probe: F) -> PgResult<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = PgResult<bool>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if probe().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(PgError::Timeout(what));
        }
        tokio::time::sleep(every).await;
    }
}

/// A SQL string literal.
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A SQL identifier.
pub fn ident(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}
