//! The one integration test binary: real PostgreSQL, PgBouncer and SMTP servers.

mod api_test;
mod config_test;
mod endpoint_pgbouncer;
mod harness;
mod harness_test;
mod store_test;
mod engine_test;
mod kill_test;
