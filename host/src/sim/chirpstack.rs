//! A ChirpStack v4 peer on loopback, for the `chirpstack` backend plugin:
//! the parts of its gRPC API a FUOTA server uses, served as gRPC-Web the way
//! ChirpStack serves its web UI, in front of a [`SimFleet`]. Requests are
//! decoded with `prost` (written apart from the plugin's hand-made encoder,
//! so a mistake on either side shows) and checked field by field; uplinks
//! go out as the HTTP integration's `?event=up` JSON.

use super::fleet::{GroupSessionKeys, SimFleet};
use super::uplink_pump::{post_each, PendingUplink};
use crate::engine::NetworkError;
use crate::model::Eui;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use super::listen::{self, Listen, Listening};

/// The messages of `api/multicast_group.proto` and `api/device.proto` used.
mod api {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MulticastGroup {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, tag = "3")]
        pub application_id: String,
        #[prost(int32, tag = "4")]
        pub region: i32,
        #[prost(string, tag = "5")]
        pub mc_addr: String,
        #[prost(string, tag = "6")]
        pub mc_nwk_s_key: String,
        #[prost(string, tag = "7")]
        pub mc_app_s_key: String,
        #[prost(uint32, tag = "8")]
        pub f_cnt: u32,
        #[prost(int32, tag = "9")]
        pub group_type: i32,
        #[prost(uint32, tag = "10")]
        pub dr: u32,
        #[prost(uint32, tag = "11")]
        pub frequency: u32,
        #[prost(uint32, tag = "12")]
        pub class_b_ping_slot_period: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CreateRequest {
        #[prost(message, optional, tag = "1")]
        pub multicast_group: Option<MulticastGroup>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct IdMessage {
        #[prost(string, tag = "1")]
        pub id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListRequest {
        #[prost(uint32, tag = "1")]
        pub limit: u32,
        #[prost(uint32, tag = "2")]
        pub offset: u32,
        #[prost(string, tag = "3")]
        pub search: String,
        #[prost(string, tag = "4")]
        pub application_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListItem {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(int32, tag = "5")]
        pub region: i32,
        #[prost(int32, tag = "6")]
        pub group_type: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListResponse {
        #[prost(uint32, tag = "1")]
        pub total_count: u32,
        #[prost(message, repeated, tag = "2")]
        pub result: Vec<ListItem>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AddDeviceRequest {
        #[prost(string, tag = "1")]
        pub multicast_group_id: String,
        #[prost(string, tag = "2")]
        pub dev_eui: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MulticastQueueItem {
        #[prost(string, tag = "1")]
        pub multicast_group_id: String,
        #[prost(uint32, tag = "2")]
        pub f_cnt: u32,
        #[prost(uint32, tag = "3")]
        pub f_port: u32,
        #[prost(bytes = "vec", tag = "4")]
        pub data: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MulticastEnqueueRequest {
        #[prost(message, optional, tag = "1")]
        pub queue_item: Option<MulticastQueueItem>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FCntMessage {
        #[prost(uint32, tag = "1")]
        pub f_cnt: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeviceQueueItem {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub dev_eui: String,
        #[prost(bool, tag = "3")]
        pub confirmed: bool,
        #[prost(uint32, tag = "4")]
        pub f_port: u32,
        #[prost(bytes = "vec", tag = "5")]
        pub data: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeviceEnqueueRequest {
        #[prost(message, optional, tag = "1")]
        pub queue_item: Option<DeviceQueueItem>,
    }
}

/// gRPC status codes the peer answers with.
mod code {
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const NOT_FOUND: u32 = 5;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

struct Group {
    name: String,
    application_id: String,
    keys: GroupSessionKeys,
    f_cnt: u32,
    devices: Vec<Eui>,
}

struct Shared {
    fleet: Arc<SimFleet>,
    api_token: String,
    application_id: String,
    integration_token: String,
    groups: Mutex<HashMap<String, Group>>,
    next_id: AtomicU64,
    uplink_url: Arc<Mutex<Option<String>>>,
    /// Calls answered, by gRPC status.
    statuses: Mutex<HashMap<u32, u64>>,
    /// Answer this many next calls with UNAVAILABLE.
    fail_next: AtomicU64,
    /// Devices ever added to a group (groups go at the end of a campaign).
    members_added: Mutex<std::collections::BTreeSet<Eui>>,
}

pub struct ChirpStackPeer {
    listening: Listening,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ChirpStackPeer {
    fn drop(&mut self) {
        self.listening.task.abort();
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

type GrpcResult = Result<Vec<u8>, (u32, String)>;

fn frame(flag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn invalid(why: impl Into<String>) -> (u32, String) {
    (code::INVALID_ARGUMENT, why.into())
}

fn hex_key(field: &str, text: &str) -> Result<[u8; 16], (u32, String)> {
    hex::decode(text).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| invalid(format!("{field} must be 32 hex digits")))
}

fn eui(text: &str) -> Result<Eui, (u32, String)> {
    (text.len() == 16).then(|| text.parse::<Eui>().ok()).flatten().ok_or_else(|| invalid(format!("invalid EUI '{text}'")))
}

fn decode<M: prost::Message + Default>(b: &[u8]) -> Result<M, (u32, String)> {
    M::decode(b).map_err(|e| invalid(format!("malformed request: {e}")))
}

impl Shared {
    fn new_id(&self) -> String {
        format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    fn dispatch(&self, method: &str, req: &[u8]) -> GrpcResult {
        use prost::Message;
        match method {
            "api.MulticastGroupService/Create" => {
                let g = decode::<api::CreateRequest>(req)?.multicast_group.ok_or_else(|| invalid("multicast_group is required"))?;
                if g.name.is_empty() {
                    return Err(invalid("name is required"));
                }
                if g.application_id != self.application_id {
                    return Err((code::NOT_FOUND, format!("application {} not found", g.application_id)));
                }
                if ![0, 2, 7].contains(&g.region) || !(0..=1).contains(&g.group_type) || g.dr > 15 || g.frequency == 0 || g.class_b_ping_slot_period > 7 {
                    return Err(invalid("region, group_type, dr, frequency or class_b_ping_slot_period out of range"));
                }
                let dev_addr = (g.mc_addr.len() == 8).then(|| u32::from_str_radix(&g.mc_addr, 16).ok()).flatten().ok_or_else(|| invalid("mc_addr must be 8 hex digits"))?;
                let keys = GroupSessionKeys { dev_addr, app_s_key: hex_key("mc_app_s_key", &g.mc_app_s_key)?, net_s_key: hex_key("mc_nwk_s_key", &g.mc_nwk_s_key)? };
                let id = self.new_id();
                let group = Group { name: g.name, application_id: g.application_id, keys, f_cnt: g.f_cnt, devices: vec![] };
                self.groups.lock().unwrap().insert(id.clone(), group);
                Ok(api::IdMessage { id }.encode_to_vec())
            }
            "api.MulticastGroupService/List" => {
                let r = decode::<api::ListRequest>(req)?;
                let groups = self.groups.lock().unwrap();
                let result: Vec<api::ListItem> = groups
                    .iter()
                    .filter(|(_, g)| g.application_id == r.application_id && g.name.contains(&r.search))
                    .map(|(id, g)| api::ListItem { id: id.clone(), name: g.name.clone(), region: 0, group_type: 0 })
                    .take(if r.limit == 0 { usize::MAX } else { r.limit as usize })
                    .collect();
                Ok(api::ListResponse { total_count: result.len() as u32, result }.encode_to_vec())
            }
            "api.MulticastGroupService/AddDevice" => {
                let r = decode::<api::AddDeviceRequest>(req)?;
                let dev = eui(&r.dev_eui)?;
                if self.fleet.firmware(dev).is_none() {
                    return Err((code::NOT_FOUND, format!("device {} not found", r.dev_eui)));
                }
                let mut groups = self.groups.lock().unwrap();
                let g = groups.get_mut(&r.multicast_group_id).ok_or((code::NOT_FOUND, "multicast group not found".into()))?;
                if !g.devices.contains(&dev) {
                    g.devices.push(dev);
                }
                self.members_added.lock().unwrap().insert(dev);
                Ok(vec![])
            }
            "api.MulticastGroupService/Delete" => {
                let r = decode::<api::IdMessage>(req)?;
                self.groups.lock().unwrap().remove(&r.id).ok_or((code::NOT_FOUND, "multicast group not found".into()))?;
                // The group's session is over for its devices.
                self.fleet.end_sessions();
                Ok(vec![])
            }
            "api.MulticastGroupService/Enqueue" => {
                let item = decode::<api::MulticastEnqueueRequest>(req)?.queue_item.ok_or_else(|| invalid("queue_item is required"))?;
                if item.f_port == 0 || item.f_port > 223 {
                    return Err(invalid("f_port must be 1..223"));
                }
                let (keys, f_cnt) = {
                    let mut groups = self.groups.lock().unwrap();
                    let g = groups.get_mut(&item.multicast_group_id).ok_or((code::NOT_FOUND, "multicast group not found".into()))?;
                    g.f_cnt += 1;
                    (g.keys.clone(), g.f_cnt - 1)
                };
                self.fleet.deliver_multicast(&keys, f_cnt, item.f_port as u8, &item.data);
                Ok(api::FCntMessage { f_cnt }.encode_to_vec())
            }
            "api.DeviceService/Enqueue" => {
                let item = decode::<api::DeviceEnqueueRequest>(req)?.queue_item.ok_or_else(|| invalid("queue_item is required"))?;
                if item.f_port == 0 || item.f_port > 223 {
                    return Err(invalid("f_port must be 1..223"));
                }
                self.fleet.deliver_unicast(eui(&item.dev_eui)?, item.f_port as u8, &item.data).map_err(|e| match e {
                    NetworkError::Unavailable(m) => (code::INTERNAL, m),
                    NetworkError::Refused(m) | NetworkError::Unauthorized(m) | NetworkError::Misconfigured(m) => (code::NOT_FOUND, m),
                })?;
                Ok(api::IdMessage { id: self.new_id() }.encode_to_vec())
            }
            other => Err((code::UNIMPLEMENTED, format!("unknown method {other}"))),
        }
    }
}

async fn grpc_web(State(s): State<Arc<Shared>>, Path((service, method)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/grpc-web") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "gRPC-Web only").into_response();
    }
    let authorized = headers.get(header::AUTHORIZATION).is_some_and(|v| v.as_bytes() == format!("Bearer {}", s.api_token).as_bytes());
    let result = if !authorized {
        Err((code::UNAUTHENTICATED, "invalid API token".into()))
    } else if s.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
        Err((code::UNAVAILABLE, "overloaded".into()))
    } else {
        match (body.first(), body.get(1..5).map(|l| u32::from_be_bytes(l.try_into().unwrap()) as usize)) {
            (Some(0), Some(n)) if body.len() == 5 + n => s.dispatch(&format!("{service}/{method}"), &body[5..]),
            _ => Err(invalid("the body is not one gRPC-Web data frame")),
        }
    };
    let (status, message, data) = match result {
        Ok(data) => (0, String::new(), Some(data)),
        Err((status, message)) => (status, message, None),
    };
    *s.statuses.lock().unwrap().entry(status).or_default() += 1;
    let mut out = data.map(|d| frame(0, &d)).unwrap_or_default();
    out.extend(frame(0x80, format!("grpc-status:{status}\r\ngrpc-message:{message}\r\n").as_bytes()));
    ([(header::CONTENT_TYPE, "application/grpc-web+proto")], out).into_response()
}

/// An uplink as the HTTP integration posts it: an `up` event.
fn up_event(s: &Shared, http: &reqwest::Client, url: &str, up: &PendingUplink) -> reqwest::RequestBuilder {
    let eui = up.dev_eui;
    let time = chrono::DateTime::from_timestamp_millis(up.received_ms as i64).unwrap_or_default().to_rfc3339();
    let event = serde_json::json!({
        "deduplicationId": s.new_id(),
        "time": time,
        "deviceInfo": {"tenantId": "00000000-0000-0000-0000-000000000001", "applicationId": s.application_id, "deviceName": format!("sim-{eui}"), "devEui": format!("{:016x}", eui.0), "tags": {}},
        "devAddr": format!("{:08x}", eui.0 as u32),
        "adr": true, "dr": 5, "fCnt": up.fcnt, "fPort": up.fport, "confirmed": false,
        "data": base64::engine::general_purpose::STANDARD.encode(&up.payload),
        "rxInfo": [{"gatewayId": "0016c001ff10a235", "rssi": -92, "snr": 7.5}],
        "txInfo": {"frequency": 868_100_000, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}}
    });
    http.post(format!("{url}?event=up")).bearer_auth(&s.integration_token).json(&event)
}

impl ChirpStackPeer {
    /// Serve ChirpStack's API for one application on `bind` (loopback).
    pub async fn start(fleet: Arc<SimFleet>, listen: Listen, api_token: &str, application_id: &str, integration_token: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            fleet,
            api_token: api_token.into(),
            application_id: application_id.into(),
            integration_token: integration_token.into(),
            groups: Default::default(),
            next_id: AtomicU64::new(1),
            uplink_url: Default::default(),
            statuses: Default::default(),
            fail_next: AtomicU64::new(0),
            members_added: Default::default(),
        });
        let app = Router::new().route("/{service}/{method}", post(grpc_web)).with_state(shared.clone());
        let listening = listen::serve(app, listen, "ChirpStack peer").await?;
        let peer = shared.clone();
        let pump = tokio::spawn(post_each(shared.fleet.clone(), shared.uplink_url.clone(), move |http, url, up| up_event(&peer, http, url, up)));
        Ok(Self { listening, shared, tasks: vec![pump] })
    }

    pub fn url(&self) -> String {
        self.listening.url()
    }

    /// Where the HTTP integration posts: the host's `/backends/{id}/uplink`.
    pub fn post_uplinks_to(&self, url: &str) {
        *self.shared.uplink_url.lock().unwrap() = Some(url.to_string());
    }

    /// Answer the next `n` calls with UNAVAILABLE.
    pub fn fail_next(&self, n: u64) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Calls answered so far, by gRPC status.
    pub fn statuses(&self) -> HashMap<u32, u64> {
        self.shared.statuses.lock().unwrap().clone()
    }

    /// Devices ever added to a multicast group.
    pub fn members_added(&self) -> Vec<Eui> {
        self.shared.members_added.lock().unwrap().iter().copied().collect()
    }

    /// Multicast groups that exist now.
    pub fn group_count(&self) -> usize {
        self.shared.groups.lock().unwrap().len()
    }
}
