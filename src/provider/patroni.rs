//! Patroni clusters pgmaint adopts: servers it did not create, on any host,
//! whose high availability belongs to Patroni.
//!
//! Patroni decides who leads; pgmaint only asks, through Patroni's REST API
//! (`GET /cluster`, `GET /patroni`, `GET /history`, `POST /restart`,
//! `POST /switchover`), and connects to the members' PostgreSQL over TCP as
//! the role `[patroni] pg_user` names. It never starts, stops or promotes a
//! member itself: the lifecycle methods of [`Provider`] refuse, so no
//! runbook written for pgmaint-made servers can act on an adopted one.
//!
//! A member's location in the state store is `patroni:<member>@<host>:<port>`:
//! the address is in the location itself, so routing to it needs no lookup.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{Host, Provider, ProviderError, ProviderResult, ServerAddress, StartWait, StopMode};
use crate::config::PatroniConfig;
use crate::model::{Lsn, Plan};
use crate::pg::Server;

/// Every adopted member's location starts so.
pub const LOCATION_PREFIX: &str = "patroni:";
/// How long one REST call may take (a switchover waits for Patroni's own, longer).
const REST_TIMEOUT: Duration = Duration::from_secs(10);
/// `POST /switchover` answers once Patroni has demoted and promoted.
const SWITCHOVER_TIMEOUT: Duration = Duration::from_secs(90);

/// The location of a member: where its PostgreSQL listens, and its name.
pub fn location_of(member: &Member) -> String {
    format!("{LOCATION_PREFIX}{}@{}:{}", member.name, member.host, member.port)
}

/// Is `location` an adopted member's?
pub fn is_adopted(location: &str) -> bool {
    location.starts_with(LOCATION_PREFIX)
}

/// A member's location read back: (member name, host, port).
pub fn parse_location(location: &str) -> Option<(&str, &str, u16)> {
    let rest = location.strip_prefix(LOCATION_PREFIX)?;
    let (name, address) = rest.split_once('@')?;
    let (host, port) = address.rsplit_once(':')?;
    Some((name, host, port.parse().ok()?))
}

/// `[patroni]` with its secrets read: how pgmaint reaches adopted clusters.
#[derive(Clone)]
pub struct PatroniAccess {
    pg_user: String,
    pg_password: Option<String>,
    rest_auth: Option<(String, String)>,
    http: reqwest::Client,
    /// The `[patroni]` settings the runbooks use (hook, lag, timeout).
    pub settings: PatroniConfig,
}

impl std::fmt::Debug for PatroniAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatroniAccess").field("pg_user", &self.pg_user).field("rest_user", &self.rest_auth.as_ref().map(|(user, _)| user)).finish()
    }
}

impl PatroniAccess {
    /// Reads the password files `[patroni]` names and builds the REST client.
    pub fn from_config(settings: &PatroniConfig) -> ProviderResult<PatroniAccess> {
        let pg_password = settings.pg_password_file.as_deref().map(read_secret).transpose()?;
        let rest_auth = match (&settings.rest_user, &settings.rest_password_file) {
            (Some(user), Some(file)) => Some((user.clone(), read_secret(file)?)),
            _ => None,
        };
        let mut http = reqwest::Client::builder().timeout(REST_TIMEOUT).connect_timeout(REST_TIMEOUT);
        if let Some(ca_file) = &settings.rest_ca_file {
            let pem = std::fs::read(ca_file).map_err(|e| ProviderError::io(ca_file, e))?;
            let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| ProviderError::Parse(format!("{}: not a PEM certificate: {e}", ca_file.display())))?;
            http = http.add_root_certificate(ca);
        }
        let http = http.build().map_err(|e| ProviderError::Os(format!("REST client: {e}")))?;
        Ok(PatroniAccess { pg_user: settings.pg_user.clone(), pg_password, rest_auth, http, settings: settings.clone() })
    }

    /// The role pgmaint logs in as on adopted servers.
    pub fn pg_user(&self) -> &str {
        &self.pg_user
    }

    /// That role's password, for PgBouncer's `auth_user` (never logged).
    pub fn pg_password(&self) -> Option<&str> {
        self.pg_password.as_deref()
    }

    /// The REST API of the cluster reachable at `urls` (any member answers for the cluster).
    pub fn api(&self, urls: &[String]) -> PatroniApi {
        PatroniApi { urls: urls.iter().map(|u| u.trim_end_matches('/').to_string()).collect(), access: self.clone() }
    }

    /// pgmaint's address on the server at an adopted `location`.
    pub fn address(&self, location: &str) -> Option<ServerAddress> {
        let (_, host, port) = parse_location(location)?;
        let mut address = ServerAddress::new(Host::Tcp(host.to_string()), port, &self.pg_user);
        address.password = self.pg_password.clone();
        Some(address)
    }
}

fn read_secret(path: &Path) -> ProviderResult<String> {
    let text = std::fs::read_to_string(path).map_err(|e| ProviderError::io(path, e))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(ProviderError::Parse(format!("{}: the file is empty", path.display())));
    }
    Ok(secret)
}

/// One member as `GET /cluster` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Member {
    pub name: String,
    /// `leader`, `replica`, `sync_standby`, `standby_leader`.
    pub role: String,
    /// `running`, `streaming`, `starting`, `stopped`, `restarting`...
    pub state: String,
    #[serde(default)]
    pub api_url: Option<String>,
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub timeline: Option<u32>,
    /// Bytes behind the leader; Patroni says `"unknown"` when it cannot tell.
    #[serde(default)]
    pub lag: Option<serde_json::Value>,
    #[serde(default)]
    pub pending_restart: bool,
    #[serde(default)]
    pub tags: serde_json::Map<String, serde_json::Value>,
}

impl Member {
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }

    /// Bytes behind the leader, if Patroni knows.
    pub fn lag_bytes(&self) -> Option<u64> {
        self.lag.as_ref().and_then(serde_json::Value::as_u64)
    }

    /// Patroni's `nofailover` tag: never a candidate.
    pub fn no_failover(&self) -> bool {
        self.tags.get("nofailover").and_then(serde_json::Value::as_bool).unwrap_or(false)
    }

    /// The member's REST base URL (its `api_url` without `/patroni`).
    pub fn rest_url(&self) -> ProviderResult<String> {
        let url = self.api_url.as_deref().ok_or_else(|| ProviderError::Parse(format!("member {} has no api_url", self.name)))?;
        Ok(url.trim_end_matches('/').trim_end_matches("/patroni").to_string())
    }
}

/// `GET /cluster`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterState {
    pub members: Vec<Member>,
    /// Patroni's maintenance mode: it takes no automatic action.
    #[serde(default)]
    pub pause: bool,
    #[serde(default)]
    pub scheduled_switchover: Option<serde_json::Value>,
}

impl ClusterState {
    pub fn leader(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.is_leader())
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// `GET /patroni` on one member.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberStatus {
    pub state: String,
    pub role: String,
    #[serde(default)]
    pub server_version: Option<u32>,
    #[serde(default)]
    pub timeline: Option<u32>,
    #[serde(default)]
    pub database_system_identifier: Option<String>,
    #[serde(default)]
    pub pending_restart: bool,
    #[serde(default)]
    pub patroni: PatroniInfo,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PatroniInfo {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// One row of `GET /history`: timeline `timeline` ended at `switch_point`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineSwitch {
    pub timeline: u32,
    pub switch_point: Lsn,
}

/// One cluster's REST API, reached through any of its members' URLs.
#[derive(Debug, Clone)]
pub struct PatroniApi {
    urls: Vec<String>,
    access: PatroniAccess,
}

impl PatroniApi {
    /// The URLs asked in turn.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.access.http.request(method, url);
        match &self.access.rest_auth {
            Some((user, password)) => request.basic_auth(user, Some(password)),
            None => request,
        }
    }

    /// GETs `path` from the first member URL that answers.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> ProviderResult<T> {
        let mut failures = Vec::new();
        for base in &self.urls {
            match self.get_from(base, path).await {
                Ok(value) => return Ok(value),
                Err(error) => failures.push(error.to_string()),
            }
        }
        Err(ProviderError::Os(format!("Patroni REST API unreachable: {}", failures.join("; "))))
    }

    async fn get_from<T: serde::de::DeserializeOwned>(&self, base: &str, path: &str) -> ProviderResult<T> {
        let url = format!("{base}{path}");
        let response = self.request(reqwest::Method::GET, &url).send().await.map_err(|e| rest_error(&url, e))?;
        let status = response.status();
        // /patroni answers 503 with a full body when the member is not running: still useful.
        if !status.is_success() && status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Err(ProviderError::Os(format!("GET {url}: HTTP {status}")));
        }
        response.json().await.map_err(|e| ProviderError::Parse(format!("GET {url}: {}", without_url(&e))))
    }

    /// The cluster's members, leader, pause and scheduled switchover.
    pub async fn cluster(&self) -> ProviderResult<ClusterState> {
        self.get("/cluster").await
    }

    /// What one member says of itself.
    pub async fn status(&self, member: &Member) -> ProviderResult<MemberStatus> {
        self.get_from(&member.rest_url()?, "/patroni").await
    }

    /// The timeline history (from whichever member answers).
    pub async fn history(&self) -> ProviderResult<Vec<TimelineSwitch>> {
        let rows: Vec<Vec<serde_json::Value>> = self.get("/history").await?;
        rows.iter()
            .map(|row| {
                let timeline = row.first().and_then(serde_json::Value::as_u64);
                let point = row.get(1).and_then(serde_json::Value::as_u64);
                match (timeline, point) {
                    (Some(timeline), Some(point)) => Ok(TimelineSwitch { timeline: timeline as u32, switch_point: Lsn(point) }),
                    _ => Err(ProviderError::Parse(format!("GET /history: unexpected row {row:?}"))),
                }
            })
            .collect()
    }

    /// The cluster's dynamic configuration (`GET /config`).
    pub async fn config(&self) -> ProviderResult<serde_json::Value> {
        self.get("/config").await
    }

    /// Asks Patroni to restart one member's PostgreSQL (it keeps its role).
    pub async fn restart(&self, member: &Member) -> ProviderResult<()> {
        let url = format!("{}/restart", member.rest_url()?);
        self.post(&url, json!({}), REST_TIMEOUT * 6).await
    }

    /// Asks Patroni to hand leadership from `leader` to `candidate` now.
    pub async fn switchover(&self, leader: &Member, candidate: &str) -> ProviderResult<()> {
        let url = format!("{}/switchover", leader.rest_url()?);
        self.post(&url, json!({ "leader": leader.name, "candidate": candidate }), SWITCHOVER_TIMEOUT).await
    }

    async fn post(&self, url: &str, body: serde_json::Value, timeout: Duration) -> ProviderResult<()> {
        let response = self.request(reqwest::Method::POST, url).json(&body).timeout(timeout).send().await.map_err(|e| rest_error(url, e))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(ProviderError::Os(format!("POST {url}: HTTP {status}: {}", text.trim())))
        }
    }
}

fn rest_error(url: &str, error: reqwest::Error) -> ProviderError {
    ProviderError::Os(format!("{url}: {}", without_url(&error)))
}

/// What went wrong with a REST call, without the URL reqwest would repeat
/// (a URL may carry a password).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_decode() {
        "unexpected answer"
    } else {
        "request failed"
    };
    match std::error::Error::source(error) {
        Some(cause) if !error.is_timeout() => format!("{kind}: {cause}"),
        _ => kind.to_string(),
    }
}

/// Adopted members, as a [`Provider`]: pgmaint reaches them, Patroni runs them.
#[derive(Debug)]
pub struct PatroniProvider {
    access: PatroniAccess,
}

impl PatroniProvider {
    pub fn new(access: PatroniAccess) -> PatroniProvider {
        PatroniProvider { access }
    }

    fn refused(&self, location: &str, what: &str) -> ProviderError {
        ProviderError::Os(format!("{location}: an adopted Patroni member is run by Patroni; pgmaint does not {what} it"))
    }
}

#[async_trait::async_trait]
impl Provider for PatroniProvider {
    fn new_location(&self, database: &str) -> String {
        format!("{LOCATION_PREFIX}{database}")
    }

    fn address(&self, location: &str) -> ServerAddress {
        self.access.address(location).unwrap_or_else(|| ServerAddress::new(Host::Tcp(location.to_string()), 0, self.access.pg_user()))
    }

    async fn provision_primary(&self, location: &str, _: &Plan) -> ProviderResult<()> {
        Err(self.refused(location, "provision"))
    }

    async fn build_replica(&self, location: &str, _: &str, _: &str, _: &Plan) -> ProviderResult<()> {
        Err(self.refused(location, "build"))
    }

    async fn is_running(&self, location: &str) -> ProviderResult<bool> {
        Ok(Server::connect_to(&self.address(location), "postgres", REST_TIMEOUT).await.is_ok())
    }

    async fn start(&self, location: &str, _: StartWait) -> ProviderResult<()> {
        Err(self.refused(location, "start"))
    }

    async fn stop(&self, location: &str, _: StopMode) -> ProviderResult<()> {
        Err(self.refused(location, "stop"))
    }

    async fn restart(&self, location: &str) -> ProviderResult<()> {
        Err(self.refused(location, "restart (outside Patroni's REST API)"))
    }

    async fn promote(&self, location: &str, _: &Server, _: Duration) -> ProviderResult<()> {
        Err(self.refused(location, "promote"))
    }

    async fn retire(&self, location: &str) -> ProviderResult<()> {
        Err(self.refused(location, "retire"))
    }

    async fn remove(&self, location: &str) -> ProviderResult<()> {
        Err(self.refused(location, "remove"))
    }

    async fn installed_version_num(&self) -> ProviderResult<u32> {
        Err(ProviderError::Os("adopted Patroni clusters report their versions per member".into()))
    }

    fn client_program(&self, name: &str) -> tokio::process::Command {
        tokio::process::Command::new(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_carry_the_member_and_its_address() {
        let member: Member = serde_json::from_value(json!({
            "name": "pg-2", "role": "replica", "state": "streaming", "api_url": "http://10.0.0.2:8008/patroni",
            "host": "10.0.0.2", "port": 5432, "timeline": 3, "lag": 0, "tags": {"nofailover": true}
        }))
        .unwrap();
        let location = location_of(&member);
        assert_eq!(location, "patroni:pg-2@10.0.0.2:5432");
        assert!(is_adopted(&location));
        assert_eq!(parse_location(&location), Some(("pg-2", "10.0.0.2", 5432)));
        assert_eq!(parse_location("/var/lib/pgmaint/instances/a"), None);
        assert_eq!(member.rest_url().unwrap(), "http://10.0.0.2:8008");
        assert_eq!(member.lag_bytes(), Some(0));
        assert!(member.no_failover() && !member.is_leader());
        let unknown: Member = serde_json::from_value(json!({"name": "a", "role": "replica", "state": "stopped", "host": "h", "port": 1, "lag": "unknown"})).unwrap();
        assert_eq!(unknown.lag_bytes(), None);
    }
}
