//! A writer workload and its audit: the proof behind "zero lost commits".
//!
//! Writers insert unique ids through the endpoint, one autocommit INSERT per
//! round trip (simple protocol, so it works through PgBouncer's transaction
//! pooling), and remember every id the server acknowledged. Afterwards the
//! audit checks every acknowledged id is on the final server. The longest gap
//! between any two commits is the write pause clients actually felt. A watch
//! samples the database's servers and counts how many were writable at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

pub mod pgbench;

/// The table writers insert into, created on the primary before they start.
pub const AUDIT_TABLE: &str = "pgmaint_audit";

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("workload: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("workload: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// An external workload program (pgbench) could not run or said something unexpected.
    #[error("workload: {0}")]
    Program(String),
}

struct WriterLog {
    acknowledged: Vec<i64>,
    commit_times: Vec<Instant>,
    errors: Vec<String>,
}

/// Writers running against one connection string.
pub struct Workload {
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicUsize>,
    writers: Vec<JoinHandle<WriterLog>>,
    started: Instant,
}

/// What the writers saw.
#[derive(Debug, Clone)]
pub struct WorkloadReport {
    pub acknowledged: Vec<i64>,
    pub client_errors: usize,
    /// Up to ten distinct error messages, for the test's failure message.
    pub error_samples: Vec<String>,
    pub max_commit_gap: Duration,
    pub duration: Duration,
    /// When each acknowledged commit returned, in order.
    pub commit_times: Vec<Instant>,
}

/// Creates the audit table (idempotent).
pub async fn prepare(conninfo: &str) -> Result<(), WorkloadError> {
    let client = connect(conninfo).await?;
    client
        .batch_execute(&format!("CREATE TABLE IF NOT EXISTS {AUDIT_TABLE} (id bigint PRIMARY KEY, writer int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"))
        .await?;
    Ok(())
}

async fn connect(conninfo: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The longest gap between two consecutive `times` (sorted) that overlaps `[from, to]`.
pub fn longest_gap(times: &[Instant], from: Instant, to: Instant) -> Duration {
    times.windows(2).filter(|w| w[1] >= from && w[0] <= to).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// Each writer of this process takes the next slot; its ids are slot * IDS_PER_WRITER + 1, + 2, ...
static NEXT_WRITER_SLOT: AtomicI64 = AtomicI64::new(0);
const IDS_PER_WRITER: i64 = 1_000_000_000;

impl Workload {
    /// Starts `writers` tasks inserting through `conninfo` until stopped.
    pub fn start(conninfo: &str, writers: usize) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicUsize::new(0));
        let handles = (0..writers)
            .map(|writer| {
                let stop = stop.clone();
                let commits = commits.clone();
                let conninfo = conninfo.to_string();
                tokio::spawn(async move { write_until_stopped(&conninfo, writer, &stop, &commits).await })
            })
            .collect();
        Workload { stop, commits, writers: handles, started: Instant::now() }
    }

    /// Commits acknowledged so far (for progress displays).
    pub fn commits(&self) -> usize {
        self.commits.load(Ordering::Relaxed)
    }

    pub async fn stop(self) -> Result<WorkloadReport, WorkloadError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut acknowledged = Vec::new();
        let mut times = Vec::new();
        let mut errors = Vec::new();
        for handle in self.writers {
            let log = handle.await?;
            acknowledged.extend(log.acknowledged);
            times.extend(log.commit_times);
            errors.extend(log.errors);
        }
        times.sort();
        let max_commit_gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
        let mut error_samples: Vec<String> = errors.iter().cloned().collect::<HashSet<_>>().into_iter().collect();
        error_samples.truncate(10);
        Ok(WorkloadReport {
            acknowledged,
            client_errors: errors.len(),
            error_samples,
            max_commit_gap,
            duration: self.started.elapsed(),
            commit_times: times,
        })
    }
}

/// How long a writer waits before it tries again after an error.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

async fn write_until_stopped(conninfo: &str, writer: usize, stop: &AtomicBool, commits: &AtomicUsize) -> WriterLog {
    let mut log = WriterLog { acknowledged: Vec::new(), commit_times: Vec::new(), errors: Vec::new() };
    let mut client = None;
    let mut sequence: i64 = 0;
    // Ids stay unique when several workloads in one process write into the same table.
    let slot = NEXT_WRITER_SLOT.fetch_add(1, Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        let active = match client.take() {
            Some(c) => c,
            None => match connect(conninfo).await {
                Ok(c) => c,
                Err(e) => {
                    log.errors.push(format!("connect: {}", describe(&e)));
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        sequence += 1;
        let id = slot * IDS_PER_WRITER + sequence;
        match active.simple_query(&format!("INSERT INTO {AUDIT_TABLE} (id, writer) VALUES ({id}, {writer})")).await {
            Ok(_) => {
                log.acknowledged.push(id);
                log.commit_times.push(Instant::now());
                commits.fetch_add(1, Ordering::Relaxed);
                client = Some(active);
            }
            Err(e) => {
                log.errors.push(describe(&e));
                if !active.is_closed() {
                    client = Some(active);
                }
                // Retried after the same pause as a failed connect, as an
                // application's retry loop would: a writer never spins on errors.
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    log
}

impl WorkloadReport {
    /// The longest gap between two consecutive commits that overlaps
    /// `[from, to]`: what writers felt of something done in that window.
    pub fn longest_gap_within(&self, from: Instant, to: Instant) -> Duration {
        longest_gap(&self.commit_times, from, to)
    }

    /// Acknowledged ids missing from the server at `conninfo`.
    pub async fn lost_on(&self, conninfo: &str) -> Result<Vec<i64>, WorkloadError> {
        let client = connect(conninfo).await?;
        let rows = client.query(&format!("SELECT id FROM {AUDIT_TABLE}"), &[]).await?;
        let present: HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
        Ok(self.acknowledged.iter().copied().filter(|id| !present.contains(id)).collect())
    }
}

/// Samples servers and records the most that were writable at the same time.
///
/// A sample asks every server whether it takes writes (`TAKES_WRITES`)
/// concurrently and counts only if all answers came back within
/// `CONCLUSIVE_SAMPLE`: then two "yes" answers mean two servers really took writes within a few milliseconds of
/// each other, far less than the fence-to-promotion interval of a switch.
/// Slower samples are inconclusive and not counted.
pub struct PrimaryWatch {
    stop: Arc<AtomicBool>,
    servers: Arc<Mutex<Vec<String>>>,
    handle: JoinHandle<(usize, usize)>,
}

const CONCLUSIVE_SAMPLE: Duration = Duration::from_millis(5);

/// `f` when the server takes writes into the watched database: it is not in
/// recovery, and the database is not made read-only for new sessions (as a
/// copy's source is while it is copied).
const TAKES_WRITES: &str = "SELECT pg_is_in_recovery() OR EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
     WHERE d.datname = current_database() AND s.setrole = 0 AND 'default_transaction_read_only=on' = ANY(s.setconfig))";

impl PrimaryWatch {
    /// Watches the servers at `conninfos` every few milliseconds.
    pub fn start(conninfos: Vec<String>) -> PrimaryWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let servers = Arc::new(Mutex::new(conninfos));
        let (flag, list) = (stop.clone(), servers.clone());
        let handle = tokio::spawn(async move {
            let mut clients: Vec<(String, Option<tokio_postgres::Client>)> = Vec::new();
            let (mut most, mut samples) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                let wanted = list.lock().expect("watch list").clone();
                for conninfo in wanted {
                    if !clients.iter().any(|(c, _)| *c == conninfo) {
                        clients.push((conninfo, None));
                    }
                }
                for (conninfo, slot) in clients.iter_mut() {
                    if slot.as_ref().is_none_or(|c| c.is_closed()) {
                        *slot = tokio::time::timeout(Duration::from_millis(200), connect(conninfo)).await.ok().and_then(Result::ok);
                    }
                }
                let started = Instant::now();
                let answers = futures_util::future::join_all(clients.iter().map(|(conninfo, slot)| async move {
                    let client = slot.as_ref()?;
                    let rows = client.simple_query(TAKES_WRITES).await.ok()?;
                    let primary = rows.iter().any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("f")));
                    primary.then(|| conninfo.clone())
                }))
                .await;
                if started.elapsed() <= CONCLUSIVE_SAMPLE {
                    let writers: Vec<String> = answers.into_iter().flatten().collect();
                    if writers.len() > 1 {
                        tracing::error!(?writers, "more than one writable primary");
                    }
                    most = most.max(writers.len());
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (most, samples)
        });
        PrimaryWatch { stop, servers, handle }
    }

    /// Adds a server to watch (a replacement built after the watch started).
    pub fn watch(&self, conninfo: String) {
        let mut servers = self.servers.lock().expect("watch list");
        if !servers.contains(&conninfo) {
            servers.push(conninfo);
        }
    }

    /// Stops the watch: (most writable at once, conclusive samples taken).
    pub async fn stop(self) -> Result<(usize, usize), WorkloadError> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.handle.await?)
    }
}

/// An error with the server's own message and SQLSTATE when there is one
/// (tokio-postgres alone prints only "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}
