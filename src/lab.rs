//! A throwaway etcd + Patroni cluster on 127.0.0.1, for tests, benchmarks and
//! demos. Never for production: one etcd member, trust on the members' private
//! sockets, passwords generated per lab, everything under one directory.
//!
//! Adopted Patroni clusters (issue 12) need a real Patroni to test against and
//! to measure the stock setup with; this module builds one with Debian's
//! `patroni` and `etcd` packages. Like the local provider's servers, etcd and
//! every member run as the unprivileged `postgres` OS user when pgmaint is root
//! ([`ServerUser`]), each daemonized with its pid in a pidfile and its output
//! in a log file under the lab's directory. Passwords live only in the
//! members' configuration files (mode 0600, owned by the server user) and in
//! memory, never on a command line.
//!
//! [`haproxy`] holds the other half of the stock setup: HAProxy with Patroni's
//! documented health check in front of a lab, and `patronictl switchover`.

pub mod haproxy;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::provider::local::{find_bindir, ServerUser};
use crate::provider::patroni::Member;
use crate::provider::ProviderError;

/// How long [`PatroniLab::start`] waits for a leader and streaming replicas.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long etcd gets to answer its health check.
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process gets to exit on SIGTERM before SIGKILL (Patroni stops its PostgreSQL first).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Every address a lab listens on.
const HOST: &str = "127.0.0.1";
/// The replication role Patroni creates on bootstrap.
const REPLICATION_USER: &str = "replicator";
/// The superuser Patroni creates (and the one `initdb` makes, run as `postgres`).
pub const LAB_SUPERUSER: &str = "postgres";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab: {0}")]
    Invalid(String),
    #[error("lab: {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("lab: {0}")]
    Os(#[from] ProviderError),
    #[error("lab: starting {program}: {detail}")]
    Spawn { program: String, detail: String },
    #[error("lab: {what} exited; see {log} ({tail})")]
    Exited { what: String, log: PathBuf, tail: String },
    #[error("lab: not ready after {waited:?}: {last}; logs in {dir}")]
    NotReady { waited: Duration, last: String, dir: PathBuf },
    #[error("lab: REST {url}: {detail}")]
    Rest { url: String, detail: String },
    #[error("lab: HAProxy on port {port} did not route every new connection to port {target} within {waited:?}: {last}")]
    Routing { port: u16, target: u16, waited: Duration, last: String },
    #[error("lab: {0}")]
    Workload(#[from] crate::workload::WorkloadError),
    #[error("lab: {0} still running after SIGKILL")]
    StillRunning(String),
}

impl LabError {
    fn io(path: &Path, source: std::io::Error) -> LabError {
        LabError::Io { path: path.to_path_buf(), source }
    }
}

/// The two ports of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberPorts {
    /// Patroni's REST API.
    pub rest: u16,
    /// PostgreSQL over TCP.
    pub pg: u16,
}

/// Every port a lab uses; the number of members is `members.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPorts {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub members: Vec<MemberPorts>,
}

impl LabPorts {
    /// Consecutive ports from `base`: etcd client, etcd peer, then REST and
    /// PostgreSQL for each member in turn.
    pub fn from_base(base: u16, members: usize) -> LabPorts {
        let mut next = base;
        LabPorts::from_fn(members, || {
            next += 1;
            next - 1
        })
    }

    /// Ports handed out one at a time by `next` (a test's free-port picker).
    pub fn from_fn(members: usize, mut next: impl FnMut() -> u16) -> LabPorts {
        let etcd_client = next();
        let etcd_peer = next();
        let members = (0..members).map(|_| MemberPorts { rest: next(), pg: next() }).collect();
        LabPorts { etcd_client, etcd_peer, members }
    }
}

/// A login role created on bootstrap (Patroni's `bootstrap.users`, still
/// supported by Patroni 3.0), superuser: the role pgmaint uses on the cluster.
#[derive(Clone)]
pub struct LabRole {
    pub name: String,
    pub password: String,
}

/// What to build. Passwords are not printed by `Debug`.
#[derive(Clone)]
pub struct LabOptions {
    /// Patroni's `scope` (the cluster's name in the DCS).
    pub scope: String,
    pub ports: LabPorts,
    /// PostgreSQL binaries; `None`: `pg_config --bindir` or the newest installed.
    pub bindir: Option<PathBuf>,
    /// The `postgres` superuser's password (SCRAM over TCP).
    pub superuser_password: String,
    /// A role to create on bootstrap.
    pub pgmaint_role: Option<LabRole>,
    /// Extra PostgreSQL parameters in the DCS (`bootstrap.dcs.postgresql.parameters`).
    pub parameters: Vec<(String, String)>,
}

impl LabOptions {
    /// Scope `pgmaint-lab`, a random superuser password, no extra role or parameters.
    pub fn new(ports: LabPorts) -> LabOptions {
        LabOptions {
            scope: "pgmaint-lab".into(),
            ports,
            bindir: None,
            superuser_password: crate::access::new_password(),
            pgmaint_role: None,
            parameters: Vec::new(),
        }
    }
}

/// Three members on ports 25400 and up.
impl Default for LabOptions {
    fn default() -> LabOptions {
        LabOptions::new(LabPorts::from_base(25400, 3))
    }
}

impl std::fmt::Debug for LabOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabOptions")
            .field("scope", &self.scope)
            .field("ports", &self.ports)
            .field("bindir", &self.bindir)
            .field("pgmaint_role", &self.pgmaint_role.as_ref().map(|r| &r.name))
            .field("parameters", &self.parameters)
            .finish_non_exhaustive()
    }
}

/// One member of a lab, as configured.
#[derive(Debug, Clone)]
pub struct LabMember {
    /// `m1`, `m2`, ...
    pub name: String,
    /// Always 127.0.0.1.
    pub host: String,
    pub pg_port: u16,
    /// `http://127.0.0.1:PORT`
    pub rest_url: String,
    /// The member's own directory: its configuration, pidfile, log and Unix socket.
    pub dir: PathBuf,
    /// PostgreSQL's data directory (`dir/data`).
    pub data_dir: PathBuf,
    /// Patroni's configuration file (holds passwords: mode 0600).
    pub config_file: PathBuf,
    pub log_file: PathBuf,
    pub pidfile: PathBuf,
}

#[derive(Debug, Deserialize)]
struct ClusterDoc {
    members: Vec<Member>,
}

/// The part of a member's `GET /patroni` the readiness check reads.
#[derive(Debug, Deserialize)]
struct PatroniDoc {
    #[serde(default)]
    replication: Vec<ReplicationDoc>,
}

#[derive(Debug, Deserialize)]
struct ReplicationDoc {
    #[serde(default)]
    application_name: String,
    #[serde(default)]
    state: String,
}

/// A running lab: etcd and its members. Dropping it kills everything it
/// started (best effort); [`PatroniLab::stop`] stops it cleanly.
pub struct PatroniLab {
    dir: PathBuf,
    scope: String,
    user: ServerUser,
    superuser_password: String,
    pgmaint_role: Option<LabRole>,
    etcd: Daemon,
    members: Vec<LabMember>,
    http: reqwest::Client,
    stopped: AtomicBool,
}

/// A process the lab daemonized: its pidfile and a string its command line
/// must contain, so a recycled pid is never mistaken for it.
#[derive(Debug, Clone)]
struct Daemon {
    what: String,
    pidfile: PathBuf,
    marker: String,
    log: PathBuf,
}

impl PatroniLab {
    /// Starts etcd and every member in `dir` (created, owned by the server
    /// user) and waits until one member leads and every other one streams from
    /// it on its timeline with no lag.
    pub async fn start(dir: &Path, options: LabOptions) -> Result<PatroniLab, LabError> {
        let started = Instant::now();
        if options.ports.members.is_empty() {
            return Err(LabError::Invalid("a lab needs at least one member".into()));
        }
        let user = ServerUser::detect()?;
        let bindir = match &options.bindir {
            Some(dir) => dir.clone(),
            None => find_bindir()?,
        };
        user.own_dir(dir, 0o700)?;
        let etcd_dir = dir.join("etcd");
        let etcd = Daemon {
            what: "etcd".into(),
            pidfile: dir.join("etcd.pid"),
            marker: etcd_dir.display().to_string(),
            log: dir.join("etcd.log"),
        };
        let members: Vec<LabMember> = options
            .ports
            .members
            .iter()
            .enumerate()
            .map(|(i, ports)| {
                let name = format!("m{}", i + 1);
                let member_dir = dir.join(&name);
                LabMember {
                    host: HOST.into(),
                    pg_port: ports.pg,
                    rest_url: format!("http://{HOST}:{}", ports.rest),
                    data_dir: member_dir.join("data"),
                    config_file: dir.join(format!("{name}.yml")),
                    log_file: dir.join(format!("{name}.log")),
                    pidfile: dir.join(format!("{name}.pid")),
                    dir: member_dir,
                    name,
                }
            })
            .collect();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| LabError::Invalid(format!("HTTP client: {e}")))?;
        // From here on, dropping `lab` (an early return) kills what was started.
        let lab = PatroniLab {
            dir: dir.to_path_buf(),
            scope: options.scope.clone(),
            user,
            superuser_password: options.superuser_password.clone(),
            pgmaint_role: options.pgmaint_role.clone(),
            etcd,
            members,
            http,
            stopped: AtomicBool::new(false),
        };

        let peer = format!("http://{HOST}:{}", options.ports.etcd_peer);
        let client = format!("http://{HOST}:{}", options.ports.etcd_client);
        let etcd_args: Vec<String> = [
            "--name",
            "e1",
            "--data-dir",
            &lab.etcd.marker,
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("e1={peer}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        lab.spawn(&lab.etcd, "etcd", &etcd_args).await?;
        lab.wait_etcd(&client).await?;

        let etcd_host = format!("{HOST}:{}", options.ports.etcd_client);
        let replication_password = crate::access::new_password();
        for (member, ports) in lab.members.iter().zip(&options.ports.members) {
            lab.user.own_dir(&member.dir, 0o700)?;
            let config = member_config(member, ports, &options, &bindir, &etcd_host, &replication_password);
            write_private(&lab.user, &member.config_file, &config)?;
        }
        for member in &lab.members {
            let daemon = member_daemon(member);
            lab.spawn(&daemon, "patroni", &[member.config_file.display().to_string()]).await?;
        }
        lab.wait_ready().await?;
        tracing::info!(dir = %dir.display(), scope = %lab.scope, secs = started.elapsed().as_secs_f64(), "patroni lab ready");
        Ok(lab)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// Every member's REST URL, `http://127.0.0.1:PORT`, in member order.
    pub fn rest_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.rest_url.clone()).collect()
    }

    pub fn members(&self) -> &[LabMember] {
        &self.members
    }

    /// Member `i` (0-based). Panics when out of range, like indexing.
    pub fn member(&self, i: usize) -> &LabMember {
        &self.members[i]
    }

    /// The member called `name` (`m1`...).
    pub fn member_named(&self, name: &str) -> Option<&LabMember> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The superuser's password (for clients of the lab, never to be logged).
    pub fn superuser_password(&self) -> &str {
        &self.superuser_password
    }

    /// The bootstrap role (name and password), when the lab was given one:
    /// what a pgmaint daemon's `[patroni]` section names.
    pub fn pgmaint_role(&self) -> Option<&LabRole> {
        self.pgmaint_role.as_ref()
    }

    /// A libpq keyword/value string to `dbname` on `member` over TCP as the superuser.
    pub fn conninfo(&self, member: &LabMember, dbname: &str) -> String {
        conninfo(HOST, member.pg_port, LAB_SUPERUSER, &self.superuser_password, dbname)
    }

    /// The same as the bootstrap role, when the lab was given one.
    pub fn pgmaint_conninfo(&self, member: &LabMember, dbname: &str) -> Option<String> {
        let role = self.pgmaint_role.as_ref()?;
        Some(conninfo(HOST, member.pg_port, &role.name, &role.password, dbname))
    }

    /// Every pidfile the lab writes (etcd's and each member's Patroni), so a
    /// test harness can kill what a failed test left.
    pub fn pidfiles(&self) -> Vec<PathBuf> {
        std::iter::once(self.etcd.pidfile.clone()).chain(self.members.iter().map(|m| m.pidfile.clone())).collect()
    }

    /// Pids of every live process of the lab: etcd, each Patroni and each postmaster.
    pub fn pids(&self) -> Vec<i32> {
        self.daemons().iter().filter_map(live_pid).collect()
    }

    /// `GET /cluster` from the first member that answers.
    pub async fn cluster(&self) -> Result<Vec<Member>, LabError> {
        let mut last = None;
        for url in self.rest_urls() {
            match self.get_json::<ClusterDoc>(&format!("{url}/cluster")).await {
                Ok(doc) => return Ok(doc.members),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| LabError::Invalid("no members".into())))
    }

    /// The current leader's member name.
    pub async fn leader_name(&self) -> Result<String, LabError> {
        let members = self.cluster().await?;
        members
            .into_iter()
            .find(Member::is_leader)
            .map(|m| m.name)
            .ok_or_else(|| LabError::Rest { url: self.members[0].rest_url.clone(), detail: "no leader in /cluster".into() })
    }

    /// Stops every member (SIGTERM: Patroni stops its PostgreSQL), then etcd,
    /// each with SIGKILL after a timeout; removes the pidfiles.
    pub async fn stop(&self) -> Result<(), LabError> {
        let members: Vec<Daemon> = self.members.iter().map(member_daemon).collect();
        terminate(&members, STOP_TIMEOUT).await;
        // A member SIGKILLed mid-stop leaves its postmaster behind.
        let postmasters: Vec<Daemon> = self.members.iter().map(postmaster_daemon).collect();
        terminate(&postmasters, STOP_TIMEOUT).await;
        terminate(std::slice::from_ref(&self.etcd), STOP_TIMEOUT).await;
        self.stopped.store(true, Ordering::Relaxed);
        let survivors: Vec<String> = self.daemons().iter().filter(|d| live_pid(d).is_some()).map(|d| d.what.clone()).collect();
        if !survivors.is_empty() {
            return Err(LabError::StillRunning(survivors.join(", ")));
        }
        for pidfile in self.pidfiles() {
            let _ = std::fs::remove_file(pidfile);
        }
        Ok(())
    }

    fn daemons(&self) -> Vec<Daemon> {
        let mut all = vec![self.etcd.clone()];
        all.extend(self.members.iter().map(member_daemon));
        all.extend(self.members.iter().map(postmaster_daemon));
        all
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, LabError> {
        let rest = |detail: String| LabError::Rest { url: url.to_string(), detail };
        let response = self.http.get(url).send().await.map_err(|e| rest(e.to_string()))?;
        // /patroni answers 503 on a member that is not running, with the same body.
        response.json::<T>().await.map_err(|e| rest(e.to_string()))
    }

    /// Starts `program args` as the server user, detached (its own session,
    /// reparented to init), its output appended to the daemon's log; waits
    /// for the pidfile it writes.
    async fn spawn(&self, daemon: &Daemon, program: &str, args: &[String]) -> Result<(), LabError> {
        let _ = std::fs::remove_file(&daemon.pidfile);
        // The outer shell exits at once; the inner one writes its pid and execs
        // the program, so the pidfile names the daemon itself.
        const DETACH: &str =
            r#"pidfile=$1 log=$2; shift 2; setsid /bin/sh -c 'echo $$ > "$0" && exec "$@"' "$pidfile" "$@" </dev/null >>"$log" 2>&1 &"#;
        let mut command = self.user.command(Path::new("/bin/sh"), &self.dir);
        command.arg("-c").arg(DETACH).arg("sh").arg(&daemon.pidfile).arg(&daemon.log).arg(program).args(args);
        let out = command.output().await.map_err(|e| LabError::Spawn { program: program.into(), detail: e.to_string() })?;
        if !out.status.success() {
            let detail = format!("exit {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
            return Err(LabError::Spawn { program: program.into(), detail });
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if read_pid(&daemon.pidfile).is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(LabError::Spawn { program: program.into(), detail: format!("no pid in {} after 5s", daemon.pidfile.display()) })
    }

    /// An error when a daemon the lab started has exited.
    fn check_alive(&self, daemon: &Daemon) -> Result<(), LabError> {
        if live_pid(daemon).is_some() {
            return Ok(());
        }
        Err(LabError::Exited { what: daemon.what.clone(), log: daemon.log.clone(), tail: log_tail(&daemon.log, 3) })
    }

    async fn wait_etcd(&self, client_url: &str) -> Result<(), LabError> {
        let url = format!("{client_url}/health");
        let deadline = Instant::now() + ETCD_READY_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            self.check_alive(&self.etcd)?;
            match self.get_json::<serde_json::Value>(&url).await {
                Ok(v) if v.get("health").and_then(|h| h.as_str()) == Some("true") => return Ok(()),
                Ok(v) => last = v.to_string(),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LabError::NotReady { waited: ETCD_READY_TIMEOUT, last: format!("etcd: {last}"), dir: self.dir.clone() })
    }

    /// Until `/cluster` shows one running leader and every other member
    /// running on its timeline with lag 0, and the leader's `/patroni` lists
    /// every other member as a streaming standby.
    async fn wait_ready(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            self.check_alive(&self.etcd)?;
            for member in &self.members {
                self.check_alive(&member_daemon(member))?;
            }
            match self.readiness().await {
                Ok(None) => return Ok(()),
                Ok(Some(waiting_for)) => last = waiting_for,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(LabError::NotReady { waited: READY_TIMEOUT, last, dir: self.dir.clone() })
    }

    /// `None` when ready, else what is still awaited.
    async fn readiness(&self) -> Result<Option<String>, LabError> {
        let cluster = self.cluster().await?;
        let leaders: Vec<&Member> = cluster.iter().filter(|m| m.is_leader()).collect();
        let [leader] = leaders.as_slice() else {
            return Ok(Some(format!("{} leaders in /cluster", leaders.len())));
        };
        if leader.state != "running" {
            return Ok(Some(format!("leader {} is {}", leader.name, leader.state)));
        }
        for member in &self.members {
            let Some(seen) = cluster.iter().find(|m| m.name == member.name) else {
                return Ok(Some(format!("{} not in /cluster yet", member.name)));
            };
            if seen.name == leader.name {
                continue;
            }
            if seen.state != "running" || seen.timeline != leader.timeline || seen.lag_bytes() != Some(0) {
                return Ok(Some(format!(
                    "{}: state {}, timeline {:?} (leader's {:?}), lag {:?}",
                    seen.name, seen.state, seen.timeline, leader.timeline, seen.lag
                )));
            }
        }
        let Some(leader_member) = self.member_named(&leader.name) else {
            return Ok(Some(format!("leader {} is not a member of this lab", leader.name)));
        };
        let status: PatroniDoc = self.get_json(&format!("{}/patroni", leader_member.rest_url)).await?;
        let streaming = |name: &str| status.replication.iter().any(|r| r.application_name == name && r.state == "streaming");
        if let Some(waiting) = self.members.iter().find(|m| m.name != leader.name && !streaming(&m.name)) {
            return Ok(Some(format!("{} not streaming from {} yet", waiting.name, leader.name)));
        }
        Ok(None)
    }
}

impl Drop for PatroniLab {
    /// Best effort, without waiting for clean shutdowns: SIGKILL to every
    /// Patroni, then its postmaster (which would outlive it), then etcd.
    fn drop(&mut self) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let mut order: Vec<Daemon> = self.members.iter().map(member_daemon).collect();
        order.extend(self.members.iter().map(postmaster_daemon));
        order.push(self.etcd.clone());
        for daemon in &order {
            if let Some(pid) = live_pid(daemon) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

fn member_daemon(member: &LabMember) -> Daemon {
    Daemon {
        what: format!("patroni {}", member.name),
        pidfile: member.pidfile.clone(),
        marker: member.config_file.display().to_string(),
        log: member.log_file.clone(),
    }
}

/// The member's postmaster, from `postmaster.pid` (its first line is the pid;
/// its command line names the data directory).
fn postmaster_daemon(member: &LabMember) -> Daemon {
    Daemon {
        what: format!("postgres {}", member.name),
        pidfile: member.data_dir.join("postmaster.pid"),
        marker: member.data_dir.display().to_string(),
        log: member.log_file.clone(),
    }
}

fn read_pid(pidfile: &Path) -> Option<i32> {
    std::fs::read_to_string(pidfile).ok()?.lines().next()?.trim().parse().ok()
}

/// The daemon's pid when it names a live (not zombie) process whose command
/// line holds the daemon's marker.
fn live_pid(daemon: &Daemon) -> Option<i32> {
    let pid = read_pid(&daemon.pidfile)?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(") ")?.1.chars().next()?;
    if state == 'Z' || state == 'X' {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let marker = daemon.marker.as_bytes();
    cmdline.windows(marker.len()).any(|w| w == marker).then_some(pid)
}

/// SIGTERM to each live daemon, then SIGKILL to those still alive after `timeout`.
async fn terminate(daemons: &[Daemon], timeout: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for pid in daemons.iter().filter_map(live_pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + timeout;
    while daemons.iter().any(|d| live_pid(d).is_some()) {
        if Instant::now() >= deadline {
            for daemon in daemons {
                if let Some(pid) = live_pid(daemon) {
                    tracing::warn!(what = %daemon.what, pid, "no exit on SIGTERM; SIGKILL");
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// Writes `text` to `path` readable by the server user only (mode 0600).
fn write_private(user: &ServerUser, path: &Path, text: &str) -> Result<(), LabError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| LabError::io(path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| LabError::io(path, e))?;
    user.give(path)?;
    Ok(())
}

/// libpq keyword/value string, every value quoted.
fn conninfo(host: &str, port: u16, user: &str, password: &str, dbname: &str) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    format!("host={host} port={port} user={} password={} dbname={}", quote(user), quote(password), quote(dbname))
}

/// A member's Patroni configuration. Written as JSON, which YAML parses as
/// it is: every string is quoted and escaped by serde_json.
fn member_config(
    member: &LabMember,
    ports: &MemberPorts,
    options: &LabOptions,
    bindir: &Path,
    etcd_host: &str,
    replication_password: &str,
) -> String {
    let mut parameters = serde_json::json!({
        "wal_level": "replica",
        "hot_standby": "on",
        "max_wal_senders": 10,
        "max_replication_slots": 10,
    });
    for (key, value) in &options.parameters {
        parameters[key] = serde_json::Value::String(value.clone());
    }
    let mut bootstrap = serde_json::json!({
        "dcs": {
            "ttl": 30,
            "loop_wait": 2,
            "retry_timeout": 10,
            "maximum_lag_on_failover": 1_048_576,
            "postgresql": { "use_pg_rewind": true, "parameters": parameters },
        },
        "initdb": [{ "encoding": "UTF8" }, { "auth-host": "scram-sha-256" }],
    });
    if let Some(role) = &options.pgmaint_role {
        bootstrap["users"] = serde_json::json!({ role.name.clone(): { "password": role.password, "options": ["superuser"] } });
    }
    let pg_address = format!("{HOST}:{}", ports.pg);
    let rest_address = format!("{HOST}:{}", ports.rest);
    let config = serde_json::json!({
        "scope": options.scope,
        "name": member.name,
        "restapi": { "listen": rest_address, "connect_address": rest_address },
        "etcd3": { "hosts": etcd_host },
        "bootstrap": bootstrap,
        "postgresql": {
            "listen": pg_address,
            "connect_address": pg_address,
            "data_dir": member.data_dir,
            "bin_dir": bindir,
            "pgpass": member.dir.join("pgpass"),
            "authentication": {
                "superuser": { "username": LAB_SUPERUSER, "password": options.superuser_password },
                "replication": { "username": REPLICATION_USER, "password": replication_password },
            },
            "pg_hba": [
                "local all all trust",
                format!("host replication {REPLICATION_USER} 127.0.0.1/32 scram-sha-256"),
                "host all all 127.0.0.1/32 scram-sha-256",
            ],
            "parameters": { "unix_socket_directories": member.dir },
        },
    });
    let mut text = serde_json::to_string_pretty(&config).expect("a JSON value always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_base_are_consecutive() {
        let ports = LabPorts::from_base(25400, 2);
        assert_eq!((ports.etcd_client, ports.etcd_peer), (25400, 25401));
        assert_eq!(ports.members, vec![MemberPorts { rest: 25402, pg: 25403 }, MemberPorts { rest: 25404, pg: 25405 }]);
    }

    #[test]
    fn conninfo_quotes_every_value() {
        assert_eq!(
            conninfo("127.0.0.1", 5432, "postgres", r"it's\x", "db"),
            r"host=127.0.0.1 port=5432 user='postgres' password='it\'s\\x' dbname='db'"
        );
    }

    #[test]
    fn options_debug_hides_passwords() {
        let options = LabOptions { pgmaint_role: Some(LabRole { name: "pgmaint".into(), password: "role-secret".into() }), ..LabOptions::default() };
        let shown = format!("{options:?}");
        assert!(!shown.contains(&options.superuser_password) && !shown.contains("role-secret"), "{shown}");
    }
}
