//! `[smtp]` and `[notify]`: how the owners' mail is sent (a relay, or files
//! when there is no `[smtp]`), how long before a maintenance they are
//! reminded of it, and which URLs get every event as a webhook.

use lettre::message::Mailbox;
use toml::Value;

use super::loader::{convert, describe, field, Field, Loader, RawNotify, RawSmtp};
use super::{ConfigError, NotifyConfig, SmtpConfig, SmtpCredentials, SmtpTls};
use crate::notify::WebhookUrl;
use crate::schedule::{format_duration, parse_std_duration};

impl Loader<'_> {
    /// `[smtp]`, when the file has that section: `from` is required.
    pub(super) fn smtp(&self, s: &RawSmtp) -> Result<SmtpConfig, ConfigError> {
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
                    line: self.section_line("smtp", &[&s.host, &s.port, &s.tls, &s.username, &s.password]),
                    section: "smtp".to_string(),
                    key: "from".to_string(),
                    problem: "the From address of the mails, e.g. from = \"pgmaint@example.com\"".to_string(),
                });
            }
        };
        Ok(SmtpConfig { host, port, tls, credentials, from })
    }

    /// `[notify]`; `defaults` has the mail folder under the data directory.
    pub(super) fn notify(&self, n: &RawNotify, defaults: NotifyConfig) -> Result<NotifyConfig, ConfigError> {
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
                    parse_std_duration(s).map_err(|problem| f.invalid(ld, format!("item {}: {problem}", i + 1)))?;
                if lead.is_zero() {
                    return Err(f.invalid(ld, format!("item {}: a lead time must be longer than zero", i + 1)));
                }
                if lead_times.contains(&lead) {
                    return Err(f.invalid(ld, format!("item {}: {} is listed twice", i + 1, format_duration(lead))));
                }
                lead_times.push(lead);
            }
            lead_times.sort_by(|a, b| b.cmp(a));
            Ok(lead_times)
        })?
        .unwrap_or(defaults.lead_times);
        let mail_dir =
            convert(&field("notify", "mail_dir", &n.mail_dir), self, Field::path)?.unwrap_or(defaults.mail_dir);
        let webhooks = convert(&field("notify", "webhooks", &n.webhooks), self, |f, ld| {
            // Never a URL itself in a message: a webhook URL holds its secret.
            let found = |value: &Value| match value {
                Value::String(_) => "a string".to_string(),
                other => describe(other),
            };
            let Value::Array(items) = f.value.get_ref() else {
                let example = "[\"https://chat.example.com/hooks/...\"]";
                return Err(f.invalid(ld, format!("expected a list of URLs such as {example}, found {}", found(f.value.get_ref()))));
            };
            let mut webhooks: Vec<WebhookUrl> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Value::String(text) = item else {
                    return Err(f.invalid(ld, format!("item {}: expected a URL string, found {}", i + 1, found(item))));
                };
                let url = WebhookUrl::parse(text).map_err(|problem| f.invalid(ld, format!("item {}: {problem}", i + 1)))?;
                if webhooks.contains(&url) {
                    return Err(f.invalid(ld, format!("item {}: {} is listed twice", i + 1, url.redacted())));
                }
                webhooks.push(url);
            }
            Ok(webhooks)
        })?
        .unwrap_or(defaults.webhooks);
        Ok(NotifyConfig { lead_times, mail_dir, webhooks })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{assert_error, parse};

    #[test]
    fn smtp_port_defaults_by_tls() {
        for (tls, port) in [("none", 25), ("starttls", 587), ("tls", 465)] {
            let config = parse(&format!("[smtp]\ntls = \"{tls}\"\nfrom = \"a@b.c\"\n")).unwrap();
            assert_eq!(config.smtp.unwrap().port, port, "{tls}");
        }
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
    fn webhooks_must_be_distinct_http_urls_and_are_never_echoed() {
        let config = parse("[notify]\nwebhooks = [\"https://chat.example.com/hooks/s3cret\", \"http://127.0.0.1:20001/hook?token=s3cret\"]\n").unwrap();
        let shown: Vec<String> = config.notify.webhooks.iter().map(|u| u.redacted()).collect();
        assert_eq!(shown, ["https://chat.example.com/hooks/…", "http://127.0.0.1:20001/hook"]);
        assert_eq!(config.notify.webhooks[1].as_str(), "http://127.0.0.1:20001/hook?token=s3cret");
        assert!(!format!("{config:?}").contains("s3cret"));
        assert!(parse("[notify]\nwebhooks = []\n").unwrap().notify.webhooks.is_empty());

        let cases = [
            ("[notify]\nwebhooks = [\"ftp://files.example.com/in?key=s3cret\"]\n", "item 1: the scheme is \"ftp\", not http or https"),
            ("[notify]\nwebhooks = [\"https://a.example/x\", \"chat.example.com/s3cret\"]\n", "item 2: not a URL"),
            ("[notify]\nwebhooks = [\"https://a.example/x\", 5]\n", "item 2: expected a URL string, found integer 5"),
            ("[notify]\nwebhooks = \"https://a.example/s3cret\"\n", "expected a list of URLs such as [\"https://chat.example.com/hooks/...\"], found a string"),
            ("[notify]\nwebhooks = [\"https://a.example/h/s3cret\", \"https://a.example/h/s3cret\"]\n", "item 2: https://a.example/h/… is listed twice"),
        ];
        for (text, words) in cases {
            assert_error(text, 2, "notify.webhooks", words);
            assert!(!crate::config::test_support::error(text).to_string().contains("s3cret"), "{text}");
        }
    }
}
