//! `/backends/{id}/uplink[/…]`: where networks post uplinks and reports.
//! No bearer token: the backend plugin authenticates the request its own
//! way (signature, shared token) in `parse-reports`. The host then refuses
//! replays: a frame counter seen before, or a time outside the window. Each uplink goes to
//! the engine; the answer is 200 only once everything is on disk, so a
//! network that retries on error loses nothing.

use super::openapi::{Doc, Routes};
use super::{ApiError, AppState};
use crate::backend::{bind, outcome};
use crate::engine::NetworkError;
use crate::model::{Device, DeviceUplinks, Eui, UplinkRecord};
use crate::plugin::backend::{self as wit, Header};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::Json;
use serde_json::Value;

/// Largest request a network may post.
const MAX_UPLINK_REQUEST: usize = 1024 * 1024;

/// How far from the host's clock an uplink's time (as the network
/// reports it) may be. Older ones are stale or replayed: a frame counter
/// restarts after a rejoin, and a captured report would then pass as new.
#[derive(Debug, Clone, Copy)]
pub struct UplinkWindow {
    pub max_age_ms: u64,
    /// Clocks differ a little; a time well ahead of ours is forged.
    pub max_ahead_ms: u64,
}

impl Default for UplinkWindow {
    fn default() -> Self {
        Self { max_age_ms: 15 * 60_000, max_ahead_ms: 2 * 60_000 }
    }
}

impl UplinkWindow {
    /// The default window, for a clock `speed` times faster than real time
    /// (simulations): the same span of real time.
    pub fn for_clock_speed(speed: f64) -> Self {
        let d = Self::default();
        let scale = |ms: u64| (ms as f64 * speed.max(1.0)).min(u64::MAX as f64) as u64;
        Self { max_age_ms: scale(d.max_age_ms), max_ahead_ms: scale(d.max_ahead_ms) }
    }

    fn holds(&self, received_ms: u64, now_ms: u64) -> bool {
        received_ms.saturating_add(self.max_age_ms) >= now_ms && received_ms <= now_ms.saturating_add(self.max_ahead_ms)
    }
}

pub fn routes() -> Routes {
    Routes::new()
        .any("/backends/{id}/uplink", receive_root, Doc::new("A network posts uplinks (the instance's backend plugin authenticates them)"))
        .any("/backends/{id}/uplink/{*path}", receive, Doc::new("A network posts uplinks on a path of its own"))
        // Anyone may post here: a body over the limit is refused while it
        // streams in (413), never buffered whole first.
        .map(|r| r.layer(DefaultBodyLimit::max(MAX_UPLINK_REQUEST)))
        .public()
}

async fn receive_root(state: State<AppState>, Path(id): Path<String>, method: Method, query: RawQuery, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    receive(state, Path((id, String::new())), method, query, headers, body).await
}

async fn receive(
    State(s): State<AppState>,
    Path((id, path)): Path<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let bound = bind(&s.store, &s.runtime, &id).map_err(|e| match e {
        NetworkError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
        NetworkError::Refused(m) | NetworkError::Unauthorized(m) | NetworkError::Misconfigured(m) => ApiError::new(StatusCode::NOT_FOUND, m),
    })?;
    let request = wit::IncomingRequest {
        method: method.to_string(),
        path: format!("/{path}"),
        query: query.unwrap_or_default(),
        headers: headers.iter().map(|(n, v)| Header { name: n.to_string(), value: String::from_utf8_lossy(v.as_bytes()).into() }).collect(),
        body: body.to_vec(),
    };
    let answer = bound.on(&s.runtime).parse_reports(request).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("backend plugin: {e}")))?;
    let reports = outcome(Ok(answer)).map_err(|e| match e {
            NetworkError::Unauthorized(m) => ApiError::new(StatusCode::UNAUTHORIZED, m),
            NetworkError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m),
            NetworkError::Refused(m) | NetworkError::Misconfigured(m) => ApiError::bad_request(m),
        })?;
    let (mut uplinks, mut replays, mut outside_window) = (0, 0, 0);
    // On an RMC core: the uplinks for the agents, published together after
    // the loop, and their frame counters recorded once they are on the
    // broker (a replay within the batch is caught by `seen`).
    let mut forwards = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for report in reports {
        match report {
            wit::Report::Uplink(u) => {
                if !s.uplink_window.holds(u.received_unix_ms, s.clock.now_unix_ms()) {
                    outside_window += 1;
                    tracing::warn!(instance = %id, device = %Eui(u.dev_eui), received_ms = u.received_unix_ms, "uplink time outside the window; ignored as stale or replayed");
                    continue;
                }
                // A frame counter seen before on this instance is a replay
                // (or the network posting again what was taken): taken once.
                let scope = format!("{id}/{}", Eui(u.dev_eui));
                if let Some(fcnt) = u.fcnt_up {
                    if !s.store.frame_counter_is_new(&scope, fcnt)? || !seen.insert((scope.clone(), fcnt)) {
                        replays += 1;
                        tracing::warn!(instance = %id, device = %Eui(u.dev_eui), fcnt, "uplink frame counter already seen; ignored as a replay");
                        continue;
                    }
                }
                record_uplink(&s, &id, &u)?;
                uplinks += 1;
                if s.remote.is_some() {
                    // On an RMC core the agents run the campaigns: to them.
                    forwards.push((scope, u));
                    continue;
                }
                s.runner.on_uplink(&id, Eui(u.dev_eui), u.fport, u.payload).await.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                if let Some(fcnt) = u.fcnt_up {
                    s.store.record_frame_counter(&scope, fcnt)?;
                }
            }
            wit::Report::DownlinkStatus((correlation, sent)) => tracing::debug!(instance = %id, %correlation, sent, "downlink status"),
            wit::Report::DeviceReset(eui) => {
                tracing::info!(instance = %id, device = %Eui(eui), "device rejoined; its frame counters restart");
                s.store.forget_frame_counter(&format!("{id}/{}", Eui(eui)))?;
            }
        }
    }
    if let Some(core) = &s.remote {
        core.forward_uplinks(&s.store, &id, forwards.iter().map(|(_, u)| (Eui(u.dev_eui), u.fport, u.payload.as_slice()))).await?;
        for (scope, u) in &forwards {
            if let Some(fcnt) = u.fcnt_up {
                s.store.record_frame_counter(scope, fcnt)?;
            }
        }
    }
    s.store.flush()?;
    crate::metrics::UPLINKS_TAKEN.fetch_add(uplinks as u64, std::sync::atomic::Ordering::Relaxed);
    for (result, n) in [("taken", uplinks), ("replay", replays), ("outside_time_window", outside_window)] {
        metrics::counter!("airlift_uplinks_total", "backend_instance" => id.clone(), "result" => result).increment(n as u64);
    }
    Ok(Json(serde_json::json!({ "uplinks": uplinks, "replays": replays, "outsideTimeWindow": outside_window })))
}

/// Keep a known device's uplink for its page (devices the store does not
/// know leave nothing behind).
fn record_uplink(s: &AppState, instance: &str, u: &wit::Uplink) -> Result<(), ApiError> {
    let eui = Eui(u.dev_eui);
    if s.store.get::<Device>(&eui.to_string())?.is_none() {
        return Ok(());
    }
    let mut kept = s.store.get::<DeviceUplinks>(&eui.to_string())?.unwrap_or(DeviceUplinks { dev_eui: eui, uplinks: vec![], archived: false });
    kept.push(UplinkRecord {
        received: chrono::DateTime::from_timestamp_millis(u.received_unix_ms as i64).unwrap_or_default(),
        backend_instance: instance.to_string(),
        fport: u.fport,
        payload_hex: hex::encode(&u.payload),
        fcnt: u.fcnt_up,
        rssi: u.rssi,
        snr: u.snr,
    });
    s.store.put(&kept)?;
    Ok(())
}
