//! From TOML text to values that know where they were written: the `Raw*`
//! structs a file is deserialized into, the [`Loader`] that turns byte offsets
//! into lines and serde's complaints into [`ConfigError`]s, and [`Field`], one
//! present key, with the typed readers every section uses (a string, a path, a
//! duration, a port). Converting and checking each section is left to the
//! section files; this file knows TOML and positions, not what a key means.
//!
//! How it works: the file is first deserialized into `Raw*` structs
//! (`#[serde(deny_unknown_fields)]` on every table) whose leaves are
//! `toml::Spanned<toml::Value>`, so serde rejects unknown keys with their
//! position, and every later complaint about a value knows its section, its key
//! and its line exactly, however the TOML was written (`[smtp]` table, dotted
//! `smtp.host = ...` keys or an inline table).

use std::fmt;
use std::ops::Range;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::{Config, ConfigError, Overrides};
use crate::schedule::parse_std_duration;

// The raw file: every table refuses unknown keys; every leaf keeps its position.

pub(super) type Raw = Option<Spanned<Value>>;

/// The sections, and the keys of each, in the order the documentation lists them.
/// Used to say which section an unknown key was found in; a test checks they
/// match the `Raw*` structs.
pub(super) const SCHEMA: &[(&str, &[&str])] = &[
    ("daemon", &["data_dir", "tick", "node_name", "lease"]),
    ("state", &["url"]),
    ("api", &["socket", "socket_group", "tcp", "token_file"]),
    ("smtp", &["host", "port", "tls", "username", "password", "from"]),
    ("notify", &["lead_times", "mail_dir", "webhooks"]),
    ("endpoint", &["listen", "server_login_retry", "tls_cert_file", "tls_key_file", "client_tls_sslmode"]),
    ("maintenance", &["periodic_interval", "retire_grace", "default_window"]),
    ("hooks", &["before_maintenance", "after_maintenance", "hook_timeout"]),
    ("patroni", &["pg_user", "pg_password_file", "rest_user", "rest_password_file", "rest_ca_file", "host_hook", "max_lag", "member_timeout"]),
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(super) struct RawConfig {
    pub(super) daemon: Option<Section<RawDaemon>>,
    pub(super) state: Option<Section<RawState>>,
    pub(super) api: Option<Section<RawApi>>,
    pub(super) smtp: Option<Section<RawSmtp>>,
    pub(super) notify: Option<Section<RawNotify>>,
    pub(super) endpoint: Option<Section<RawEndpoint>>,
    pub(super) maintenance: Option<Section<RawMaintenance>>,
    pub(super) hooks: Option<Section<RawHooks>>,
    pub(super) patroni: Option<Section<RawPatroni>>,
}

/// A section: a table and nothing else. (A derived struct alone would also take
/// an array, `[[daemon]]`, filling its fields by position.)
pub(super) struct Section<T>(pub(super) T);

impl<T: Default> Section<T> {
    pub(super) fn or_default(section: Option<Section<T>>) -> T {
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
pub(super) struct RawDaemon {
    pub(super) data_dir: Raw,
    pub(super) tick: Raw,
    pub(super) node_name: Raw,
    pub(super) lease: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(super) struct RawState {
    pub(super) url: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(super) struct RawApi {
    pub(super) socket: Raw,
    pub(super) socket_group: Raw,
    pub(super) tcp: Raw,
    pub(super) token_file: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(super) struct RawSmtp {
    pub(super) host: Raw,
    pub(super) port: Raw,
    pub(super) tls: Raw,
    pub(super) username: Raw,
    pub(super) password: Raw,
    pub(super) from: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(super) struct RawNotify {
    pub(super) lead_times: Raw,
    pub(super) mail_dir: Raw,
    pub(super) webhooks: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(super) struct RawEndpoint {
    pub(super) listen: Raw,
    pub(super) server_login_retry: Raw,
    pub(super) tls_cert_file: Raw,
    pub(super) tls_key_file: Raw,
    pub(super) client_tls_sslmode: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(super) struct RawMaintenance {
    pub(super) periodic_interval: Raw,
    pub(super) retire_grace: Raw,
    pub(super) default_window: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(super) struct RawHooks {
    pub(super) before_maintenance: Raw,
    pub(super) after_maintenance: Raw,
    pub(super) hook_timeout: Raw,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(super) struct RawPatroni {
    pub(super) pg_user: Raw,
    pub(super) pg_password_file: Raw,
    pub(super) rest_user: Raw,
    pub(super) rest_password_file: Raw,
    pub(super) rest_ca_file: Raw,
    pub(super) host_hook: Raw,
    pub(super) max_lag: Raw,
    pub(super) member_timeout: Raw,
}

/// The file being loaded: its name and text, to turn byte offsets into lines.
pub(super) struct Loader<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) overrides: &'a Overrides,
}

/// One key that is present in the file.
pub(super) struct Field<'a> {
    pub(super) section: &'static str,
    pub(super) key: &'static str,
    pub(super) value: &'a Spanned<Value>,
}

pub(super) fn field<'a>(section: &'static str, key: &'static str, raw: &'a Raw) -> Option<Field<'a>> {
    raw.as_ref().map(|value| Field { section, key, value })
}

/// Converts a field that may be absent.
pub(super) fn convert<'a, T>(
    field: &Option<Field<'a>>,
    loader: &Loader<'_>,
    f: impl FnOnce(&Field<'a>, &Loader<'_>) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    field.as_ref().map(|field| f(field, loader)).transpose()
}

pub(super) fn describe(value: &Value) -> String {
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
    pub(super) fn invalid(&self, loader: &Loader<'_>, problem: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            file: loader.file.to_string(),
            line: loader.line_of(self.value.span()),
            section: Some(self.section.to_string()),
            key: self.key.to_string(),
            problem: problem.to_string(),
        }
    }

    pub(super) fn str(&self, loader: &Loader<'_>, what: &str) -> Result<&'a str, ConfigError> {
        match self.value.get_ref() {
            Value::String(s) if s.trim().is_empty() => {
                Err(self.invalid(loader, format!("expected {what}, found an empty string")))
            }
            Value::String(s) => Ok(s),
            other => Err(self.invalid(loader, format!("expected {what}, found {}", describe(other)))),
        }
    }

    pub(super) fn string(&self, loader: &Loader<'_>, what: &str) -> Result<String, ConfigError> {
        self.str(loader, what).map(str::to_string)
    }

    pub(super) fn path(&self, loader: &Loader<'_>) -> Result<PathBuf, ConfigError> {
        let s = self.str(loader, "a path")?;
        if s.contains('\0') {
            return Err(self.invalid(loader, "a path cannot contain a NUL character"));
        }
        Ok(PathBuf::from(s))
    }

    pub(super) fn duration(&self, loader: &Loader<'_>) -> Result<Duration, ConfigError> {
        let s = self.str(loader, "a duration such as \"10s\", \"24h\" or \"1h30m\"")?;
        parse_std_duration(s).map_err(|problem| self.invalid(loader, problem))
    }

    pub(super) fn positive_duration(&self, loader: &Loader<'_>) -> Result<Duration, ConfigError> {
        let duration = self.duration(loader)?;
        if duration.is_zero() {
            return Err(self.invalid(loader, "must be longer than zero"));
        }
        Ok(duration)
    }

    /// A non-empty array of `IP:port` strings sharing one port.
    pub(super) fn listen_addresses(&self, loader: &Loader<'_>) -> Result<Vec<SocketAddr>, ConfigError> {
        let Value::Array(items) = self.value.get_ref() else {
            return Err(self.invalid(loader, format!("expected an array of addresses such as [\"127.0.0.1:6432\"], found {}", describe(self.value.get_ref()))));
        };
        let mut addresses = Vec::new();
        for item in items {
            let parsed = match item {
                Value::String(s) => s.trim().parse::<SocketAddr>().map_err(|_| format!("\"{s}\" is not an IP address and port such as \"127.0.0.1:6432\" or \"[::1]:6432\"")),
                other => Err(format!("expected an address string, found {}", describe(other))),
            };
            addresses.push(parsed.map_err(|problem| self.invalid(loader, problem))?);
        }
        match addresses.first() {
            None => Err(self.invalid(loader, "needs at least one address")),
            Some(first) if addresses.iter().any(|a| a.port() != first.port()) => {
                Err(self.invalid(loader, "every address must use one port (PgBouncer listens on one port)"))
            }
            Some(_) => Ok(addresses),
        }
    }

    pub(super) fn port(&self, loader: &Loader<'_>) -> Result<u16, ConfigError> {
        match self.value.get_ref() {
            Value::Integer(i) if (1..=65535).contains(i) => Ok(*i as u16),
            Value::Integer(i) => Err(self.invalid(loader, format!("{i} is not a port number (1 to 65535)"))),
            other => Err(self.invalid(loader, format!("expected a port number, found {}", describe(other)))),
        }
    }
}

impl Loader<'_> {
    pub(super) fn line_of(&self, span: Range<usize>) -> usize {
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

    pub(super) fn parse(&self) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(self.text).map_err(|e| self.parse_error(&e))?;
        self.build(raw)
    }

    /// The line of `[section]`, else of the first of its keys `present` in the
    /// file (dotted or inline), else 1: where to report a key it lacks.
    pub(super) fn section_line(&self, section: &str, present: &[&Raw]) -> usize {
        let header = format!("[{section}]");
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            let code = line.split('#').next().unwrap_or("").trim();
            if code == header {
                return self.line_of(offset..offset);
            }
            offset += line.len();
        }
        present.iter().filter_map(|raw| raw.as_ref().map(|v| self.line_of(v.span()))).min().unwrap_or(1)
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

#[cfg(test)]
mod tests {
    use crate::config::test_support::{assert_error, error, parse};
    use super::*;

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
            "unknown section [smpt] (expected one of daemon, state, api, smtp, notify, endpoint, maintenance, hooks, patroni)",
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
