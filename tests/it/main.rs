//! The one integration test binary: real PostgreSQL, PgBouncer and SMTP servers.

mod config_test;
mod harness;
mod harness_test;
mod store_test;
