//! Maintenance windows and the planner: when may a database's maintenance run?
//!
//! Everything here is pure: no I/O, no clock (`now` is always an argument), so
//! the answers can be property-tested against a brute-force reference and the
//! fleet-wide planning benchmarked. The CLI (`pgmaint window next`, `pgmaint
//! plan`, `pgmaint bench planner`) and the engine are thin callers.
//!
//! - [`Window`]: `Sunday 14:30 Europe/Berlin`, parsed and printed.
//! - [`parse_duration`], [`parse_std_duration`], [`format_duration`]: the one
//!   duration grammar (`1h30m`, `100ms`, `2w`), shared with the configuration.
//! - [`next_occurrence`]: when a window next happens, DST included.
//! - [`Blackout`], [`RecurringBlackout`]: when maintenance may not run.
//! - [`plan()`]: the earliest usable window before a deadline, or a forced run.
//! - [`Fleet`]: a fleet file and its calendar of maintenances.
//! - [`plan_rollout`]: when each wave of a rollout would run.

mod blackout;
mod duration;
mod error;
mod fleet;
mod occurrence;
mod planner;
mod reminders;
mod rollout;
mod timestamp;
mod window;

#[cfg(test)]
mod tests;

pub use blackout::{Blackout, RecurringBlackout, MAX_EXPANDED_BLACKOUTS};
pub use duration::{
    check_window_length, format_duration, parse_duration, parse_std_duration, parse_window_length, DurationValue, DEFAULT_WINDOW_LENGTH,
    MAX_WINDOW_LENGTH, MIN_WINDOW_LENGTH,
};
pub use error::{DurationError, ScheduleError};
pub use fleet::{Fleet, FleetDatabase, FleetError, PlannedMaintenance, DEFAULT_EVERY, MAX_MAINTENANCES_PER_DATABASE, PERIODIC_NOTICE};
pub use occurrence::{next_occurrence, start_on, Occurrence};
pub use reminders::reminders_due;
pub use rollout::{plan_rollout, Known, MemberPlan, WaveMember, WavePlan};
pub use planner::{normalize_blackouts, plan, ForcedReason, Plan};
pub use timestamp::{format_timestamp, parse_deadline, parse_timestamp};
pub use window::{parse_day, parse_zone, Described, Window};
