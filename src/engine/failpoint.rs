//! Failpoints at step boundaries, so tests can kill the runner anywhere.
//!
//! `PGMAINT_FAILPOINT=<step>:<before|after>[:exit|panic|fail|stall=<ms>]` makes the
//! runner stop dead when it reaches that boundary: `before` is after the step's
//! intent is recorded and before it acts; `after` is after it acted and before
//! its result is recorded. `exit` (the default) ends the process at once, as a
//! kill would. `fail` makes the step fail there once, as a passing server
//! error would (so without acting, or having acted): the step's declared
//! recovery runs.
//! `stall=<ms>` waits that long and goes on: a test widens the
//! window between two steps to act inside it (what the servers do by
//! themselves there, such as WAL written after the confirmation).

use std::fmt;
use std::time::Duration;

pub const FAILPOINT_ENV: &str = "PGMAINT_FAILPOINT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Before,
    After,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Exit,
    Panic,
    Fail,
    Stall(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failpoint {
    step: String,
    phase: Phase,
    action: Action,
    /// Set when a `fail` failpoint has failed its step (it fails it once).
    failed: std::sync::OnceLock<()>,
}

/// Exit status of a process stopped by a failpoint (as if killed by SIGKILL).
pub const FAILPOINT_EXIT_CODE: i32 = 137;

impl Failpoint {
    /// Reads the failpoint from the environment; a malformed value is an error, not silence.
    pub fn from_env() -> Result<Option<Failpoint>, String> {
        match std::env::var(FAILPOINT_ENV) {
            Ok(spec) if !spec.is_empty() => Failpoint::parse(&spec).map(Some),
            _ => Ok(None),
        }
    }

    pub fn parse(spec: &str) -> Result<Failpoint, String> {
        let bad = || format!("{FAILPOINT_ENV}={spec:?}: expected <step>:<before|after>[:exit|panic|fail|stall=<ms>]");
        let mut parts = spec.split(':');
        let step = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?.to_string();
        let phase = match parts.next() {
            Some("before") => Phase::Before,
            Some("after") => Phase::After,
            _ => return Err(bad()),
        };
        let action = match parts.next() {
            None | Some("exit") => Action::Exit,
            Some("panic") => Action::Panic,
            Some("fail") => Action::Fail,
            Some(other) => match other.strip_prefix("stall=").map(str::parse) {
                Some(Ok(ms)) => Action::Stall(Duration::from_millis(ms)),
                _ => return Err(bad()),
            },
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Failpoint { step, phase, action, failed: std::sync::OnceLock::new() })
    }

    /// Stops the process (or stalls the runner) if this is the configured
    /// boundary; `Err` is the failure a `fail` failpoint makes the step return.
    pub async fn hit(&self, step: &str, phase: Phase) -> Result<(), FailpointReached> {
        if self.step != step || self.phase != phase || (self.action == Action::Fail && self.failed.set(()).is_err()) {
            return Ok(());
        }
        tracing::warn!(failpoint = %self, "failpoint reached");
        match self.action {
            Action::Exit => std::process::exit(FAILPOINT_EXIT_CODE),
            Action::Panic => panic!("failpoint {self} reached"),
            Action::Fail => Err(FailpointReached(self.to_string())),
            Action::Stall(duration) => {
                tokio::time::sleep(duration).await;
                Ok(())
            }
        }
    }
}

/// The failure of a step made to fail by a `fail` failpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failpoint {0} reached")]
pub struct FailpointReached(String);

impl fmt::Display for Failpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Before => "before",
            Phase::After => "after",
        };
        write!(f, "{}:{phase}", self.step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_specs() {
        let fp = Failpoint::parse("promote:after").unwrap();
        assert_eq!(fp.to_string(), "promote:after");
        assert_eq!(fp.action, Action::Exit);
        assert_eq!(Failpoint::parse("fence:before:panic").unwrap().action, Action::Panic);
        let fail = Failpoint::parse("promote:before:fail").unwrap();
        assert_eq!(fail.hit("promote", Phase::Before).await, Err(FailpointReached("promote:before".into())));
        assert_eq!(fail.hit("promote", Phase::After).await, Ok(()));
        assert_eq!(fail.hit("promote", Phase::Before).await, Ok(()), "it fails its step once");
        assert_eq!(Failpoint::parse("fence:before:stall=2500").unwrap().action, Action::Stall(Duration::from_millis(2500)));
        for bad in ["", "promote", "promote:during", "a:before:x", "a:before:exit:more", "a:before:stall", "a:before:stall=soon"] {
            assert!(Failpoint::parse(bad).is_err(), "{bad}");
        }
        // A different boundary does nothing.
        assert_eq!(fp.hit("promote", Phase::Before).await, Ok(()));
        assert_eq!(fp.hit("fence", Phase::After).await, Ok(()));
    }
}
