//! Adopted Patroni clusters: adoption, what `info` shows of their members,
//! what Patroni says they need, following Patroni's leader, and the steps of
//! the `patroni rolling` runbook.
//!
//! Patroni decides who leads; pgmaint decides when, in which order, with the
//! endpoint paused, and tells the owners. pgmaint never promotes, stops or
//! starts a member: it asks Patroni (`POST /restart`, `POST /switchover`)
//! and reads what Patroni reports. Each step observes the cluster before it
//! acts and records what it decided (the candidate, the WAL position, each
//! member done), so a runner killed anywhere is resumed by the next one.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::endpoint::AdminConsole;
use crate::model::{Labels, Lsn, Plan, Reason, Strategy};
use crate::pg::Server;
use crate::provider::patroni::{location_of, ClusterState, Member, PatroniAccess, PatroniApi};
use crate::provider::ProviderError;
use crate::store::{AdoptedCluster, DatabaseRecord, MaintenanceState, NewDatabase, StepStatus, Writer};

use super::control::DatabaseInfo;
use super::hooks::run_shell;
use super::run::Run;
use super::runbook::Step;
use super::{Engine, EngineError, EngineResult, CONNECT_TIMEOUT};

/// The plan an adopted cluster is recorded on when `--plan` is not given.
const DEFAULT_ADOPTED_PLAN: &str = "standard-0";
/// Patroni's own default for `maximum_lag_on_failover`.
const PATRONI_DEFAULT_MAX_LAG: u64 = 1024 * 1024;
/// How long a new leader may take to accept writes after a switchover.
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// Settings a hot standby may not run below its primary's: lowering one
/// restarts the leader first (PostgreSQL's rule, Patroni's order).
const LEADER_FIRST_SETTINGS: &[&str] = &["max_connections", "max_prepared_transactions", "max_locks_per_transaction", "max_worker_processes", "max_wal_senders"];
/// How long a switchover waits for a replica to become a fit candidate.
const CANDIDATE_WAIT: Duration = Duration::from_secs(30);
/// How many restarts a member gets to apply its pending settings.
const SETTINGS_RESTARTS: usize = 3;
/// How often the new leader is polled while clients wait in the pause.
const LEADER_POLL: Duration = Duration::from_millis(10);
/// How often a member is polled while waited for (outside the pause).
const POLL: Duration = Duration::from_millis(250);

/// What `databases adopt` asks for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdoptDatabase {
    pub name: String,
    /// The REST API URLs of the cluster's members (any one answering is enough).
    pub patroni: Vec<String>,
    /// The PostgreSQL database clients use inside the cluster.
    pub dbname: String,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub labels: Labels,
}

/// One member of an adopted cluster, as `info` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatroniMemberView {
    pub name: String,
    /// `host:port` of its PostgreSQL.
    pub address: String,
    /// `leader`, `replica`, `sync_standby`...
    pub role: String,
    /// `running`, `streaming`, `stopped`...
    pub state: String,
    /// Bytes behind the leader (`None`: the leader, or Patroni cannot tell).
    pub lag_bytes: Option<u64>,
    pub pending_restart: bool,
    /// `server_version_num` of its running server.
    pub server_version: Option<u32>,
    pub timeline: Option<u32>,
}

impl Engine {
    fn patroni_access(&self) -> EngineResult<&PatroniAccess> {
        self.patroni.as_ref().ok_or_else(|| EngineError::Refused("adopted Patroni clusters need a [patroni] section in the daemon's configuration".into()))
    }

    /// Is `database` an adopted Patroni cluster?
    pub(super) async fn is_adopted(&self, database: &DatabaseRecord) -> EngineResult<bool> {
        Ok(self.store.adopted_cluster(database.id).await?.is_some())
    }

    /// The REST API of `database`'s cluster, if it was adopted.
    pub(super) async fn patroni_api(&self, database: &DatabaseRecord) -> EngineResult<Option<PatroniApi>> {
        match self.store.adopted_cluster(database.id).await? {
            Some(cluster) => Ok(Some(self.patroni_access()?.api(&cluster.rest_urls))),
            None => Ok(None),
        }
    }

    /// Refuses `verb` on an adopted cluster, saying why.
    pub(super) async fn refuse_if_adopted(&self, database: &DatabaseRecord, verb: &str) -> EngineResult<()> {
        if self.is_adopted(database).await? {
            return Err(EngineError::Refused(format!(
                "{} is an adopted Patroni cluster: its servers belong to Patroni, and {verb} needs servers pgmaint made",
                database.name
            )));
        }
        Ok(())
    }

    /// `databases adopt`: registers the Patroni cluster at `request.patroni`
    /// as a database and routes its endpoint to the current leader.
    pub async fn adopt(&self, request: &AdoptDatabase) -> EngineResult<DatabaseInfo> {
        let access = self.patroni_access()?;
        super::fleet::validate_name(&request.name)?;
        let plan: Plan = request.plan.as_deref().unwrap_or(DEFAULT_ADOPTED_PLAN).parse().map_err(|e| EngineError::Invalid(format!("{e}")))?;
        crate::model::check_labels(&request.labels).map_err(EngineError::Invalid)?;
        let window_text = request.window.as_deref().unwrap_or(&self.default_window);
        let window: crate::schedule::Window = window_text.parse().map_err(|e| EngineError::Invalid(format!("window {window_text:?}: {e}")))?;
        for owner in &request.owners {
            owner.parse::<lettre::Address>().map_err(|e| EngineError::Invalid(format!("owner {owner:?} is not an email address: {e}")))?;
        }
        if request.patroni.is_empty() {
            return Err(EngineError::Invalid("--patroni needs at least one REST API URL".into()));
        }
        for url in &request.patroni {
            let parsed = reqwest::Url::parse(url).map_err(|e| EngineError::Invalid(format!("--patroni {url:?}: not a URL ({e})")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(EngineError::Invalid(format!("--patroni {url:?}: expected http(s)://HOST:PORT")));
            }
            // URLs land in the state store, logs and errors: no secret in them.
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(EngineError::Invalid(
                    "--patroni: a URL with a user or password in it; give Patroni's REST login as [patroni] rest_user and rest_password_file".into(),
                ));
            }
        }
        let api = access.api(&request.patroni);
        let cluster = api.cluster().await?;
        let leader = cluster.leader().ok_or_else(|| EngineError::Refused("the Patroni cluster has no leader right now; adopt it once it has one".into()))?;
        let status = api.status(leader).await?;
        let system_identifier = status.database_system_identifier.clone().ok_or_else(|| EngineError::Invalid("Patroni did not report the cluster's database_system_identifier".into()))?;
        let scope = status.patroni.scope.clone().unwrap_or_default();
        let location = location_of(leader);
        // pgmaint's role must reach the database, and the database must exist.
        let server = Server::connect_to(&access.address(&location).expect("an adopted location"), &request.dbname, CONNECT_TIMEOUT)
            .await
            .map_err(|e| EngineError::Refused(format!("pgmaint's role {} cannot connect to database {} on the leader {}: {e}", access.pg_user(), request.dbname, leader.name)))?;
        server.check_writable().await?;
        let record = self
            .store
            .insert_adopted(
                &NewDatabase {
                    name: &request.name,
                    plan: plan.name(),
                    following_id: None,
                    dbname: Some(&request.dbname),
                    owners: &request.owners,
                    window_spec: &window.to_string(),
                    window_length_secs: crate::schedule::DEFAULT_WINDOW_LENGTH.num_seconds() as i32,
                    labels: &request.labels,
                },
                &AdoptedCluster { database_id: 0, scope, system_identifier, rest_urls: request.patroni.clone() },
                &location,
            )
            .await?;
        self.publish_routes().await?;
        tracing::info!(database = %record.name, leader = %leader.name, members = cluster.members.len(), "adopted a Patroni cluster");
        self.info(&record.name).await
    }

    /// Every member with what Patroni and the member itself report.
    pub(super) async fn member_views(&self, api: &PatroniApi) -> EngineResult<(ClusterState, Vec<PatroniMemberView>)> {
        let cluster = api.cluster().await?;
        let mut views = Vec::new();
        for member in &cluster.members {
            let status = api.status(member).await.ok();
            views.push(PatroniMemberView {
                name: member.name.clone(),
                address: format!("{}:{}", member.host, member.port),
                role: member.role.clone(),
                state: member.state.clone(),
                lag_bytes: member.lag_bytes(),
                pending_restart: status.as_ref().map_or(member.pending_restart, |s| s.pending_restart),
                server_version: status.as_ref().and_then(|s| s.server_version),
                timeline: member.timeline,
            });
        }
        Ok((cluster, views))
    }

    /// What an adopted cluster calls for, from what Patroni reports: a member
    /// waiting for a restart needs `settings`; members on different server
    /// versions need `minor-upgrade` (the upgrade is half done).
    pub(super) async fn adopted_needs(&self, api: &PatroniApi) -> EngineResult<Option<Reason>> {
        let (_, members) = self.member_views(api).await?;
        if members.iter().any(|m| m.pending_restart) {
            return Ok(Some(Reason::Settings));
        }
        let mut versions: Vec<u32> = members.iter().filter_map(|m| m.server_version).collect();
        versions.sort_unstable();
        versions.dedup();
        Ok((versions.len() > 1).then_some(Reason::MinorUpgrade))
    }

    /// The leader's pass: wherever Patroni moved leadership by itself (a
    /// failover), the state store and the endpoint follow. Databases with a
    /// maintenance running are left to their runner.
    pub async fn follow_patroni_leaders(&self) -> EngineResult<()> {
        for database in self.store.databases().await? {
            let Some(api) = self.patroni_api(&database).await? else { continue };
            if self.store.open_maintenance(database.id).await?.is_some_and(|m| m.state == MaintenanceState::Running) {
                continue;
            }
            let Ok(cluster) = api.cluster().await else { continue };
            let Some(leader) = cluster.leader() else { continue };
            let location = location_of(leader);
            if self.current_location(database.id).await? != location {
                self.store.move_current_server(Writer::Operator, database.id, &location).await?;
                self.endpoint.admin().await?.repoint(&self.route_to(&database, &location)).await?;
                tracing::warn!(database = %database.name, leader = %leader.name, "Patroni's leader moved; the endpoint follows it");
            }
        }
        Ok(())
    }
}

/// What "healthy again" asks of a member besides streaming within the lag.
#[derive(Debug, Clone, Copy, Default)]
struct Wanted {
    /// No restart pending (after `settings`).
    no_pending_restart: bool,
    /// At least this `server_version_num` (after `minor-upgrade`).
    min_version: Option<u32>,
}

/// What the `choose_candidate` step decided.
struct Handover {
    leader: String,
    candidate: String,
}

impl Engine {
    /// The details this attempt recorded for `step`, oldest first.
    async fn recorded(&self, run: &Run, step: Step) -> EngineResult<Vec<Value>> {
        Ok(self.store.step_details_since(run.maintenance.id, Step::Postponed.name(), step.name()).await?)
    }

    async fn handover_of(&self, run: &Run) -> EngineResult<Handover> {
        let detail = self.recorded(run, Step::ChooseCandidate).await?.pop().ok_or_else(|| EngineError::Invalid(format!("maintenance #{} chose no candidate", run.maintenance.id)))?;
        let name = |key: &str| detail.get(key).and_then(Value::as_str).map(str::to_string);
        match (name("leader"), name("candidate")) {
            (Some(leader), Some(candidate)) => Ok(Handover { leader, candidate }),
            _ => Err(EngineError::Invalid(format!("maintenance #{}: unreadable choose_candidate record {detail}", run.maintenance.id))),
        }
    }

    fn reason_of(run: &Run) -> EngineResult<Reason> {
        run.maintenance.reason.parse::<Reason>().map_err(|e| EngineError::Invalid(e.to_string()))
    }

    /// `roll_replicas`: each replica in turn (by name), skipping those an
    /// earlier runner finished; each one's record is written as it is done.
    pub(super) async fn roll_replicas(&self, run: &Run, api: &PatroniApi) -> EngineResult<Value> {
        let done: Vec<String> =
            self.recorded(run, Step::RollMember).await?.iter().filter_map(|d| d.get("member").and_then(Value::as_str).map(str::to_string)).collect();
        let cluster = api.cluster().await?;
        let target = self.newest_version(api, &cluster).await;
        let mut replicas: Vec<&Member> = cluster.members.iter().filter(|m| !m.is_leader()).collect();
        replicas.sort_by(|a, b| a.name.cmp(&b.name));
        let mut rolled = Vec::new();
        for member in replicas {
            if done.contains(&member.name) {
                continue;
            }
            let detail = self.roll_member(run, api, &member.name, target).await?;
            self.store.record_step(run.claim, Step::RollMember.name(), StepStatus::Done, detail).await?;
            rolled.push(member.name.clone());
        }
        Ok(json!({ "rolled": rolled, "already_done": done }))
    }

    /// The newest `server_version_num` any member runs (a minor upgrade's target).
    async fn newest_version(&self, api: &PatroniApi, cluster: &ClusterState) -> Option<u32> {
        let mut newest = None;
        for member in &cluster.members {
            if let Ok(status) = api.status(member).await {
                newest = newest.max(status.server_version);
            }
        }
        newest
    }

    /// One non-leader member: restarted through Patroni (`settings`), or the
    /// host hook run on it (then, for `minor-upgrade`, restarted onto the new
    /// binaries); then waited until healthy again.
    async fn roll_member(&self, run: &Run, api: &PatroniApi, name: &str, target_version: Option<u32>) -> EngineResult<Value> {
        let settings = &self.patroni_access()?.settings;
        let reason = Self::reason_of(run)?;
        let cluster = api.cluster().await?;
        let member = cluster.member(name).ok_or_else(|| EngineError::Refused(format!("member {name} is no longer in the Patroni cluster")))?;
        if member.is_leader() {
            return Err(EngineError::Refused(format!("member {name} leads the cluster now; pgmaint never restarts or patches a leader in place")));
        }
        let started = Instant::now();
        let mut detail = json!({ "member": name });
        match reason {
            Reason::Settings => {
                // A replica runs some values (max_connections...) no lower than
                // its primary's as its WAL last recorded them: restarted before
                // it replayed the leader's new value, it still waits for a
                // restart. So: restart, wait until caught up, again if pending.
                let mut restarts = 0;
                while api.status(member).await?.pending_restart {
                    if restarts == SETTINGS_RESTARTS {
                        return Err(EngineError::Provider(ProviderError::Os(format!("member {name} still waits for a restart after {restarts} restarts"))));
                    }
                    api.restart(member).await?;
                    restarts += 1;
                    self.wait_member_healthy(api, name, Wanted::default()).await?;
                }
                detail["restarts"] = json!(restarts);
            }
            _ => {
                let command = settings.host_hook.as_deref().ok_or_else(|| {
                    EngineError::Refused(format!("{} on an adopted cluster runs [patroni] host_hook on each member, and none is configured", reason.as_str()))
                })?;
                let port = member.port.to_string();
                let env = [
                    ("PGMAINT_DATABASE", run.database.name.as_str()),
                    ("PGMAINT_MEMBER", name),
                    ("PGMAINT_HOST", member.host.as_str()),
                    ("PGMAINT_PORT", port.as_str()),
                    ("PGMAINT_ROLE", "replica"),
                    ("PGMAINT_REASON", reason.as_str()),
                ];
                let output = run_shell(command, &env, Some(settings.member_timeout))
                    .await
                    .map_err(|failure| EngineError::Hook(failure.describe(&format!("the host hook on member {name}"))))?;
                detail["output"] = json!(output);
                if reason == Reason::MinorUpgrade {
                    api.restart(member).await?;
                    detail["restarted"] = json!(true);
                }
            }
        }
        let wanted = Wanted {
            no_pending_restart: reason == Reason::Settings,
            min_version: if reason == Reason::MinorUpgrade { target_version } else { None },
        };
        self.wait_member_healthy(api, name, wanted).await?;
        detail["seconds"] = json!(started.elapsed().as_secs_f64());
        Ok(detail)
    }

    /// Waits until member `name` runs as a replica on the leader's timeline
    /// within `[patroni] max_lag`, and as `wanted` asks.
    async fn wait_member_healthy(&self, api: &PatroniApi, name: &str, wanted: Wanted) -> EngineResult<()> {
        let settings = &self.patroni_access()?.settings;
        let deadline = Instant::now() + settings.member_timeout;
        loop {
            let seen = match api.cluster().await {
                Ok(cluster) => {
                    let leader_timeline = cluster.leader().and_then(|l| l.timeline);
                    match cluster.member(name) {
                        Some(member) => {
                            let status = api.status(member).await.ok();
                            let lag = self.lags(&cluster).await.get(name).copied();
                            let healthy = matches!(member.state.as_str(), "running" | "streaming")
                                && !member.is_leader()
                                && member.timeline.is_some()
                                && member.timeline == leader_timeline
                                && lag.is_some_and(|lag| lag <= settings.max_lag)
                                && status.as_ref().is_some_and(|s| {
                                    !(wanted.no_pending_restart && s.pending_restart) && s.server_version >= wanted.min_version
                                });
                            if healthy {
                                return Ok(());
                            }
                            format!("state {}, lag {lag:?}, timeline {:?} (leader {:?})", member.state, member.timeline, leader_timeline)
                        }
                        None => "not in the cluster".to_string(),
                    }
                }
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(EngineError::Provider(ProviderError::Os(format!(
                    "member {name} is not healthy after {}: {seen}",
                    crate::schedule::format_duration(settings.member_timeout)
                ))));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Each member's lag in bytes: what its leader's `pg_stat_replication`
    /// says now (Patroni names each walreceiver after its member), else what
    /// Patroni last published, which lags by up to a loop under heavy writes.
    async fn lags(&self, cluster: &ClusterState) -> std::collections::HashMap<String, u64> {
        let mut lags: std::collections::HashMap<String, u64> =
            cluster.members.iter().filter_map(|m| m.lag_bytes().map(|lag| (m.name.clone(), lag))).collect();
        if let Some(leader) = cluster.leader() {
            if let Ok(server) = self.connect(&location_of(leader)).await {
                for replica in server.replicas().await.unwrap_or_default() {
                    if let (true, Some(lag)) = (replica.state == "streaming", replica.lag_bytes) {
                        lags.insert(replica.application_name, lag.max(0) as u64);
                    }
                }
            }
        }
        lags
    }

    /// `choose_candidate`: Patroni's pre-checks, then the replica to hand
    /// leadership to: streaming on the leader's timeline within
    /// `maximum_lag_on_failover`, without `nofailover`; the least behind.
    pub(super) async fn choose_candidate(&self, api: &PatroniApi) -> EngineResult<Value> {
        let max_lag = api.config().await?.get("maximum_lag_on_failover").and_then(Value::as_u64).unwrap_or(PATRONI_DEFAULT_MAX_LAG);
        // A replica briefly behind (a burst of writes) is waited for a while.
        let deadline = Instant::now() + CANDIDATE_WAIT;
        loop {
            let cluster = api.cluster().await?;
            if cluster.pause {
                return Err(EngineError::Refused("Patroni is paused for this cluster (its maintenance mode); resume it with `patronictl resume` first".into()));
            }
            if cluster.scheduled_switchover.is_some() {
                return Err(EngineError::Refused("a switchover is already scheduled in Patroni for this cluster".into()));
            }
            let leader = cluster.leader().ok_or_else(|| EngineError::Refused("the Patroni cluster has no leader right now".into()))?;
            let lags = self.lags(&cluster).await;
            let mut rejected = Vec::new();
            let mut candidates = Vec::new();
            for member in cluster.members.iter().filter(|m| !m.is_leader()) {
                let lag = lags.get(&member.name).copied();
                let why = if member.no_failover() {
                    Some("tagged nofailover".to_string())
                } else if !matches!(member.state.as_str(), "running" | "streaming") {
                    Some(format!("state {}", member.state))
                } else if member.timeline != leader.timeline {
                    Some(format!("timeline {:?}, the leader's {:?}", member.timeline, leader.timeline))
                } else if lag.is_none_or(|lag| lag > max_lag) {
                    Some(format!("lag {lag:?} over maximum_lag_on_failover {max_lag}"))
                } else {
                    None
                };
                match why {
                    Some(why) => rejected.push(format!("{}: {why}", member.name)),
                    None => candidates.push((lag, member.name.clone())),
                }
            }
            candidates.sort();
            if let Some((_, candidate)) = candidates.first() {
                return Ok(json!({ "leader": leader.name, "candidate": candidate, "timeline": leader.timeline, "rejected": rejected }));
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Refused(format!("no member can take over from {}: {}", leader.name, rejected.join("; "))));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A session on the member `name` if it is Patroni's leader now.
    async fn session_on_leader(&self, api: &PatroniApi, name: &str) -> EngineResult<Option<Server>> {
        let cluster = api.cluster().await?;
        match cluster.leader() {
            Some(leader) if leader.name == name => Ok(Some(self.connect(&location_of(leader)).await?)),
            _ => Ok(None),
        }
    }

    /// `checkpoint` on the leader (the one a handover starts from, when one
    /// was chosen), so its shutdown checkpoint has little to write.
    pub(super) async fn checkpoint_leader(&self, run: &Run, api: &PatroniApi) -> EngineResult<Value> {
        let leader = match self.recorded(run, Step::ChooseCandidate).await?.is_empty() {
            true => api.cluster().await?.leader().map(|l| l.name.clone()).ok_or_else(|| EngineError::Refused("the Patroni cluster has no leader right now".into()))?,
            false => self.handover_of(run).await?.leader,
        };
        match self.session_on_leader(api, &leader).await? {
            Some(server) => {
                server.checkpoint().await?;
                Ok(json!({ "leader": leader }))
            }
            None => Ok(json!({ "skipped": format!("{leader} no longer leads") })),
        }
    }

    /// `restart` (leader first): Patroni restarts the leader's PostgreSQL in
    /// place, if a restart is still pending there; it stays leader.
    pub(super) async fn restart_leader(&self, api: &PatroniApi) -> EngineResult<Value> {
        let cluster = api.cluster().await?;
        let leader = cluster.leader().ok_or_else(|| EngineError::Refused("the Patroni cluster has no leader right now".into()))?;
        let pending = api.status(leader).await?.pending_restart;
        if pending {
            api.restart(leader).await?;
        }
        Ok(json!({ "leader": leader.name, "restarted": pending }))
    }

    /// The strategy for `reason` on an adopted cluster: leader first when
    /// Patroni's configuration lowers a value a replica may not run below its
    /// primary's (Patroni passes those on the server's command line, so only
    /// its dynamic configuration knows the new value), else replicas first
    /// and a switchover.
    pub(super) async fn rolling_strategy(&self, database: &DatabaseRecord, reason: Reason) -> EngineResult<Strategy> {
        let Some(api) = self.patroni_api(database).await?.filter(|_| reason == Reason::Settings) else { return Ok(Strategy::Rolling) };
        let config = api.config().await?;
        let wanted = config.pointer("/postgresql/parameters").cloned().unwrap_or_default();
        let server = self.connect(&self.current_location(database.id).await?).await?;
        let mut lowered = Vec::new();
        for name in LEADER_FIRST_SETTINGS {
            let new = match wanted.get(name) {
                Some(Value::Number(n)) => n.as_i64(),
                Some(Value::String(text)) => text.parse().ok(),
                _ => None,
            };
            let running: Option<i64> = server.setting(name).await?.parse().ok();
            if let (Some(new), Some(running)) = (new, running) {
                if new < running {
                    lowered.push(format!("{name} {running} -> {new}"));
                }
            }
        }
        if lowered.is_empty() {
            return Ok(Strategy::Rolling);
        }
        tracing::info!(database = %database.name, settings = ?lowered, "lowered settings replicas may not run below the leader's: the leader goes first");
        Ok(Strategy::RollingLeaderFirst)
    }

    /// `mark_wal`: with the endpoint paused no client transaction is in
    /// flight, so every acknowledged commit lies before the leader's WAL
    /// position now; the new timeline must start at or past it.
    pub(super) async fn mark_wal(&self, run: &Run, api: &PatroniApi) -> EngineResult<Value> {
        let handover = self.handover_of(run).await?;
        match self.session_on_leader(api, &handover.leader).await? {
            Some(server) => Ok(json!({ "lsn": server.current_lsn().await?.to_string() })),
            None => Ok(json!({ "lsn": null, "skipped": format!("{} no longer leads", handover.leader) })),
        }
    }

    /// `handover`: `POST /switchover` from the recorded leader to the
    /// candidate, unless leadership already moved; then waits until a new
    /// leader takes writes.
    pub(super) async fn handover(&self, run: &Run, api: &PatroniApi) -> EngineResult<Value> {
        let handover = self.handover_of(run).await?;
        let cluster = api.cluster().await?;
        let moved = |leader: &Member| leader.name != handover.leader;
        let Some(leader) = cluster.leader().filter(|leader| !moved(leader)).cloned() else {
            // Already handed over (by an earlier runner, or by Patroni itself).
            let leader = self.writable_leader(api, moved).await?;
            return Ok(json!({ "asked": false, "leader": leader.name }));
        };
        // Patroni answers `POST /switchover` on its own whole-second polls,
        // about a second after the candidate took over: clients in the pause
        // wait for the new leader taking writes, not for that answer. A
        // refusal (HTTP 412, 503...) still ends the wait at once.
        let asking = {
            let (api, candidate) = (api.clone(), handover.candidate.clone());
            tokio::spawn(async move { api.switchover(&leader, &candidate).await })
        };
        let waiting = self.writable_leader(api, moved);
        tokio::pin!(waiting);
        let leader = tokio::select! {
            leader = &mut waiting => leader?,
            answer = asking => {
                answer.map_err(|e| EngineError::Provider(ProviderError::Os(format!("the switchover request was lost: {e}"))))??;
                waiting.await?
            }
        };
        Ok(json!({ "asked": true, "leader": leader.name }))
    }

    /// Waits until Patroni names a leader that `accept`s and it takes writes.
    pub(super) async fn writable_leader(&self, api: &PatroniApi, accept: impl Fn(&Member) -> bool) -> EngineResult<Member> {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        loop {
            let seen = match api.cluster().await {
                Ok(cluster) => match cluster.leader() {
                    Some(leader) if accept(leader) => match self.connect(&location_of(leader)).await {
                        Ok(server) => match server.check_writable().await {
                            Ok(()) => return Ok(leader.clone()),
                            Err(error) => format!("{} does not take writes yet: {error}", leader.name),
                        },
                        Err(error) => format!("{} unreachable: {error}", leader.name),
                    },
                    Some(leader) => format!("{} still leads", leader.name),
                    None => "no leader".to_string(),
                },
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(EngineError::Provider(ProviderError::Os(format!("no writable leader after {}s: {seen}", LEADER_TIMEOUT.as_secs()))));
            }
            tokio::time::sleep(LEADER_POLL).await;
        }
    }

    /// `confirm_wal`: the new leader's timeline begins at or past the position
    /// `mark_wal` recorded, so it holds every acknowledged commit.
    pub(super) async fn confirm_handover(&self, run: &Run, api: &PatroniApi) -> EngineResult<Value> {
        let mark = self.recorded(run, Step::MarkWal).await?.pop().and_then(|d| d.get("lsn").and_then(Value::as_str).map(str::to_string));
        let Some(mark) = mark else { return Ok(json!({ "skipped": "no position was recorded (leadership moved before the pause)" })) };
        let mark: Lsn = mark.parse().map_err(|e| EngineError::Invalid(format!("recorded WAL position: {e}")))?;
        // The old leader's timeline, as choose_candidate saw it: the switch out of it is the one to check.
        let chosen = self.recorded(run, Step::ChooseCandidate).await?.pop().unwrap_or_default();
        let old_timeline = chosen.get("timeline").and_then(Value::as_u64).ok_or_else(|| EngineError::Invalid("choose_candidate recorded no timeline".into()))? as u32;
        let (switch_point, source) = match self.switch_from_leader(api, old_timeline).await {
            Some(point) => (point, "the new leader's timeline history"),
            None => (self.switch_from_patroni(api, old_timeline).await?, "Patroni's /history"),
        };
        let timeline = old_timeline + 1;
        if switch_point < mark {
            return Err(EngineError::Provider(ProviderError::Os(format!(
                "timeline {timeline} starts at {switch_point}, before {mark} where the old leader stood when the endpoint paused: acknowledged commits may be missing"
            ))));
        }
        Ok(json!({ "marked": mark.to_string(), "switch_point": switch_point.to_string(), "timeline": timeline, "from": source }))
    }

    /// The switch out of `timeline` as the new leader's own history file has
    /// it: there the moment it was promoted (`None` if pgmaint's role may not
    /// read it, or it is not there).
    async fn switch_from_leader(&self, api: &PatroniApi, timeline: u32) -> Option<Lsn> {
        let cluster = api.cluster().await.ok()?;
        let server = self.connect(&location_of(cluster.leader()?)).await.ok()?;
        match server.switch_out_of(timeline).await {
            Ok(point) => point,
            Err(error) => {
                tracing::debug!(%error, "the new leader's timeline history is not readable: asking Patroni's /history");
                None
            }
        }
    }

    /// The same from Patroni's `/history`, which the leader publishes a
    /// loop (`loop_wait`) after its promotion: waited for.
    async fn switch_from_patroni(&self, api: &PatroniApi, timeline: u32) -> EngineResult<Lsn> {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        loop {
            if let Some(switch) = api.history().await?.into_iter().find(|row| row.timeline == timeline) {
                return Ok(switch.switch_point);
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Provider(ProviderError::Os(format!("Patroni's /history never showed the switch out of timeline {timeline}"))));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `repoint`, and the recovery of every paused step: whoever Patroni
    /// made leader (once it takes writes) is current, and the endpoint routes there.
    pub(super) async fn route_to_leader(&self, run: &Run, api: &PatroniApi, admin: &mut AdminConsole) -> EngineResult<Value> {
        let leader = self.writable_leader(api, |_| true).await?;
        let location = location_of(&leader);
        let route = self.route_to(&run.database, &location);
        let (recorded, routed) = tokio::join!(self.store.move_current_server(Writer::Runner(run.claim), run.database.id, &location), admin.repoint(&route));
        recorded?;
        routed?;
        Ok(json!({ "leader": leader.name, "route": route.target() }))
    }

    /// `roll_old_leader`: the old leader, a replica now, done last.
    /// Patroni may still be demoting it (the handover goes on as soon as the
    /// new leader takes writes): it is first waited back as a healthy replica.
    pub(super) async fn roll_old_leader(&self, run: &Run, api: &PatroniApi) -> EngineResult<Value> {
        let handover = self.handover_of(run).await?;
        let rolled = async {
            self.wait_member_healthy(api, &handover.leader, Wanted::default()).await?;
            let cluster = api.cluster().await?;
            let target = self.newest_version(api, &cluster).await;
            self.roll_member(run, api, &handover.leader, target).await
        };
        // A failure here comes after the switchover: say where the cluster stands.
        rolled.await.map_err(|error| match error {
            EngineError::Hook(message) => EngineError::Hook(format!("the cluster runs on its new leader {}; then on the old leader: {message}", handover.candidate)),
            other => EngineError::Provider(ProviderError::Os(format!("the cluster runs on its new leader {}; then on the old leader {}: {other}", handover.candidate, handover.leader))),
        })
    }
}
