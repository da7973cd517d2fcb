//! PostgreSQL servers that pgmaint itself creates and runs on this host.
//!
//! Every server lives in its own directory under `DATA_DIR/instances`; new
//! primaries are copied from an initdb template made once, replicas are
//! pg_basebackup copies. The state store's own private cluster (the embedded
//! default) is also a local cluster, under `DATA_DIR/state`.

pub mod cluster;
pub mod os;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cluster::{managed_server_settings, plan_server_settings, Cluster, ControlData, Template};
pub use os::{find_bindir, ServerUser};

use super::{Provider, ProviderError, ProviderResult, ServerAddress, StartWait, StopMode};
use crate::model::Plan;
use crate::pg::Server;

/// Local servers under one data directory.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    instances_dir: PathBuf,
    bindir: PathBuf,
    user: ServerUser,
    template: Template,
}

impl LocalProvider {
    /// Opens (creating if needed) the provider's directories and initdb template.
    pub async fn open(data_dir: &Path) -> Result<LocalProvider, ProviderError> {
        let user = ServerUser::detect()?;
        let bindir = find_bindir()?;
        user.own_dir(data_dir, 0o755)?;
        let instances_dir = data_dir.join("instances");
        user.own_dir(&instances_dir, 0o700)?;
        let template = Template::ensure(&data_dir.join("template"), &bindir, &user).await?;
        Ok(LocalProvider { instances_dir, bindir, user, template })
    }

    pub fn user(&self) -> &ServerUser {
        &self.user
    }

    /// The server at `location` (as recorded in the state store).
    pub fn cluster(&self, location: &str) -> Cluster {
        Cluster::at(location, &self.bindir, self.user.clone())
    }
}

#[async_trait::async_trait]
impl Provider for LocalProvider {
    /// A directory under `DATA_DIR/instances`: the time in microseconds, this
    /// process's id and a per-process counter make it unique on the host; a
    /// directory left by an interrupted build is skipped.
    fn new_location(&self, database: &str) -> String {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        loop {
            let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros();
            let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = self.instances_dir.join(format!("{database}-{micros:x}-{:x}-{count}", std::process::id()));
            if !path.exists() {
                return path.display().to_string();
            }
        }
    }

    /// The server's Unix socket, in its own directory, as the superuser.
    fn address(&self, location: &str) -> ServerAddress {
        self.cluster(location).address()
    }

    async fn provision_primary(&self, location: &str, plan: &Plan) -> ProviderResult<()> {
        let cluster = self.cluster(location);
        cluster.init(Some(&self.template)).await?;
        cluster.configure(&plan_server_settings(plan))?;
        cluster.start().await
    }

    async fn build_replica(&self, location: &str, upstream: &str, slot: &str, plan: &Plan) -> ProviderResult<()> {
        let cluster = self.cluster(location);
        cluster.clone_from(&self.cluster(upstream), Some(slot), slot).await?;
        cluster.configure(&plan_server_settings(plan))?;
        cluster.start_no_wait().await
    }

    async fn is_running(&self, location: &str) -> ProviderResult<bool> {
        self.cluster(location).is_running().await
    }

    async fn start(&self, location: &str, wait: StartWait) -> ProviderResult<()> {
        let cluster = self.cluster(location);
        match wait {
            StartWait::UntilServing => cluster.start().await,
            StartWait::NoWait => cluster.start_no_wait().await,
        }
    }

    async fn stop(&self, location: &str, mode: StopMode) -> ProviderResult<()> {
        self.cluster(location).stop(mode).await
    }

    /// A fast stop then a start without pg_ctl's 100 ms wait loop.
    async fn restart(&self, location: &str) -> ProviderResult<()> {
        let cluster = self.cluster(location);
        cluster.stop(StopMode::Fast).await?;
        cluster.start_no_wait().await
    }

    /// `pg_promote()` on the open session, polled every millisecond.
    async fn promote(&self, _location: &str, session: &Server, timeout: Duration) -> ProviderResult<()> {
        Ok(session.promote(timeout).await?)
    }

    async fn retire(&self, location: &str) -> ProviderResult<()> {
        self.cluster(location).stop(StopMode::Fast).await
    }

    async fn remove(&self, location: &str) -> ProviderResult<()> {
        let cluster = self.cluster(location);
        cluster.stop(StopMode::Fast).await?;
        cluster.remove().await
    }

    /// `postgres --version` of the binaries in use.
    async fn installed_version_num(&self) -> ProviderResult<u32> {
        let out = tokio::process::Command::new(self.bindir.join("postgres"))
            .arg("--version")
            .output()
            .await
            .map_err(|e| ProviderError::spawn("postgres --version", e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_version_num(&text).ok_or_else(|| ProviderError::Parse(format!("postgres --version printed {text:?}")))
    }

    /// The installed binaries (the newest on the host), run as the server user.
    fn client_program(&self, name: &str) -> tokio::process::Command {
        self.user.command(&self.bindir.join(name), &self.instances_dir)
    }
}

/// Starts (creating on first use) the private PostgreSQL cluster in `dir`
/// that holds pgmaint's own state when no `state.url` is configured, and
/// returns its URL.
pub async fn start_embedded_state(dir: &Path) -> Result<String, ProviderError> {
    let user = ServerUser::detect()?;
    let bindir = find_bindir()?;
    let cluster = Cluster::at(dir, &bindir, user);
    if !cluster.exists() {
        cluster.init(None).await?;
    }
    cluster.configure(&[("max_connections", "100".to_string()), ("shared_buffers", "32MB".to_string())])?;
    cluster.start().await?;
    Ok(cluster.url("postgres"))
}

/// Stops the embedded state cluster in `dir` (after everything that uses it).
pub async fn stop_embedded_state(dir: &Path) -> Result<(), ProviderError> {
    Cluster::at(dir, find_bindir()?, ServerUser::detect()?).stop(StopMode::Fast).await
}

/// `postgres (PostgreSQL) 15.18 (Debian ...)` -> 150018.
fn parse_version_num(text: &str) -> Option<u32> {
    let version = text.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let leading_number = |part: &str| part.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u32>();
    let mut parts = version.split('.').map(leading_number);
    let major = parts.next()?.ok()?;
    let minor = parts.next().and_then(Result::ok).unwrap_or(0);
    Some(major * 10_000 + minor)
}

#[cfg(test)]
mod tests {
    use super::parse_version_num;

    #[test]
    fn parses_server_versions() {
        assert_eq!(parse_version_num("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"), Some(150018));
        assert_eq!(parse_version_num("postgres (PostgreSQL) 17.2"), Some(170002));
        assert_eq!(parse_version_num("postgres (PostgreSQL) 16beta1"), Some(160000));
        assert_eq!(parse_version_num("nothing here"), None);
    }
}
