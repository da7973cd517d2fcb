//! The one integration test binary: real PostgreSQL, PgBouncer and SMTP servers.

mod access_test;
mod api_test;
mod cli_planning;
mod config_test;
mod copy_test;
mod daemon_test;
mod endpoint_pgbouncer;
mod engine_test;
mod harness;
mod harness_test;
mod kill_test;
mod manual_run_test;
mod notify_test;
mod patroni_test;
mod plan_change_test;
mod releases_test;
mod rollout_test;
mod store_test;
mod webhook_test;
