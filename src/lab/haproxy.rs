//! The standard Patroni setup pgmaint's switchover is measured against:
//! HAProxy in front of the members with Patroni's documented health check
//! (`OPTIONS /primary` on each member's REST port, from Patroni's own
//! `haproxy.cfg`), and `patronictl switchover`.
//!
//! `pgmaint bench switchover --provider patroni` runs writers through a
//! [`HaproxyFront`] and hands them to [`measure_stock_switchover`]; the same
//! report fields as pgmaint's own switchover (longest commit gap, client
//! errors, lost writes) come back.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{conninfo, live_pid, terminate, Daemon, LabError, PatroniLab, HOST, LAB_SUPERUSER};
use crate::provider::local::ServerUser;
use crate::workload::Workload;

/// How long HAProxy gets to send every new connection to one member.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(30);
/// Consecutive new connections that must land on the member before it counts as routed.
const ROUTED_PROBES: usize = 3;

/// Debian's `haproxy`, daemonized as the server user, listening on
/// 127.0.0.1:`port` in front of every member of a lab.
pub struct HaproxyFront {
    port: u16,
    daemon: Daemon,
    superuser_password: String,
    stopped: AtomicBool,
}

impl HaproxyFront {
    /// Writes `dir/haproxy.cfg`, starts HAProxy and waits until every new
    /// connection through it reaches the lab's leader.
    pub async fn start(lab: &PatroniLab, dir: &Path, port: u16) -> Result<HaproxyFront, LabError> {
        let user = ServerUser::detect()?;
        user.own_dir(dir, 0o700)?;
        let config_file = dir.join("haproxy.cfg");
        std::fs::write(&config_file, haproxy_config(lab, port)).map_err(|e| LabError::io(&config_file, e))?;
        user.give(&config_file)?;
        let daemon = Daemon {
            what: "haproxy".into(),
            pidfile: dir.join("haproxy.pid"),
            marker: config_file.display().to_string(),
            // HAProxy writes no log file without syslog; errors name its configuration.
            log: config_file.clone(),
        };
        let _ = std::fs::remove_file(&daemon.pidfile);
        // -D: HAProxy daemonizes itself and writes the pidfile (-p); it logs
        // nothing without a syslog target, so start-up errors come on stderr.
        let mut command = user.command(Path::new("haproxy"), dir);
        command.arg("-D").arg("-f").arg(&config_file).arg("-p").arg(&daemon.pidfile);
        let out = command.output().await.map_err(|e| LabError::Spawn { program: "haproxy".into(), detail: e.to_string() })?;
        if !out.status.success() {
            let detail = format!("exit {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
            return Err(LabError::Spawn { program: "haproxy".into(), detail });
        }
        let front =
            HaproxyFront { port, daemon, superuser_password: lab.superuser_password().to_string(), stopped: AtomicBool::new(false) };
        let leader = lab.leader_name().await?;
        let leader = lab.member_named(&leader).ok_or_else(|| LabError::Invalid(format!("leader {leader} is not a member")))?;
        front.wait_routes_to(leader.pg_port, ROUTE_TIMEOUT).await?;
        Ok(front)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq keyword/value string to `dbname` through HAProxy as the lab's
    /// superuser (SCRAM), usable by [`Workload::start`].
    pub fn conninfo(&self, dbname: &str) -> String {
        format!("{} connect_timeout=2", conninfo(HOST, self.port, LAB_SUPERUSER, &self.superuser_password, dbname))
    }

    pub fn pidfile(&self) -> &Path {
        &self.daemon.pidfile
    }

    /// The live HAProxy process, if any.
    pub fn pid(&self) -> Option<i32> {
        live_pid(&self.daemon)
    }

    /// SIGTERM (SIGKILL after 10 s); removes the pidfile.
    pub async fn stop(&self) -> Result<(), LabError> {
        terminate(std::slice::from_ref(&self.daemon), Duration::from_secs(10)).await;
        self.stopped.store(true, Ordering::Relaxed);
        if live_pid(&self.daemon).is_some() {
            return Err(LabError::StillRunning("haproxy".into()));
        }
        let _ = std::fs::remove_file(&self.daemon.pidfile);
        Ok(())
    }

    /// Waits until [`ROUTED_PROBES`] new connections in a row reach a
    /// writable server on `pg_port`. Returns how long that took.
    pub async fn wait_routes_to(&self, pg_port: u16, timeout: Duration) -> Result<Duration, LabError> {
        let started = Instant::now();
        let mut in_a_row = 0;
        let mut last = String::from("no connection yet");
        while started.elapsed() < timeout {
            match self.probe().await {
                Ok((port, false)) if port == pg_port => in_a_row += 1,
                Ok((port, in_recovery)) => {
                    in_a_row = 0;
                    last = format!("reached port {port} (in recovery: {in_recovery})");
                }
                Err(e) => {
                    in_a_row = 0;
                    last = e.to_string();
                }
            }
            if in_a_row == ROUTED_PROBES {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(LabError::Routing { port: self.port, target: pg_port, waited: timeout, last })
    }

    /// The server a new connection through HAProxy reaches: (its port, in recovery).
    async fn probe(&self) -> Result<(u16, bool), tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo("postgres"), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let row = client.query_one("SELECT inet_server_port(), pg_is_in_recovery()", &[]).await?;
        let port: i32 = row.get(0);
        Ok((u16::try_from(port).unwrap_or_default(), row.get(1)))
    }
}

impl Drop for HaproxyFront {
    fn drop(&mut self) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        if let Some(pid) = live_pid(&self.daemon) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Patroni's documented HAProxy configuration (its `haproxy.cfg`): the
/// `/primary` check every 3 s, down after 3 failures, up after 2 successes,
/// sessions to a server marked down cut.
fn haproxy_config(lab: &PatroniLab, port: u16) -> String {
    let mut text = String::from(
        "# Written by pgmaint's Patroni lab: Patroni's documented HAProxy setup.\n\
         global\n    maxconn 1024\n\n\
         defaults\n    mode tcp\n    retries 2\n    timeout client 30m\n    timeout connect 4s\n    timeout server 30m\n    timeout check 5s\n\n",
    );
    text.push_str(&format!(
        "listen primary\n    bind {HOST}:{port}\n    option httpchk OPTIONS /primary\n    http-check expect status 200\n    \
         default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions\n"
    ));
    for member in lab.members() {
        let rest_port = member.rest_url.rsplit(':').next().unwrap_or_default();
        text.push_str(&format!("    server {} {HOST}:{} maxconn 100 check port {rest_port}\n", member.name, member.pg_port));
    }
    text
}

/// A `patronictl switchover` that was carried out.
#[derive(Debug, Clone)]
pub struct PatronictlSwitchover {
    pub from: String,
    pub to: String,
    /// From the start of `patronictl` to its exit (it returns once Patroni reports the switchover done).
    pub took: Duration,
}

/// `patronictl -c CONFIG switchover --leader L --candidate C --force`, as the
/// server user with a member's configuration file.
pub async fn patronictl_switchover(lab: &PatroniLab, candidate: &str) -> Result<PatronictlSwitchover, LabError> {
    let from = lab.leader_name().await?;
    if lab.member_named(candidate).is_none() {
        return Err(LabError::Invalid(format!("no member {candidate}")));
    }
    let member = lab.member(0);
    let user = ServerUser::detect()?;
    let mut command = user.command(Path::new("patronictl"), &member.dir);
    command.arg("-c").arg(&member.config_file).args(["switchover", "--leader", &from, "--candidate", candidate, "--force"]);
    let started = Instant::now();
    let out = command.output().await.map_err(|e| LabError::Spawn { program: "patronictl".into(), detail: e.to_string() })?;
    let took = started.elapsed();
    let printed = format!("{} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || !printed.contains("Successfully switched over") {
        let detail = format!("exit {}: {}", out.status, printed.split_whitespace().collect::<Vec<_>>().join(" "));
        return Err(LabError::Spawn { program: "patronictl switchover".into(), detail });
    }
    Ok(PatronictlSwitchover { from, to: candidate.to_string(), took })
}

/// What writers through HAProxy felt of a `patronictl switchover`.
#[derive(Debug, Clone)]
pub struct StockSwitchover {
    pub switchover: PatronictlSwitchover,
    /// From the start of `patronictl` until every new connection through HAProxy reached the new leader.
    pub routed_after: Duration,
    /// The longest gap between two commits around the switchover.
    pub longest_gap: Duration,
    pub client_errors: usize,
    /// Up to ten distinct error messages.
    pub error_samples: Vec<String>,
    pub acknowledged: usize,
    /// Acknowledged writes missing on the new leader.
    pub lost: usize,
}

/// Switches the lab over to `candidate` with `patronictl` while `workload`
/// (started on [`HaproxyFront::conninfo`], audit table prepared) writes, waits
/// until HAProxy routes to the new leader and the writers commit there, then
/// stops the workload and audits it on the new leader.
pub async fn measure_stock_switchover(
    lab: &PatroniLab,
    front: &HaproxyFront,
    workload: Workload,
    candidate: &str,
) -> Result<StockSwitchover, LabError> {
    let started = Instant::now();
    let switchover = patronictl_switchover(lab, candidate).await?;
    let new_leader = lab.member_named(candidate).ok_or_else(|| LabError::Invalid(format!("no member {candidate}")))?;
    front.wait_routes_to(new_leader.pg_port, ROUTE_TIMEOUT.saturating_sub(started.elapsed())).await?;
    let routed_after = started.elapsed();
    // The writers have come back once they commit again after routing settled.
    let commits_at_routing = workload.commits();
    let deadline = Instant::now() + Duration::from_secs(10);
    while workload.commits() <= commits_at_routing + 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let finished = Instant::now();
    let report = workload.stop().await?;
    let lost = report.lost_on(&lab.conninfo(new_leader, "postgres")).await?;
    Ok(StockSwitchover {
        switchover,
        routed_after,
        longest_gap: report.longest_gap_within(started, finished),
        client_errors: report.client_errors,
        error_samples: report.error_samples.clone(),
        acknowledged: report.acknowledged.len(),
        lost: lost.len(),
    })
}
