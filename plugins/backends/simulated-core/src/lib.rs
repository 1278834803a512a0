//! Backend for the simulated network server (`airlift sim-lns`).
//!
//! Its API is plain JSON over HTTP, shaped like a small network server's:
//! - `POST {url}/groups`: a multicast group with its session keys and members;
//! - `DELETE {url}/groups/{groupEui}`: end the group's session;
//! - `POST {url}/devices/{devEui}/downlinks`: queue a unicast downlink;
//! - `POST {url}/groups/{groupEui}/downlinks`: send a multicast frame.
//!
//! Requests carry `Authorization: Bearer <token>` (the instance's `token`
//! secret, substituted by the host). Uplinks arrive at the host as
//! `{"uplinks":[{"devEui","fPort","payload"(hex),"time"(unix ms)}]}` with
//! `X-Sim-Signature` = hex SHA-256(body ‖ token), checked here through the
//! host so the token never enters this plugin.
//!
//! This crate is the code; `backends/simulated` and the test fixture
//! `fixtures/simulated-v2` export it as two plugin versions.

use airlift_plugin_sdk::backend::{airlift, exports};
use airlift_plugin_sdk::backend_support::*;
use airlift_plugin_sdk::hex::{eui_hex, from_hex, parse_eui, to_hex};
use airlift_plugin_sdk::PluginVersion;
use std::marker::PhantomData;

use airlift::plugin::keys;
use airlift::plugin::types::MulticastGroup;
use airlift::plugin::backend_types::{BackendError, Instance};
use exports::airlift::plugin::backend::*;
use serde_json::{json, Value};

/// The backend, as plugin version `V`.
pub struct Simulated<V: PluginVersion>(PhantomData<V>);


const TOKEN: &str = "token";

/// Bearer token (substituted by the host) and who is calling: the plugin
/// version and instance, for the server's logs.
fn headers(inst: &Instance, version: &str) -> Vec<Header> {
    vec![
        header("authorization", &format!("Bearer {{{{secret:{TOKEN}}}}}")),
        header("user-agent", &format!("airlift-simulated/{version} ({})", inst.id)),
    ]
}

fn post_json(inst: &Instance, version: &str, path: &str, body: Value) -> Result<(), BackendError> {
    let mut headers = headers(inst, version);
    headers.push(header("content-type", "application/json"));
    send("POST", format!("{}{path}", base_url(inst)?), headers, body.to_string().into_bytes()).map(drop)
}

fn receipt() -> SendReceipt {
    SendReceipt { fcnt: None, next_send_unix_ms: None }
}

fn uplink(v: &Value) -> Result<Uplink, BackendError> {
    let bad = |what: &str| BackendError::Rejected(format!("uplink: {what}"));
    let dev_eui = v["devEui"].as_str().and_then(parse_eui).ok_or_else(|| bad("devEui must be 16 hex digits"))?;
    let fport = v["fPort"].as_u64().filter(|p| (1..=223).contains(p)).ok_or_else(|| bad("fPort must be 1..223"))? as u8;
    let payload = v["payload"].as_str().and_then(from_hex).ok_or_else(|| bad("payload must be hex"))?;
    let received_unix_ms = v["time"].as_u64().ok_or_else(|| bad("time must be unix milliseconds"))?;
    Ok(Uplink { dev_eui, fport, payload, received_unix_ms, fcnt_up: v["fCnt"].as_u64().map(|f| f as u32), rssi: None, snr: None })
}

impl<V: PluginVersion> Guest for Simulated<V> {
    fn describe() -> BackendInfo {
        BackendInfo {
            name: "simulated".into(),
            version: V::VERSION.into(),
            description: "The simulated network server of `airlift sim-lns`".into(),
            capabilities: Capabilities {
                unicast: true,
                multicast_class_b: true,
                multicast_class_c: true,
                multicast_interval_ms: 2000,
                unicast_interval_ms: 1000,
            },
        }
    }

    fn validate(inst: Instance) -> Result<(), BackendError> {
        base_url(&inst)?;
        require_secret(&inst, TOKEN)
    }

    fn create_multicast_group(inst: Instance, group: MulticastGroup, devices: Vec<u64>) -> Result<(), BackendError> {
        // A network server encrypts multicast frames itself: it needs the
        // group's session keys (never the root McKey).
        let (app_s_key, nwk_s_key) = keys::multicast_session_keys(group.group_eui).map_err(|e| BackendError::Invalid(format!("session keys: {e:?}")))?;
        let body = json!({
            "groupEui": eui_hex(group.group_eui),
            "mcAddr": format!("{:08x}", group.mc_addr),
            "appSKey": to_hex(&app_s_key),
            "nwkSKey": to_hex(&nwk_s_key),
            "devices": devices.iter().map(|d| eui_hex(*d)).collect::<Vec<_>>(),
        });
        post_json(&inst, V::VERSION, "/groups", body)
    }

    fn delete_multicast_group(inst: Instance, group: MulticastGroup) -> Result<(), BackendError> {
        let url = format!("{}/groups/{}", base_url(&inst)?, eui_hex(group.group_eui));
        match send_raw("DELETE", url, headers(&inst, V::VERSION), vec![], INSTANCE_TIMEOUT)? {
            // Already gone is as good as deleted.
            r if r.status == 404 => Ok(()),
            r => check_status(r).map(drop),
        }
    }

    fn send_unicast(inst: Instance, d: UnicastDownlink) -> Result<SendReceipt, BackendError> {
        let body = json!({ "fPort": d.fport, "payload": to_hex(&d.payload), "confirmed": d.confirmed, "flush": d.flush_queue });
        post_json(&inst, V::VERSION, &format!("/devices/{}/downlinks", eui_hex(d.dev_eui)), body).map(|_| receipt())
    }

    fn send_multicast(inst: Instance, d: MulticastDownlink) -> Result<SendReceipt, BackendError> {
        let body = json!({ "fCnt": d.fcnt, "fPort": d.fport, "payload": to_hex(&d.payload) });
        post_json(&inst, V::VERSION, &format!("/groups/{}/downlinks", eui_hex(d.group.group_eui)), body).map(|_| SendReceipt { fcnt: Some(d.fcnt), next_send_unix_ms: None })
    }

    fn parse_reports(_inst: Instance, request: IncomingRequest) -> Result<Vec<Report>, BackendError> {
        let body = String::from_utf8(request.body).map_err(|_| BackendError::Rejected("body is not UTF-8".into()))?;
        let signature = incoming_header(&request.headers, "x-sim-signature").ok_or_else(|| BackendError::Unauthorized("no X-Sim-Signature".into()))?;
        let expected = keys::digest_with_secret(TOKEN, &body).map_err(|e| BackendError::Invalid(format!("{e:?}")))?;
        if !signature.eq_ignore_ascii_case(&expected) {
            return Err(BackendError::Unauthorized("X-Sim-Signature does not match".into()));
        }
        let doc: Value = serde_json::from_str(&body).map_err(|e| BackendError::Rejected(format!("body is not JSON: {e}")))?;
        let list = doc["uplinks"].as_array().ok_or_else(|| BackendError::Rejected("no 'uplinks' list".into()))?;
        list.iter().map(|u| uplink(u).map(Report::Uplink)).collect()
    }
}
