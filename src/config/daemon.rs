//! `[daemon]`, `[state]` and `[api]`: where the daemon keeps its files, who it
//! is, where its state store is and where its API listens. The sections that
//! the command line's overrides (`--data-dir`, `--node`, `--state-url`) reach,
//! and whose paths derive from the data directory, so they are read together.

use std::net::SocketAddr;
use std::str::FromStr;

use super::loader::{convert, field, Field, Loader, RawApi, RawDaemon, RawState};
use super::{ApiConfig, Config, ConfigError, DaemonConfig, StateLocation};
use crate::schedule::format_duration;

/// Longest path a Unix socket can be bound to (`sun_path` is 108 bytes with its NUL).
const MAX_UNIX_SOCKET_PATH: usize = 107;

impl Loader<'_> {
    /// `[daemon]`, with `--data-dir` and `--node` winning over the file.
    pub(super) fn daemon(&self, d: &RawDaemon) -> Result<DaemonConfig, ConfigError> {
        let defaults = Config::default().daemon;
        let data_dir_field = field("daemon", "data_dir", &d.data_dir);
        let tick_field = field("daemon", "tick", &d.tick);
        let lease_field = field("daemon", "lease", &d.lease);
        let node_field = field("daemon", "node_name", &d.node_name);
        let data_dir = match &self.overrides.data_dir {
            Some(dir) => dir.clone(),
            None => convert(&data_dir_field, self, Field::path)?.unwrap_or(defaults.data_dir),
        };
        let tick = convert(&tick_field, self, Field::positive_duration)?.unwrap_or(defaults.tick);
        let lease = convert(&lease_field, self, Field::positive_duration)?.unwrap_or(defaults.lease);
        if lease < tick * 2 {
            let (blame, lease_origin) = match (&lease_field, &tick_field) {
                (Some(lease_field), _) => (lease_field, ""),
                (None, Some(tick_field)) => (tick_field, ", the default"),
                (None, None) => unreachable!("the defaults are consistent"),
            };
            return Err(blame.invalid(
                self,
                format!(
                    "the lease ({}{lease_origin}) must be at least twice the tick ({}), \
                     or a leader can lose it between two ticks",
                    format_duration(lease),
                    format_duration(tick)
                ),
            ));
        }
        let node_name = match &self.overrides.node_name {
            Some(name) => {
                check_node_name(name).map_err(|problem| ConfigError::Flag { flag: "--node", problem: problem.into() })?;
                Some(name.clone())
            }
            None => convert(&node_field, self, |f, ld| {
                let name = f.string(ld, "a node name")?;
                check_node_name(&name).map_err(|problem| f.invalid(ld, problem))?;
                Ok(name)
            })?,
        };
        Ok(DaemonConfig { data_dir, tick, node_name, lease })
    }

    /// `[state]`, with `--state-url` winning over the file; `embedded` is the
    /// store under the data directory, for when there is no URL.
    pub(super) fn state(&self, s: &RawState, embedded: StateLocation) -> Result<StateLocation, ConfigError> {
        let url = match &self.overrides.state_url {
            Some(url) => {
                check_state_url(url).map_err(|problem| ConfigError::Flag { flag: "--state-url", problem })?;
                Some(url.clone())
            }
            None => convert(&field("state", "url", &s.url), self, |f, ld| {
                let url = f.string(ld, "a postgresql:// URL")?;
                check_state_url(&url).map_err(|problem| f.invalid(ld, problem))?;
                Ok(url)
            })?,
        };
        Ok(url.map_or(embedded, |url| StateLocation::External { url }))
    }

    /// `[api]`; `defaults` has the socket under the data directory, and `d` is
    /// `[daemon]`, to blame its `data_dir` when that default socket path is too long.
    pub(super) fn api(&self, a: &RawApi, d: &RawDaemon, defaults: ApiConfig) -> Result<ApiConfig, ConfigError> {
        let socket_field = field("api", "socket", &a.socket);
        let tcp_field = field("api", "tcp", &a.tcp);
        let socket = convert(&socket_field, self, Field::path)?.unwrap_or(defaults.socket);
        if socket.as_os_str().len() > MAX_UNIX_SOCKET_PATH {
            let problem = format!(
                "the API socket path {} is {} bytes long; Unix sockets allow at most {MAX_UNIX_SOCKET_PATH}",
                socket.display(),
                socket.as_os_str().len()
            );
            return Err(match (&socket_field, &self.overrides.data_dir, field("daemon", "data_dir", &d.data_dir)) {
                (Some(blame), _, _) => blame.invalid(self, problem),
                (None, Some(_), _) => ConfigError::Flag { flag: "--data-dir", problem },
                (None, None, Some(blame)) => blame.invalid(self, problem),
                (None, None, None) => unreachable!("the default socket path is short"),
            });
        }
        let socket_group =
            convert(&field("api", "socket_group", &a.socket_group), self, |f, ld| f.string(ld, "a group name"))?;
        let tcp = convert(&tcp_field, self, |f, ld| {
            let s = f.str(ld, "an address such as \"127.0.0.1:7070\"")?;
            s.trim().parse::<SocketAddr>().map_err(|_| {
                f.invalid(
                    ld,
                    format!("\"{s}\" is not an IP address and port such as \"127.0.0.1:7070\" or \"[::1]:7070\""),
                )
            })
        })?;
        let token_file = convert(&field("api", "token_file", &a.token_file), self, Field::path)?;
        if let (Some(tcp_field), None) = (&tcp_field, &token_file) {
            return Err(tcp_field.invalid(self, "a TCP listener needs token_file (the token TCP clients must present)"));
        }
        Ok(ApiConfig { socket, socket_group, tcp, token_file })
    }
}

fn check_node_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a node name cannot be empty or contain spaces or control characters");
    }
    Ok(())
}

fn check_state_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
        return Err("not a PostgreSQL URL; write postgresql://USER@HOST/DB (a Unix socket: ?host=/run/postgresql)".into());
    }
    // Parsed the way the state store will parse it; sqlx's message does not echo the URL.
    sqlx::postgres::PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|e| format!("not a PostgreSQL URL ({e}); write postgresql://USER@HOST/DB"))
}

/// The default node name: this host's name.
pub(super) fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `url` with the password replaced by `***`: the `user:password@` of a URL and
/// any `password=` parameter (URL query or key=value conninfo).
pub fn mask_password(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..].find(['/', '?']).map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    let mut masked = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.to_ascii_lowercase().find("password=") {
        let boundary = i == 0 || matches!(rest.as_bytes()[i - 1], b'?' | b'&' | b' ' | b'\t');
        let value_start = i + "password=".len();
        masked.push_str(&rest[..value_start]);
        rest = &rest[value_start..];
        if boundary {
            let end = if let Some(quoted) = rest.strip_prefix('\'') {
                quoted.find('\'').map_or(rest.len(), |j| j + 2)
            } else {
                rest.find(['&', ' ', '\t']).unwrap_or(rest.len())
            };
            masked.push_str("***");
            rest = &rest[end..];
        }
    }
    masked.push_str(rest);
    masked
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{assert_error, error, parse};
    use super::*;

    #[test]
    fn tick_and_lease() {
        assert_error("[daemon]\ntick = \"0s\"\n", 2, "daemon.tick", "must be longer than zero");
        assert_error("[daemon]\ntick = 10\n", 2, "daemon.tick", "found integer 10");
        assert_error("[daemon]\ntick = \"10\"\n", 2, "daemon.tick", "has no unit");
        assert_error("[daemon]\ntick = \"10s\"\nlease = \"15s\"\n", 3, "daemon.lease", "at least twice the tick");
        // The lease is not in the file: the tick takes the blame.
        assert_error("[daemon]\ntick = \"1m\"\n", 2, "daemon.tick", "the lease (30s, the default)");
        assert_error("[daemon]\nnode_name = \"a b\"\n", 2, "daemon.node_name", "spaces");
    }

    #[test]
    fn tcp_needs_a_token_file() {
        assert_error("[api]\n\ntcp = \"127.0.0.1:7070\"\n", 3, "api.tcp", "needs token_file");
        assert_error(
            "[api]\ntcp = \"localhost:7070\"\ntoken_file = \"/t\"\n",
            2,
            "api.tcp",
            "not an IP address and port",
        );
    }

    #[test]
    fn state_url_is_checked_and_masked() {
        assert_error("[state]\nurl = \"mysql://x\"\n", 2, "state.url", "not a PostgreSQL URL");
        let e = error("[state]\nurl = \"postgres://u:secret@:99999999/db\"\n");
        assert!(!e.to_string().contains("secret"), "{e}");
        let config = parse("[state]\nurl = \"postgres://u@%2Frun%2Fpostgresql/pgmaint\"\n").unwrap();
        assert_eq!(config.state.describe(), "postgres://u@%2Frun%2Fpostgresql/pgmaint");
    }

    #[test]
    fn mask_password_cases() {
        assert_eq!(mask_password("postgresql://u:p@h/db"), "postgresql://u:***@h/db");
        assert_eq!(mask_password("postgresql://u:p%40x@h:5432/db?x=1"), "postgresql://u:***@h:5432/db?x=1");
        assert_eq!(mask_password("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(
            mask_password("postgresql://h/db?user=u&password=p&sslmode=require"),
            "postgresql://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(mask_password("host=/run user=u password='a b' dbname=x"), "host=/run user=u password=*** dbname=x");
        assert_eq!(mask_password("postgresql://h/db?old_password=x"), "postgresql://h/db?old_password=x");
    }

    #[test]
    fn api_socket_path_must_fit() {
        let long = format!("/{}", "d".repeat(100));
        assert_error(&format!("[daemon]\ndata_dir = \"{long}\"\n"), 2, "daemon.data_dir", "at most 107");
        assert_error(&format!("[api]\nsocket = \"{long}/{long}\"\n"), 2, "api.socket", "at most 107");
        // An explicit short socket makes a long data directory fine.
        parse(&format!("[daemon]\ndata_dir = \"{long}\"\n[api]\nsocket = \"/run/pgmaint/api.sock\"\n")).unwrap();
    }
}
