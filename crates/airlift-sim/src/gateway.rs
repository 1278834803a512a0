//! A gateway that runs FOTA itself, on loopback, for the `gateway-rest`
//! backend plugin: MultiTech mPower's LoRa REST API as seed 000 and the
//! gateway's OpenAPI file document it (`docs/networks/mpower-gateway.md`):
//! login cookie and logout, multipart uploads under either documented
//! field name, `/api/lora/status`, `/api/lora/fota` and `/mcm` with their
//! validation errors, and `fotaprogress`, `fotaresults`, `fotaschedule` in
//! either documented shape ([`ResponseShape`]). In the OpenAPI shape the
//! gateway names schedules itself. The session it runs is
//! modelled, not spoken: from its start it sends a fragment every 2 s;
//! each device, given the fleet's loss, has the file after enough of them
//! and then holds it exactly (the gateway's own protocol is its business).
//! Silent devices never finish.

use crate::fleet::SimFleet;
use airlift::model::Eui;
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use crate::listen::{self, Listen, Listening};

/// One fragment every this many ms, of this many bytes.
const FRAGMENT_INTERVAL_MS: u64 = 2_000;
const FRAGMENT_SIZE: usize = 200;

/// Which of the documented answer shapes the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseShape {
    /// Seed 000: `result.devices`, `result.operations[]`, `result.scheduled[]`.
    Seed,
    /// The OpenAPI file: bare `result` arrays per operation, with
    /// `current_phase`, `input_filename`, counts as strings, no devices.
    OpenApi,
}

/// The broadcast starts this long after setup when the request says
/// nothing (seed 000: "Calculated"; the web UI's default).
const DEFAULT_LAUNCH_S: u64 = 60;

struct Job {
    name: String,
    kind: &'static str,
    devices: Vec<Eui>,
    file: Vec<u8>,
    /// The uploaded file the job sends.
    input_filename: String,
    /// The TS004 descriptor, as the gateway read `fragmentDesc`.
    descriptor: Option<u32>,
    /// When the broadcast starts (scheduled + setup + launch).
    start_ms: u64,
    /// The schedule as asked: scheduled (Unix s), setup and launch (s).
    timing: [u64; 3],
    /// Fragments each device needs (None: it never completes).
    needs: Vec<Option<u64>>,
    finished: bool,
}

struct Shared {
    fleet: Arc<SimFleet>,
    username: String,
    password: String,
    sessions: Mutex<Vec<String>>,
    files: Mutex<HashMap<String, Vec<u8>>>,
    last_upload: Mutex<Option<String>>,
    shape: Mutex<ResponseShape>,
    network_server_running: std::sync::atomic::AtomicBool,
    /// Schedules made so far (names the gateway makes up are numbered).
    scheduled: std::sync::atomic::AtomicU64,
    jobs: Mutex<Vec<Job>>,
    /// Requests refused, by HTTP status.
    refused: Mutex<HashMap<u16, u64>>,
    /// Answer this many next progress or result requests with a 500.
    fail_next: std::sync::atomic::AtomicU64,
}

pub struct GatewayPeer {
    listening: Listening,
    shared: Arc<Shared>,
}

impl Drop for GatewayPeer {
    fn drop(&mut self) {
        self.listening.task.abort();
    }
}

type ApiResult = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn ok(result: Value) -> ApiResult {
    Ok(Json(json!({ "code": 200, "status": "success", "result": result })))
}

impl Shared {
    fn fail(&self, status: StatusCode, error: &str) -> (StatusCode, Json<Value>) {
        *self.refused.lock().unwrap().entry(status.as_u16()).or_default() += 1;
        (status, Json(json!({ "code": status.as_u16(), "status": "fail", "error": error })))
    }

    /// A 500, while `fail_next` lasts.
    fn maybe_fail(&self) -> Result<(), (StatusCode, Json<Value>)> {
        use std::sync::atomic::Ordering;
        match self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => Err(self.fail(StatusCode::INTERNAL_SERVER_ERROR, "LoRa service not responding")),
            Err(_) => Ok(()),
        }
    }

    fn check_session(&self, headers: &HeaderMap) -> Result<(), (StatusCode, Json<Value>)> {
        let cookies = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let sessions = self.sessions.lock().unwrap();
        if cookies.split(';').filter_map(|c| c.trim().strip_prefix("token=")).any(|t| sessions.iter().any(|s| s == t)) {
            Ok(())
        } else {
            drop(sessions);
            Err(self.fail(StatusCode::UNAUTHORIZED, "Login and obtain valid session token"))
        }
    }

    /// Bring jobs up to the fleet's time; finished FOTA jobs leave their
    /// devices with the file.
    fn advance(&self) {
        let now = self.fleet.now_unix_ms();
        for job in self.jobs.lock().unwrap().iter_mut().filter(|j| !j.finished) {
            let sent = now.saturating_sub(job.start_ms) / FRAGMENT_INTERVAL_MS;
            let longest = job.needs.iter().flatten().max().copied().unwrap_or(0);
            // The gateway stops once every device it reaches is done, and
            // waits for silent ones up to twice the file's fragments.
            let nb = job.file.len().div_ceil(FRAGMENT_SIZE) as u64;
            let reachable_done = sent >= longest;
            let waited_for_silent = job.needs.iter().all(Option::is_some) || sent >= 2 * nb + 10;
            if now >= job.start_ms && reachable_done && waited_for_silent {
                job.finished = true;
                if job.kind == "FOTA" {
                    for (d, need) in job.devices.iter().zip(&job.needs) {
                        if need.is_some_and(|n| n <= sent) {
                            self.fleet.deliver_file(*d, &job.file);
                        }
                    }
                }
            }
        }
    }

    fn device_view(job: &Job, now: u64) -> Vec<Value> {
        let sent = now.saturating_sub(job.start_ms) / FRAGMENT_INTERVAL_MS;
        job.devices
            .iter()
            .zip(&job.needs)
            .map(|(d, need)| {
                let percent = need.map_or(0.0, |n| (sent as f64 * 100.0 / n.max(1) as f64).min(100.0));
                let status = match (job.finished, need.is_some_and(|n| n <= sent)) {
                    (true, true) => "success",
                    (true, false) => "failed",
                    (false, _) => "in_progress",
                };
                json!({ "deveui": dashed(*d), "percent_complete": percent, "status": status })
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn schedule(&self, name: String, kind: &'static str, devices: Vec<Eui>, file: Vec<u8>, input_filename: String, descriptor: Option<u32>, timing: [u64; 3]) {
        let start_ms = timing.iter().sum::<u64>() * 1000;
        let nb = file.len().div_ceil(FRAGMENT_SIZE).max(1) as u64;
        let needs = self
            .fleet
            .gateway_reach(&devices)
            .into_iter()
            .map(|(eui, silent, loss)| (!silent).then(|| ((nb as f64 / (1.0 - loss)).ceil() as u64) + eui.0 % 3))
            .collect();
        self.jobs.lock().unwrap().push(Job { name, kind, devices, file, input_filename, descriptor, start_ms, timing, needs, finished: false });
    }
}

fn dashed(eui: Eui) -> String {
    eui.0.to_be_bytes().iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join("-")
}

/// `00-80-00-ff-00-00-00-02` only.
fn parse_dashed(text: &str) -> Option<Eui> {
    let parts: Vec<&str> = text.split('-').collect();
    if parts.len() != 8 || parts.iter().any(|p| p.len() != 2) {
        return None;
    }
    u64::from_str_radix(&parts.concat(), 16).ok().map(Eui)
}

/// The devices and group of a schedule request, validated as the gateway does.
fn targets(s: &Shared, body: &Value) -> Result<Vec<Eui>, (StatusCode, Json<Value>)> {
    let devices = body["endDeviceDeveuis"].as_array().ok_or_else(|| s.fail(StatusCode::BAD_REQUEST, "endDeviceDeveuis is required"))?;
    let devices: Option<Vec<Eui>> = devices.iter().map(|d| d.as_str().and_then(parse_dashed)).collect();
    let devices = devices.filter(|d| !d.is_empty()).ok_or_else(|| s.fail(StatusCode::BAD_REQUEST, "Invalid device EUI format"))?;
    match body["multicastGroupID"].as_u64() {
        Some(0..=3) => Ok(devices),
        _ => Err(s.fail(StatusCode::BAD_REQUEST, "Multicast group ID must be 0-3")),
    }
}

/// The schedule asked for, with seed 000's defaults: scheduled (Unix s,
/// now), setup and launch (s); the broadcast starts at their sum.
fn timing(s: &Shared, body: &Value) -> [u64; 3] {
    [
        body["scheduledTimeSinceUnixEpoch"].as_u64().unwrap_or_else(|| s.fleet.now_unix_ms() / 1000),
        body["setupTimeFromScheduledTime"].as_u64().unwrap_or(0),
        body["launchTimeFromSetupTime"].as_u64().unwrap_or(DEFAULT_LAUNCH_S),
    ]
}

/// The schedule's name: the one asked for (seed shape), else the
/// gateway's own, `<kind>_<scheduled>_<setup>` (seed 000, the web UI), with
/// a serial number in front in the OpenAPI shape (its DELETE example
/// `fota_12345678_1734480000_300`).
fn schedule_name(s: &Shared, body: &Value, prefix: &str) -> String {
    let serial = s.scheduled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let asked = body["schedule_filename"].as_str().filter(|n| !n.is_empty());
    let scheduled = body["scheduledTimeSinceUnixEpoch"].as_u64().unwrap_or_else(|| s.fleet.now_unix_ms() / 1000);
    let setup = body["setupTimeFromScheduledTime"].as_u64().unwrap_or(0);
    match (*s.shape.lock().unwrap(), asked) {
        (ResponseShape::Seed, Some(name)) => name.to_string(),
        (ResponseShape::Seed, None) => format!("{prefix}_{scheduled}_{setup}"),
        (ResponseShape::OpenApi, _) => format!("{prefix}_{serial:08}_{scheduled}_{setup}"),
    }
}

fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

async fn login(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    if body["username"].as_str() != Some(s.username.as_str()) || body["password"].as_str() != Some(s.password.as_str()) {
        return s.fail(StatusCode::UNAUTHORIZED, "Invalid username or password").into_response();
    }
    let token = format!("{:016x}{:08x}", s.fleet.now_unix_ms(), s.sessions.lock().unwrap().len());
    s.sessions.lock().unwrap().push(token.clone());
    ([(header::SET_COOKIE, format!("token={token}; Path=/; HttpOnly"))], Json(json!({ "code": 200, "status": "success", "result": { "username": s.username, "permission": "admin", "token": token } }))).into_response()
}

async fn logout(State(s): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult {
    s.check_session(&headers)?;
    let cookies = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    s.sessions.lock().unwrap().retain(|t| !cookies.split(';').any(|c| c.trim() == format!("token={t}")));
    Ok(Json(json!({ "code": 200, "status": "success" })))
}

/// Service PIDs; 0 when a service is not running.
async fn status(State(s): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult {
    s.check_session(&headers)?;
    let running = s.network_server_running.load(std::sync::atomic::Ordering::SeqCst);
    ok(json!({ "lora-basic-station": 0, "lora-cloud-connector": 3332, "lora-lens-server": 0, "lora-network-server": if running { 12811 } else { 0 }, "lora-packet-forwarder": [12845] }))
}

/// A multipart upload under any of the documented field names (seed 000:
/// `fotafile` / `messagefile`; the command reference: `file`).
async fn upload(s: &Shared, headers: &HeaderMap, mut form: Multipart, fields: [&str; 2]) -> ApiResult {
    s.check_session(headers)?;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name().is_some_and(|n| fields.contains(&n)) {
            let name = field.file_name().unwrap_or_default().to_string();
            let bytes = field.bytes().await.map_err(|_| s.fail(StatusCode::BAD_REQUEST, "upload interrupted"))?;
            if name.is_empty() || bytes.is_empty() {
                return Err(s.fail(StatusCode::BAD_REQUEST, "the file needs a name and content"));
            }
            s.files.lock().unwrap().insert(name.clone(), bytes.to_vec());
            *s.last_upload.lock().unwrap() = Some(name);
            return Ok(Json(json!({ "code": 200, "status": "success" })));
        }
    }
    Err(s.fail(StatusCode::BAD_REQUEST, &format!("{} is required", fields.join(" or "))))
}

async fn upload_fota(State(s): State<Arc<Shared>>, headers: HeaderMap, form: Multipart) -> ApiResult {
    upload(&s, &headers, form, ["fotafile", "file"]).await
}

async fn upload_message(State(s): State<Arc<Shared>>, headers: HeaderMap, form: Multipart) -> ApiResult {
    upload(&s, &headers, form, ["messagefile", "file"]).await
}

async fn fota(State(s): State<Arc<Shared>>, headers: HeaderMap, Json(body): Json<Value>) -> ApiResult {
    s.check_session(&headers)?;
    if body["transmission_type"].as_str() != Some("FOTA") {
        return Err(s.fail(StatusCode::BAD_REQUEST, "transmission_type must be FOTA"));
    }
    let devices = targets(&s, &body)?;
    // fragmentDesc is hex, most significant byte first: seed 000 pairs
    // "0001020304" with fotaDescriptor 16909060.
    let mut descriptor = None;
    if let Some(desc) = body["fragmentDesc"].as_str() {
        let parsed = u64::from_str_radix(desc, 16).ok().filter(|d| *d <= u32::MAX as u64);
        let Some(parsed) = parsed else { return Err(s.fail(StatusCode::BAD_REQUEST, "fragmentDesc must be hex of at most 4 bytes")) };
        if body["fotaDescriptor"].as_u64().is_some_and(|d| d != parsed) {
            return Err(s.fail(StatusCode::BAD_REQUEST, "fragmentDesc and fotaDescriptor disagree"));
        }
        descriptor = Some(parsed as u32);
    }
    // The OpenAPI request names no file: the last upload goes.
    let file_name = body["fotaFile"].as_str().map(String::from).or_else(|| s.last_upload.lock().unwrap().clone()).unwrap_or_default();
    let file = s.files.lock().unwrap().get(&file_name).cloned().ok_or_else(|| s.fail(StatusCode::NOT_FOUND, "FOTA file not found. Upload file first."))?;
    let name = schedule_name(&s, &body, "fota");
    s.schedule(name, "FOTA", devices, file, file_name, descriptor, timing(&s, &body));
    ok(json!({ "status": "success" }))
}

async fn mcm(State(s): State<Arc<Shared>>, headers: HeaderMap, Json(body): Json<Value>) -> ApiResult {
    s.check_session(&headers)?;
    if body["transmission_type"].as_str() != Some("Message") {
        return Err(s.fail(StatusCode::BAD_REQUEST, "transmission_type must be Message"));
    }
    let devices = targets(&s, &body)?;
    let m = &body["multicastMessage"];
    let payload = match (m["messageFormat"].as_str(), m["messagePayload"].as_str()) {
        (Some("Hexadecimal"), Some(p)) => hex::decode(p).ok(),
        (Some("Base64"), Some(p)) => base64::Engine::decode(&base64::engine::general_purpose::STANDARD, p).ok(),
        (Some("Binary"), _) => m["messagePayloadFile"].as_str().and_then(|f| s.files.lock().unwrap().get(f).cloned()),
        _ => None,
    }
    .ok_or_else(|| s.fail(StatusCode::BAD_REQUEST, "messagePayload does not match messageFormat"))?;
    // The session timeout is optional in the OpenAPI request.
    if !m["messagePort"].as_u64().is_some_and(|p| (1..=220).contains(&p)) || m["multicastSessionTimeout"].as_u64().is_some_and(|t| t > 15) {
        return Err(s.fail(StatusCode::BAD_REQUEST, "messagePort must be 1-220 and multicastSessionTimeout 0-15"));
    }
    let input_filename = m["messagePayloadFile"].as_str().unwrap_or("").to_string();
    let name = schedule_name(&s, &body, "mcm");
    s.schedule(name, "Message", devices, payload, input_filename, None, timing(&s, &body));
    ok(json!({ "status": "success" }))
}

async fn progress(State(s): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult {
    s.check_session(&headers)?;
    s.maybe_fail()?;
    s.advance();
    let now = s.fleet.now_unix_ms();
    let jobs = s.jobs.lock().unwrap();
    let active = jobs.iter().filter(|j| !j.finished);
    if *s.shape.lock().unwrap() == ResponseShape::OpenApi {
        let operations: Vec<Value> = active
            .map(|j| {
                let devices = Shared::device_view(j, now);
                let overall = if now < j.start_ms { 0.0 } else { devices.iter().filter_map(|d| d["percent_complete"].as_f64()).sum::<f64>() / devices.len().max(1) as f64 };
                json!({ "multicast_eui": "70-b3-d5-7e-d0-00-42-6e", "transmission_type": j.kind, "input_filename": j.input_filename,
                        "current_phase": if now < j.start_ms { "SETUP" } else { "BROADCASTING" }, "overall_percent_complete": overall })
            })
            .collect();
        return ok(json!(operations));
    }
    let devices: Vec<Value> = active.filter(|j| now >= j.start_ms).flat_map(|j| Shared::device_view(j, now)).collect();
    let overall = if devices.is_empty() { 100.0 } else { devices.iter().filter_map(|d| d["percent_complete"].as_f64()).sum::<f64>() / devices.len() as f64 };
    ok(json!({ "overall_percent_complete": overall, "devices": devices }))
}

async fn results(State(s): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult {
    s.check_session(&headers)?;
    s.maybe_fail()?;
    s.advance();
    let now = s.fleet.now_unix_ms();
    let shape = *s.shape.lock().unwrap();
    let jobs = s.jobs.lock().unwrap();
    let operations: Vec<Value> = jobs
        .iter()
        .filter(|j| j.finished)
        .map(|j| {
            let devices = Shared::device_view(j, now);
            let success = devices.iter().filter(|d| d["status"] == "success").count();
            match shape {
                ResponseShape::Seed => json!({ "filename": j.name, "type": j.kind, "timestamp": time(now), "success": success, "failed": devices.len() - success, "devices": devices }),
                // Counts as strings, no devices.
                ResponseShape::OpenApi => json!({ "multicast_eui": "70-b3-d5-7e-d0-00-42-6e", "transmission_type": j.kind, "input_filename": j.input_filename,
                    "schedule_source": "Conduit", "complete_time": time(now), "result_filename": format!("{}.log", j.name),
                    "success": success.to_string(), "failed": (devices.len() - success).to_string(), "skipped": "0" }),
            }
        })
        .collect();
    match shape {
        ResponseShape::Seed => ok(json!({ "operations": operations })),
        ResponseShape::OpenApi => ok(json!(operations)),
    }
}

async fn schedule_list(State(s): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult {
    s.check_session(&headers)?;
    s.advance();
    let jobs = s.jobs.lock().unwrap();
    let pending = jobs.iter().filter(|j| !j.finished);
    match *s.shape.lock().unwrap() {
        ResponseShape::Seed => {
            let scheduled: Vec<Value> = pending.map(|j| json!({ "filename": j.name, "type": j.kind, "scheduled_time": time(j.start_ms), "devices": j.devices.len() })).collect();
            ok(json!({ "scheduled": scheduled }))
        }
        // The OpenAPI file leaves the items undescribed; these carry what
        // its other lists do.
        ResponseShape::OpenApi => {
            let scheduled: Vec<Value> = pending.map(|j| json!({ "filename": j.name, "transmission_type": j.kind, "input_filename": j.input_filename, "scheduled_time": time(j.start_ms) })).collect();
            ok(json!(scheduled))
        }
    }
}

async fn cancel(State(s): State<Arc<Shared>>, headers: HeaderMap, Path(name): Path<String>) -> ApiResult {
    s.check_session(&headers)?;
    s.advance();
    let mut jobs = s.jobs.lock().unwrap();
    let at = jobs.iter().position(|j| j.name == name && !j.finished);
    let Some(at) = at else {
        drop(jobs);
        return Err(s.fail(StatusCode::NOT_FOUND, "no such scheduled operation"));
    };
    jobs.remove(at);
    Ok(Json(json!({ "code": 200, "status": "success" })))
}

impl GatewayPeer {
    pub async fn start(fleet: Arc<SimFleet>, listen: Listen, username: &str, password: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            fleet,
            username: username.into(),
            password: password.into(),
            sessions: Default::default(),
            files: Default::default(),
            jobs: Default::default(),
            refused: Default::default(),
            fail_next: Default::default(),
            last_upload: Default::default(),
            shape: Mutex::new(ResponseShape::Seed),
            network_server_running: std::sync::atomic::AtomicBool::new(true),
            scheduled: Default::default(),
        });
        let app = Router::new()
            .route("/api/login", post(login))
            .route("/api/logout", post(logout))
            .route("/api/lora/status", get(status))
            .route("/api/command/upload_lora_fota_file", post(upload_fota))
            .route("/api/command/upload_lora_multicast", post(upload_message))
            .route("/api/lora/fota", post(fota))
            .route("/api/lora/mcm", post(mcm))
            .route("/api/lora/fotaprogress", get(progress))
            .route("/api/lora/fotaresults", get(results))
            .route("/api/lora/fotaschedule", get(schedule_list))
            .route("/api/lora/fotaschedule/{name}", delete(cancel))
            .with_state(shared.clone());
        let listening = listen::serve(app, listen, "gateway peer").await?;
        Ok(Self { listening, shared })
    }

    pub fn url(&self) -> String {
        self.listening.url()
    }

    /// Answer in this documented shape from now on.
    pub fn set_shape(&self, shape: ResponseShape) {
        *self.shared.shape.lock().unwrap() = shape;
    }

    /// Start or stop the gateway's LoRa network server.
    pub fn set_network_server_running(&self, running: bool) {
        self.shared.network_server_running.store(running, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sessions logged in and not logged out.
    pub fn open_sessions(&self) -> usize {
        self.shared.sessions.lock().unwrap().len()
    }

    /// Answer the next `n` progress or result requests with a 500.
    pub fn fail_next(&self, n: u64) {
        self.shared.fail_next.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests refused so far, by HTTP status.
    pub fn refused(&self) -> HashMap<u16, u64> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// What a session sends: the file, or the message's bytes.
    pub fn job_data(&self, name: &str) -> Option<Vec<u8>> {
        self.shared.jobs.lock().unwrap().iter().find(|j| j.name == name).map(|j| j.file.clone())
    }

    /// The descriptor the gateway read from a job's `fragmentDesc`.
    pub fn descriptor(&self, name: &str) -> Option<u32> {
        self.shared.jobs.lock().unwrap().iter().find(|j| j.name == name).and_then(|j| j.descriptor)
    }

    /// Sessions scheduled so far: (name, kind, devices).
    pub fn jobs(&self) -> Vec<(String, &'static str, usize)> {
        self.shared.jobs.lock().unwrap().iter().map(|j| (j.name.clone(), j.kind, j.devices.len())).collect()
    }

    /// A job's schedule as asked: scheduled (Unix s), setup and launch (s).
    pub fn job_timing(&self, name: &str) -> Option<[u64; 3]> {
        self.shared.jobs.lock().unwrap().iter().find(|j| j.name == name).map(|j| j.timing)
    }
}
