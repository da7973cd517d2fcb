//! Where PostgreSQL servers live, and the only place (with `pg/`) that acts on them.
//!
//! `local` runs servers on this host under pgmaint's data directory with the
//! distribution's server binaries (initdb, pg_ctl, pg_basebackup).

pub mod local;

use std::path::Path;

/// Failures of the programs and files that make up a server.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("could not run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} failed ({status}): {stderr}")]
    Command { program: String, status: String, stderr: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Os(String),
    #[error("{0}")]
    Parse(String),
}

impl ProviderError {
    pub(crate) fn spawn(program: &str, source: std::io::Error) -> Self {
        ProviderError::Spawn { program: program.to_string(), source }
    }

    pub(crate) fn command(program: &str, out: &std::process::Output) -> Self {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        ProviderError::Command { program: program.to_string(), status: out.status.to_string(), stderr }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ProviderError::Io { path: path.display().to_string(), source }
    }

    /// Appends the last lines of a server log, where the real reason usually is.
    pub(crate) fn with_log(self, log: &Path) -> Self {
        match self {
            ProviderError::Command { program, status, stderr } => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
                ProviderError::Command { program, status, stderr: format!("{stderr}; log {}: {tail}", log.display()) }
            }
            other => other,
        }
    }
}
