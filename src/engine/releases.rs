//! Releases of an app's config, as the reference's platform keeps them: every
//! change of config (an attachment, `config set`/`unset`, a rollback, a
//! switchover of an attached database) creates release vN, writes the app's env
//! file and runs its restart hook. `rollback` creates a NEW release copying an
//! older one's config; retention decides which releases can still be restored.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use serde_json::{json, Value};

use crate::model::Strategy;
use crate::store::{AppRecord, Config, DatabaseRecord, ReleaseRecord, StoreError};

use super::run::Run;
use super::{Engine, EngineError, EngineResult};

/// Who made a release when nobody is known (the daemon itself, or an unknown caller).
pub const DEFAULT_MAKER: &str = "pgmaint";

/// Which releases keep a restorable config: the latest always; others only
/// while among the newest `keep_newest` and younger than `max_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_newest: u32,
    pub max_age: TimeDelta,
}

impl Default for Retention {
    /// The reference's: 100 releases, 30 days.
    fn default() -> Self {
        Retention { keep_newest: 100, max_age: TimeDelta::days(30) }
    }
}

impl Retention {
    /// Has release `version` (made at `created_at`) expired, when `latest` is the newest version?
    pub fn expired(&self, version: i32, created_at: DateTime<Utc>, latest: i32, now: DateTime<Utc>) -> bool {
        if version >= latest {
            return false;
        }
        let newer = i64::from(latest) - i64::from(version);
        newer >= i64::from(self.keep_newest) || now - created_at > self.max_age
    }
}

/// One line of `releases`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseSummary {
    pub app: String,
    pub version: i32,
    /// `v3`.
    #[schema(example = "v3")]
    pub release: String,
    #[schema(example = "Set READ_ONLY")]
    pub change: String,
    pub made_by: String,
    pub created_at: DateTime<Utc>,
    /// Its config was discarded by retention: it cannot be rolled back to.
    pub expired: bool,
}

/// `releases info`: a release and its config (`None` once expired).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseInfo {
    #[serde(flatten)]
    pub summary: ReleaseSummary,
    /// `null` once expired.
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub config: Option<Config>,
}

/// What a change of config answers: the new release, and how applying it went.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReleaseOutcome {
    #[serde(flatten)]
    pub info: ReleaseInfo,
    /// Things to check (a rolled-back URL of a database that no longer exists...).
    pub warnings: Vec<String>,
    /// Why the env file could not be written or the restart hook failed, if so.
    pub restart_error: Option<String>,
    /// A rollback's release: the version whose config it copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<i32>,
}

/// An app's current config.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigView {
    pub app: String,
    /// The release it comes from (`None` before the first release).
    pub version: Option<i32>,
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub config: Config,
}

/// `v3` or `3` -> 3.
pub fn parse_version(text: &str) -> Result<i32, String> {
    let digits = text.strip_prefix('v').unwrap_or(text);
    match digits.parse::<i32>() {
        Ok(n) if n >= 1 && !digits.starts_with('+') => Ok(n),
        _ => Err(format!("invalid release {text:?}: expected vN, e.g. v3")),
    }
}

/// A config key: an environment variable name.
pub fn validate_key(key: &str) -> EngineResult<()> {
    let mut chars = key.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(EngineError::Invalid(format!("invalid config key {key:?}: use letters, digits and _, not starting with a digit")))
    }
}

/// The config key a database is attached under: `--as NAME` gives `NAME_URL`,
/// otherwise the database's name upper-cased with `-` as `_`, then `_URL`.
pub fn attachment_key(database: &str, name: Option<&str>) -> EngineResult<String> {
    let base = match name {
        Some(name) => name.to_string(),
        None => database.to_ascii_uppercase().replace('-', "_"),
    };
    let key = format!("{base}_URL");
    validate_key(&key)?;
    Ok(key)
}

/// `KEY=VALUE` lines, keys sorted.
pub fn env_file_text(config: &Config) -> String {
    config.iter().map(|(key, value)| format!("{key}={value}\n")).collect()
}

/// Writes the env file: a temporary file beside it (mode 0640), synced, renamed into place.
fn write_env_file(path: &Path, config: &Config) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "env".into());
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o640).open(&temporary)?;
        // The mode above is reduced by the umask; the file must be 0640 exactly.
        std::fs::set_permissions(&temporary, std::os::unix::fs::PermissionsExt::from_mode(0o640))?;
        file.write_all(env_file_text(config).as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// How many times a release is retried when another one takes its number.
const RELEASE_ATTEMPTS: usize = 5;

impl Engine {
    fn summary(&self, app: &AppRecord, record: &ReleaseRecord, latest: i32, now: DateTime<Utc>) -> ReleaseSummary {
        ReleaseSummary {
            app: app.name.clone(),
            version: record.version,
            release: format!("v{}", record.version),
            change: record.change.clone(),
            made_by: record.made_by.clone(),
            created_at: record.created_at,
            expired: self.retention.expired(record.version, record.created_at, latest, now),
        }
    }

    fn release_info(&self, app: &AppRecord, record: ReleaseRecord, latest: i32, now: DateTime<Utc>) -> ReleaseInfo {
        let summary = self.summary(app, &record, latest, now);
        let config = (!summary.expired).then_some(record.config.0);
        ReleaseInfo { summary, config }
    }

    /// Creates the next release from the current config: `change` returns the
    /// change's description and the new config, or an error that stops it.
    /// Then writes the env file and runs the restart hook.
    pub(super) async fn release_with(
        &self,
        app: &AppRecord,
        made_by: &str,
        warnings: Vec<String>,
        change: impl Fn(Option<&ReleaseRecord>) -> EngineResult<(String, Config)>,
    ) -> EngineResult<ReleaseOutcome> {
        // One release at a time per engine, so env files are written in release order.
        let _serial = self.release_lock.lock().await;
        for _ in 0..RELEASE_ATTEMPTS {
            let latest = self.store.latest_release(app.id).await?;
            let (description, config) = change(latest.as_ref())?;
            let version = latest.as_ref().map_or(1, |r| r.version + 1);
            let Some(record) = self.store.insert_release(app.id, version, &description, made_by, &config, None).await? else {
                continue;
            };
            let restart_error = self.apply_release(app, &record).await.err();
            if let Some(error) = &restart_error {
                tracing::warn!(app = %app.name, release = record.version, %error, "release not applied");
            }
            let info = self.release_info(app, record, version, Utc::now());
            return Ok(ReleaseOutcome { info, warnings, restart_error, rolled_back_to: None });
        }
        Err(EngineError::Refused(format!("app {} is being released concurrently; try again", app.name)))
    }

    /// Writes the env file (if the app has one), then runs the restart hook (if any).
    async fn apply_release(&self, app: &AppRecord, record: &ReleaseRecord) -> Result<(), String> {
        if let Some(path) = &app.env_file {
            let path = Path::new(path).to_path_buf();
            let config = record.config.0.clone();
            tokio::task::spawn_blocking(move || write_env_file(&path, &config).map_err(|e| format!("env file {}: {e}", path.display())))
                .await
                .map_err(|e| format!("env file: {e}"))??;
        }
        if let Some(command) = &app.restart_hook {
            super::hooks::run_app_hook("restart hook", command, &app.name, ("PGMAINT_RELEASE", &format!("v{}", record.version))).await?;
        }
        Ok(())
    }

    /// The first release of a new app: its attachment `key` -> the database's URL.
    pub(super) async fn release_attachment(&self, app: &AppRecord, database: &DatabaseRecord, key: &str, default_key: bool, made_by: &str) -> EngineResult<ReleaseOutcome> {
        let url = self.app_url(database).await?;
        let database = &database.name;
        let description = if default_key { format!("Attach {database}") } else { format!("Attach {database} as {key}") };
        self.release_with(app, made_by, Vec::new(), |latest| {
            let mut config = latest.map(|r| r.config.0.clone()).unwrap_or_default();
            config.insert(key.to_string(), url.clone());
            Ok((description.clone(), config))
        })
        .await
    }

    /// `apps attach APP DB [--as NAME]`: attaches as `NAME_URL` and releases it.
    pub async fn attach(&self, app: &str, database: &str, name: Option<&str>, made_by: &str) -> EngineResult<ReleaseOutcome> {
        let app = self.store.app_named(app).await?;
        let database = self.store.database_named(database).await?;
        let key = attachment_key(&database.name, name)?;
        self.store.insert_attachment(app.id, database.id, &key).await?;
        self.release_attachment(&app, &database, &key, name.is_none(), made_by).await
    }

    /// `config set APP KEY=VALUE...`: one release `Set KEY1, KEY2`.
    pub async fn set_config(&self, app: &str, values: &Config, made_by: &str) -> EngineResult<ReleaseOutcome> {
        if values.is_empty() {
            return Err(EngineError::Invalid("nothing to set: give KEY=VALUE".into()));
        }
        for (key, value) in values {
            validate_key(key)?;
            if value.contains(['\n', '\r', '\0']) {
                return Err(EngineError::Invalid(format!("the value of {key} contains a line break or NUL; env files cannot hold it")));
            }
        }
        let app = self.store.app_named(app).await?;
        let keys: Vec<&str> = values.keys().map(String::as_str).collect();
        let description = format!("Set {}", keys.join(", "));
        self.release_with(&app, made_by, Vec::new(), |latest| {
            let mut config = latest.map(|r| r.config.0.clone()).unwrap_or_default();
            config.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
            Ok((description.clone(), config))
        })
        .await
    }

    /// `config unset APP KEY`: release `Unset KEY`; an unknown key is not found.
    pub async fn unset_config(&self, app: &str, key: &str, made_by: &str) -> EngineResult<ReleaseOutcome> {
        let app = self.store.app_named(app).await?;
        let name = app.name.clone();
        self.release_with(&app, made_by, Vec::new(), |latest| {
            let mut config = latest.map(|r| r.config.0.clone()).unwrap_or_default();
            if config.remove(key).is_none() {
                return Err(StoreError::NotFound(format!("app {name} has no config var {key}")).into());
            }
            Ok((format!("Unset {key}"), config))
        })
        .await
    }

    /// `config show APP`.
    pub async fn config(&self, app: &str) -> EngineResult<ConfigView> {
        let app = self.store.app_named(app).await?;
        let latest = self.store.latest_release(app.id).await?;
        Ok(ConfigView { app: app.name, version: latest.as_ref().map(|r| r.version), config: latest.map(|r| r.config.0).unwrap_or_default() })
    }

    /// `releases APP`: newest first.
    pub async fn releases(&self, app: &str) -> EngineResult<Vec<ReleaseSummary>> {
        let app = self.store.app_named(app).await?;
        let records = self.store.releases(app.id).await?;
        let latest = records.first().map_or(0, |r| r.version);
        let now = Utc::now();
        Ok(records.iter().map(|r| self.summary(&app, r, latest, now)).collect())
    }

    /// `releases info APP vN`.
    pub async fn release(&self, app: &str, version: i32) -> EngineResult<ReleaseInfo> {
        let app = self.store.app_named(app).await?;
        let (record, latest) = self.release_and_latest(&app, version).await?;
        Ok(self.release_info(&app, record, latest, Utc::now()))
    }

    async fn release_and_latest(&self, app: &AppRecord, version: i32) -> EngineResult<(ReleaseRecord, i32)> {
        let latest = self.store.latest_release(app.id).await?.map_or(0, |r| r.version);
        let record = self
            .store
            .release(app.id, version)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("app {} has no release v{version} (its latest is v{latest})", app.name)))?;
        Ok((record, latest))
    }

    /// `rollback APP [vN]`: a new release copying vN's config (the previous
    /// release's without a number). Provisioning is not undone; a URL of a
    /// database that no longer exists is warned about.
    pub async fn rollback(&self, app: &str, version: Option<i32>, made_by: &str) -> EngineResult<ReleaseOutcome> {
        let app = self.store.app_named(app).await?;
        let version = match version {
            Some(version) => version,
            None => {
                let latest = self.store.latest_release(app.id).await?.map_or(0, |r| r.version);
                if latest < 2 {
                    return Err(EngineError::Refused(format!("app {} has no release before v{latest} to roll back to", app.name)));
                }
                latest - 1
            }
        };
        let (target, latest) = self.release_and_latest(&app, version).await?;
        if self.retention.expired(target.version, target.created_at, latest, Utc::now()) {
            return Err(EngineError::Refused(format!(
                "cannot roll back {} to v{version}: it has expired (only the latest release, the newest {} and those younger than {} days can be rolled back to)",
                app.name,
                self.retention.keep_newest,
                self.retention.max_age.num_days()
            )));
        }
        let config = target.config.0;
        let warnings = self.dangling_urls(&config).await?;
        for warning in &warnings {
            tracing::warn!(app = %app.name, "rollback to v{version}: {warning}");
        }
        let description = format!("Rollback to v{version}");
        let outcome = self.release_with(&app, made_by, warnings, |_| Ok((description.clone(), config.clone()))).await?;
        Ok(ReleaseOutcome { rolled_back_to: Some(version), ..outcome })
    }

    /// Values that are the endpoint URL of a database that no longer exists.
    async fn dangling_urls(&self, config: &Config) -> EngineResult<Vec<String>> {
        let mut warnings = Vec::new();
        for (key, value) in config {
            let Some(name) = self.endpoint.database_of_url(value) else { continue };
            match self.store.database_named(name).await {
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => warnings.push(format!(
                    "{key} is the URL of database {name}, which no longer exists; rollback does not re-create databases"
                )),
                Err(error) => return Err(error.into()),
            }
        }
        Ok(warnings)
    }

    /// A release for every app whose config points at the database (its URL
    /// `old_url`), with that URL replaced by `new_url`: the same URL after a
    /// maintenance (`Switchover orders`: the URL never changes across one),
    /// another after a rotation (`Rotate credentials orders`). Restart hooks
    /// run as for any release. An app whose latest release is already this
    /// change, made since `since`, is not released twice (a repeated step).
    pub(super) async fn record_attachment_release(
        &self,
        database_id: i64,
        change: &str,
        since: Option<DateTime<Utc>>,
        made_by: &str,
        old_url: &str,
        new_url: &str,
    ) -> EngineResult<Vec<ReleaseOutcome>> {
        let mut outcomes = Vec::new();
        for app in self.store.apps_attached_to(database_id).await? {
            let latest = self.store.latest_release(app.id).await?;
            let points_here = latest.as_ref().is_some_and(|r| r.config.0.values().any(|v| v == old_url || v == new_url));
            let already = latest.as_ref().is_some_and(|r| r.change == change && since.is_some_and(|since| r.created_at >= since));
            if !points_here || already {
                continue;
            }
            let outcome = self
                .release_with(&app, made_by, Vec::new(), |latest| {
                    let mut config = latest.map(|r| r.config.0.clone()).unwrap_or_default();
                    for value in config.values_mut().filter(|v| *v == old_url) {
                        *value = new_url.to_string();
                    }
                    Ok((change.to_string(), config))
                })
                .await?;
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }
}

impl Engine {
    /// The `release` step, after a maintenance moved a database and resumed
    /// writes: a release (`Switchover orders`, `Failover orders`, `Plan change
    /// orders to standard-4`) for every app pointing at the database. An app
    /// whose latest release is already this change, made since the
    /// maintenance started, is not released twice (a runner killed mid-step
    /// runs it again). A failed env file or hook is reported in the step's
    /// detail: it never fails the maintenance.
    pub(super) async fn release_after_switch(&self, run: &Run) -> EngineResult<Value> {
        let change = switch_change(run);
        let since = run.maintenance.started_at;
        let url = self.app_url(&run.database).await?;
        let outcomes = self.record_attachment_release(run.database.id, &change, since, DEFAULT_MAKER, &url, &url).await?;
        let apps: Vec<Value> = outcomes
            .iter()
            .map(|o| json!({ "app": o.info.summary.app, "version": o.info.summary.version, "restart_error": o.restart_error }))
            .collect();
        for outcome in outcomes.iter().filter(|o| o.restart_error.is_some()) {
            tracing::warn!(app = %outcome.info.summary.app, error = ?outcome.restart_error, "release {change:?} not applied");
        }
        Ok(json!({ "change": change, "apps": apps }))
    }
}

/// The change a switch records in attached apps' releases.
fn switch_change(run: &Run) -> String {
    match (&run.maintenance.target_plan, run.strategy) {
        (Some(plan), _) => format!("Plan change {} to {plan}", run.database.name),
        (None, Strategy::Failover) => format!("Failover {}", run.database.name),
        (None, _) => format!("Switchover {}", run.database.name),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn at(days_ago: i64, now: DateTime<Utc>) -> DateTime<Utc> {
        now - TimeDelta::days(days_ago)
    }

    #[test]
    fn the_latest_release_never_expires() {
        let now = Utc::now();
        let retention = Retention::default();
        assert!(!retention.expired(7, at(400, now), 7, now));
        assert!(!retention.expired(1, at(400, now), 1, now));
    }

    #[test]
    fn releases_older_than_thirty_days_expire() {
        let now = Utc::now();
        let retention = Retention::default();
        assert!(!retention.expired(2, at(29, now), 3, now));
        assert!(!retention.expired(2, now - TimeDelta::days(30), 3, now));
        assert!(retention.expired(2, now - TimeDelta::days(30) - TimeDelta::seconds(1), 3, now));
        assert!(retention.expired(1, at(31, now), 3, now));
    }

    #[test]
    fn only_the_newest_hundred_are_kept() {
        let now = Utc::now();
        let retention = Retention::default();
        // Latest v150: v51..=v150 are the newest 100.
        assert!(!retention.expired(51, now, 150, now));
        assert!(retention.expired(50, now, 150, now));
        assert!(retention.expired(1, now, 150, now));
        let small = Retention { keep_newest: 2, max_age: TimeDelta::days(30) };
        assert!(!small.expired(4, now, 5, now));
        assert!(small.expired(3, now, 5, now));
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("v3"), Ok(3));
        assert_eq!(parse_version("12"), Ok(12));
        for bad in ["v0", "v", "3x", "v-1", "V3", "", "v+3"] {
            assert!(parse_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attachment_keys() {
        assert_eq!(attachment_key("orders-eu", None).unwrap(), "ORDERS_EU_URL");
        assert_eq!(attachment_key("orders", Some("REPORTING")).unwrap(), "REPORTING_URL");
        assert!(attachment_key("orders", Some("bad name")).is_err());
        assert!(validate_key("1X").is_err() && validate_key("").is_err() && validate_key("_A1").is_ok());
    }

    #[test]
    fn env_files_are_written_atomically_with_mode_0640() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.env");
        let config: Config = BTreeMap::from([("B".into(), "2".into()), ("A".into(), "x=y".into())]);
        write_env_file(&path, &config).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "A=x=y\nB=2\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file was left behind");
    }
}
