//! Backend for a gateway that runs FOTA itself, through its REST API:
//!
//! - `POST /api/login {"username","password"}` → cookie `token` (every call
//!   logs in first: the plugin keeps no state, and sessions expire);
//! - FOTA: upload `fotafile` (multipart) to `/api/command/upload_lora_fota_file`,
//!   then `POST /api/lora/fota`; a message: `POST /api/lora/mcm` with a
//!   Hexadecimal payload;
//! - progress: `GET /api/lora/fotaprogress` while it runs, then
//!   `GET /api/lora/fotaresults`; cancel: `DELETE /api/lora/fotaschedule/{name}`.
//!
//! The host runs such a campaign as one offloaded stage. Settings: `url`,
//! `username`. Secret: `password`.

use airlift_plugin_sdk::backend::exports;
use airlift_plugin_sdk::backend_support::*;
#[allow(unused_imports)]
use airlift_plugin_sdk::hex::*;

use exports::airlift::plugin::backend::*;
use serde_json::{json, Value};

struct Gateway;
airlift_plugin_sdk::backend::export!(Gateway);

const PASSWORD: &str = "password";

/// The gateway writes EUIs dash-separated: `00-80-00-ff-00-00-00-02`.
fn dashed(eui: u64) -> String {
    eui.to_be_bytes().iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join("-")
}

fn undashed(text: &str) -> Option<u64> {
    let hex: String = text.chars().filter(|c| *c != '-' && *c != ':').collect();
    parse_eui(&hex.to_ascii_lowercase())
}

/// Log in; the session cookie for the calls that follow.
fn login(inst: &Instance) -> Result<String, BackendError> {
    let body = format!(r#"{{"username":{},"password":"{{{{secret:{PASSWORD}}}}}"}}"#, Value::from(setting(inst, "username")?));
    let resp = send("POST", format!("{}/api/login", base_url(inst)?), vec![header("content-type", "application/json")], body.into_bytes())?;
    resp.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("set-cookie"))
        .find_map(|h| h.value.split(';').next().filter(|c| c.trim_start().starts_with("token=")).map(|c| c.trim().to_string()))
        .ok_or_else(|| BackendError::Unauthorized("the gateway set no session cookie".into()))
}

fn call(inst: &Instance, cookie: &str, method: &str, path: &str, body: Option<Value>) -> Result<Value, BackendError> {
    let mut headers = vec![header("cookie", cookie)];
    let bytes = match body {
        Some(b) => {
            headers.push(header("content-type", "application/json"));
            b.to_string().into_bytes()
        }
        None => vec![],
    };
    let resp = send(method, format!("{}{path}", base_url(inst)?), headers, bytes)?;
    serde_json::from_slice(&resp.body).map_err(|e| BackendError::Unavailable(format!("{path}: answer is not JSON: {e}")))
}

fn upload(inst: &Instance, cookie: &str, path: &str, field: &str, filename: &str, data: &[u8]) -> Result<(), BackendError> {
    let boundary = "airlift-form-7d1c0e4b9a";
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").into_bytes();
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let headers = vec![header("cookie", cookie), header("content-type", &format!("multipart/form-data; boundary={boundary}"))];
    send("POST", format!("{}{path}", base_url(inst)?), headers, body).map(drop)
}

/// A count or percentage the gateway may send as a string.
fn number(v: &Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().trim_end_matches('%').parse().ok()))
}

fn state_of(status: &str) -> OffloadState {
    match status.to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "complete" | "completed" | "done" => OffloadState::Succeeded,
        "failed" | "fail" | "failure" | "error" | "timeout" => OffloadState::Failed,
        "pending" | "scheduled" | "waiting" => OffloadState::Pending,
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
                offload: true,
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

    fn offload_start(inst: Instance, job: OffloadJob) -> Result<String, BackendError> {
        if job.group.group_id > 3 {
            return Err(BackendError::Invalid("the gateway has multicast groups 0-3 only".into()));
        }
        let cookie = login(&inst)?;
        // Starting again what the gateway already has (a host that crashed
        // between starting a job and recording it) must not schedule it twice.
        let named = |list: &Value| list.as_array().is_some_and(|l| l.iter().any(|o| o["filename"].as_str() == Some(job.name.as_str())));
        let scheduled = call(&inst, &cookie, "GET", "/api/lora/fotaschedule", None)?;
        let results = call(&inst, &cookie, "GET", "/api/lora/fotaresults", None)?;
        if named(&scheduled["result"]["scheduled"]) || named(&results["result"]["operations"]) {
            return Ok(job.name);
        }
        let devices: Vec<String> = job.devices.iter().map(|d| dashed(*d)).collect();
        let start_s = job.start_unix_ms / 1000;
        if job.message {
            let body = json!({
                "transmission_type": "Message",
                "endDeviceDeveuis": devices,
                "multicastGroupID": job.group.group_id,
                "multicastMessage": {
                    "messageFormat": "Hexadecimal",
                    "messagePayload": to_hex(&job.data),
                    "messagePort": job.fport,
                    "multicastSessionTimeout": job.session_timeout.clamp(0, 15),
                },
                "scheduledTimeSinceUnixEpoch": start_s,
                "keep_log": true,
                "schedule_filename": job.name,
            });
            call(&inst, &cookie, "POST", "/api/lora/mcm", Some(body))?;
        } else {
            let file = format!("{}.bin", job.name);
            upload(&inst, &cookie, "/api/command/upload_lora_fota_file", "fotafile", &file, &job.data)?;
            let body = json!({
                "transmission_type": "FOTA",
                "endDeviceDeveuis": devices,
                "multicastGroupID": job.group.group_id,
                "scheduledTimeSinceUnixEpoch": start_s,
                "setupTimeFromScheduledTime": 0,
                "fragmentDesc": to_hex(&job.descriptor.to_le_bytes()),
                "fotaFile": file,
                "fotaDescriptor": job.descriptor,
                "keep_log": true,
                "schedule_filename": job.name,
            });
            call(&inst, &cookie, "POST", "/api/lora/fota", Some(body))?;
        }
        Ok(job.name)
    }

    fn offload_poll(inst: Instance, handle: String) -> Result<OffloadStatus, BackendError> {
        let cookie = login(&inst)?;
        let results = call(&inst, &cookie, "GET", "/api/lora/fotaresults", None)?;
        let operations = results["result"]["operations"].as_array().cloned().unwrap_or_default();
        if let Some(op) = operations.iter().find(|o| o["filename"].as_str() == Some(handle.as_str())) {
            let devices = op["devices"].as_array().map(|d| d.iter().filter_map(device_entry).collect()).unwrap_or_default();
            return Ok(OffloadStatus { finished: true, devices });
        }
        let progress = call(&inst, &cookie, "GET", "/api/lora/fotaprogress", None)?;
        let devices = progress["result"]["devices"].as_array().map(|d| d.iter().filter_map(device_entry).collect()).unwrap_or_default();
        Ok(OffloadStatus { finished: false, devices })
    }

    fn offload_cancel(inst: Instance, handle: String) -> Result<(), BackendError> {
        let cookie = login(&inst)?;
        match call(&inst, &cookie, "DELETE", &format!("/api/lora/fotaschedule/{handle}"), None) {
            // Already run or gone.
            Err(BackendError::Rejected(m)) if m.starts_with("HTTP 404") => Ok(()),
            other => other.map(drop),
        }
    }
}
