//! pgmaint: a maintenance control plane for self-hosted PostgreSQL fleets.
//!
//! The library holds everything the `pgmaint` binary, the integration tests and
//! the benchmarks share. Dependencies point downwards:
//! cli/api/daemon -> engine -> {store, provider, pg, endpoint, notify} -> model/schedule.

pub mod access;
pub mod api;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod endpoint;
pub mod lab;
pub mod model;
pub mod notify;
pub mod pg;
pub mod provider;
pub mod schedule;
pub mod store;
pub mod workload;
