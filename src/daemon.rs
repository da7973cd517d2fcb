//! The long-running loop: it rebuilds what should happen from the state store
//! and drives every unfinished maintenance forward.
//!
//! Its restart path is its normal path: a daemon killed mid-maintenance and
//! started again finds the maintenance `running` in the store and resumes it
//! at the step it reached (the engine's steps observe before they act). With
//! several daemons on one store, the holder of the `scheduler` lease plans and
//! detects; every daemon runs what is due, and a claim (lease + fencing token)
//! makes each maintenance run exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::api;
use crate::config::{Config, StateLocation};
use crate::endpoint::PgBouncer;
use crate::engine::{Engine, EngineError, Failpoint};
use crate::notify::Notifier;
use crate::provider::local::{start_embedded_state, LocalProvider};
use crate::provider::patroni::{PatroniAccess, PatroniProvider};
use crate::provider::router::Router;
use crate::store::{MaintenanceRecord, MaintenanceState, Store};

/// The lease whose holder plans maintenances and detects new ones.
const SCHEDULER_LEASE: &str = "scheduler";

/// How a daemon is started: its configuration, and whether to make one pass only.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub config: Config,
    /// Run one pass over the work that is due, wait for it, then exit.
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
    let endpoint = PgBouncer::at(data_dir.join("bouncer"), provider.user().clone())
        .with_listen(&config.endpoint.listen)?
        .with_tls(config.endpoint.tls.clone())
        .with_server_login_retry(config.endpoint.server_login_retry);
    let failpoint = Failpoint::from_env().map_err(anyhow::Error::msg)?;
    let notifier = Notifier::from_config(config, store.clone())?;
    tracing::info!(mail = %notifier.describe(), webhooks = ?notifier.describe_webhooks(), "owner mail and webhooks");
    let patroni = config.patroni.as_ref().map(PatroniAccess::from_config).transpose()?;
    let servers = Router::new(Arc::new(provider), patroni.clone().map(PatroniProvider::new));
    Ok(Engine::new(store, Arc::new(servers), endpoint, config.daemon.node_name())
        .with_patroni(patroni)
        .with_claim_lease(config.daemon.lease)
        .with_default_window(config.maintenance.default_window.clone())
        .with_hooks(config.hooks.clone())
        .with_failpoint(failpoint)
        .with_notifier(notifier))
}

/// What this daemon process is doing for one maintenance.
enum Work {
    Prepare(JoinHandle<()>),
    Run(JoinHandle<()>),
}

impl Work {
    fn is_finished(&self) -> bool {
        match self {
            Work::Prepare(h) | Work::Run(h) => h.is_finished(),
        }
    }
}

pub async fn run(options: DaemonOptions) -> anyhow::Result<()> {
    let engine = Arc::new(open_engine(&options.config).await?);
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let stop = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    serve(engine, &options.config, options.once, stop).await
}

/// The loop over an open engine, until `stop` completes (or after one pass with `once`).
pub async fn serve(engine: Arc<Engine>, config: &Config, once: bool, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    engine.publish_routes().await?;
    let nudge = Arc::new(Notify::new());
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api_config = config.api.clone();
    let (api_engine, api_nudge) = (engine.clone(), nudge.clone());
    let mut api_task = tokio::spawn(async move {
        api::serve(api_engine, &api_config, api_nudge, api::install_metrics(), async move {
            let _ = api_stopped.await;
        })
        .await
    });
    wait_for_socket(&config.api.socket, &mut api_task).await?;
    notify_systemd(&[NotifyState::Ready, NotifyState::Status(&format!("serving as {} on {}", engine.node(), config.api.socket.display()))]);
    let watchdog = watchdog_interval();
    tokio::pin!(stop);

    let mut work: HashMap<i64, Work> = HashMap::new();
    loop {
        let started = Instant::now();
        let now = Utc::now();
        if let Err(error) = pass(&engine, config, now, &mut work).await {
            tracing::error!(error = %format!("{error:#}"), "daemon pass failed");
        }
        api::metrics::record_tick(started.elapsed());
        let running = work.values().filter(|w| matches!(w, Work::Run(_))).count();
        let status = format!("{running} maintenance(s) running, {} preparing", work.len() - running);
        notify_systemd(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
        if once {
            for (id, w) in work.drain() {
                reap(id, w).await;
            }
            break;
        }
        let mut sleep = next_wake(&engine, config).await;
        if let Some(watchdog) = watchdog {
            sleep = sleep.min(watchdog);
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = nudge.notified() => {}
            _ = &mut stop => break,
            result = &mut api_task => {
                shut_down(&engine, work).await;
                result??;
                anyhow::bail!("the control API stopped");
            }
        }
    }
    shut_down(&engine, work).await;
    let _ = stop_api.send(());
    api_task.await??;
    Ok(())
}

/// Waits until the API's socket exists (it serves), or fails with the API's error.
async fn wait_for_socket(socket: &std::path::Path, api_task: &mut JoinHandle<Result<(), api::ApiError>>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if api_task.is_finished() {
            api_task.await??;
            anyhow::bail!("the control API stopped before it served");
        }
        anyhow::ensure!(Instant::now() < deadline, "the control API did not come up at {}", socket.display());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Graceful stop: preparations are abandoned (they resume on the next start),
/// runs are let finish, so no endpoint is left paused.
async fn shut_down(engine: &Engine, work: HashMap<i64, Work>) {
    notify_systemd(&[NotifyState::Stopping, NotifyState::Status("stopping: finishing running maintenances")]);
    for (id, w) in work {
        match w {
            Work::Prepare(handle) => handle.abort(),
            Work::Run(handle) => {
                tracing::info!(maintenance = id, "waiting for the running maintenance to finish before stopping");
                let _ = handle.await;
            }
        }
    }
    let _ = engine.store().release_lease(SCHEDULER_LEASE, engine.node()).await;
}

/// One pass: the leader plans and detects; then this daemon starts what is due.
async fn pass(engine: &Arc<Engine>, config: &Config, now: DateTime<Utc>, work: &mut HashMap<i64, Work>) -> anyhow::Result<()> {
    let finished: Vec<i64> = work.iter().filter(|(_, w)| w.is_finished()).map(|(id, _)| *id).collect();
    for id in finished {
        if let Some(w) = work.remove(&id) {
            reap(id, w).await;
        }
    }
    if engine.store().acquire_lease(SCHEDULER_LEASE, engine.node(), config.daemon.lease).await?.is_some() {
        engine.follow_patroni_leaders().await?;
        engine.detect(now, config.maintenance.periodic_interval).await?;
        engine.advance_rollouts(now).await?;
        engine.remove_retired(now, config.maintenance.retire_grace).await?;
        engine.expire_logins(now).await?;
        for maintenance in engine.store().unfinished_maintenances().await? {
            if needs_planning(&maintenance, now) {
                engine.replan(&maintenance, now).await?;
            }
        }
        engine.queue_reminders(now, &config.notify.lead_times).await?;
    }
    engine.deliver_mail().await;
    for maintenance in engine.store().unfinished_maintenances().await? {
        if work.contains_key(&maintenance.id) {
            continue;
        }
        let due = maintenance.scheduled_for.is_some_and(|at| at <= now);
        let id = maintenance.id;
        let task = match maintenance.state {
            MaintenanceState::Running => Some(Work::Run(spawn_run(engine.clone(), id))),
            MaintenanceState::Pending | MaintenanceState::Preparing | MaintenanceState::Ready if due => Some(Work::Run(spawn_run(engine.clone(), id))),
            MaintenanceState::Pending | MaintenanceState::Preparing => Some(Work::Prepare(spawn_prepare(engine.clone(), id))),
            _ => None,
        };
        if let Some(task) = task {
            work.insert(id, task);
        }
    }
    Ok(())
}

/// Waits for a task and logs a panic in it: the maintenance stays claimed and
/// `running`, and the next pass (of this or another daemon) resumes it.
async fn reap(id: i64, work: Work) {
    let (Work::Prepare(handle) | Work::Run(handle)) = work;
    if let Err(error) = handle.await {
        tracing::error!(maintenance = id, %error, "maintenance task panicked; it will be resumed");
    }
}

/// Unplanned, or planned into a window that has already ended unrun (the
/// daemons were down): plan again rather than run outside the window.
fn needs_planning(maintenance: &MaintenanceRecord, now: DateTime<Utc>) -> bool {
    let waiting = matches!(maintenance.state, MaintenanceState::Pending | MaintenanceState::Preparing | MaintenanceState::Ready);
    waiting && (maintenance.scheduled_for.is_none() || (!maintenance.forced && maintenance.window_end.is_some_and(|end| end <= now)))
}

fn spawn_run(engine: Arc<Engine>, id: i64) -> JoinHandle<()> {
    tokio::spawn(async move {
        match engine.run_maintenance(id).await {
            Ok(report) => {
                if let Some(pause) = report.write_pause {
                    api::metrics::record_write_pause(pause);
                }
                tracing::info!(maintenance = id, strategy = %report.strategy, outcome = %report.outcome, "maintenance finished");
            }
            Err(EngineError::Busy(_)) => {}
            Err(error) => tracing::error!(maintenance = id, %error, "maintenance failed"),
        }
    })
}

fn spawn_prepare(engine: Arc<Engine>, id: i64) -> JoinHandle<()> {
    tokio::spawn(async move {
        match engine.prepare_maintenance(id).await {
            Ok(()) | Err(EngineError::Busy(_)) => {}
            Err(error) => tracing::error!(maintenance = id, %error, "preparation failed"),
        }
    })
}

/// Sleep until the next tick, or the next scheduled start or end of a rollout's bake if sooner.
async fn next_wake(engine: &Engine, config: &Config) -> Duration {
    let now = Utc::now();
    let bake_end = engine.store().next_bake_end().await.ok().flatten();
    let soonest = engine
        .store()
        .unfinished_maintenances()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.scheduled_for)
        .chain(bake_end)
        .filter(|at| *at > now)
        .min();
    let until_start = soonest.and_then(|at| (at - now).to_std().ok()).unwrap_or(config.daemon.tick);
    until_start.min(config.daemon.tick)
}

fn notify_systemd(states: &[NotifyState]) {
    let _ = sd_notify::notify(false, states);
}

/// Half systemd's watchdog interval, when one is configured: the loop pings
/// at least that often, so a stuck loop (not just a dead process) is caught.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}
