//! Prometheus metrics through the `metrics` facade.
//!
//! [`install_metrics`] installs the process-wide recorder once and returns its
//! handle; `GET /metrics` refreshes the store-derived gauges (from the
//! engine's [`StoreGauges`]) and renders the handle's text. The daemon
//! records the tick-related figures with
//! [`record_tick`] and [`record_write_pause`] (the API's `maintenance run`
//! records its write pause too).
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `pgmaint_maintenances{state}` | gauge | maintenances in each state (from the store, at scrape) |
//! | `pgmaint_outbox_depth` | gauge | owner mails and webhooks not sent yet (from the store, at scrape) |
//! | `pgmaint_last_write_pause_ms` | gauge | write pause of the last finished maintenance run |
//! | `pgmaint_tick_seconds` | gauge | how long the daemon's last tick took |

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{describe_gauge, gauge, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::engine::StoreGauges;

pub const MAINTENANCES: &str = "pgmaint_maintenances";
pub const OUTBOX_DEPTH: &str = "pgmaint_outbox_depth";
pub const LAST_WRITE_PAUSE_MS: &str = "pgmaint_last_write_pause_ms";
pub const TICK_SECONDS: &str = "pgmaint_tick_seconds";

/// Every state a maintenance can be in; each gets a series, zero included.
const STATES: [&str; 6] = ["pending", "preparing", "ready", "running", "completed", "failed"];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder (once;
/// later calls return the same handle) and registers pgmaint's gauges.
pub fn install_metrics() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = match PrometheusBuilder::new().install_recorder() {
                Ok(handle) => handle,
                Err(error) => {
                    // Another recorder owns the facade: /metrics still answers, without pgmaint's figures.
                    tracing::warn!(%error, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            describe_gauge!(MAINTENANCES, "Maintenances in each state");
            describe_gauge!(OUTBOX_DEPTH, "Owner mails recorded and not sent yet");
            describe_gauge!(LAST_WRITE_PAUSE_MS, Unit::Milliseconds, "Write pause of the last finished maintenance run");
            describe_gauge!(TICK_SECONDS, Unit::Seconds, "How long the daemon's last tick took");
            // Registered now so a scrape before the first tick shows them (at 0).
            gauge!(LAST_WRITE_PAUSE_MS).set(0.0);
            gauge!(TICK_SECONDS).set(0.0);
            handle
        })
        .clone()
}

/// The daemon's tick took `took`.
pub fn record_tick(took: Duration) {
    gauge!(TICK_SECONDS).set(took.as_secs_f64());
}

/// A maintenance run paused writes for `pause`.
pub fn record_write_pause(pause: Duration) {
    gauge!(LAST_WRITE_PAUSE_MS).set(pause.as_secs_f64() * 1000.0);
}

/// Sets the gauges that come from the store (at each scrape).
pub fn refresh_from_store(gauges: &StoreGauges) {
    let counts = &gauges.maintenances_by_state;
    for state in STATES {
        let count = counts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
        gauge!(MAINTENANCES, "state" => state).set(count as f64);
    }
    for (state, count) in counts.iter().filter(|(s, _)| !STATES.contains(&s.as_str())) {
        gauge!(MAINTENANCES, "state" => state.clone()).set(*count as f64);
    }
    gauge!(OUTBOX_DEPTH).set(gauges.outbox_depth as f64);
}
