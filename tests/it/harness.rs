//! A small harness for tests against real servers.
//!
//! Each test gets a `TestEnv`: its own directory (short, so Unix socket paths
//! fit), servers copied from one initdb template made once per test run, and a
//! guard that stops every server and process it started. When the test fails
//! the directory is kept and its path printed, so the logs can be read.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pgmaint::lab::{LabOptions, LabPorts, LabRole, PatroniLab};
use pgmaint::provider::local::{find_bindir, managed_server_settings, Cluster, ServerUser, Template};
use pgmaint::provider::StopMode;
use tokio::sync::OnceCell;

static TEMPLATE: OnceCell<Template> = OnceCell::const_new();

/// The per-run base directory: `/tmp/pgmaint-it-<pid>`.
fn run_dir() -> PathBuf {
    std::env::temp_dir().join(format!("pgmaint-it-{}", std::process::id()))
}

/// Removes base directories left by earlier runs whose process is gone.
fn sweep_stale_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("pgmaint-it-").and_then(|p| p.parse::<i32>().ok()) else { continue };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive && !entry.path().join("KEEP").exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn template(bindir: &Path, user: &ServerUser) -> &'static Template {
    TEMPLATE
        .get_or_init(|| async {
            sweep_stale_runs();
            let root = run_dir().join("template");
            Template::ensure(&root, bindir, user).await.expect("initdb template")
        })
        .await
}

/// A port below 32768 (outside Linux's range for outgoing connections) that
/// nothing listens on right now on 127.0.0.1, and that this process has not
/// handed out before.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..500 {
        let port = rand::random::<u16>() % 12_000 + 20_000;
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) && std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

pub struct TestEnv {
    pub dir: PathBuf,
    /// Where this test's PgBouncer listens on TCP (its own port).
    pub endpoint: std::net::SocketAddr,
    pub bindir: PathBuf,
    pub user: ServerUser,
    clusters: Mutex<Vec<Cluster>>,
    pidfiles: Mutex<Vec<PathBuf>>,
    /// pgmaint data directories (a daemon's or the test's engine's): their servers are stopped at the end.
    data_dirs: Mutex<Vec<PathBuf>>,
}

impl TestEnv {
    /// A fresh directory for the test called `name`.
    pub fn new(name: &str) -> TestEnv {
        let dir = run_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let user = ServerUser::detect().expect("server OS user");
        user.own_dir(&run_dir(), 0o755).expect("run dir");
        std::fs::create_dir_all(&dir).expect("test dir");
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod test dir");
        TestEnv {
            dir,
            endpoint: std::net::SocketAddr::from(([127, 0, 0, 1], free_port())),
            bindir: find_bindir().expect("PostgreSQL binaries"),
            user,
            clusters: Mutex::new(Vec::new()),
            pidfiles: Mutex::new(Vec::new()),
            data_dirs: Mutex::new(Vec::new()),
        }
    }

    /// Describes a cluster in this test's directory without creating it; it is
    /// stopped when the test ends.
    pub fn cluster(&self, name: &str) -> Cluster {
        let cluster = Cluster::at(self.dir.join(name), &self.bindir, self.user.clone());
        self.clusters.lock().unwrap().push(cluster.clone());
        cluster
    }

    /// A running primary with pgmaint's managed settings.
    pub async fn primary(&self, name: &str) -> Cluster {
        let cluster = self.cluster(name);
        cluster.init(Some(template(&self.bindir, &self.user).await)).await.expect("init primary");
        cluster.configure(&managed_server_settings()).expect("configure primary");
        cluster.start().await.expect("start primary");
        cluster
    }

    /// A running streaming replica of `primary`, with its own replication slot.
    pub async fn replica(&self, name: &str, primary: &Cluster) -> Cluster {
        let client = connect(primary).await;
        client
            .simple_query(&format!("SELECT pg_create_physical_replication_slot('{name}', true)"))
            .await
            .expect("create slot");
        let cluster = self.cluster(name);
        cluster.clone_from(primary, Some(name), name).await.expect("pg_basebackup");
        cluster.configure(&managed_server_settings()).expect("configure replica");
        cluster.start().await.expect("start replica");
        cluster
    }

    /// The `[endpoint]` section that makes a daemon's PgBouncer listen where this test's does.
    pub fn endpoint_config(&self) -> String {
        format!("\n[endpoint]\nlisten = [\"{}\"]\n", self.endpoint)
    }

    /// Stops, when the test ends, every server pgmaint made under `data_dir`
    /// (`instances/*`) and its PgBouncer, whether a daemon process or the
    /// test's own engine made them: servers outlive their daemon.
    pub fn track_data_dir(&self, data_dir: &Path) {
        let mut dirs = self.data_dirs.lock().unwrap();
        if !dirs.iter().any(|dir| dir == data_dir) {
            dirs.push(data_dir.to_path_buf());
            self.track_pidfile(data_dir.join("bouncer").join("pgbouncer.pid"));
        }
    }

    /// A running etcd + Patroni cluster of `members` under `DIR/lab`, on ports
    /// from [`free_port`], with a superuser role `pgmaint` made on bootstrap
    /// (its password: `pgmaint_conninfo`). Its processes are killed and its
    /// PostgreSQL servers stopped when the test ends, even if it failed.
    pub async fn patroni(&self, members: usize) -> PatroniLab {
        let mut options = LabOptions::new(LabPorts::from_fn(members, free_port));
        options.scope = "it".into();
        options.bindir = Some(self.bindir.clone());
        options.pgmaint_role = Some(LabRole { name: "pgmaint".into(), password: pgmaint::access::new_password() });
        let lab = PatroniLab::start(&self.dir.join("lab"), options).await.expect("patroni lab");
        for pidfile in lab.pidfiles() {
            self.track_pidfile(pidfile);
        }
        // A member killed by its pidfile leaves its postmaster: stop it like the test's own servers.
        let mut clusters = self.clusters.lock().unwrap();
        clusters.extend(lab.members().iter().map(|m| Cluster::at(&m.dir, &self.bindir, self.user.clone())));
        drop(clusters);
        lab
    }

    /// Stops the process named in `pidfile` when the test ends (PgBouncer, SMTP...).
    pub fn track_pidfile(&self, pidfile: PathBuf) {
        self.pidfiles.lock().unwrap().push(pidfile);
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let mut clusters = std::mem::take(&mut *self.clusters.lock().unwrap());
        for data_dir in self.data_dirs.lock().unwrap().iter() {
            let instances = std::fs::read_dir(data_dir.join("instances")).into_iter().flatten().flatten();
            clusters.extend(instances.map(|entry| Cluster::at(entry.path(), &self.bindir, self.user.clone())));
        }
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                for cluster in clusters {
                    let _ = cluster.stop(StopMode::Kill).await;
                }
            })
        })
        .join();
        for pidfile in self.pidfiles.lock().unwrap().iter() {
            if let Some(pid) = std::fs::read_to_string(pidfile).ok().and_then(|t| t.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        if std::thread::panicking() {
            let _ = std::fs::write(run_dir().join("KEEP"), "");
            eprintln!("test failed: its servers' directories and logs are kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A tokio-postgres client to `cluster`'s `postgres` database.
pub async fn connect(cluster: &Cluster) -> tokio_postgres::Client {
    connect_conninfo(&cluster.conninfo("postgres")).await
}

pub async fn connect_conninfo(conninfo: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {conninfo}: {e}"));
    tokio::spawn(connection);
    client
}
