//! The `thingpark` backend plugin against a ThingPark LRC peer on loopback
//! (`sim/thingpark.rs`): a whole campaign with downlinks signed by the AS
//! key and DevEUI_uplink reports checked by the plugin; a wrong AS key gets
//! the LRC's 401 and a clear campaign error; 500s are waited out.

mod common;

use airlift::sim::scenario::ScenarioConfig;
use airlift::sim::thingpark::ThingParkPeer;
use common::{assert_refused_credentials, serve_fleet, under_way, Api, SimSetup};
use serde_json::json;

const AS_ID: &str = "airlift.test";
const AS_KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// A host serving the setup's data, the LRC peer in front of its fleet, and
/// the campaign moved to a ThingPark instance holding `as_key`.
async fn setup(dir: &std::path::Path, as_key: &str) -> (SimSetup, ThingParkPeer, airlift::server::Server, Api, String) {
    let mut config = ScenarioConfig::new(10);
    config.fleet.uplink_period_s = 15;
    config.fleet.loss = 0.05;
    let (sim, server, api) = serve_fleet(dir, &config, common::NETWORK_TOKEN).await;
    let lrc = ThingParkPeer::start(sim.lns.fleet.clone(), "127.0.0.1:0".parse().unwrap(), AS_ID, AS_KEY).await.unwrap();
    lrc.provision_multicast_device(sim.group.0, sim.group.1.clone());
    let instance = json!({"name": "ThingPark", "plugin": "thingpark", "settings": {"url": lrc.url(), "as_id": AS_ID}, "secrets": {"as_key": as_key}, "allowedHosts": [lrc.url()]});
    let instance = api.move_to_new_instance(&sim.objects.campaign_id, instance).await;
    lrc.post_uplinks_to(&format!("{}/backends/{instance}/uplink", api.base));
    (sim, lrc, server, api, instance)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_end_to_end_through_the_lrc_and_waits_out_its_500s() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, lrc, server, api, instance) = setup(dir.path(), AS_KEY).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    // The LRC has a bad moment once fragments go out.
    api.wait_for(id, |p| under_way(p, "DataFragment")).await;
    lrc.fail_next(3);
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    for d in &sim.devices {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui).as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
    let (unicast, multicast) = lrc.downlinks();
    assert!(unicast >= 10 * 5 && multicast > 0, "downlinks through the LRC: {unicast} unicast, {multicast} multicast");
    assert_eq!(lrc.refused(), [(500, 3)].into(), "only the injected 500s were refused");
    assert!(sim.lns.clients().is_empty(), "nothing went to the other network");

    // A report whose Token was not made with the AS key is refused.
    let forged = api
        .http
        .post(format!("{}/backends/{instance}/uplink?LrnDevEui=70B3D57ED0000000&LrnFPort=201&LrnInfos=x&AS_ID={AS_ID}&Time=2026-11-23T08:00:00.000%2B00:00&Token={}", api.base, "0".repeat(64)))
        .json(&json!({"DevEUI_uplink": {"DevEUI": "70B3D57ED0000000", "FPort": 201, "FCntUp": 1, "payload_hex": "0100", "CustomerID": "1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_as_key_gets_the_lrc_401_and_a_clear_campaign_error() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, lrc, server, api, _) = setup(dir.path(), "ffffffffffffffffffffffffffffffff").await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_refused_credentials(&done, "401");
    assert!(lrc.refused().get(&401).is_some_and(|n| *n > 0));
    assert_eq!(lrc.downlinks(), (0, 0));
    server.stop().await;
}
