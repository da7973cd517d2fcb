//! The long-running loop: it rebuilds what should happen from the state store
//! and drives every unfinished maintenance forward, on a timer.
//!
//! Its restart path is its normal path: a daemon killed mid-maintenance and
//! started again finds the maintenance `running` in the store and resumes it
//! at the step it reached (the engine's steps observe before they act).

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;

use crate::endpoint::PgBouncer;
use crate::engine::{Engine, EngineError, Failpoint};
use crate::provider::local::{start_embedded_state, LocalProvider};
use crate::store::{MaintenanceState, Store};

/// How a daemon is started.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub data_dir: PathBuf,
    /// `None`: the embedded private state cluster under `data_dir/state`.
    pub state_url: Option<String>,
    /// Names this daemon in claims; a daemon restarted under the same name
    /// resumes its own claims at once instead of waiting for their leases.
    pub node: String,
    pub tick: Duration,
    /// Run one pass over the work that is due, then exit.
    pub once: bool,
}

/// Opens the state store, the provider and the endpoint under `options`.
pub async fn open_engine(options: &DaemonOptions) -> anyhow::Result<Engine> {
    let url = match &options.state_url {
        Some(url) => url.clone(),
        None => start_embedded_state(&options.data_dir).await?,
    };
    let store = Store::connect(&url).await?;
    let provider = LocalProvider::open(&options.data_dir).await?;
    let endpoint = PgBouncer::at(options.data_dir.join("bouncer"), provider.user().clone());
    let failpoint = Failpoint::from_env().map_err(anyhow::Error::msg)?;
    Ok(Engine::new(store, provider, endpoint, options.node.clone()).with_failpoint(failpoint))
}

pub async fn run(options: DaemonOptions) -> anyhow::Result<()> {
    let engine = open_engine(&options).await?;
    engine.publish_routes().await?;
    loop {
        tick(&engine).await?;
        if options.once {
            return Ok(());
        }
        tokio::time::sleep(options.tick).await;
    }
}

/// One pass: prepare what needs preparing, run what is due, resume what was interrupted.
pub async fn tick(engine: &Engine) -> anyhow::Result<()> {
    let now = Utc::now();
    for maintenance in engine.store().unfinished_maintenances().await? {
        let due = maintenance.scheduled_for.is_some_and(|at| at <= now);
        let result = match maintenance.state {
            MaintenanceState::Running => engine.run_maintenance(maintenance.id).await.map(|_| ()),
            MaintenanceState::Pending | MaintenanceState::Preparing | MaintenanceState::Ready if due => {
                engine.run_maintenance(maintenance.id).await.map(|_| ())
            }
            MaintenanceState::Pending | MaintenanceState::Preparing => engine.prepare_maintenance(maintenance.id).await,
            _ => Ok(()),
        };
        match result {
            Ok(()) | Err(EngineError::Busy(_)) => {}
            Err(error) => tracing::error!(maintenance = maintenance.id, %error, "maintenance failed"),
        }
    }
    Ok(())
}
