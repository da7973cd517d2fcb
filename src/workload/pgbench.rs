//! pgbench's TPC-B-like script through the endpoint: a multi-statement
//! workload (BEGIN, three UPDATEs, a SELECT, an INSERT, END) from libpq
//! itself, the client library most applications use. pgbench aborts a
//! client on any error, so its exit status and summary say whether any
//! libpq client would have seen one; its per-transaction log (`-l`) gives
//! when each transaction committed, hence the longest gap between commits;
//! and since each transaction inserts exactly one `pgbench_history` row,
//! counting them on the final server proves no acknowledged one was lost.
//!
//! The password travels in `PGPASSWORD` (the child's environment, readable
//! by its owner only), never in pgbench's argument list.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncReadExt;

use super::{connect, longest_gap, WorkloadError};

/// A pgbench run in progress.
pub struct Pgbench {
    child: tokio::process::Child,
    log_dir: tempfile::TempDir,
    conninfo: String,
    /// The same moment on both clocks: pgbench logs wall-clock times.
    clock: (Instant, SystemTime),
}

/// What pgbench saw.
#[derive(Debug, Clone)]
pub struct PgbenchReport {
    /// Transactions pgbench counted as committed.
    pub transactions: u64,
    pub failed: u64,
    /// Clients pgbench aborted on an error (it stops a client at its first one).
    pub aborted_clients: usize,
    pub exit_ok: bool,
    /// Rows in `pgbench_history` on the final server: one per committed transaction.
    pub history_rows: u64,
    pub max_commit_gap: Duration,
    /// When each transaction committed, in order.
    pub commit_times: Vec<Instant>,
    /// pgbench's error lines, for a failure message.
    pub errors: Vec<String>,
}

impl PgbenchReport {
    /// Transactions acknowledged to pgbench but missing from the final server.
    pub fn lost(&self) -> u64 {
        self.transactions.saturating_sub(self.history_rows)
    }

    /// The longest gap between two consecutive commits that overlaps `[from, to]`.
    pub fn longest_gap_within(&self, from: Instant, to: Instant) -> Duration {
        longest_gap(&self.commit_times, from, to)
    }
}

/// The `pgbench` next to the server binaries.
fn program(bindir: &Path) -> PathBuf {
    bindir.join("pgbench")
}

/// pgbench's connection arguments and the password, from a connection string.
fn connection(conninfo: &str) -> Result<(Vec<String>, Option<String>), WorkloadError> {
    let config: tokio_postgres::Config = conninfo.parse().map_err(WorkloadError::Postgres)?;
    let (host, port) = crate::pg::host_and_port(&config);
    let args = vec![
        "-h".into(),
        host,
        "-p".into(),
        port.to_string(),
        "-U".into(),
        config.get_user().unwrap_or("postgres").to_string(),
        config.get_dbname().unwrap_or("postgres").to_string(),
    ];
    let password = config.get_password().map(|p| String::from_utf8_lossy(p).into_owned());
    Ok((args, password))
}

fn command(bindir: &Path, conninfo: &str, options: &[String]) -> Result<tokio::process::Command, WorkloadError> {
    let (connection, password) = connection(conninfo)?;
    let mut command = tokio::process::Command::new(program(bindir));
    command.args(options).args(connection).env_remove("PGPASSWORD").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command.kill_on_drop(true);
    Ok(command)
}

/// `pgbench -i` at scale 1: creates and fills the TPC-B-like tables.
pub async fn initialize(bindir: &Path, conninfo: &str) -> Result<(), WorkloadError> {
    let out = command(bindir, conninfo, &["-i".into(), "-q".into(), "-s".into(), "1".into()])?
        .output()
        .await
        .map_err(|e| WorkloadError::Program(format!("pgbench -i: {e}")))?;
    if !out.status.success() {
        return Err(WorkloadError::Program(format!("pgbench -i failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

impl Pgbench {
    /// Starts `clients` pgbench clients running the TPC-B-like script for
    /// `seconds`, with the simple query protocol (PgBouncer's transaction
    /// pooling) and a log of every transaction.
    pub fn start(bindir: &Path, conninfo: &str, clients: usize, seconds: u64) -> Result<Pgbench, WorkloadError> {
        let log_dir = tempfile::Builder::new().prefix("pgmaint-pgbench-").tempdir().map_err(|e| WorkloadError::Program(format!("pgbench log directory: {e}")))?;
        let prefix = log_dir.path().join("tx").display().to_string();
        let options: Vec<String> =
            vec!["-n".into(), "-M".into(), "simple".into(), "-c".into(), clients.to_string(), "-j".into(), "1".into(), "-T".into(), seconds.to_string(), "-l".into(), "--log-prefix".into(), prefix];
        let clock = (Instant::now(), SystemTime::now());
        let child = command(bindir, conninfo, &options)?.spawn().map_err(|e| WorkloadError::Program(format!("pgbench: {e}")))?;
        Ok(Pgbench { child, log_dir, conninfo: conninfo.to_string(), clock })
    }

    /// Waits for pgbench to finish, reads its log and counts the history rows.
    pub async fn wait(mut self) -> Result<PgbenchReport, WorkloadError> {
        let (mut stdout, mut stderr) = (String::new(), String::new());
        if let Some(mut pipe) = self.child.stdout.take() {
            pipe.read_to_string(&mut stdout).await.map_err(|e| WorkloadError::Program(format!("pgbench output: {e}")))?;
        }
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).await.map_err(|e| WorkloadError::Program(format!("pgbench output: {e}")))?;
        }
        let status = self.child.wait().await.map_err(|e| WorkloadError::Program(format!("pgbench: {e}")))?;
        let summary = |label: &str| stdout.lines().find_map(|line| line.strip_prefix(label)).and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok());
        let transactions = summary("number of transactions actually processed: ")
            .ok_or_else(|| WorkloadError::Program(format!("pgbench printed no summary ({status}): {}", stderr.trim())))?;
        let mut commit_times = self.commit_times()?;
        commit_times.sort();
        let history_rows = connect(&self.conninfo).await?.query_one("SELECT count(*) FROM pgbench_history", &[]).await?.get::<_, i64>(0);
        Ok(PgbenchReport {
            transactions,
            failed: summary("number of failed transactions: ").unwrap_or(0),
            aborted_clients: stderr.lines().filter(|line| line.contains(" aborted ")).count(),
            exit_ok: status.success(),
            history_rows: u64::try_from(history_rows).unwrap_or(0),
            max_commit_gap: commit_times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default(),
            commit_times,
            errors: stderr.lines().filter(|line| !line.starts_with("pgbench (")).take(10).map(str::to_string).collect(),
        })
    }

    /// Every committed transaction's end, from the per-transaction logs
    /// (`client_id transaction_no time script_no time_epoch time_us`; a
    /// failed one has `failed` as its time).
    fn commit_times(&self) -> Result<Vec<Instant>, WorkloadError> {
        let mut times = Vec::new();
        let entries = std::fs::read_dir(self.log_dir.path()).map_err(|e| WorkloadError::Program(format!("pgbench logs: {e}")))?;
        for entry in entries.flatten() {
            let text = std::fs::read_to_string(entry.path()).map_err(|e| WorkloadError::Program(format!("pgbench log: {e}")))?;
            for line in text.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(latency), Some(seconds), Some(micros)) = (fields.get(2), fields.get(4), fields.get(5)) else { continue };
                if latency.parse::<u64>().is_err() {
                    continue;
                }
                let (Ok(seconds), Ok(micros)) = (seconds.parse::<u64>(), micros.parse::<u64>()) else { continue };
                let at = UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_micros(micros);
                let instant = match at.duration_since(self.clock.1) {
                    Ok(after) => self.clock.0 + after,
                    Err(before) => self.clock.0.checked_sub(before.duration()).unwrap_or(self.clock.0),
                };
                times.push(instant);
            }
        }
        Ok(times)
    }
}
