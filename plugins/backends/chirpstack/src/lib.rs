//! Backend for ChirpStack v4.
//!
//! ChirpStack's API is gRPC. A sandboxed plugin has only the host's HTTP
//! import (HTTP/1.1 request in, response out), so it speaks **gRPC-Web**,
//! which ChirpStack serves on its API port for its own web UI: each call is
//! `POST {url}/api.{Service}/{Method}` with `content-type:
//! application/grpc-web+proto`, the protobuf request in one length-prefixed
//! frame, and the answer as a data frame plus a trailer frame carrying
//! `grpc-status`. The few messages needed are encoded here by hand
//! (`proto`), which keeps the plugin free of code generation.
//!
//! - groups: `MulticastGroupService.Create` (class B/C, McAddr, the session
//!   keys from the host key service, DR, frequency, ping-slot period), then
//!   `AddDevice` per device; `Delete` at the end;
//! - downlinks: `DeviceService.Enqueue`, `MulticastGroupService.Enqueue`;
//! - uplinks: the HTTP integration posts `?event=up` JSON with a header the
//!   operator configures, `Authorization: Bearer <integration_token>`.
//!
//! Settings: `url`, `application_id`. Secrets: `api_token` (ChirpStack API
//! key), `integration_token`.

use airlift_plugin_sdk::backend::{airlift, exports};
use airlift_plugin_sdk::backend_support::*;
#[allow(unused_imports)]
use airlift_plugin_sdk::hex::*;

use airlift::plugin::keys;
use airlift::plugin::types::{IsmBand, MulticastGroup, SessionClass};
use exports::airlift::plugin::backend::*;
use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use serde_json::Value;
use sha2::{Digest, Sha256};

struct ChirpStack;
airlift_plugin_sdk::backend::export!(ChirpStack);

const API_TOKEN: &str = "api_token";
const INTEGRATION_TOKEN: &str = "integration_token";

/// Protobuf wire format, just what these messages need.
mod proto {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A varint field (skipped when zero, as proto3 does).
    pub fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
        if v != 0 {
            varint(out, (field as u64) << 3);
            varint(out, v);
        }
    }

    /// A length-delimited field: string, bytes or an embedded message.
    pub fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        if !b.is_empty() {
            varint(out, (field as u64) << 3 | 2);
            varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
    }

    /// Fields of a message: (number, varint value or bytes).
    pub fn fields(mut b: &[u8]) -> Option<Vec<(u32, Result<u64, Vec<u8>>)>> {
        fn read(b: &mut &[u8]) -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let (&byte, rest) = b.split_first()?;
                *b = rest;
                v |= ((byte & 0x7f) as u64) << shift;
                if byte & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = read(&mut b)?;
            let field = (key >> 3) as u32;
            match key & 7 {
                0 => out.push((field, Ok(read(&mut b)?))),
                2 => {
                    let n = read(&mut b)? as usize;
                    let (value, rest) = (b.get(..n)?, b.get(n..)?);
                    out.push((field, Err(value.to_vec())));
                    b = rest;
                }
                _ => return None,
            }
        }
        Some(out)
    }
}

/// A gRPC status in a trailer block (`grpc-status: N`).
fn grpc_status(block: &str) -> Option<(u32, String)> {
    let mut status = None;
    let mut message = String::new();
    for line in block.split("\r\n") {
        match line.split_once(':') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("grpc-status") => status = v.trim().parse().ok(),
            Some((k, v)) if k.trim().eq_ignore_ascii_case("grpc-message") => message = v.trim().to_string(),
            _ => {}
        }
    }
    status.map(|s| (s, message))
}

/// Call one gRPC method through gRPC-Web; returns the response message.
fn call(inst: &Instance, method: &str, request: &[u8]) -> Result<Vec<u8>, BackendError> {
    let mut body = vec![0u8];
    body.extend_from_slice(&(request.len() as u32).to_be_bytes());
    body.extend_from_slice(request);
    let headers = vec![
        header("content-type", "application/grpc-web+proto"),
        header("x-grpc-web", "1"),
        header("authorization", &format!("Bearer {{{{secret:{API_TOKEN}}}}}")),
    ];
    let resp = send("POST", format!("{}/{method}", base_url(inst)?), headers, body)?;
    // Frames: a data frame (flag 0) and a trailer frame (flag 0x80); a
    // trailers-only answer puts the status in the HTTP headers instead.
    let mut message = Vec::new();
    let mut status = resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case("grpc-status")).and_then(|h| {
        let m = resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case("grpc-message")).map(|h| h.value.clone()).unwrap_or_default();
        h.value.trim().parse::<u32>().ok().map(|s| (s, m))
    });
    let mut b = resp.body.as_slice();
    while b.len() >= 5 {
        let flag = b[0];
        let n = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        let frame = b.get(5..5 + n).ok_or_else(|| BackendError::Unavailable(format!("{method}: truncated gRPC-Web frame")))?;
        if flag & 0x80 != 0 {
            status = grpc_status(&String::from_utf8_lossy(frame)).or(status);
        } else {
            message = frame.to_vec();
        }
        b = &b[5 + n..];
    }
    match status {
        Some((0, _)) => Ok(message),
        // UNAUTHENTICATED, PERMISSION_DENIED
        Some((16 | 7, m)) => Err(BackendError::Unauthorized(format!("{method}: gRPC status 16/7: {m}"))),
        // UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL
        Some((s @ (14 | 4 | 8 | 13), m)) => Err(BackendError::Unavailable(format!("{method}: gRPC status {s}: {m}"))),
        Some((s, m)) => Err(BackendError::Rejected(format!("{method}: gRPC status {s}: {m}"))),
        None => Err(BackendError::Unavailable(format!("{method}: no grpc-status in the answer"))),
    }
}

/// ChirpStack's common.Region for a band.
fn region(band: IsmBand) -> u64 {
    match band {
        IsmBand::Eu868 => 0,
        IsmBand::Us915 => 2,
        IsmBand::As923 => 7,
    }
}

/// Our groups are named after their DevEUI: ChirpStack gives a group a
/// UUID of its own, and a stateless plugin finds it again by name.
fn group_name(group_eui: u64) -> String {
    format!("airlift-{group_eui:016x}")
}

/// The UUID of our group in the application, if it exists.
fn find_group(inst: &Instance, group_eui: u64) -> Result<Option<String>, BackendError> {
    let name = group_name(group_eui);
    let mut req = Vec::new();
    proto::uint(&mut req, 1, 10);
    proto::bytes(&mut req, 3, name.as_bytes());
    proto::bytes(&mut req, 4, setting(inst, "application_id")?.as_bytes());
    let resp = call(inst, "api.MulticastGroupService/List", &req)?;
    let bad = || BackendError::Unavailable("List: malformed answer".into());
    for (n, item) in proto::fields(&resp).ok_or_else(bad)? {
        let (2, Err(item)) = (n, item) else { continue };
        let fields = proto::fields(&item).ok_or_else(bad)?;
        let text = |want: u32| fields.iter().find_map(|(n, v)| match v {
            Err(b) if *n == want => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        });
        if text(4).as_deref() == Some(name.as_str()) {
            return Ok(text(1));
        }
    }
    Ok(None)
}

fn require_group(inst: &Instance, group_eui: u64) -> Result<String, BackendError> {
    find_group(inst, group_eui)?.ok_or_else(|| BackendError::Rejected(format!("no multicast group {} in the application", group_name(group_eui))))
}

fn eui_field(eui: u64) -> String {
    format!("{eui:016x}")
}

impl Guest for ChirpStack {
    fn describe() -> BackendInfo {
        BackendInfo {
            name: "chirpstack".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "ChirpStack v4 through gRPC-Web".into(),
            capabilities: Capabilities {
                unicast: true,
                multicast_class_b: true,
                multicast_class_c: true,
                offload: false,
                // ChirpStack spaces a group's multicast downlinks 5 s apart by default.
                multicast_interval_ms: 5000,
                unicast_interval_ms: 1000,
            },
        }
    }

    fn validate(inst: Instance) -> Result<(), BackendError> {
        base_url(&inst)?;
        setting(&inst, "application_id")?;
        require_secret(&inst, API_TOKEN)?;
        require_secret(&inst, INTEGRATION_TOKEN)
    }

    fn create_multicast_group(inst: Instance, group: MulticastGroup, devices: Vec<u64>) -> Result<(), BackendError> {
        let (app_s_key, nwk_s_key) = keys::multicast_session_keys(group.group_eui).map_err(|e| BackendError::Invalid(format!("session keys: {e:?}")))?;
        let id = match find_group(&inst, group.group_eui)? {
            // Made by an earlier attempt: members follow.
            Some(id) => id,
            None => {
                let mut g = Vec::new();
                proto::bytes(&mut g, 2, group_name(group.group_eui).as_bytes());
                proto::bytes(&mut g, 3, setting(&inst, "application_id")?.as_bytes());
                proto::uint(&mut g, 4, region(group.ism_band));
                proto::bytes(&mut g, 5, format!("{:08x}", group.mc_addr).as_bytes());
                proto::bytes(&mut g, 6, to_hex(&nwk_s_key).as_bytes());
                proto::bytes(&mut g, 7, to_hex(&app_s_key).as_bytes());
                proto::uint(&mut g, 8, group.min_fcnt as u64);
                proto::uint(&mut g, 9, matches!(group.session_class, SessionClass::ClassB) as u64);
                proto::uint(&mut g, 10, group.data_rate as u64);
                proto::uint(&mut g, 11, group.frequency_hz as u64);
                proto::uint(&mut g, 12, group.ping_slot_periodicity as u64);
                let mut req = Vec::new();
                proto::bytes(&mut req, 1, &g);
                let resp = call(&inst, "api.MulticastGroupService/Create", &req)?;
                proto::fields(&resp)
                    .and_then(|f| f.into_iter().find_map(|(n, v)| match v {
                        Err(b) if n == 1 => Some(String::from_utf8_lossy(&b).into_owned()),
                        _ => None,
                    }))
                    .ok_or_else(|| BackendError::Unavailable("Create: no id in the answer".into()))?
            }
        };
        for d in devices {
            let mut add = Vec::new();
            proto::bytes(&mut add, 1, id.as_bytes());
            proto::bytes(&mut add, 2, eui_field(d).as_bytes());
            call(&inst, "api.MulticastGroupService/AddDevice", &add)?;
        }
        Ok(())
    }

    fn delete_multicast_group(inst: Instance, group: MulticastGroup) -> Result<(), BackendError> {
        let Some(id) = find_group(&inst, group.group_eui)? else { return Ok(()) };
        let mut req = Vec::new();
        proto::bytes(&mut req, 1, id.as_bytes());
        match call(&inst, "api.MulticastGroupService/Delete", &req) {
            // NOT_FOUND: already gone.
            Err(BackendError::Rejected(m)) if m.contains("status 5:") => Ok(()),
            other => other.map(drop),
        }
    }

    fn send_unicast(inst: Instance, d: UnicastDownlink) -> Result<SendReceipt, BackendError> {
        let mut item = Vec::new();
        proto::bytes(&mut item, 2, eui_field(d.dev_eui).as_bytes());
        proto::uint(&mut item, 3, d.confirmed as u64);
        proto::uint(&mut item, 4, d.fport as u64);
        proto::bytes(&mut item, 5, &d.payload);
        let mut req = Vec::new();
        proto::bytes(&mut req, 1, &item);
        call(&inst, "api.DeviceService/Enqueue", &req)?;
        Ok(SendReceipt { fcnt: None, next_send_unix_ms: None })
    }

    fn send_multicast(inst: Instance, d: MulticastDownlink) -> Result<SendReceipt, BackendError> {
        let mut item = Vec::new();
        proto::bytes(&mut item, 1, require_group(&inst, d.group.group_eui)?.as_bytes());
        proto::uint(&mut item, 3, d.fport as u64);
        proto::bytes(&mut item, 4, &d.payload);
        let mut req = Vec::new();
        proto::bytes(&mut req, 1, &item);
        let resp = call(&inst, "api.MulticastGroupService/Enqueue", &req)?;
        // ChirpStack picks the frame counter; it says which.
        let fcnt = proto::fields(&resp).and_then(|f| f.into_iter().find_map(|(n, v)| (n == 1).then_some(v.ok()).flatten()));
        Ok(SendReceipt { fcnt: fcnt.map(|f| f as u32), next_send_unix_ms: None })
    }

    fn parse_reports(_inst: Instance, request: IncomingRequest) -> Result<Vec<Report>, BackendError> {
        let presented = incoming_header(&request.headers, "authorization").and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(|| BackendError::Unauthorized("no bearer token".into()))?;
        let expected = keys::digest_with_secret(INTEGRATION_TOKEN, "").map_err(|e| BackendError::Invalid(format!("{e:?}")))?;
        // The host digests the stored token (SHA-256 of it); the plugin
        // digests the presented one: equal digests, equal tokens.
        if to_hex(&Sha256::digest(presented.as_bytes())) != expected {
            return Err(BackendError::Unauthorized("the integration token does not match".into()));
        }
        let event = request.query.split('&').find_map(|kv| kv.strip_prefix("event=")).unwrap_or("");
        if event != "up" {
            // join, status, ack, txack, log…: nothing the engine needs.
            return Ok(vec![]);
        }
        let up: Value = serde_json::from_slice(&request.body).map_err(|e| BackendError::Rejected(format!("body is not JSON: {e}")))?;
        let bad = |what: &str| BackendError::Rejected(format!("up event: {what}"));
        let dev_eui = up["deviceInfo"]["devEui"].as_str().and_then(|e| parse_eui(&e.to_ascii_lowercase())).ok_or_else(|| bad("deviceInfo.devEui must be 16 hex digits"))?;
        let Some(fport) = up["fPort"].as_u64() else {
            // An uplink without FPort carries only MAC commands.
            return Ok(vec![]);
        };
        let fport = u8::try_from(fport).ok().filter(|p| (1..=223).contains(p)).ok_or_else(|| bad("fPort must be 1..223"))?;
        let payload = BASE64.decode(up["data"].as_str().unwrap_or("")).map_err(|_| bad("data must be base64"))?;
        let rx = &up["rxInfo"][0];
        Ok(vec![Report::Uplink(Uplink {
            dev_eui,
            fport,
            payload,
            received_unix_ms: airlift::plugin::clock::now_unix_ms(),
            fcnt_up: up["fCnt"].as_u64().map(|f| f as u32),
            rssi: rx["rssi"].as_f64().map(|r| r as f32),
            snr: rx["snr"].as_f64().map(|r| r as f32),
        })])
    }

    fn offload_start(_inst: Instance, _job: OffloadJob) -> Result<String, BackendError> {
        Err(BackendError::Unsupported("Airlift drives FUOTA through ChirpStack's multicast API".into()))
    }

    fn offload_poll(_inst: Instance, _handle: String) -> Result<OffloadStatus, BackendError> {
        Err(BackendError::Unsupported("no offload".into()))
    }

    fn offload_cancel(_inst: Instance, _handle: String) -> Result<(), BackendError> {
        Err(BackendError::Unsupported("no offload".into()))
    }
}
