//! A ThingPark LRC peer on loopback, for the `thingpark` backend plugin:
//! the tunnel interface's downlink API in front of a [`SimFleet`], checking
//! what the real LRC checks (parameter order, AS_ID, the Token signature,
//! field formats), and posting the fleet's uplinks as `DevEUI_uplink`
//! reports signed the LRC's way. Multicast groups are multicast devices the
//! operator provisioned ([`ThingParkPeer::provision_multicast_device`]).

use crate::fleet::{GroupSessionKeys, SimFleet};
use crate::uplink_pump::{post_each, PendingUplink};
use airlift::engine::NetworkError;
use airlift::model::Eui;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use crate::listen::{self, Listen, Listening};

/// Query parameters of a downlink, in the order the LRC expects them.
/// Downlink parameters the LRC documents (ThingPark's contract); their
/// order is free, the Token signs them in the order sent.
const DOWNLINK_PARAMETERS: [&str; 12] = ["DevEUI", "FPort", "Payload", "FCntDn", "AFCntDn", "Confirmed", "FlushDownlinkQueue", "ValidityTime", "RetryIneligibleGateways", "CorrelationID", "AS_ID", "Time"];
/// How far a request's `Time` may be from the LRC's clock (the AS
/// profile's "Max Time Deviation"; its default is not public: 60 s, the
/// value public AS implementations check uplinks with).
const MAX_TIME_DEVIATION_MS: i64 = 60_000;
const CUSTOMER_ID: &str = "100000507";

struct Shared {
    fleet: Arc<SimFleet>,
    as_id: String,
    as_key: String,
    multicast_devices: Mutex<HashMap<Eui, GroupSessionKeys>>,
    uplink_url: Arc<Mutex<Option<String>>>,
    /// The devices this network hears (None: the whole fleet).
    coverage: crate::uplink_pump::Coverage,
    /// Answer this many next downlinks with a 500.
    fail_next: AtomicU64,
    /// While set, every downlink request waits this long (ms, real time)
    /// before it is answered: a network that hangs.
    hang_ms: AtomicU64,
    /// Requests waiting in a hang now.
    hanging: AtomicU64,
    /// Downlinks taken: (unicast, multicast); and refused, by status.
    unicast: AtomicU64,
    multicast: AtomicU64,
    refused: Mutex<HashMap<u16, u64>>,
    /// Last FCntDn used per multicast device.
    multicast_fcnt: Mutex<HashMap<Eui, u32>>,
    /// Multicast downlinks whose FCntDn was already used (not sent).
    fcnt_reused: AtomicU64,
}

pub struct ThingParkPeer {
    listening: Listening,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ThingParkPeer {
    fn drop(&mut self) {
        self.listening.task.abort();
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Token of a downlink request: SHA-256 of the query before `&Token=`, then the AS key.
pub fn downlink_token(query_without_token: &str, as_key: &str) -> String {
    sha256_hex(&[query_without_token, as_key])
}

/// Token of an uplink report: SHA-256 of CustomerID ‖ DevEUI ‖ FPort ‖
/// FCntUp ‖ payload_hex ‖ the query before `&Token=` (Time decoded) ‖ AS key.
pub fn uplink_token(customer_id: &str, dev_eui: &str, fport: &str, fcnt_up: &str, payload_hex: &str, query: &str, as_key: &str) -> String {
    sha256_hex(&[customer_id, dev_eui, fport, fcnt_up, payload_hex, query, as_key])
}

/// ISO-8601 with milliseconds and zone, as the LRC writes `Time`.
fn iso_time(unix_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms as i64).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

fn refuse(s: &Shared, status: StatusCode, why: impl Into<String>) -> (StatusCode, String) {
    *s.refused.lock().unwrap().entry(status.as_u16()).or_default() += 1;
    (status, why.into())
}

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = v.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn downlink(State(s): State<Arc<Shared>>, RawQuery(query): RawQuery, body: axum::body::Bytes) -> Result<&'static str, (StatusCode, String)> {
    let hang = s.hang_ms.load(Ordering::SeqCst);
    if hang > 0 {
        s.hanging.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(hang)).await;
        s.hanging.fetch_sub(1, Ordering::SeqCst);
    }
    if s.fail_next.load(Ordering::SeqCst) > 0 {
        s.fail_next.fetch_sub(1, Ordering::SeqCst);
        return Err(refuse(&s, StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
    }
    let query = query.unwrap_or_default();
    let bad = |why: String| refuse(&s, StatusCode::BAD_REQUEST, why);
    if !body.is_empty() {
        return Err(bad("the downlink body must be empty".into()));
    }
    let (sent, token) = query.rsplit_once("&Token=").ok_or_else(|| refuse(&s, StatusCode::UNAUTHORIZED, "no Token"))?;
    // The LRC decodes the query, then signs `name=value&…` as received.
    let params: Vec<(&str, String)> = sent.split('&').filter_map(|kv| kv.split_once('=')).map(|(n, v)| (n, percent_decode(v))).collect();
    for (i, (name, _)) in params.iter().enumerate() {
        if !DOWNLINK_PARAMETERS.contains(name) {
            return Err(bad(format!("unknown parameter {name}")));
        }
        if params[..i].iter().any(|(n, _)| n == name) {
            return Err(bad(format!("{name} given twice")));
        }
    }
    let get = |name: &str| params.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
    if get("AS_ID") != Some(s.as_id.as_str()) {
        return Err(refuse(&s, StatusCode::UNAUTHORIZED, "unknown AS_ID"));
    }
    let signed = params.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("&");
    if token != downlink_token(&signed, &s.as_key) {
        return Err(refuse(&s, StatusCode::UNAUTHORIZED, "invalid Token"));
    }
    let time = get("Time").unwrap_or_default();
    let sent_at = chrono::DateTime::parse_from_rfc3339(time).map_err(|_| bad(format!("Time '{time}' is not ISO-8601 with a zone")))?;
    if (sent_at.timestamp_millis() - s.fleet.now_unix_ms() as i64).abs() > MAX_TIME_DEVIATION_MS {
        return Err(refuse(&s, StatusCode::UNAUTHORIZED, "Time deviates from the LRC's clock"));
    }
    let dev_eui = get("DevEUI").filter(|d| d.len() == 16).and_then(|d| d.parse::<Eui>().ok()).ok_or_else(|| bad("DevEUI must be 16 hex digits".into()))?;
    let fport = get("FPort").and_then(|p| p.parse::<u8>().ok()).filter(|p| (1..=224).contains(p)).ok_or_else(|| bad("FPort must be 1..224".into()))?;
    let payload = get("Payload").and_then(|p| hex::decode(p).ok()).ok_or_else(|| bad("Payload must be hex".into()))?;
    for flag in ["Confirmed", "FlushDownlinkQueue"] {
        if get(flag).is_some_and(|v| v != "0" && v != "1") {
            return Err(bad(format!("{flag} must be 0 or 1")));
        }
    }
    let group = s.multicast_devices.lock().unwrap().get(&dev_eui).cloned();
    match group {
        Some(keys) => {
            // With FCntDn the LRC takes the payload as encrypted by the
            // application server and forwards it unchanged.
            let fcnt = get("FCntDn").and_then(|f| f.parse::<u32>().ok()).ok_or_else(|| bad("FCntDn is required for a multicast device".into()))?;
            if get("Confirmed") == Some("1") {
                return Err(bad("multicast downlinks are unconfirmed".into()));
            }
            // A counter already used is queued, then rejected (a
            // DevEUI_downlink_Rejected report, DeliveryStatus 350).
            let fresh = s.multicast_fcnt.lock().unwrap().insert(dev_eui, fcnt).is_none_or(|last| fcnt > last);
            if fresh {
                s.fleet.deliver_multicast_encrypted(&keys, fcnt, fport, &payload);
                s.multicast.fetch_add(1, Ordering::SeqCst);
            } else {
                s.fcnt_reused.fetch_add(1, Ordering::SeqCst);
            }
        }
        None => {
            s.fleet.deliver_unicast(dev_eui, fport, &payload).map_err(|e| match e {
                NetworkError::Refused(m) | NetworkError::Unauthorized(m) | NetworkError::Misconfigured(m) => refuse(&s, StatusCode::NOT_FOUND, m),
                NetworkError::Unavailable(m) => refuse(&s, StatusCode::SERVICE_UNAVAILABLE, m),
            })?;
            s.unicast.fetch_add(1, Ordering::SeqCst);
        }
    }
    Ok("Request queued by LRC")
}

/// An uplink as the LRC posts it: a DevEUI_uplink report, signed.
fn report(http: &reqwest::Client, url: &str, up: &PendingUplink, as_id: &str, as_key: &str) -> reqwest::RequestBuilder {
    let (dev_eui, payload_hex, time) = (format!("{:016X}", up.dev_eui.0), hex::encode(&up.payload), iso_time(up.received_ms));
    let (fport, fcnt) = (up.fport, up.fcnt);
    let infos = format!("TWA_{CUSTOMER_ID}.1.AS-1-1");
    let query = format!("LrnDevEui={dev_eui}&LrnFPort={fport}&LrnInfos={infos}&AS_ID={as_id}&Time={time}");
    let token = uplink_token(CUSTOMER_ID, &dev_eui, &fport.to_string(), &fcnt.to_string(), &payload_hex, &query, as_key);
    let sent_query = query.replace('+', "%2B");
    // Numbers as strings for some fields, as older LRCs send them.
    let body = serde_json::json!({ "DevEUI_uplink": {
        "Time": time, "DevEUI": dev_eui, "FPort": fport, "FCntUp": fcnt.to_string(), "FCntDn": "0",
        "payload_hex": payload_hex, "mic_hex": "00000000", "CustomerID": CUSTOMER_ID, "DevAddr": format!("{:08X}", up.dev_eui.0 as u32),
        "LrrRSSI": "-97.000000", "LrrSNR": 7.25, "SpFact": 7, "Frequency": 868.1, "DynamicClass": "C", "PayloadEncryption": 0
    }});
    http.post(format!("{url}?{sent_query}&Token={token}")).json(&body)
}

impl ThingParkPeer {
    /// Serve the LRC on `bind` (loopback) for the application `as_id`.
    pub async fn start(fleet: Arc<SimFleet>, listen: Listen, as_id: &str, as_key: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            fleet,
            as_id: as_id.into(),
            as_key: as_key.into(),
            multicast_devices: Default::default(),
            uplink_url: Default::default(),
            coverage: Default::default(),
            fail_next: AtomicU64::new(0),
            hang_ms: AtomicU64::new(0),
            hanging: AtomicU64::new(0),
            unicast: AtomicU64::new(0),
            multicast: AtomicU64::new(0),
            refused: Default::default(),
            multicast_fcnt: Default::default(),
            fcnt_reused: AtomicU64::new(0),
        });
        let app = Router::new().route("/thingpark/lrc/rest/downlink", post(downlink)).with_state(shared.clone());
        let listening = listen::serve(app, listen, "ThingPark peer").await?;
        let (as_id, as_key) = (shared.as_id.clone(), shared.as_key.clone());
        let pump = tokio::spawn(post_each(shared.fleet.clone(), shared.uplink_url.clone(), shared.coverage.clone(), move |http, url, up| report(http, url, up, &as_id, &as_key)));
        Ok(Self { listening, shared, tasks: vec![pump] })
    }

    pub fn url(&self) -> String {
        self.listening.url()
    }

    /// What the operator does in ThingPark: a multicast device for the
    /// group, with its DevAddr and session keys.
    pub fn provision_multicast_device(&self, group_eui: Eui, keys: GroupSessionKeys) {
        self.shared.multicast_devices.lock().unwrap().insert(group_eui, keys);
    }

    /// Where DevEUI_uplink reports go: the host's `/backends/{id}/uplink`.
    pub fn post_uplinks_to(&self, url: &str) {
        *self.shared.uplink_url.lock().unwrap() = Some(url.to_string());
    }

    /// Hear only these devices' uplinks: the rest of the fleet is behind
    /// another network.
    pub fn covers(&self, devices: impl IntoIterator<Item = Eui>) {
        *self.shared.coverage.lock().unwrap() = Some(devices.into_iter().collect());
    }

    /// Answer the next `n` downlinks with HTTP 500.
    pub fn fail_next(&self, n: u64) {
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }

    /// Downlinks taken: (unicast, multicast).
    pub fn downlinks(&self) -> (u64, u64) {
        (self.shared.unicast.load(Ordering::SeqCst), self.shared.multicast.load(Ordering::SeqCst))
    }

    /// Downlinks refused, by HTTP status.
    /// From now on every downlink request waits `ms` (real time) first.
    pub fn hang(&self, ms: u64) {
        self.shared.hang_ms.store(ms, Ordering::SeqCst);
    }

    /// Downlink requests waiting in a hang now.
    pub fn hanging(&self) -> u64 {
        self.shared.hanging.load(Ordering::SeqCst)
    }

    /// Multicast downlinks refused for a frame counter already used.
    pub fn fcnt_reused(&self) -> u64 {
        self.shared.fcnt_reused.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> HashMap<u16, u64> {
        self.shared.refused.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_the_documented_vectors() {
        let q = "DevEUI=000000000F1D8693&FPort=1&Payload=00&AS_ID=app1.sample.com&Time=2016-01-11T14:28:00";
        assert_eq!(downlink_token(q, "46ab678cd45df4a4e4b375Eacd096acc"), "b5a84fe9c8921e9de359e3041a37b76c4b122f6f9b83577b5596c842052f7e62");
        // Signed with Time decoded (sent as 14%3A28%3A00.333%2B02%3A00).
        let q = "DevEUI=000000000F1D8693&FPort=1&Payload=00&AS_ID=app1.sample.com&Time=2016-01-11T14:28:00.333+02:00";
        assert_eq!(downlink_token(q, "46ab678cd45df4a4e4b375Eacd096acc"), "ea8f31d2299cbece8e180a3012766c4df15fe3cf2e142d9fdf4035b5894ec886");
        let q = "LrnDevEui=0059AC000010020D&LrnFPort=2&LrnInfos=TWA_100006246.167.AS-1-1361149&AS_ID=hookbin&Time=2016-07-05T08:58:26.911+02:00";
        assert_eq!(
            uplink_token("100006246", "0059AC000010020D", "2", "3", "00277c0878fd9b2e000000000000ffff", q, "00112233445566778899aabbccddeeff"),
            "18f44bb294f9dd33b5168eeb92a0c7f9fa807914097dc9bb2ed5a789a65fad33"
        );
    }
}
