//! The one integration test binary: real PostgreSQL, PgBouncer and SMTP servers.

mod endpoint_pgbouncer;
mod harness;
mod harness_test;
