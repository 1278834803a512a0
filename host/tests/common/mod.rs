// Each test binary uses a part of these helpers.
#![allow(dead_code)]

//! A simulated network server with its fleet in this process, the host's
//! objects for it provisioned in a data directory, and a serving host's
//! API as the tests drive it.

mod test_host;
#[allow(unused_imports)] // each test binary uses a part
pub use test_host::*;

use airlift::api::Auth;
use airlift::clock::{Clock, ScaledClock, SystemClock};
use airlift::keys::Vault;
use airlift::model::{Eui, MulticastGroup};
use airlift::server::{Server, ServerConfig};
use airlift_sim::fleet::{GroupSessionKeys, Provisioned, SimFleet};
use airlift_sim::lns::SimLns;
use airlift_sim::scenario::{provision_objects, Objects, ScenarioConfig};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Simulated time runs this much faster than real time in serving tests.
pub const SPEED: f64 = 300.0;

pub struct SimSetup {
    pub lns: SimLns,
    pub objects: Objects,
    pub devices: Vec<Provisioned>,
    /// The campaign's multicast group and the session keys a network
    /// server is given for it.
    pub group: (Eui, GroupSessionKeys),
}

impl SimSetup {
    /// Start the network server and provision the host's objects in
    /// `data_dir` through an in-process host (it installs the bundled
    /// plugins), which then lets go of the store. The backend instance
    /// holds `instance_token`; the network expects `config`'s fleet token.
    pub async fn provision(data_dir: &Path, clock: Arc<dyn Clock>, config: &ScenarioConfig, instance_token: &str) -> anyhow::Result<Self> {
        let vault = Arc::new(Vault::open(data_dir)?);
        let (fleet, devices) = SimFleet::new(config.fleet.clone(), clock.clone(), vault.clone(), config.first_eui, &config.behaviours);
        let lns = SimLns::start(Arc::new(fleet), "127.0.0.1:0".parse()?, NETWORK_TOKEN).await?;
        let backend = lns.instance_input(instance_token);
        let mut setup = ServerConfig::new(data_dir.to_path_buf());
        setup.bind = "127.0.0.1:0".parse()?;
        setup.run_campaigns = false;
        setup.auth = Some(Auth::default());
        let server = Server::start(setup).await?;
        let objects = provision_objects(&server.state.store, &vault, clock.now_unix_ms(), config, &devices, vec![backend])?;
        let group = server.state.store.get::<MulticastGroup>(&Eui(config.group_eui).to_string())?.ok_or_else(|| anyhow::anyhow!("no group"))?;
        let group = (group.dev_eui, GroupSessionKeys::of(&group, &vault).map_err(anyhow::Error::msg)?);
        server.state.store.flush()?;
        server.stop().await;
        Ok(Self { lns, objects, devices, group })
    }
}

/// The token the simulated network server expects.
pub const NETWORK_TOKEN: &str = "sim-network-token";

/// The admin API token of the hosts these tests serve.
pub const TOKEN: &str = "serve-test-token";

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn call(&self, method: reqwest::Method, path: &str) -> Value {
        let r = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Load a bundled plugin (fixtures included) as a new version.
    pub async fn load_plugin(&self, name: &str) -> Value {
        let bundled = airlift::plugin::bundled::bundled(name).unwrap();
        let form = reqwest::multipart::Form::new()
            .part("manifest", reqwest::multipart::Part::bytes(serde_json::to_vec(&bundled.manifest).unwrap()))
            .part("wasm", reqwest::multipart::Part::bytes(bundled.wasm().to_vec()));
        let r = self.http.post(format!("{}/api/plugins", self.base)).bearer_auth(TOKEN).multipart(form).send().await.unwrap();
        assert!(r.status().is_success(), "loading {name}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Create a backend instance and move the campaign to it; its id.
    pub async fn move_to_new_instance(&self, campaign: &str, instance: Value) -> String {
        let id = self.send_json(reqwest::Method::POST, "/api/backend-instances", instance).await["id"].as_str().unwrap().to_string();
        let switched = self.send_json(reqwest::Method::PUT, &format!("/api/campaigns/{campaign}/backend-instance"), json!({"backendInstance": id})).await;
        assert_eq!(switched["backendInstance"], id.as_str());
        id
    }

    /// Poll the campaign's progress until `done` says so.
    pub async fn wait_for(&self, campaign: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.wait_until(&format!("/api/campaigns/{campaign}/progress"), done).await
    }

    /// GET `path` until `done` holds for its answer (two minutes at most).
    pub async fn wait_until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let p = self.call(reqwest::Method::GET, path).await;
            if done(&p) {
                return p;
            }
            assert!(Instant::now() < until, "gave up waiting: {p}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A fleet behind the simulated network server (whose instance holds
/// `instance_token`), and a host serving its objects on a sped-up clock.
pub async fn serve_fleet(dir: &Path, config: &ScenarioConfig, instance_token: &str) -> (SimSetup, Server, Api) {
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(SystemClock.now_unix_ms(), SPEED));
    let sim = SimSetup::provision(dir, clock.clone(), config, instance_token).await.unwrap();
    let (server, api) = serve(dir, clock).await;
    (sim, server, api)
}

/// Wait, real time and at most `limit`, until `done` holds. The caller
/// asserts what it waited for.
pub async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !done() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Start a campaign that must fail at once (a network that cannot work as
/// configured), not after backing off: its error text.
pub async fn start_expecting_prompt_failure(api: &Api, campaign: &str) -> String {
    let started = Instant::now();
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{campaign}/start")).await;
    let done = api.wait_for(campaign, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "ERROR", "{done}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}: the campaign backed off instead of failing", started.elapsed());
    done["error"]["text"].as_str().unwrap_or_default().to_string()
}

/// A progress message of `stage` once some of its operations are done.
pub fn under_way(progress: &Value, stage: &str) -> bool {
    progress["stage"]["stageName"] == stage && progress["stage"]["stageOperationsCompleted"].as_u64() > Some(0)
}

/// A finished campaign failed because the network refused our credentials,
/// with its answer (`status`, e.g. "401") in the error.
pub fn assert_refused_credentials(done: &Value, status: &str) {
    assert_eq!(done["campaignStatus"], "ERROR", "{done}");
    let error = done["error"]["text"].as_str().unwrap_or_default();
    assert!(error.contains("unauthorized") && error.contains(status), "{done}");
}

pub async fn serve(dir: &std::path::Path, clock: Arc<dyn Clock>) -> (Server, Api) {
    let mut config = ServerConfig::new(dir.to_path_buf());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.clock = clock;
    config.uplink_window = airlift::api::UplinkWindow::for_clock_speed(SPEED);
    config.auth = Some(airlift::api::Auth::with_tokens(&[("test", airlift::api::Role::Admin, TOKEN)]));
    let server = Server::start(config).await.unwrap();
    let api = Api { http: reqwest::Client::new(), base: format!("http://{}", server.addr) };
    (server, api)
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `airlift serve` as its own process (the built binary, or `binary`), on
/// 127.0.0.1:`port`, in `cwd`, with `extra` arguments and `token` as its
/// admin API token.
pub fn spawn_serve(binary: Option<&Path>, port: u16, cwd: &Path, extra: &[&std::ffi::OsStr], token: &str) -> std::process::Child {
    serve_command(binary, port, cwd, extra, token).spawn().expect("spawning airlift serve")
}

/// The command [`spawn_serve`] runs, for a caller that adds to it.
pub fn serve_command(binary: Option<&Path>, port: u16, cwd: &Path, extra: &[&std::ffi::OsStr], token: &str) -> std::process::Command {
    let mut command = std::process::Command::new(binary.unwrap_or(Path::new(env!("CARGO_BIN_EXE_airlift"))));
    command
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .args(extra)
        .current_dir(cwd)
        .env_remove("AIRLIFT_DATA_DIR")
        .env("AIRLIFT_API_TOKENS", format!("test:admin:{token}"))
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null());
    command
}

/// Wait until a spawned host answers its health check (two minutes at most).
pub async fn wait_ready(child: &mut std::process::Child, http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("airlift serve exited early: {status}");
        }
        if http.get(format!("{base}/api/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("airlift serve did not come up")
}

/// Certificates made for one test: a CA and a server certificate it
/// signed for 127.0.0.1 and localhost, and a self-signed one for pinning.
pub struct TestPki {
    pub ca_pem: String,
    /// Signed by the CA.
    pub server: airlift_sim::listen::TlsIdentity,
    /// Self-signed, as gateways ship.
    pub self_signed: airlift_sim::listen::TlsIdentity,
    /// SHA-256 of the self-signed certificate's DER, hex.
    pub self_signed_sha256: String,
}

impl TestPki {
    pub fn new() -> Self {
        Self::for_names(&["127.0.0.1", "localhost"])
    }

    /// Certificates for these host names (and addresses).
    pub fn for_names(names: &[&str]) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        use sha2::Digest;
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Airlift test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server_cert = CertificateParams::new(names.clone()).unwrap().signed_by(&server_key, &issuer).unwrap();
        let own_key = KeyPair::generate().unwrap();
        let own_cert = CertificateParams::new(names).unwrap().self_signed(&own_key).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            server: airlift_sim::listen::TlsIdentity { certificate_chain_pem: server_cert.pem(), private_key_pem: server_key.serialize_pem() },
            self_signed_sha256: hex::encode(sha2::Sha256::digest(own_cert.der())),
            self_signed: airlift_sim::listen::TlsIdentity { certificate_chain_pem: own_cert.pem(), private_key_pem: own_key.serialize_pem() },
        }
    }
}

/// The `airlift-demo` binary (the simulator crate's), built once per test
/// binary through cargo: a binary of another package has no
/// `CARGO_BIN_EXE_` here. Cargo holds no lock while tests run.
pub fn demo_binary() -> std::path::PathBuf {
    static BINARY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let out = std::process::Command::new(cargo)
                .args(["build", "--quiet", "-p", "airlift-sim", "--bin", "airlift-demo", "--message-format=json"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stderr(std::process::Stdio::inherit())
                .output()
                .expect("running cargo build for airlift-demo");
            assert!(out.status.success(), "building airlift-demo failed");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find_map(|m| m["executable"].as_str().filter(|_| m["target"]["name"] == "airlift-demo").map(std::path::PathBuf::from))
                .expect("cargo names the airlift-demo executable")
        })
        .clone()
}
