//! The REST API: JSON over axum, bearer-token roles, the server's objects,
//! file upload and plugins.

mod agents;
mod auth;
mod tokens;
mod campaigns;
mod devices;
mod error;
mod files;
mod json;
mod objects;
pub mod openapi;
mod plugins;
mod rate_limit;
mod uplinks;

pub use auth::{Auth, Role, TOKENS_ENV};
pub use error::ApiError;
pub use rate_limit::TokenRateLimit;
pub use uplinks::UplinkWindow;

use crate::backend::PluginNetwork;
use crate::clock::Clock;
use crate::engine::Runner;
use crate::keys::Vault;
use crate::model::{BackendInstance, Campaign, DeviceProfile, DeviceSet, MulticastGroup, Region, SmartDeltaKey, StoredFile};
use crate::plugin::PluginRuntime;
use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use openapi::{Doc, Routes};
use axum::response::IntoResponse;
use axum::{middleware, Json, Router};
use std::sync::Arc;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub vault: Arc<Vault>,
    pub runtime: Arc<PluginRuntime>,
    pub auth: Arc<Auth>,
    pub clock: Arc<dyn Clock>,
    /// Largest file or plugin upload accepted, in bytes.
    pub upload_limit: u64,
    /// Runs campaigns over the backend plugins.
    pub runner: Arc<Runner<PluginNetwork>>,
    pub uplink_window: UplinkWindow,
    /// Requests per second per token, when limited.
    pub rate_limit: Option<Arc<TokenRateLimit>>,
    /// `/metrics` without a token.
    pub metrics_public: bool,
    /// The OpenAPI document of this host's routes, as JSON (set when its
    /// router is made).
    pub openapi: Arc<std::sync::OnceLock<String>>,
    /// The web console's sign-in sessions.
    pub console: Arc<crate::console::Sessions>,
    /// On an RMC core: the agents run the campaigns, through this.
    pub remote: Option<Arc<crate::distributed::rmc_core::Core>>,
}

impl AppState {
    fn input_context(&self) -> crate::model::InputContext<'_> {
        let now = chrono::DateTime::from_timestamp_millis(self.clock.now_unix_ms() as i64).unwrap_or_default();
        crate::model::InputContext { store: &self.store, vault: &self.vault, now }
    }
}

/// Largest JSON body of an object route (a device set of tens of
/// thousands of DevEUIs fits).
const MAX_OBJECT_BODY: usize = 4 * 1024 * 1024;

/// Every route with its documentation, and the document.
pub fn routes(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let metrics_public = state.metrics_public;
    // Objects are small JSON documents: bound their bodies well below the
    // upload limit that files and plugins need.
    let objects = Routes::new()
        .merge(devices::routes())
        .merge(objects::routes::<DeviceSet>())
        .merge(objects::routes::<MulticastGroup>())
        .merge(objects::routes::<Region>())
        .merge(objects::routes::<DeviceProfile>())
        .merge(objects::routes::<Campaign>())
        .merge(objects::routes::<SmartDeltaKey>())
        .merge(objects::routes::<BackendInstance>())
        .merge(tokens::routes())
        .merge(objects::read_update_routes::<StoredFile>())
        .map(|r| r.layer(DefaultBodyLimit::max(MAX_OBJECT_BODY)));
    let protected = objects.merge(files::routes()).merge(campaigns::routes()).merge(plugins::routes()).merge(agents::routes());
    let protected = if metrics_public { protected } else { protected.merge(metrics_route()) };
    let public = Routes::new()
        .route(Method::GET, "/api/health", || async { Json(serde_json::json!({"status": "ok"})) }, Doc::new("Whether the host serves"))
        .route(Method::GET, OPENAPI_PATH, openapi_json, Doc::new("This document"))
        .merge(uplinks::routes());
    let public = if metrics_public { public.merge(metrics_route()) } else { public };
    Routes::new().merge(protected).map(|r| r.route_layer(middleware::from_fn_with_state(state.clone(), auth::require_role))).merge(public.public()).finish()
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/openapi.json";

async fn openapi_json(axum::extract::State(s): axum::extract::State<AppState>) -> axum::response::Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], s.openapi.get().cloned().unwrap_or_default()).into_response()
}

pub fn router(state: AppState) -> Router {
    let upload_limit = state.upload_limit as usize;
    let (routes, document) = routes(&state);
    let _ = state.openapi.set(document.to_json().unwrap_or_default());
    routes
        .merge(crate::console::router())
        .fallback(|| async { ApiError::new(axum::http::StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::map_response(errors_as_json))
        .layer(middleware::from_fn_with_state(state.clone(), durable_writes))
        // Multipart uploads enforce their own limit while streaming; this
        // bounds everything else, with room for multipart framing.
        .layer(DefaultBodyLimit::max(upload_limit.saturating_add(64 * 1024)))
        .with_state(state)
}

/// Prometheus metrics: behind an API token (any role) unless the host
/// serves them openly (`--metrics-public`).
fn metrics_route() -> Routes {
    Routes::new().route(Method::GET, "/metrics", metrics, Doc::new("Prometheus metrics (text format)"))
}

async fn metrics(axum::extract::State(s): axum::extract::State<AppState>) -> Result<axum::response::Response, ApiError> {
    let text = crate::metrics::render(&s.store)?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// A 2xx to a request that may have written means the write is on disk:
/// the store is flushed before the answer leaves. Reads skip it.
async fn durable_writes(axum::extract::State(s): axum::extract::State<AppState>, req: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    let writes = !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS);
    let response = next.run(req).await;
    if writes && response.status().is_success() {
        if let Err(e) = s.store.flush_async().await {
            tracing::error!(error = %e, "flushing the store after a write failed");
            return ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "the write could not be made durable").into_response();
        }
    }
    response
}

/// Errors the framework answers itself (a path or query that does not
/// parse, a method the route lacks, a body over the limit) come as plain
/// text or empty: give them the API's JSON error shape.
async fn errors_as_json(response: axum::response::Response) -> axum::response::Response {
    let content_type = response.headers().get(axum::http::header::CONTENT_TYPE).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    // JSON is the API's own; HTML is the console's sign-in page.
    let answered = content_type.starts_with(b"application/json") || content_type.starts_with(b"text/html");
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || answered {
        return response;
    }
    // These bodies are short messages; anything longer is cut.
    let text = axum::body::to_bytes(response.into_body(), 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    ApiError::new(status, message).into_response()
}
