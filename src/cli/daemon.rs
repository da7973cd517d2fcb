//! `pgmaint daemon`: start the long-running loop.

use std::path::PathBuf;

use pgmaint::config::{Config, Overrides};
use pgmaint::daemon::{self, DaemonOptions};

use super::{Failure, Outcome};

/// Where the packaged unit keeps the configuration; used when it exists and no --config is given.
const DEFAULT_CONFIG: &str = "/etc/pgmaint/pgmaint.toml";

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// Configuration file (default: /etc/pgmaint/pgmaint.toml if it exists, else built-in defaults).
    #[arg(long, env = "PGMAINT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where servers, PgBouncer and the embedded state store live (overrides [daemon] data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// State store URL (overrides [state] url).
    #[arg(long, env = "PGMAINT_STATE_URL")]
    pub state_url: Option<String>,
    /// This daemon's name in claims (overrides [daemon] node_name).
    #[arg(long)]
    pub node: Option<String>,
    /// Run one pass over the work that is due, then exit.
    #[arg(long)]
    pub once: bool,
}

pub fn daemon(args: DaemonArgs) -> Outcome {
    init_tracing();
    let config = load_config(&args)?;
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::failed)?;
    runtime
        .block_on(daemon::run(DaemonOptions { config, once: args.once }))
        .map_err(|e| Failure::failed(format!("{e:#}")))
}

/// The configuration file (or defaults) with the command line's overrides
/// applied before anything (socket, mail folder, state store) is derived from them.
fn load_config(args: &DaemonArgs) -> Result<Config, Failure> {
    let file = args.config.clone().or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG);
        default.exists().then_some(default)
    });
    let overrides = Overrides { data_dir: args.data_dir.clone(), state_url: args.state_url.clone(), node_name: args.node.clone() };
    Config::load_with(file.as_deref(), &overrides).map_err(Failure::usage)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGMAINT_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
