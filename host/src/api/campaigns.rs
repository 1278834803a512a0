//! Campaign progress and per-device results, in the RMC progress message
//! shape, read from the engine's stored run state.

use super::openapi::{Doc, Routes};
use axum::http::Method;
use super::objects::load;
use super::{ApiError, AppState};
use crate::engine::run::{self, Part};
use super::json::JsonBody;
use crate::engine::estimate::{Assumptions, DurationEstimate};
use crate::engine::{progress, EngineError, RunOptions, RunStatus};
use crate::distributed::rmc_core::RemoteCampaign;
use crate::model::{public_view, Campaign, CampaignInput, CampaignStatus, DeviceSet, Editable, FieldError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::Stream;
use serde_json::Value;
use std::time::Duration;

pub fn routes() -> Routes {
    Routes::new()
        .route(Method::GET, "/api/campaigns/{id}/progress", campaign_progress, Doc::new("The campaign's progress (RMC progress message, each group's in `groups`)"))
        .route(Method::GET, "/api/campaigns/{id}/progress/stream", progress_stream, Doc::new("The same as server-sent events, one per change"))
        .route(Method::GET, "/api/campaigns/{id}/devices", device_progress, Doc::new("Each device's progress"))
        .route(Method::POST, "/api/campaigns/{id}/retry-failed", retry_failed, Doc::new("A new campaign for the devices that did not succeed"))
        .route(Method::POST, "/api/campaigns/{id}/start", start, Doc::new("Start a CONFIGURED campaign"))
        .route(Method::POST, "/api/campaigns/{id}/stop", stop, Doc::new("Stop a running campaign"))
        .route(Method::PUT, "/api/campaigns/{id}/backend-instance", switch_backend, Doc::new("Move the campaign to another backend instance, also while it runs").json::<SwitchBackend>())
        .route(Method::GET, "/api/campaigns/{id}/duration", duration, Doc::new("How long the campaign will take (seed 002's RESP)").query(&["loss"]))
        .route(Method::POST, "/api/campaigns/duration", draft_duration, Doc::new("How long a campaign not yet saved would take").json::<CampaignInput>().query(&["loss"]))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EstimateQuery {
    /// Probability that one frame, down or up, is lost (default 0.1).
    loss: Option<f64>,
}

impl EstimateQuery {
    fn assumptions(&self) -> Result<Assumptions, ApiError> {
        match self.loss {
            None => Ok(Assumptions::default()),
            Some(loss) if (0.0..0.95).contains(&loss) => Ok(Assumptions { loss }),
            Some(_) => Err(FieldError::new("loss", "must be a probability below 0.95").into()),
        }
    }
}

/// The estimate in the shape of seed 002's RESP to a GET: the campaign's
/// total (seconds, and minutes as seed 004's Duration), each group's, and
/// each stage's.
fn estimate_response(campaign: &Campaign, assumptions: Assumptions, estimate: &DurationEstimate) -> Value {
    serde_json::json!({
        "action": "RESP",
        "targetType": "CAMPAIGN",
        "campaignId": campaign.id,
        "campaignType": campaign.campaign_type.seed_name(),
        "duration": estimate.seconds,
        "durationMinutes": estimate.seconds.div_ceil(60),
        "groups": estimate.groups,
        "assumptions": { "loss": assumptions.loss },
    })
}

/// How long a stored campaign will take.
async fn duration(State(s): State<AppState>, Path(id): Path<String>, Query(q): Query<EstimateQuery>) -> Result<Json<Value>, ApiError> {
    let campaign = load::<Campaign>(&s, &id)?;
    let assumptions = q.assumptions()?;
    if let Some(core) = &s.remote {
        // On an RMC core, an agent estimates (seed 002's GET and RESP).
        let mut resp = core.estimate(&s.store, &s.vault, &campaign, assumptions.loss, Duration::from_secs(30)).await?;
        resp["campaignId"] = campaign.id.clone().into();
        resp["assumptions"] = serde_json::json!({ "loss": assumptions.loss });
        return Ok(Json(resp));
    }
    let estimate = s.runner.engine.estimate(&campaign, assumptions).await?;
    Ok(Json(estimate_response(&campaign, assumptions, &estimate)))
}

/// How long a campaign not yet saved would take: the body is what
/// creating it takes, validated the same way, and nothing is stored.
async fn draft_duration(State(s): State<AppState>, Query(q): Query<EstimateQuery>, JsonBody(input): JsonBody<CampaignInput>) -> Result<Json<Value>, ApiError> {
    let campaign = Campaign::from_input(input, None, &s.input_context())?;
    let assumptions = q.assumptions()?;
    let estimate = s.runner.engine.estimate(&campaign, assumptions).await?;
    Ok(Json(estimate_response(&campaign, assumptions, &estimate)))
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            EngineError::Invalid(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            // A network set up wrong (a plugin missing, credentials refused) is the operator's to fix.
            EngineError::Network(ref n) if n.needs_operator() => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            EngineError::Store(e) => e.into(),
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

/// Start a CONFIGURED campaign. A firmware campaign expects devices to
/// report the file's firmware version at the end.
async fn start(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    load::<Campaign>(&s, &id)?;
    if let Some(core) = &s.remote {
        let now = chrono::DateTime::from_timestamp_millis(s.clock.now_unix_ms() as i64).unwrap_or_default();
        core.start(&s.store, &s.vault, &id, now).await?;
        return Ok(Json(progress_now(&s, &id)?));
    }
    s.runner.start(&id, RunOptions::default()).await?;
    Ok(Json(progress::campaign_message(&parts_of(&s, &id)?, s.clock.now_unix_ms())))
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SwitchBackend {
    backend_instance: String,
}

/// Send a campaign through another backend instance from its next step
/// on, even while it runs.
async fn switch_backend(State(s): State<AppState>, Path(id): Path<String>, Json(body): Json<SwitchBackend>) -> Result<Json<Value>, ApiError> {
    load::<Campaign>(&s, &id)?;
    let campaign = s.runner.engine.switch_backend(&id, &body.backend_instance).await?;
    s.runner.poke_campaign(&id);
    Ok(Json(public_view(&campaign)))
}

/// Stop a running campaign; devices fall back to class A.
async fn stop(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    load::<Campaign>(&s, &id)?;
    if let Some(core) = &s.remote {
        core.stop(&s.store, &id).await?;
        return Ok(Json(progress_now(&s, &id)?));
    }
    s.runner.stop(&id).await?;
    Ok(Json(progress::campaign_message(&parts_of(&s, &id)?, s.clock.now_unix_ms())))
}

/// Every run of a campaign (one per multicast group) with its devices.
fn parts_of(s: &AppState, id: &str) -> Result<Vec<Part>, ApiError> {
    load::<Campaign>(s, id)?;
    run::parts_of(&s.store, id)?.ok_or_else(|| ApiError::not_found("run of campaign", id))
}

/// The progress an agent reported, when an agent runs the campaign (on
/// an RMC core).
fn remote_of(s: &AppState, id: &str) -> Result<Option<RemoteCampaign>, ApiError> {
    load::<Campaign>(s, id)?;
    Ok(RemoteCampaign::sent(&s.store, id)?)
}

/// The campaign's progress message: its agent's, else this host's.
fn progress_now(s: &AppState, id: &str) -> Result<Value, ApiError> {
    let now = s.clock.now_unix_ms();
    match remote_of(s, id)? {
        Some(remote) => Ok(remote.campaign.unwrap_or_else(|| progress::sent_to_agent(id, &remote.agent, now))),
        None => Ok(progress::campaign_message(&parts_of(s, id)?, now)),
    }
}

async fn campaign_progress(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(progress_now(&s, &id)?))
}

async fn device_progress(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Vec<Value>>, ApiError> {
    if remote_of(&s, &id)?.is_some() {
        return Ok(Json(RemoteCampaign::devices(&s.store, &id)?));
    }
    let now = s.clock.now_unix_ms();
    let parts = parts_of(&s, &id)?;
    Ok(Json(parts.iter().flat_map(|p| p.devices.iter().map(|d| progress::device_message(&p.run, d, now))).collect()))
}

/// Progress as server-sent events: a `progress` event whenever the message
/// changes (checked every second), ending after the campaign ends.
async fn progress_stream(State(s): State<AppState>, Path(id): Path<String>) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError> {
    progress_now(&s, &id)?;
    let stream = futures_util::stream::unfold((s, id, None::<String>, false), |(s, id, last, done)| async move {
        if done {
            return None;
        }
        loop {
            let Ok(msg) = progress_now(&s, &id) else { return None };
            // The timestamp alone changing is no news.
            let mut untimed = msg.clone();
            untimed.as_object_mut().map(|m| m.remove("time"));
            let key = untimed.to_string();
            if last.as_deref() != Some(key.as_str()) {
                let finished = msg["campaignStatus"] != "RUNNING";
                let event = Event::default().event("progress").data(msg.to_string());
                return Some((Ok(event), (s, id, Some(key), finished)));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// A new CONFIGURED campaign, like this one, for only the devices that did
/// not succeed (through a new device set).
async fn retry_failed(State(s): State<AppState>, Path(id): Path<String>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let campaign = load::<Campaign>(&s, &id)?;
    if campaign.archived {
        return Err(ApiError::new(StatusCode::CONFLICT, "the campaign is archived: restore it before retrying its devices"));
    }
    let parts = parts_of(&s, &id)?;
    if parts.iter().any(|p| p.run.status == RunStatus::Running) {
        return Err(ApiError::new(StatusCode::CONFLICT, "the campaign is still running"));
    }
    let mut failed: Vec<_> = parts.iter().flat_map(|p| &p.devices).filter(|d| !d.succeeded).map(|d| d.dev_eui).collect();
    failed.sort();
    if failed.is_empty() {
        return Err(ApiError::bad_request("every device succeeded: nothing to retry"));
    }
    let set = DeviceSet {
        id: s.store.new_id(),
        name: format!("failed devices of campaign {id}"),
        description: format!("{} devices that did not succeed in '{}'", failed.len(), campaign.name),
        devices: failed,
        archived: false,
    };
    s.store.put(&set)?;
    let now = chrono::DateTime::from_timestamp_millis(s.clock.now_unix_ms() as i64).unwrap_or_default();
    let retry = Campaign {
        id: s.store.new_id(),
        name: format!("{} (failed devices)", campaign.name),
        created: now,
        started: None,
        last_changed: now,
        device_sets: vec![set.id.clone()],
        status: CampaignStatus::Configured,
        ..campaign
    };
    s.store.put(&retry)?;
    Ok((StatusCode::CREATED, Json(public_view(&retry))))
}
