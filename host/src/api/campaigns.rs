//! Campaign progress and per-device results, in the RMC progress message
//! shape, read from the engine's stored run state.

use super::objects::load;
use super::{ApiError, AppState};
use crate::engine::{progress, CampaignRun, DeviceRun};
use crate::model::Campaign;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/campaigns/{id}/progress", get(campaign_progress))
        .route("/api/campaigns/{id}/devices", get(device_progress))
}

fn run_of(s: &AppState, id: &str) -> Result<(CampaignRun, Vec<DeviceRun>), ApiError> {
    load::<Campaign>(s, id)?;
    let run = s.store.get::<CampaignRun>(id)?.ok_or_else(|| ApiError::not_found("run of campaign", id))?;
    let devices = DeviceRun::all_of(&s.store, &run)?;
    Ok((run, devices))
}

async fn campaign_progress(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (run, devices) = run_of(&s, &id)?;
    Ok(Json(progress::campaign_message(&run, &devices, s.clock.now_unix_ms())))
}

async fn device_progress(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Vec<Value>>, ApiError> {
    let (run, devices) = run_of(&s, &id)?;
    let now = s.clock.now_unix_ms();
    Ok(Json(devices.iter().map(|d| progress::device_message(&run, d, now)).collect()))
}
