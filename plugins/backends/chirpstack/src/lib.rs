//! Backend for ChirpStack v4, written against its published API
//! definitions (`api/multicast_group.proto`, `api/device.proto`,
//! `api/gateway.proto`, `integration/integration.proto`) and its server's
//! behaviour (`docs/networks/chirpstack.md`).
//!
//! A sandboxed plugin has only the host's HTTP import, so it speaks
//! **gRPC-Web** ([`airlift_plugin_sdk::grpc_web`]), which ChirpStack serves
//! on its API port for its own web UI; messages are written by field number.
//!
//! - groups: found again by name and updated to the campaign's settings,
//!   or created; the instance's gateways added; members added once each;
//!   a group no gateway online could serve waits (the progress says why);
//! - downlinks: `DeviceService.Enqueue` replacing what is queued for the
//!   device, `MulticastGroupService.Enqueue` (its frame counter reported);
//! - uplinks: the HTTP integration's `?event=up`, JSON or protobuf, with a
//!   header the operator configures, `Authorization: Bearer <integration_token>`.
//!
//! ChirpStack answers INTERNAL for an enqueue to a device or group it does
//! not have (a foreign key fails); the plugin asks `Get` which it was, so a
//! missing device is that device's refusal and not an endless retry.
//!
//! Settings: `url`, `application_id`, optional `gateway_ids` (comma
//! separated). Secrets: `api_token` (ChirpStack API key), `integration_token`.

use airlift_plugin_sdk::backend::{airlift, exports};
use airlift_plugin_sdk::backend_support::*;
use airlift_plugin_sdk::grpc_web::{self, code, wire, CallError};
use airlift_plugin_sdk::hex::*;
use airlift_plugin_sdk::time::parse_rfc3339_ms;

use airlift::plugin::http::Header;
use airlift::plugin::keys;
use airlift::plugin::types::{IsmBand, MulticastGroup, SessionClass};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use airlift::plugin::backend_types::{BackendError, Instance};
use exports::airlift::plugin::backend::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

struct ChirpStack;
airlift_plugin_sdk::backend::export!(ChirpStack);

const API_TOKEN: &str = "api_token";
const INTEGRATION_TOKEN: &str = "integration_token";
/// Rows asked for per List call.
const PAGE: u64 = 250;

/// `common.Region` of a band.
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

fn eui_field(eui: u64) -> String {
    format!("{eui:016x}")
}

fn call(inst: &Instance, method: &str, request: &[u8]) -> Result<Vec<u8>, CallError> {
    let auth: Header = header("authorization", &format!("Bearer {{{{secret:{API_TOKEN}}}}}"));
    let base = base_url(inst).map_err(CallError::Network)?;
    grpc_web::call(&base, method, vec![auth], request)
}

/// A call whose every failure means what it usually does.
fn call_plain(inst: &Instance, method: &str, request: &[u8]) -> Result<wire::Message, BackendError> {
    let answer = call(inst, method, request).map_err(|e| e.into_backend_error(method))?;
    wire::Message::parse(&answer).ok_or_else(|| BackendError::Unavailable(format!("{method}: malformed answer")))
}

/// A message with one string field.
fn string_message(field: u32, value: &str) -> Vec<u8> {
    let mut m = Vec::new();
    wire::bytes(&mut m, field, value.as_bytes());
    m
}

/// Every row of a List call, page by page (a limit of 0 would return none).
fn list_all(inst: &Instance, method: &str, filters: &[u8]) -> Result<Vec<wire::Message>, BackendError> {
    let mut rows = Vec::new();
    loop {
        let mut req = Vec::new();
        wire::uint(&mut req, 1, PAGE);
        wire::uint(&mut req, 2, rows.len() as u64);
        req.extend_from_slice(filters);
        let answer = call_plain(inst, method, &req)?;
        let page = answer.messages(2);
        let total = answer.uint(1) as usize;
        let got = page.len();
        rows.extend(page);
        if got == 0 || rows.len() >= total {
            return Ok(rows);
        }
    }
}

/// The UUID of our group in the application, if it exists.
fn find_group(inst: &Instance, group_eui: u64) -> Result<Option<String>, BackendError> {
    let name = group_name(group_eui);
    let mut filters = Vec::new();
    wire::bytes(&mut filters, 3, name.as_bytes());
    wire::bytes(&mut filters, 4, setting(inst, "application_id")?.as_bytes());
    let rows = list_all(inst, "api.MulticastGroupService/List", &filters)?;
    Ok(rows.into_iter().find(|g| g.string(4) == name).map(|g| g.string(1)))
}

/// `api.MulticastGroup` for our group, with `id` when updating.
fn group_message(inst: &Instance, group: &MulticastGroup, id: Option<&str>) -> Result<Vec<u8>, BackendError> {
    let (app_s_key, nwk_s_key) = keys::multicast_session_keys(group.group_eui).map_err(|e| BackendError::Invalid(format!("session keys: {e:?}")))?;
    let mut g = Vec::new();
    wire::bytes(&mut g, 1, id.unwrap_or("").as_bytes());
    wire::bytes(&mut g, 2, group_name(group.group_eui).as_bytes());
    wire::bytes(&mut g, 3, setting(inst, "application_id")?.as_bytes());
    wire::uint(&mut g, 4, region(group.ism_band));
    wire::bytes(&mut g, 5, format!("{:08x}", group.mc_addr).as_bytes());
    wire::bytes(&mut g, 6, to_hex(&nwk_s_key).as_bytes());
    wire::bytes(&mut g, 7, to_hex(&app_s_key).as_bytes());
    // The frame counter goes on from the campaign's.
    wire::uint(&mut g, 8, group.min_fcnt as u64);
    wire::uint(&mut g, 9, matches!(group.session_class, SessionClass::ClassB) as u64);
    wire::uint(&mut g, 10, group.data_rate as u64);
    wire::uint(&mut g, 11, group.frequency_hz as u64);
    // class_b_ping_slot_periodicity is field 14 (12 was removed in v4.13).
    wire::uint(&mut g, 14, group.ping_slot_periodicity as u64);
    let mut wrapped = Vec::new();
    wire::bytes(&mut wrapped, 1, &g);
    Ok(wrapped)
}

/// The gateways the instance names (`gateway_ids`), if any.
fn configured_gateways(inst: &Instance) -> Vec<String> {
    let listed = inst.settings.iter().find(|a| a.key == "gateway_ids").map(|a| a.value.as_str()).unwrap_or("");
    listed.split(',').map(|g| g.trim().to_ascii_lowercase()).filter(|g| !g.is_empty()).collect()
}

/// Add the instance's gateways to the group, and make sure one that will
/// serve it is online: ChirpStack accepts multicast frames it has no
/// gateway for, and never sends them.
fn ensure_gateways(inst: &Instance, group_id: &str) -> Result<(), BackendError> {
    let in_group = || list_all(inst, "api.GatewayService/List", &string_message(5, group_id));
    let configured = configured_gateways(inst);
    let present: BTreeSet<String> = in_group()?.iter().map(|g| g.string(2)).collect();
    for gateway in configured.iter().filter(|g| !present.contains(*g)) {
        let mut req = string_message(1, group_id);
        wire::bytes(&mut req, 2, gateway.as_bytes());
        match call(inst, "api.MulticastGroupService/AddGateway", &req) {
            Ok(_) => {}
            Err(e) if e.code() == Some(code::NOT_FOUND) => return Err(BackendError::Invalid(format!("gateway {gateway} (setting gateway_ids) is not in ChirpStack"))),
            Err(e) => return Err(e.into_backend_error("AddGateway")),
        }
    }
    // Without gateways of its own, ChirpStack uses those that heard the
    // devices: any of its gateways may serve.
    let (serving, scope) = if configured.is_empty() { (list_all(inst, "api.GatewayService/List", &[])?, "ChirpStack") } else { (in_group()?, "the group") };
    const ONLINE: u64 = 1;
    if !serving.iter().any(|g| g.uint(10) == ONLINE) {
        return Err(BackendError::Unavailable(format!("no gateway of {scope} is online ({} known): multicast frames would not be sent", serving.len())));
    }
    Ok(())
}

/// Add the devices not yet in the group (adding one twice is an INTERNAL
/// error). A device ChirpStack does not have is left out: its own
/// downlinks are refused later, and the rest of the campaign goes on.
fn ensure_members(inst: &Instance, group_id: &str, devices: &[u64]) -> Result<(), BackendError> {
    let present: BTreeSet<String> = list_all(inst, "api.DeviceService/List", &string_message(5, group_id))?.iter().map(|d| d.string(1).to_ascii_lowercase()).collect();
    for &device in devices {
        let dev_eui = eui_field(device);
        if present.contains(&dev_eui) {
            continue;
        }
        let mut req = string_message(1, group_id);
        wire::bytes(&mut req, 2, dev_eui.as_bytes());
        match call(inst, "api.MulticastGroupService/AddDevice", &req) {
            Ok(_) => {}
            Err(e) if e.code() == Some(code::NOT_FOUND) => {
                airlift::plugin::log::write(airlift::plugin::log::Level::Warn, &format!("device {dev_eui} is not in ChirpStack; left out of the group"));
            }
            Err(e) => return Err(e.into_backend_error("AddDevice")),
        }
    }
    Ok(())
}

/// An enqueue that failed with INTERNAL: `get` tells whether its target is
/// gone (refused, not retried) or the server had trouble (retried).
fn enqueue_failure(inst: &Instance, method: &str, error: CallError, get: &str, get_request: &[u8], missing: String) -> BackendError {
    if error.code() == Some(code::INTERNAL) {
        if let Err(e) = call(inst, get, get_request) {
            if e.code() == Some(code::NOT_FOUND) {
                return BackendError::Rejected(missing);
            }
        }
    }
    error.into_backend_error(method)
}

/// One `up` event of the HTTP integration, from its JSON form (the
/// protobuf JSON mapping, as ChirpStack's pbjson writes it).
fn uplink_from_json(body: &[u8]) -> Result<Option<Uplink>, BackendError> {
    let up: Value = serde_json::from_slice(body).map_err(|e| BackendError::Rejected(format!("body is not JSON: {e}")))?;
    let dev_eui = up["deviceInfo"]["devEui"].as_str().unwrap_or("");
    let rx = &up["rxInfo"][0];
    let data = BASE64.decode(up["data"].as_str().unwrap_or("")).map_err(|_| BackendError::Rejected("up event: data must be base64".into()))?;
    let time = up["time"].as_str().and_then(parse_rfc3339_ms);
    uplink(dev_eui, up["fPort"].as_u64().unwrap_or(0), data, up["fCnt"].as_u64(), time, rx["rssi"].as_f64().map(|r| r as f32), rx["snr"].as_f64().map(|s| s as f32))
}

/// The same from its protobuf form (`integration.UplinkEvent`).
fn uplink_from_protobuf(body: &[u8]) -> Result<Option<Uplink>, BackendError> {
    let up = wire::Message::parse(body).ok_or_else(|| BackendError::Rejected("up event: malformed protobuf".into()))?;
    let dev_eui = up.message(3).map(|info| info.string(8)).unwrap_or_default();
    let rx = up.messages(12).into_iter().next().unwrap_or_default();
    let data = up.bytes(10).unwrap_or_default().to_vec();
    // google.protobuf.Timestamp: seconds = 1, nanos = 2.
    let time = up.message(2).map(|t| t.uint(1).saturating_mul(1000).saturating_add(t.uint(2) / 1_000_000));
    uplink(&dev_eui, up.uint(8), data, Some(up.uint(7)), time, rx.int32(6).map(|r| r as f32), rx.float(7))
}

/// An uplink from an event's fields; `None` for one that carries only MAC
/// commands (fPort 0, always present in ChirpStack's events). `time`: when
/// the network received it (the event's `time`), else now.
fn uplink(dev_eui: &str, fport: u64, payload: Vec<u8>, fcnt: Option<u64>, time: Option<u64>, rssi: Option<f32>, snr: Option<f32>) -> Result<Option<Uplink>, BackendError> {
    let dev_eui = parse_eui(&dev_eui.to_ascii_lowercase()).ok_or_else(|| BackendError::Rejected("up event: deviceInfo.devEui must be 16 hex digits".into()))?;
    if fport == 0 {
        return Ok(None);
    }
    let fport = u8::try_from(fport).ok().filter(|p| (1..=223).contains(p)).ok_or_else(|| BackendError::Rejected(format!("up event: fPort {fport} is not 0..223")))?;
    Ok(Some(Uplink { dev_eui, fport, payload, received_unix_ms: time.unwrap_or_else(airlift::plugin::clock::now_unix_ms), fcnt_up: fcnt.map(|f| f as u32), rssi, snr }))
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
        let id = match find_group(&inst, group.group_eui)? {
            // Left by an earlier attempt: brought to this campaign's
            // settings (class, DR, frequency, frame counter) first.
            Some(id) => {
                call_plain(&inst, "api.MulticastGroupService/Update", &group_message(&inst, &group, Some(&id))?)?;
                id
            }
            None => call_plain(&inst, "api.MulticastGroupService/Create", &group_message(&inst, &group, None)?)?.string(1),
        };
        if id.is_empty() {
            return Err(BackendError::Unavailable("Create: no id in the answer".into()));
        }
        ensure_gateways(&inst, &id)?;
        ensure_members(&inst, &id, &devices)
    }

    fn delete_multicast_group(inst: Instance, group: MulticastGroup) -> Result<(), BackendError> {
        let Some(id) = find_group(&inst, group.group_eui)? else { return Ok(()) };
        match call(&inst, "api.MulticastGroupService/Delete", &string_message(1, &id)) {
            Err(e) if e.code() != Some(code::NOT_FOUND) => Err(e.into_backend_error("Delete")),
            // Deleted, or already gone.
            _ => Ok(()),
        }
    }

    fn send_unicast(inst: Instance, d: UnicastDownlink) -> Result<SendReceipt, BackendError> {
        let dev_eui = eui_field(d.dev_eui);
        let mut item = Vec::new();
        wire::bytes(&mut item, 2, dev_eui.as_bytes());
        wire::uint(&mut item, 3, d.confirmed as u64);
        wire::uint(&mut item, 4, d.fport as u64);
        wire::bytes(&mut item, 5, &d.payload);
        let mut req = Vec::new();
        wire::bytes(&mut req, 1, &item);
        wire::uint(&mut req, 2, d.flush_queue as u64);
        match call(&inst, "api.DeviceService/Enqueue", &req) {
            Ok(_) => Ok(SendReceipt { fcnt: None, next_send_unix_ms: None }),
            Err(e) => Err(enqueue_failure(&inst, "DeviceService/Enqueue", e, "api.DeviceService/Get", &string_message(1, &dev_eui), format!("device {dev_eui} is not in ChirpStack"))),
        }
    }

    fn send_multicast(inst: Instance, d: MulticastDownlink) -> Result<SendReceipt, BackendError> {
        let missing = || format!("multicast group {} is not in ChirpStack", group_name(d.group.group_eui));
        let id = find_group(&inst, d.group.group_eui)?.ok_or_else(|| BackendError::Rejected(missing()))?;
        let mut item = string_message(1, &id);
        wire::uint(&mut item, 3, d.fport as u64);
        wire::bytes(&mut item, 4, &d.payload);
        let mut req = Vec::new();
        wire::bytes(&mut req, 1, &item);
        match call(&inst, "api.MulticastGroupService/Enqueue", &req) {
            // ChirpStack picks the frame counter and says which (an empty
            // answer is 0).
            Ok(answer) => {
                let fcnt = wire::Message::parse(&answer).map(|m| m.uint(1) as u32);
                Ok(SendReceipt { fcnt, next_send_unix_ms: None })
            }
            Err(e) => Err(enqueue_failure(&inst, "MulticastGroupService/Enqueue", e, "api.MulticastGroupService/Get", &string_message(1, &id), missing())),
        }
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
            // join, status, ack, txack, log, location: nothing the engine needs.
            return Ok(vec![]);
        }
        // The integration's encoding: JSON, or protobuf (application/octet-stream).
        let content_type = incoming_header(&request.headers, "content-type").unwrap_or("application/json");
        let uplink = if content_type.starts_with("application/octet-stream") || content_type.contains("protobuf") {
            uplink_from_protobuf(&request.body)?
        } else {
            uplink_from_json(&request.body)?
        };
        Ok(uplink.map(Report::Uplink).into_iter().collect())
    }
}
