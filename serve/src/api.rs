//! The router: authentication, per-route metrics, limits and timeouts around the video
//! handlers, plus `/v1/models`, `/healthz`, `/metrics`, `/openapi.json`,
//! `/admin/reload` and the playground page at `/`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tower_http::timeout::TimeoutLayer;
use utoipa::{OpenApi, ToSchema};

use crate::characters;
use crate::error::{ApiError, ErrorBody, ErrorObject};
use crate::keys;
use crate::state::AppState;
use crate::videos::{self, User};

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sonora",
        description = "The OpenAI Videos API, served by sonora"
    ),
    paths(
        videos::create,
        videos::retrieve,
        videos::list,
        videos::delete,
        videos::content,
        videos::remix,
        videos::edit,
        videos::extend,
        videos::publish,
        videos::feed,
        characters::create,
        characters::retrieve,
        characters::list,
        characters::update,
        characters::delete,
        characters::videos,
        characters::audit,
        models,
        healthz,
        reload
    ),
    components(schemas(
        videos::VideoObject,
        videos::VideoError,
        videos::VideoList,
        videos::Deleted,
        videos::CreateVideoForm,
        videos::DeriveVideoForm,
        characters::CharacterObject,
        characters::CharacterList,
        characters::CharacterDeleted,
        characters::AuditLog,
        ErrorBody,
        ErrorObject,
        ModelList,
        ModelObject,
        Health
    ))
)]
pub struct ApiDoc;

/// One served model.
#[derive(Serialize, ToSchema)]
pub struct ModelObject {
    /// The name requests pass as `model`.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Always 0 (unknown).
    pub created: i64,
    /// Always `sonora`.
    pub owned_by: &'static str,
    /// The registry version (`v3`), or `checkpoint`.
    pub version: String,
    /// The checkpoint's training step.
    pub step: u64,
    /// The one size it makes.
    pub size: String,
    /// Its native clip length in seconds.
    pub seconds: String,
}

/// `/v1/models`.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The served model.
    pub data: Vec<ModelObject>,
}

/// `/healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// The model served (`NAME@vN`).
    pub model: String,
    /// Its version.
    pub version: String,
    /// Its step.
    pub step: u64,
    /// Where it comes from.
    pub source: String,
    /// Queued jobs.
    pub queued: usize,
    /// Running jobs.
    pub in_progress: usize,
}

fn model_object(st: &AppState) -> ModelObject {
    let s = st.model.get();
    ModelObject {
        id: s.name.clone(),
        object: "model",
        created: 0,
        owned_by: "sonora",
        version: s.version.clone(),
        step: s.step,
        size: s.size(),
        seconds: crate::job::seconds_label(s.config().frames, s.config().fps),
    }
}

/// The served model.
#[utoipa::path(get, path = "/v1/models", tag = "models", responses((status = 200, body = ModelList)))]
pub async fn models(State(st): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![model_object(&st)],
    })
}

/// Liveness and the version served.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz(State(st): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    let s = st.model.get();
    let c = st.store.counts()?;
    Ok(Json(Health {
        status: "ok",
        model: s.label(),
        version: s.version.clone(),
        step: s.step,
        source: st.model.source(),
        queued: c.queued,
        in_progress: c.in_progress,
    }))
}

/// Resolve the model again (an alias may have moved) and serve it; queued jobs stay.
#[utoipa::path(post, path = "/admin/reload", tag = "ops",
    responses((status = 200, body = ModelObject), (status = 403, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn reload(
    State(st): State<Arc<AppState>>,
    axum::Extension(user): axum::Extension<User>,
) -> Result<Json<ModelObject>, ApiError> {
    if !user.admin {
        return Err(ApiError::forbidden(format!(
            "{} may not reload the model (create an admin key with `sonora serve keys create --admin`)",
            user.name
        )));
    }
    let s = st.clone();
    tokio::task::spawn_blocking(move || s.model.reload())
        .await
        .map_err(|e| ApiError::internal(format!("reload: {e}")))?
        .map_err(|e| {
            ApiError::internal(format!(
                "reload failed, still serving the previous model: {e:#}"
            ))
        })?;
    tracing::info!("reloaded: serving {}", st.model.get().label());
    Ok(Json(model_object(&st)))
}

async fn metrics_page(State((st, handle)): State<(Arc<AppState>, PrometheusHandle)>) -> Response {
    if let Ok(c) = st.store.counts() {
        metrics::gauge!("sonora_queue_depth").set(c.queued as f64);
        for (s, n) in [
            ("queued", c.queued),
            ("in_progress", c.in_progress),
            ("completed", c.completed),
            ("failed", c.failed),
        ] {
            metrics::gauge!("sonora_jobs", "status" => s).set(n as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn playground() -> Html<&'static str> {
    Html(include_str!("playground.html"))
}

/// `Authorization: Bearer KEY` → the key's user, for every `/v1` and `/admin` route.
async fn authenticate(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return ApiError::unauthorized(
            "no API key: send `Authorization: Bearer KEY` (create one with `sonora serve keys create --user NAME`)",
        )
        .into_response();
    };
    let key = auth
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return ApiError::unauthorized("the Authorization header must be `Bearer KEY`")
            .into_response();
    };
    match st.store.find_key(&keys::hash(key)) {
        Ok(Some(k)) => {
            req.extensions_mut().insert(User {
                name: k.user,
                admin: k.admin,
            });
            next.run(req).await
        }
        Ok(None) => {
            ApiError::unauthorized("the API key is not valid (unknown or revoked)").into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Requests by route and code, and their latency.
async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().to_string();
    let t = Instant::now();
    let r = next.run(req).await;
    let code = r.status().as_u16().to_string();
    metrics::counter!("sonora_http_requests_total", "route" => route.clone(), "method" => method, "code" => code)
        .increment(1);
    metrics::histogram!("sonora_http_request_seconds", "route" => route)
        .record(t.elapsed().as_secs_f64());
    r
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(method.as_str(), uri.path())
}

/// Rewrites axum's plain-text rejections (a 405, a 408 from the timeout) in OpenAI's shape.
async fn shape_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let r = next.run(req).await;
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    match r.status() {
        StatusCode::METHOD_NOT_ALLOWED if !is_json => {
            ApiError::method(&method, &path).into_response()
        }
        StatusCode::REQUEST_TIMEOUT if !is_json => {
            let mut e = ApiError::internal(format!("{method} {path} timed out"));
            e.status = StatusCode::REQUEST_TIMEOUT;
            e.error.code = Some("timeout".into());
            e.into_response()
        }
        _ => r,
    }
}

/// The whole router.
pub fn router(st: Arc<AppState>, prometheus: PrometheusHandle) -> Router {
    let limit = st.config.max_body_bytes;
    let timeout = Duration::from_secs_f64(st.config.request_timeout_s);
    let authed = Router::new()
        .route("/v1/videos", post(videos::create).get(videos::list))
        .route("/v1/videos/edits", post(videos::edit))
        .route("/v1/videos/extensions", post(videos::extend))
        .route(
            "/v1/videos/{video_id}",
            get(videos::retrieve).delete(videos::delete),
        )
        .route("/v1/videos/{video_id}/content", get(videos::content))
        .route("/v1/videos/{video_id}/remix", post(videos::remix))
        .route("/v1/videos/{video_id}/publish", post(videos::publish))
        .route("/v1/videos/feed", get(videos::feed))
        .route(
            "/v1/videos/characters",
            post(characters::create).get(characters::list),
        )
        .route(
            "/v1/videos/characters/{character_id}",
            get(characters::retrieve)
                .post(characters::update)
                .delete(characters::delete),
        )
        .route(
            "/v1/videos/characters/{character_id}/videos",
            get(characters::videos),
        )
        .route(
            "/v1/videos/characters/{character_id}/audit",
            get(characters::audit),
        )
        .route("/v1/models", get(models))
        .route("/admin/reload", post(reload))
        .route_layer(middleware::from_fn_with_state(st.clone(), authenticate));
    let open = Router::new()
        .route("/", get(playground))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi));
    let metrics_route = Router::new()
        .route("/metrics", get(metrics_page))
        .with_state((st.clone(), prometheus));
    authed
        .merge(open)
        .with_state(st)
        .merge(metrics_route)
        .fallback(not_found)
        .layer(middleware::from_fn(count_requests))
        .layer(middleware::from_fn(shape_errors))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(DefaultBodyLimit::max(limit))
}
