//! One PgBouncer that pgmaint configures, starts and drives through its admin console.
//!
//! Why it exists: the switchover critical section (PAUSE, stop the old primary,
//! promote, repoint, RESUME) needs a pooler that can hold clients' queries
//! while the server behind a database changes, and be told where the database
//! now lives without dropping a single client. PgBouncer does exactly that;
//! this module is the only code that writes its configuration or speaks to it.
//!
//! An instance lives in one directory `D` (mode 0700) owned by the server OS
//! user: `D/pgbouncer.ini`, `D/userlist.txt` (SCRAM verifiers, no password),
//! `D/pgbouncer_hba.conf`, `D/pgbouncer.pid`, `D/pgbouncer.log` and the Unix
//! socket `D/.s.PGSQL.<port>`, besides its TCP listeners. Who may connect:
//! over the Unix socket only the superuser `postgres` (pgmaint itself: the
//! admin console and its own checks), without a password, since only the
//! server user and root can enter `D`; over TCP every database's login roles
//! with SCRAM-SHA-256 (optionally TLS), and never `postgres`. Clients' server
//! connections log in as the client's own role. It runs daemonised
//! (`pgbouncer -d`), so it survives pgmaint crashing or restarting; the ini
//! file is the record of where each database points, and every call observes
//! the running process (pidfile + /proc, SHOW DATABASES) before acting, so any
//! call can be repeated after a crash.
//!
//! RESUME on every path: [`AdminConsole::pause`] resumes by itself when PAUSE
//! times out or fails; [`AdminConsole::pause_guarded`] returns a [`Paused`]
//! guard whose explicit `resume().await` is the normal path and whose `Drop`
//! (an early `?` return, a panic unwinding, the future being cancelled) sends
//! RESUME synchronously on a fresh connection from a helper thread, because
//! async Drop cannot await; [`AdminConsole::with_paused`] wraps a body in that
//! guard and also catches a panic so it can resume over the persistent
//! connection before re-raising it. RESUME itself is idempotent, so a pgmaint
//! that crashed mid-pause (the one path no code can cover) resumes blindly when
//! it restarts; until then PgBouncer's `query_wait_timeout` bounds how long a
//! client waits.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio_postgres::{NoTls, SimpleQueryMessage, SimpleQueryRow};

use super::EndpointError;
use crate::provider::{Host, ServerAddress};

/// The role the admin console and pgmaint's own checks use (the managed
/// servers' superuser): on the Unix socket only, whose directory is private.
const SUPERUSER: &str = "postgres";
use crate::provider::local::ServerUser;
use crate::store::ValidLogin;

/// PgBouncer's customary port; the socket directory tells instances apart.
pub const DEFAULT_PORT: u16 = 6432;
/// The admin console's virtual database.
const ADMIN_DB: &str = "pgbouncer";
/// Longest Unix socket path the kernel accepts (108 with the NUL), less a margin.
const MAX_SOCKET_PATH: usize = 100;
/// How long connecting to the admin console may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `server_login_retry` unless configured: short, so a failed login is a retry, not an outage.
const DEFAULT_LOGIN_RETRY: Duration = Duration::from_millis(100);
/// How long an admin command other than PAUSE may take (they answer in ~1 ms).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a freshly spawned pgbouncer has to accept admin connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each step of `stop` (SIGINT, SIGTERM, SIGKILL) waits for the process to exit.
const STOP_STEP: Duration = Duration::from_secs(5);

/// The `[pgbouncer]` settings pgmaint writes besides paths and the port.
/// Each value was checked against the PgBouncer 1.18 manual (pgbouncer(5)).
fn pooler_settings(server_login_retry: Duration) -> Vec<(&'static str, String)> {
    [
        // Default `session`. PAUSE waits until every server connection of the
        // database is released; in session mode an idle client keeps its
        // server for its whole session, so PAUSE would wait on idle sessions
        // (i.e. forever). In transaction mode a server is released at the end
        // of each transaction, so PAUSE waits only for transactions in flight.
        // Clients must then avoid session state (named prepared statements,
        // SET, advisory locks): the price of pausing without errors.
        ("pool_mode", "transaction"),
        // Default 15 s. After one failed login (a server stopping, restarting
        // or being promoted), PgBouncer answers new clients of that database
        // with an error, without trying, for this long. One failed login during
        // a maintenance would then refuse clients for 15 s; 0.1 s makes it a retry.
        // (`[endpoint] server_login_retry`, 100 ms by default.)
        ("server_login_retry", "__LOGIN_RETRY__"),
        // Default 120 (written for the record): the longest a query may wait
        // for a server, so also the bound on how long a client waits through a
        // PAUSE (or a pgmaint that died mid-pause) before it is disconnected.
        // It must exceed the longest critical section by a wide margin.
        ("query_wait_timeout", "120"),
        // Default 100: applications' connection pools add up quickly, and
        // clients are cheap for PgBouncer (one fd each).
        ("max_client_conn", "1000"),
        // Default 20 (written for the record): server connections per
        // (database, user); well within the managed servers' max_connections.
        ("default_pool_size", "20"),
        // Default `DISCARD ALL` (written for the record). PgBouncer skips it in
        // transaction mode (server_reset_query_always = 0); it matters only for
        // a database someone switches to session mode, where it must clean up.
        ("server_reset_query", "DISCARD ALL"),
        // Default 30 s: a server connection idle longer than this gets
        // `select 1` before it is handed to a client. PAUSE itself closes the
        // paused database's idle server connections, and a RELOAD that changes
        // a database's target closes its old ones when released, so neither
        // needs this; it limits how long a connection to a server that went
        // away without a PAUSE (a crash, a restart outside pgmaint) may be
        // handed to a client unchecked. The check costs one round trip on a
        // connection that was idle for a second, which is negligible.
        ("server_check_delay", "1"),
        // Default empty. Many drivers (JDBC, node-postgres, ...) send
        // extra_float_digits at startup; PgBouncer rejects any startup
        // parameter it does not track unless it is listed here.
        ("ignore_startup_parameters", "extra_float_digits"),
        // Who may connect how is in auth_hba_file (see `render_hba`): the
        // superuser over the private Unix socket only, apps over TCP with
        // SCRAM-SHA-256 against the verifiers in auth_file.
        ("auth_type", "hba"),
        ("admin_users", SUPERUSER),
    ]
    .into_iter()
    .map(|(key, value)| {
        let value = match key {
            "server_login_retry" => format!("{}", server_login_retry.as_secs_f64()),
            _ => value.to_string(),
        };
        (key, value)
    })
    .collect()
}

/// Where PgBouncer sends one of its databases: a server's address and database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The database name clients use (the `[databases]` key).
    pub name: String,
    /// The server's host: a Unix socket directory or a TCP host.
    pub host: Host,
    pub port: u16,
    /// The database name on the server. PgBouncer logs in to it as the
    /// client's own role, never as a forced (super)user.
    pub dbname: String,
    /// For servers pgmaint did not make (adopted clusters): the role whose
    /// `auth_query` looks up clients' own passwords on the server, so
    /// clients keep their roles. `None`: the logins pgmaint made.
    pub auth_user: Option<String>,
}

impl Route {
    /// The route for `name` to database `dbname` of the server at `address`.
    pub fn to(name: &str, address: &ServerAddress, dbname: &str) -> Route {
        Route { name: name.to_string(), host: address.host.clone(), port: address.port, dbname: dbname.to_string(), auth_user: None }
    }

    /// The same route, clients' passwords looked up on the server as `user`.
    pub fn with_auth_user(mut self, user: &str) -> Route {
        self.auth_user = Some(user.to_string());
        self
    }

    /// `dbname@host:port`, for messages.
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.dbname, self.host, self.port)
    }

    fn validate(&self) -> Result<(), EndpointError> {
        check_name("database name", &self.name)?;
        if self.name == ADMIN_DB {
            return Err(EndpointError::Invalid(format!("{ADMIN_DB:?} is PgBouncer's admin console, not a route name")));
        }
        check_name("server database name", &self.dbname)?;
        if let Some(user) = &self.auth_user {
            check_name("auth_user", user)?;
        }
        match &self.host {
            Host::Socket(dir) => {
                check_path("server socket directory", dir)?;
                if !dir.is_absolute() {
                    return Err(EndpointError::Invalid(format!("server socket directory {} is not absolute", dir.display())));
                }
            }
            Host::Tcp(host) => {
                let ok = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
                if !ok {
                    return Err(EndpointError::Invalid(format!("server host {host:?}: use a host name or an IP address")));
                }
            }
        }
        Ok(())
    }

    fn ini_value(&self) -> String {
        let mut value = format!("host={} port={} dbname={}", self.host, self.port, self.dbname);
        if let Some(user) = &self.auth_user {
            value.push_str(&format!(" auth_user={user}"));
        }
        value
    }
}

/// A SHOW CONFIG value against the one written: PgBouncer may print numbers
/// in another form (`0.10` for `0.1`).
fn same_value(shown: &str, written: &str) -> bool {
    shown == written || matches!((shown.parse::<f64>(), written.parse::<f64>()), (Ok(a), Ok(b)) if (a - b).abs() < 1e-9)
}

/// Names go bare into the ini file (PgBouncer 1.18 takes `orders-db = ...`)
/// and double-quoted into admin commands, whose parser wants `-` quoted:
/// keep them free of quotes, spaces and `=`.
fn check_name(what: &str, name: &str) -> Result<(), EndpointError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(EndpointError::Invalid(format!(
            "{what} {name:?}: use 1-63 ASCII letters, digits, '-' and '_', starting with a letter or '_'"
        )))
    }
}

/// A checked name as an admin command argument.
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

/// Paths go unquoted into connection strings: no spaces, quotes or `=`.
fn check_path(what: &str, path: &Path) -> Result<(), EndpointError> {
    let text = path.to_str().unwrap_or("");
    let ok = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@:,".contains(c));
    if ok {
        Ok(())
    } else {
        Err(EndpointError::Invalid(format!(
            "{what} {}: use only ASCII letters, digits and / . _ - + @ : ,",
            path.display()
        )))
    }
}

/// What `ensure_started` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsureOutcome {
    /// It was running with this configuration: nothing was done.
    Unchanged,
    /// It was running; the new configuration was written and reloaded.
    Reloaded,
    /// It was not running and was started.
    Started,
}

/// One row of `SHOW DATABASES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRow {
    pub name: String,
    /// The server host (for us, a socket directory); empty for the admin console.
    pub host: String,
    pub port: u16,
    /// The database name on the server.
    pub database: String,
    pub force_user: Option<String>,
    pub pool_size: u32,
    pub pool_mode: Option<String>,
    pub current_connections: u32,
    pub paused: bool,
    pub disabled: bool,
}

impl DatabaseRow {
    /// Does this database point where `route` says?
    pub fn matches(&self, route: &Route) -> bool {
        self.name == route.name
            && Host::parse(&self.host) == route.host
            && self.port == route.port
            && self.database == route.dbname
    }

    /// `database@host:port`, for messages.
    pub fn target(&self) -> String {
        format!("{}@{}:{}", self.database, self.host, self.port)
    }
}

/// One row of `SHOW POOLS` (one pool per database and user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRow {
    pub database: String,
    pub user: String,
    /// Clients linked to a server or idle.
    pub cl_active: u32,
    /// Clients that sent a query and wait for a server (e.g. while paused).
    pub cl_waiting: u32,
    pub sv_active: u32,
    pub sv_idle: u32,
    pub sv_used: u32,
    pub sv_tested: u32,
    pub sv_login: u32,
    /// How long the oldest waiting client has waited.
    pub maxwait: Duration,
    pub pool_mode: String,
}

/// One PgBouncer instance living in its own directory.
#[derive(Debug, Clone)]
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    /// TCP addresses, all on `port` (PgBouncer has one listen_port); none: Unix socket only.
    listen: Vec<IpAddr>,
    tls: Option<ClientTls>,
    server_login_retry: Duration,
    user: ServerUser,
    program: PathBuf,
}

/// TLS for clients (PgBouncer's `client_tls_*`): files the server user can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// `client_tls_sslmode`: `allow`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub sslmode: String,
}

impl ClientTls {
    /// Modes in which PgBouncer refuses clients without TLS: their URL asks for it.
    fn required(&self) -> bool {
        matches!(self.sslmode.as_str(), "require" | "verify-ca" | "verify-full")
    }
}

impl PgBouncer {
    /// Describes the instance that lives (or will live) in `dir`; touches nothing.
    pub fn at(dir: impl Into<PathBuf>, user: ServerUser) -> PgBouncer {
        PgBouncer {
            dir: dir.into(),
            port: DEFAULT_PORT,
            listen: Vec::new(),
            tls: None,
            server_login_retry: DEFAULT_LOGIN_RETRY,
            user,
            program: find_program(),
        }
    }

    /// Listen on TCP at `addresses` besides the Unix socket. They must share
    /// one port (PgBouncer has one `listen_port`), which the socket takes too.
    pub fn with_listen(mut self, addresses: &[SocketAddr]) -> Result<PgBouncer, EndpointError> {
        let Some(first) = addresses.first() else { return Ok(self) };
        if let Some(other) = addresses.iter().find(|a| a.port() != first.port()) {
            return Err(EndpointError::Invalid(format!("listen addresses {first} and {other} differ in port; PgBouncer listens on one port")));
        }
        self.port = first.port();
        self.listen = addresses.iter().map(SocketAddr::ip).collect();
        Ok(self)
    }

    /// TLS for clients (optional).
    pub fn with_tls(mut self, tls: Option<ClientTls>) -> PgBouncer {
        self.tls = tls;
        self
    }

    /// PgBouncer's `server_login_retry` (see `pooler_settings`).
    pub fn with_server_login_retry(mut self, retry: Duration) -> PgBouncer {
        self.server_login_retry = retry;
        self
    }

    /// Use this pgbouncer executable instead of the one found on the system.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> PgBouncer {
        self.program = program.into();
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn ini_file(&self) -> PathBuf {
        self.dir.join("pgbouncer.ini")
    }
    pub fn userlist_file(&self) -> PathBuf {
        self.dir.join("userlist.txt")
    }
    pub fn hba_file(&self) -> PathBuf {
        self.dir.join("pgbouncer_hba.conf")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("pgbouncer.pid")
    }
    pub fn log_file(&self) -> PathBuf {
        self.dir.join("pgbouncer.log")
    }
    fn lock_file(&self) -> PathBuf {
        self.dir.join("pgbouncer.lock")
    }
    fn socket_file(&self) -> PathBuf {
        self.dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// The URL applications use for database `db` as `role`: over TCP at the
    /// first listen address (this host's name when that is a wildcard), with
    /// `sslmode=require` when the endpoint requires TLS. Maintenances never
    /// change it; a credentials rotation does. It holds the password: never log it.
    pub fn client_url(&self, role: &str, password: &str, db: &str) -> String {
        self.url(&format!("{role}:{password}@"), db)
    }

    /// The URL of database `db` without a login: clients of an adopted
    /// cluster bring their own role and password.
    pub fn url_without_login(&self, db: &str) -> String {
        self.url("", db)
    }

    fn url(&self, login: &str, db: &str) -> String {
        let tls = if self.tls.as_ref().is_some_and(ClientTls::required) { "?sslmode=require" } else { "" };
        format!("postgresql://{login}{}/{db}{tls}", self.public_address())
    }

    /// `host:port` of the TCP endpoint as clients name it (the Unix socket
    /// directory as libpq's `host` when there is no TCP listener).
    fn public_address(&self) -> String {
        match self.listen.first() {
            Some(ip) if ip.is_unspecified() => {
                let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into());
                format!("{host}:{}", self.port)
            }
            Some(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            Some(ip) => format!("{ip}:{}", self.port),
            None => format!("{}:{}", self.dir.display().to_string().replace('/', "%2F"), self.port),
        }
    }

    /// The database a URL made by [`client_url`](Self::client_url) names, if it is one.
    pub fn database_of_url<'u>(&self, url: &'u str) -> Option<&'u str> {
        let rest = url.strip_prefix("postgresql://")?;
        let rest = rest.rsplit_once('@').map_or(rest, |(_, address)| address);
        let path = rest.strip_prefix(&self.public_address())?.strip_prefix('/')?;
        Some(path.split_once('?').map_or(path, |(db, _)| db))
    }

    /// pgmaint's own way in: database `db` as the superuser over the Unix socket.
    pub fn client_conninfo(&self, db: &str) -> String {
        format!("host={} port={} user={SUPERUSER} dbname={db}", self.dir.display(), self.port)
    }

    /// The pid of the pgbouncer serving this directory, if one is alive: the
    /// pidfile's pid must be a live (not zombie) process whose command line
    /// names this instance's ini file, so a recycled pid is not mistaken for it.
    pub fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file()).ok()?.trim().parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The state follows the parenthesised command name, which may itself hold ") ".
        let state = stat.rsplit_once(") ")?.1.chars().next()?;
        if state == 'Z' || state == 'X' {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ini = self.ini_file();
        let ini = ini.as_os_str().as_encoded_bytes();
        cmdline.split(|b| *b == 0).any(|arg| arg == ini).then_some(pid)
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// The routes recorded in the ini file (what PgBouncer was last told).
    pub fn routes(&self) -> Result<Vec<Route>, EndpointError> {
        let path = self.ini_file();
        let text = std::fs::read_to_string(&path).map_err(|e| EndpointError::io(&path, e))?;
        parse_routes(&text)
    }

    /// Makes sure PgBouncer runs here routing exactly `routes`: writes the
    /// configuration, starts the daemon if it is not running, reloads it if it
    /// runs with another configuration, and does nothing if it already runs
    /// with this one. Safe to call again at any time.
    /// `logins` are the roles clients may log in as over TCP, with their SCRAM verifiers.
    pub async fn ensure_started(&self, routes: &[Route], logins: &[ValidLogin]) -> Result<EnsureOutcome, EndpointError> {
        for (i, route) in routes.iter().enumerate() {
            route.validate()?;
            if routes[..i].iter().any(|r| r.name == route.name) {
                return Err(EndpointError::Invalid(format!("database {} is routed twice", route.name)));
            }
        }
        check_path("pgbouncer directory", &self.dir)?;
        let socket = self.socket_file();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(EndpointError::Invalid(format!(
                "socket path {} is longer than {MAX_SOCKET_PATH} bytes; choose a shorter directory",
                socket.display()
            )));
        }
        for (role, verifier) in logins {
            check_name("login role", role)?;
            // An auth_user logs in to adopted servers itself: PgBouncer needs its password.
            let auth_user = routes.iter().any(|r| r.auth_user.as_deref() == Some(role.as_str()));
            if auth_user {
                if verifier.is_empty() || verifier.contains(['\n', '\r', '\0']) {
                    return Err(EndpointError::Invalid(format!("auth_user {role}: the password is empty or spans lines")));
                }
            } else if !verifier.starts_with("SCRAM-SHA-256$") || verifier.contains(['"', '\n', ' ']) {
                return Err(EndpointError::Invalid(format!("login role {role}: not a SCRAM-SHA-256 verifier")));
            }
        }
        self.user.own_dir(&self.dir, 0o700)?;
        let _lock = self.lock().await?;
        let changed = self.write_config(routes, logins)?;
        if self.is_running() {
            let mut admin = self.admin().await?;
            let config = admin.show_config().await?;
            let setting = |key: &str| config.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("");
            if setting("listen_addr") != self.listen_addr() || !same_value(setting("listen_port"), &self.port.to_string()) {
                // Listeners change only at start: a restart, which cuts clients.
                drop(admin);
                self.stop_locked().await?;
                self.start().await?;
                tracing::warn!(dir = %self.dir.display(), "pgbouncer restarted: its listen addresses changed");
                return Ok(EnsureOutcome::Started);
            }
            let rows = admin.show_databases().await?;
            let same_routes = routes.iter().all(|r| rows.iter().any(|row| row.matches(r)))
                && rows.iter().all(|row| row.name == ADMIN_DB || routes.iter().any(|r| r.name == row.name));
            let same_settings = pooler_settings(self.server_login_retry)
                .iter()
                .all(|(key, value)| config.iter().any(|(k, v)| k == key && same_value(v, value)));
            if same_routes && same_settings && !changed {
                return Ok(EnsureOutcome::Unchanged);
            }
            admin.reload().await?;
            for route in routes {
                admin.verify_route(route).await?;
            }
            tracing::info!(dir = %self.dir.display(), "pgbouncer reloaded with a new configuration");
            return Ok(EnsureOutcome::Reloaded);
        }
        self.start().await?;
        Ok(EnsureOutcome::Started)
    }

    /// Stops the daemon: SIGINT (PgBouncer's safe shutdown, which waits for
    /// transactions in flight), then SIGTERM (immediate), then SIGKILL, each
    /// after a few seconds. Already stopped is fine.
    pub async fn stop(&self) -> Result<(), EndpointError> {
        let _lock = self.lock().await?;
        self.stop_locked().await
    }

    /// [`stop`](Self::stop), for a caller that holds the lock.
    async fn stop_locked(&self) -> Result<(), EndpointError> {
        if let Some(pid) = self.pid() {
            let mut gone = false;
            for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGKILL] {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
                let deadline = Instant::now() + STOP_STEP;
                while Instant::now() < deadline {
                    if self.pid().is_none() {
                        gone = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if gone {
                    tracing::info!(dir = %self.dir.display(), pid, ?signal, "pgbouncer stopped");
                    break;
                }
            }
            if !gone {
                return Err(EndpointError::Stop {
                    dir: self.dir.display().to_string(),
                    detail: format!("pid {pid} survived SIGKILL"),
                });
            }
        }
        self.remove_stale_pidfile()
    }

    /// A persistent connection to the admin console.
    pub async fn admin(&self) -> Result<AdminConsole, EndpointError> {
        let client = self.admin_client().await?;
        Ok(AdminConsole { bouncer: self.clone(), client })
    }

    async fn admin_client(&self) -> Result<tokio_postgres::Client, EndpointError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(ADMIN_DB)
            .application_name("pgmaint")
            .connect_timeout(CONNECT_TIMEOUT);
        let target = || format!("{}", self.socket_file().display());
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| EndpointError::Connect { target: target(), detail: format!("no answer within {CONNECT_TIMEOUT:?}") })?
            .map_err(|e| EndpointError::Connect { target: target(), detail: error_text(&e) })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Writes the ini, auth and hba files; true if any changed. The caller holds the lock.
    fn write_config(&self, routes: &[Route], logins: &[ValidLogin]) -> Result<bool, EndpointError> {
        let mut userlist = format!("\"{SUPERUSER}\" \"\"\n");
        for (role, secret) in logins {
            // auth_file quotes a `"` by doubling it.
            userlist.push_str(&format!("\"{}\" \"{}\"\n", role.replace('"', "\"\""), secret.replace('"', "\"\"")));
        }
        let mut auth_users: Vec<&str> = routes.iter().filter_map(|r| r.auth_user.as_deref()).collect();
        auth_users.sort_unstable();
        auth_users.dedup();
        let mut changed = self.write_ini(routes)?;
        for (path, text) in [(self.userlist_file(), userlist), (self.hba_file(), render_hba(&auth_users))] {
            changed |= self.write_private(&path, &text)?;
        }
        Ok(changed)
    }

    /// Writes the ini file alone (the routes); true if it changed. The caller holds the lock.
    fn write_ini(&self, routes: &[Route]) -> Result<bool, EndpointError> {
        self.write_private(&self.ini_file(), &self.render_ini(routes))
    }

    /// A file only the server user reads; true if it changed.
    fn write_private(&self, path: &Path, text: &str) -> Result<bool, EndpointError> {
        let changed = write_if_changed(path, text, 0o600)?;
        if changed {
            self.user.give(path)?;
        }
        Ok(changed)
    }

    /// `listen_addr` as written (and as SHOW CONFIG shows it).
    fn listen_addr(&self) -> String {
        self.listen.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(",")
    }

    fn render_ini(&self, routes: &[Route]) -> String {
        let mut text = String::from(";; Written by pgmaint; edits are overwritten.\n\n[databases]\n");
        for route in routes {
            text.push_str(&format!("{} = {}\n", route.name, route.ini_value()));
        }
        text.push_str("\n[pgbouncer]\n");
        // TCP where configured; the Unix socket lives beside the config.
        text.push_str(&format!("listen_addr = {}\n", self.listen_addr()));
        text.push_str(&format!("listen_port = {}\n", self.port));
        text.push_str(&format!("unix_socket_dir = {}\n", self.dir.display()));
        text.push_str(&format!("pidfile = {}\n", self.pid_file().display()));
        text.push_str(&format!("logfile = {}\n", self.log_file().display()));
        text.push_str(&format!("auth_file = {}\n", self.userlist_file().display()));
        text.push_str(&format!("auth_hba_file = {}\n", self.hba_file().display()));
        if let Some(tls) = &self.tls {
            text.push_str(&format!("client_tls_sslmode = {}\n", tls.sslmode));
            text.push_str(&format!("client_tls_cert_file = {}\n", tls.cert_file.display()));
            text.push_str(&format!("client_tls_key_file = {}\n", tls.key_file.display()));
        }
        for (key, value) in pooler_settings(self.server_login_retry) {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text
    }

    /// Spawns the daemon and waits until its admin console answers.
    async fn start(&self) -> Result<(), EndpointError> {
        self.remove_stale_pidfile()?;
        // PgBouncer needs a descriptor per client and per server connection
        // (max_client_conn + pools) and does not raise its limit itself; the
        // usual soft limit of 1024 is below that, and runuser's pam_limits
        // resets it to 1024 whatever pgmaint's own limit is. So start it
        // through a shell that raises the soft limit to the hard one (at most
        // 65536), then execs pgbouncer (whose command line stays
        // `pgbouncer -d <ini>`).
        let mut command = self.user.command(Path::new("/bin/sh"), &self.dir);
        command
            .arg("-c")
            .arg(RAISE_FD_LIMIT_AND_EXEC)
            .arg(&self.program)
            .arg("-d")
            .arg(self.ini_file());
        let out = command.output().await.map_err(|e| EndpointError::Spawn {
            program: self.program.display().to_string(),
            source: e,
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(self.start_error(format!("exit {}: {stderr}", out.status)));
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no pidfile yet");
        while Instant::now() < deadline {
            if self.is_running() {
                match self.admin_client().await {
                    Ok(_) => {
                        tracing::info!(dir = %self.dir.display(), pid = self.pid(), "pgbouncer started");
                        return Ok(());
                    }
                    Err(e) => last = e.to_string(),
                }
            } else if self.pid_file().exists() {
                last = "the process exited".into();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(self.start_error(format!("not ready after {START_TIMEOUT:?}: {last}")))
    }

    fn start_error(&self, detail: String) -> EndpointError {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
        EndpointError::Start { dir: self.dir.display().to_string(), detail: format!("{detail}; log: {tail}") }
    }

    /// A pidfile whose process is gone (a kill -9, a reboot) would make the
    /// next pgbouncer refuse to start, or name someone else's process.
    fn remove_stale_pidfile(&self) -> Result<(), EndpointError> {
        if self.pid().is_some() {
            return Ok(());
        }
        match std::fs::remove_file(self.pid_file()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EndpointError::io(&self.pid_file(), e)),
        }
    }

    /// Serialises configuration changes across tasks and processes (flock on
    /// `D/pgbouncer.lock`), so concurrent repoints of different databases
    /// cannot overwrite each other's ini edits.
    async fn lock(&self) -> Result<Flock<File>, EndpointError> {
        let path = self.lock_file();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| EndpointError::io(&path, e))?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(lock),
                Err((f, Errno::EWOULDBLOCK)) => {
                    file = f;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((_, errno)) => return Err(EndpointError::io(&path, errno.into())),
            }
        }
    }
}

/// The admin console over one persistent connection: a fresh connection per
/// command costs a few milliseconds that the critical section cannot spare.
/// A connection found closed is reopened before the next command.
pub struct AdminConsole {
    bouncer: PgBouncer,
    client: tokio_postgres::Client,
}

impl AdminConsole {
    pub fn bouncer(&self) -> &PgBouncer {
        &self.bouncer
    }

    /// Replaces the connection (closed, or stuck behind a PAUSE that never answered).
    async fn reconnect(&mut self) -> Result<(), EndpointError> {
        self.client = self.bouncer.admin_client().await?;
        Ok(())
    }

    /// One admin command; only the simple query protocol works on the console.
    async fn command(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, EndpointError> {
        if self.client.is_closed() {
            self.reconnect().await?;
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, self.client.simple_query(sql)).await {
            Ok(result) => result.map_err(|e| EndpointError::Admin { command: sql.to_string(), source: e }),
            Err(_) => {
                // The answer may still come; this connection is out of step now.
                let _ = self.reconnect().await;
                Err(EndpointError::AdminTimeout { command: sql.to_string(), timeout: COMMAND_TIMEOUT })
            }
        }
    }

    /// PAUSE `db`: waits until no transaction of `db` runs, closes its server
    /// connections, and holds new queries. Returns how long that took. If it
    /// does not complete within `timeout`, or fails, the database is resumed
    /// before the error is returned: it is never left paused by this call.
    pub async fn pause(&mut self, db: &str, timeout: Duration) -> Result<Duration, EndpointError> {
        check_name("database name", db)?;
        if self.client.is_closed() {
            self.reconnect().await?;
        }
        let sql = format!("PAUSE {}", quoted(db));
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, self.client.simple_query(&sql)).await;
        let waited = started.elapsed();
        match outcome {
            Ok(Ok(_)) => {
                tracing::info!(db, ?waited, "pgbouncer: paused");
                Ok(waited)
            }
            Ok(Err(source)) => {
                // Refused (no such database) or the connection broke: in the
                // second case PgBouncer may have paused it; resume to be sure.
                let _ = self.reconnect().await;
                if let Err(e) = self.resume(db).await {
                    tracing::error!(db, error = %e, "pgbouncer: RESUME after a failed PAUSE failed");
                }
                Err(EndpointError::Admin { command: sql, source })
            }
            Err(_) => {
                // PgBouncer has marked the database paused and answers this
                // connection nothing more until every transaction ends; even
                // after a RESUME it would never answer this PAUSE. Abandon the
                // connection and resume over a fresh one.
                self.reconnect().await?;
                let resume_error = self.resume(db).await.err().map(|e| e.to_string());
                tracing::warn!(db, ?timeout, ?resume_error, "pgbouncer: PAUSE timed out");
                Err(EndpointError::PauseTimeout { db: db.to_string(), timeout, resume_error })
            }
        }
    }

    /// RESUME `db`. Idempotent: a database that is not paused (or not
    /// configured) is fine, so a restarted pgmaint can resume blindly.
    /// A failure on the persistent connection is retried once on a fresh one.
    pub async fn resume(&mut self, db: &str) -> Result<(), EndpointError> {
        check_name("database name", db)?;
        let sql = format!("RESUME {}", quoted(db));
        let mut last = None;
        for attempt in 0..2 {
            if attempt > 0 && self.reconnect().await.is_err() {
                continue;
            }
            match self.command(&sql).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    // PgBouncer refuses RESUME of a database that is not paused:
                    // observe instead of parsing its message.
                    match self.database(db).await {
                        Ok(None) => return Ok(()),
                        Ok(Some(row)) if !row.paused => return Ok(()),
                        _ => last = Some(e),
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| EndpointError::Connect {
            target: self.bouncer.socket_file().display().to_string(),
            detail: "could not reconnect to resume".into(),
        }))
    }

    /// RELOAD: re-reads the ini file and the userlist. Server connections of a
    /// database whose target changed are closed as they are released, and new
    /// ones go to the new target.
    pub async fn reload(&mut self) -> Result<(), EndpointError> {
        self.command("RELOAD").await.map(|_| ())
    }

    /// Points `route.name` at `route`'s server: rewrites the ini file (the
    /// record), RELOADs, and checks SHOW DATABASES agrees. Normally done while
    /// the database is paused. Repeating it is harmless.
    pub async fn repoint(&mut self, route: &Route) -> Result<(), EndpointError> {
        route.validate()?;
        let _lock = self.bouncer.lock().await?;
        let mut routes = self.bouncer.routes()?;
        match routes.iter_mut().find(|r| r.name == route.name) {
            Some(existing) => *existing = route.clone(),
            None => routes.push(route.clone()),
        }
        self.bouncer.write_ini(&routes)?;
        self.reload().await?;
        self.verify_route(route).await?;
        tracing::info!(db = %route.name, target = %route.target(), "pgbouncer: repointed");
        Ok(())
    }

    async fn verify_route(&mut self, route: &Route) -> Result<(), EndpointError> {
        match self.database(&route.name).await? {
            Some(row) if row.matches(route) => Ok(()),
            other => Err(EndpointError::RouteMismatch {
                db: route.name.clone(),
                expected: route.target(),
                actual: other.map(|r| r.target()).unwrap_or_else(|| "nowhere (not configured)".into()),
            }),
        }
    }

    pub async fn show_databases(&mut self) -> Result<Vec<DatabaseRow>, EndpointError> {
        rows(self.command("SHOW DATABASES").await?).iter().map(parse_database_row).collect()
    }

    /// `SHOW CONFIG` as (key, value) pairs: the settings in force.
    pub async fn show_config(&mut self) -> Result<Vec<(String, String)>, EndpointError> {
        rows(self.command("SHOW CONFIG").await?)
            .iter()
            .map(|row| Ok((required(row, "key")?.to_string(), text(row, "value")?.unwrap_or("").to_string())))
            .collect()
    }

    pub async fn show_pools(&mut self) -> Result<Vec<PoolRow>, EndpointError> {
        rows(self.command("SHOW POOLS").await?).iter().map(parse_pool_row).collect()
    }

    /// The SHOW DATABASES row for `db`, if PgBouncer knows it.
    pub async fn database(&mut self, db: &str) -> Result<Option<DatabaseRow>, EndpointError> {
        Ok(self.show_databases().await?.into_iter().find(|row| row.name == db))
    }

    /// Is `db` paused right now (SHOW DATABASES, column `paused`)?
    pub async fn is_paused(&mut self, db: &str) -> Result<bool, EndpointError> {
        Ok(self.database(db).await?.is_some_and(|row| row.paused))
    }

    /// PAUSE `db` (as [`pause`](Self::pause)) and return a guard that must be
    /// resumed with [`Paused::resume`]; if it is dropped instead, its Drop
    /// resumes the database before returning.
    pub async fn pause_guarded(&mut self, db: &str, timeout: Duration) -> Result<Paused<'_>, EndpointError> {
        let waited = self.pause(db, timeout).await?;
        Ok(Paused { admin: self, db: db.to_string(), waited, armed: true })
    }

    /// Runs `body` with `db` paused and resumes afterwards whatever happens:
    /// on success, on error, and on panic (resumed first, then the panic goes
    /// on). The body gets the console to act with (e.g. `repoint`):
    /// `admin.with_paused("app", t, |admin| Box::pin(async move { ... })).await`.
    /// A failed RESUME after a failed body is logged; the body's error wins.
    pub async fn with_paused<T, E, F>(&mut self, db: &str, timeout: Duration, body: F) -> Result<T, E>
    where
        E: From<EndpointError>,
        F: for<'a> FnOnce(&'a mut AdminConsole) -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>,
    {
        let mut paused = self.pause_guarded(db, timeout).await?;
        let outcome = {
            let mut future = body(paused.admin());
            std::future::poll_fn(|cx| match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
                Ok(Poll::Pending) => Poll::Pending,
                Err(panic) => Poll::Ready(Err(panic)),
            })
            .await
        };
        let resumed = paused.resume().await;
        match outcome {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(Err(e)) => {
                if let Err(r) = resumed {
                    tracing::error!(db, error = %r, "pgbouncer: RESUME after a failed paused section failed");
                }
                Err(e)
            }
            Ok(Ok(value)) => {
                resumed?;
                Ok(value)
            }
        }
    }
}

/// A database paused through an [`AdminConsole`]. Resume it with
/// [`resume`](Paused::resume); dropping it unresumed (early return, panic,
/// cancelled future) resumes it synchronously over a fresh connection from a
/// helper thread, because Drop cannot await.
pub struct Paused<'a> {
    admin: &'a mut AdminConsole,
    db: String,
    waited: Duration,
    armed: bool,
}

impl Paused<'_> {
    /// The console, to act while paused (repoint, observe).
    pub fn admin(&mut self) -> &mut AdminConsole {
        self.admin
    }

    pub fn db(&self) -> &str {
        &self.db
    }

    /// How long the PAUSE took to complete.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// RESUME the database: the normal end of a paused section.
    pub async fn resume(mut self) -> Result<(), EndpointError> {
        self.armed = false;
        let db = std::mem::take(&mut self.db);
        self.admin.resume(&db).await
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let bouncer = self.admin.bouncer.clone();
        let db = self.db.clone();
        let result = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = bouncer.admin().await.map_err(|e| e.to_string())?;
                admin.resume(&db).await.map_err(|e| e.to_string())
            })
        })
        .join();
        match result {
            Ok(Ok(())) => tracing::warn!(db = %self.db, "pgbouncer: paused section ended without resume; resumed on drop"),
            Ok(Err(e)) => tracing::error!(db = %self.db, error = %e, "pgbouncer: RESUME on drop failed; database may still be paused"),
            Err(_) => tracing::error!(db = %self.db, "pgbouncer: RESUME on drop panicked; database may still be paused"),
        }
    }
}

/// `sh -c` script: raise the soft open-files limit, then exec "$0" "$@".
const RAISE_FD_LIMIT_AND_EXEC: &str = r#"h=$(ulimit -Hn); case "$h" in unlimited|*[!0-9]*) h=65536;; esac; [ "$h" -gt 65536 ] && h=65536; ulimit -n "$h" 2>/dev/null; exec "$0" "$@""#;

/// The pgbouncer executable: on PATH, else where distributions put it.
fn find_program() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("pgbouncer")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"].map(PathBuf::from))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("pgbouncer"))
}

/// PgBouncer's host-based authentication: the superuser over the Unix
/// socket only (its directory is private to the server user), never over
/// TCP, and likewise the `auth_users` that look up adopted clusters' client
/// passwords (never a client login of their own); every other role over
/// TCP with SCRAM-SHA-256; nothing else.
fn render_hba(auth_users: &[&str]) -> String {
    let mut text = format!(
        "# Written by pgmaint; edits are overwritten.\n\
         local all {SUPERUSER} trust\n\
         host all {SUPERUSER} 0.0.0.0/0 reject\n\
         host all {SUPERUSER} ::/0 reject\n"
    );
    for user in auth_users {
        text.push_str(&format!("host all {user} 0.0.0.0/0 reject\nhost all {user} ::/0 reject\n"));
    }
    text.push_str("host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n");
    text
}

/// Writes `text` atomically (temp file + rename) unless the file already holds it.
fn write_if_changed(path: &Path, text: &str, mode: u32) -> Result<bool, EndpointError> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| EndpointError::io(&tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(|e| EndpointError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| EndpointError::io(path, e))?;
    Ok(true)
}

/// The `[databases]` entries of an ini file pgmaint wrote.
fn parse_routes(text: &str) -> Result<Vec<Route>, EndpointError> {
    let mut routes = Vec::new();
    let mut in_databases = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            in_databases = line == "[databases]";
            continue;
        }
        if !in_databases {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or_else(|| EndpointError::Parse(format!("ini line {line:?}")))?;
        let (mut host, mut port, mut dbname, mut auth_user) = (None, None, None, None);
        for pair in value.split_whitespace() {
            match pair.split_once('=') {
                Some(("auth_user", v)) => auth_user = Some(v.to_string()),
                Some(("host", v)) => host = Some(Host::parse(v)),
                Some(("port", v)) => port = v.parse().ok(),
                Some(("dbname", v)) => dbname = Some(v.to_string()),
                _ => {}
            }
        }
        match (host, port, dbname) {
            (Some(host), Some(port), Some(dbname)) => {
                routes.push(Route { name: name.trim().trim_matches('"').to_string(), host, port, dbname, auth_user })
            }
            _ => return Err(EndpointError::Parse(format!("ini database line {line:?} lacks host, port or dbname"))),
        }
    }
    Ok(routes)
}

fn rows(messages: Vec<SimpleQueryMessage>) -> Vec<SimpleQueryRow> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect()
}

fn text<'r>(row: &'r SimpleQueryRow, column: &str) -> Result<Option<&'r str>, EndpointError> {
    row.try_get(column).map_err(|_| EndpointError::Parse(format!("no column {column:?} in pgbouncer's answer")))
}

fn required<'r>(row: &'r SimpleQueryRow, column: &str) -> Result<&'r str, EndpointError> {
    text(row, column)?.ok_or_else(|| EndpointError::Parse(format!("column {column:?} is NULL")))
}

fn number<T: std::str::FromStr + Default>(row: &SimpleQueryRow, column: &str) -> Result<T, EndpointError> {
    match text(row, column)? {
        None | Some("") => Ok(T::default()),
        Some(v) => v.parse().map_err(|_| EndpointError::Parse(format!("column {column:?} = {v:?} is not a number"))),
    }
}

fn parse_database_row(row: &SimpleQueryRow) -> Result<DatabaseRow, EndpointError> {
    Ok(DatabaseRow {
        name: required(row, "name")?.to_string(),
        host: text(row, "host")?.unwrap_or("").to_string(),
        port: number(row, "port")?,
        database: text(row, "database")?.unwrap_or("").to_string(),
        force_user: text(row, "force_user")?.filter(|u| !u.is_empty()).map(str::to_string),
        pool_size: number(row, "pool_size")?,
        pool_mode: text(row, "pool_mode")?.filter(|m| !m.is_empty()).map(str::to_string),
        current_connections: number(row, "current_connections")?,
        paused: number::<u32>(row, "paused")? != 0,
        disabled: number::<u32>(row, "disabled")? != 0,
    })
}

fn parse_pool_row(row: &SimpleQueryRow) -> Result<PoolRow, EndpointError> {
    let secs: u64 = number(row, "maxwait")?;
    let micros: u64 = number(row, "maxwait_us")?;
    Ok(PoolRow {
        database: required(row, "database")?.to_string(),
        user: required(row, "user")?.to_string(),
        cl_active: number(row, "cl_active")?,
        cl_waiting: number(row, "cl_waiting")?,
        sv_active: number(row, "sv_active")?,
        sv_idle: number(row, "sv_idle")?,
        sv_used: number(row, "sv_used")?,
        sv_tested: number(row, "sv_tested")?,
        sv_login: number(row, "sv_login")?,
        maxwait: Duration::from_secs(secs) + Duration::from_micros(micros),
        pool_mode: text(row, "pool_mode")?.unwrap_or("").to_string(),
    })
}

/// A tokio-postgres error with the server's message, which Display alone omits.
fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: &str, port: u16, dbname: &str) -> Route {
        Route::to(name, &ServerAddress::new(Host::parse(host), port, "postgres"), dbname)
    }

    fn bouncer() -> PgBouncer {
        PgBouncer::at("/tmp/pgm/bouncer", ServerUser::detect().unwrap())
    }

    #[test]
    fn ini_round_trips_routes() {
        let routes = vec![
            route("app", "/tmp/pgm/p", 5432, "app"),
            route("other", "/tmp/pgm/r", 5433, "postgres"),
            route("adopted", "10.0.0.7", 5432, "shop").with_auth_user("pgmaint"),
        ];
        let ini = bouncer().render_ini(&routes);
        assert!(ini.contains("app = host=/tmp/pgm/p port=5432 dbname=app\n"));
        assert!(ini.contains("pool_mode = transaction\n"));
        assert!(ini.contains("unix_socket_dir = /tmp/pgm/bouncer\n"));
        assert_eq!(parse_routes(&ini).unwrap(), routes);
        assert!(parse_routes("[databases]\nx = port=1\n").is_err());
    }

    #[test]
    fn client_endpoints() {
        let b = bouncer();
        assert_eq!(b.client_conninfo("app"), "host=/tmp/pgm/bouncer port=6432 user=postgres dbname=app");
        let tcp = b.clone().with_listen(&["127.0.0.1:7000".parse().unwrap(), "10.0.0.5:7000".parse().unwrap()]).unwrap();
        let url = tcp.client_url("app_1", "s3cret", "app");
        assert_eq!(url, "postgresql://app_1:s3cret@127.0.0.1:7000/app");
        assert_eq!(tcp.database_of_url(&url), Some("app"));
        assert_eq!(tcp.database_of_url("postgresql://x:y@10.9.9.9:7000/app"), None);
        assert_eq!(tcp.url_without_login("shop"), "postgresql://127.0.0.1:7000/shop");
        assert_eq!(tcp.database_of_url(&tcp.url_without_login("shop")), Some("shop"));
        assert!(tcp.render_ini(&[]).contains("listen_addr = 127.0.0.1,10.0.0.5\nlisten_port = 7000\n"));
        let v6 = b.clone().with_listen(&["[::1]:7000".parse().unwrap()]).unwrap();
        assert_eq!(v6.client_url("a", "p", "d"), "postgresql://a:p@[::1]:7000/d");
        assert!(b.clone().with_listen(&["127.0.0.1:1".parse().unwrap(), "127.0.0.2:2".parse().unwrap()]).is_err());
        let tls = ClientTls { cert_file: "/etc/c.pem".into(), key_file: "/etc/k.pem".into(), sslmode: "require".into() };
        let with_tls = tcp.with_tls(Some(tls));
        assert!(with_tls.client_url("a", "p", "d").ends_with("/d?sslmode=require"));
        assert!(with_tls.render_ini(&[]).contains("client_tls_sslmode = require\nclient_tls_cert_file = /etc/c.pem\n"));
        assert_eq!(with_tls.database_of_url(&with_tls.client_url("a", "p", "d")), Some("d"));
    }

    #[test]
    fn only_the_superuser_uses_the_socket_and_never_tcp() {
        let hba = render_hba(&[]);
        assert!(render_hba(&["pgmaint"]).contains("host all pgmaint 0.0.0.0/0 reject\n"));
        assert!(hba.contains("local all postgres trust\n"));
        assert!(hba.contains("host all postgres 0.0.0.0/0 reject\nhost all postgres ::/0 reject\nhost all all 0.0.0.0/0 scram-sha-256\n"));
        assert!(!hba.contains("local all all"));
    }

    #[test]
    fn names_and_paths_are_checked() {
        assert!(route("app_1", "/tmp/x", 5432, "app").validate().is_ok());
        assert!(route("pgbouncer", "/tmp/x", 5432, "app").validate().is_err());
        assert!(route("app; DROP", "/tmp/x", 5432, "app").validate().is_err());
        assert!(route("app", "/tmp/a b", 5432, "app").validate().is_err());
        let relative = ServerAddress::new(Host::Socket("relative".into()), 5432, "postgres");
        assert!(Route::to("app", &relative, "app").validate().is_err());
        assert!(route("1app", "/tmp/x", 5432, "app").validate().is_err());
        // A TCP host goes into the ini file too: a name or an address, nothing else.
        assert!(route("app", "db1.example", 5432, "app").validate().is_ok());
        assert!(route("app", "10.0.0.5", 5432, "app").validate().is_ok());
        assert!(route("app", "db1 port=1", 5432, "app").validate().is_err());
    }
}
