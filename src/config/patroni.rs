//! `[patroni]`: how pgmaint reaches the Patroni clusters it adopts: the role
//! it logs in as on their PostgreSQL servers, the REST API's basic auth and
//! CA, the host hook run on each member, and when a member counts as healthy
//! again. Secrets are named by file (read when the daemon starts), never
//! written in the configuration itself.

use std::time::Duration;

use super::loader::{convert, field, Field, Loader, RawPatroni};
use super::{ConfigError, PatroniConfig};

/// Default: a replica within 1 MiB of its leader counts as caught up.
pub(super) const DEFAULT_MAX_LAG: u64 = 1024 * 1024;

impl Loader<'_> {
    /// `[patroni]` (only when the file has the section).
    pub(super) fn patroni(&self, p: &RawPatroni) -> Result<PatroniConfig, ConfigError> {
        let user = field("patroni", "pg_user", &p.pg_user);
        let pg_user = match &user {
            Some(f) => f.string(self, "a role name")?,
            None => {
                return Err(ConfigError::Missing {
                    file: self.file.to_string(),
                    line: self.section_line(
                        "patroni",
                        &[
                            &p.pg_password_file,
                            &p.rest_user,
                            &p.rest_password_file,
                            &p.rest_ca_file,
                            &p.host_hook,
                            &p.max_lag,
                            &p.member_timeout,
                        ],
                    ),
                    section: "patroni".to_string(),
                    key: "pg_user".to_string(),
                    problem: "the role pgmaint logs in as on adopted clusters, e.g. pg_user = \"pgmaint\"".to_string(),
                })
            }
        };
        let rest_user_field = field("patroni", "rest_user", &p.rest_user);
        let rest_password_field = field("patroni", "rest_password_file", &p.rest_password_file);
        let rest_user = convert(&rest_user_field, self, |f, ld| f.string(ld, "a user name"))?;
        let rest_password_file = convert(&rest_password_field, self, Field::path)?;
        match (&rest_user, &rest_password_file) {
            (Some(_), None) => return Err(rest_user_field.expect("present").invalid(self, "rest_user needs rest_password_file (they go together)")),
            (None, Some(_)) => return Err(rest_password_field.expect("present").invalid(self, "rest_password_file needs rest_user (they go together)")),
            _ => {}
        }
        let max_lag = convert(&field("patroni", "max_lag", &p.max_lag), self, |f, ld| match f.value.get_ref() {
            toml::Value::Integer(bytes) if *bytes >= 0 => Ok(*bytes as u64),
            other => Err(f.invalid(ld, format!("expected a number of bytes (0 or more), found {}", super::loader::describe(other)))),
        })?;
        Ok(PatroniConfig {
            pg_user,
            pg_password_file: convert(&field("patroni", "pg_password_file", &p.pg_password_file), self, Field::path)?,
            rest_user,
            rest_password_file,
            rest_ca_file: convert(&field("patroni", "rest_ca_file", &p.rest_ca_file), self, Field::path)?,
            host_hook: convert(&field("patroni", "host_hook", &p.host_hook), self, |f, ld| f.string(ld, "a shell command"))?,
            max_lag: max_lag.unwrap_or(DEFAULT_MAX_LAG),
            member_timeout: convert(&field("patroni", "member_timeout", &p.member_timeout), self, Field::positive_duration)?
                .unwrap_or(Duration::from_secs(600)),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_str_named(text, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_patroni_section_reads_every_key() {
        let config = parse(
            "[patroni]\npg_user = \"pgmaint\"\npg_password_file = \"/etc/pgmaint/pg.pw\"\nrest_user = \"admin\"\nrest_password_file = \"/etc/pgmaint/rest.pw\"\n\
             rest_ca_file = \"/etc/ssl/ca.pem\"\nhost_hook = \"ssh $PGMAINT_HOST apt-get -y upgrade\"\nmax_lag = 0\nmember_timeout = \"2m\"\n",
        )
        .unwrap();
        let patroni = config.patroni.unwrap();
        assert_eq!(patroni.pg_user, "pgmaint");
        assert_eq!(patroni.rest_user.as_deref(), Some("admin"));
        assert_eq!(patroni.max_lag, 0);
        assert_eq!(patroni.member_timeout, std::time::Duration::from_secs(120));
        assert_eq!(patroni.host_hook.as_deref(), Some("ssh $PGMAINT_HOST apt-get -y upgrade"));
        assert!(parse("").unwrap().patroni.is_none());
    }

    #[test]
    fn patroni_errors_name_the_key() {
        let missing = parse("[patroni]\nhost_hook = \"true\"\n").unwrap_err();
        assert!(missing.contains("missing key \"pg_user\" in [patroni]"), "{missing}");
        // Without a header, the line of whichever of its keys comes first (found by proptest).
        for key in ["rest_password_file = \"\"", "rest_ca_file = \"/ca\"", "max_lag = 1", "member_timeout = \"1m\""] {
            let dotted = parse(&format!("maintenance.retire_grace = \"0ms\"\npatroni.{key}\n")).unwrap_err();
            assert!(dotted.starts_with("t.toml:2: missing key \"pg_user\""), "{dotted}");
        }
        let half = parse("[patroni]\npg_user = \"p\"\nrest_user = \"a\"\n").unwrap_err();
        assert!(half.contains("t.toml:3") && half.contains("rest_user needs rest_password_file"), "{half}");
        let lag = parse("[patroni]\npg_user = \"p\"\nmax_lag = \"1MB\"\n").unwrap_err();
        assert!(lag.contains("max_lag") && lag.contains("number of bytes"), "{lag}");
        let typo = parse("[patroni]\npg_user = \"p\"\nresturl = \"x\"\n").unwrap_err();
        assert!(typo.contains("unknown key \"resturl\" in [patroni]"), "{typo}");
    }
}
