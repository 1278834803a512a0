//! Plugins built against WIT 0.1.0 keep working. The `lorawan-v1` device
//! library and the `simulated` backend exactly as they were built against
//! the first contract (`tests/data/plugins-wit-0.1.0`, never rebuilt) run
//! a whole campaign in a host whose own plugins speak 0.2.0, through the
//! facade's adapters.

mod common;

use airlift_sim::scenario::ScenarioConfig;
use common::serve_fleet;
use serde_json::{json, Value};

/// Load a plugin of the 0.1.0 set under another name, beside the bundled
/// plugins of the same name.
async fn load_legacy(api: &common::Api, file: &str, name: &str) -> Value {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/plugins-wit-0.1.0");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(dir.join(format!("{file}.json"))).unwrap()).unwrap();
    assert_eq!(manifest["witVersion"], "0.1.0");
    manifest["name"] = json!(name);
    let wasm = std::fs::read(dir.join(format!("{file}.wasm"))).unwrap();
    let form = reqwest::multipart::Form::new()
        .part("manifest", reqwest::multipart::Part::bytes(serde_json::to_vec(&manifest).unwrap()))
        .part("wasm", reqwest::multipart::Part::bytes(wasm));
    let r = api.http.post(format!("{}/api/plugins", api.base)).bearer_auth(common::TOKEN).multipart(form).send().await.unwrap();
    assert!(r.status().is_success(), "loading {file} built against WIT 0.1.0: {}", r.status());
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_on_a_device_library_and_a_backend_built_against_wit_0_1_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ScenarioConfig::new(10);
    config.fleet.loss = 0.05;
    let (sim, server, api) = serve_fleet(dir.path(), &config, common::NETWORK_TOKEN).await;
    let id = &sim.objects.campaign_id;
    load_legacy(&api, "lorawan-v1", "lorawan-v1-wit-0-1").await;
    load_legacy(&api, "simulated", "simulated-wit-0-1").await;
    let described = api.call(reqwest::Method::GET, "/api/plugins/lorawan-v1-wit-0-1/describe").await;
    assert_eq!(described["name"], "lorawan-v1", "{described}");

    // The campaign's library and network become the 0.1.0 builds.
    let mut campaign = api.call(reqwest::Method::GET, &format!("/api/campaigns/{id}")).await;
    for field in ["id", "created", "started", "lastChanged", "status", "archived"] {
        campaign.as_object_mut().unwrap().remove(field);
    }
    campaign["deviceLibrary"] = json!("lorawan-v1-wit-0-1");
    api.send_json(reqwest::Method::PUT, &format!("/api/campaigns/{id}"), campaign).await;
    let url = sim.lns.url();
    let instance = json!({"name": "legacy", "plugin": "simulated-wit-0-1", "settings": {"url": url}, "secrets": {"token": common::NETWORK_TOKEN}, "allowedHosts": [url]});
    let instance = api.move_to_new_instance(id, instance).await;
    sim.lns.post_uplinks_to(&format!("{}/backends/{instance}/uplink", api.base));

    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    for d in &sim.devices {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui).as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
    assert!(sim.lns.clients().keys().any(|agent| agent.contains(&instance)), "the 0.1.0 backend sent the downlinks: {:?}", sim.lns.clients());
    server.stop().await;
}
