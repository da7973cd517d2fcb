//! The API's client: HTTP/1.1 over the daemon's Unix socket (or TCP with a
//! bearer token), one connection per request, JSON in and out.
//!
//! Every answer comes back as its wire type from [`super::types`], the same
//! type the server answered with (so `--json` prints what the API says). An
//! error answer becomes [`ClientError::Status`] with the HTTP status and the
//! server's `error` text.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{header, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::types::{
    ActOnRollout, AdoptDatabase, AppView, CreateRollout, RolloutAction, RolloutPlan, RolloutView, AttachDatabase, ConfigView, CopyDatabase, CopyDone, CopyEvent, CreateApp, CreateDatabase, DatabaseInfo, DatabaseLabels, DatabaseSummary, Destroyed,
    ErrorAnswer, HistoryEntry, Idle, MaintenanceStatus, MaintenanceView, Promotion, PromoteDatabase, ReleaseInfo, ReleaseOutcome, ReleaseSummary,
    RequireMaintenance, Rollback, RunMaintenance, RunReportBody, SetAppMaintenance, SetConfig, SetLabels, SetWindow, Unfollow, UpgradeAnswer, UpgradeDatabase,
    WaitIdle, WindowStatus, RotateCredentials, Rotation,
};
use super::USER_HEADER;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens where the daemon should.
    #[error("daemon not reachable at {0} (is `pgmaint daemon` running?)")]
    Unreachable(String),
    #[error("permission denied on {0}: run as the daemon's user or a member of its socket group")]
    PermissionDenied(String),
    #[error("talking to the daemon at {at}: {message}")]
    Transport { at: String, message: String },
    /// The server answered with an error status.
    #[error("{message}")]
    Status { status: u16, message: String },
    #[error("unexpected answer from the daemon: {0}")]
    BadAnswer(String),
}

impl ClientError {
    /// The HTTP status of an error answer, if the server gave one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Transport {
    Unix(PathBuf),
    Tcp { addr: SocketAddr, token: String },
}

/// A client of one daemon's control API.
#[derive(Debug, Clone)]
pub struct Client {
    transport: Transport,
    /// Sent as `X-Pgmaint-User` (the server prefers the socket peer's user).
    user: Option<String>,
}

type ClientResult<T> = Result<T, ClientError>;

/// Percent-encodes a path segment (names are plain, but a typo must not change the route).
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl Client {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client { transport: Transport::Unix(socket.into()), user: user_from_env() }
    }

    /// A client of the TCP listener at `addr`, presenting `token`.
    pub fn tcp(addr: SocketAddr, token: impl Into<String>) -> Client {
        Client { transport: Transport::Tcp { addr, token: token.into() }, user: user_from_env() }
    }

    fn place(&self) -> String {
        match &self.transport {
            Transport::Unix(path) => path.display().to_string(),
            Transport::Tcp { addr, .. } => addr.to_string(),
        }
    }

    /// Sends one request and returns the answer, its body not read yet.
    async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> ClientResult<hyper::Response<hyper::body::Incoming>> {
        let at = self.place();
        let mut request = Request::builder().method(method).uri(path).header(header::HOST, "pgmaint");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(user) = &self.user {
            request = request.header(USER_HEADER, user.as_str());
        }
        let mut sender = match &self.transport {
            Transport::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| connect_error(socket, e))?;
                handshake(stream, &at).await?
            }
            Transport::Tcp { addr, token } => {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| connect_error(Path::new(&at), e))?;
                handshake(stream, &at).await?
            }
        };
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::BadAnswer(format!("building the request: {e}")))?;
        sender.send_request(request).await.map_err(|e| ClientError::Transport { at, message: e.to_string() })
    }

    /// Sends one request and returns the answer's status and body.
    pub async fn raw(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> ClientResult<(StatusCode, Bytes)> {
        let at = self.place();
        let response = self.send(method, path, body).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await.map_err(|e| ClientError::Transport { at, message: e.to_string() })?.to_bytes();
        Ok((status, bytes))
    }

    /// Sends a JSON request and parses the answer as `T`; an error status becomes [`ClientError::Status`].
    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&impl Serialize>) -> ClientResult<T> {
        let body = match body {
            Some(body) => Some(serde_json::to_vec(body).map_err(|e| ClientError::BadAnswer(e.to_string()))?),
            None => None,
        };
        let (status, bytes) = self.raw(method, path, body).await?;
        if !status.is_success() {
            return Err(status_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer(format!("{path}: {e}: {}", String::from_utf8_lossy(&bytes).trim())))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn list_databases(&self) -> ClientResult<Vec<DatabaseSummary>> {
        self.get("/v1/databases").await
    }

    /// Creates a database and answers with its info once it is available.
    pub async fn create_database(&self, request: &CreateDatabase) -> ClientResult<DatabaseInfo> {
        self.call(Method::POST, "/v1/databases", Some(request)).await
    }

    /// Adopts a Patroni cluster as a database; answers with its info.
    pub async fn adopt_database(&self, request: &AdoptDatabase) -> ClientResult<DatabaseInfo> {
        self.call(Method::POST, "/v1/databases/adopt", Some(request)).await
    }

    /// Sets and removes labels; answers with the database's labels now.
    pub async fn set_labels(&self, name: &str, request: &SetLabels) -> ClientResult<DatabaseLabels> {
        self.call(Method::PUT, &format!("/v1/databases/{}/labels", segment(name)), Some(request)).await
    }

    /// Creates a rollout; answers with it once its first wave is required.
    pub async fn create_rollout(&self, request: &CreateRollout) -> ClientResult<RolloutView> {
        self.call(Method::POST, "/v1/rollouts", Some(request)).await
    }

    pub async fn rollouts(&self) -> ClientResult<Vec<RolloutView>> {
        self.get("/v1/rollouts").await
    }

    pub async fn rollout(&self, name: &str) -> ClientResult<RolloutView> {
        self.get(&format!("/v1/rollouts/{}", segment(name))).await
    }

    /// Pauses, resumes or aborts a rollout; answers with it.
    pub async fn act_on_rollout(&self, name: &str, action: RolloutAction) -> ClientResult<RolloutView> {
        self.call(Method::POST, &format!("/v1/rollouts/{}/actions", segment(name)), Some(&ActOnRollout { action })).await
    }

    pub async fn plan_rollout(&self, name: &str) -> ClientResult<RolloutPlan> {
        self.get(&format!("/v1/rollouts/{}/plan", segment(name))).await
    }

    pub async fn destroy_database(&self, name: &str, confirm: &str) -> ClientResult<Destroyed> {
        self.call(Method::DELETE, &format!("/v1/databases/{}?confirm={}", segment(name), segment(confirm)), None::<&()>).await
    }

    /// The `info` view.
    pub async fn info(&self, name: &str) -> ClientResult<DatabaseInfo> {
        self.get(&format!("/v1/databases/{}", segment(name))).await
    }

    /// Records a required maintenance; answers with it as planned.
    pub async fn require_maintenance(&self, name: &str, request: &RequireMaintenance) -> ClientResult<MaintenanceView> {
        self.call(Method::POST, &format!("/v1/databases/{}/maintenance", segment(name)), Some(request)).await
    }

    /// The open maintenance, if any, and its status line.
    pub async fn maintenance(&self, name: &str) -> ClientResult<MaintenanceStatus> {
        self.get(&format!("/v1/databases/{}/maintenance", segment(name))).await
    }

    /// Sets the window; answers with it and the re-planned maintenance.
    pub async fn set_window(&self, name: &str, window: &str) -> ClientResult<WindowStatus> {
        self.call(Method::PUT, &format!("/v1/databases/{}/window", segment(name)), Some(&SetWindow { window: window.to_string() })).await
    }

    /// Runs the pending maintenance and answers when it has finished.
    pub async fn run_maintenance(&self, name: &str, force: bool) -> ClientResult<RunReportBody> {
        self.call(Method::POST, &format!("/v1/databases/{}/maintenance/run", segment(name)), Some(&RunMaintenance { force })).await
    }

    /// Past maintenances, newest first.
    pub async fn history(&self, name: &str) -> ClientResult<Vec<HistoryEntry>> {
        self.get(&format!("/v1/databases/{}/maintenance/history", segment(name))).await
    }

    pub async fn wait(&self, name: &str, timeout_seconds: u64) -> ClientResult<Idle> {
        self.call(Method::POST, &format!("/v1/databases/{}/wait", segment(name)), Some(&WaitIdle { timeout_seconds })).await
    }

    /// Creates an app; answers with it and its first release.
    pub async fn create_app(&self, request: &CreateApp) -> ClientResult<AppView> {
        self.call(Method::POST, "/v1/apps", Some(request)).await
    }

    pub async fn set_app_maintenance(&self, name: &str, on: bool) -> ClientResult<AppView> {
        self.call(Method::PUT, &format!("/v1/apps/{}/maintenance", segment(name)), Some(&SetAppMaintenance { on })).await
    }

    pub async fn app_maintenance(&self, name: &str) -> ClientResult<AppView> {
        self.get(&format!("/v1/apps/{}/maintenance", segment(name))).await
    }

    /// Attaches a database to an app; answers with the new release.
    pub async fn attach(&self, app: &str, request: &AttachDatabase) -> ClientResult<ReleaseOutcome> {
        self.call(Method::POST, &format!("/v1/apps/{}/attachments", segment(app)), Some(request)).await
    }

    /// The app's current config.
    pub async fn config(&self, app: &str) -> ClientResult<ConfigView> {
        self.get(&format!("/v1/apps/{}/config", segment(app))).await
    }

    /// Sets config vars; answers with the new release.
    pub async fn set_config(&self, app: &str, request: &SetConfig) -> ClientResult<ReleaseOutcome> {
        self.call(Method::PUT, &format!("/v1/apps/{}/config", segment(app)), Some(request)).await
    }

    /// Unsets a config var; answers with the new release.
    pub async fn unset_config(&self, app: &str, key: &str) -> ClientResult<ReleaseOutcome> {
        self.call(Method::DELETE, &format!("/v1/apps/{}/config/{}", segment(app), segment(key)), None::<&()>).await
    }

    /// The app's releases, newest first.
    pub async fn releases(&self, app: &str) -> ClientResult<Vec<ReleaseSummary>> {
        self.get(&format!("/v1/apps/{}/releases", segment(app))).await
    }

    /// One release and its config.
    pub async fn release(&self, app: &str, version: i32) -> ClientResult<ReleaseInfo> {
        self.get(&format!("/v1/apps/{}/releases/v{version}", segment(app))).await
    }

    /// Rolls back to `version` (the previous release when `None`); answers with the new release.
    pub async fn rollback(&self, app: &str, version: Option<i32>) -> ClientResult<ReleaseOutcome> {
        self.call(Method::POST, &format!("/v1/apps/{}/rollback", segment(app)), Some(&Rollback { version })).await
    }

    /// Copies `request.source` into `target`, calling `on_event` with every
    /// event the server streams (progress, then `done` or `error`); answers
    /// with the `done` event. An `error` event becomes [`ClientError::Status`]
    /// with the status it carries.
    pub async fn copy_database(&self, target: &str, request: &CopyDatabase, mut on_event: impl FnMut(&CopyEvent)) -> ClientResult<CopyDone> {
        let at = self.place();
        let body = serde_json::to_vec(request).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        let response = self.send(Method::POST, &format!("/v1/databases/{}/copy", segment(target)), Some(body)).await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await.map_err(|e| ClientError::Transport { at, message: e.to_string() })?.to_bytes();
            return Err(status_error(status, &bytes));
        }
        let mut pending: Vec<u8> = Vec::new();
        let mut last: Option<CopyEvent> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Transport { at: at.clone(), message: e.to_string() })?;
            let Ok(data) = frame.into_data() else { continue };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let event: CopyEvent = serde_json::from_slice(&line).map_err(|e| ClientError::BadAnswer(format!("copy event: {e}")))?;
                on_event(&event);
                last = Some(event);
            }
        }
        match last {
            Some(CopyEvent::Done(done)) => Ok(done),
            Some(CopyEvent::Error(failed)) => Err(ClientError::Status { status: failed.status, message: failed.error }),
            Some(CopyEvent::Progress(_)) => Err(ClientError::BadAnswer("the copy stream ended before the copy did (daemon stopped?)".into())),
            None => Err(ClientError::BadAnswer("the copy stream ended without an event".into())),
        }
    }

    /// Changes a database's plan: answers at once with the planned maintenance
    /// (standard tier and up) or when the change has been made (essential).
    pub async fn upgrade(&self, name: &str, request: &UpgradeDatabase) -> ClientResult<UpgradeAnswer> {
        self.call(Method::POST, &format!("/v1/databases/{}/upgrade", segment(name)), Some(request)).await
    }

    /// Stops a follower following; answers with its info (now `Forked From`).
    pub async fn unfollow(&self, name: &str, confirm: &str) -> ClientResult<DatabaseInfo> {
        self.call(Method::POST, &format!("/v1/databases/{}/unfollow", segment(name)), Some(&Unfollow { confirm: confirm.to_string() })).await
    }

    /// Makes a database an app's DATABASE_URL; answers with the promotion (release, followers).
    pub async fn promote(&self, name: &str, request: &PromoteDatabase) -> ClientResult<Promotion> {
        self.call(Method::POST, &format!("/v1/databases/{}/promote", segment(name)), Some(request)).await
    }

    /// New credentials for a database; answers with the rotation and its releases.
    pub async fn rotate_credentials(&self, name: &str, request: &RotateCredentials) -> ClientResult<Rotation> {
        self.call(Method::POST, &format!("/v1/databases/{}/credentials/rotate", segment(name)), Some(request)).await
    }

    /// The OpenAPI document.
    pub async fn openapi(&self) -> ClientResult<utoipa::openapi::OpenApi> {
        self.get("/openapi.json").await
    }

    /// The Prometheus text.
    pub async fn metrics(&self) -> ClientResult<String> {
        let (status, bytes) = self.raw(Method::GET, "/metrics", None).await?;
        let text = String::from_utf8_lossy(&bytes).to_string();
        if status.is_success() {
            Ok(text)
        } else {
            Err(ClientError::Status { status: status.as_u16(), message: text })
        }
    }
}

/// An error answer: the server's `error` text, or the status and body when it sent none.
fn status_error(status: StatusCode, bytes: &[u8]) -> ClientError {
    let message = serde_json::from_slice::<ErrorAnswer>(bytes)
        .map(|answer| answer.error)
        .unwrap_or_else(|_| format!("{status}: {}", String::from_utf8_lossy(bytes).trim()));
    ClientError::Status { status: status.as_u16(), message }
}

/// The user this client runs as, to name who made a release.
fn user_from_env() -> Option<String> {
    std::env::var("USER").ok().filter(|user| !user.is_empty() && user.chars().all(|c| c.is_ascii_graphic()))
}

async fn handshake<S>(stream: S, at: &str) -> ClientResult<hyper::client::conn::http1::SendRequest<Full<Bytes>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Transport { at: at.to_string(), message: e.to_string() })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn connect_error(at: &Path, error: std::io::Error) -> ClientError {
    let at = at.display().to_string();
    match error.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => ClientError::Unreachable(at),
        std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(at),
        _ => ClientError::Transport { at, message: error.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("orders-2_x"), "orders-2_x");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }

    #[tokio::test]
    async fn an_absent_daemon_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("none.sock");
        let error = Client::new(&socket).list_databases().await.unwrap_err();
        assert_eq!(error.to_string(), format!("daemon not reachable at {} (is `pgmaint daemon` running?)", socket.display()));
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        assert!(matches!(Client::new(&socket).list_databases().await, Err(ClientError::Unreachable(_))));
    }
}
