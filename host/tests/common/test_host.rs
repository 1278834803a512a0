//! Test harness: a real host on 127.0.0.1 with a temporary data dir, and a
//! client with tokens of each role.

use airlift::api::{Auth, Role};
use airlift::server::{Server, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::path::Path;

pub const ADMIN: &str = "admin-token-for-tests";
pub const OPERATOR: &str = "operator-token-for-tests";
pub const VIEWER: &str = "viewer-token-for-tests";

pub fn test_auth() -> Auth {
    Auth::with_tokens(&[("admin", Role::Admin, ADMIN), ("operator", Role::Operator, OPERATOR), ("viewer", Role::Viewer, VIEWER)])
}

/// A host on an ephemeral loopback port.
pub struct TestHost {
    pub server: Server,
    pub http: reqwest::Client,
}

impl TestHost {
    pub async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, |_| {}).await
    }

    pub async fn start_with(data_dir: &Path, adjust: impl FnOnce(&mut ServerConfig)) -> anyhow::Result<Self> {
        let mut config = ServerConfig::new(data_dir.to_path_buf());
        config.bind = "127.0.0.1:0".parse()?;
        config.auth = Some(test_auth());
        config.load_bundled = false;
        adjust(&mut config);
        Ok(Self { server: Server::start(config).await?, http: reqwest::Client::new() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    /// Send JSON (or nothing for `Value::Null`) with a token; returns status and JSON body.
    pub async fn call(&self, token: Option<&str>, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("host answers");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Some(ADMIN), Method::GET, path, Value::Null).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Some(ADMIN), Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Some(ADMIN), Method::PUT, path, body).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Some(ADMIN), Method::DELETE, path, Value::Null).await
    }

    /// Load a bundled plugin (fixtures included) through the API.
    pub async fn load_plugin(&self, name: &str) -> (StatusCode, Value) {
        let bundled = airlift::plugin::bundled::bundled(name).expect("bundled plugin");
        self.load_plugin_files(serde_json::to_vec(&bundled.manifest).unwrap(), bundled.wasm().to_vec()).await
    }

    /// Load (or hot-swap) a plugin from its manifest and component bytes.
    pub async fn load_plugin_files(&self, manifest: Vec<u8>, wasm: Vec<u8>) -> (StatusCode, Value) {
        let form = reqwest::multipart::Form::new()
            .part("manifest", reqwest::multipart::Part::bytes(manifest))
            .part("wasm", reqwest::multipart::Part::bytes(wasm));
        let resp = self.http.post(self.url("/api/plugins")).bearer_auth(ADMIN).multipart(form).send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The host still answers.
    pub async fn healthy(&self) -> bool {
        self.get("/api/health").await.0 == StatusCode::OK
    }
}

/// A multicast-setup campaign as a device library sees it, on group 1 of
/// EU868 class C; tests change the fields they care about.
pub fn campaign_context() -> airlift::plugin::device_library::CampaignContext {
    use airlift::plugin::device_library::{CampaignContext, CampaignKind, IsmBand, MulticastGroup, SessionClass};
    CampaignContext {
        campaign_id: "1".into(),
        kind: CampaignKind::MulticastSetup,
        group: MulticastGroup {
            group_eui: 0x70b3_d57e_d0ff_0000,
            group_id: 1,
            mc_addr: 0x01ff_ffff,
            session_class: SessionClass::ClassC,
            ism_band: IsmBand::Eu868,
            dl_dwell_time: false,
            frequency_hz: 869_525_000,
            data_rate: 5,
            ping_slot_periodicity: 0,
            min_fcnt: 0,
            max_fcnt: 65_535,
        },
        session_start_gps: 0,
        session_timeout: 0,
        file_size: 0,
        payload_sha256: String::new(),
        fragmentation: None,
        reboot_gps: None,
        target_firmware: None,
        base_firmware: None,
        cancelling: false,
    }
}
