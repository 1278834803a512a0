//! The `chirpstack` backend plugin against a ChirpStack v4 peer on loopback
//! (`sim/chirpstack.rs`): gRPC-Web calls with the API token, the group made
//! with session keys from the host key service, uplinks from the HTTP
//! integration, UNAVAILABLE waited out; a wrong API token gets
//! UNAUTHENTICATED and a clear error.

mod common;

use airlift::clock::{Clock, ScaledClock, SystemClock};
use airlift::sim::chirpstack::ChirpStackPeer;
use airlift::sim::scenario::ScenarioConfig;
use common::{serve, Api, SimSetup};
use serde_json::json;
use std::sync::Arc;

const API_TOKEN: &str = "chirpstack-api-token";
const INTEGRATION_TOKEN: &str = "integration-secret";
const APPLICATION: &str = "0b7e5b4c-43c9-4c63-9f8a-1d2a5e1f0c11";

async fn setup(dir: &std::path::Path, api_token: &str) -> (SimSetup, ChirpStackPeer, airlift::server::Server, Api, String) {
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(SystemClock.now_unix_ms(), 300.0));
    let mut config = ScenarioConfig::new(10);
    config.fleet.uplink_period_s = 15;
    config.fleet.loss = 0.05;
    let sim = SimSetup::provision(dir, clock.clone(), &config, common::NETWORK_TOKEN).await.unwrap();
    let ns = ChirpStackPeer::start(sim.lns.fleet.clone(), "127.0.0.1:0".parse().unwrap(), API_TOKEN, APPLICATION, INTEGRATION_TOKEN).await.unwrap();
    let (server, api) = serve(dir, clock).await;
    let instance = api
        .send_json(
            reqwest::Method::POST,
            "/api/backend-instances",
            json!({"name": "ChirpStack", "plugin": "chirpstack", "settings": {"url": ns.url(), "application_id": APPLICATION},
                   "secrets": {"api_token": api_token, "integration_token": INTEGRATION_TOKEN}, "allowedHosts": [ns.url()]}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let id = &sim.objects.campaign_id;
    api.send_json(reqwest::Method::PUT, &format!("/api/campaigns/{id}/backend-instance"), json!({"backendInstance": instance})).await;
    ns.post_uplinks_to(&format!("{}/backends/{instance}/uplink", api.base));
    (sim, ns, server, api, instance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_end_to_end_through_chirpstack() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, ns, server, api, instance) = setup(dir.path(), API_TOKEN).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    // ChirpStack is overloaded for a moment once fragments go out.
    api.wait_for(id, |p| p["stage"]["stageName"] == "DataFragment" && p["stage"]["stageOperationsCompleted"].as_u64() > Some(0)).await;
    ns.fail_next(3);
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    for d in &sim.devices {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui).as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
    let statuses = ns.statuses();
    assert_eq!(statuses.get(&14), Some(&3), "the injected UNAVAILABLEs were waited out: {statuses:?}");
    assert_eq!(statuses.len(), 2, "nothing else failed: {statuses:?}");
    assert_eq!(ns.members_added(), sim.devices.iter().map(|d| d.dev_eui).collect::<Vec<_>>(), "every device was added to the group");
    assert_eq!(ns.group_count(), 0, "the group is deleted once the session is over");

    // An integration call without the configured token is refused.
    let up = json!({"deviceInfo": {"devEui": "70b3d57ed0000000"}, "fPort": 201, "data": "AQA=", "fCnt": 1});
    let forged = api.http.post(format!("{}/backends/{instance}/uplink?event=up", api.base)).bearer_auth("guess").json(&up).send().await.unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_token_gets_unauthenticated_and_a_clear_campaign_error() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, ns, server, api, _) = setup(dir.path(), "not-the-token").await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "ERROR", "{done}");
    let error = done["error"]["text"].as_str().unwrap_or_default();
    assert!(error.contains("unauthorized") && error.contains("gRPC status 16"), "{done}");
    assert!(ns.statuses().get(&16).is_some_and(|n| *n > 0));
    server.stop().await;
}
