//! An app's hook commands (maintenance mode on/off, restart after a release):
//! run through `sh -c` with `PGMAINT_APP` and the event's own variable set.

/// Runs `command` for `app` with `PGMAINT_APP` and `(name, value)` in its
/// environment; `what` names the hook in messages. A non-zero exit is an error
/// carrying the hook's stderr.
pub(super) async fn run_app_hook(what: &str, command: &str, app: &str, variable: (&str, &str)) -> Result<(), String> {
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PGMAINT_APP", app)
        .env(variable.0, variable.1)
        .output()
        .await
        .map_err(|e| format!("{what} {command:?} of app {app} could not start: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{what} {command:?} of app {app} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}
