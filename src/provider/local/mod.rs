//! PostgreSQL servers that pgmaint itself creates and runs on this host.

pub mod cluster;
pub mod os;

pub use cluster::{managed_server_settings, Cluster, ControlData, StopMode, Template};
pub use os::{find_bindir, ServerUser};
