//! The `chirpstack` backend plugin against a ChirpStack v4 peer on loopback
//! (`sim/chirpstack.rs`): gRPC-Web calls with the API token, the group made
//! with session keys from the host key service, uplinks from the HTTP
//! integration, UNAVAILABLE waited out; a wrong API token gets
//! UNAUTHENTICATED and a clear error.

mod common;

use airlift::sim::chirpstack::ChirpStackPeer;
use airlift::sim::scenario::ScenarioConfig;
use common::{assert_refused_credentials, serve_fleet, under_way, Api, SimSetup};
use serde_json::json;

const API_TOKEN: &str = "chirpstack-api-token";
const INTEGRATION_TOKEN: &str = "integration-secret";
const APPLICATION: &str = "0b7e5b4c-43c9-4c63-9f8a-1d2a5e1f0c11";

/// A host serving the setup's data, ChirpStack in front of its fleet, and
/// the campaign moved to a ChirpStack instance holding `api_token`.
async fn setup(dir: &std::path::Path, api_token: &str) -> (SimSetup, ChirpStackPeer, airlift::server::Server, Api, String) {
    let mut config = ScenarioConfig::new(10);
    config.fleet.uplink_period_s = 15;
    config.fleet.loss = 0.05;
    let (sim, server, api) = serve_fleet(dir, &config, common::NETWORK_TOKEN).await;
    let ns = ChirpStackPeer::start(sim.lns.fleet.clone(), airlift::sim::listen::Listen::loopback(), API_TOKEN, APPLICATION, INTEGRATION_TOKEN).await.unwrap();
    let instance = json!({"name": "ChirpStack", "plugin": "chirpstack", "settings": {"url": ns.url(), "application_id": APPLICATION},
                          "secrets": {"api_token": api_token, "integration_token": INTEGRATION_TOKEN}, "allowedHosts": [ns.url()]});
    let instance = api.move_to_new_instance(&sim.objects.campaign_id, instance).await;
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
    api.wait_for(id, |p| under_way(p, "DataFragment")).await;
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
    // The run is COMPLETED before its session is torn down: the group goes
    // right after, on the network's own time.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ns.group_count() != 0 && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
    assert_refused_credentials(&done, "gRPC status 16");
    assert!(ns.statuses().get(&16).is_some_and(|n| *n > 0));
    server.stop().await;
}
