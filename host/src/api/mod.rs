//! The REST API: JSON over axum, bearer-token roles, the server's objects,
//! file upload and plugins.

mod auth;
mod campaigns;
mod error;
mod files;
mod json;
mod objects;
mod plugins;
mod uplinks;

pub use auth::{Auth, Role, TOKENS_ENV};
pub use error::ApiError;

use crate::backend::PluginNetwork;
use crate::clock::Clock;
use crate::engine::Runner;
use crate::keys::Vault;
use crate::model::{BackendInstance, Campaign, Device, DeviceProfile, DeviceSet, MulticastGroup, Region, SmartDeltaKey, StoredFile};
use crate::plugin::PluginRuntime;
use crate::store::Store;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
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
}

impl AppState {
    fn input_context(&self) -> crate::model::InputContext<'_> {
        let now = chrono::DateTime::from_timestamp_millis(self.clock.now_unix_ms() as i64).unwrap_or_default();
        crate::model::InputContext { store: &self.store, vault: &self.vault, now }
    }
}

pub fn router(state: AppState) -> Router {
    let upload_limit = state.upload_limit as usize;
    let protected = Router::new()
        .merge(objects::routes::<Device>())
        .merge(objects::routes::<DeviceSet>())
        .merge(objects::routes::<MulticastGroup>())
        .merge(objects::routes::<Region>())
        .merge(objects::routes::<DeviceProfile>())
        .merge(objects::routes::<Campaign>())
        .merge(objects::routes::<SmartDeltaKey>())
        .merge(objects::routes::<BackendInstance>())
        .merge(objects::read_update_routes::<StoredFile>())
        .merge(files::routes())
        .merge(campaigns::routes())
        .merge(plugins::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_role));
    Router::new()
        .route("/api/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .merge(uplinks::routes())
        .merge(protected)
        // Multipart uploads enforce their own limit while streaming; this
        // bounds everything else, with room for multipart framing.
        .layer(DefaultBodyLimit::max(upload_limit.saturating_add(64 * 1024)))
        .with_state(state)
}
