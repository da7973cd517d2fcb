//! Commands run through `sh -c`: an app's hooks (maintenance mode on/off,
//! restart after a release), and the `[hooks]` run before and after every
//! maintenance as its `before_hook` and `after_hook` steps.
//!
//! A command's stdout and stderr are kept together; when it fails, its last
//! lines are what the step log, `maintenance history` and the owners' mail say.

use std::time::Duration;

use serde_json::{json, Value};

use super::run::Run;
use super::{Engine, EngineError, EngineResult};

/// How many of a failed command's last output lines are kept.
const OUTPUT_LINES: usize = 5;

/// A command that exited non-zero, was killed at its timeout, or could not start.
#[derive(Debug)]
pub(super) struct ShellFailure {
    /// `exit status: 1`, `timed out after 10m`...
    pub status: String,
    /// Its last lines of output.
    pub output: String,
}

/// Runs `command` with `sh -c` and `env` set, stderr merged into stdout;
/// killed (its whole process group) after `timeout`, if given. Answers with
/// the last lines of its output.
pub(super) async fn run_shell(command: &str, env: &[(&str, &str)], timeout: Option<Duration>) -> Result<String, ShellFailure> {
    let mut child = tokio::process::Command::new("sh");
    child
        .arg("-c")
        .arg(format!("exec 2>&1\n{command}"))
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = child.spawn().map_err(|e| ShellFailure { status: format!("could not start: {e}"), output: String::new() })?;
    let pid = child.id();
    let waited = child.wait_with_output();
    let output = match timeout {
        Some(limit) => match tokio::time::timeout(limit, waited).await {
            Ok(output) => output,
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
                return Err(ShellFailure { status: format!("timed out after {}", crate::schedule::format_duration(limit)), output: String::new() });
            }
        },
        None => waited.await,
    }
    .map_err(|e| ShellFailure { status: format!("could not be waited for: {e}"), output: String::new() })?;
    let text = last_lines(&String::from_utf8_lossy(&output.stdout));
    if output.status.success() {
        Ok(text)
    } else {
        Err(ShellFailure { status: output.status.to_string(), output: text })
    }
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(OUTPUT_LINES)..].join("\n")
}

impl ShellFailure {
    pub(super) fn describe(&self, what: &str) -> String {
        if self.output.is_empty() {
            format!("{what} failed ({})", self.status)
        } else {
            format!("{what} failed ({}): {}", self.status, self.output)
        }
    }
}

/// Runs `command` for `app` with `PGMAINT_APP` and `(name, value)` in its
/// environment; `what` names the hook in messages. A non-zero exit is an error
/// carrying the hook's last lines of output.
pub(super) async fn run_app_hook(what: &str, command: &str, app: &str, variable: (&str, &str)) -> Result<(), String> {
    run_shell(command, &[("PGMAINT_APP", app), variable], None)
        .await
        .map(drop)
        .map_err(|failure| failure.describe(&format!("{what} {command:?} of app {app}")))
}

/// Which of the `[hooks]` a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HookPoint {
    Before,
    After,
}

impl Engine {
    /// The `before_hook` or `after_hook` step: runs the configured command
    /// (with no command configured, records that). A failing before hook fails
    /// the step, so the maintenance fails before anything is touched; a
    /// failing after hook records the check as failed on the maintenance and
    /// the step is done (the maintenance itself completed).
    pub(super) async fn maintenance_hook(&self, point: HookPoint, run: &Run) -> EngineResult<Value> {
        let (key, command) = match point {
            HookPoint::Before => ("before_maintenance", self.hooks.before_maintenance.as_deref()),
            HookPoint::After => ("after_maintenance", self.hooks.after_maintenance.as_deref()),
        };
        let Some(command) = command else { return Ok(json!({ "configured": false })) };
        let rollout = self.store.rollout_name_of(run.maintenance.id).await?.unwrap_or_default();
        let id = run.maintenance.id.to_string();
        let env = [
            ("PGMAINT_DATABASE", run.database.name.as_str()),
            ("PGMAINT_MAINTENANCE_ID", id.as_str()),
            ("PGMAINT_REASON", run.maintenance.reason.as_str()),
            ("PGMAINT_STRATEGY", run.strategy.as_str()),
            ("PGMAINT_ROLLOUT", rollout.as_str()),
        ];
        match (run_shell(command, &env, Some(self.hooks.hook_timeout)).await, point) {
            (Ok(output), _) => Ok(json!({ "configured": true, "passed": true, "output": output })),
            (Err(failure), HookPoint::Before) => Err(EngineError::Hook(failure.describe(&format!("the {key} hook")))),
            (Err(failure), HookPoint::After) => {
                let message = failure.describe(&format!("the {key} hook"));
                self.store.set_check_error(run.claim, &message).await?;
                Ok(json!({ "configured": true, "passed": false, "output": failure.output, "status": failure.status }))
            }
        }
    }
}
