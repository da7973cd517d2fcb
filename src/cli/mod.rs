//! The `pgmaint` command's verbs: argument types and output formatting.
//!
//! Each verb returns `Result<(), Failure>`; `main` prints the failure's one-line
//! message on stderr and exits with its code, so no verb ever panics on bad input.

pub mod control;
pub mod bench_copy;
pub mod bench_maintenance;
pub mod bench_planner;
pub mod config_check;
pub mod daemon;
pub mod demo;
pub mod planning;

use std::fmt;

/// Why a verb failed, and the exit status that tells a script so.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Bad input from the user (a malformed time, an unknown zone...): exit status 2.
    pub fn usage(message: impl fmt::Display) -> Self {
        Failure { code: 2, message: message.to_string() }
    }

    /// The request was understood but could not be carried out: exit status 1.
    pub fn failed(message: impl fmt::Display) -> Self {
        Failure { code: 1, message: message.to_string() }
    }
}

pub type Outcome = Result<(), Failure>;
