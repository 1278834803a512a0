//! Campaigns in a serving host, through the API and the `simulated`
//! backend plugin to the simulated network server on loopback: stop
//! through the API tears the devices' sessions down; a token the network
//! refuses fails the campaign with the network's 401 named.

mod common;

use airlift::clock::{Clock, ScaledClock, SystemClock};
use airlift::server::{Server, ServerConfig};
use airlift::sim::scenario::ScenarioConfig;
use common::SimSetup;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "serve-test-token";

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str) -> Value {
        let r = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Poll the campaign's progress until `done` says so.
    async fn wait_for(&self, campaign: &str, done: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let p = self.call(reqwest::Method::GET, &format!("/api/campaigns/{campaign}/progress")).await;
            if done(&p) {
                return p;
            }
            assert!(Instant::now() < until, "gave up waiting: {p}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(dir: &std::path::Path, clock: Arc<dyn Clock>) -> (Server, Api) {
    let mut config = ServerConfig::new(dir.to_path_buf());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.clock = clock;
    config.auth = Some(airlift::api::Auth::with_tokens(&[("test", airlift::api::Role::Admin, TOKEN)]));
    let server = Server::start(config).await.unwrap();
    let api = Api { http: reqwest::Client::new(), base: format!("http://{}", server.addr) };
    (server, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_through_the_api_tears_the_sessions_down() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(SystemClock.now_unix_ms(), 300.0));
    let mut config = ScenarioConfig::new(10);
    config.fleet.uplink_period_s = 15;
    let sim = SimSetup::provision(dir.path(), clock.clone(), &config, common::NETWORK_TOKEN).await.unwrap();
    let (server, api) = serve(dir.path(), clock).await;
    sim.lns.post_uplinks_to(&format!("{}/backends/{}/uplink", api.base, sim.objects.backend_instance));
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    // Stop once fragments are going out.
    api.wait_for(id, |p| p["stage"]["stageName"] == "DataFragment" && p["stage"]["stageOperationsCompleted"].as_u64() > Some(0)).await;
    assert!(sim.lns.fleet.in_session(sim.devices[0].dev_eui));
    let stopped = api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/stop")).await;
    assert_eq!(stopped["campaignStatus"], "STOPPED");
    for d in &sim.devices {
        assert!(!sim.lns.fleet.in_session(d.dev_eui), "device {} still in its session", d.dev_eui);
    }
    assert_eq!(sim.lns.fleet.unicast_requests(201, 0x03), sim.devices.len(), "FragSessionDeleteReq to each device");
    assert_eq!(sim.lns.fleet.unicast_requests(200, 0x03), sim.devices.len(), "McGroupDeleteReq to each device");
    let campaign = api.call(reqwest::Method::GET, &format!("/api/campaigns/{id}")).await;
    assert_eq!(campaign["status"], "STOPPED");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_network_refuses_fails_the_campaign_with_its_401() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(SystemClock.now_unix_ms(), 300.0));
    let sim = SimSetup::provision(dir.path(), clock.clone(), &ScenarioConfig::new(3), "not-the-network-token").await.unwrap();
    let (server, api) = serve(dir.path(), clock).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "ERROR", "{done}");
    let error = done["error"]["text"].as_str().unwrap_or_default();
    assert!(error.contains("unauthorized") && error.contains("401"), "{done}");
    server.stop().await;
}
