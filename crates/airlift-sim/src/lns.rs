//! The simulated network server: a [`SimFleet`] behind a small JSON API on
//! loopback, spoken by the `simulated` backend plugin. It can run apart
//! from the host, so the fleet outlives a host that crashes, as real
//! devices do. Uplinks are posted to the host's `/backends/{id}/uplink`,
//! signed with the shared token, and posted again until the host takes
//! them; the fleet learns which answers the host acknowledged.

use crate::fleet::{GroupSessionKeys, SimFleet};
use airlift::engine::NetworkError;
use airlift::model::Eui;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often due uplinks are collected and posted (real time).
const PUMP_INTERVAL: Duration = Duration::from_millis(5);
/// Uplinks kept while the host is away; older ones are dropped.
const MAX_PENDING_UPLINKS: usize = 100_000;

struct Shared {
    fleet: Arc<SimFleet>,
    token: String,
    groups: Mutex<HashMap<Eui, GroupSessionKeys>>,
    uplink_url: Mutex<Option<String>>,
    /// Authorized requests by User-Agent.
    clients: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Each group's multicast frame counters used, and how many came twice.
    fcnt_used: Mutex<HashMap<Eui, std::collections::BTreeSet<u32>>>,
    fcnt_reused: std::sync::atomic::AtomicU64,
}

pub struct SimLns {
    pub addr: SocketAddr,
    pub fleet: Arc<SimFleet>,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SimLns {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

type ApiResult = Result<Json<serde_json::Value>, (StatusCode, String)>;

fn hex16(field: &str, text: &str) -> Result<[u8; 16], (StatusCode, String)> {
    hex::decode(text).ok().and_then(|b| b.try_into().ok()).ok_or((StatusCode::BAD_REQUEST, format!("{field} must be 32 hex digits")))
}

fn eui(text: &str) -> Result<Eui, (StatusCode, String)> {
    text.parse::<Eui>().map_err(|e| (StatusCode::BAD_REQUEST, format!("EUI: {e}")))
}

impl Shared {
    fn check_token(&self, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        let expected = format!("Bearer {}", self.token);
        match headers.get("authorization") {
            Some(v) if v.as_bytes() == expected.as_bytes() => {
                let agent = headers.get("user-agent").map(|a| String::from_utf8_lossy(a.as_bytes()).into_owned()).unwrap_or_default();
                *self.clients.lock().unwrap().entry(agent).or_default() += 1;
                Ok(())
            }
            _ => Err((StatusCode::UNAUTHORIZED, "bad or missing bearer token".into())),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupRequest {
    group_eui: String,
    mc_addr: String,
    app_s_key: String,
    nwk_s_key: String,
    #[serde(default)]
    devices: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DownlinkRequest {
    #[serde(rename = "fPort")]
    fport: u8,
    payload: String,
    #[serde(default, rename = "fCnt")]
    fcnt: Option<u32>,
}

async fn create_group(State(s): State<Arc<Shared>>, headers: HeaderMap, Json(g): Json<GroupRequest>) -> ApiResult {
    s.check_token(&headers)?;
    let dev_addr = u32::from_str_radix(&g.mc_addr, 16).map_err(|_| (StatusCode::BAD_REQUEST, "mcAddr must be 8 hex digits".to_string()))?;
    let keys = GroupSessionKeys { dev_addr, app_s_key: hex16("appSKey", &g.app_s_key)?, net_s_key: hex16("nwkSKey", &g.nwk_s_key)? };
    for d in &g.devices {
        eui(d)?;
    }
    s.groups.lock().unwrap().insert(eui(&g.group_eui)?, keys);
    Ok(Json(serde_json::json!({ "groupEui": g.group_eui })))
}

async fn delete_group(State(s): State<Arc<Shared>>, headers: HeaderMap, Path(group): Path<String>) -> ApiResult {
    s.check_token(&headers)?;
    let removed = s.groups.lock().unwrap().remove(&eui(&group)?).ok_or((StatusCode::NOT_FOUND, format!("no group {group}")))?;
    s.fleet.end_sessions(removed.dev_addr);
    Ok(Json(serde_json::json!({})))
}

async fn unicast(State(s): State<Arc<Shared>>, headers: HeaderMap, Path(device): Path<String>, Json(d): Json<DownlinkRequest>) -> ApiResult {
    s.check_token(&headers)?;
    let payload = hex::decode(&d.payload).map_err(|_| (StatusCode::BAD_REQUEST, "payload must be hex".to_string()))?;
    s.fleet.deliver_unicast(eui(&device)?, d.fport, &payload).map_err(|e| match e {
        NetworkError::Refused(m) | NetworkError::Unauthorized(m) | NetworkError::Misconfigured(m) => (StatusCode::NOT_FOUND, m),
        NetworkError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
    })?;
    Ok(Json(serde_json::json!({ "queued": true })))
}

async fn multicast(State(s): State<Arc<Shared>>, headers: HeaderMap, Path(group): Path<String>, Json(d): Json<DownlinkRequest>) -> ApiResult {
    s.check_token(&headers)?;
    let payload = hex::decode(&d.payload).map_err(|_| (StatusCode::BAD_REQUEST, "payload must be hex".to_string()))?;
    let fcnt = d.fcnt.ok_or((StatusCode::BAD_REQUEST, "fCnt is required for multicast".to_string()))?;
    let group_eui = eui(&group)?;
    let keys = s.groups.lock().unwrap().get(&group_eui).cloned().ok_or((StatusCode::NOT_FOUND, format!("no group {group}")))?;
    if !s.fcnt_used.lock().unwrap().entry(group_eui).or_default().insert(fcnt) {
        s.fcnt_reused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    s.fleet.deliver_multicast(&keys, fcnt, d.fport, &payload);
    Ok(Json(serde_json::json!({ "sent": true })))
}

/// The signature the `simulated` backend checks: hex SHA-256(body ‖ token).
pub fn signature(body: &str, token: &str) -> String {
    hex::encode(Sha256::new().chain_update(body).chain_update(token).finalize())
}

/// Collect due uplinks and post them until the host takes them.
async fn pump(s: Arc<Shared>) {
    let http = reqwest::Client::new();
    let mut pending: Vec<(Eui, u8, Vec<u8>, u64, u32)> = Vec::new();
    // Each device's uplink frame counter, as a network server reports it.
    let mut fcnt_up: std::collections::HashMap<Eui, u32> = Default::default();
    loop {
        tokio::time::sleep(PUMP_INTERVAL).await;
        // Uplinks stay with the fleet until there is a host to post them to
        // (another network in front of the same fleet may take them).
        let Some(url) = s.uplink_url.lock().unwrap().clone() else { continue };
        let now = s.fleet.now_unix_ms();
        for (e, p, b) in s.fleet.take_due_uplinks() {
            let fcnt = *fcnt_up.entry(e).and_modify(|f| *f += 1).or_insert(0);
            pending.push((e, p, b, now, fcnt));
        }
        if pending.len() > MAX_PENDING_UPLINKS {
            pending.drain(..pending.len() - MAX_PENDING_UPLINKS);
        }
        if pending.is_empty() {
            continue;
        }
        let uplinks: Vec<_> = pending
            .iter()
            .map(|(e, p, b, t, f)| serde_json::json!({ "devEui": e.to_string(), "fPort": p, "payload": hex::encode(b), "time": t, "fCnt": f }))
            .collect();
        let body = serde_json::json!({ "uplinks": uplinks }).to_string();
        let sent = http.post(&url).header("content-type", "application/json").header("x-sim-signature", signature(&body, &s.token)).body(body).send().await;
        match sent {
            Ok(r) if r.status().is_success() => {
                for (e, p, b, _, _) in pending.drain(..) {
                    s.fleet.acknowledge(e, p, &b);
                }
            }
            Ok(r) => tracing::debug!(status = %r.status(), "host refused uplinks; posting again"),
            Err(e) => tracing::debug!(error = %e, "host unreachable; posting uplinks again"),
        }
    }
}

impl SimLns {
    /// Serve `fleet` on `bind` (loopback), requiring `token`.
    pub async fn start(fleet: Arc<SimFleet>, bind: SocketAddr, token: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { fleet: fleet.clone(), token: token.into(), groups: Mutex::new(HashMap::new()), uplink_url: Mutex::new(None), clients: Default::default(), fcnt_used: Default::default(), fcnt_reused: Default::default() });
        let app = Router::new()
            .route("/groups", post(create_group))
            .route("/groups/{group}", delete(delete_group))
            .route("/groups/{group}/downlinks", post(multicast))
            .route("/devices/{device}/downlinks", post(unicast))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let serve = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "simulated network server stopped");
            }
        });
        let pump = tokio::spawn(pump(shared.clone()));
        Ok(Self { addr, fleet, shared, tasks: vec![serve, pump] })
    }

    /// Where uplinks go: the host's `/backends/{id}/uplink` URL.
    pub fn post_uplinks_to(&self, url: &str) {
        *self.shared.uplink_url.lock().unwrap() = Some(url.to_string());
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A backend instance of the `simulated` plugin for this network server,
    /// holding `token` (the one it expects, or another to test refusal).
    pub fn instance_input(&self, token: &str) -> airlift::model::BackendInstanceInput {
        airlift::model::BackendInstanceInput {
            name: "simulated network server".into(),
            plugin: "simulated".into(),
            settings: [("url".to_string(), self.url())].into(),
            secrets: [("token".to_string(), token.to_string())].into(),
            allowed_hosts: vec![self.url()],
            transport: Default::default(),
        }
    }

    /// Multicast frames sent with a frame counter their group had used.
    pub fn fcnt_reused(&self) -> u64 {
        self.shared.fcnt_reused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Authorized requests so far, by the caller's User-Agent.
    pub fn clients(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.clients.lock().unwrap().clone()
    }
}
