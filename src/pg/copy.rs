//! Copying one database into another (`pgmaint copy`, the reference's `pg:copy`).
//!
//! Works between any two servers pg_dump can read, across major versions:
//!
//! 1. one source transaction exports a snapshot: the schema dump, every table
//!    and every sequence are read as of that one instant;
//! 2. the target database is dropped (`WITH (FORCE)`) and created again, empty;
//! 3. pre-data schema (`pg_dump --schema-only --section=pre-data`) through psql;
//! 4. table data, N workers in parallel, largest tables first:
//!    `COPY t TO STDOUT (FORMAT binary)` on the source streamed straight into
//!    `COPY t FROM STDIN (FORMAT binary)` on the target (never buffered whole);
//! 5. post-data (indexes, constraints, triggers: `--section=post-data`), built
//!    after the data as pg_restore does, which is much faster than maintaining them row by row;
//! 6. sequences set to the source's values;
//! 7. verification: the row count of every table is the same on both sides.
//!
//! pg_dump and psql are given as commands by the caller (the provider runs the
//! server's own programs, as the server user): pg_dump must be at least as new
//! as the source server, which the provider's newest installed binaries are.
//! Ownership and privileges are not copied (`--no-owner --no-privileges`): the
//! two servers need not share roles. The target database and everything in
//! it belong to the target's owner role (its schema is applied as that role),
//! which stays as it was. Child programs get passwords through the
//! environment, never on their command line.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio_postgres::{Client, NoTls};

use super::{ident, literal, PgError, PgResult};
use crate::provider::ServerAddress;

/// Builds the command for a PostgreSQL client program (`pg_dump`, `psql`).
pub type Programs = dyn Fn(&str) -> Command + Send + Sync;

/// One end of a copy: database `dbname` of the server at `address` (whose
/// `postgres` database is used to drop and create it), owned by `owner`.
#[derive(Debug, Clone)]
pub struct CopySide {
    pub address: ServerAddress,
    pub dbname: String,
    /// The role the target database and its objects belong to.
    pub owner: String,
}

impl CopySide {
    /// Its database, as pgmaint's role (with the password, if any: in-process only).
    pub fn conninfo(&self) -> String {
        self.address.conninfo(&self.dbname)
    }

    /// The server's `postgres` database, as pgmaint's role.
    pub fn admin_conninfo(&self) -> String {
        self.address.conninfo("postgres")
    }

    /// Points a client program at the database: the connection string on its
    /// command line without the password, which goes in its environment.
    fn connect_program(&self, command: &mut Command) {
        let mut address = self.address.clone();
        if let Some(password) = address.password.take() {
            command.env("PGPASSWORD", password);
        }
        command.arg(format!("--dbname={}", address.conninfo(&self.dbname)));
    }
}

/// The phases of a copy, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CopyPhase {
    Schema,
    Data,
    PostData,
    Sequences,
    Verify,
}

impl CopyPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyPhase::Schema => "schema",
            CopyPhase::Data => "data",
            CopyPhase::PostData => "post-data",
            CopyPhase::Sequences => "sequences",
            CopyPhase::Verify => "verify",
        }
    }
}

impl std::fmt::Display for CopyPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a copy is, as reported to the progress callback.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CopyProgress {
    pub phase: CopyPhase,
    /// Bytes of COPY data streamed so far.
    pub bytes: u64,
    /// Estimated total (on-disk size of the source tables).
    pub bytes_estimate: u64,
    pub tables_done: usize,
    pub tables_total: usize,
    pub elapsed_seconds: f64,
    /// Estimated seconds left in the data phase, once some data has moved.
    pub eta_seconds: Option<f64>,
}

/// One table copied and verified.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TableCopy {
    pub table: String,
    pub rows: u64,
    pub bytes: u64,
}

/// What a finished copy did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CopyReport {
    pub tables: Vec<TableCopy>,
    pub sequences: usize,
    pub bytes: u64,
    pub rows: u64,
    pub schema_seconds: f64,
    pub data_seconds: f64,
    pub post_data_seconds: f64,
    pub seconds: f64,
}

struct Table {
    name: String,
    size: u64,
}

struct Shared {
    bytes: AtomicU64,
    tables_done: AtomicUsize,
    phase: Mutex<CopyPhase>,
}

async fn connect(conninfo: &str) -> PgResult<Client> {
    let config: tokio_postgres::Config = conninfo.parse().map_err(PgError::Conninfo)?;
    let (client, connection) =
        config.connect(NoTls).await.map_err(|source| PgError::Connect { target: super::describe(&config), source })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A failed statement, with the server's own message (tokio-postgres shows only "db error").
fn query(what: &'static str) -> impl Fn(tokio_postgres::Error) -> PgError {
    move |source| match source.as_db_error() {
        Some(db) => PgError::Unexpected(format!("{what}: {} (SQLSTATE {})", db.message(), db.code().code())),
        None => PgError::Query { what, source },
    }
}

/// Copies every table of `source` into `target`, replacing the target
/// database entirely. `progress` is called about four times a second and at
/// each phase change. The source is only read.
pub async fn copy_database(
    source: &CopySide,
    target: &CopySide,
    programs: &Programs,
    workers: usize,
    progress: &(dyn Fn(CopyProgress) + Send + Sync),
) -> PgResult<CopyReport> {
    let started = Instant::now();
    let workers = workers.max(1);

    // 1. One snapshot for everything read from the source.
    let coordinator = connect(&source.conninfo()).await?;
    coordinator.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(query("begin snapshot"))?;
    let snapshot: String =
        coordinator.query_one("SELECT pg_export_snapshot()", &[]).await.map_err(query("pg_export_snapshot"))?.get(0);
    let rows = coordinator
        .query(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_table_size(c.oid) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                               AND d.objid = c.oid AND d.deptype = 'e') \
             ORDER BY 2 DESC, 1",
            &[],
        )
        .await
        .map_err(query("list tables"))?;
    let tables: Vec<Table> = rows.iter().map(|r| Table { name: r.get(0), size: r.get::<_, i64>(1).max(0) as u64 }).collect();
    let sequences: Vec<(String, i64)> = coordinator
        .query(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), last_value \
             FROM pg_sequences WHERE last_value IS NOT NULL ORDER BY 1",
            &[],
        )
        .await
        .map_err(query("list sequences"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let tables_total = tables.len();
    let bytes_estimate: u64 = tables.iter().map(|t| t.size).sum();
    let shared = Arc::new(Shared { bytes: AtomicU64::new(0), tables_done: AtomicUsize::new(0), phase: Mutex::new(CopyPhase::Schema) });

    let data_started = Arc::new(Mutex::new(None::<Instant>));
    let report = |shared: &Shared| {
        let bytes = shared.bytes.load(Ordering::Relaxed);
        let eta_seconds = data_started.lock().unwrap().and_then(|since| {
            let spent = since.elapsed().as_secs_f64();
            (bytes > 0 && spent > 0.0).then(|| spent * bytes_estimate.saturating_sub(bytes) as f64 / bytes as f64)
        });
        progress(CopyProgress {
            phase: *shared.phase.lock().unwrap(),
            bytes,
            bytes_estimate,
            tables_done: shared.tables_done.load(Ordering::Relaxed),
            tables_total,
            elapsed_seconds: started.elapsed().as_secs_f64(),
            eta_seconds,
        })
    };
    let set_phase = |phase: CopyPhase| {
        *shared.phase.lock().unwrap() = phase;
        report(&shared);
    };
    set_phase(CopyPhase::Schema);

    let work = async {
        // 2-3. A fresh target database with the source's schema.
        let (pre_data, post_data) = tokio::try_join!(
            dump(programs, source, &snapshot, "pre-data"),
            dump(programs, source, &snapshot, "post-data"),
        )?;
        recreate(target).await?;
        apply(programs, target, &pre_data, "pre-data").await?;
        let schema_seconds = started.elapsed().as_secs_f64();

        // 4. Data, largest tables first, `workers` at a time.
        set_phase(CopyPhase::Data);
        *data_started.lock().unwrap() = Some(Instant::now());
        let data_clock = Instant::now();
        let queue = Arc::new(Mutex::new(tables.iter().map(|t| t.name.clone()).collect::<VecDeque<_>>()));
        let mut copied = Vec::new();
        {
            let mut running = futures_util::stream::FuturesUnordered::new();
            for _ in 0..workers.min(tables_total) {
                running.push(worker(source.conninfo(), target.conninfo(), snapshot.clone(), queue.clone(), shared.clone()));
            }
            while let Some(result) = running.next().await {
                copied.extend(result?);
            }
        }
        let data_seconds = data_clock.elapsed().as_secs_f64();

        // 5-6. Indexes and constraints after the data, then sequences.
        set_phase(CopyPhase::PostData);
        let post_clock = Instant::now();
        apply(programs, target, &post_data, "post-data").await?;
        let post_data_seconds = post_clock.elapsed().as_secs_f64();
        set_phase(CopyPhase::Sequences);
        let target_client = connect(&target.conninfo()).await?;
        for (sequence, value) in &sequences {
            target_client
                .execute(&format!("SELECT pg_catalog.setval({}, $1, true)", literal(sequence)), &[value])
                .await
                .map_err(query("setval"))?;
        }
        Ok::<_, PgError>((copied, schema_seconds, data_seconds, post_data_seconds))
    };

    // The ticker reports while the work runs.
    let (copied, schema_seconds, data_seconds, post_data_seconds) = {
        tokio::pin!(work);
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                result = &mut work => break result?,
                _ = ticker.tick() => report(&shared),
            }
        }
    };

    // 7. Verification: every table has as many rows on both sides.
    set_phase(CopyPhase::Verify);
    let target_client = connect(&target.conninfo()).await?;
    let mut tables_report = Vec::new();
    for (table, bytes, copied_rows) in copied {
        let count_sql = format!("SELECT count(*) FROM {table}");
        let (source_rows, target_rows) = tokio::try_join!(
            async { coordinator.query_one(&count_sql, &[]).await.map_err(query("count source rows")) },
            async { target_client.query_one(&count_sql, &[]).await.map_err(query("count target rows")) },
        )?;
        let (source_rows, target_rows): (i64, i64) = (source_rows.get(0), target_rows.get(0));
        if source_rows != target_rows || target_rows as u64 != copied_rows {
            return Err(PgError::Unexpected(format!(
                "verification failed for {table}: {source_rows} rows on the source, {target_rows} on the target ({copied_rows} copied)"
            )));
        }
        tables_report.push(TableCopy { table, rows: copied_rows, bytes });
    }
    let _ = coordinator.batch_execute("COMMIT").await;
    tables_report.sort_by(|a, b| a.table.cmp(&b.table));
    report(&shared);
    Ok(CopyReport {
        bytes: shared.bytes.load(Ordering::Relaxed),
        rows: tables_report.iter().map(|t| t.rows).sum(),
        tables: tables_report,
        sequences: sequences.len(),
        schema_seconds,
        data_seconds,
        post_data_seconds,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One copy worker: its own source connection in the exported snapshot and
/// its own target connection; takes tables from the queue until it is empty.
async fn worker(
    source: String,
    target: String,
    snapshot: String,
    queue: Arc<Mutex<VecDeque<String>>>,
    shared: Arc<Shared>,
) -> PgResult<Vec<(String, u64, u64)>> {
    let from = connect(&source).await?;
    from.batch_execute(&format!("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT {}", literal(&snapshot)))
        .await
        .map_err(query("SET TRANSACTION SNAPSHOT"))?;
    let to = connect(&target).await?;
    // Each table commits on its own; losing the last ones to a crash only fails the copy.
    to.batch_execute("SET synchronous_commit = off").await.map_err(query("synchronous_commit"))?;
    let mut done = Vec::new();
    loop {
        let Some(table) = queue.lock().unwrap().pop_front() else { break };
        let out = from.copy_out(&format!("COPY {table} TO STDOUT (FORMAT binary)")).await.map_err(query("COPY TO"))?;
        let sink = to.copy_in::<_, hyper::body::Bytes>(&format!("COPY {table} FROM STDIN (FORMAT binary)")).await.map_err(query("COPY FROM"))?;
        futures_util::pin_mut!(sink);
        let mut bytes = 0u64;
        let counted = out.inspect_ok(|chunk| {
            bytes += chunk.len() as u64;
            shared.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        });
        futures_util::pin_mut!(counted);
        sink.as_mut().send_all(&mut counted).await.map_err(query("COPY stream"))?;
        let rows = sink.as_mut().finish().await.map_err(query("COPY FROM finish"))?;
        shared.tables_done.fetch_add(1, Ordering::Relaxed);
        done.push((table, bytes, rows));
    }
    let _ = from.batch_execute("COMMIT").await;
    Ok(done)
}

/// One section of the source's schema, as plain SQL (as of the snapshot).
async fn dump(programs: &Programs, source: &CopySide, snapshot: &str, section: &str) -> PgResult<Vec<u8>> {
    let mut command = programs("pg_dump");
    command
        .args(["--schema-only", "--no-owner", "--no-privileges", "--format=plain"])
        .arg(format!("--section={section}"))
        .arg(format!("--snapshot={snapshot}"));
    source.connect_program(&mut command);
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = command.output().await.map_err(|e| PgError::Unexpected(format!("running pg_dump: {e}")))?;
    if !out.status.success() {
        return Err(PgError::Unexpected(format!("pg_dump --section={section} failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(out.stdout)
}

/// Runs `sql` (pg_dump output, with its psql meta-commands) through psql in
/// one transaction, as the target's owner role, so what it creates is the owner's.
async fn apply(programs: &Programs, target: &CopySide, sql: &[u8], what: &str) -> PgResult<()> {
    let mut command = programs("psql");
    command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]);
    target.connect_program(&mut command);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| PgError::Unexpected(format!("running psql: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let sql = [format!("SET ROLE {};\n", ident(&target.owner)).as_bytes(), sql].concat();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&sql).await;
    });
    let out = child.wait_with_output().await.map_err(|e| PgError::Unexpected(format!("psql: {e}")))?;
    let _ = writer.await;
    if !out.status.success() {
        return Err(PgError::Unexpected(format!("applying the {what} schema failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// Drops the target database (cutting its sessions) and creates it empty,
/// owned by the target's owner role and closed to PUBLIC as before.
async fn recreate(target: &CopySide) -> PgResult<()> {
    let admin = connect(&target.admin_conninfo()).await?;
    let name = ident(&target.dbname);
    let owner = ident(&target.owner);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.map_err(query("DROP DATABASE"))?;
    admin.batch_execute(&format!("CREATE DATABASE {name} OWNER {owner} TEMPLATE template0")).await.map_err(query("CREATE DATABASE"))?;
    admin.batch_execute(&format!("REVOKE CONNECT, TEMPORARY ON DATABASE {name} FROM PUBLIC")).await.map_err(query("REVOKE CONNECT"))?;
    Ok(())
}

/// Makes a database refuse writes: new sessions start read-only, existing
/// sessions are ended (their open transactions roll back, nothing committed is
/// lost). Returns whether it was already read-only by setting (then
/// [`restore_writes`] must leave it so).
pub async fn block_writes(admin_conninfo: &str, dbname: &str) -> PgResult<bool> {
    let admin = connect(admin_conninfo).await?;
    let already: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = $1 AND s.setrole = 0 \
               AND 'default_transaction_read_only=on' = ANY(s.setconfig))",
            &[&dbname],
        )
        .await
        .map_err(query("read-only setting"))?
        .get(0);
    admin
        .batch_execute(&format!("ALTER DATABASE {} SET default_transaction_read_only = on", ident(dbname)))
        .await
        .map_err(query("ALTER DATABASE read-only"))?;
    if let Err(error) = end_sessions(&admin, dbname, None).await {
        // Not blocked after all: writable again before reporting the failure.
        if !already {
            let _ = admin.batch_execute(&format!("ALTER DATABASE {} RESET default_transaction_read_only", ident(dbname))).await;
        }
        return Err(error);
    }
    Ok(already)
}

/// Undoes [`block_writes`]: the setting is reset (unless it was there before)
/// and the sessions that started read-only meanwhile are ended, so pools
/// reconnect writable.
pub async fn restore_writes(admin_conninfo: &str, dbname: &str, was_read_only: bool) -> PgResult<()> {
    if was_read_only {
        return Ok(());
    }
    let admin = connect(admin_conninfo).await?;
    let since: String = admin.query_one("SELECT now()::text", &[]).await.map_err(query("now"))?.get(0);
    admin
        .batch_execute(&format!("ALTER DATABASE {} RESET default_transaction_read_only", ident(dbname)))
        .await
        .map_err(query("ALTER DATABASE writable"))?;
    end_sessions(&admin, dbname, Some(since)).await
}

/// Terminates the database's sessions (those started before `before`, if
/// given) and waits until they are gone.
async fn end_sessions(admin: &Client, dbname: &str, before: Option<String>) -> PgResult<()> {
    let pids: Vec<i32> = admin
        .query(
            // pg_terminate_backend in the select list: in WHERE it could run before the other conditions.
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
             AND ($2::text IS NULL OR backend_start < $2::text::timestamptz)",
            &[&dbname, &before],
        )
        .await
        .map_err(query("pg_terminate_backend"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    super::wait_until(Duration::from_secs(10), Duration::from_millis(10), "ending sessions", || async {
        let left: i64 = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", &[&pids])
            .await
            .map_err(query("sessions left"))?
            .get(0);
        Ok(left == 0)
    })
    .await
}
