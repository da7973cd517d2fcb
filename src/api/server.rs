//! The API server: axum routes over the engine, on a Unix socket and optionally TCP.
//!
//! Access control is the socket's mode (0600, or 0660 to `socket_group`); the
//! TCP listener, if configured, asks every request for `Authorization: Bearer
//! <token>`. Work that changes servers (create, destroy, require, window, run,
//! app maintenance mode with its hooks) runs in its own task, so a client that
//! goes away mid-request never cancels a maintenance half-way; the server waits
//! for such work before [`serve`] returns.
//!
//! Handlers only translate: they parse requests, call one engine method, and
//! answer with the wire types of [`super::types`]; every read of the state and
//! every default lives in the engine. Each handler carries its OpenAPI
//! description (`#[utoipa::path]`), and [`table`] is the one list of routes the
//! router is built from and the document is checked against.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path as UrlPath, Query, Request, State};
use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use chrono::Utc;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::{watch, Notify, RwLock};

use super::types::{
    ActOnRollout, AdoptDatabase, AppView, CreateRollout, RolloutPlan, RolloutView, AttachDatabase, ConfigView, CopyDatabase, CopyDone, CopyEvent, CopyFailed, CreateApp, CreateDatabase, DatabaseInfo, DatabaseLabels, DatabaseSummary,
    Destroyed, ErrorAnswer, HistoryEntry, Idle, MaintenanceStatus, MaintenanceView, Promotion, PromoteDatabase, ReleaseInfo, ReleaseOutcome,
    ReleaseSummary, RequireMaintenance, Rollback, RunMaintenance, RunReportBody, SetAppMaintenance, SetConfig, SetLabels, SetWindow, Unfollow, UpgradeAnswer,
    UpgradeDatabase, WaitIdle, WindowStatus, RotateCredentials, Rotation, DEFAULT_ROTATION_GRACE_SECONDS,
};
use super::{metrics, openapi, ApiError, USER_HEADER};
use crate::config::ApiConfig;
use crate::engine::{parse_version, Engine, EngineError, EngineResult, ErrorKind, PlanChangeOutcome, RunReport, DEFAULT_COPY_WORKERS, DEFAULT_MAKER};
use crate::model::Reason;
use crate::schedule;
use crate::store::AppHooks;

/// The longest `wait` the server accepts.
const MAX_WAIT_SECS: u64 = 7 * 24 * 3600;
/// The most parallel table streams a copy may ask for.
const MAX_COPY_WORKERS: usize = 32;

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

/// An HTTP method the API answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    /// Lower case, as an OpenAPI path item names its operations.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Delete => "delete",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// One route of the API; the path is in OpenAPI's syntax, which axum shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub verb: Verb,
    pub path: &'static str,
}

fn at<H, T>(verb: Verb, path: &'static str, handler: H) -> (Route, MethodRouter<ApiState>)
where
    H: Handler<T, ApiState>,
    T: 'static,
{
    (Route { verb, path }, on(verb.filter(), handler))
}

/// Every route with its handler: the router is built from this table, and
/// [`routes`] (which the OpenAPI document is checked against) reads it.
fn table() -> Vec<(Route, MethodRouter<ApiState>)> {
    use Verb::{Delete, Get, Post, Put};
    vec![
        at(Get, "/v1/databases", list_databases),
        at(Post, "/v1/databases", create_database),
        at(Post, "/v1/databases/adopt", adopt_database),
        at(Get, "/v1/databases/{name}", database_info),
        at(Delete, "/v1/databases/{name}", destroy_database),
        at(Post, "/v1/databases/{name}/maintenance", require_maintenance),
        at(Get, "/v1/databases/{name}/maintenance", show_maintenance),
        at(Put, "/v1/databases/{name}/window", set_window),
        at(Put, "/v1/databases/{name}/labels", set_labels),
        at(Post, "/v1/databases/{name}/maintenance/run", run_maintenance),
        at(Get, "/v1/databases/{name}/maintenance/history", history),
        at(Post, "/v1/databases/{name}/wait", wait_idle),
        at(Post, "/v1/databases/{name}/copy", copy_database),
        at(Post, "/v1/databases/{name}/upgrade", upgrade_database),
        at(Post, "/v1/databases/{name}/unfollow", unfollow_database),
        at(Post, "/v1/databases/{name}/promote", promote_database),
        at(Post, "/v1/databases/{name}/credentials/rotate", rotate_credentials),
        at(Post, "/v1/apps", create_app),
        at(Get, "/v1/apps/{name}/maintenance", app_maintenance),
        at(Put, "/v1/apps/{name}/maintenance", set_app_maintenance),
        at(Post, "/v1/apps/{name}/attachments", attach),
        at(Get, "/v1/apps/{name}/config", show_config),
        at(Put, "/v1/apps/{name}/config", set_config),
        at(Delete, "/v1/apps/{name}/config/{key}", unset_config),
        at(Get, "/v1/apps/{name}/releases", releases),
        at(Get, "/v1/apps/{name}/releases/{version}", release_info),
        at(Post, "/v1/apps/{name}/rollback", rollback),
        at(Get, "/v1/rollouts", list_rollouts),
        at(Post, "/v1/rollouts", create_rollout),
        at(Get, "/v1/rollouts/{name}", show_rollout),
        at(Post, "/v1/rollouts/{name}/actions", act_on_rollout),
        at(Get, "/v1/rollouts/{name}/plan", plan_rollout),
        at(Get, "/openapi.json", openapi_document),
        at(Get, "/metrics", render_metrics),
    ]
}

/// Every route the server answers.
pub fn routes() -> Vec<Route> {
    table().into_iter().map(|(route, _)| route).collect()
}

fn router(state: ApiState) -> Router {
    table()
        .into_iter()
        .fold(Router::new(), |router, (route, handler)| router.route(route.path, handler))
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

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorAnswer { error: self.message })).into_response()
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

/// List the fleet's databases.
#[utoipa::path(get, path = "/v1/databases", operation_id = "listDatabases", tag = "databases",
    responses((status = 200, description = "Databases", body = Vec<DatabaseSummary>)))]
async fn list_databases(State(state): State<ApiState>) -> Answer<Vec<DatabaseSummary>> {
    Ok(Json(state.engine.list_databases().await?))
}

/// Create a database (a primary, or a follower with `follow`); answers once it is available.
#[utoipa::path(post, path = "/v1/databases", operation_id = "createDatabase", tag = "databases", request_body = CreateDatabase,
    responses(
        (status = 201, description = "The new database's info", body = DatabaseInfo),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown leader", body = ErrorAnswer),
        (status = 409, description = "A database of that name exists", body = ErrorAnswer),
    ))]
async fn create_database(State(state): State<ApiState>, Body(request): Body<CreateDatabase>) -> Result<(StatusCode, Json<DatabaseInfo>), HttpError> {
    let info = state.detached(move |engine| async move { engine.create_requested_database(&request).await }).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Adopt an existing Patroni cluster as a database; answers with its info.
#[utoipa::path(post, path = "/v1/databases/adopt", operation_id = "adoptDatabase", tag = "databases", request_body = AdoptDatabase,
    responses(
        (status = 201, description = "The adopted database's info, with its members", body = DatabaseInfo),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 409, description = "A database of that name exists, the cluster is adopted already, or no [patroni] section", body = ErrorAnswer),
        (status = 500, description = "The cluster's REST API or leader could not be reached", body = ErrorAnswer),
    ))]
async fn adopt_database(State(state): State<ApiState>, Body(request): Body<AdoptDatabase>) -> Result<(StatusCode, Json<DatabaseInfo>), HttpError> {
    let info = state.detached(move |engine| async move { engine.adopt(&request).await }).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// The `info` block: plan, status, data size, following, HA, maintenance, window, endpoint.
#[utoipa::path(get, path = "/v1/databases/{name}", operation_id = "databaseInfo", tag = "databases",
    params(("name" = String, Path, description = "Database name")),
    responses(
        (status = 200, description = "Info", body = DatabaseInfo),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
    ))]
async fn database_info(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<DatabaseInfo> {
    Ok(Json(state.engine.info(&name).await?))
}

/// Set and remove a database's labels (`tier=gold`): what rollouts select by.
#[utoipa::path(put, path = "/v1/databases/{name}/labels", operation_id = "setLabels", tag = "databases",
    params(("name" = String, Path, description = "Database name")), request_body = SetLabels,
    responses(
        (status = 200, description = "The database's labels now", body = DatabaseLabels),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
    ))]
async fn set_labels(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<SetLabels>) -> Answer<DatabaseLabels> {
    let labels = state.engine.set_labels(&name, &request.set, &request.remove).await?;
    Ok(Json(DatabaseLabels { name, labels }))
}

/// Every rollout, oldest first.
#[utoipa::path(get, path = "/v1/rollouts", operation_id = "listRollouts", tag = "rollouts",
    responses((status = 200, description = "Rollouts", body = Vec<RolloutView>)))]
async fn list_rollouts(State(state): State<ApiState>) -> Answer<Vec<RolloutView>> {
    Ok(Json(state.engine.rollouts().await?))
}

/// Create a rollout: the selection in waves, the first wave's maintenances required at once.
#[utoipa::path(post, path = "/v1/rollouts", operation_id = "createRollout", tag = "rollouts", request_body = CreateRollout,
    responses(
        (status = 201, description = "The rollout", body = RolloutView),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
        (status = 409, description = "A rollout of that name exists, nothing selected, or a database has a maintenance open", body = ErrorAnswer),
    ))]
async fn create_rollout(State(state): State<ApiState>, Body(request): Body<CreateRollout>) -> Result<(StatusCode, Json<RolloutView>), HttpError> {
    let view = state.detached(move |engine| async move { engine.create_rollout(&request, Utc::now()).await }).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A rollout: its state, and each wave's databases with their maintenance.
#[utoipa::path(get, path = "/v1/rollouts/{name}", operation_id = "showRollout", tag = "rollouts",
    params(("name" = String, Path, description = "Rollout name")),
    responses(
        (status = 200, description = "The rollout", body = RolloutView),
        (status = 404, description = "Unknown rollout", body = ErrorAnswer),
    ))]
async fn show_rollout(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<RolloutView> {
    Ok(Json(state.engine.rollout(&name).await?))
}

/// Pause, resume or abort a rollout.
#[utoipa::path(post, path = "/v1/rollouts/{name}/actions", operation_id = "actOnRollout", tag = "rollouts",
    params(("name" = String, Path, description = "Rollout name")), request_body = ActOnRollout,
    responses(
        (status = 200, description = "The rollout", body = RolloutView),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown rollout", body = ErrorAnswer),
        (status = 409, description = "Not possible in the rollout's state", body = ErrorAnswer),
    ))]
async fn act_on_rollout(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<ActOnRollout>) -> Answer<RolloutView> {
    let view = state.detached(move |engine| async move { engine.act_on_rollout(&name, request.action, Utc::now()).await }).await?;
    Ok(Json(view))
}

/// When each wave's databases would run from now (a dry run of the pure planner).
#[utoipa::path(get, path = "/v1/rollouts/{name}/plan", operation_id = "planRollout", tag = "rollouts",
    params(("name" = String, Path, description = "Rollout name")),
    responses(
        (status = 200, description = "The plan", body = RolloutPlan),
        (status = 404, description = "Unknown rollout", body = ErrorAnswer),
    ))]
async fn plan_rollout(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<RolloutPlan> {
    Ok(Json(state.engine.plan_rollout(&name, Utc::now()).await?))
}

#[derive(Deserialize)]
struct Confirm {
    confirm: Option<String>,
}

/// Destroy a database, its servers and records.
#[utoipa::path(delete, path = "/v1/databases/{name}", operation_id = "destroyDatabase", tag = "databases",
    params(
        ("name" = String, Path, description = "Database name"),
        ("confirm" = String, Query, description = "Must repeat the database's name"),
    ),
    responses(
        (status = 200, description = "Destroyed", body = Destroyed),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
        (status = 409, description = "Confirmation missing or wrong, or the database has followers", body = ErrorAnswer),
    ))]
async fn destroy_database(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Query(query): Query<Confirm>) -> Answer<Destroyed> {
    let confirm = query.confirm.unwrap_or_default();
    let destroyed = name.clone();
    state.detached(move |engine| async move { engine.destroy_database(&name, &confirm).await }).await?;
    Ok(Json(Destroyed { destroyed }))
}

/// Record a required maintenance and plan it into the window.
#[utoipa::path(post, path = "/v1/databases/{name}/maintenance", operation_id = "requireMaintenance", tag = "maintenance",
    params(("name" = String, Path, description = "Database name")), request_body = RequireMaintenance,
    responses(
        (status = 201, description = "The planned maintenance", body = MaintenanceView),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
        (status = 409, description = "A maintenance is already open", body = ErrorAnswer),
    ))]
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

/// The pending maintenance and its one-line status.
#[utoipa::path(get, path = "/v1/databases/{name}/maintenance", operation_id = "showMaintenance", tag = "maintenance",
    params(("name" = String, Path, description = "Database name")),
    responses(
        (status = 200, description = "Status", body = MaintenanceStatus),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
    ))]
async fn show_maintenance(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<MaintenanceStatus> {
    Ok(Json(state.engine.maintenance_status(&name).await?))
}

/// Set the weekly window (4 hours) and re-plan the pending maintenance into it.
#[utoipa::path(put, path = "/v1/databases/{name}/window", operation_id = "setWindow", tag = "maintenance",
    params(("name" = String, Path, description = "Database name")), request_body = SetWindow,
    responses(
        (status = 200, description = "The new window and status", body = WindowStatus),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
    ))]
async fn set_window(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<SetWindow>) -> Answer<WindowStatus> {
    Ok(Json(state.detached(move |engine| async move { engine.set_window(&name, &request.window, Utc::now()).await }).await?))
}

/// Run the pending maintenance now and answer when it has finished; refused unless every attached app is in maintenance mode or `force` is set.
#[utoipa::path(post, path = "/v1/databases/{name}/maintenance/run", operation_id = "runMaintenance", tag = "maintenance",
    params(("name" = String, Path, description = "Database name")), request_body = RunMaintenance,
    responses(
        (status = 200, description = "The run's report (completed, or postponed with `postponed_because`)", body = RunReportBody),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
        (status = 409, description = "Not in maintenance mode (use force), nothing required, or being run elsewhere", body = ErrorAnswer),
    ))]
async fn run_maintenance(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<RunMaintenance>) -> Answer<RunReportBody> {
    let report = state.detached(move |engine| async move { engine.run_now(&name, request.force).await }).await?;
    if let Some(pause) = report.write_pause {
        metrics::record_write_pause(pause);
    }
    Ok(Json(RunReportBody::from(&report)))
}

/// Every maintenance of the database, newest first.
#[utoipa::path(get, path = "/v1/databases/{name}/maintenance/history", operation_id = "maintenanceHistory", tag = "maintenance",
    params(("name" = String, Path, description = "Database name")),
    responses(
        (status = 200, description = "History", body = Vec<HistoryEntry>),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
    ))]
async fn history(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<Vec<HistoryEntry>> {
    Ok(Json(state.engine.history(&name).await?))
}

/// Block until the database is not being created, prepared or maintained.
#[utoipa::path(post, path = "/v1/databases/{name}/wait", operation_id = "waitIdle", tag = "maintenance",
    params(("name" = String, Path, description = "Database name")), request_body = WaitIdle,
    responses(
        (status = 200, description = "Idle", body = Idle),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
        (status = 409, description = "Still busy when the timeout passed", body = ErrorAnswer),
        (status = 503, description = "The daemon is shutting down", body = ErrorAnswer),
    ))]
async fn wait_idle(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<WaitIdle>) -> Answer<Idle> {
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
    Ok(Json(Idle { name, busy: false }))
}

/// Replace this database's data with a copy of another's; the source refuses writes (SQLSTATE 25006) while it runs.
///
/// The answer streams newline-delimited JSON events: `progress` lines, then
/// one `done` (with the report) or `error` (with `error` and `status`). The
/// copy runs in its own task: a client that goes away does not stop it
/// half-way, and the source's writability is always restored.
#[utoipa::path(post, path = "/v1/databases/{name}/copy", operation_id = "copyDatabase", tag = "databases",
    params(("name" = String, Path, description = "Target database: its data is replaced")), request_body = CopyDatabase,
    responses(
        (status = 200, description = "Newline-delimited JSON events", body = CopyEvent, content_type = "application/x-ndjson"),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
        (status = 409, description = "Confirmation missing or wrong, or a follower named", body = ErrorAnswer),
    ))]
async fn copy_database(State(state): State<ApiState>, UrlPath(target): UrlPath<String>, Body(request): Body<CopyDatabase>) -> Result<Response, HttpError> {
    let workers = request.workers.unwrap_or(DEFAULT_COPY_WORKERS);
    if workers == 0 || workers > MAX_COPY_WORKERS {
        return Err(HttpError::bad(format!("workers must be between 1 and {MAX_COPY_WORKERS}")));
    }
    state.engine.check_copy(&request.source, &target, &request.confirm).await?;
    let (events, received) = tokio::sync::mpsc::unbounded_channel::<String>();
    let guard = state.in_flight.clone().read_owned().await;
    let engine = state.engine.clone();
    let send = |events: &tokio::sync::mpsc::UnboundedSender<String>, event: CopyEvent| {
        if let Ok(line) = serde_json::to_string(&event) {
            let _ = events.send(line + "\n");
        }
    };
    tokio::spawn(async move {
        let progress_events = events.clone();
        let progress = move |progress: crate::pg::copy::CopyProgress| send(&progress_events, CopyEvent::Progress(progress));
        let last = match engine.copy_database(&request.source, &target, &request.confirm, workers, &progress).await {
            Ok(report) => CopyEvent::Done(CopyDone { source: request.source, target, report }),
            Err(error) => {
                let error = HttpError::from(error);
                CopyEvent::Error(CopyFailed { error: error.message, status: error.status.as_u16() })
            }
        };
        send(&events, last);
        drop(guard);
    });
    let stream = futures_util::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|line| (Ok::<_, std::convert::Infallible>(line), received))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], axum::body::Body::from_stream(stream)).into_response())
}

/// Change the plan: standard tier and up requires a `plan-change` maintenance onto a replacement built on the new plan (answered at once); essential copies the data into a new server at once, read-only meanwhile (answered when done).
#[utoipa::path(post, path = "/v1/databases/{name}/upgrade", operation_id = "upgradeDatabase", tag = "databases",
    params(("name" = String, Path, description = "Database name")), request_body = UpgradeDatabase,
    responses(
        (status = 200, description = "The planned maintenance or the finished run", body = UpgradeAnswer),
        (status = 400, description = "Bad input (unknown plan, the same plan, a deadline in the past)", body = ErrorAnswer),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
        (status = 409, description = "Already open maintenance, followers of a database going essential, or the run is held by another daemon", body = ErrorAnswer),
    ))]
async fn upgrade_database(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<UpgradeDatabase>) -> Answer<UpgradeAnswer> {
    let required_by = request.required_by.as_deref().map(schedule::parse_timestamp).transpose().map_err(HttpError::bad)?;
    let database = name.clone();
    let to_plan = request.plan.clone();
    let change = state.detached(move |engine| async move { engine.upgrade(&name, &request.plan, required_by, Utc::now()).await }).await?;
    if let PlanChangeOutcome::Done(RunReport { write_pause: Some(pause), .. }) = &change.outcome {
        metrics::record_write_pause(*pause);
    }
    Ok(Json(UpgradeAnswer::new(database, to_plan, change)))
}

/// A follower stops following for good and becomes a writable database (`Forked From` its leader).
#[utoipa::path(post, path = "/v1/databases/{name}/unfollow", operation_id = "unfollowDatabase", tag = "databases",
    params(("name" = String, Path, description = "The follower")), request_body = Unfollow,
    responses(
        (status = 200, description = "The database", body = DatabaseInfo),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
        (status = 409, description = "Not a follower, confirmation wrong, or a maintenance open", body = ErrorAnswer),
    ))]
async fn unfollow_database(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<Unfollow>) -> Answer<DatabaseInfo> {
    Ok(Json(state.detached(move |engine| async move { engine.unfollow(&name, &request.confirm).await }).await?))
}

/// Make the database an app's DATABASE_URL (release `Promote NAME`); the default-named pooler attachment moves with it; the previous primary's followers are listed, or repointed where they can follow.
#[utoipa::path(post, path = "/v1/databases/{name}/promote", operation_id = "promoteDatabase", tag = "databases",
    params(("name" = String, Path, description = "Database name")), request_body = PromoteDatabase,
    responses(
        (status = 200, description = "The promotion", body = Promotion),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown database or app", body = ErrorAnswer),
        (status = 409, description = "Still a follower, or already the DATABASE_URL", body = ErrorAnswer),
    ))]
async fn promote_database(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    UrlPath(name): UrlPath<String>,
    Body(request): Body<PromoteDatabase>,
) -> Answer<Promotion> {
    Ok(Json(state.detached(move |engine| async move { engine.promote(&name, &request.app, request.repoint_followers, &caller).await }).await?))
}

/// A new password for the database's login (the other of its two login roles); each attached app gets release `Rotate credentials NAME` and its restart hook; the previous password stops working once every app restarted, or when the grace ends.
#[utoipa::path(post, path = "/v1/databases/{name}/credentials/rotate", operation_id = "rotateCredentials", tag = "databases",
    params(("name" = String, Path, description = "Database name")), request_body = RotateCredentials,
    responses(
        (status = 200, description = "The rotation (its releases carry the new URL)", body = Rotation),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
        (status = 409, description = "The previous rotation's password is still valid", body = ErrorAnswer),
    ))]
async fn rotate_credentials(
    State(state): State<ApiState>,
    Caller(caller): Caller,
    UrlPath(name): UrlPath<String>,
    Body(request): Body<RotateCredentials>,
) -> Answer<Rotation> {
    let grace = Duration::from_secs(request.grace_seconds.unwrap_or(DEFAULT_ROTATION_GRACE_SECONDS));
    Ok(Json(state.detached(move |engine| async move { engine.rotate_credentials(&name, grace, &caller).await }).await?))
}

/// Create an app attached to a database as DATABASE_URL (release v1), with optional maintenance-mode hooks, env file and restart hook.
#[utoipa::path(post, path = "/v1/apps", operation_id = "createApp", tag = "apps", request_body = CreateApp,
    responses(
        (status = 201, description = "The app and its first release", body = AppView),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown database", body = ErrorAnswer),
        (status = 409, description = "An app of that name exists", body = ErrorAnswer),
    ))]
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

/// The app's maintenance mode.
#[utoipa::path(get, path = "/v1/apps/{name}/maintenance", operation_id = "appMaintenance", tag = "apps",
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "The app", body = AppView),
        (status = 404, description = "Unknown app", body = ErrorAnswer),
    ))]
async fn app_maintenance(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<AppView> {
    Ok(Json(state.engine.app(&name).await?))
}

/// Turn the app's maintenance mode on or off (running its hook).
#[utoipa::path(put, path = "/v1/apps/{name}/maintenance", operation_id = "setAppMaintenance", tag = "apps",
    params(("name" = String, Path, description = "App name")), request_body = SetAppMaintenance,
    responses(
        (status = 200, description = "The app", body = AppView),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown app", body = ErrorAnswer),
        (status = 409, description = "The hook failed", body = ErrorAnswer),
    ))]
async fn set_app_maintenance(State(state): State<ApiState>, UrlPath(name): UrlPath<String>, Body(request): Body<SetAppMaintenance>) -> Answer<AppView> {
    Ok(Json(state.detached(move |engine| async move { engine.set_app_maintenance(&name, request.on).await }).await?))
}

/// Attach a database to the app as `NAME_URL` (default: the database's name upper-cased, `-` as `_`); a new release `Attach DB`.
#[utoipa::path(post, path = "/v1/apps/{name}/attachments", operation_id = "attachDatabase", tag = "releases",
    params(("name" = String, Path, description = "App name")), request_body = AttachDatabase,
    responses(
        (status = 201, description = "The new release", body = ReleaseOutcome),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown app or database", body = ErrorAnswer),
        (status = 409, description = "The app already has an attachment of that name", body = ErrorAnswer),
    ))]
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

/// The app's current config (its latest release's).
#[utoipa::path(get, path = "/v1/apps/{name}/config", operation_id = "showConfig", tag = "releases",
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "Config", body = ConfigView),
        (status = 404, description = "Unknown app", body = ErrorAnswer),
    ))]
async fn show_config(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<ConfigView> {
    Ok(Json(state.engine.config(&name).await?))
}

/// Set config vars (others are kept); a new release `Set KEY1, KEY2`, then the env file and restart hook.
#[utoipa::path(put, path = "/v1/apps/{name}/config", operation_id = "setConfig", tag = "releases",
    params(("name" = String, Path, description = "App name")), request_body = SetConfig,
    responses(
        (status = 200, description = "The new release", body = ReleaseOutcome),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown app", body = ErrorAnswer),
    ))]
async fn set_config(State(state): State<ApiState>, Caller(caller): Caller, UrlPath(name): UrlPath<String>, Body(request): Body<SetConfig>) -> Answer<ReleaseOutcome> {
    Ok(Json(state.detached(move |engine| async move { engine.set_config(&name, &request.config, &caller).await }).await?))
}

/// Unset a config var; a new release `Unset KEY`.
#[utoipa::path(delete, path = "/v1/apps/{name}/config/{key}", operation_id = "unsetConfig", tag = "releases",
    params(("name" = String, Path, description = "App name"), ("key" = String, Path, description = "Config var")),
    responses(
        (status = 200, description = "The new release", body = ReleaseOutcome),
        (status = 404, description = "Unknown app or config var", body = ErrorAnswer),
    ))]
async fn unset_config(State(state): State<ApiState>, Caller(caller): Caller, UrlPath((name, key)): UrlPath<(String, String)>) -> Answer<ReleaseOutcome> {
    Ok(Json(state.detached(move |engine| async move { engine.unset_config(&name, &key, &caller).await }).await?))
}

/// The app's releases, newest first; `expired` ones cannot be rolled back to.
#[utoipa::path(get, path = "/v1/apps/{name}/releases", operation_id = "listReleases", tag = "releases",
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "Releases", body = Vec<ReleaseSummary>),
        (status = 404, description = "Unknown app", body = ErrorAnswer),
    ))]
async fn releases(State(state): State<ApiState>, UrlPath(name): UrlPath<String>) -> Answer<Vec<ReleaseSummary>> {
    Ok(Json(state.engine.releases(&name).await?))
}

/// One release: change, who, when, and its config (null once expired).
#[utoipa::path(get, path = "/v1/apps/{name}/releases/{version}", operation_id = "releaseInfo", tag = "releases",
    params(("name" = String, Path, description = "App name"), ("version" = String, Path, description = "`v3` or `3`")),
    responses(
        (status = 200, description = "Release", body = ReleaseInfo),
        (status = 400, description = "Malformed version", body = ErrorAnswer),
        (status = 404, description = "Unknown app or release", body = ErrorAnswer),
    ))]
async fn release_info(State(state): State<ApiState>, UrlPath((name, version)): UrlPath<(String, String)>) -> Answer<ReleaseInfo> {
    let version = parse_version(&version).map_err(HttpError::bad)?;
    Ok(Json(state.engine.release(&name, version).await?))
}

/// A new release `Rollback to vN` copying vN's config (the previous release's without a version); undoes no provisioning, warns about URLs of databases that no longer exist.
#[utoipa::path(post, path = "/v1/apps/{name}/rollback", operation_id = "rollback", tag = "releases",
    params(("name" = String, Path, description = "App name")), request_body = Rollback,
    responses(
        (status = 200, description = "The new release, with `rolled_back_to`", body = ReleaseOutcome),
        (status = 400, description = "Bad input", body = ErrorAnswer),
        (status = 404, description = "Unknown app or release", body = ErrorAnswer),
        (status = 409, description = "The release has expired, or there is none before the latest", body = ErrorAnswer),
    ))]
async fn rollback(State(state): State<ApiState>, Caller(caller): Caller, UrlPath(name): UrlPath<String>, Body(request): Body<Rollback>) -> Answer<ReleaseOutcome> {
    if request.version.is_some_and(|v| v < 1) {
        return Err(HttpError::bad("version must be at least 1"));
    }
    Ok(Json(state.detached(move |engine| async move { engine.rollback(&name, request.version, &caller).await }).await?))
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_document() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi::document())
}

/// Prometheus metrics: pgmaint_maintenances{state}, pgmaint_outbox_depth, pgmaint_last_write_pause_ms, pgmaint_tick_seconds.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")))]
async fn render_metrics(State(state): State<ApiState>) -> Response {
    match state.engine.store_gauges().await {
        Ok(gauges) => metrics::refresh_from_store(&gauges),
        // The scrape still answers, with the gauges as they were.
        Err(error) => tracing::warn!(%error, "metrics: could not read the state store"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

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
