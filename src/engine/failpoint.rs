//! Failpoints at step boundaries, so tests can kill the runner anywhere.
//!
//! `PGMAINT_FAILPOINT=<step>:<before|after>[:exit|panic]` makes the runner stop
//! dead when it reaches that boundary: `before` is after the step's intent is
//! recorded and before it acts; `after` is after it acted and before its result
//! is recorded. `exit` (the default) ends the process at once, as a kill would.

use std::fmt;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failpoint {
    step: String,
    phase: Phase,
    action: Action,
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
        let bad = || format!("{FAILPOINT_ENV}={spec:?}: expected <step>:<before|after>[:exit|panic]");
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
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Failpoint { step, phase, action })
    }

    /// Stops the process if this is the configured boundary.
    pub fn hit(&self, step: &str, phase: Phase) {
        if self.step == step && self.phase == phase {
            tracing::warn!(failpoint = %self, "failpoint reached");
            match self.action {
                Action::Exit => std::process::exit(FAILPOINT_EXIT_CODE),
                Action::Panic => panic!("failpoint {self} reached"),
            }
        }
    }
}

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

    #[test]
    fn parses_specs() {
        let fp = Failpoint::parse("promote:after").unwrap();
        assert_eq!(fp.to_string(), "promote:after");
        assert_eq!(fp.action, Action::Exit);
        assert_eq!(Failpoint::parse("fence:before:panic").unwrap().action, Action::Panic);
        for bad in ["", "promote", "promote:during", "a:before:x", "a:before:exit:more"] {
            assert!(Failpoint::parse(bad).is_err(), "{bad}");
        }
        // A different boundary does nothing.
        fp.hit("promote", Phase::Before);
        fp.hit("fence", Phase::After);
    }
}
