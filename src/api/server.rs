//! The API server: axum routes over the engine, on a Unix socket and optionally TCP.
//!
//! Access control is the socket's mode (0600, or 0660 to `socket_group`); the
//! TCP listener, if configured, asks every request for `Authorization: Bearer
//! <token>`. Work that changes servers (create, destroy, require, window, run,
//! app maintenance mode with its hooks) runs in its own task, so a client that
//! goes away mid-request never cancels a maintenance half-way; the server waits
//! for such work before [`serve`] returns.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequest, FromRequestParts, Path as UrlPath, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chrono::{TimeDelta, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Notify, RwLock};

use super::{
    metrics, openapi, ApiError, AttachDatabase, CopyDatabase, CreateApp, CreateDatabase, PromoteDatabase, RequireMaintenance, Rollback,
    RunMaintenance, RunReportBody, SetAppMaintenance, SetConfig, SetWindow, Unfollow, UpgradeAnswer, UpgradeDatabase, WaitIdle, DEFAULT_WINDOW,
    USER_HEADER,
};
use crate::config::ApiConfig;
use crate::engine::{
    parse_version, AppView, ConfigView, DatabaseInfo, DatabaseSpec, DatabaseSummary, Engine, EngineError, EngineResult, ErrorKind, HistoryEntry,
    MaintenanceView, PlanChange, Promotion, ReleaseInfo, ReleaseOutcome, ReleaseSummary, DEFAULT_MAKER,
};
use crate::store::AppHooks;
use crate::model::{Plan, Reason, NO_MAINTENANCE};
use crate::schedule::{self, Window};
use crate::store::StoreError;

/// Every window is this long (the reference's 4 hours).
const WINDOW_LENGTH: Duration = Duration::from_secs(4 * 3600);
/// The longest `wait` the server accepts.
const MAX_WAIT_SECS: u64 = 7 * 24 * 3600;

/// Serves the control API until `shutdown` completes, then lets requests in
/// flight (a maintenance run included) finish and removes its socket.
///
/// The Unix socket replaces a stale socket file but refuses to start when
/// another daemon answers on it. Every request that is not a GET wakes the
/// daemon's loop through `nudge`.
pub async fn serve(
    engine: Arc<Engine>,
    config: &ApiConfig,
    nudge: Arc<Notify>,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    // TCP first: a failure there leaves no socket file behind.
    let tcp = match config.tcp {
        Some(addr) => {
            let token_file = config.token_file.as_deref().ok_or(ApiError::NoTokenFile(addr))?;
            let token = read_token(token_file)?;
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ApiError::Tcp { addr, source })?;
            tracing::info!(%addr, "control API listening on TCP (bearer token required)");
            Some((listener, token))
        }
        None => None,
    };
    let (unix, inode) = bind_unix(&config.socket, config.socket_group.as_deref())?;
    tracing::info!(socket = %config.socket.display(), "control API listening");

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let state = ApiState { engine, nudge, metrics, in_flight: Arc::new(RwLock::new(())), shutdown: stopped.clone() };
    let app = router(state.clone());

    let unix_server =
        axum::serve(unix, app.clone().into_make_service_with_connect_info::<Peer>()).with_graceful_shutdown(signalled(stopped.clone()));
    let tcp_server = async {
        match tcp {
            Some((listener, token)) => {
                let app = app.layer(middleware::from_fn_with_state(Arc::<str>::from(token), require_bearer));
                axum::serve(listener, app).with_graceful_shutdown(signalled(stopped.clone())).await
            }
            None => Ok(()),
        }
    };
    let (unix_result, tcp_result) = tokio::join!(async { unix_server.await }, tcp_server);
    // Work whose client went away is finished before the daemon goes on shutting down.
    let _all_done = state.in_flight.write().await;
    remove_if_ours(&config.socket, inode);
    unix_result.map_err(ApiError::Serve)?;
    tcp_result.map_err(ApiError::Serve)
}

async fn signalled(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Binds the socket under a temporary name, sets its mode (and group), then
/// renames it into place, so it is never reachable with a looser mode.
fn bind_unix(path: &Path, group: Option<&str>) -> Result<(tokio::net::UnixListener, u64), ApiError> {
    let fail = |source| ApiError::Socket { path: path.to_path_buf(), source };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => return Err(ApiError::NotASocket(path.to_path_buf())),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(ApiError::SocketInUse(path.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %path.display(), "removing a stale API socket");
                std::fs::remove_file(path).map_err(fail)?;
            }
            Err(e) => return Err(fail(e)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "pgmaint.sock".into());
    let temporary = path.with_file_name(format!(".{file_name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = std::os::unix::net::UnixListener::bind(&temporary).map_err(fail)?;
    let placed = (|| {
        let mode = match group {
            Some(name) => {
                let gid = nix::unistd::Group::from_name(name)
                    .map_err(|source| ApiError::Group { group: name.to_string(), source })?
                    .ok_or_else(|| ApiError::UnknownGroup(name.to_string()))?
                    .gid;
                nix::unistd::chown(&temporary, None, Some(gid)).map_err(|source| ApiError::Group { group: name.to_string(), source })?;
                0o660
            }
            None => 0o600,
        };
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
        std::fs::rename(&temporary, path).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let inode = std::fs::metadata(path).map_err(fail)?.ino();
        Ok((tokio::net::UnixListener::from_std(listener).map_err(fail)?, inode))
    })();
    if placed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    placed
}

/// Removes the socket unless another daemon has since put its own there.
fn remove_if_ours(path: &Path, inode: u64) {
    if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.ino() == inode) {
        let _ = std::fs::remove_file(path);
    }
}

fn read_token(path: &Path) -> Result<String, ApiError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApiError::TokenFile { path: path.to_path_buf(), source })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(ApiError::EmptyToken(path.to_path_buf()));
    }
    if std::fs::metadata(path).is_ok_and(|meta| meta.mode() & 0o007 != 0) {
        tracing::warn!(file = %path.display(), "the API token file is readable by every user; chmod o-rwx it");
    }
    Ok(token)
}

/// Compares in time that depends only on the lengths, not on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_bearer(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials.trim());
    match presented {
        Some(credentials) if constant_time_eq(credentials.as_bytes(), token.as_bytes()) => next.run(request).await,
        _ => {
            let mut response = HttpError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[derive(Clone)]
struct ApiState {
    engine: Arc<Engine>,
    nudge: Arc<Notify>,
    metrics: PrometheusHandle,
    /// Held (shared) by every detached piece of work; `serve` takes it exclusively to wait for them.
    in_flight: Arc<RwLock<()>>,
    shutdown: watch::Receiver<bool>,
}

impl ApiState {
    /// Runs `work` in its own task: it finishes even if the client disconnects.
    async fn detached<T, Fut>(&self, work: impl FnOnce(Arc<Engine>) -> Fut) -> Result<T, HttpError>
    where
        Fut: Future<Output = EngineResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let guard = self.in_flight.clone().read_owned().await;
        let work = work(self.engine.clone());
        let task = tokio::spawn(async move {
            let result = work.await;
            drop(guard);
            result
        });
        match task.await {
            Ok(result) => result.map_err(HttpError::from),
            Err(error) => Err(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the request's work failed: {error}"))),
        }
    }
}

fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/databases", get(list_databases).post(create_database))
        .route("/v1/databases/{name}", get(database_info).delete(destroy_database))
        .route("/v1/databases/{name}/maintenance", get(show_maintenance).post(require_maintenance))
        .route("/v1/databases/{name}/window", put(set_window))
        .route("/v1/databases/{name}/maintenance/run", post(run_maintenance))
        .route("/v1/databases/{name}/maintenance/history", get(history))
        .route("/v1/databases/{name}/wait", post(wait_idle))
        .route("/v1/databases/{name}/copy", post(copy_database))
        .route("/v1/databases/{name}/upgrade", post(upgrade_database))
        .route("/v1/databases/{name}/unfollow", post(unfollow_database))
        .route("/v1/databases/{name}/promote", post(promote_database))
        .route("/v1/apps", post(create_app))
        .route("/v1/apps/{name}/maintenance", get(app_maintenance).put(set_app_maintenance))
        .route("/v1/apps/{name}/attachments", post(attach))
        .route("/v1/apps/{name}/config", get(show_config).put(set_config))
        .route("/v1/apps/{name}/config/{key}", delete(unset_config))
        .route("/v1/apps/{name}/releases", get(releases))
        .route("/v1/apps/{name}/releases/{version}", get(release_info))
        .route("/v1/apps/{name}/rollback", post(rollback))
        .route("/openapi.json", get(openapi_document))
        .route("/metrics", get(render_metrics))
        .fallback(|method: Method, uri: axum::http::Uri| async move {
            HttpError::new(StatusCode::NOT_FOUND, format!("no route {method} {}", uri.path()))
        })
        .method_not_allowed_fallback(|method: Method, uri: axum::http::Uri| async move {
            HttpError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
        })
        .layer(middleware::from_fn_with_state(state.clone(), after_changes))
        .with_state(state)
}

/// Wakes the daemon's loop after any request that may have changed state, and logs it.
async fn after_changes(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    if changes {
        state.nudge.notify_one();
        tracing::info!(%method, path, status = response.status().as_u16(), "control request");
    }
    response
}

/// An error answer: `{"error": message}` with its status.
#[derive(Debug)]
struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError { status, message: message.into() }
    }

    fn bad(message: impl std::fmt::Display) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, message.to_string())
    }
}

impl From<EngineError> for HttpError {
    fn from(error: EngineError) -> Self {
        let status = match error.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%error, "control request failed");
        }
        HttpError::new(status, error.to_string())
    }
}

impl From<StoreError> for HttpError {
    fn from(error: StoreError) -> Self {
        EngineError::from(error).into()
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// A JSON body whose rejection is answered as `{"error": ...}` like every other error.
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(rejection_error(rejection)),
        }
    }
}

fn rejection_error(rejection: JsonRejection) -> HttpError {
    HttpError::new(rejection.status(), rejection.body_text())
}

type Answer<T> = Result<Json<T>, HttpError>;

async fn list_databases(State(state): State<ApiState>) -> Answer<Vec<DatabaseSummary>> {
    Ok(Json(state.engine.list_databases().await?))
}

async fn create_database(State(state): State<ApiState>, Body(request): Body<CreateDatabase>) -> Result<(StatusCode, Json<DatabaseInfo>), HttpError> {
    let plan: Plan = request.plan.parse().map_err(HttpError::bad)?;
    let window_text = request.window.as_deref().unwrap_or(DEFAULT_WINDOW);
    let window: Window = window_text.parse().map_err(|e| HttpError::bad(format!("window {window_text:?}: {e}")))?;
    for owner in &request.owners {
        owner.parse::<lettre::Address>().map_err(|e| HttpError::bad(format!("owner {owner:?} is not an email address: {e}")))?;
    }
    let spec = DatabaseSpec {
        name: request.name,
        plan,
        follow: request.follow,
        window: window.to_string(),
        window_length: WINDOW_LENGTH,
        owners: request.owners,
    };
    let info = state
        .detached(move |engine| async move {
            engine.create_database(&spec).await?;
            engine.info(&spec.name).await
        })
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

async fn database_info(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<DatabaseInfo> {
    Ok(Json(state.engine.info(&name).await?))
}

#[derive(Deserialize)]
struct Confirm {
    confirm: Option<String>,
}

async fn destroy_database(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Query(query): Query<Confirm>) -> Answer<Value> {
    let confirm = query.confirm.unwrap_or_default();
    let destroyed = name.clone();
    state.detached(move |engine| async move { engine.destroy_database(&name, &confirm).await }).await?;
    Ok(Json(json!({ "destroyed": destroyed })))
}

async fn require_maintenance(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    Body(request): Body<RequireMaintenance>,
) -> Result<(StatusCode, Json<MaintenanceView>), HttpError> {
    let reason: Reason = request.reason.parse().map_err(HttpError::bad)?;
    let required_by = schedule::parse_timestamp(&request.required_by).map_err(HttpError::bad)?;
    let view = state.detached(move |engine| async move { engine.require(&name, reason, required_by, Utc::now()).await }).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn show_maintenance(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<Value> {
    let database = state.engine.store().database_named(&name).await?;
    let view = state.engine.maintenance_view(&database).await?;
    let status_line = view.as_ref().map_or(NO_MAINTENANCE.to_string(), |v| v.status_line.clone());
    Ok(Json(json!({ "maintenance": view, "status_line": status_line })))
}

async fn set_window(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<SetWindow>) -> Answer<Value> {
    let view = {
        let name = name.clone();
        state.detached(move |engine| async move { engine.set_window(&name, &request.window, Utc::now()).await }).await?
    };
    let database = state.engine.store().database_named(&name).await?;
    let window = match database.window_spec.as_deref().map(str::parse::<Window>) {
        Some(Ok(window)) => window.describe(TimeDelta::seconds(i64::from(database.window_length_secs.unwrap_or(4 * 3600)))).to_string(),
        _ => String::new(),
    };
    let status_line = view.as_ref().map_or(NO_MAINTENANCE.to_string(), |v| v.status_line.clone());
    Ok(Json(json!({ "window": window, "maintenance": view, "status_line": status_line })))
}

async fn run_maintenance(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<RunMaintenance>) -> Answer<RunReportBody> {
    let report = state.detached(move |engine| async move { engine.run_now(&name, request.force).await }).await?;
    if let Some(pause) = report.write_pause {
        metrics::record_write_pause(pause);
    }
    Ok(Json(RunReportBody::from(&report)))
}

async fn history(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<Vec<HistoryEntry>> {
    Ok(Json(state.engine.history(&name).await?))
}

async fn wait_idle(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<WaitIdle>) -> Answer<Value> {
    if request.timeout_seconds > MAX_WAIT_SECS {
        return Err(HttpError::bad(format!("timeout_seconds must be at most {MAX_WAIT_SECS}")));
    }
    let mut shutdown = state.shutdown.clone();
    tokio::select! {
        result = state.engine.wait_idle(&name, Duration::from_secs(request.timeout_seconds)) => result?,
        _ = shutdown.wait_for(|stop| *stop) => {
            return Err(HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "the daemon is shutting down"));
        }
    }
    Ok(Json(json!({ "name": name, "busy": false })))
}

/// The user at the other end of a Unix socket connection, from SO_PEERCRED.
#[derive(Debug, Clone)]
struct Peer {
    user: Option<String>,
}

impl Connected<axum::serve::IncomingStream<'_, tokio::net::UnixListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        let user = stream
            .io()
            .peer_cred()
            .ok()
            .and_then(|cred| nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(cred.uid())).ok().flatten().map(|u| u.name).or(Some(cred.uid().to_string())));
        Peer { user }
    }
}

/// Who makes a release: the socket peer's user, else the client's `X-Pgmaint-User`, else `pgmaint`.
struct Caller(String);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<Peer>>().and_then(|info| info.0.user.clone());
        let header = || {
            parts
                .headers
                .get(USER_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|name| !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_graphic()))
                .map(str::to_string)
        };
        Ok(Caller(peer.or_else(header).unwrap_or_else(|| DEFAULT_MAKER.to_string())))
    }
}

/// The most parallel table streams a copy may ask for.
const MAX_COPY_WORKERS: usize = 32;

/// Checks the request, then streams the copy's events as NDJSON. The copy runs
/// in its own task: a client that goes away does not stop it half-way, and the
/// source's writability is always restored.
async fn copy_database(State(state): State<ApiState>, UrlPath(target): UrlPath<String>, Body(request): Body<CopyDatabase>) -> Result<Response, HttpError> {
    let workers = request.workers.unwrap_or(crate::engine::DEFAULT_COPY_WORKERS);
    if workers == 0 || workers > MAX_COPY_WORKERS {
        return Err(HttpError::bad(format!("workers must be between 1 and {MAX_COPY_WORKERS}")));
    }
    state.engine.check_copy(&request.source, &target, &request.confirm).await?;
    let (events, received) = tokio::sync::mpsc::unbounded_channel::<String>();
    let guard = state.in_flight.clone().read_owned().await;
    let engine = state.engine.clone();
    tokio::spawn(async move {
        let progress_events = events.clone();
        let progress = move |progress: crate::pg::copy::CopyProgress| {
            let mut event = serde_json::to_value(&progress).unwrap_or_default();
            event["event"] = json!("progress");
            let _ = progress_events.send(format!("{event}\n"));
        };
        let last = match engine.copy_database(&request.source, &target, &request.confirm, workers, &progress).await {
            Ok(report) => json!({ "event": "done", "source": request.source, "target": target, "report": report }),
            Err(error) => {
                let error = HttpError::from(error);
                json!({ "event": "error", "error": error.message, "status": error.status.as_u16() })
            }
        };
        let _ = events.send(format!("{last}\n"));
        drop(guard);
    });
    let stream = futures_util::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|line| (Ok::<_, std::convert::Infallible>(line), received))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], axum::body::Body::from_stream(stream)).into_response())
}

/// How long a scheduled plan change may wait for its window when the caller gives no deadline.
const DEFAULT_PLAN_CHANGE_WITHIN: TimeDelta = TimeDelta::days(7);

/// Essential tier: answers when the copy-and-switch has finished. Standard
/// and up: answers at once with the planned `plan-change` maintenance.
async fn upgrade_database(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<UpgradeDatabase>) -> Answer<UpgradeAnswer> {
    request.plan.parse::<Plan>().map_err(HttpError::bad)?;
    let now = Utc::now();
    let required_by = match &request.required_by {
        Some(text) => schedule::parse_timestamp(text).map_err(HttpError::bad)?,
        None => now + DEFAULT_PLAN_CHANGE_WITHIN,
    };
    if required_by <= now {
        return Err(HttpError::bad("required_by must be in the future"));
    }
    let from_plan = state.engine.store().database_named(&name).await?.plan;
    let to_plan = request.plan.clone();
    let database = name.clone();
    let change = state.detached(move |engine| async move { engine.upgrade(&name, &request.plan, required_by, now).await }).await?;
    let answer = match change {
        PlanChange::Scheduled(view) => UpgradeAnswer {
            database,
            from_plan,
            to_plan,
            strategy: view.strategy.as_str().to_string(),
            maintenance: Some(serde_json::to_value(&view).map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?),
            run: None,
        },
        PlanChange::Done(report) => {
            if let Some(pause) = report.write_pause {
                metrics::record_write_pause(pause);
            }
            UpgradeAnswer { database, from_plan, to_plan, strategy: report.strategy.as_str().to_string(), maintenance: None, run: Some(RunReportBody::from(&report)) }
        }
    };
    Ok(Json(answer))
}

async fn unfollow_database(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<Unfollow>) -> Answer<DatabaseInfo> {
    Ok(Json(state.detached(move |engine| async move { engine.unfollow(&name, &request.confirm).await }).await?))
}

async fn promote_database(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    UrlPath(name): UrlPath<String>,
    Body(request): Body<PromoteDatabase>,
) -> Answer<Promotion> {
    Ok(Json(state.detached(move |engine| async move { engine.promote(&name, &request.app, request.repoint_followers, &caller).await }).await?))
}

async fn create_app(State(state): State<ApiState>, Caller(caller): Caller, Body(request): Body<CreateApp>) -> Result<(StatusCode, Json<AppView>), HttpError> {
    let app = state
        .detached(move |engine| async move {
            let hooks = AppHooks {
                on_maintenance_on: request.on_hook.as_deref(),
                on_maintenance_off: request.off_hook.as_deref(),
                env_file: request.env_file.as_deref(),
                restart_hook: request.restart_hook.as_deref(),
            };
            engine.create_app(&request.name, &request.attach, &hooks, &caller).await
        })
        .await?;
    Ok((StatusCode::CREATED, Json(app)))
}

async fn attach(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    UrlPath(name): UrlPath<String>,
    Body(request): Body<AttachDatabase>,
) -> Result<(StatusCode, Json<ReleaseOutcome>), HttpError> {
    let outcome =
        state.detached(move |engine| async move { engine.attach(&name, &request.database, request.name.as_deref(), &caller).await }).await?;
    Ok((StatusCode::CREATED, Json(outcome)))
}

async fn show_config(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<ConfigView> {
    Ok(Json(state.engine.config(&name).await?))
}

async fn set_config(State(state): State<ApiState>, Caller(caller): Caller, UrlPath(name): UrlPath<String>, Body(request): Body<SetConfig>) -> Answer<ReleaseOutcome> {
    Ok(Json(state.detached(move |engine| async move { engine.set_config(&name, &request.config, &caller).await }).await?))
}

async fn unset_config(State(state): State<ApiState>, Caller(caller): Caller, UrlPath((name, key)): UrlPath<(String, String)>) -> Answer<ReleaseOutcome> {
    Ok(Json(state.detached(move |engine| async move { engine.unset_config(&name, &key, &caller).await }).await?))
}

async fn releases(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<Vec<ReleaseSummary>> {
    Ok(Json(state.engine.releases(&name).await?))
}

async fn release_info(State(state): State<ApiState>, UrlPath((name, version)): UrlPath<(String, String)>) -> Answer<ReleaseInfo> {
    let version = parse_version(&version).map_err(HttpError::bad)?;
    Ok(Json(state.engine.release(&name, version).await?))
}

async fn rollback(State(state): State<ApiState>, Caller(caller): Caller, UrlPath(name): UrlPath<String>, Body(request): Body<Rollback>) -> Answer<ReleaseOutcome> {
    if request.version.is_some_and(|v| v < 1) {
        return Err(HttpError::bad("version must be at least 1"));
    }
    Ok(Json(state.detached(move |engine| async move { engine.rollback(&name, request.version, &caller).await }).await?))
}

async fn set_app_maintenance(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<SetAppMaintenance>) -> Answer<AppView> {
    Ok(Json(state.detached(move |engine| async move { engine.set_app_maintenance(&name, request.on).await }).await?))
}

async fn app_maintenance(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<AppView> {
    Ok(Json(state.engine.app(&name).await?))
}

async fn openapi_document() -> Json<Value> {
    Json(openapi::document())
}

async fn render_metrics(State(state): State<ApiState>) -> Response {
    if let Err(error) = metrics::refresh_from_store(state.engine.store()).await {
        // The scrape still answers, with the gauges as they were.
        tracing::warn!(%error, "metrics: could not read the state store");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cres"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn engine_errors_map_to_statuses() {
        let status = |e: EngineError| HttpError::from(e).status;
        assert_eq!(status(EngineError::Store(StoreError::NotFound("database x not found".into()))), StatusCode::NOT_FOUND);
        assert_eq!(status(EngineError::Store(StoreError::Conflict("exists".into()))), StatusCode::CONFLICT);
        assert_eq!(status(EngineError::Invalid("bad".into())), StatusCode::BAD_REQUEST);
        assert_eq!(status(EngineError::Refused("no".into())), StatusCode::CONFLICT);
        assert_eq!(status(EngineError::Busy(3)), StatusCode::CONFLICT);
        assert_eq!(status(EngineError::Store(StoreError::Corrupt("?".into()))), StatusCode::INTERNAL_SERVER_ERROR);
        // A joined run's failure keeps the status its owner's error had.
        assert_eq!(status(EngineError::Joined { kind: ErrorKind::Invalid, message: "bad".into() }), StatusCode::BAD_REQUEST);
        assert_eq!(status(EngineError::Joined { kind: ErrorKind::Failed, message: "down".into() }), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        // A socket file nobody listens on any more.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (listener, inode) = bind_unix(&path, None).expect("stale socket replaced");
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            assert!(matches!(bind_unix(&path, None), Err(ApiError::SocketInUse(_))));
            drop(listener);
            remove_if_ours(&path, inode);
            assert!(!path.exists());
            std::fs::write(&path, "not a socket").unwrap();
            assert!(matches!(bind_unix(&path, None), Err(ApiError::NotASocket(_))));
        });
    }
}
