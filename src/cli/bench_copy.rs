//! `pgmaint bench copy`: builds two databases, fills the source with several
//! tables of generated rows (about 1 kB each, with a primary key), copies it
//! into the target with `Engine::copy_database` (which verifies row counts),
//! and prints the downtime per GB: the reference's pg:copy takes about 3
//! minutes per GB. A GB here is 2^30 bytes of source database
//! (`pg_database_size`), the larger unit, so the figure errs on the slow side.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgmaint::engine::{DatabaseSpec, Engine};
use serde::Serialize;

use super::{run_on_fleet, Failure, Outcome};

const GB: f64 = (1u64 << 30) as f64;
/// On-disk bytes of one generated row (about 1 kB of text, 7 rows to a page).
const ROW_BYTES: f64 = 1170.0;

#[derive(clap::Args, Debug)]
pub struct BenchCopyArgs {
    /// Size of the source database to generate, in GB (2^30 bytes).
    #[arg(long, default_value_t = 2.0)]
    pub gb: f64,
    /// Tables the data is spread over.
    #[arg(long, default_value_t = 8)]
    pub tables: usize,
    /// Tables streamed in parallel.
    #[arg(long, default_value_t = pgmaint::engine::DEFAULT_COPY_WORKERS)]
    pub workers: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct BenchCopyReport {
    /// Size of the source database (pg_database_size).
    bytes: i64,
    /// The whole copy, i.e. how long the source refused writes.
    seconds: f64,
    seconds_per_gb: f64,
    tables: usize,
    rows: u64,
    /// Bytes of binary COPY data streamed.
    copy_bytes: u64,
    workers: usize,
    schema_seconds: f64,
    data_seconds: f64,
    post_data_seconds: f64,
    verify_seconds: f64,
    generate_seconds: f64,
}

pub fn bench(args: BenchCopyArgs) -> Outcome {
    if args.gb.is_nan() || args.gb <= 0.0 || args.tables == 0 || args.workers == 0 {
        return Err(Failure::usage("--gb, --tables and --workers must be positive"));
    }
    let dir = tempfile::Builder::new().prefix("pgmaint-bench-").tempdir_in("/tmp").map_err(Failure::failed)?;
    let report = run_on_fleet(&super::scratch_config(dir.path()), false, async |engine: Arc<Engine>| measure(&engine, &args).await)?;
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(Failure::failed)?);
    } else {
        println!(
            "copied {:.2} GB ({} tables, {} rows) in {:.1} s: {:.1} s/GB (reference: about 180 s/GB)",
            report.bytes as f64 / GB,
            report.tables,
            report.rows,
            report.seconds,
            report.seconds_per_gb
        );
        println!(
            "  schema {:.1} s, data {:.1} s, indexes and constraints {:.1} s, verification {:.1} s ({} workers)",
            report.schema_seconds, report.data_seconds, report.post_data_seconds, report.verify_seconds, report.workers
        );
    }
    Ok(())
}

fn spec(name: &str) -> DatabaseSpec {
    DatabaseSpec {
        name: name.into(),
        plan: "essential-0".parse().expect("a known plan"),
        follow: None,
        window: "Sunday 02:00".into(),
        window_length: Duration::from_secs(4 * 3600),
        owners: Vec::new(),
        labels: Default::default(),
    }
}

async fn measure(engine: &Engine, args: &BenchCopyArgs) -> anyhow::Result<BenchCopyReport> {
    eprintln!("building servers...");
    engine.create_database(&spec("source")).await?;
    engine.create_database(&spec("target")).await?;
    let url = engine.endpoint().client_conninfo("source");
    let rows_per_table = ((args.gb * GB / ROW_BYTES) / args.tables as f64).ceil() as u64;
    eprintln!("generating {:.1} GB in {} tables of {rows_per_table} rows...", args.gb, args.tables);
    let generating = Instant::now();
    // Two loaders at a time (the bench host has few cores).
    let mut pending: Vec<usize> = (0..args.tables).collect();
    while !pending.is_empty() {
        let batch: Vec<usize> = pending.drain(..pending.len().min(2)).collect();
        let loads = batch.into_iter().map(|i| {
            let url = url.clone();
            async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
                    .simple_query(&format!(
                        "CREATE TABLE fill_{i} (id bigint PRIMARY KEY, n integer NOT NULL, created timestamptz NOT NULL, pad text NOT NULL);
                         INSERT INTO fill_{i} SELECT g, g % 1000, now() - g * interval '1 second', repeat(chr(97 + g % 26), 900 + g % 200)
                           FROM generate_series(1, {rows_per_table}) g"
                    ))
                    .await?;
                Ok::<_, anyhow::Error>(())
            }
        });
        futures_util::future::try_join_all(loads).await?;
    }
    let generate_seconds = generating.elapsed().as_secs_f64();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.simple_query("CHECKPOINT").await?;
    let bytes: i64 = client.query_one("SELECT pg_database_size(current_database())", &[]).await?.get(0);
    drop(client);

    eprintln!("copying {:.2} GB with {} workers...", bytes as f64 / GB, args.workers);
    let quiet = args.json;
    let progress = move |p: pgmaint::pg::copy::CopyProgress| {
        if !quiet {
            eprint!("\r\x1b[2K{}: {:.0} MB of ~{:.0} MB, {}/{} tables", p.phase, p.bytes as f64 / 1e6, p.bytes_estimate as f64 / 1e6, p.tables_done, p.tables_total);
        }
    };
    let started = Instant::now();
    let report = engine.copy_database("source", "target", "target", args.workers, &progress).await?;
    let seconds = started.elapsed().as_secs_f64();
    if !quiet {
        eprintln!();
    }
    Ok(BenchCopyReport {
        bytes,
        seconds,
        seconds_per_gb: seconds / (bytes as f64 / GB),
        tables: report.tables.len(),
        rows: report.rows,
        copy_bytes: report.bytes,
        workers: args.workers,
        schema_seconds: report.schema_seconds,
        data_seconds: report.data_seconds,
        post_data_seconds: report.post_data_seconds,
        verify_seconds: report.seconds - report.schema_seconds - report.data_seconds - report.post_data_seconds,
        generate_seconds,
    })
}
