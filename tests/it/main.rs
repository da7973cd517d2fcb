//! The one integration test binary: real PostgreSQL, PgBouncer and SMTP servers.

mod config_test;
mod endpoint_pgbouncer;
mod harness;
mod harness_test;
mod store_test;
mod daemon_test;
mod engine_test;
mod kill_test;
mod notify_test;
