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
//! How it works: the file is first deserialized into `Raw*` structs
//! (`#[serde(deny_unknown_fields)]` on every table) whose leaves are
//! `toml::Spanned<toml::Value>`, so serde rejects unknown keys with their
//! position, and every later complaint about a value knows its section, its key
//! and its line exactly, however the TOML was written (`[smtp]` table, dotted
//! `smtp.host = ...` keys or an inline table). The raw values are then converted
//! into the typed [`Config`] and checked.
//!
//! Relative paths are kept as written, that is relative to the daemon's working
//! directory (`/` under systemd): use absolute paths in production.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;
use serde::Deserialize;
use toml::{Spanned, Value};

/// Default data directory: instances, PgBouncer and the embedded state cluster live under it.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/pgmaint";

/// Longest path a Unix socket can be bound to (`sun_path` is 108 bytes with its NUL).
const MAX_UNIX_SOCKET_PATH: usize = 107;

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
}

/// `[endpoint]`: PgBouncer, the endpoint clients connect to.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointConfig {
    /// PgBouncer's port number (the suffix of its Unix socket, and its TCP port).
    pub port: u16,
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
    /// The window of a database that has none, e.g. `Sunday 02:00 UTC`. Its shape is
    /// checked here; the schedule module parses it.
    pub default_window: String,
}

/// Why a configuration was refused. `Display` gives `FILE:LINE: what, where`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the configuration: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:{line}: TOML syntax error: {message}")]
    Syntax { file: String, line: usize, message: String },
    #[error("{file}:{line}: unknown section [{name}] (expected one of {})", .expected.join(", "))]
    UnknownSection { file: String, line: usize, name: String, expected: Vec<String> },
    #[error("{file}:{line}: unknown key \"{key}\" {} (expected one of {})", place(.section), .expected.join(", "))]
    UnknownKey { file: String, line: usize, section: Option<String>, key: String, expected: Vec<String> },
    #[error("{file}:{line}: bad value for \"{key}\" {}: {problem}", place(.section))]
    Invalid { file: String, line: usize, section: Option<String>, key: String, problem: String },
    /// A key a section cannot do without; the line is the section's.
    #[error("{file}:{line}: missing key \"{key}\" in [{section}]: {problem}")]
    Missing { file: String, line: usize, section: String, key: String, problem: String },
    /// A command-line override that is not valid (`--state-url`, `--node`, `--data-dir`).
    #[error("{flag}: {problem}")]
    Flag { flag: &'static str, problem: String },
}

fn place(section: &Option<String>) -> String {
    match section {
        Some(section) => format!("in [{section}]"),
        None => "at the top level".to_string(),
    }
}

impl ConfigError {
    /// The file the error is about, as it was named.
    pub fn file(&self) -> &str {
        match self {
            ConfigError::Read { file, .. }
            | ConfigError::Syntax { file, .. }
            | ConfigError::UnknownSection { file, .. }
            | ConfigError::UnknownKey { file, .. }
            | ConfigError::Invalid { file, .. }
            | ConfigError::Missing { file, .. } => file,
            ConfigError::Flag { flag, .. } => flag,
        }
    }

    /// The 1-based line, for errors about the content.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } | ConfigError::Flag { .. } => None,
            ConfigError::Syntax { line, .. }
            | ConfigError::UnknownSection { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::Invalid { line, .. }
            | ConfigError::Missing { line, .. } => Some(*line),
        }
    }

    /// The dotted key at fault (`smtp.hots`, `daemon.tick`, `smpt`), if any.
    pub fn key(&self) -> Option<String> {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } | ConfigError::Flag { .. } => None,
            ConfigError::UnknownSection { name, .. } => Some(name.clone()),
            ConfigError::UnknownKey { section, key, .. } | ConfigError::Invalid { section, key, .. } => {
                Some(match section {
                    Some(section) => format!("{section}.{key}"),
                    None => key.clone(),
                })
            }
            ConfigError::Missing { section, key, .. } => Some(format!("{section}.{key}")),
        }
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
            },
            endpoint: EndpointConfig { port: 6432, server_login_retry: Duration::from_millis(100) },
            maintenance: MaintenanceConfig {
                periodic_interval: Duration::from_secs(90 * DAY),
                retire_grace: Duration::from_secs(DAY),
                default_window: "Sunday 02:00 UTC".to_string(),
            },
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

impl DaemonConfig {
    /// The configured `node_name`, else the host name. A daemon restarted under
    /// the same name takes its own claims back at once (no lease to wait out),
    /// so two daemons on one host must be given distinct names.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(hostname)
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

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
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

// ---------------------------------------------------------------------------
// Durations: `100ms`, `10s`, `5m`, `24h`, `7d`, `2w`, `1h30m`.

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;

/// Units from the largest down, in milliseconds.
const DURATION_UNITS: &[(&str, u64)] =
    &[("w", WEEK * 1000), ("d", DAY * 1000), ("h", HOUR * 1000), ("m", MINUTE * 1000), ("s", 1000), ("ms", 1)];

/// Parses a config duration: one or more `<integer><unit>` parts, units `ms`, `s`,
/// `m`, `h`, `d` and `w`, largest first, each at most once (`1h30m`, `90d`).
/// Private to the configuration: the schedule module has its own parser.
fn parse_config_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration (write e.g. \"10s\", \"24h\" or \"1h30m\")".to_string());
    }
    let mut rest = s;
    let mut total_ms: u64 = 0;
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("\"{s}\" is not a duration (write e.g. \"10s\", \"24h\" or \"1h30m\")"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| format!("\"{s}\" is too long a duration"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        if unit.is_empty() {
            return Err(if rest.starts_with('.') {
                format!("\"{s}\": fractions are not supported (write e.g. \"1h30m\" or \"1500ms\")")
            } else {
                format!("\"{s}\" has no unit (add one of ms, s, m, h, d, w: e.g. \"{number}s\")")
            });
        }
        let Some(index) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!("\"{s}\": unknown unit \"{unit}\" (use ms, s, m, h, d or w)"));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(format!("\"{s}\": write each unit once, largest first (e.g. \"1h30m\")"));
        }
        last_unit = Some(index);
        total_ms = number
            .checked_mul(DURATION_UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| format!("\"{s}\" is too long a duration"))?;
        rest = rest[unit_len..].trim_start();
    }
    Ok(Duration::from_millis(total_ms))
}

/// Formats a duration the way the configuration writes them: `90d`, `1h30m`, `100ms`, `0s`.
pub fn format_config_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    // Weeks are left out on purpose ("14d" reads better than "2w"), and days are
    // only used from two days on ("24h", "36h", "7d").
    for (name, unit) in DURATION_UNITS.iter().skip(1) {
        let unit = u128::from(*unit);
        if *name == "d" && ms < 2 * unit {
            continue;
        }
        if ms >= unit {
            out.push_str(&format!("{}{name}", ms / unit));
            ms %= unit;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The raw file: every table refuses unknown keys; every leaf keeps its position.

type Raw = Option<Spanned<Value>>;

/// The sections, and the keys of each, in the order the documentation lists them.
/// Used to say which section an unknown key was found in; a test checks they
/// match the `Raw*` structs.
const SCHEMA: &[(&str, &[&str])] = &[
    ("daemon", &["data_dir", "tick", "node_name", "lease"]),
    ("state", &["url"]),
    ("api", &["socket", "socket_group", "tcp", "token_file"]),
    ("smtp", &["host", "port", "tls", "username", "password", "from"]),
    ("notify", &["lead_times", "mail_dir"]),
    ("endpoint", &["port", "server_login_retry"]),
    ("maintenance", &["periodic_interval", "retire_grace", "default_window"]),
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
struct RawConfig {
    daemon: Option<Section<RawDaemon>>,
    state: Option<Section<RawState>>,
    api: Option<Section<RawApi>>,
    smtp: Option<Section<RawSmtp>>,
    notify: Option<Section<RawNotify>>,
    endpoint: Option<Section<RawEndpoint>>,
    maintenance: Option<Section<RawMaintenance>>,
}

/// A section: a table and nothing else. (A derived struct alone would also take
/// an array, `[[daemon]]`, filling its fields by position.)
struct Section<T>(T);

impl<T: Default> Section<T> {
    fn or_default(section: Option<Section<T>>) -> T {
        section.map(|Section(t)| t).unwrap_or_default()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Section<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableOnly<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for TableOnly<T> {
            type Value = Section<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Section<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Section)
            }
        }
        deserializer.deserialize_map(TableOnly(std::marker::PhantomData))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
struct RawDaemon {
    data_dir: Raw,
    tick: Raw,
    node_name: Raw,
    lease: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
struct RawState {
    url: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
struct RawApi {
    socket: Raw,
    socket_group: Raw,
    tcp: Raw,
    token_file: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
struct RawSmtp {
    host: Raw,
    port: Raw,
    tls: Raw,
    username: Raw,
    password: Raw,
    from: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
struct RawNotify {
    lead_times: Raw,
    mail_dir: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
struct RawEndpoint {
    port: Raw,
    server_login_retry: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
struct RawMaintenance {
    periodic_interval: Raw,
    retire_grace: Raw,
    default_window: Raw,
}

/// The file being loaded: its name and text, to turn byte offsets into lines.
struct Loader<'a> {
    file: &'a str,
    text: &'a str,
    overrides: &'a Overrides,
}

/// One key that is present in the file.
struct Field<'a> {
    section: &'static str,
    key: &'static str,
    value: &'a Spanned<Value>,
}

fn field<'a>(section: &'static str, key: &'static str, raw: &'a Raw) -> Option<Field<'a>> {
    raw.as_ref().map(|value| Field { section, key, value })
}

/// Converts a field that may be absent.
fn convert<'a, T>(
    field: &Option<Field<'a>>,
    loader: &Loader<'_>,
    f: impl FnOnce(&Field<'a>, &Loader<'_>) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    field.as_ref().map(|field| f(field, loader)).transpose()
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("string \"{s}\""),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(x) => format!("float {x}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

impl<'a> Field<'a> {
    fn invalid(&self, loader: &Loader<'_>, problem: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            file: loader.file.to_string(),
            line: loader.line_of(self.value.span()),
            section: Some(self.section.to_string()),
            key: self.key.to_string(),
            problem: problem.to_string(),
        }
    }

    fn str(&self, loader: &Loader<'_>, what: &str) -> Result<&'a str, ConfigError> {
        match self.value.get_ref() {
            Value::String(s) if s.trim().is_empty() => {
                Err(self.invalid(loader, format!("expected {what}, found an empty string")))
            }
            Value::String(s) => Ok(s),
            other => Err(self.invalid(loader, format!("expected {what}, found {}", describe(other)))),
        }
    }

    fn string(&self, loader: &Loader<'_>, what: &str) -> Result<String, ConfigError> {
        self.str(loader, what).map(str::to_string)
    }

    fn path(&self, loader: &Loader<'_>) -> Result<PathBuf, ConfigError> {
        let s = self.str(loader, "a path")?;
        if s.contains('\0') {
            return Err(self.invalid(loader, "a path cannot contain a NUL character"));
        }
        Ok(PathBuf::from(s))
    }

    fn duration(&self, loader: &Loader<'_>) -> Result<Duration, ConfigError> {
        let s = self.str(loader, "a duration such as \"10s\", \"24h\" or \"1h30m\"")?;
        parse_config_duration(s).map_err(|problem| self.invalid(loader, problem))
    }

    fn positive_duration(&self, loader: &Loader<'_>) -> Result<Duration, ConfigError> {
        let duration = self.duration(loader)?;
        if duration.is_zero() {
            return Err(self.invalid(loader, "must be longer than zero"));
        }
        Ok(duration)
    }

    fn port(&self, loader: &Loader<'_>) -> Result<u16, ConfigError> {
        match self.value.get_ref() {
            Value::Integer(i) if (1..=65535).contains(i) => Ok(*i as u16),
            Value::Integer(i) => Err(self.invalid(loader, format!("{i} is not a port number (1 to 65535)"))),
            other => Err(self.invalid(loader, format!("expected a port number, found {}", describe(other)))),
        }
    }
}

impl Loader<'_> {
    fn line_of(&self, span: Range<usize>) -> usize {
        let at = span.start.min(self.text.len());
        self.text.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1
    }

    /// `at`, within the text and on a character boundary (spans come from the parser,
    /// but a wrong one must not make a panic out of a configuration error).
    fn clamp(&self, at: usize) -> usize {
        let mut at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    /// The text of the line holding byte `at`, and where that line starts.
    fn line_text(&self, at: usize) -> (&str, usize) {
        let at = self.clamp(at);
        let start = self.text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = self.text[at..].find('\n').map_or(self.text.len(), |i| at + i);
        (&self.text[start..end], start)
    }

    /// Turns a serde/TOML error (syntax, unknown key, a section that is not a
    /// table) into a [`ConfigError`] with its line.
    fn parse_error(&self, error: &toml::de::Error) -> ConfigError {
        let file = self.file.to_string();
        let line = error.span().map_or(1, |span| self.line_of(span));
        let message = error.message().trim();
        if message.starts_with("unknown field `") {
            let names = backquoted(message);
            let key = names.first().cloned().unwrap_or_default();
            let expected: Vec<String> = names.into_iter().skip(1).collect();
            let top_level: Vec<&str> = SCHEMA.iter().map(|(section, _)| *section).collect();
            if same_names(&expected, &top_level) {
                let header =
                    error.span().is_some_and(|span| self.line_text(span.start).0.trim_start().starts_with('['));
                if header {
                    return ConfigError::UnknownSection { file, line, name: key, expected };
                }
                return ConfigError::UnknownKey { file, line, section: None, key, expected };
            }
            let section =
                SCHEMA.iter().find(|(_, keys)| same_names(&expected, keys)).map(|(section, _)| section.to_string());
            return ConfigError::UnknownKey { file, line, section, key, expected };
        }
        if let Some(span) = error.span().filter(|_| message.starts_with("invalid type: ")) {
            if message.ends_with("expected a table") {
                // A section that is not a table: `daemon = 5`, `[[daemon]]`.
                let key = self.key_before(span.start).unwrap_or_else(|| "?".to_string());
                let found = message["invalid type: ".len()..].split(", expected").next().unwrap_or_default();
                let problem = format!("expected a table ([{key}]), found {found}");
                return ConfigError::Invalid { file, line, section: None, key, problem };
            }
            // Values are not typed at this stage, so this is a table where a value belongs,
            // made by dotted keys (`tls.x = 1` in [smtp]): name it by its full path.
            let (line_text, _) = self.line_text(span.start);
            let mut path = self.header_before(span.start);
            path.extend(leading_key(line_text));
            if path.len() >= 2 {
                let problem = format!("expected a value, found a table ({})", path.join("."));
                return ConfigError::Invalid {
                    file,
                    line,
                    section: Some(path[0].clone()),
                    key: path[1].clone(),
                    problem,
                };
            }
        }
        let message = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        ConfigError::Syntax { file, line, message }
    }

    /// The key whose value starts at byte `at` (`key = value`), or the name in a
    /// `[header]` / `[[header]]` on that line.
    fn key_before(&self, at: usize) -> Option<String> {
        let at = self.clamp(at);
        let (line, start) = self.line_text(at);
        let before = line[..at - start].trim_end();
        if let Some(before) = before.strip_suffix('=') {
            let before = before.trim_end();
            let key_start = before.rfind(|c: char| c.is_whitespace() || c == '{' || c == ',').map_or(0, |i| i + 1);
            return Some(before[key_start..].trim_matches('"').to_string());
        }
        let header = line.trim().trim_start_matches('[').split(']').next()?.trim();
        (!header.is_empty()).then(|| header.to_string())
    }

    /// The dotted name of the last `[header]` before byte `at` (empty at the top level).
    fn header_before(&self, at: usize) -> Vec<String> {
        self.text[..self.clamp(at)]
            .lines()
            .rev()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .find(|line| line.starts_with('[') && line.ends_with(']') && !line.starts_with("[["))
            .map(|header| split_dotted(&header[1..header.len() - 1]))
            .unwrap_or_default()
    }

    fn parse(&self) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(self.text).map_err(|e| self.parse_error(&e))?;
        self.build(raw)
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let defaults = Config::default();

        // [daemon]
        let d = &Section::or_default(raw.daemon);
        let data_dir_field = field("daemon", "data_dir", &d.data_dir);
        let tick_field = field("daemon", "tick", &d.tick);
        let lease_field = field("daemon", "lease", &d.lease);
        let node_field = field("daemon", "node_name", &d.node_name);
        let data_dir = match &self.overrides.data_dir {
            Some(dir) => dir.clone(),
            None => convert(&data_dir_field, self, Field::path)?.unwrap_or(defaults.daemon.data_dir),
        };
        let tick = convert(&tick_field, self, Field::positive_duration)?.unwrap_or(defaults.daemon.tick);
        let lease = convert(&lease_field, self, Field::positive_duration)?.unwrap_or(defaults.daemon.lease);
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
                    format_config_duration(lease),
                    format_config_duration(tick)
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

        // [state]
        let raw_state = Section::or_default(raw.state);
        let state_url = match &self.overrides.state_url {
            Some(url) => {
                check_state_url(url).map_err(|problem| ConfigError::Flag { flag: "--state-url", problem })?;
                Some(url.clone())
            }
            None => convert(&field("state", "url", &raw_state.url), self, |f, ld| {
                let url = f.string(ld, "a postgresql:// URL")?;
                check_state_url(&url).map_err(|problem| f.invalid(ld, problem))?;
                Ok(url)
            })?,
        };
        let state = match state_url {
            Some(url) => StateLocation::External { url },
            None => StateLocation::Embedded { dir: data_dir.join("state") },
        };

        // [api]
        let a = &Section::or_default(raw.api);
        let socket_field = field("api", "socket", &a.socket);
        let tcp_field = field("api", "tcp", &a.tcp);
        let socket = convert(&socket_field, self, Field::path)?.unwrap_or_else(|| data_dir.join("pgmaint.sock"));
        if socket.as_os_str().len() > MAX_UNIX_SOCKET_PATH {
            let problem = format!(
                "the API socket path {} is {} bytes long; Unix sockets allow at most {MAX_UNIX_SOCKET_PATH}",
                socket.display(),
                socket.as_os_str().len()
            );
            return Err(match (&socket_field, &self.overrides.data_dir, &data_dir_field) {
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

        // [smtp]
        let smtp = match raw.smtp {
            None => None,
            Some(Section(s)) => Some(self.smtp(&s)?),
        };

        // [notify]
        let n = &Section::or_default(raw.notify);
        let lead_times = convert(&field("notify", "lead_times", &n.lead_times), self, |f, ld| {
            let Value::Array(items) = f.value.get_ref() else {
                return Err(f.invalid(
                    ld,
                    format!(
                        "expected a list of durations such as [\"7d\", \"24h\"], found {}",
                        describe(f.value.get_ref())
                    ),
                ));
            };
            if items.is_empty() {
                return Err(f.invalid(ld, "needs at least one lead time, e.g. [\"7d\", \"24h\"]"));
            }
            let mut lead_times = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Value::String(s) = item else {
                    return Err(
                        f.invalid(ld, format!("item {}: expected a duration string, found {}", i + 1, describe(item)))
                    );
                };
                let lead =
                    parse_config_duration(s).map_err(|problem| f.invalid(ld, format!("item {}: {problem}", i + 1)))?;
                if lead.is_zero() {
                    return Err(f.invalid(ld, format!("item {}: a lead time must be longer than zero", i + 1)));
                }
                if lead_times.contains(&lead) {
                    return Err(
                        f.invalid(ld, format!("item {}: {} is listed twice", i + 1, format_config_duration(lead)))
                    );
                }
                lead_times.push(lead);
            }
            lead_times.sort_by(|a, b| b.cmp(a));
            Ok(lead_times)
        })?
        .unwrap_or(defaults.notify.lead_times);
        let mail_dir = convert(&field("notify", "mail_dir", &n.mail_dir), self, Field::path)?
            .unwrap_or_else(|| data_dir.join("mail"));

        // [endpoint]
        let e = &Section::or_default(raw.endpoint);
        let endpoint = EndpointConfig {
            port: convert(&field("endpoint", "port", &e.port), self, Field::port)?.unwrap_or(defaults.endpoint.port),
            server_login_retry: convert(
                &field("endpoint", "server_login_retry", &e.server_login_retry),
                self,
                Field::positive_duration,
            )?
            .unwrap_or(defaults.endpoint.server_login_retry),
        };

        // [maintenance]
        let m = &Section::or_default(raw.maintenance);
        let maintenance = MaintenanceConfig {
            periodic_interval: convert(
                &field("maintenance", "periodic_interval", &m.periodic_interval),
                self,
                Field::positive_duration,
            )?
            .unwrap_or(defaults.maintenance.periodic_interval),
            retire_grace: convert(&field("maintenance", "retire_grace", &m.retire_grace), self, Field::duration)?
                .unwrap_or(defaults.maintenance.retire_grace),
            default_window: convert(&field("maintenance", "default_window", &m.default_window), self, |f, ld| {
                let window = f.string(ld, "a window such as \"Sunday 02:00 UTC\"")?;
                check_window_shape(&window).map_err(|problem| f.invalid(ld, problem))?;
                Ok(window.split_whitespace().collect::<Vec<_>>().join(" "))
            })?
            .unwrap_or(defaults.maintenance.default_window),
        };

        Ok(Config {
            daemon: DaemonConfig { data_dir, tick, node_name, lease },
            state,
            api: ApiConfig { socket, socket_group, tcp, token_file },
            smtp,
            notify: NotifyConfig { lead_times, mail_dir },
            endpoint,
            maintenance,
        })
    }

    fn smtp(&self, s: &RawSmtp) -> Result<SmtpConfig, ConfigError> {
        let tls = convert(&field("smtp", "tls", &s.tls), self, |f, ld| {
            match f.str(ld, "one of \"none\", \"starttls\", \"tls\"")?.to_ascii_lowercase().as_str() {
                "none" => Ok(SmtpTls::None),
                "starttls" => Ok(SmtpTls::StartTls),
                "tls" => Ok(SmtpTls::Tls),
                other => Err(f.invalid(ld, format!("\"{other}\" is not one of \"none\", \"starttls\", \"tls\""))),
            }
        })?
        .unwrap_or(SmtpTls::None);
        let host = convert(&field("smtp", "host", &s.host), self, |f, ld| {
            let host = f.string(ld, "a host name or address")?;
            if host.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(f.invalid(ld, format!("\"{host}\" is not a host name or address")));
            }
            Ok(host)
        })?
        .unwrap_or_else(|| "127.0.0.1".to_string());
        let port = convert(&field("smtp", "port", &s.port), self, Field::port)?.unwrap_or(tls.default_port());

        let username_field = field("smtp", "username", &s.username);
        let password_field = field("smtp", "password", &s.password);
        let username = convert(&username_field, self, |f, ld| f.string(ld, "a user name"))?;
        let password = convert(&password_field, self, |f, ld| match f.value.get_ref() {
            // An empty password is a password; only its type is checked.
            Value::String(p) => Ok(p.clone()),
            other => Err(f.invalid(ld, format!("expected a string, found {}", describe(other)))),
        })?;
        let credentials = match (username, password) {
            (Some(username), Some(password)) => Some(SmtpCredentials { username, password }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(username_field
                    .expect("present")
                    .invalid(self, "username needs password (they go together)"))
            }
            (None, Some(_)) => {
                return Err(password_field
                    .expect("present")
                    .invalid(self, "password needs username (they go together)"))
            }
        };

        let from_field = field("smtp", "from", &s.from);
        let from = match &from_field {
            Some(f) => {
                let text = f.str(self, "an address such as \"pgmaint@example.com\"")?;
                if !text.contains('@') {
                    return Err(f.invalid(self, format!("\"{text}\" is not an email address (it has no @)")));
                }
                text.parse::<Mailbox>()
                    .map_err(|e| f.invalid(self, format!("\"{text}\" is not an email address ({e})")))?
            }
            None => {
                return Err(ConfigError::Missing {
                    file: self.file.to_string(),
                    line: self.section_line("smtp", s),
                    section: "smtp".to_string(),
                    key: "from".to_string(),
                    problem: "the From address of the mails, e.g. from = \"pgmaint@example.com\"".to_string(),
                });
            }
        };
        Ok(SmtpConfig { host, port, tls, credentials, from })
    }

    /// The line of `[section]`, else of the first key present in it, else 1.
    fn section_line(&self, section: &str, s: &RawSmtp) -> usize {
        let header = format!("[{section}]");
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            let code = line.split('#').next().unwrap_or("").trim();
            if code == header {
                return self.line_of(offset..offset);
            }
            offset += line.len();
        }
        [&s.host, &s.port, &s.tls, &s.username, &s.password]
            .iter()
            .filter_map(|raw| raw.as_ref().map(|v| self.line_of(v.span())))
            .min()
            .unwrap_or(1)
    }
}

/// The dotted key a `key = value` line starts with, split: `smtp.tls.x = 1` gives smtp, tls, x.
fn leading_key(line: &str) -> Vec<String> {
    match line.split_once('=') {
        Some((key, _)) if !line.trim_start().starts_with('[') => split_dotted(key),
        _ => Vec::new(),
    }
}

/// `a . "b" .c` gives a, b, c (quoted parts holding dots are not supported: not a pgmaint key).
fn split_dotted(key: &str) -> Vec<String> {
    key.split('.').map(|part| part.trim().trim_matches(|c| c == '"' || c == '\'').to_string()).collect()
}

/// The names between backquotes in a serde message (`unknown field `x`, expected `a` or `b``).
fn backquoted(message: &str) -> Vec<String> {
    message.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

fn same_names(found: &[String], expected: &[&str]) -> bool {
    found.len() == expected.len() && expected.iter().all(|name| found.iter().any(|f| f == name))
}

/// Loosely checks the shape `<weekday> <HH:MM> [zone]`; the schedule module parses it for real.
fn check_window_shape(window: &str) -> Result<(), String> {
    let parts: Vec<&str> = window.split_whitespace().collect();
    let example = "write e.g. \"Sunday 02:00\" or \"Sunday 02:00 Europe/Paris\"";
    if !(2..=3).contains(&parts.len()) {
        return Err(format!("\"{window}\" is not <weekday> <HH:MM> [zone]; {example}"));
    }
    const DAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
    let day = parts[0].to_ascii_lowercase();
    let day = day.strip_suffix('s').filter(|d| DAYS.contains(d)).unwrap_or(&day);
    if !DAYS.iter().any(|d| *d == day || (day.len() == 3 && d.starts_with(day))) {
        return Err(format!("\"{}\" is not a weekday; {example}", parts[0]));
    }
    let valid_time = parts[1].split_once(':').is_some_and(|(h, m)| {
        (1..=2).contains(&h.len())
            && m.len() == 2
            && h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
            && h.parse::<u32>().is_ok_and(|h| h < 24)
            && m.parse::<u32>().is_ok_and(|m| m < 60)
    });
    if !valid_time {
        return Err(format!("\"{}\" is not a time of day HH:MM; {example}", parts[1]));
    }
    if let Some(zone) = parts.get(2) {
        if zone.parse::<chrono_tz::Tz>().is_err() {
            return Err(format!("\"{zone}\" is not an IANA time zone (e.g. UTC, Europe/Paris, Asia/Tokyo)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str_named(text, "test.toml")
    }

    fn error(text: &str) -> ConfigError {
        match parse(text) {
            Ok(config) => panic!("accepted:\n{text}\nas {config:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the error is at `line`, about `key`, and that its message says so.
    fn assert_error(text: &str, line: usize, key: &str, words: &str) {
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

    #[test]
    fn empty_file_is_all_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.daemon.data_dir, PathBuf::from("/var/lib/pgmaint"));
        assert_eq!(config.daemon.tick, Duration::from_secs(10));
        assert_eq!(config.daemon.lease, Duration::from_secs(30));
        assert_eq!(config.daemon.node_name, None);
        assert_eq!(config.daemon.node_name(), hostname(), "the default node name is the host name");
        assert_eq!(config.state, StateLocation::Embedded { dir: "/var/lib/pgmaint/state".into() });
        assert_eq!(config.api.socket, PathBuf::from("/var/lib/pgmaint/pgmaint.sock"));
        assert_eq!(config.api.socket_group, None);
        assert_eq!(config.api.tcp, None);
        assert_eq!(config.smtp, None);
        assert_eq!(config.notify.lead_times, vec![Duration::from_secs(7 * DAY), Duration::from_secs(DAY)]);
        assert_eq!(config.notify.mail_dir, PathBuf::from("/var/lib/pgmaint/mail"));
        assert_eq!(config.endpoint.port, 6432);
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
port = 6543
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
        assert_eq!(config.endpoint.port, 6543);
        assert_eq!(config.endpoint.server_login_retry, Duration::from_millis(250));
        assert_eq!(config.maintenance.retire_grace, Duration::ZERO);
        assert_eq!(config.maintenance.default_window, "tuesdays 14:30 Asia/Tokyo");
    }

    #[test]
    fn smtp_port_defaults_by_tls() {
        for (tls, port) in [("none", 25), ("starttls", 587), ("tls", 465)] {
            let config = parse(&format!("[smtp]\ntls = \"{tls}\"\nfrom = \"a@b.c\"\n")).unwrap();
            assert_eq!(config.smtp.unwrap().port, port, "{tls}");
        }
    }

    #[test]
    fn other_toml_layouts_are_the_same_config() {
        let table = parse("[smtp]\nhost = \"mx\"\nfrom = \"a@b.c\"\n").unwrap();
        let dotted = parse("smtp.host = \"mx\"\nsmtp.from = \"a@b.c\"\n").unwrap();
        let inline = parse("smtp = { host = \"mx\", from = \"a@b.c\" }\n").unwrap();
        assert_eq!(table, dotted);
        assert_eq!(table, inline);
    }

    #[test]
    fn unknown_key_is_refused_with_its_line_and_section() {
        let text = "[daemon]\ntick = \"10s\"\n\n[smtp]\nhost = \"127.0.0.1\"\nfrom = \"a@b.c\"\nhots = \"x\"\n";
        assert_error(
            text,
            7,
            "smtp.hots",
            "unknown key \"hots\" in [smtp] (expected one of host, port, tls, username, password, from)",
        );
        assert_eq!(
            error(text).to_string(),
            "test.toml:7: unknown key \"hots\" in [smtp] (expected one of host, port, tls, username, password, from)"
        );
        // Dotted and inline spellings are placed just as well.
        assert_error("\n\napi.tpc = \"x\"\n", 3, "api.tpc", "unknown key \"tpc\" in [api]");
        assert_error(
            "\nstate = { uri = \"x\" }\n",
            2,
            "state.uri",
            "unknown key \"uri\" in [state] (expected one of url)",
        );
    }

    #[test]
    fn every_section_names_its_unknown_keys() {
        for (section, keys) in SCHEMA {
            let text = format!("# a comment\n[{section}]\nnot_a_key = 1\n");
            let e = error(&text);
            assert_eq!(e.key(), Some(format!("{section}.not_a_key")), "{e}");
            assert_eq!(e.line(), Some(3), "{e}");
            let ConfigError::UnknownKey { expected, .. } = &e else { panic!("{e}") };
            assert_eq!(expected, &keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(), "SCHEMA is out of date");
        }
    }

    #[test]
    fn schema_lists_every_key_the_raw_structs_accept() {
        let mut text = String::new();
        for (section, keys) in SCHEMA {
            text.push_str(&format!("[{section}]\n"));
            for key in *keys {
                text.push_str(&format!("{key} = 1\n"));
            }
        }
        toml::from_str::<RawConfig>(&text).unwrap();
    }

    #[test]
    fn unknown_section_and_top_level_key() {
        assert_error(
            "[daemon]\n\n[smpt]\nhost = \"x\"\n",
            3,
            "smpt",
            "unknown section [smpt] (expected one of daemon, state, api, smtp, notify, endpoint, maintenance)",
        );
        assert_error("tick = \"10s\"\n", 1, "tick", "unknown key \"tick\" at the top level");
        assert_error("\ndaemon = 5\n", 2, "daemon", "expected a table ([daemon]), found integer `5`");
        assert_error("\n[[daemon]]\ntick = \"1s\"\n", 2, "daemon", "expected a table ([daemon]), found sequence");
        // A table where a value belongs, made with dotted keys or a sub-table header.
        assert_error(
            "[smtp]\nfrom = \"a@b.c\"\ntls.x = 1\n",
            3,
            "smtp.tls",
            "expected a value, found a table (smtp.tls.x)",
        );
        assert_error("\nsmtp.tls.x = 1\n", 2, "smtp.tls", "expected a value, found a table (smtp.tls.x)");
        assert_error("[smtp]\nfrom = \"a@b.c\"\n[smtp.tls]\nx = 1\n", 3, "smtp.tls", "found a table");
        assert_error("[daemon]\n\n[daemon.tick]\n", 3, "daemon.tick", "found a table");
    }

    #[test]
    fn syntax_error_has_its_line() {
        let e = error("[daemon]\ntick = \"10s\"\nlease = \n");
        assert!(matches!(e, ConfigError::Syntax { line: 3, .. }), "{e}");
        assert!(e.to_string().starts_with("test.toml:3: TOML syntax error: "), "{e}");
        let e = error("[daemon]\ntick = \"10s\"\ntick = \"20s\"\n");
        assert!(matches!(e, ConfigError::Syntax { line: 3, .. }), "{e}");
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
    fn smtp_username_and_password_go_together() {
        assert_error("[smtp]\nfrom = \"a@b.c\"\nusername = \"u\"\n", 3, "smtp.username", "needs password");
        assert_error("[smtp]\nfrom = \"a@b.c\"\n\npassword = \"p\"\n", 4, "smtp.password", "needs username");
    }

    #[test]
    fn smtp_from_must_be_an_address() {
        assert_error("[smtp]\nhost = \"mx\"\nfrom = \"pgmaint.example.com\"\n", 3, "smtp.from", "no @");
        assert_error("[smtp]\nfrom = \"a@b@c\"\n", 2, "smtp.from", "not an email address");
        assert_error("\n[smtp]\nhost = \"mx\"\n", 2, "smtp.from", "missing key \"from\" in [smtp]: the From address");
        assert_error("[smtp]\ntls = \"ssl\"\nfrom = \"a@b.c\"\n", 2, "smtp.tls", "not one of");
        assert_error("[smtp]\nport = 70000\nfrom = \"a@b.c\"\n", 2, "smtp.port", "not a port number");
    }

    #[test]
    fn lead_times_must_be_non_empty_positive_and_distinct() {
        assert_error("[notify]\nlead_times = []\n", 2, "notify.lead_times", "at least one");
        assert_error(
            "[notify]\nlead_times = [\"7d\", \"0s\"]\n",
            2,
            "notify.lead_times",
            "item 2: a lead time must be longer than zero",
        );
        assert_error("[notify]\nlead_times = [\"24h\", \"1d\"]\n", 2, "notify.lead_times", "listed twice");
        assert_error("[notify]\nlead_times = \"7d\"\n", 2, "notify.lead_times", "expected a list");
        assert_error("[notify]\nlead_times = [\n  \"7d\",\n  \"soon\",\n]\n", 2, "notify.lead_times", "item 2");
    }

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
    fn default_window_shape() {
        for good in ["Sunday 02:00", "sunday 2:00 UTC", "Tuesdays 14:30 Asia/Tokyo", "Sat 23:59 Europe/Paris"] {
            let config = parse(&format!("[maintenance]\ndefault_window = \"{good}\"\n")).unwrap();
            assert_eq!(config.maintenance.default_window, good);
        }
        for (bad, words) in [
            ("Sunday", "is not <weekday>"),
            ("Sunday 02:00 UTC extra", "is not <weekday>"),
            ("Sonday 02:00", "not a weekday"),
            ("Sunday 24:00", "not a time of day"),
            ("Sunday 2:5", "not a time of day"),
            ("Sunday 02:00 Mars/Olympus", "not an IANA time zone"),
        ] {
            assert_error(
                &format!("\n[maintenance]\ndefault_window = \"{bad}\"\n"),
                3,
                "maintenance.default_window",
                words,
            );
        }
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

    #[test]
    fn durations() {
        let ok = [
            ("100ms", Duration::from_millis(100)),
            ("10s", Duration::from_secs(10)),
            ("5m", Duration::from_secs(300)),
            ("24h", Duration::from_secs(DAY)),
            ("7d", Duration::from_secs(7 * DAY)),
            ("2w", Duration::from_secs(14 * DAY)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("10 s", Duration::from_secs(10)),
            ("1m30s500ms", Duration::from_millis(90_500)),
            (" 0s ", Duration::ZERO),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_config_duration(text), Ok(expected), "{text}");
        }
        for (text, words) in [
            ("", "empty"),
            ("10", "no unit"),
            ("1.5h", "fractions"),
            ("10 s 5", "no unit"),
            ("10sec", "unknown unit"),
            ("30m1h", "largest first"),
            ("1m1m", "largest first"),
            ("-5s", "not a duration"),
            ("h", "not a duration"),
            ("99999999999999999999s", "too long"),
            ("999999999999999w", "too long"),
        ] {
            let e = parse_config_duration(text).unwrap_err();
            assert!(e.contains(words), "{text}: {e}");
        }
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_secs(DAY), "24h"),
            (Duration::from_secs(DAY + DAY / 2), "36h"),
            (Duration::from_secs(2 * DAY + HOUR), "2d1h"),
            (Duration::from_secs(90 * DAY), "90d"),
            (Duration::from_millis(90_500), "1m30s500ms"),
        ] {
            assert_eq!(format_config_duration(d), text);
            assert_eq!(parse_config_duration(text), Ok(d));
        }
    }

    fn arbitrary_line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let sections: Vec<&str> = SCHEMA.iter().map(|(section, _)| *section).chain(["smtp.tls", "x"]).collect();
        let keys: Vec<String> = SCHEMA
            .iter()
            .flat_map(|(section, keys)| keys.iter().flat_map(move |key| [key.to_string(), format!("{section}.{key}")]))
            .chain(["hots".to_string(), "tls.x".to_string()])
            .collect();
        let value = prop_oneof![
            "\"[0-9]{0,3}(ms|s|m|h|d|w|x)?\"",
            "\"[a-zA-Z0-9@:./ ]{0,14}\"",
            "-?[0-9]{1,6}",
            "\\[(\"[0-9]{1,2}[dhs]\", ?){0,3}\\]",
            "\\{ ?[a-z_]{1,8} = (1|\"x\") ?\\}",
            Just("true".to_string()),
            Just("1979-05-27".to_string()),
        ];
        prop_oneof![
            proptest::sample::select(sections).prop_map(|s| format!("[{s}]")),
            (proptest::sample::select(keys), value).prop_map(|(k, v)| format!("{k} = {v}")),
            "[^\n]{0,16}",
        ]
    }

    proptest::proptest! {
        /// Whatever the text, loading gives a configuration or an error on one of its lines: no panic.
        #[test]
        fn any_text_gives_a_config_or_a_placed_error(lines in proptest::collection::vec(arbitrary_line(), 0..10)) {
            let text = lines.join("\n");
            if let Err(e) = Config::from_str_named(&text, "p.toml") {
                let line = e.line().unwrap();
                proptest::prop_assert!(line >= 1 && line <= text.lines().count().max(1), "{} for {:?}", e, text);
                let prefix = format!("p.toml:{}: ", line);
                proptest::prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
                if let Some(key) = e.key() {
                    proptest::prop_assert!(!key.is_empty() && !key.contains('?'), "{} for {:?}", e, text);
                    // The line shown holds the key at fault (a missing key: its section).
                    let shown = text.lines().nth(line - 1).unwrap_or("");
                    let named = match &e {
                        ConfigError::Missing { section, .. } => section.clone(),
                        _ => key.rsplit('.').next().unwrap().to_string(),
                    };
                    let lease_blames_tick = shown.contains("tick") && e.to_string().contains("the lease");
                    proptest::prop_assert!(shown.contains(&named) || lease_blames_tick, "{} for {:?}", e, text);
                }
            }
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[smtp]\nfrom = \"a@b.c\"\nhots = 1\n").unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:3: unknown key \"hots\" in [smtp] (expected one of host, port, tls, username, password, from)",
                path.display()
            )
        );
        let missing = dir.path().join("missing.toml");
        let e = Config::load(&missing).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().starts_with(&format!("{}: cannot read", missing.display())), "{e}");
    }
}
