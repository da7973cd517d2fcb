//! The daemon's TOML configuration, validated into typed settings.
//!
//! Every section and every key is optional (except `from` in an `[smtp]`
//! section); [`Config::default`] is what an empty file means. Unknown sections and keys are refused (a typo must not
//! silently fall back to a default), and every error names the file, the line
//! and the key, e.g.
//!
//! ```text
//! examples/bad.toml:7: unknown key "hots" in [smtp] (expected one of host, port, tls, username, password, from)
//! /etc/pgmaint/pgmaint.toml:3: bad value for "tick" in [daemon]: must be longer than zero
//! ```
//!
//! This file holds the public types and puts a file's sections together. How
//! a file becomes values with a place is `loader`'s business; each family of
//! sections is converted and checked in its own file: `daemon` (`[daemon]`,
//! `[state]`, `[api]`: where the daemon lives and how it is reached), `mail`
//! (`[smtp]`, `[notify]`) and `maintenance` (`[endpoint]`, `[maintenance]`, `[hooks]`) and `patroni` (`[patroni]`).
//! Durations and windows are read by the grammar of [`crate::schedule`], the
//! same as on the command line and in fleet files.
//!
//! Relative paths are kept as written, that is relative to the daemon's working
//! directory (`/` under systemd): use absolute paths in production.

mod daemon;
mod error;
mod loader;
mod mail;
mod maintenance;
mod patroni;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::Mailbox;

use crate::notify::WebhookUrl;

pub use daemon::mask_password;
pub use error::ConfigError;
use loader::{Loader, RawConfig, Section};

/// Default data directory: instances, PgBouncer and the embedded state cluster live under it.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/pgmaint";

const DAY: u64 = 24 * 60 * 60;

/// The whole configuration, with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub daemon: DaemonConfig,
    /// Where the state store lives.
    pub state: StateLocation,
    pub api: ApiConfig,
    /// `None`: no `[smtp]` section; mail is written as files under [`NotifyConfig::mail_dir`].
    pub smtp: Option<SmtpConfig>,
    pub notify: NotifyConfig,
    pub endpoint: EndpointConfig,
    pub maintenance: MaintenanceConfig,
    pub hooks: HooksConfig,
    /// `None`: no `[patroni]` section; Patroni clusters cannot be adopted.
    pub patroni: Option<PatroniConfig>,
}

/// `[daemon]`
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Instances, PgBouncer and the embedded state cluster live under it.
    pub data_dir: PathBuf,
    /// How often the loop wakes without a nudge.
    pub tick: Duration,
    /// The lease holder's name; `None` means hostname + pid (see [`DaemonConfig::node_name`]).
    pub node_name: Option<String>,
    /// Leadership / maintenance claim lease; at least twice `tick`.
    pub lease: Duration,
}

/// `[state]`: the state store.
#[derive(Clone, PartialEq)]
pub enum StateLocation {
    /// No `url`: a private PostgreSQL cluster the daemon initialises and runs in `dir`
    /// (`DATA_DIR/state`).
    Embedded { dir: PathBuf },
    /// `url = "postgresql://..."`: a shared state store (several daemons, one leader).
    External { url: String },
}

/// `[api]`: the control API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// The Unix socket the API listens on (default `DATA_DIR/pgmaint.sock`).
    pub socket: PathBuf,
    /// With a group the socket is mode 0660 and owned by that group, else 0600.
    pub socket_group: Option<String>,
    /// Optional TCP listener; always has `token_file`.
    pub tcp: Option<SocketAddr>,
    /// File holding the bearer token TCP clients must present (required with `tcp`).
    pub token_file: Option<PathBuf>,
}

/// `[smtp]`: the mail relay.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults by `tls`: 25 (none), 587 (starttls), 465 (tls).
    pub port: u16,
    pub tls: SmtpTls,
    /// `username` and `password` (both or neither).
    pub credentials: Option<SmtpCredentials>,
    /// The From of every mail pgmaint sends.
    pub from: Mailbox,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (a local relay).
    None,
    /// Plain connection upgraded with STARTTLS (required, not opportunistic).
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// SMTP login; `Debug` does not print the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    pub username: String,
    pub password: String,
}

/// `[notify]`
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// Reminders this long before a maintenance; longest first, distinct, never zero.
    pub lead_times: Vec<Duration>,
    /// Where the file transport writes mail when there is no `[smtp]` (default `DATA_DIR/mail`).
    pub mail_dir: PathBuf,
    /// Every event is also POSTed as JSON to each of these (default none).
    pub webhooks: Vec<WebhookUrl>,
}

/// `[endpoint]`: PgBouncer, the endpoint clients connect to.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// TCP addresses clients connect to, all on one port (which also names
    /// the Unix socket, `.s.PGSQL.<port>`); the first is the host in URLs.
    pub listen: Vec<SocketAddr>,
    /// TLS for clients, when `tls_cert_file` and `tls_key_file` are set.
    pub tls: Option<crate::endpoint::ClientTls>,
    /// PgBouncer's `server_login_retry`: short, or one failed login refuses clients that long.
    pub server_login_retry: Duration,
}

/// `[maintenance]`
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceConfig {
    /// Every database gets a maintenance at least this often.
    pub periodic_interval: Duration,
    /// How long a retired server is kept stopped before it is removed.
    pub retire_grace: Duration,
    /// The window of a database that has none, e.g. `Sunday 02:00 UTC`: as
    /// written (spaces collapsed), and known to parse as a [`crate::schedule::Window`].
    pub default_window: String,
}

/// `[hooks]`: commands run with `sh -c` on the daemon's host around every
/// maintenance, with `PGMAINT_DATABASE`, `PGMAINT_MAINTENANCE_ID`,
/// `PGMAINT_REASON`, `PGMAINT_STRATEGY` and `PGMAINT_ROLLOUT` set.
#[derive(Debug, Clone, PartialEq)]
pub struct HooksConfig {
    /// A non-zero exit fails the maintenance before anything is touched.
    pub before_maintenance: Option<String>,
    /// A non-zero exit marks the completed maintenance's check as failed.
    pub after_maintenance: Option<String>,
    /// A hook still running after this long is killed and counts as failed.
    pub hook_timeout: Duration,
}

/// `[patroni]`: how pgmaint reaches the Patroni clusters it adopts.
#[derive(Debug, Clone, PartialEq)]
pub struct PatroniConfig {
    /// The role pgmaint logs in as on adopted clusters' servers (CHECKPOINT,
    /// WAL positions, and PgBouncer's `auth_query` for clients' own roles).
    pub pg_user: String,
    /// The file holding that role's password (read when the daemon starts).
    pub pg_password_file: Option<PathBuf>,
    /// Patroni REST API basic auth: `rest_user` with the password in `rest_password_file`.
    pub rest_user: Option<String>,
    pub rest_password_file: Option<PathBuf>,
    /// The CA that signs the REST API's certificate (https URLs).
    pub rest_ca_file: Option<PathBuf>,
    /// Run with `sh -c` on each member for `os-patch` and `minor-upgrade`.
    pub host_hook: Option<String>,
    /// A replica counts as caught up with at most this many bytes of lag.
    pub max_lag: u64,
    /// How long a member may take to be healthy again after a restart or the hook.
    pub member_timeout: Duration,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig { before_maintenance: None, after_maintenance: None, hook_timeout: Duration::from_secs(600) }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::with_data_dir(DEFAULT_DATA_DIR)
    }
}

impl Config {
    /// All defaults, with everything that lives under the data directory (the
    /// embedded state cluster, the API socket, the mail directory) under `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        let data_dir = data_dir.into();
        Config {
            state: StateLocation::Embedded { dir: data_dir.join("state") },
            api: ApiConfig { socket: data_dir.join("pgmaint.sock"), socket_group: None, tcp: None, token_file: None },
            smtp: None,
            notify: NotifyConfig {
                lead_times: vec![Duration::from_secs(7 * DAY), Duration::from_secs(DAY)],
                mail_dir: data_dir.join("mail"),
                webhooks: Vec::new(),
            },
            endpoint: EndpointConfig {
                listen: vec![SocketAddr::from(([127, 0, 0, 1], crate::endpoint::DEFAULT_PORT))],
                tls: None,
                server_login_retry: Duration::from_millis(100),
            },
            maintenance: MaintenanceConfig {
                periodic_interval: Duration::from_secs(90 * DAY),
                retire_grace: Duration::from_secs(DAY),
                default_window: "Sunday 02:00 UTC".to_string(),
            },
            hooks: HooksConfig::default(),
            patroni: None,
            daemon: DaemonConfig {
                data_dir,
                tick: Duration::from_secs(10),
                node_name: None,
                lease: Duration::from_secs(30),
            },
        }
    }

    /// Reads, parses and validates the file at `path`; errors name the path as given.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        Config::load_with(Some(path.as_ref()), &Overrides::default())
    }

    /// The file at `path` (or, without one, the defaults) with the command
    /// line's overrides applied before anything is derived from them: a
    /// `--data-dir` moves the API socket, the mail folder and the embedded
    /// state store unless the file places them itself.
    pub fn load_with(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let Some(path) = path else { return Loader { file: "(defaults)", text: "", overrides }.parse() };
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: name.clone(), source })?;
        Loader { file: &name, text: &text, overrides }.parse()
    }

    /// Parses and validates `text`; `name` is the file name errors mention.
    pub fn from_str_named(text: &str, name: &str) -> Result<Config, ConfigError> {
        Loader { file: name, text, overrides: &Overrides::default() }.parse()
    }

    /// The From of the mails pgmaint sends: `[smtp] from`, or `pgmaint@localhost`
    /// for the file transport.
    pub fn mail_from(&self) -> Mailbox {
        match &self.smtp {
            Some(smtp) => smtp.from.clone(),
            None => "pgmaint@localhost".parse().expect("a valid address"),
        }
    }
}

/// Settings given on the daemon's command line; each wins over the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--data-dir`: `[daemon] data_dir`, and what is derived from it.
    pub data_dir: Option<PathBuf>,
    /// `--state-url`: `[state] url`.
    pub state_url: Option<String>,
    /// `--node`: `[daemon] node_name`.
    pub node_name: Option<String>,
}

impl Loader<'_> {
    /// The sections in order (the first error found is the one reported), each
    /// converted by its family's file; what lives under the data directory
    /// defaults to a place under the one the file or the command line chose.
    pub(super) fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let raw_daemon = Section::or_default(raw.daemon);
        let daemon = self.daemon(&raw_daemon)?;
        let defaults = Config::with_data_dir(daemon.data_dir.clone());
        let state = self.state(&Section::or_default(raw.state), defaults.state)?;
        let api = self.api(&Section::or_default(raw.api), &raw_daemon, defaults.api)?;
        let smtp = raw.smtp.map(|Section(smtp)| self.smtp(&smtp)).transpose()?;
        let notify = self.notify(&Section::or_default(raw.notify), defaults.notify)?;
        let endpoint = self.endpoint(&Section::or_default(raw.endpoint), defaults.endpoint)?;
        let maintenance = self.maintenance(&Section::or_default(raw.maintenance), defaults.maintenance)?;
        let hooks = self.hooks(&Section::or_default(raw.hooks), defaults.hooks)?;
        let patroni = raw.patroni.map(|Section(patroni)| self.patroni(&patroni)).transpose()?;
        Ok(Config { daemon, state, api, smtp, notify, endpoint, maintenance, hooks, patroni })
    }
}

impl DaemonConfig {
    /// The configured `node_name`, else the host name. A daemon restarted under
    /// the same name takes its own claims back at once (no lease to wait out),
    /// so two daemons on one host must be given distinct names.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(daemon::hostname)
    }
}

impl StateLocation {
    /// What to show an operator: the embedded directory, or the URL with its password masked.
    pub fn describe(&self) -> String {
        match self {
            StateLocation::Embedded { dir } => format!("embedded ({})", dir.display()),
            StateLocation::External { url } => mask_password(url),
        }
    }
}

impl fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateLocation::Embedded { dir } => f.debug_struct("Embedded").field("dir", dir).finish(),
            StateLocation::External { url } => f.debug_struct("External").field("url", &mask_password(url)).finish(),
        }
    }
}

impl fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpCredentials").field("username", &self.username).field("password", &"***").finish()
    }
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
        }
    }

    /// The port used when `[smtp] port` is not set.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

impl fmt::Display for SmtpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to call in the tests of every section file: parse a text named
/// `test.toml`, and check where and why it was refused.
#[cfg(test)]
mod test_support {
    use super::{Config, ConfigError};

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str_named(text, "test.toml")
    }

    pub fn error(text: &str) -> ConfigError {
        match parse(text) {
            Ok(config) => panic!("accepted:\n{text}\nas {config:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the error is at `line`, about `key`, and that its message says so.
    pub fn assert_error(text: &str, line: usize, key: &str, words: &str) {
        let e = error(text);
        let shown = e.to_string();
        assert_eq!(e.file(), "test.toml", "{shown}");
        assert_eq!(e.line(), Some(line), "{shown}");
        assert_eq!(e.key().as_deref(), Some(key), "{shown}");
        assert!(shown.starts_with(&format!("test.toml:{line}: ")), "{shown}");
        let last = key.rsplit('.').next().unwrap();
        assert!(shown.contains(&format!("\"{last}\"")) || shown.contains(&format!("[{last}]")), "{shown}");
        assert!(shown.contains(words), "expected {words:?} in: {shown}");
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::parse;
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.daemon.data_dir, PathBuf::from("/var/lib/pgmaint"));
        assert_eq!(config.daemon.tick, Duration::from_secs(10));
        assert_eq!(config.daemon.lease, Duration::from_secs(30));
        assert_eq!(config.daemon.node_name, None);
        assert_eq!(config.daemon.node_name(), daemon::hostname(), "the default node name is the host name");
        assert_eq!(config.state, StateLocation::Embedded { dir: "/var/lib/pgmaint/state".into() });
        assert_eq!(config.api.socket, PathBuf::from("/var/lib/pgmaint/pgmaint.sock"));
        assert_eq!(config.api.socket_group, None);
        assert_eq!(config.api.tcp, None);
        assert_eq!(config.smtp, None);
        assert_eq!(config.notify.lead_times, vec![Duration::from_secs(7 * DAY), Duration::from_secs(DAY)]);
        assert_eq!(config.notify.mail_dir, PathBuf::from("/var/lib/pgmaint/mail"));
        assert_eq!(config.endpoint.listen, ["127.0.0.1:6432".parse().unwrap()]);
        assert_eq!(config.endpoint.tls, None);
        assert_eq!(config.endpoint.server_login_retry, Duration::from_millis(100));
        assert_eq!(config.maintenance.periodic_interval, Duration::from_secs(90 * DAY));
        assert_eq!(config.maintenance.retire_grace, Duration::from_secs(DAY));
        assert_eq!(config.maintenance.default_window, "Sunday 02:00 UTC");
        assert_eq!(config.mail_from().to_string(), "pgmaint@localhost");
    }

    #[test]
    fn data_dir_moves_what_lives_under_it() {
        let config = parse("[daemon]\ndata_dir = \"/srv/pgm\"\n").unwrap();
        assert_eq!(config, Config::with_data_dir("/srv/pgm"));
        assert_eq!(config.state, StateLocation::Embedded { dir: "/srv/pgm/state".into() });
        assert_eq!(config.api.socket, PathBuf::from("/srv/pgm/pgmaint.sock"));
        assert_eq!(config.notify.mail_dir, PathBuf::from("/srv/pgm/mail"));
    }

    fn load_overridden(text: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgmaint.toml");
        std::fs::write(&file, text).unwrap();
        Config::load_with(Some(&file), overrides)
    }

    fn data_dir_override(dir: &str) -> Overrides {
        Overrides { data_dir: Some(dir.into()), ..Overrides::default() }
    }

    #[test]
    fn a_data_dir_override_moves_every_derived_path() {
        // The file names another data directory and leaves the derived paths to it.
        let config = load_overridden("[daemon]\ndata_dir = \"/srv/file\"\ntick = \"2s\"\n", &data_dir_override("/srv/flag")).unwrap();
        assert_eq!(config.daemon.data_dir, PathBuf::from("/srv/flag"));
        assert_eq!(config.api.socket, PathBuf::from("/srv/flag/pgmaint.sock"));
        assert_eq!(config.notify.mail_dir, PathBuf::from("/srv/flag/mail"));
        assert_eq!(config.state, StateLocation::Embedded { dir: "/srv/flag/state".into() });
        assert_eq!(config.daemon.tick, Duration::from_secs(2), "the rest of the file still applies");
        // Without a file: the defaults under the overriding directory.
        assert_eq!(Config::load_with(None, &data_dir_override("/srv/flag")).unwrap(), Config::with_data_dir("/srv/flag"));
    }

    #[test]
    fn paths_the_file_sets_itself_stay_where_it_put_them() {
        let text = "[api]\nsocket = \"/run/pgmaint/api.sock\"\n[notify]\nmail_dir = \"/srv/mail\"\n[state]\nurl = \"postgresql://pgmaint@db.example/pgmaint\"\n";
        let config = load_overridden(text, &data_dir_override("/srv/flag")).unwrap();
        assert_eq!(config.api.socket, PathBuf::from("/run/pgmaint/api.sock"));
        assert_eq!(config.notify.mail_dir, PathBuf::from("/srv/mail"));
        assert!(matches!(config.state, StateLocation::External { .. }));
    }

    #[test]
    fn state_url_and_node_overrides_win_and_are_checked() {
        let overrides = Overrides {
            state_url: Some("postgresql://pgmaint@other/state".into()),
            node_name: Some("node-b".into()),
            ..Overrides::default()
        };
        let config = load_overridden("[daemon]\nnode_name = \"node-a\"\n", &overrides).unwrap();
        assert_eq!(config.state, StateLocation::External { url: "postgresql://pgmaint@other/state".into() });
        assert_eq!(config.daemon.node_name(), "node-b");

        let bad_url = Overrides { state_url: Some("mysql://x".into()), ..Overrides::default() };
        let error = Config::load_with(None, &bad_url).unwrap_err();
        assert!(error.to_string().starts_with("--state-url: not a PostgreSQL URL"), "{error}");
        let bad_node = Overrides { node_name: Some("two words".into()), ..Overrides::default() };
        assert!(Config::load_with(None, &bad_node).unwrap_err().to_string().starts_with("--node: "));
        let long = "x".repeat(120);
        let error = Config::load_with(None, &data_dir_override(&format!("/{long}"))).unwrap_err();
        assert!(error.to_string().starts_with("--data-dir: the API socket path"), "{error}");
    }

    #[test]
    fn full_file_is_typed() {
        let config = parse(
            r#"
[daemon]
data_dir = "/srv/pgmaint"
tick = "5s"
node_name = "db-host-1"
lease = "1m"

[state]
url = "postgresql://pgmaint:s3cret@state.example.com:5432/pgmaint?sslmode=require"

[api]
socket = "/run/pgmaint/pgmaint.sock"
socket_group = "pgmaint"
tcp = "127.0.0.1:7070"
token_file = "/etc/pgmaint/token"

[smtp]
host = "smtp.example.com"
tls = "starttls"
username = "pgmaint"
password = "hunter2"
from = "Maintenance <pgmaint@example.com>"

[notify]
lead_times = ["24h", "7d", "1h30m"]
mail_dir = "/srv/mail"

[endpoint]
listen = ["0.0.0.0:6543"]
server_login_retry = "250ms"

[maintenance]
periodic_interval = "30d"
retire_grace = "0s"
default_window = "tuesdays  14:30   Asia/Tokyo"
"#,
        )
        .unwrap();
        assert_eq!(config.daemon.node_name(), "db-host-1");
        assert_eq!(config.daemon.lease, Duration::from_secs(60));
        let StateLocation::External { url } = &config.state else { panic!("{:?}", config.state) };
        assert!(url.contains("s3cret"));
        assert_eq!(config.state.describe(), "postgresql://pgmaint:***@state.example.com:5432/pgmaint?sslmode=require");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.api.tcp, Some("127.0.0.1:7070".parse().unwrap()));
        let smtp = config.smtp.as_ref().unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port, smtp.tls), ("smtp.example.com", 587, SmtpTls::StartTls));
        assert_eq!(smtp.credentials.as_ref().unwrap().password, "hunter2");
        assert_eq!(smtp.from.email.to_string(), "pgmaint@example.com");
        assert_eq!(
            config.notify.lead_times,
            vec![Duration::from_secs(7 * DAY), Duration::from_secs(DAY), Duration::from_secs(5400)]
        );
        assert_eq!(config.endpoint.listen, ["0.0.0.0:6543".parse().unwrap()]);
        assert_eq!(config.endpoint.server_login_retry, Duration::from_millis(250));
        assert_eq!(config.maintenance.retire_grace, Duration::ZERO);
        assert_eq!(config.maintenance.default_window, "tuesdays 14:30 Asia/Tokyo");
    }
}
