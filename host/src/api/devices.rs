//! Devices: the object routes, a list filtered as seed 004's device page
//! filters, a device's latest uplinks, and one unicast message to it.

use super::openapi::{Doc, Routes};
use axum::http::Method;
use super::{ApiError, AppState};
use crate::model::FieldError;
use crate::backend::{bind, outcome};
use crate::model::{Device, DeviceSet, DeviceUplinks, Eui};
use axum::extract::Query;
use axum::response::IntoResponse;
use std::collections::HashSet;
use crate::plugin::backend::UnicastDownlink;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// Largest application payload of one LoRaWAN downlink (DR with the
/// largest payload, no FOpts).
const MAX_DOWNLINK_PAYLOAD: usize = 242;

pub fn routes() -> Routes {
    use super::objects::{archive, create, read, update};
    use crate::model::DeviceInput;
    Routes::new()
        .route(Method::GET, "/api/devices", list, Doc::new("List or search devices, in pages").query(&["tag", "deviceSet", "firmware", "deviceProfile", "campaign", "campaignState", "archived", "limit", "after"]))
        .route(Method::POST, "/api/devices", create::<Device>, Doc::new("Create a device").json::<DeviceInput>())
        .route(Method::GET, "/api/devices/{id}", read::<Device>, Doc::new("Read a device"))
        .route(Method::PUT, "/api/devices/{id}", update::<Device>, Doc::new("Change a device").json::<DeviceInput>())
        .route(Method::DELETE, "/api/devices/{id}", archive::<Device>, Doc::new("Archive a device"))
        .route(Method::GET, "/api/devices/{id}/campaigns", campaign_history, Doc::new("The campaigns that ran on the device, with its state in each (device progress messages), newest first"))
        .route(Method::GET, "/api/devices/{id}/uplinks", uplinks, Doc::new("The device's last uplinks, newest first"))
        .route(Method::POST, "/api/devices/{id}/downlink", downlink, Doc::new("Send the device one unicast message").json::<DownlinkRequest>())
}

/// Where a device stands in a campaign.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum CampaignState {
    /// Still in it.
    Active,
    Succeeded,
    Failed,
}

/// `GET /api/devices` filters, each optional: `tag`, `deviceSet` (id),
/// `firmware`, `deviceProfile` (id), `campaign` (id) with `campaignState`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeviceFilter {
    #[serde(default)]
    archived: bool,
    limit: Option<usize>,
    after: Option<String>,
    tag: Option<String>,
    device_set: Option<String>,
    firmware: Option<String>,
    device_profile: Option<String>,
    campaign: Option<String>,
    campaign_state: Option<CampaignState>,
}

impl DeviceFilter {
    fn any(&self) -> bool {
        self.tag.is_some() || self.device_set.is_some() || self.firmware.is_some() || self.device_profile.is_some() || self.campaign.is_some() || self.campaign_state.is_some()
    }
}

/// The device list, in pages as every list; filtered, it reads the devices
/// in id order and keeps those that match.
async fn list(state: State<AppState>, Query(f): Query<DeviceFilter>) -> Result<axum::response::Response, ApiError> {
    if !f.any() {
        let q = super::objects::ListQuery { archived: f.archived, limit: f.limit, after: f.after };
        return Ok(super::objects::list::<Device>(state, Query(q)).await?.into_response());
    }
    let s = &state.0;
    let in_set: Option<HashSet<Eui>> = match &f.device_set {
        Some(id) => Some(super::objects::load::<DeviceSet>(s, id)?.devices.into_iter().collect()),
        None => None,
    };
    if f.campaign_state.is_some() && f.campaign.is_none() {
        return Err(FieldError::new("campaignState", "needs a campaign").into());
    }
    // The campaign's devices in the asked state, looked up per device.
    let in_campaign: Option<HashSet<Eui>> = match &f.campaign {
        Some(id) => Some(
            crate::engine::run::parts_of(&s.store, id)?
                .into_iter()
                .flatten()
                .flat_map(|p| p.devices)
                .filter(|r| match f.campaign_state {
                    None => true,
                    Some(CampaignState::Active) => r.active() && !r.succeeded,
                    Some(CampaignState::Succeeded) => r.succeeded,
                    Some(CampaignState::Failed) => r.failed.is_some(),
                })
                .map(|r| r.dev_eui)
                .collect(),
        ),
        None => None,
    };
    let matches = |d: &Device| {
        f.tag.as_ref().is_none_or(|t| &d.tag == t)
            && f.firmware.as_ref().is_none_or(|v| d.firmware.as_ref() == Some(v))
            && f.device_profile.as_ref().is_none_or(|p| d.device_profile.as_ref() == Some(p))
            && in_set.as_ref().is_none_or(|set| set.contains(&d.dev_eui))
            && in_campaign.as_ref().is_none_or(|set| set.contains(&d.dev_eui))
    };
    let limit = super::objects::page_size(f.limit);
    let mut page: Vec<Device> = s
        .store
        .list::<Device>(f.archived)?
        .into_iter()
        .filter(|d| f.after.as_ref().is_none_or(|a| d.dev_eui.to_string() > *a))
        .filter(matches)
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| {
        page.truncate(limit);
        page.last().map(|d| d.dev_eui.to_string()).unwrap_or_default()
    });
    Ok(super::objects::page_answer(&page, next).into_response())
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

/// `GET /api/devices/{id}/campaigns`: each campaign run the device took
/// part in, as its device progress message plus the campaign's name.
async fn campaign_history(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    use crate::engine::run::{CampaignRun, DeviceRun};
    let device = device(&s, &id)?;
    let now = s.clock.now_unix_ms();
    let mut history = Vec::new();
    for campaign in s.store.list::<crate::model::Campaign>(true)? {
        let Some(first) = s.store.get::<CampaignRun>(&campaign.id)? else { continue };
        for run_id in first.sibling_ids() {
            let Some(run) = (if run_id == first.id() { Some(first.clone()) } else { s.store.get::<CampaignRun>(&run_id)? }) else { continue };
            if let Some(dev) = s.store.get::<DeviceRun>(&DeviceRun::key(&run_id, device.dev_eui))? {
                let mut msg = crate::engine::progress::device_message(&run, &dev, now);
                msg["campaignName"] = json!(campaign.name);
                msg["startedAt"] = json!(run.started_ms);
                history.push(msg);
            }
        }
    }
    history.sort_by_key(|m| std::cmp::Reverse(m["startedAt"].as_u64()));
    Ok(Json(json!(history)))
}

#[derive(Deserialize, utoipa::ToSchema)]
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
    let sent = outcome(bound.on(&s.runtime).send_unicast(downlink).await);
    crate::backend::record_downlink(&request.backend_instance, "unicast", &sent);
    let receipt = sent.map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
    tracing::info!(device = %device.dev_eui, fport = request.fport, instance = %request.backend_instance, "unicast message sent");
    Ok(Json(json!({ "sent": true, "fcnt": receipt.fcnt })))
}
