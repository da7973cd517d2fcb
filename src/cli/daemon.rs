//! `pgmaint daemon`: start the long-running loop.

use std::path::PathBuf;

use pgmaint::config::{Config, StateLocation};
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

/// The configuration file (or defaults) with the command line's overrides applied.
fn load_config(args: &DaemonArgs) -> Result<Config, Failure> {
    let file = args.config.clone().or_else(|| {
        let default = PathBuf::from(DEFAULT_CONFIG);
        default.exists().then_some(default)
    });
    let mut config = match (&file, &args.data_dir) {
        (Some(file), _) => Config::load(file).map_err(Failure::usage)?,
        (None, Some(dir)) => Config::with_data_dir(dir),
        (None, None) => Config::default(),
    };
    if let (Some(dir), Some(_)) = (&args.data_dir, &file) {
        let relocated = Config::with_data_dir(dir);
        if matches!(config.state, StateLocation::Embedded { .. }) {
            config.state = relocated.state;
        }
        config.daemon.data_dir = dir.clone();
    }
    if let Some(url) = &args.state_url {
        config.state = StateLocation::External { url: url.clone() };
    }
    if let Some(node) = &args.node {
        config.daemon.node_name = Some(node.clone());
    }
    Ok(config)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGMAINT_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
