//! The one integration test binary: real PostgreSQL, PgBouncer and SMTP servers.

mod cli_planning;
