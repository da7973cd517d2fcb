//! One PostgreSQL server on this host: its directory, its socket, its life cycle.
//!
//! A cluster lives in one directory owned by the server user: `data/` (the data
//! directory), the Unix socket `.s.PGSQL.<port>` and `server.log`; mode 0700,
//! so no other local user reaches the socket (which trusts the superuser). Servers
//! listen on their own socket directory only (no TCP), so any number of them
//! can share a port number without ever colliding. Every action first looks at
//! the server (running? already stopped?) so it can be repeated after a crash.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::{Lsn, Plan};

use super::os::ServerUser;
use crate::provider::{Host, ProviderError, ServerAddress, StopMode};

/// Longest Unix socket path the kernel accepts, less a margin.
const MAX_SOCKET_PATH: usize = 100;
/// The port number every local server uses; the socket directory tells them apart.
pub const DEFAULT_PORT: u16 = 5432;
/// The kernel's per-task flag for a task inside `do_exit` (include/linux/sched.h).
const PF_EXITING: u64 = 0x4;
/// How long a postmaster started without waiting may take to write its pid
/// file (it reads its configuration first; a bad one makes it exit instead).
const PID_FILE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a start may take to serve (`pg_ctl start -t`).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The line of `postmaster.pid` (from 0) with the postmaster's status.
const PM_STATUS_LINE: usize = 7;

/// What `/proc/<pid>/stat` says of one process.
struct TaskState {
    state: char,
    flags: u64,
}

impl TaskState {
    /// `None` once the process is gone.
    fn read(pid: i32) -> Option<TaskState> {
        TaskState::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    fn parse(text: &str) -> Option<TaskState> {
        // `pid (comm) state ppid pgrp session tty_nr tpgid flags ...`; comm may hold anything.
        let mut fields = text.get(text.rfind(')')? + 1..)?.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let flags = fields.nth(5)?.parse().ok()?;
        Some(TaskState { state, flags })
    }

    /// Stopped (or unable to act at all): it runs nothing until SIGCONT or SIGKILL.
    fn frozen(&self) -> bool {
        matches!(self.state, 'T' | 't') || self.cannot_act()
    }

    /// A zombie, dead, or inside the kernel's exit path: it never runs its own code again.
    fn cannot_act(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x') || self.flags & PF_EXITING != 0
    }
}

/// Sends `signal` to `pid` (and, with `group`, to its process group);
/// false if the process is gone.
fn signal_group(pid: i32, signal: nix::sys::signal::Signal, group: bool) -> bool {
    use nix::unistd::Pid;
    if group {
        let _ = nix::sys::signal::kill(Pid::from_raw(-pid), signal);
    }
    nix::sys::signal::kill(Pid::from_raw(pid), signal).is_ok()
}

/// The direct children of `pid` (empty if it is gone).
fn process_children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|text| text.split_whitespace().filter_map(|child| child.parse().ok()).collect())
        .unwrap_or_default()
}

/// The superuser every cluster is created with, whoever runs initdb.
pub const SUPERUSER: &str = "postgres";

/// Settings every server pgmaint runs gets: replication ready, fast promotion,
/// modest memory. `wal_retrieve_retry_interval` is the one that matters most:
/// with its 5 s default a promoted standby was measured to stall for 5 s.
pub fn managed_server_settings() -> Vec<(&'static str, String)> {
    [
        ("wal_level", "replica"),
        ("max_wal_senders", "16"),
        ("max_replication_slots", "16"),
        ("hot_standby", "on"),
        ("hot_standby_feedback", "on"),
        ("wal_retrieve_retry_interval", "20ms"),
        ("wal_receiver_status_interval", "1s"),
        ("wal_keep_size", "256MB"),
        ("shared_buffers", "32MB"),
        ("max_connections", "100"),
        ("log_line_prefix", "%m [%p] "),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

/// The managed settings with the memory `plan` buys.
pub fn plan_server_settings(plan: &Plan) -> Vec<(&'static str, String)> {
    let mut settings = managed_server_settings();
    for (key, value) in &mut settings {
        if *key == "shared_buffers" {
            *value = format!("{}MB", plan.shared_buffers_mb());
        }
    }
    settings
}

/// What `pg_controldata` says about a data directory (readable while stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// e.g. `shut down`, `in production`, `shut down in recovery`, `in archive recovery`.
    pub state: String,
    /// Start of the latest checkpoint record; for a cleanly stopped primary, its shutdown checkpoint.
    pub latest_checkpoint: Lsn,
    /// Timeline of the latest checkpoint.
    pub timeline: u32,
}

impl ControlData {
    /// True when the server was stopped cleanly as a primary: its last record is the shutdown checkpoint.
    pub fn is_clean_primary_shutdown(&self) -> bool {
        self.state == "shut down"
    }
}

/// A local PostgreSQL server, running or not.
#[derive(Debug, Clone)]
pub struct Cluster {
    root: PathBuf,
    port: u16,
    bindir: PathBuf,
    user: ServerUser,
}

impl Cluster {
    /// Describes the cluster that lives (or will live) in `root`; touches nothing.
    pub fn at(root: impl Into<PathBuf>, bindir: impl Into<PathBuf>, user: ServerUser) -> Self {
        Cluster { root: root.into(), port: DEFAULT_PORT, bindir: bindir.into(), user }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    /// The directory holding the server's Unix socket (libpq's `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }
    pub fn user(&self) -> &ServerUser {
        &self.user
    }

    /// Its Unix socket, as the superuser.
    pub fn address(&self) -> ServerAddress {
        ServerAddress::new(Host::Socket(self.root.clone()), self.port, SUPERUSER)
    }

    /// libpq keyword/value connection string for `dbname` as the superuser.
    pub fn conninfo(&self, dbname: &str) -> String {
        format!("host={} port={} user={SUPERUSER} dbname={dbname}", self.root.display(), self.port)
    }

    /// `postgresql://` URL for `dbname` over the Unix socket (for sqlx and applications).
    pub fn url(&self, dbname: &str) -> String {
        format!("postgresql://{SUPERUSER}@localhost/{dbname}?host={}&port={}", self.root.display(), self.port)
    }

    /// A command for one of the installed PostgreSQL programs (`pg_dump`,
    /// `psql`...), run as the server user from the cluster's directory.
    pub fn program(&self, name: &str) -> tokio::process::Command {
        self.user.command(&self.bindir.join(name), &self.root)
    }

    /// True once the data directory holds a cluster.
    pub fn exists(&self) -> bool {
        self.data_dir().join("PG_VERSION").exists()
    }

    /// Creates the cluster directory, checking the socket path fits the
    /// kernel's limit. Mode 0700: the socket inside trusts local connections
    /// as the superuser, so only the server user (and root) may reach it.
    fn prepare_root(&self) -> Result<(), ProviderError> {
        let socket = self.root.join(format!(".s.PGSQL.{}", self.port));
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ProviderError::Os(format!(
                "socket path {} is longer than {MAX_SOCKET_PATH} bytes; choose a shorter data directory",
                socket.display()
            )));
        }
        self.user.own_dir(&self.root, 0o700)
    }

    /// Creates a fresh primary data directory: a copy of `template` when given
    /// (much faster than initdb), else initdb. Does nothing if it already exists.
    pub async fn init(&self, template: Option<&Template>) -> Result<(), ProviderError> {
        if self.exists() {
            return Ok(());
        }
        self.prepare_root()?;
        let data = self.data_dir();
        remove_partial(&data)?;
        match template {
            Some(template) => {
                let mut cp = self.user.command(Path::new("cp"), &self.root);
                cp.arg("-a").arg(template.data_dir()).arg(&data);
                run(cp, "cp").await?;
            }
            None => initdb(&self.user, &self.bindir, &data, &self.root, false).await?,
        }
        Ok(())
    }

    /// Writes pgmaint's settings file and makes postgresql.conf include it.
    /// The socket directory and port always come from the cluster itself.
    pub fn configure(&self, settings: &[(&str, String)]) -> Result<(), ProviderError> {
        let data = self.data_dir();
        let mut text = String::from("# Written by pgmaint; edits are overwritten.\n");
        text.push_str("listen_addresses = ''\n");
        text.push_str(&format!("unix_socket_directories = '{}'\n", escape(&self.root.display().to_string())));
        text.push_str(&format!("port = {}\n", self.port));
        for (key, value) in settings {
            text.push_str(&format!("{key} = '{}'\n", escape(value)));
        }
        let file = data.join("pgmaint.conf");
        std::fs::write(&file, text).map_err(|e| ProviderError::io(&file, e))?;
        self.user.give(&file)?;
        let main_conf = data.join("postgresql.conf");
        let current = std::fs::read_to_string(&main_conf).map_err(|e| ProviderError::io(&main_conf, e))?;
        let include = "include_if_exists = 'pgmaint.conf'";
        if !current.lines().any(|l| l.trim() == include) {
            std::fs::write(&main_conf, format!("{current}\n{include}\n")).map_err(|e| ProviderError::io(&main_conf, e))?;
        }
        Ok(())
    }

    /// Is a postmaster running on this data directory?
    pub async fn is_running(&self) -> Result<bool, ProviderError> {
        if let Some(pid) = self.postmaster_pid() {
            if TaskState::read(pid).is_some_and(|task| task.cannot_act()) {
                // Killed a moment ago (the fence): let it finish dying, so a
                // start does not find its pid file still naming a live pid.
                let _ = self.wait_for_tasks("a killed postmaster to be gone", &[pid], |task| task.state == 'Z').await;
            }
        }
        Ok(self.live_postmaster().is_some())
    }

    /// Starts the server and waits until it accepts connections (or, for a
    /// standby, until it is consistent). Already running is fine.
    pub async fn start(&self) -> Result<(), ProviderError> {
        if self.is_running().await? {
            // Started by someone else (a start without waiting, say): serving once it says so.
            return self.wait_until_serving().await;
        }
        self.remove_stale_lock_files()?;
        let mut start = self.pg_ctl();
        start.args(["start", "-w", "-t", &START_TIMEOUT.as_secs().to_string(), "-s", "-D"]).arg(self.data_dir()).arg("-l").arg(self.log_file());
        run(start, "pg_ctl start").await.map_err(|e| e.with_log(&self.log_file()))
    }

    /// Waits until the running postmaster says in its pid file that it
    /// serves (`ready`, or `standby` for a standby that is consistent), as
    /// `pg_ctl start -w` does.
    async fn wait_until_serving(&self) -> Result<(), ProviderError> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let status = std::fs::read_to_string(&pid_file).ok().and_then(|text| text.lines().nth(PM_STATUS_LINE).map(|l| l.trim().to_string()));
            if matches!(status.as_deref(), Some("ready" | "standby")) {
                return Ok(());
            }
            if self.live_postmaster().is_none() || tokio::time::Instant::now() >= deadline {
                return Err(self.start_failed(format!("the server did not come to serve (pid file status {status:?})")));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A start that did not end with a serving server, with the last lines of its log.
    fn start_failed(&self, why: String) -> ProviderError {
        ProviderError::Command { program: "pg_ctl start".into(), status: "started".into(), stderr: why }.with_log(&self.log_file())
    }

    /// Stops the server; already stopped is fine.
    pub async fn stop(&self, mode: StopMode) -> Result<(), ProviderError> {
        match mode {
            StopMode::Fast => self.stop_fast().await,
            StopMode::Kill => self.kill_all().await,
        }
    }

    /// A fast stop: the postmaster is signalled directly (SIGINT, as
    /// `pg_ctl -m fast` would) and its pid file watched every 2 ms (`pg_ctl
    /// stop -w` polls only every 100 ms). The postmaster removes its pid file
    /// as it exits, after every child process is gone.
    async fn stop_fast(&self) -> Result<(), ProviderError> {
        let Some(pid) = self.live_postmaster() else { return Ok(()) };
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT);
        if self.wait_for_pid_file_gone(Duration::from_secs(120)).await || self.live_postmaster().is_none() {
            return Ok(());
        }
        Err(ProviderError::Os(format!("the server in {} did not stop within 120 s of SIGINT", self.data_dir().display())))
    }

    /// The fence: every process of the server frozen, then killed, returning
    /// as soon as none of them can act any more rather than when they are
    /// gone. An immediate stop (SIGQUIT) was measured at 9-22 ms until the
    /// postmaster's pid file went, and waiting for every SIGKILLed process
    /// to enter its exit at 7-17 ms: each must get a CPU in turn, behind the
    /// others' memory teardown. Freezing them all took 0.6-7 ms.
    ///
    /// 1. SIGSTOP freezes the postmaster, so it forks no new child while
    ///    they are listed (a child that exits meanwhile stays a zombie, its
    ///    pid not reused).
    /// 2. SIGSTOP to every child and its process group (as the postmaster
    ///    signals them: an archive command's shell too).
    /// 3. Each child is waited for until it is stopped, a zombie, exiting or
    ///    gone. A task stops only on its way back to user mode, so whatever
    ///    system call it was in (a WAL write, a send) is over, and it runs
    ///    nothing more: the server can no longer act.
    /// 4. SIGKILL to all of them: a stopped task given SIGKILL dies without
    ///    running again.
    ///
    /// The data directory is left as a crash leaves it: the next start
    /// removes the stale pid file and runs crash recovery.
    async fn kill_all(&self) -> Result<(), ProviderError> {
        let Some(postmaster) = self.live_postmaster() else { return Ok(()) };
        if !signal_group(postmaster, nix::sys::signal::Signal::SIGSTOP, false) {
            return Ok(()); // gone meanwhile
        }
        let postmaster_frozen = self.wait_for_tasks("the postmaster to freeze", &[postmaster], TaskState::frozen).await;
        let children = process_children(postmaster);
        for child in &children {
            signal_group(*child, nix::sys::signal::Signal::SIGSTOP, true);
        }
        let frozen = match postmaster_frozen {
            Ok(()) => self.wait_for_tasks("the server's processes to freeze", &children, TaskState::frozen).await,
            Err(error) => Err(error),
        };
        // Killed even when a freeze timed out (a task stuck in the kernel):
        // nothing is left frozen, and the caller learns the fence is unproven.
        for child in &children {
            signal_group(*child, nix::sys::signal::Signal::SIGKILL, true);
        }
        signal_group(postmaster, nix::sys::signal::Signal::SIGKILL, false);
        frozen
    }

    /// Polls `/proc` every 200 µs until `done` holds for every pid (a pid
    /// that is gone counts as done), for at most 10 s.
    async fn wait_for_tasks(&self, what: &str, pids: &[i32], done: impl Fn(&TaskState) -> bool) -> Result<(), ProviderError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if pids.iter().all(|pid| TaskState::read(*pid).is_none_or(|task| done(&task))) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProviderError::Os(format!("timed out waiting for {what} ({})", self.data_dir().display())));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Removes the lock files no live postmaster of this data directory
    /// holds (called once `is_running` said no): `postmaster.pid` and the
    /// socket's `.lock`. A killed server leaves both, and PostgreSQL refuses
    /// to start while the pid in either exists at all, even as a zombie not
    /// yet reaped, or reused by another program.
    fn remove_stale_lock_files(&self) -> Result<(), ProviderError> {
        let socket_lock = self.socket_dir().join(format!(".s.PGSQL.{}.lock", self.port()));
        for lock in [self.data_dir().join("postmaster.pid"), socket_lock] {
            match std::fs::remove_file(&lock) {
                Ok(()) => tracing::info!(file = %lock.display(), "removed the stale lock file of a stopped server"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ProviderError::io(&lock, e)),
            }
        }
        Ok(())
    }

    /// The pid in `postmaster.pid` if a postgres process of that pid is
    /// alive (a stale pid file, left by a kill, may name a pid reused by
    /// something else): its program is `postgres` and, where `/proc` lets us
    /// see it, its working directory is this data directory (the postmaster
    /// runs there), so another cluster's postmaster is never taken for it.
    fn live_postmaster(&self) -> Option<i32> {
        let pid = self.postmaster_pid()?;
        let command = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let program = command.split(|b| *b == 0).next()?;
        let is_postgres = std::path::Path::new(std::str::from_utf8(program).ok()?).file_name().is_some_and(|name| name == "postgres");
        let elsewhere = match (std::fs::read_link(format!("/proc/{pid}/cwd")), std::fs::canonicalize(self.data_dir())) {
            (Ok(cwd), Ok(data)) => cwd != data,
            _ => false,
        };
        let alive = TaskState::read(pid).is_some_and(|task| !task.cannot_act());
        (is_postgres && !elsewhere && alive).then_some(pid)
    }

    async fn wait_for_pid_file_gone(&self, limit: Duration) -> bool {
        let pid_file = self.data_dir().join("postmaster.pid");
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if !pid_file.exists() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        false
    }

    /// Starts the server without waiting for it to accept connections; the
    /// caller polls for readiness at a finer grain than pg_ctl's 100 ms.
    pub async fn start_no_wait(&self) -> Result<(), ProviderError> {
        if self.is_running().await? {
            return Ok(());
        }
        self.remove_stale_lock_files()?;
        let mut start = self.pg_ctl();
        start.args(["start", "-W", "-s", "-D"]).arg(self.data_dir()).arg("-l").arg(self.log_file());
        run(start, "pg_ctl start").await.map_err(|e| e.with_log(&self.log_file()))?;
        // `pg_ctl -W` returns before the postmaster writes its pid file, and
        // until it has, a start or a stop would not see this server running
        // (a second postmaster would be started beside it).
        let deadline = tokio::time::Instant::now() + PID_FILE_TIMEOUT;
        while self.live_postmaster().is_none() {
            if tokio::time::Instant::now() >= deadline {
                return Err(self.start_failed(format!("no postmaster wrote {} within {PID_FILE_TIMEOUT:?}", self.data_dir().join("postmaster.pid").display())));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Fast restart: disconnects clients, checkpoints, starts again, waits until ready.
    pub async fn restart(&self) -> Result<(), ProviderError> {
        let mut restart = self.pg_ctl();
        restart
            .args(["restart", "-w", "-t", "120", "-s", "-m", "fast", "-D"])
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file());
        run(restart, "pg_ctl restart").await.map_err(|e| e.with_log(&self.log_file()))
    }

    /// SIGKILL to the postmaster, as a crash would; waits until it is gone.
    pub async fn kill(&self) -> Result<(), ProviderError> {
        let Some(pid) = self.postmaster_pid() else { return Ok(()) };
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        for _ in 0..200 {
            if nix::sys::signal::kill(pid, None).is_err() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(ProviderError::Os(format!("postmaster {pid} survived SIGKILL")))
    }

    /// The postmaster's pid from `postmaster.pid`, if the file exists.
    pub fn postmaster_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// `pg_controldata`: works whether the server runs or not. It only reads
    /// files, so it runs as pgmaint itself (saving runuser's ~15 ms in the hand floor's fence).
    pub async fn control_data(&self) -> Result<ControlData, ProviderError> {
        let mut cmd = tokio::process::Command::new(self.bindir.join("pg_controldata"));
        cmd.arg("-D").arg(self.data_dir()).env("LC_ALL", "C");
        let out = cmd.output().await.map_err(|e| ProviderError::spawn("pg_controldata", e))?;
        if !out.status.success() {
            return Err(ProviderError::command("pg_controldata", &out));
        }
        parse_control_data(&String::from_utf8_lossy(&out.stdout))
    }

    /// Builds this cluster as a streaming replica of `primary` with pg_basebackup
    /// (`-R`: standby.signal + primary_conninfo), using `slot` if given (it must exist).
    /// A half-made copy from an interrupted earlier attempt is removed first.
    pub async fn clone_from(&self, primary: &Cluster, slot: Option<&str>, application_name: &str) -> Result<(), ProviderError> {
        if self.exists() && self.data_dir().join("standby.signal").exists() {
            return Ok(());
        }
        self.prepare_root()?;
        let data = self.data_dir();
        remove_partial(&data)?;
        let mut backup = self.user.command(&self.bindir.join("pg_basebackup"), &self.root);
        backup
            .arg("-D")
            .arg(&data)
            .args(["-X", "stream", "-R", "--checkpoint=fast", "--no-sync", "-d"])
            .arg(format!("{} application_name={application_name}", primary.conninfo("postgres")));
        if let Some(slot) = slot {
            backup.arg("-S").arg(slot);
        }
        if let Err(e) = run(backup, "pg_basebackup").await {
            let _ = std::fs::remove_dir_all(&data);
            return Err(e);
        }
        Ok(())
    }

    /// Removes the whole cluster directory; the server must be stopped.
    pub async fn remove(&self) -> Result<(), ProviderError> {
        if self.is_running().await.unwrap_or(false) {
            return Err(ProviderError::Os(format!("refusing to remove {}: server is running", self.root.display())));
        }
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ProviderError::io(&self.root, e)),
        }
    }

    fn pg_ctl(&self) -> tokio::process::Command {
        self.user.command(&self.bindir.join("pg_ctl"), &self.root)
    }
}

/// An initdb'd data directory that new primaries are copied from.
#[derive(Debug, Clone)]
pub struct Template {
    root: PathBuf,
}

impl Template {
    /// Makes sure `root` holds a template cluster (initdb once, then reused).
    pub async fn ensure(root: &Path, bindir: &Path, user: &ServerUser) -> Result<Template, ProviderError> {
        let template = Template { root: root.to_path_buf() };
        if template.data_dir().join("PG_VERSION").exists() {
            return Ok(template);
        }
        user.own_dir(root, 0o700)?;
        let staging = root.join("data.partial");
        remove_partial(&staging)?;
        initdb(user, bindir, &staging, root, true).await?;
        std::fs::rename(&staging, template.data_dir()).map_err(|e| ProviderError::io(root, e))?;
        Ok(template)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
}

/// initdb with 1 MB WAL segments instead of 16 MB. A promotion copies the
/// last segment of the old timeline, up to the switch point and zero-filled
/// beyond, to the new timeline and syncs it, and creates the next segment too
/// when the switch point is past three quarters of its segment: all while
/// clients are paused. Measured on this kind of machine: promotion 22-31 ms
/// with 16 MB segments (20 ms of it that copy), 6-11 ms with 1 MB; in the
/// switchover bench, pgmaint's write pause went from 42-63 ms to 27-31 ms.
/// The size only has to agree between a server and its physical replicas
/// (pg_basebackup copies it); copies between servers go through pg_dump.
const WAL_SEGMENT_MB: &str = "1";

async fn initdb(user: &ServerUser, bindir: &Path, data: &Path, cwd: &Path, no_sync: bool) -> Result<(), ProviderError> {
    let mut cmd = user.command(&bindir.join("initdb"), cwd);
    cmd.arg("-D")
        .arg(data)
        .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"])
        .arg(format!("--wal-segsize={WAL_SEGMENT_MB}"))
        .env("LC_ALL", "C");
    if no_sync {
        cmd.arg("--no-sync");
    }
    run(cmd, "initdb").await
}

fn remove_partial(dir: &Path) -> Result<(), ProviderError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ProviderError::io(dir, e)),
    }
}

async fn run(mut command: tokio::process::Command, what: &str) -> Result<(), ProviderError> {
    let out = command.output().await.map_err(|e| ProviderError::spawn(what, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProviderError::command(what, &out))
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "''")
}

fn parse_control_data(text: &str) -> Result<ControlData, ProviderError> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')).map(str::trim))
            .ok_or_else(|| ProviderError::Parse(format!("pg_controldata printed no {name:?}")))
    };
    let latest_checkpoint = field("Latest checkpoint location")?;
    let timeline = field("Latest checkpoint's TimeLineID")?;
    Ok(ControlData {
        state: field("Database cluster state")?.to_string(),
        latest_checkpoint: latest_checkpoint.parse().map_err(|_| ProviderError::Parse(format!("bad LSN {latest_checkpoint:?}")))?,
        timeline: timeline.parse().map_err(|_| ProviderError::Parse(format!("bad timeline {timeline:?}")))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_task_state_whatever_its_command_name() {
        let stopped = TaskState::parse("4242 (post (gres) x) T 1 4242 4242 0 -1 4194560 120 0").unwrap();
        assert!(stopped.frozen() && !stopped.cannot_act());
        let exiting = TaskState::parse("4243 (postgres) R 1 4243 4243 0 -1 4194564 120 0").unwrap();
        assert!(exiting.cannot_act() && exiting.frozen(), "PF_EXITING (0x4) is set in 4194564");
        let zombie = TaskState::parse("4244 (postgres) Z 1 4244 4244 0 -1 4194560 0 0").unwrap();
        assert!(zombie.cannot_act());
        let me = TaskState::read(std::process::id() as i32).expect("this process's own stat");
        assert!(!me.frozen() && !me.cannot_act(), "this process, running, read as state {} flags {:#x}", me.state, me.flags);
        assert!(TaskState::parse("4245 (postgres").is_none());
    }

    #[test]
    fn parses_pg_controldata_output() {
        let text = "pg_control version number:            1300\n\
                    Database cluster state:               shut down\n\
                    Latest checkpoint location:           0/3000028\n\
                    Latest checkpoint's REDO location:    0/3000028\n\
                    Latest checkpoint's TimeLineID:       2\n";
        let data = parse_control_data(text).unwrap();
        assert_eq!(data.state, "shut down");
        assert_eq!(data.latest_checkpoint, "0/3000028".parse().unwrap());
        assert_eq!(data.timeline, 2);
        assert!(data.is_clean_primary_shutdown());
        assert!(parse_control_data("garbage").is_err());
    }
}
