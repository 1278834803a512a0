//! A device's own routes beyond its object: its latest uplinks, and one
//! unicast message to it (seed 004's device page).

use super::{ApiError, AppState};
use crate::model::FieldError;
use crate::backend::{bind, outcome};
use crate::model::{Device, DeviceUplinks};
use crate::plugin::backend::UnicastDownlink;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// Largest application payload of one LoRaWAN downlink (DR with the
/// largest payload, no FOpts).
const MAX_DOWNLINK_PAYLOAD: usize = 242;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/devices/{id}/uplinks", get(uplinks)).route("/api/devices/{id}/downlink", post(downlink))
}

fn device(s: &AppState, id: &str) -> Result<Device, ApiError> {
    super::objects::load::<Device>(s, &super::objects::normalise_id(id))
}

/// `GET /api/devices/{id}/uplinks`: the device's latest uplinks, newest first.
async fn uplinks(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let device = device(&s, &id)?;
    let kept = s.store.get::<DeviceUplinks>(&device.dev_eui.to_string())?.map(|d| d.uplinks).unwrap_or_default();
    Ok(Json(json!(kept)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DownlinkRequest {
    backend_instance: String,
    fport: u8,
    /// Hex.
    payload: String,
    #[serde(default)]
    confirmed: bool,
}

/// `POST /api/devices/{id}/downlink`: one unicast message, queued on the
/// named backend instance's network; 200 once the network took it.
async fn downlink(State(s): State<AppState>, Path(id): Path<String>, body: axum::body::Bytes) -> Result<Json<Value>, ApiError> {
    let device = device(&s, &id)?;
    let request: DownlinkRequest = super::json::parse_json(&body)?;
    if !(1..=223).contains(&request.fport) {
        return Err(FieldError::new("fport", "must be 1-223 (application ports)").into());
    }
    let payload = hex::decode(request.payload.trim()).map_err(|_| FieldError::new("payload", "must be hex"))?;
    if payload.len() > MAX_DOWNLINK_PAYLOAD {
        return Err(FieldError::new("payload", format!("at most {MAX_DOWNLINK_PAYLOAD} bytes")).into());
    }
    let bound = bind(&s.store, &s.runtime, &request.backend_instance).map_err(|e| FieldError::new("backendInstance", e.to_string()))?;
    let downlink = UnicastDownlink { dev_eui: device.dev_eui.0, fport: request.fport, payload, confirmed: request.confirmed, flush_queue: false, correlation_id: String::new() };
    let receipt = outcome(bound.on(&s.runtime).send_unicast(downlink).await).map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    tracing::info!(device = %device.dev_eui, fport = request.fport, instance = %request.backend_instance, "unicast message sent");
    Ok(Json(json!({ "sent": true, "fcnt": receipt.fcnt })))
}
