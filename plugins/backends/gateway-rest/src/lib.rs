//! Backend for a gateway that runs FOTA itself, through its REST API
//! (MultiTech mPower; seed 000 and the gateway's OpenAPI file, see
//! `docs/networks/mpower-gateway.md`):
//!
//! - `POST /api/login {"username","password"}` → a session cookie, whatever
//!   its name (`token`, `session` and `PHPSESSID` are all documented);
//!   every operation logs in first and out at the end: the plugin keeps no
//!   state, and sessions expire;
//! - `GET /api/lora/status` first: no session is scheduled while the LoRa
//!   network server is not running;
//! - FOTA: upload the file (multipart `fotafile`, or `file` as the command
//!   reference names it) with a 600 s timeout, then `POST /api/lora/fota`;
//!   a message: upload it as a multicast message file, then
//!   `POST /api/lora/mcm` in the Binary format;
//! - our job is found by the file we uploaded (`input_filename`) or the
//!   name we asked for (`schedule_filename`): the gateway may name its
//!   schedules itself;
//! - `fotaschedule`, `fotaprogress` and `fotaresults` are read in both
//!   documented shapes: the seed's objects with per-device lists, and the
//!   OpenAPI file's arrays with `current_phase` and counts as strings;
//! - cancel: `DELETE /api/lora/fotaschedule/{the gateway's name}`.
//!
//! The host runs such a campaign as one offloaded stage. Settings: `url`,
//! `username`. Secret: `password`.

use airlift_plugin_sdk::backend::airlift::plugin::backend_types::{BackendError, Instance};
use airlift_plugin_sdk::backend::airlift::plugin::http::Response;
use airlift_plugin_sdk::backend::airlift::plugin::types::MulticastGroup;
use airlift_plugin_sdk::backend_support::*;
#[allow(unused_imports)]
use airlift_plugin_sdk::hex::*;
use airlift_plugin_sdk_offload::exports::airlift::plugin::backend::*;
use airlift_plugin_sdk_offload::exports::airlift::plugin::offload::{self, OffloadDevice, OffloadJob, OffloadPayload, OffloadState, OffloadStatus};
use serde_json::{json, Value};

struct Gateway;
airlift_plugin_sdk_offload::export!(Gateway);

const PASSWORD: &str = "password";
/// Seed 000: "Timeout: 10 minutes (600 seconds) recommended for large files".
const UPLOAD_TIMEOUT_MS: u32 = 600_000;

/// The gateway writes EUIs dash-separated: `00-80-00-ff-00-00-00-02`.
fn dashed(eui: u64) -> String {
    eui.to_be_bytes().iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join("-")
}

fn undashed(text: &str) -> Option<u64> {
    let hex: String = text.chars().filter(|c| *c != '-' && *c != ':').collect();
    parse_eui(&hex.to_ascii_lowercase())
}

/// A logged-in session: the cookies the gateway set.
struct Session<'a> {
    inst: &'a Instance,
    cookie: String,
}

impl<'a> Session<'a> {
    fn open(inst: &'a Instance) -> Result<Self, BackendError> {
        let body = format!(r#"{{"username":{},"password":"{{{{secret:{PASSWORD}}}}}"}}"#, Value::from(setting(inst, "username")?));
        let resp = send("POST", format!("{}/api/login", base_url(inst)?), vec![header("content-type", "application/json")], body.into_bytes())?;
        let cookie = resp
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("set-cookie"))
            .filter_map(|h| h.value.split(';').next().map(|c| c.trim().to_string()))
            .filter(|c| c.contains('='))
            .collect::<Vec<_>>()
            .join("; ");
        if cookie.is_empty() {
            return Err(BackendError::Unauthorized("the gateway set no session cookie".into()));
        }
        Ok(Session { inst, cookie })
    }

    /// A JSON call; a 200 that says it failed is refused too.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, BackendError> {
        let mut headers = vec![header("cookie", &self.cookie)];
        let bytes = match body {
            Some(b) => {
                headers.push(header("content-type", "application/json"));
                b.to_string().into_bytes()
            }
            None => vec![],
        };
        let resp = send(method, format!("{}{path}", base_url(self.inst)?), headers, bytes)?;
        let answer: Value = serde_json::from_slice(&resp.body).map_err(|e| BackendError::Unavailable(format!("{path}: answer is not JSON: {e}")))?;
        if answer["success"] == json!(false) || answer["result"]["status"] == json!("failure") || answer["status"] == json!("fail") {
            return Err(BackendError::Rejected(format!("{path}: the gateway says it failed: {}", answer["error"].as_str().unwrap_or(""))));
        }
        Ok(answer)
    }

    /// Upload a file as multipart `field`, with the long upload timeout.
    fn upload(&self, path: &str, field: &str, filename: &str, data: &[u8]) -> Result<Response, BackendError> {
        let boundary = "airlift-form-7d1c0e4b9a";
        let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let headers = vec![header("cookie", &self.cookie), header("content-type", &format!("multipart/form-data; boundary={boundary}"))];
        send_raw("POST", format!("{}{path}", base_url(self.inst)?), headers, body, UPLOAD_TIMEOUT_MS)
    }

    /// Upload under the seed's field name, then under the other documented
    /// one if the gateway refuses the request (400).
    fn upload_file(&self, path: &str, fields: [&str; 2], filename: &str, data: &[u8]) -> Result<(), BackendError> {
        let mut resp = self.upload(path, fields[0], filename, data)?;
        if resp.status == 400 {
            resp = self.upload(path, fields[1], filename, data)?;
        }
        match resp.status {
            // The endpoint is not there: not a gateway's API.
            404 => Err(BackendError::Invalid(format!("upload: HTTP 404 at {path}: is the URL the gateway's?"))),
            _ => check_status(resp).map(drop),
        }
    }
}

impl Drop for Session<'_> {
    /// Log out, so sessions do not pile up on the gateway.
    fn drop(&mut self) {
        if let Ok(url) = base_url(self.inst) {
            let _ = send("POST", format!("{url}/api/logout"), vec![header("cookie", &self.cookie)], vec![]);
        }
    }
}

/// A list the gateway answers with: the OpenAPI file's bare `result`
/// array, or the seed's `result.{key}`.
fn items<'v>(answer: &'v Value, seed_key: &str) -> &'v [Value] {
    answer["result"].as_array().or_else(|| answer["result"][seed_key].as_array()).map(Vec::as_slice).unwrap_or(&[])
}

/// Our job's entry: named as we asked, or made from the file we uploaded.
fn is_ours(item: &Value, name: &str) -> bool {
    let file = file_name(name);
    ["filename", "schedule_filename", "name"].iter().any(|k| item[*k].as_str() == Some(name))
        || ["input_filename", "filename", "fotaFile"].iter().any(|k| item[*k].as_str() == Some(file.as_str()))
}

/// The file a job uploads: unique per job, so it identifies it.
fn file_name(job: &str) -> String {
    format!("{job}.bin")
}

/// A count or percentage the gateway may send as a string.
fn number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().trim_end_matches('%').parse().ok()))
}

fn state_of(status: &str) -> OffloadState {
    match status.to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "complete" | "completed" | "done" => OffloadState::Succeeded,
        "failed" | "fail" | "failure" | "error" | "timeout" => OffloadState::Failed,
        "pending" | "scheduled" | "waiting" | "setup" => OffloadState::Pending,
        _ => OffloadState::Running,
    }
}

fn device_entry(d: &Value) -> Option<OffloadDevice> {
    let dev_eui = d["deveui"].as_str().or(d["devEui"].as_str()).and_then(undashed)?;
    let status = d["status"].as_str().unwrap_or("in_progress");
    let state = state_of(status);
    let percent = number(&d["percent_complete"]).unwrap_or(if state == OffloadState::Succeeded { 100.0 } else { 0.0 }) as f32;
    let error = (state == OffloadState::Failed).then(|| d["error"].as_str().map(String::from).unwrap_or_else(|| format!("gateway reports '{status}'")));
    Some(OffloadDevice { dev_eui, percent, state, error })
}

/// Devices of a finished job whose result has only counts (the OpenAPI
/// shape): all succeeded when every device is counted a success; else no
/// device can be told apart, and none is claimed to hold the file.
fn counted_outcome(result: &Value, devices: &[u64]) -> Vec<OffloadDevice> {
    let success = number(&result["success"]).unwrap_or(0.0) as usize;
    let all = success >= devices.len();
    let error = (!all).then(|| format!("the gateway counts {success} of {} devices a success and names none", devices.len()));
    devices
        .iter()
        .map(|&dev_eui| OffloadDevice {
            dev_eui,
            percent: if all { 100.0 } else { 0.0 },
            state: if all { OffloadState::Succeeded } else { OffloadState::Failed },
            error: error.clone(),
        })
        .collect()
}

/// The job's devices, remembered in its handle: `name` then the devices.
fn handle_of(name: &str, devices: &[u64]) -> String {
    std::iter::once(name.to_string()).chain(devices.iter().map(|d| format!("{d:016x}"))).collect::<Vec<_>>().join(" ")
}

fn parse_handle(handle: &str) -> (String, Vec<u64>) {
    let mut parts = handle.split(' ');
    let name = parts.next().unwrap_or("").to_string();
    (name, parts.filter_map(parse_eui).collect())
}

/// The LoRa network server must run for a session to go out (its PID; 0
/// when it is not running).
fn require_network_server(session: &Session) -> Result<(), BackendError> {
    let status = session.call("GET", "/api/lora/status", None)?;
    match status["result"]["lora-network-server"].as_u64() {
        Some(pid) if pid > 0 => Ok(()),
        _ => Err(BackendError::Unavailable("the gateway's LoRa network server is not running (GET /api/lora/status)".into())),
    }
}

impl Guest for Gateway {
    fn describe() -> BackendInfo {
        BackendInfo {
            name: "gateway-rest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "A gateway that runs FOTA sessions itself".into(),
            capabilities: Capabilities {
                unicast: false,
                multicast_class_b: false,
                multicast_class_c: true,
                multicast_interval_ms: 2000,
                unicast_interval_ms: 1000,
            },
        }
    }

    fn validate(inst: Instance) -> Result<(), BackendError> {
        base_url(&inst)?;
        setting(&inst, "username")?;
        require_secret(&inst, PASSWORD)
    }

    fn create_multicast_group(_inst: Instance, _group: MulticastGroup, _devices: Vec<u64>) -> Result<(), BackendError> {
        // The gateway sets its groups up itself when a session starts.
        Ok(())
    }

    fn delete_multicast_group(_inst: Instance, _group: MulticastGroup) -> Result<(), BackendError> {
        Ok(())
    }

    fn send_unicast(_inst: Instance, _d: UnicastDownlink) -> Result<SendReceipt, BackendError> {
        Err(BackendError::Unsupported("the gateway's API has no unicast downlinks: campaigns run offloaded".into()))
    }

    fn send_multicast(_inst: Instance, _d: MulticastDownlink) -> Result<SendReceipt, BackendError> {
        Err(BackendError::Unsupported("the gateway's API has no raw multicast downlinks: campaigns run offloaded".into()))
    }

    fn parse_reports(_inst: Instance, _request: IncomingRequest) -> Result<Vec<Report>, BackendError> {
        Ok(vec![])
    }
}

impl offload::Guest for Gateway {
    fn start(inst: Instance, job: OffloadJob) -> Result<String, BackendError> {
        if job.group.group_id > 3 {
            return Err(BackendError::Invalid("the gateway has multicast groups 0-3 only".into()));
        }
        if let OffloadPayload::Message(m) = &job.payload {
            if !(1..=220).contains(&m.fport) {
                return Err(BackendError::Invalid(format!("the gateway sends messages on ports 1-220, not {}", m.fport)));
            }
        }
        let handle = handle_of(&job.name, &job.devices);
        let session = Session::open(&inst)?;
        // Starting again what the gateway already has (a host that crashed
        // between starting a job and recording it) must not schedule it twice.
        let scheduled = session.call("GET", "/api/lora/fotaschedule", None)?;
        let results = session.call("GET", "/api/lora/fotaresults", None)?;
        if items(&scheduled, "scheduled").iter().chain(items(&results, "operations")).any(|i| is_ours(i, &job.name)) {
            return Ok(handle);
        }
        require_network_server(&session)?;
        let devices: Vec<String> = job.devices.iter().map(|d| dashed(*d)).collect();
        let file = file_name(&job.name);
        // Broadcasting starts at scheduled + setup + launch (seed 000).
        let scheduled_s = job.scheduled_unix_ms / 1000;
        let setup_s = job.setup_seconds as u64;
        let timing = json!({
            "scheduledTimeSinceUnixEpoch": scheduled_s,
            "setupTimeFromScheduledTime": setup_s,
            "launchTimeFromSetupTime": (job.start_unix_ms / 1000).saturating_sub(scheduled_s + setup_s),
        });
        let mut body = match job.payload {
            OffloadPayload::Message(m) => {
                session.upload_file("/api/command/upload_lora_multicast", ["messagefile", "file"], &file, &job.data)?;
                json!({
                    "transmission_type": "Message",
                    "multicastMessage": {
                        "messageFormat": "Binary",
                        "messagePayload": "",
                        "messagePayloadFile": file,
                        "messagePort": m.fport,
                        // Minutes, as the gateway's API takes them.
                        "multicastSessionTimeout": m.timeout_minutes.clamp(0, 15),
                    },
                })
            }
            OffloadPayload::File(f) => {
                session.upload_file("/api/command/upload_lora_fota_file", ["fotafile", "file"], &file, &job.data)?;
                json!({
                    "transmission_type": "FOTA",
                    // The descriptor most significant byte first: seed 000
                    // pairs "0001020304" with 16909060 (0x01020304).
                    "fragmentDesc": format!("{:08x}", f.descriptor),
                    "fotaDescriptor": f.descriptor,
                    "fotaFile": file,
                })
            }
        };
        let is_message = matches!(job.payload, OffloadPayload::Message(_));
        let fields = body.as_object_mut().expect("built as an object");
        fields.extend(timing.as_object().cloned().unwrap_or_default());
        fields.insert("endDeviceDeveuis".into(), json!(devices));
        fields.insert("multicastGroupID".into(), json!(job.group.group_id));
        fields.insert("keep_log".into(), json!(true));
        fields.insert("schedule_filename".into(), json!(job.name));
        let path = if is_message { "/api/lora/mcm" } else { "/api/lora/fota" };
        session.call("POST", path, Some(body))?;
        Ok(handle)
    }

    fn poll(inst: Instance, handle: String) -> Result<OffloadStatus, BackendError> {
        let (name, devices) = parse_handle(&handle);
        let session = Session::open(&inst)?;
        let results = session.call("GET", "/api/lora/fotaresults", None)?;
        if let Some(result) = items(&results, "operations").iter().find(|o| is_ours(o, &name)) {
            let devices = match result["devices"].as_array() {
                Some(listed) => listed.iter().filter_map(device_entry).collect(),
                None => counted_outcome(result, &devices),
            };
            return Ok(OffloadStatus { finished: true, devices });
        }
        let progress = session.call("GET", "/api/lora/fotaprogress", None)?;
        let devices = match progress["result"]["devices"].as_array() {
            Some(listed) => listed.iter().filter_map(device_entry).collect(),
            // Per operation: our job's phase and percentage for each device.
            None => match items(&progress, "operations").iter().find(|o| is_ours(o, &name)) {
                Some(op) => {
                    let percent = number(&op["overall_percent_complete"]).unwrap_or(0.0) as f32;
                    let state = state_of(op["current_phase"].as_str().unwrap_or("running"));
                    devices.iter().map(|&dev_eui| OffloadDevice { dev_eui, percent, state, error: None }).collect()
                }
                None => vec![],
            },
        };
        Ok(OffloadStatus { finished: false, devices })
    }

    fn cancel(inst: Instance, handle: String) -> Result<(), BackendError> {
        let (name, _) = parse_handle(&handle);
        let session = Session::open(&inst)?;
        let scheduled = session.call("GET", "/api/lora/fotaschedule", None)?;
        // The gateway's own name for our schedule; none when it already ran.
        let Some(theirs) = items(&scheduled, "scheduled").iter().find(|i| is_ours(i, &name)).and_then(|i| i["filename"].as_str().map(String::from)) else {
            return Ok(());
        };
        session.call("DELETE", &format!("/api/lora/fotaschedule/{theirs}"), None).map(drop)
    }
}
