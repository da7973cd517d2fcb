//! The `pgmaint` command's verbs: argument types and output formatting.
//!
//! Each verb returns `Result<(), Failure>`; `main` prints the failure's one-line
//! message on stderr and exits with its code, so no verb ever panics on bad input.

pub mod control;
pub mod bench_copy;
pub mod bench_floor;
pub mod bench_maintenance;
pub mod bench_patroni;
pub mod bench_planner;
pub mod config_check;
pub mod daemon;
pub mod demo;
pub mod plan_change;
pub mod planning;
pub mod rollout;

use std::fmt;

/// Why a verb failed, and the exit status that tells a script so.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Bad input from the user (a malformed time, an unknown zone...): exit status 2.
    pub fn usage(message: impl fmt::Display) -> Self {
        Failure { code: 2, message: message.to_string() }
    }

    /// The request was understood but could not be carried out: exit status 1.
    pub fn failed(message: impl fmt::Display) -> Self {
        Failure { code: 1, message: message.to_string() }
    }
}

pub type Outcome = Result<(), Failure>;

/// The configuration of a fleet made for a demo or a benchmark under `dir`:
/// the defaults, with the endpoint on 127.0.0.1:6432 if that is free, else
/// on a port the kernel picks (a daemon may already hold 6432).
pub fn scratch_config(dir: &std::path::Path) -> pgmaint::config::Config {
    let mut config = pgmaint::config::Config::with_data_dir(dir);
    let preferred = std::net::SocketAddr::from(([127, 0, 0, 1], pgmaint::endpoint::DEFAULT_PORT));
    let free = std::net::TcpListener::bind(preferred)
        .or_else(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .and_then(|listener| listener.local_addr());
    if let Ok(address) = free {
        config.endpoint.listen = vec![address];
    }
    config
}

/// Opens an engine on `config` (starting its embedded state store), runs
/// `body`, then, unless `keep`, stops the fleet's servers, its endpoint and the
/// state store whatever `body` returned: the demo's and benchmarks' clean ending.
pub fn run_on_fleet<T>(
    config: &pgmaint::config::Config,
    keep: bool,
    body: impl AsyncFnOnce(std::sync::Arc<pgmaint::engine::Engine>) -> anyhow::Result<T>,
) -> Result<T, Failure> {
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::failed)?;
    runtime
        .block_on(async {
            let engine = std::sync::Arc::new(pgmaint::daemon::open_engine(config).await?);
            let result = body(engine.clone()).await;
            if !keep {
                engine.stop_fleet().await?;
                if let pgmaint::config::StateLocation::Embedded { dir } = &config.state {
                    pgmaint::provider::local::stop_embedded_state(dir).await?;
                }
            }
            result
        })
        .map_err(|e: anyhow::Error| Failure::failed(format!("{e:#}")))
}
