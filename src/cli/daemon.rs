//! `pgmaint daemon`: start the long-running loop.

use std::path::PathBuf;
use std::time::Duration;

use pgmaint::daemon::{self, DaemonOptions};

use super::{Failure, Outcome};

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// Where servers, PgBouncer and the embedded state store live.
    #[arg(long, default_value = "/var/lib/pgmaint")]
    pub data_dir: PathBuf,
    /// State store URL; without it, a private cluster under DATA_DIR/state.
    #[arg(long, env = "PGMAINT_STATE_URL")]
    pub state_url: Option<String>,
    /// This daemon's name in claims (default: the host name).
    #[arg(long)]
    pub node: Option<String>,
    /// Run one pass over the work that is due, then exit.
    #[arg(long)]
    pub once: bool,
}

pub fn daemon(args: DaemonArgs) -> Outcome {
    init_tracing();
    let options = DaemonOptions {
        data_dir: args.data_dir,
        state_url: args.state_url,
        node: args.node.unwrap_or_else(host_name),
        tick: Duration::from_secs(10),
        once: args.once,
    };
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::failed)?;
    runtime.block_on(daemon::run(options)).map_err(|e| Failure::failed(format!("{e:#}")))
}

fn host_name() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().to_string()).unwrap_or_else(|_| "pgmaint".into())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGMAINT_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
