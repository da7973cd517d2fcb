//! `[endpoint]`, `[maintenance]` and `[hooks]`: the PgBouncer endpoint a
//! maintenance switches clients over, how often and when maintenances run,
//! and the commands run before and after each one. The
//! default window is read by [`crate::schedule::Window`]'s parser, the one the
//! fleet file and `pgmaint window` use, so a window this file accepts is one
//! the planner can plan.

use super::loader::{convert, field, Field, Loader, RawEndpoint, RawHooks, RawMaintenance};
use crate::endpoint::ClientTls;
use super::{ConfigError, EndpointConfig, HooksConfig, MaintenanceConfig};
use crate::schedule::{ScheduleError, Window};

impl Loader<'_> {
    /// `[endpoint]`.
    pub(super) fn endpoint(&self, e: &RawEndpoint, defaults: EndpointConfig) -> Result<EndpointConfig, ConfigError> {
        let listen_field = field("endpoint", "listen", &e.listen);
        let listen = convert(&listen_field, self, Field::listen_addresses)?.unwrap_or(defaults.listen);
        let cert_field = field("endpoint", "tls_cert_file", &e.tls_cert_file);
        let key_field = field("endpoint", "tls_key_file", &e.tls_key_file);
        let mode_field = field("endpoint", "client_tls_sslmode", &e.client_tls_sslmode);
        let cert = convert(&cert_field, self, Field::path)?;
        let key = convert(&key_field, self, Field::path)?;
        let sslmode = convert(&mode_field, self, |f, ld| {
            let mode = f.str(ld, "a TLS mode")?;
            match mode {
                "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full" => Ok(mode.to_string()),
                other => Err(f.invalid(ld, format!("\"{other}\" is not one of disable, allow, prefer, require, verify-ca, verify-full"))),
            }
        })?;
        let tls = match (cert, key, sslmode) {
            (_, _, Some(mode)) if mode == "disable" => None,
            (Some(cert_file), Some(key_file), sslmode) => {
                Some(ClientTls { cert_file, key_file, sslmode: sslmode.unwrap_or_else(|| "prefer".to_string()) })
            }
            (None, None, None) => None,
            (Some(_), None, _) => return Err(cert_field.as_ref().map(|f| f.invalid(self, "needs tls_key_file too")).expect("present")),
            (None, Some(_), _) => return Err(key_field.as_ref().map(|f| f.invalid(self, "needs tls_cert_file too")).expect("present")),
            (None, None, Some(_)) => {
                return Err(mode_field.as_ref().map(|f| f.invalid(self, "TLS needs tls_cert_file and tls_key_file")).expect("present"))
            }
        };
        Ok(EndpointConfig {
            listen,
            tls,
            server_login_retry: convert(
                &field("endpoint", "server_login_retry", &e.server_login_retry),
                self,
                Field::positive_duration,
            )?
            .unwrap_or(defaults.server_login_retry),
        })
    }

    /// `[maintenance]`.
    pub(super) fn maintenance(
        &self,
        m: &RawMaintenance,
        defaults: MaintenanceConfig,
    ) -> Result<MaintenanceConfig, ConfigError> {
        Ok(MaintenanceConfig {
            periodic_interval: convert(
                &field("maintenance", "periodic_interval", &m.periodic_interval),
                self,
                Field::positive_duration,
            )?
            .unwrap_or(defaults.periodic_interval),
            retire_grace: convert(&field("maintenance", "retire_grace", &m.retire_grace), self, Field::duration)?
                .unwrap_or(defaults.retire_grace),
            default_window: convert(&field("maintenance", "default_window", &m.default_window), self, |f, ld| {
                let window = f.string(ld, "a window such as \"Sunday 02:00 UTC\"")?;
                window.parse::<Window>().map_err(|e| f.invalid(ld, window_problem(&window, e)))?;
                Ok(window.split_whitespace().collect::<Vec<_>>().join(" "))
            })?
            .unwrap_or(defaults.default_window),
        })
    }
}

impl Loader<'_> {
    /// `[hooks]`.
    pub(super) fn hooks(&self, h: &RawHooks, defaults: HooksConfig) -> Result<HooksConfig, ConfigError> {
        let command = |f: &Field<'_>, ld: &Loader<'_>| f.string(ld, "a shell command");
        Ok(HooksConfig {
            before_maintenance: convert(&field("hooks", "before_maintenance", &h.before_maintenance), self, command)?,
            after_maintenance: convert(&field("hooks", "after_maintenance", &h.after_maintenance), self, command)?,
            hook_timeout: convert(&field("hooks", "hook_timeout", &h.hook_timeout), self, Field::positive_duration)?
                .unwrap_or(defaults.hook_timeout),
        })
    }
}

/// What is wrong with `window`, worded for the configuration: the part at
/// fault and an example of the shape.
fn window_problem(window: &str, error: ScheduleError) -> String {
    let example = "write e.g. \"Sunday 02:00\" or \"Sunday 02:00 Europe/Paris\"";
    match error {
        ScheduleError::EmptyWindow | ScheduleError::MissingTime(_) | ScheduleError::TrailingWords(_) => {
            format!("\"{window}\" is not <weekday> <HH:MM> [zone]; {example}")
        }
        ScheduleError::UnknownDay(day) => format!("\"{day}\" is not a weekday; {example}"),
        ScheduleError::InvalidTime(time) => format!("\"{time}\" is not a time of day HH:MM; {example}"),
        ScheduleError::UnknownZone(zone) => {
            format!("\"{zone}\" is not an IANA time zone (e.g. UTC, Europe/Paris, Asia/Tokyo)")
        }
        other => format!("{other}; {example}"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;
    use chrono_tz::Tz;

    use super::*;
    use crate::config::test_support::{assert_error, parse};

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

    /// The window is read as the planner reads it: a zone in any case, as in
    /// fleet files and on the command line (the shape check this replaced
    /// wanted chrono-tz's exact spelling).
    #[test]
    fn default_window_is_a_schedule_window() {
        let config = parse("[maintenance]\ndefault_window = \" sundays  2:00 europe/paris \"\n").unwrap();
        assert_eq!(config.maintenance.default_window, "sundays 2:00 europe/paris");
        let window: Window = config.maintenance.default_window.parse().unwrap();
        assert_eq!(window, Window::new(Weekday::Sun, 2, 0, Tz::Europe__Paris).unwrap());
        let default: Window = crate::config::Config::default().maintenance.default_window.parse().unwrap();
        assert_eq!(default, Window::new(Weekday::Sun, 2, 0, Tz::UTC).unwrap());
        assert_error(
            "[maintenance]\ndefault_window = \"Sunday 02:00 europe/pariss\"\n",
            2,
            "maintenance.default_window",
            "\"europe/pariss\" is not an IANA time zone",
        );
    }

    #[test]
    fn hooks_values() {
        let config = parse("[hooks]\nbefore_maintenance = \"/usr/local/bin/drain\"\nhook_timeout = \"30s\"\n").unwrap();
        assert_eq!(config.hooks.before_maintenance.as_deref(), Some("/usr/local/bin/drain"));
        assert_eq!(config.hooks.after_maintenance, None);
        assert_eq!(config.hooks.hook_timeout, std::time::Duration::from_secs(30));
        assert_eq!(parse("").unwrap().hooks.hook_timeout, std::time::Duration::from_secs(600));
        assert_error("[hooks]\nhook_timeout = \"0s\"\n", 2, "hooks.hook_timeout", "must be longer than zero");
        assert_error("[hooks]\nafter_maintenance = \"\"\n", 2, "hooks.after_maintenance", "expected a shell command");
    }

    #[test]
    fn endpoint_values() {
        let config = parse("[endpoint]\nlisten = [\"127.0.0.1:7432\", \"[::1]:7432\"]\nserver_login_retry = \"1s 500ms\"\n").unwrap();
        assert_eq!(config.endpoint.listen, ["127.0.0.1:7432".parse().unwrap(), "[::1]:7432".parse().unwrap()]);
        assert_eq!(config.endpoint.server_login_retry, std::time::Duration::from_millis(1500));
        assert_error("[endpoint]\nserver_login_retry = \"0ms\"\n", 2, "endpoint.server_login_retry", "must be longer than zero");
        assert_error("[endpoint]\nlisten = []\n", 2, "endpoint.listen", "at least one address");
        assert_error("[endpoint]\nlisten = [\"localhost:6432\"]\n", 2, "endpoint.listen", "is not an IP address and port");
        assert_error("[endpoint]\nlisten = [\"127.0.0.1:1\", \"10.0.0.1:2\"]\n", 2, "endpoint.listen", "one port");
        assert_error("[endpoint]\nlisten = \"127.0.0.1:1\"\n", 2, "endpoint.listen", "expected an array");
    }

    #[test]
    fn endpoint_tls() {
        let config = parse("[endpoint]\ntls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n").unwrap();
        let tls = config.endpoint.tls.unwrap();
        assert_eq!((tls.cert_file.to_str(), tls.key_file.to_str(), tls.sslmode.as_str()), (Some("/c.pem"), Some("/k.pem"), "prefer"));
        let required = parse("[endpoint]\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"\nclient_tls_sslmode = \"require\"\n").unwrap();
        assert_eq!(required.endpoint.tls.unwrap().sslmode, "require");
        assert_error("[endpoint]\ntls_cert_file = \"/c\"\n", 2, "endpoint.tls_cert_file", "needs tls_key_file");
        assert_error("[endpoint]\nclient_tls_sslmode = \"require\"\n", 2, "endpoint.client_tls_sslmode", "needs tls_cert_file");
        assert_error("[endpoint]\nclient_tls_sslmode = \"sometimes\"\n", 2, "endpoint.client_tls_sslmode", "is not one of");
    }
}
