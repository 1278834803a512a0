//! Backend for ThingPark's LRC "tunnel" interface.
//!
//! - Downlink: `POST {url}/thingpark/lrc/rest/downlink?DevEUI=…&FPort=…&
//!   Payload=…[&FCntDn=…][&Confirmed=1][&FlushDownlinkQueue=1]&AS_ID=…&
//!   Time=…[&CorrelationID=…]&Token=…`, empty body. Token = hex SHA-256 of
//!   the parameters with decoded values, followed by the AS key (as text).
//! - Multicast: the same call to the group's virtual DevEUI (a ThingPark
//!   multicast device the operator provisioned with the group's DevAddr and
//!   McNwkSKey) with the host's FCntDn. With FCntDn the LRC forwards the
//!   payload as it is, so the payload goes encrypted with McAppSKey for
//!   that counter, by the host's `keys.encrypt-multicast-payload` (the key
//!   never enters the plugin).
//! - Uplinks: the LRC posts `{"DevEUI_uplink": {…}}` with query
//!   `LrnDevEui, LrnFPort, LrnInfos, AS_ID, Time, Token`; Token = SHA-256 of
//!   CustomerID ‖ DevEUI ‖ FPort ‖ FCntUp ‖ payload_hex ‖ the query up to
//!   Token (Time URL-decoded) ‖ AS key. Older LRCs send numbers as strings.
//!
//! Settings: `url` (LRC base URL), `as_id`. Secret: `as_key` (never enters
//! this plugin: the host computes the digests).

use airlift_plugin_sdk::backend::{airlift, exports};
use airlift_plugin_sdk::backend_support::*;
#[allow(unused_imports)]
use airlift_plugin_sdk::hex::*;
use airlift_plugin_sdk::time::{format_rfc3339_ms, parse_rfc3339_ms};

use airlift::plugin::{clock, keys};
use airlift::plugin::backend_types::{BackendError, Instance};
use exports::airlift::plugin::backend::*;
use serde_json::Value;

struct ThingPark;
airlift_plugin_sdk::backend::export!(ThingPark);

const AS_KEY: &str = "as_key";

/// `%`-encode what a query value cannot carry as is (`+` above all).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn decode(value: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn digest(message: &str) -> Result<String, BackendError> {
    keys::digest_with_secret(AS_KEY, message).map_err(|e| BackendError::Invalid(format!("AS key: {e:?}")))
}

/// What one LRC downlink request carries besides its target and payload.
struct Options<'a> {
    fcnt: Option<u32>,
    confirmed: bool,
    flush: bool,
    correlation_id: &'a str,
}

/// One downlink request. The Token is the SHA-256 of the parameters as
/// `name=value&…` with their values *decoded*, then the AS key; the URL
/// carries the values encoded (`+` as `%2B`, `:` as `%3A`), as Actility's
/// sample client and contract do (docs/networks/thingpark.md). Parameters
/// go in the sample's order; flags only when set.
fn downlink(inst: &Instance, dev_eui: u64, fport: u8, payload: &[u8], o: Options) -> Result<(), BackendError> {
    let url = base_url(inst)?;
    let mut params: Vec<(&str, String)> = vec![("DevEUI", format!("{dev_eui:016X}")), ("FPort", fport.to_string()), ("Payload", to_hex(payload))];
    if let Some(f) = o.fcnt {
        params.push(("FCntDn", f.to_string()));
    }
    if o.confirmed {
        params.push(("Confirmed", "1".into()));
    }
    if o.flush {
        params.push(("FlushDownlinkQueue", "1".into()));
    }
    params.push(("AS_ID", setting(inst, "as_id")?.to_string()));
    params.push(("Time", format_rfc3339_ms(clock::now_unix_ms())));
    if !o.correlation_id.is_empty() {
        params.push(("CorrelationID", o.correlation_id.to_string()));
    }
    let signed = params.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&");
    let query = params.iter().map(|(n, v)| format!("{n}={}", encode(v))).collect::<Vec<_>>().join("&");
    let token = digest(&signed)?;
    send("POST", format!("{url}/thingpark/lrc/rest/downlink?{query}&Token={token}"), vec![], vec![]).map(drop)
}

/// A JSON field that older LRCs send as a string.
fn lenient_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Check an uplink report's Token and turn it into an uplink.
fn uplink(query: &str, up: &Value) -> Result<Uplink, BackendError> {
    let bad = |what: &str| BackendError::Rejected(format!("DevEUI_uplink: {what}"));
    let (signed, token) = query.rsplit_once("&Token=").ok_or_else(|| BackendError::Unauthorized("no Token in the query".into()))?;
    let signed_decoded: String = signed.split('&').map(|kv| match kv.split_once('=') {
        Some(("Time", t)) => format!("Time={}", decode(t)),
        _ => kv.to_string(),
    }).collect::<Vec<_>>().join("&");
    let message = format!("{}{}{}{}{}{signed_decoded}", text(&up["CustomerID"]), text(&up["DevEUI"]), text(&up["FPort"]), text(&up["FCntUp"]), text(&up["payload_hex"]));
    if !digest(&message)?.eq_ignore_ascii_case(token) {
        return Err(BackendError::Unauthorized("the uplink Token does not match the AS key".into()));
    }
    // The LRC's Time is covered by the Token: a captured report replayed
    // later keeps its old time, which the host refuses.
    let time = signed.split('&').find_map(|kv| kv.strip_prefix("Time=")).map(decode);
    let received_unix_ms = time.as_deref().and_then(parse_rfc3339_ms).ok_or_else(|| bad("the query's Time must be ISO-8601 with a zone"))?;
    let dev_eui = up["DevEUI"].as_str().and_then(parse_eui_any_case).ok_or_else(|| bad("DevEUI must be 16 hex digits"))?;
    let fport = lenient_u64(&up["FPort"]).filter(|p| (1..=223).contains(p)).ok_or_else(|| bad("FPort must be 1..223"))? as u8;
    let payload = up["payload_hex"].as_str().and_then(from_hex).ok_or_else(|| bad("payload_hex must be hex"))?;
    Ok(Uplink {
        dev_eui,
        fport,
        payload,
        received_unix_ms,
        fcnt_up: lenient_u64(&up["FCntUp"]).map(|f| f as u32),
        rssi: up["LrrRSSI"].as_f64().or_else(|| up["LrrRSSI"].as_str().and_then(|s| s.parse().ok())).map(|r| r as f32),
        snr: up["LrrSNR"].as_f64().or_else(|| up["LrrSNR"].as_str().and_then(|s| s.parse().ok())).map(|r| r as f32),
    })
}

fn parse_eui_any_case(text: &str) -> Option<u64> {
    parse_eui(&text.to_ascii_lowercase())
}

impl Guest for ThingPark {
    fn describe() -> BackendInfo {
        BackendInfo {
            name: "thingpark".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "ThingPark LRC tunnel interface".into(),
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
        setting(&inst, "as_id")?;
        require_secret(&inst, AS_KEY)
    }

    /// ThingPark multicast groups are multicast devices the operator
    /// provisions (DevAddr, session keys, tagged base stations); nothing to
    /// create through the tunnel interface.
    fn create_multicast_group(_inst: Instance, _group: MulticastGroup, _devices: Vec<u64>) -> Result<(), BackendError> {
        Ok(())
    }

    fn delete_multicast_group(_inst: Instance, _group: MulticastGroup) -> Result<(), BackendError> {
        Ok(())
    }

    fn send_unicast(inst: Instance, d: UnicastDownlink) -> Result<SendReceipt, BackendError> {
        let options = Options { fcnt: None, confirmed: d.confirmed, flush: d.flush_queue, correlation_id: &d.correlation_id };
        downlink(&inst, d.dev_eui, d.fport, &d.payload, options)?;
        Ok(SendReceipt { fcnt: None, next_send_unix_ms: None })
    }

    fn send_multicast(inst: Instance, d: MulticastDownlink) -> Result<SendReceipt, BackendError> {
        let options = Options { fcnt: Some(d.fcnt), confirmed: false, flush: false, correlation_id: &d.correlation_id };
        let encrypted = keys::encrypt_multicast_payload(d.group.group_eui, d.fcnt, &d.payload).map_err(|e| BackendError::Invalid(format!("encrypting the multicast payload: {e:?}")))?;
        downlink(&inst, d.group.group_eui, d.fport, &encrypted, options)?;
        Ok(SendReceipt { fcnt: Some(d.fcnt), next_send_unix_ms: None })
    }

    fn parse_reports(_inst: Instance, request: IncomingRequest) -> Result<Vec<Report>, BackendError> {
        let doc: Value = serde_json::from_slice(&request.body).map_err(|e| BackendError::Rejected(format!("body is not JSON: {e}")))?;
        if let Some(up) = doc.get("DevEUI_uplink") {
            return Ok(vec![Report::Uplink(uplink(&request.query, up)?)]);
        }
        // Downlink and multicast summaries, notifications: nothing the engine needs yet.
        Ok(vec![])
    }
}
