//! Plugins: list, load or hot-swap (multipart manifest + wasm), describe.

use super::openapi::{Doc, Routes};
use axum::http::Method;
use super::json::parse_json;
use super::{ApiError, AppState};
use crate::model::{PluginKind, PluginManifest, PluginRecord};
use crate::plugin::Plugin;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Routes {
    Routes::new()
        .route(Method::GET, "/api/plugins", list, Doc::new("List the plugins and their versions"))
        .route(Method::POST, "/api/plugins", load, Doc::new("Load a plugin, or a new version of one (hot swap)").multipart("`manifest`: JSON; `wasm`: the component"))
        .route(Method::GET, "/api/plugins/{name}", read, Doc::new("A plugin and its versions"))
        .route(Method::GET, "/api/plugins/{name}/describe", describe, Doc::new("What the active version says of itself"))
}

fn view(record: &PluginRecord, loaded: Option<&Arc<Plugin>>) -> Value {
    json!({
        "name": record.manifest.name,
        "kind": record.manifest.kind,
        "version": record.manifest.version,
        "witVersion": record.manifest.wit_version,
        "description": record.manifest.description,
        "sha256": record.wasm_sha256,
        "versions": record.versions.iter().map(|v| json!({"sha256": v.sha256, "version": v.manifest.version})).collect::<Vec<_>>(),
        "limits": record.manifest.limits,
        "allowedOutboundHosts": record.manifest.allowed_outbound_hosts,
        "loadedAt": record.loaded_at,
        "active": loaded.is_some_and(|p| p.sha256 == record.wasm_sha256),
        "compiledFromCache": loaded.map(|p| p.compiled_from_cache),
    })
}

async fn list(State(s): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    let records = s.store.list::<PluginRecord>(false)?;
    Ok(Json(records.iter().map(|r| view(r, s.runtime.active(&r.manifest.name).ok().as_ref())).collect()))
}

async fn read(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let record = super::objects::load::<PluginRecord>(&s, &name)?;
    Ok(Json(view(&record, s.runtime.active(&name).ok().as_ref())))
}

/// Parts: `manifest` (plugin.json) and `wasm` (the component). Loading a
/// name that exists swaps it: the next call uses the new version.
async fn load(State(s): State<AppState>, mut form: Multipart) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (mut manifest, mut wasm) = (None::<PluginManifest>, None::<Vec<u8>>);
    while let Some(field) = form.next_field().await.map_err(|e| ApiError::new(e.status(), e.body_text()))? {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        match name.as_str() {
            "manifest" => manifest = Some(parse_json(&bytes)?),
            "wasm" => wasm = Some(bytes.to_vec()),
            other => return Err(ApiError::bad_request(format!("unexpected form field '{other}'"))),
        }
    }
    let manifest = manifest.ok_or_else(|| ApiError::bad_request("manifest: missing"))?;
    let wasm = wasm.ok_or_else(|| ApiError::bad_request("wasm: missing"))?;
    let (runtime, store) = (s.runtime.clone(), s.store.clone());
    // Compiling takes a while: keep it off the async workers.
    let plugin = tokio::task::spawn_blocking(move || crate::plugin::install(&runtime, &store, manifest, &wasm))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let record = super::objects::load::<PluginRecord>(&s, &plugin.manifest.name)?;
    Ok((StatusCode::CREATED, Json(view(&record, Some(&plugin)))))
}

/// Call the plugin's `describe` export: a live check that it runs.
async fn describe(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let plugin = s.runtime.active(&name)?;
    let value = match plugin.manifest.kind {
        PluginKind::DeviceLibrary => {
            let info = s.runtime.device_library(&plugin).describe().await?;
            serde_json::to_value::<_>(&info)
        }
        PluginKind::UpdateType => {
            let info = s.runtime.update_type(&plugin).describe().await?;
            serde_json::to_value::<_>(&info)
        }
        PluginKind::Backend => {
            let unbound = crate::plugin::backend::Instance { id: String::new(), settings: vec![], secret_names: vec![] };
            let info = s.runtime.backend(&plugin, Arc::new(crate::plugin::BackendGrant::default()), unbound).describe().await?;
            serde_json::to_value::<_>(&info)
        }
    };
    Ok(Json(value.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?))
}
