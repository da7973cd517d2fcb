//! Running PostgreSQL's programs the way the server insists on: never as root.
//!
//! PostgreSQL refuses to run as root. When pgmaint itself runs as root (a test
//! run, a quick demo), every server program goes through `runuser -u postgres`
//! and every directory a server writes is handed to that user first.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::provider::ProviderError;

/// The OS user that owns server processes and their directories when pgmaint runs as root.
pub const SERVER_OS_USER: &str = "postgres";

/// The unprivileged account server programs run as, resolved once.
#[derive(Debug, Clone)]
pub struct ServerUser {
    /// `None` when pgmaint is not root: programs then run as pgmaint's own user.
    switch_to: Option<nix::unistd::User>,
}

impl ServerUser {
    pub fn detect() -> Result<Self, ProviderError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(ServerUser { switch_to: None });
        }
        let user = nix::unistd::User::from_name(SERVER_OS_USER)
            .map_err(|e| ProviderError::Os(format!("looking up user {SERVER_OS_USER}: {e}")))?
            .ok_or_else(|| {
                ProviderError::Os(format!(
                    "running as root needs the unprivileged OS user {SERVER_OS_USER:?} (install the postgresql package)"
                ))
            })?;
        Ok(ServerUser { switch_to: Some(user) })
    }

    /// A command for `program` that runs as the server user, with a working
    /// directory that user can enter.
    pub fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut command = match &self.switch_to {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(&user.name).arg("--").arg(program);
                c
            }
            None => Command::new(program),
        };
        command.current_dir(cwd).stdin(Stdio::null()).kill_on_drop(false);
        command
    }

    /// Creates `path` (and parents) and gives it to the server user with `mode`.
    pub fn own_dir(&self, path: &Path, mode: u32) -> Result<(), ProviderError> {
        std::fs::create_dir_all(path).map_err(|e| ProviderError::io(path, e))?;
        self.give(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| ProviderError::io(path, e))
    }

    /// Hands an existing file or directory to the server user (a no-op when not root).
    pub fn give(&self, path: &Path) -> Result<(), ProviderError> {
        if let Some(user) = &self.switch_to {
            nix::unistd::chown(path, Some(user.uid), Some(user.gid))
                .map_err(|e| ProviderError::Os(format!("chown {}: {e}", path.display())))?;
        }
        Ok(())
    }
}

/// The directory holding `initdb`, `pg_ctl`, `pg_basebackup`: `pg_config --bindir`,
/// else the newest `/usr/lib/postgresql/*/bin`.
pub fn find_bindir() -> Result<PathBuf, ProviderError> {
    if let Ok(out) = std::process::Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").exists() {
                return Ok(dir);
            }
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, bin)| bin).ok_or_else(|| {
        ProviderError::Os("no PostgreSQL server binaries found (pg_config --bindir, /usr/lib/postgresql/*/bin); install the postgresql package".into())
    })
}
