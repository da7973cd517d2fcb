//! How pgmaint and the endpoint reach a server, whatever provider runs it: a
//! typed address (a Unix socket directory on this host, or a TCP host), a
//! port, and the role pgmaint logs in as with its password. Servers are
//! identified by address, never by a data-directory path.

use std::fmt;
use std::path::PathBuf;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A Unix socket directory on this host (libpq's `host=/dir`).
    Socket(PathBuf),
    /// A host name or IP address, over TCP.
    Tcp(String),
}

impl Host {
    /// Reads libpq's `host`: an absolute path is a socket directory.
    pub fn parse(text: &str) -> Host {
        if text.starts_with('/') {
            Host::Socket(PathBuf::from(text))
        } else {
            Host::Tcp(text.to_string())
        }
    }
}

impl fmt::Display for Host {
    /// As libpq takes it, and as `pg_stat_wal_receiver.sender_host` shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Socket(dir) => write!(f, "{}", dir.display()),
            Host::Tcp(host) => f.write_str(host),
        }
    }
}

/// A server's address and the credentials pgmaint uses on it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub host: Host,
    pub port: u16,
    /// The role pgmaint logs in as (a superuser on servers pgmaint made).
    pub user: String,
    /// That role's password, when the server asks for one. Never printed.
    pub password: Option<String>,
}

impl ServerAddress {
    pub fn new(host: Host, port: u16, user: impl Into<String>) -> ServerAddress {
        ServerAddress { host, port, user: user.into(), password: None }
    }

    /// libpq keyword/value connection string for `dbname`, values quoted as
    /// libpq requires. It carries the password, if any: never log it.
    pub fn conninfo(&self, dbname: &str) -> String {
        let mut text = format!(
            "host={} port={} user={} dbname={}",
            quote(&self.host.to_string()),
            self.port,
            quote(&self.user),
            quote(dbname)
        );
        if let Some(password) = &self.password {
            text.push_str(&format!(" password={}", quote(password)));
        }
        text
    }

    /// The same for tokio-postgres, without a string in between.
    pub fn pg_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        match &self.host {
            Host::Socket(dir) => config.host_path(dir),
            Host::Tcp(host) => config.host(host),
        };
        config.port(self.port).user(&self.user).dbname(dbname);
        if let Some(password) = &self.password {
            config.password(password);
        }
        config
    }

    /// `user@host:port`, for messages and logs (no password).
    pub fn describe(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

impl fmt::Debug for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerAddress")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A libpq connection-string value: bare when it can be, else single-quoted
/// with `\` and `'` escaped.
fn quote(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_quotes_what_libpq_needs_quoted() {
        let mut address = ServerAddress::new(Host::Socket("/var/lib/pgmaint/i/a".into()), 5432, "postgres");
        assert_eq!(address.conninfo("shop"), "host=/var/lib/pgmaint/i/a port=5432 user=postgres dbname=shop");
        address.password = Some("it's a \\secret".into());
        assert_eq!(address.conninfo("my db"), "host=/var/lib/pgmaint/i/a port=5432 user=postgres dbname='my db' password='it\\'s a \\\\secret'");
        // The password parses back as libpq would read it.
        let parsed: tokio_postgres::Config = address.conninfo("x").parse().unwrap();
        assert_eq!(parsed.get_password(), Some("it's a \\secret".as_bytes()));
    }

    #[test]
    fn debug_and_describe_never_show_the_password() {
        let mut address = ServerAddress::new(Host::Tcp("db1.example".into()), 5433, "pgmaint");
        address.password = Some("hunter2".into());
        assert!(!format!("{address:?}").contains("hunter2"));
        assert_eq!(address.describe(), "pgmaint@db1.example:5433");
        assert_eq!(Host::parse("/run/postgresql"), Host::Socket("/run/postgresql".into()));
        assert_eq!(Host::parse("10.0.0.5"), Host::Tcp("10.0.0.5".into()));
    }
}
