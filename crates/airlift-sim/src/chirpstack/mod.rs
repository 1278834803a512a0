//! A ChirpStack v4 peer on loopback, for the `chirpstack` backend plugin:
//! the parts of its gRPC API a FUOTA server uses, served as gRPC-Web the way
//! ChirpStack serves its web UI, in front of a [`SimFleet`]. Every request
//! and answer goes through ChirpStack's own published `.proto` definitions
//! ([`proto`]); what the server does with them follows its source, as
//! `docs/networks/chirpstack.md` records (the status codes, the multicast
//! gateway choice, the queue). Uplinks go out as the HTTP integration's
//! `?event=up`, in JSON or protobuf as the integration is configured.

pub mod proto;

use crate::fleet::{GroupSessionKeys, SimFleet};
use crate::listen::{self, Listen, Listening};
use crate::uplink_pump::{post_each, PendingUplink};
use airlift::model::Eui;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use proto::{api, common, gw, integration};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// gRPC status codes ChirpStack answers with.
mod code {
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const NOT_FOUND: u32 = 5;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// How the HTTP integration encodes events (`HttpIntegration.encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventEncoding {
    Json,
    Protobuf,
}

/// A gateway the peer knows, and whether it sends stats (is online).
#[derive(Debug, Clone)]
pub struct PeerGateway {
    pub id: String,
    pub online: bool,
}

/// Seconds between a gateway's stats packets; offline after twice that
/// without one (`api/gateway.rs`).
const STATS_INTERVAL_S: u32 = 30;

struct Group {
    group: api::MulticastGroup,
    devices: BTreeSet<Eui>,
    gateways: BTreeSet<String>,
}

struct Shared {
    fleet: Arc<SimFleet>,
    api_token: String,
    application_id: String,
    integration_token: String,
    encoding: Mutex<EventEncoding>,
    gateways: Mutex<Vec<PeerGateway>>,
    /// The gateway that heard each device's latest uplink (ChirpStack's
    /// `gateway_rx_info_history`).
    heard_by: Mutex<HashMap<Eui, String>>,
    groups: Mutex<HashMap<String, Group>>,
    /// How many items each device's downlink queue holds: an item waits
    /// there until the device's next uplink opens its receive windows.
    device_queues: Mutex<HashMap<Eui, usize>>,
    /// Deepest any device's queue has been.
    deepest_queue: AtomicUsize,
    /// Multicast items enqueued (answered OK) that no gateway could send.
    multicast_unsent: AtomicU64,
    next_id: AtomicU64,
    uplink_url: Arc<Mutex<Option<String>>>,
    /// The devices this network hears (None: the whole fleet).
    coverage: crate::uplink_pump::Coverage,
    /// Calls answered, by gRPC status.
    statuses: Mutex<HashMap<u32, u64>>,
    /// Answer this many next calls with UNAVAILABLE.
    fail_next: AtomicU64,
    /// Devices ever added to a group (groups go at the end of a campaign).
    members_added: Mutex<BTreeSet<Eui>>,
    /// Every group as last created or updated, by name.
    group_history: Mutex<BTreeMap<String, api::MulticastGroup>>,
    /// (group name, gateway) for every gateway ever added to a group.
    gateways_added: Mutex<BTreeSet<(String, String)>>,
    /// Devices of the fleet that were never registered in ChirpStack.
    unregistered: Mutex<BTreeSet<Eui>>,
    groups_created: AtomicU64,
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

/// What ChirpStack's storage layer says for a row that is not there.
fn not_found(id: &str) -> (u32, String) {
    (code::NOT_FOUND, format!("Object does not exist (id: {id})"))
}

/// Any database error other than "not found" (foreign key, primary key)
/// and any error of the flow code: INTERNAL (`api/error.rs`).
fn internal(why: impl Into<String>) -> (u32, String) {
    (code::INTERNAL, why.into())
}

/// lrwn's hex parsing: empty is all zeros, anything else must be exact.
fn hex_bytes<const N: usize>(field: &str, text: &str) -> Result<[u8; N], (u32, String)> {
    if text.is_empty() {
        return Ok([0; N]);
    }
    hex::decode(text).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| internal(format!("{field}: invalid hex of {N} bytes")))
}

fn eui(text: &str) -> Result<Eui, (u32, String)> {
    let bytes = hex_bytes::<8>("dev_eui", text)?;
    Ok(Eui(u64::from_be_bytes(bytes)))
}

fn decode<M: prost::Message + Default>(b: &[u8]) -> Result<M, (u32, String)> {
    M::decode(b).map_err(|e| invalid(format!("malformed request: {e}")))
}

fn encode(m: &impl prost::Message) -> GrpcResult {
    Ok(m.encode_to_vec())
}

fn uuid_like(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]) && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn timestamp(ms: u64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp { seconds: (ms / 1000) as i64, nanos: (ms % 1000) as i32 * 1_000_000 }
}

/// Rows after `offset`, at most `limit`; ChirpStack's `LIMIT 0` returns none.
fn page<T>(items: Vec<T>, limit: u32, offset: u32) -> Vec<T> {
    items.into_iter().skip(offset as usize).take(limit as usize).collect()
}

impl Shared {
    fn new_id(&self) -> String {
        format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), self.next_id.fetch_add(1, Ordering::SeqCst))
    }

    fn has_device(&self, dev: Eui) -> bool {
        self.fleet.firmware(dev).is_some() && !self.unregistered.lock().unwrap().contains(&dev)
    }

    fn gateway_online(&self, id: &str) -> bool {
        self.gateways.lock().unwrap().iter().any(|g| g.id == id && g.online)
    }

    /// A gateway's last stats packet, as the fleet's clock sees it.
    fn last_seen(&self, g: &PeerGateway) -> u64 {
        let now = self.fleet.now_unix_ms();
        if g.online { now.saturating_sub(10_000) } else { now.saturating_sub(3_600_000) }
    }

    fn dispatch(&self, method: &str, req: &[u8]) -> GrpcResult {
        match method {
            "api.MulticastGroupService/Create" => {
                let mut g = decode::<api::CreateMulticastGroupRequest>(req)?.multicast_group.ok_or_else(|| invalid("multicast_group is missing"))?;
                if !uuid_like(&g.application_id) {
                    return Err(invalid("invalid application_id"));
                }
                if g.name.is_empty() {
                    return Err(invalid("Validation error: name is not set"));
                }
                self.check_group_hex(&g)?;
                if g.application_id != self.application_id {
                    return Err(internal("insert or update on table \"multicast_group\" violates foreign key constraint"));
                }
                g.id = self.new_id();
                self.groups_created.fetch_add(1, Ordering::SeqCst);
                self.group_history.lock().unwrap().insert(g.name.clone(), g.clone());
                let id = g.id.clone();
                self.groups.lock().unwrap().insert(id.clone(), Group { group: g, devices: BTreeSet::new(), gateways: BTreeSet::new() });
                encode(&api::CreateMulticastGroupResponse { id })
            }
            "api.MulticastGroupService/Get" => {
                let r = decode::<api::GetMulticastGroupRequest>(req)?;
                let groups = self.groups.lock().unwrap();
                let g = groups.get(&r.id).ok_or_else(|| not_found(&r.id))?;
                encode(&api::GetMulticastGroupResponse { multicast_group: Some(g.group.clone()), created_at: None, updated_at: None })
            }
            "api.MulticastGroupService/Update" => {
                let g = decode::<api::UpdateMulticastGroupRequest>(req)?.multicast_group.ok_or_else(|| invalid("multicast_group is missing"))?;
                if g.name.is_empty() {
                    return Err(invalid("Validation error: name is not set"));
                }
                self.check_group_hex(&g)?;
                let mut groups = self.groups.lock().unwrap();
                let stored = groups.get_mut(&g.id).ok_or_else(|| not_found(&g.id))?;
                // Every field is overwritten, the frame counter included.
                stored.group = api::MulticastGroup { application_id: stored.group.application_id.clone(), ..g };
                self.group_history.lock().unwrap().insert(stored.group.name.clone(), stored.group.clone());
                encode(&())
            }
            "api.MulticastGroupService/Delete" => {
                let r = decode::<api::DeleteMulticastGroupRequest>(req)?;
                let removed = self.groups.lock().unwrap().remove(&r.id).ok_or_else(|| not_found(&r.id))?;
                // The group's session is over for its devices.
                self.fleet.end_sessions(u32::from_str_radix(&removed.group.mc_addr, 16).unwrap_or(0));
                encode(&())
            }
            "api.MulticastGroupService/List" => {
                let r = decode::<api::ListMulticastGroupsRequest>(req)?;
                let groups = self.groups.lock().unwrap();
                let search = r.search.to_lowercase();
                let mut matching: Vec<api::MulticastGroupListItem> = groups
                    .values()
                    .filter(|g| (r.application_id.is_empty() || g.group.application_id == r.application_id) && g.group.name.to_lowercase().contains(&search))
                    .filter(|g| r.dev_eui.is_empty() || eui(&r.dev_eui).is_ok_and(|d| g.devices.contains(&d)))
                    .map(|g| api::MulticastGroupListItem {
                        id: g.group.id.clone(),
                        name: g.group.name.clone(),
                        region: g.group.region,
                        group_type: g.group.group_type,
                        application_id: g.group.application_id.clone(),
                        ..Default::default()
                    })
                    .collect();
                matching.sort_by(|a, b| a.name.cmp(&b.name));
                let total_count = matching.len() as u32;
                encode(&api::ListMulticastGroupsResponse { total_count, result: page(matching, r.limit, r.offset) })
            }
            "api.MulticastGroupService/AddDevice" => {
                let r = decode::<api::AddDeviceToMulticastGroupRequest>(req)?;
                let dev = eui(&r.dev_eui)?;
                if !self.has_device(dev) {
                    return Err(not_found(&r.dev_eui));
                }
                let mut groups = self.groups.lock().unwrap();
                let g = groups.get_mut(&r.multicast_group_id).ok_or_else(|| not_found(&r.multicast_group_id))?;
                if !g.devices.insert(dev) {
                    return Err(internal("duplicate key value violates unique constraint \"multicast_group_device_pkey\""));
                }
                self.members_added.lock().unwrap().insert(dev);
                encode(&())
            }
            "api.MulticastGroupService/AddGateway" => {
                let r = decode::<api::AddGatewayToMulticastGroupRequest>(req)?;
                if !self.gateways.lock().unwrap().iter().any(|g| g.id == r.gateway_id) {
                    return Err(not_found(&r.gateway_id));
                }
                let mut groups = self.groups.lock().unwrap();
                let g = groups.get_mut(&r.multicast_group_id).ok_or_else(|| not_found(&r.multicast_group_id))?;
                if !g.gateways.insert(r.gateway_id.clone()) {
                    return Err(internal("duplicate key value violates unique constraint \"multicast_group_gateway_pkey\""));
                }
                self.gateways_added.lock().unwrap().insert((g.group.name.clone(), r.gateway_id));
                encode(&())
            }
            "api.MulticastGroupService/FlushQueue" => encode(&()),
            "api.MulticastGroupService/Enqueue" => {
                let item = decode::<api::EnqueueMulticastGroupQueueItemRequest>(req)?.queue_item.ok_or_else(|| invalid("queue_item is missing"))?;
                // downlink::multicast::enqueue returns anyhow: INTERNAL.
                if !(1..=255).contains(&item.f_port) {
                    return Err(internal("Validation error: FPort must be between 1 - 255"));
                }
                let (keys, f_cnt, gateways) = {
                    let mut groups = self.groups.lock().unwrap();
                    let g = groups.get_mut(&item.multicast_group_id).ok_or_else(|| internal(format!("Object does not exist (id: {})", item.multicast_group_id)))?;
                    let f_cnt = g.group.f_cnt;
                    g.group.f_cnt += 1;
                    let keys = GroupSessionKeys {
                        dev_addr: u32::from_be_bytes(hex_bytes::<4>("mc_addr", &g.group.mc_addr)?),
                        app_s_key: hex_bytes::<16>("mc_app_s_key", &g.group.mc_app_s_key)?,
                        net_s_key: hex_bytes::<16>("mc_nwk_s_key", &g.group.mc_nwk_s_key)?,
                    };
                    // The gateways added to the group; else those that
                    // heard its devices (downlink/multicast.rs).
                    let gateways: BTreeSet<String> = if g.gateways.is_empty() {
                        let heard = self.heard_by.lock().unwrap();
                        g.devices.iter().filter_map(|d| heard.get(d).cloned()).collect()
                    } else {
                        g.gateways.clone()
                    };
                    (keys, f_cnt, gateways)
                };
                // The scheduler sends only through gateways that are online;
                // with none, the item is accepted and never transmitted.
                if gateways.iter().any(|g| self.gateway_online(g)) {
                    self.fleet.deliver_multicast(&keys, f_cnt, item.f_port as u8, &item.data);
                } else {
                    self.multicast_unsent.fetch_add(1, Ordering::SeqCst);
                }
                encode(&api::EnqueueMulticastGroupQueueItemResponse { f_cnt })
            }
            "api.DeviceService/Get" => {
                let r = decode::<api::GetDeviceRequest>(req)?;
                let dev = eui(&r.dev_eui)?;
                if !self.has_device(dev) {
                    return Err(not_found(&r.dev_eui));
                }
                let device = api::Device { dev_eui: r.dev_eui, name: format!("sim-{dev}"), application_id: self.application_id.clone(), ..Default::default() };
                encode(&api::GetDeviceResponse { device: Some(device), ..Default::default() })
            }
            "api.DeviceService/List" => {
                let r = decode::<api::ListDevicesRequest>(req)?;
                let members: Vec<Eui> = if r.multicast_group_id.is_empty() {
                    vec![]
                } else {
                    self.groups.lock().unwrap().get(&r.multicast_group_id).map(|g| g.devices.iter().copied().collect()).unwrap_or_default()
                };
                let items: Vec<api::DeviceListItem> =
                    members.iter().map(|d| api::DeviceListItem { dev_eui: format!("{:016x}", d.0), name: format!("sim-{d}"), ..Default::default() }).collect();
                let total_count = items.len() as u32;
                encode(&api::ListDevicesResponse { total_count, result: page(items, r.limit, r.offset) })
            }
            "api.DeviceService/Enqueue" => {
                let r = decode::<api::EnqueueDeviceQueueItemRequest>(req)?;
                let item = r.queue_item.ok_or_else(|| invalid("queue_item is missing"))?;
                if !(1..=255).contains(&item.f_port) {
                    return Err(invalid("Validation error: FPort must be between 1 - 255"));
                }
                let dev = eui(&item.dev_eui)?;
                // No existence check: the INSERT fails on its foreign key.
                if !self.has_device(dev) {
                    return Err(internal("insert or update on table \"device_queue_item\" violates foreign key constraint \"device_queue_item_dev_eui_fkey\""));
                }
                {
                    let mut queues = self.device_queues.lock().unwrap();
                    let queued = queues.entry(dev).or_default();
                    *queued = if r.flush_queue { 1 } else { *queued + 1 };
                    self.deepest_queue.fetch_max(*queued, Ordering::SeqCst);
                }
                // The fleet models the radio (class C listening, loss).
                let _ = self.fleet.deliver_unicast(dev, item.f_port as u8, &item.data);
                encode(&api::EnqueueDeviceQueueItemResponse { id: self.new_id() })
            }
            "api.DeviceService/FlushQueue" => {
                let r = decode::<api::FlushDeviceQueueRequest>(req)?;
                if let Ok(dev) = eui(&r.dev_eui) {
                    self.device_queues.lock().unwrap().remove(&dev);
                }
                encode(&())
            }
            "api.GatewayService/Get" => {
                let r = decode::<api::GetGatewayRequest>(req)?;
                let gateways = self.gateways.lock().unwrap();
                let g = gateways.iter().find(|g| g.id == r.gateway_id).ok_or_else(|| not_found(&r.gateway_id))?;
                let gateway = api::Gateway { gateway_id: g.id.clone(), name: g.id.clone(), stats_interval: STATS_INTERVAL_S, ..Default::default() };
                encode(&api::GetGatewayResponse { gateway: Some(gateway), last_seen_at: Some(timestamp(self.last_seen(g))), ..Default::default() })
            }
            "api.GatewayService/List" => {
                let r = decode::<api::ListGatewaysRequest>(req)?;
                let in_group: Option<BTreeSet<String>> = (!r.multicast_group_id.is_empty())
                    .then(|| self.groups.lock().unwrap().get(&r.multicast_group_id).map(|g| g.gateways.clone()).unwrap_or_default());
                let gateways = self.gateways.lock().unwrap();
                let items: Vec<api::GatewayListItem> = gateways
                    .iter()
                    .filter(|g| in_group.as_ref().is_none_or(|ids| ids.contains(&g.id)))
                    .map(|g| api::GatewayListItem {
                        gateway_id: g.id.clone(),
                        name: g.id.clone(),
                        last_seen_at: Some(timestamp(self.last_seen(g))),
                        state: if g.online { api::GatewayState::Online } else { api::GatewayState::Offline } as i32,
                        ..Default::default()
                    })
                    .collect();
                let total_count = items.len() as u32;
                encode(&api::ListGatewaysResponse { total_count, result: page(items, r.limit, r.offset) })
            }
            other => Err((code::UNIMPLEMENTED, format!("unknown method {other}"))),
        }
    }

    /// lrwn parses the group's hex fields on create and update (INTERNAL).
    fn check_group_hex(&self, g: &api::MulticastGroup) -> Result<(), (u32, String)> {
        hex_bytes::<4>("mc_addr", &g.mc_addr)?;
        hex_bytes::<16>("mc_nwk_s_key", &g.mc_nwk_s_key)?;
        hex_bytes::<16>("mc_app_s_key", &g.mc_app_s_key)?;
        Ok(())
    }
}

/// Characters tonic percent-encodes in `grpc-message` (`status.rs`).
fn percent_encode(message: &str) -> String {
    let mut out = String::new();
    for b in message.bytes() {
        if b < 0x20 || b >= 0x7f || b" \"#%<>`?{}".contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

async fn grpc_web(State(s): State<Arc<Shared>>, Path((service, method)): Path<(String, String)>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/grpc-web") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "gRPC-Web only").into_response();
    }
    // grpc-web-text: the frames in base64, both ways.
    let text = content_type.starts_with("application/grpc-web-text");
    let body = if text { base64::engine::general_purpose::STANDARD.decode(&body).unwrap_or_default() } else { body.to_vec() };
    let result = match headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) {
        None => Err((code::UNAUTHENTICATED, "no authorization provided".into())),
        Some(v) if !v.starts_with(b"Bearer ") => Err((code::UNAUTHENTICATED, "authorization metadata must be in format 'Bearer <TOKEN>'".into())),
        // The key is not in the database: no message (validator.rs).
        Some(v) if v != format!("Bearer {}", s.api_token).as_bytes() => Err((code::UNAUTHENTICATED, String::new())),
        Some(_) if s.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() => Err((code::UNAVAILABLE, "overloaded".into())),
        Some(_) => match (body.first(), body.get(1..5).map(|l| u32::from_be_bytes(l.try_into().unwrap()) as usize)) {
            (Some(0), Some(n)) if body.len() == 5 + n => s.dispatch(&format!("{service}/{method}"), &body[5..]),
            _ => Err(invalid("the body is not one gRPC-Web data frame")),
        },
    };
    let status = result.as_ref().err().map_or(0, |(code, _)| *code);
    *s.statuses.lock().unwrap().entry(status).or_default() += 1;
    let response_type = if text { "application/grpc-web-text+proto" } else { "application/grpc-web+proto" };
    match result {
        Ok(data) => {
            let mut out = frame(0, &data);
            out.extend(frame(0x80, b"grpc-status:0\r\n"));
            let out = if text { base64::engine::general_purpose::STANDARD.encode(out).into_bytes() } else { out };
            ([(header::CONTENT_TYPE, response_type)], out).into_response()
        }
        // tonic answers a unary error "trailers-only": the status in the
        // HTTP headers and an empty body.
        Err((status, message)) => {
            let mut response = ([(header::CONTENT_TYPE, response_type)], Vec::new()).into_response();
            let h = response.headers_mut();
            h.insert(HeaderName::from_static("grpc-status"), HeaderValue::from(status));
            if !message.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&percent_encode(&message)) {
                    h.insert(HeaderName::from_static("grpc-message"), v);
                }
            }
            response
        }
    }
}

/// An uplink as the HTTP integration posts it: an `up` event, with the
/// header the operator configured (our bearer token).
fn up_event(s: &Shared, http: &reqwest::Client, url: &str, up: &PendingUplink) -> reqwest::RequestBuilder {
    let eui = up.dev_eui;
    let gateway_id = s.gateways.lock().unwrap().iter().find(|g| g.online).map(|g| g.id.clone()).unwrap_or_default();
    // ChirpStack transmits one queued item in the receive windows this
    // uplink opens, and remembers which gateway heard the device.
    if let Some(queued) = s.device_queues.lock().unwrap().get_mut(&eui) {
        *queued = queued.saturating_sub(1);
    }
    s.heard_by.lock().unwrap().insert(eui, gateway_id.clone());
    let event = integration::UplinkEvent {
        deduplication_id: s.new_id(),
        time: Some(timestamp(up.received_ms)),
        device_info: Some(integration::DeviceInfo {
            tenant_id: "52f14cd4-c6f1-4fbd-8f87-4025e1d49242".into(),
            tenant_name: "ChirpStack".into(),
            application_id: s.application_id.clone(),
            application_name: "fleet".into(),
            device_name: format!("sim-{eui}"),
            dev_eui: format!("{:016x}", eui.0),
            device_class_enabled: common::DeviceClass::ClassC as i32,
            ..Default::default()
        }),
        dev_addr: format!("{:08x}", eui.0 as u32),
        adr: true,
        dr: 5,
        f_cnt: up.fcnt,
        f_port: up.fport as u32,
        data: up.payload.clone(),
        rx_info: vec![gw::UplinkRxInfo { gateway_id, rssi: -92, snr: 7.5, crc_status: gw::CrcStatus::CrcOk as i32, ..Default::default() }],
        ..Default::default()
    };
    post_event(s, http, url, "up", &event)
}

/// Post one integration event as the integration is configured.
fn post_event(s: &Shared, http: &reqwest::Client, url: &str, kind: &str, event: &(impl prost::Message + serde::Serialize)) -> reqwest::RequestBuilder {
    let request = http.post(url).query(&[("event", kind)]).bearer_auth(&s.integration_token);
    match *s.encoding.lock().unwrap() {
        EventEncoding::Json => request.header(header::CONTENT_TYPE, "application/json").body(serde_json::to_vec(event).unwrap_or_default()),
        EventEncoding::Protobuf => request.header(header::CONTENT_TYPE, "application/octet-stream").body(event.encode_to_vec()),
    }
}

impl ChirpStackPeer {
    /// The gateway every device is heard through.
    pub const GATEWAY: &'static str = "0016c001ff10a235";

    /// Serve ChirpStack's API for one application (loopback), with one
    /// gateway online ([`Self::GATEWAY`]) that hears every device.
    pub async fn start(fleet: Arc<SimFleet>, listen: Listen, api_token: &str, application_id: &str, integration_token: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            fleet,
            api_token: api_token.into(),
            application_id: application_id.into(),
            integration_token: integration_token.into(),
            encoding: Mutex::new(EventEncoding::Json),
            gateways: Mutex::new(vec![PeerGateway { id: Self::GATEWAY.into(), online: true }]),
            heard_by: Default::default(),
            groups: Default::default(),
            device_queues: Default::default(),
            deepest_queue: AtomicUsize::new(0),
            multicast_unsent: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            uplink_url: Default::default(),
            coverage: Default::default(),
            statuses: Default::default(),
            fail_next: AtomicU64::new(0),
            members_added: Default::default(),
            group_history: Default::default(),
            gateways_added: Default::default(),
            unregistered: Default::default(),
            groups_created: AtomicU64::new(0),
        });
        let app = Router::new().route("/{service}/{method}", post(grpc_web)).with_state(shared.clone());
        let listening = listen::serve(app, listen, "ChirpStack peer").await?;
        let peer = shared.clone();
        let pump = tokio::spawn(post_each(shared.fleet.clone(), shared.uplink_url.clone(), shared.coverage.clone(), move |http, url, up| up_event(&peer, http, url, up)));
        Ok(Self { listening, shared, tasks: vec![pump] })
    }

    pub fn url(&self) -> String {
        self.listening.url()
    }

    /// Where the HTTP integration posts: the host's `/backends/{id}/uplink`.
    pub fn post_uplinks_to(&self, url: &str) {
        *self.shared.uplink_url.lock().unwrap() = Some(url.to_string());
    }

    /// Hear only these devices' uplinks: the rest of the fleet is behind
    /// another network.
    pub fn covers(&self, devices: impl IntoIterator<Item = Eui>) {
        *self.shared.coverage.lock().unwrap() = Some(devices.into_iter().collect());
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

    /// Encode integration events this way from now on.
    pub fn set_event_encoding(&self, encoding: EventEncoding) {
        *self.shared.encoding.lock().unwrap() = encoding;
    }

    /// Replace the gateways ChirpStack knows.
    pub fn set_gateways(&self, gateways: Vec<PeerGateway>) {
        *self.shared.gateways.lock().unwrap() = gateways;
    }

    /// A group as last created or updated, by name.
    pub fn group_as_configured(&self, name: &str) -> Option<api::MulticastGroup> {
        self.shared.group_history.lock().unwrap().get(name).cloned()
    }

    /// (group name, gateway) for every gateway ever added to a group.
    pub fn gateways_added(&self) -> BTreeSet<(String, String)> {
        self.shared.gateways_added.lock().unwrap().clone()
    }

    /// This device of the fleet was never registered in ChirpStack.
    pub fn unregister(&self, dev_eui: Eui) {
        self.shared.unregistered.lock().unwrap().insert(dev_eui);
    }

    /// Make a group exist already, as an earlier run might have left it.
    pub fn preload_group(&self, group: api::MulticastGroup) {
        let mut group = api::MulticastGroup { id: self.shared.new_id(), application_id: self.shared.application_id.clone(), ..group };
        group.application_id = self.shared.application_id.clone();
        self.shared.groups.lock().unwrap().insert(group.id.clone(), Group { group, devices: BTreeSet::new(), gateways: BTreeSet::new() });
    }

    /// Delete every group, as an operator might by hand.
    pub fn delete_groups(&self) {
        self.shared.groups.lock().unwrap().clear();
    }

    /// Groups created so far.
    pub fn groups_created(&self) -> u64 {
        self.shared.groups_created.load(Ordering::SeqCst)
    }

    /// The deepest any device's downlink queue has been.
    pub fn deepest_device_queue(&self) -> usize {
        self.shared.deepest_queue.load(Ordering::SeqCst)
    }

    /// Multicast items ChirpStack accepted but had no gateway to send with.
    pub fn multicast_unsent(&self) -> u64 {
        self.shared.multicast_unsent.load(Ordering::SeqCst)
    }

    /// Post a data uplink that carries only MAC commands (`fPort` 0, no
    /// data), as ChirpStack posts every data uplink.
    pub async fn post_mac_only_uplink(&self, dev_eui: Eui) -> reqwest::Result<reqwest::StatusCode> {
        let url = self.shared.uplink_url.lock().unwrap().clone().unwrap_or_default();
        let up = PendingUplink { dev_eui, fport: 0, payload: vec![], received_ms: self.shared.fleet.now_unix_ms(), fcnt: 0 };
        Ok(up_event(&self.shared, &reqwest::Client::new(), &url, &up).send().await?.status())
    }
}
