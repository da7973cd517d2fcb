//! The long-running loop: it rebuilds what should happen from the state store
//! and drives every unfinished maintenance forward, on a timer.
//!
//! Its restart path is its normal path: a daemon killed mid-maintenance and
//! started again finds the maintenance `running` in the store and resumes it
//! at the step it reached (the engine's steps observe before they act).

use chrono::Utc;

use crate::config::{Config, StateLocation};
use crate::endpoint::PgBouncer;
use crate::engine::{Engine, EngineError, Failpoint};
use crate::provider::local::{start_embedded_state, LocalProvider};
use crate::store::{MaintenanceState, Store};

/// How a daemon is started: its configuration, and whether to make one pass only.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub config: Config,
    /// Run one pass over the work that is due, then exit.
    pub once: bool,
}

/// Opens the state store, the provider and the endpoint the configuration names.
pub async fn open_engine(config: &Config) -> anyhow::Result<Engine> {
    let data_dir = &config.daemon.data_dir;
    let url = match &config.state {
        StateLocation::External { url } => url.clone(),
        StateLocation::Embedded { dir } => start_embedded_state(dir).await?,
    };
    let store = Store::connect(&url).await?;
    let provider = LocalProvider::open(data_dir).await?;
    let endpoint = PgBouncer::at(data_dir.join("bouncer"), provider.user().clone()).with_port(config.endpoint.port);
    let failpoint = Failpoint::from_env().map_err(anyhow::Error::msg)?;
    Ok(Engine::new(store, provider, endpoint, config.daemon.node_name()).with_failpoint(failpoint))
}

pub async fn run(options: DaemonOptions) -> anyhow::Result<()> {
    let engine = open_engine(&options.config).await?;
    engine.publish_routes().await?;
    loop {
        tick(&engine).await?;
        if options.once {
            return Ok(());
        }
        tokio::time::sleep(options.config.daemon.tick).await;
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
