//! The `gateway-rest` backend plugin against an mPower gateway behind HTTPS
//! on loopback that runs FOTA itself (`sim/gateway.rs`), its certificate
//! from the test's CA: the campaign runs as one offloaded stage (login,
//! status, upload, schedule, progress, results, logout) in both documented
//! answer shapes (seed 000's per-device lists, the OpenAPI file's arrays
//! with counts as strings); a silent device fails alone; nothing is
//! scheduled while the LoRa network server is down; a wrong password gets
//! the gateway's 401 and a clear campaign error; stopping the campaign
//! cancels the gateway's schedule.

mod common;

use airlift_sim::fleet::Behaviour;
use airlift_sim::gateway::{GatewayPeer, ResponseShape};
use airlift_sim::listen::Listen;
use airlift_sim::scenario::ScenarioConfig;
use common::{assert_refused_credentials, serve_fleet, Api, SimSetup, TestPki};
use serde_json::json;

const USER: &str = "admin";
const PASSWORD: &str = "gateway-pass";

/// A host serving the setup's data, the gateway in front of its fleet, and
/// the campaign moved to a gateway instance holding `password`.
async fn setup(dir: &std::path::Path, password: &str, behaviours: Vec<Behaviour>, file_size: usize) -> (SimSetup, GatewayPeer, airlift::server::Server, Api) {
    setup_shaped(dir, password, behaviours, file_size, ResponseShape::Seed).await
}

async fn setup_shaped(dir: &std::path::Path, password: &str, behaviours: Vec<Behaviour>, file_size: usize, shape: ResponseShape) -> (SimSetup, GatewayPeer, airlift::server::Server, Api) {
    let mut config = ScenarioConfig::new(behaviours.len());
    config.behaviours = behaviours;
    config.fleet.loss = 0.1;
    config.success_threshold = 80;
    config.file_size = file_size;
    let (sim, server, api) = serve_fleet(dir, &config, common::NETWORK_TOKEN).await;
    let pki = TestPki::new();
    let gw = GatewayPeer::start(sim.lns.fleet.clone(), Listen::loopback_tls(pki.server), USER, PASSWORD).await.unwrap();
    gw.set_shape(shape);
    let instance = json!({"name": "gateway", "plugin": "gateway-rest", "settings": {"url": gw.url(), "username": USER}, "secrets": {"password": password},
                          "allowedHosts": [gw.url()], "transport": {"caCertificatesPem": pki.ca_pem}});
    api.move_to_new_instance(&sim.objects.campaign_id, instance).await;
    (sim, gw, server, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_runs_offloaded_on_the_gateway_with_per_device_results() {
    let dir = tempfile::tempdir().unwrap();
    let mut behaviours = vec![Behaviour::Normal; 10];
    behaviours[4] = Behaviour::Silent;
    let (sim, gw, server, api) = setup(dir.path(), PASSWORD, behaviours, 20_000).await;
    let id = &sim.objects.campaign_id;
    let started = api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    assert_eq!(started["campaignStagesCount"], 1, "{started}");
    assert_eq!(started["stage"]["stageName"], "GatewaySession");
    // The gateway's LoRa service stalls for a few polls.
    gw.fail_next(3);
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    assert_eq!(gw.jobs(), [(format!("airlift-{id}"), "FOTA", 10)]);
    // Without a session start of its own, broadcasting follows the gateway's setup time.
    let [_, setup, launch] = gw.job_timing(&format!("airlift-{id}")).unwrap();
    assert_eq!((setup, launch), (300, 0));
    let devices = api.call(reqwest::Method::GET, &format!("/api/campaigns/{id}/devices")).await;
    for (i, d) in sim.devices.iter().enumerate() {
        let file = sim.lns.fleet.received_file(d.dev_eui);
        let report = devices.as_array().unwrap().iter().find(|r| r["deveui"] == d.dev_eui.to_string()).unwrap();
        if i == 4 {
            assert_eq!(file, None, "the silent device got nothing");
            assert_eq!(report["deviceState"]["deviceStatus"], "ERROR", "{report}");
            assert_eq!(report["error"]["text"], "GatewaySession: gateway reports 'failed'", "{report}");
        } else {
            assert_eq!(file.as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
            assert_eq!(report["deviceState"]["deviceStatus"], "COMPLETED", "{report}");
            assert_eq!(report["deviceState"]["gatewayProgress"], 100.0, "{report}");
        }
    }
    assert_eq!(gw.refused(), [(500, 3)].into(), "only the injected 500s, waited out");
    assert_eq!(gw.open_sessions(), 0, "every login was followed by a logout");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_completes_on_a_gateway_answering_in_the_openapi_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, gw, server, api) = setup_shaped(dir.path(), PASSWORD, vec![Behaviour::Normal; 6], 20_000, ResponseShape::OpenApi).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    // The gateway named the schedule itself; the plugin found its job by its file.
    let jobs = gw.jobs();
    assert_eq!(jobs.len(), 1, "scheduled once: {jobs:?}");
    assert!(jobs[0].0.starts_with("fota_"), "{jobs:?}");
    for d in &sim.devices {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui).as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
    assert!(gw.refused().is_empty(), "{:?}", gw.refused());
    assert_eq!(gw.open_sessions(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_scheduled_while_the_lora_network_server_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, gw, server, api) = setup(dir.path(), PASSWORD, vec![Behaviour::Normal; 3], 20_000).await;
    gw.set_network_server_running(false);
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let waiting = api.wait_for(id, |p| p["networkError"]["text"].as_str().is_some_and(|t| t.contains("network server is not running"))).await;
    assert_eq!(waiting["campaignStatus"], "RUNNING", "{waiting}");
    assert!(gw.jobs().is_empty(), "nothing was scheduled: {:?}", gw.jobs());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_gets_the_gateway_401() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, gw, server, api) = setup(dir.path(), "wrong", vec![Behaviour::Normal; 3], 20_000).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_refused_credentials(&done, "401");
    assert_eq!(gw.refused().get(&401), Some(&1));
    assert!(gw.jobs().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_campaign_cancels_the_gateway_schedule() {
    let dir = tempfile::tempdir().unwrap();
    // A large file: the gateway's session lasts long enough to be stopped.
    let (sim, gw, server, api) = setup(dir.path(), PASSWORD, vec![Behaviour::Normal; 3], 400_000).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    api.wait_for(id, |_| !gw.jobs().is_empty()).await;
    let stopped = api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/stop")).await;
    assert_eq!(stopped["campaignStatus"], "STOPPED");
    // The cancel goes out after the answer.
    api.wait_for(id, |_| gw.jobs().is_empty()).await;
    for d in &sim.devices {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui), None);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_campaign_goes_out_as_the_gateway_multicast_message() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, gw, server, api) = setup(dir.path(), PASSWORD, vec![Behaviour::Normal; 4], 20_000).await;
    // A message campaign over the same devices, set and region.
    let first = api.call(reqwest::Method::GET, &format!("/api/campaigns/{}", sim.objects.campaign_id)).await;
    let mut message = first.clone();
    for field in ["id", "created", "started", "lastChanged", "status", "archived", "file", "rebootAt", "sessionStart"] {
        message.as_object_mut().unwrap().remove(field);
    }
    message["name"] = json!("hello");
    message["campaignType"] = json!("MESSAGE");
    message["updateType"] = json!(null);
    message["message"] = json!({"messageFormat": "Base64", "messagePayload": "SGVsbG8=", "messagePort": 10, "multicastSessionTimeout": 5});
    let id = api.send_json(reqwest::Method::POST, "/api/campaigns", message).await["id"].as_str().unwrap().to_string();
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let done = api.wait_for(&id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    let name = format!("airlift-{id}");
    assert_eq!(gw.jobs(), [(name.clone(), "Message", 4)]);
    assert_eq!(gw.job_data(&name).as_deref(), Some(&b"Hello"[..]));
    assert!(gw.refused().is_empty(), "{:?}", gw.refused());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_a_job_the_gateway_already_has_does_not_schedule_it_twice() {
    use airlift::engine::{Network, OffloadJob, OffloadPayload};
    let dir = tempfile::tempdir().unwrap();
    let (sim, gw, server, api) = setup(dir.path(), PASSWORD, vec![Behaviour::Normal; 2], 400_000).await;
    let campaign = api.call(reqwest::Method::GET, &format!("/api/campaigns/{}", sim.objects.campaign_id)).await;
    let instance = campaign["backendInstance"].as_str().unwrap().to_string();
    let group = server.state.store.get::<airlift::model::MulticastGroup>(&sim.group.0.to_string()).unwrap().unwrap();
    let job = OffloadJob {
        name: "airlift-replayed".into(),
        devices: sim.devices.iter().map(|d| d.dev_eui).collect(),
        group,
        data: vec![7; 1000],
        scheduled_unix_ms: sim.lns.fleet.now_unix_ms(),
        setup_seconds: 0,
        start_unix_ms: sim.lns.fleet.now_unix_ms(),
        payload: OffloadPayload::File { descriptor: 0, session_timeout_exponent: 10 },
    };
    // As after a crash between starting the job and recording its handle.
    let network = &server.state.runner.engine.network;
    let first = network.offload_start(&instance, job.clone()).await.unwrap();
    let again = network.offload_start(&instance, job).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(gw.jobs().len(), 1, "{:?} refused {:?}", gw.jobs(), gw.refused());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_descriptor_reaches_the_gateway_most_significant_byte_first() {
    use airlift::engine::{Network, OffloadJob, OffloadPayload};
    let dir = tempfile::tempdir().unwrap();
    let (sim, gw, server, api) = setup(dir.path(), PASSWORD, vec![Behaviour::Normal; 2], 20_000).await;
    let campaign = api.call(reqwest::Method::GET, &format!("/api/campaigns/{}", sim.objects.campaign_id)).await;
    let instance = campaign["backendInstance"].as_str().unwrap().to_string();
    let network = airlift::backend::PluginNetwork::new(server.state.store.clone(), server.state.runtime.clone());
    let group = server.state.store.get::<airlift::model::MulticastGroup>(&sim.group.0.to_string()).unwrap().unwrap();
    // Seed 000 pairs "0001020304" with 16909060 = 0x01020304.
    let job = OffloadJob {
        name: "descriptor-check".into(),
        devices: vec![sim.devices[0].dev_eui],
        group,
        data: vec![7; 500],
        scheduled_unix_ms: server.state.clock.now_unix_ms(),
        setup_seconds: 0,
        start_unix_ms: server.state.clock.now_unix_ms(),
        payload: OffloadPayload::File { descriptor: 16_909_060, session_timeout_exponent: 10 },
    };
    network.offload_start(&instance, job).await.unwrap();
    assert_eq!(gw.descriptor("descriptor-check"), Some(16_909_060));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_job_takes_its_schedule_from_the_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, gw, server, api) = setup(dir.path(), PASSWORD, vec![Behaviour::Normal; 2], 20_000).await;
    let id = &sim.objects.campaign_id;
    // The campaign's session starts two hours from now (fleet time).
    let session_start_s = sim.lns.fleet.now_unix_ms() / 1000 + 2 * 3600;
    let mut campaign = api.call(reqwest::Method::GET, &format!("/api/campaigns/{id}")).await;
    for field in ["id", "created", "started", "lastChanged", "status", "archived"] {
        campaign.as_object_mut().unwrap().remove(field);
    }
    campaign["sessionStart"] = json!(chrono::DateTime::from_timestamp(session_start_s as i64, 0).unwrap().to_rfc3339());
    api.send_json(reqwest::Method::PUT, &format!("/api/campaigns/{id}"), campaign).await;
    let started_s = sim.lns.fleet.now_unix_ms() / 1000;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let name = format!("airlift-{id}");
    common::eventually(std::time::Duration::from_secs(30), || gw.job_timing(&name).is_some()).await;
    let [scheduled, setup, launch] = gw.job_timing(&name).expect("the job was scheduled");
    // Taken up as the campaign starts; set up for the gateway's setup time; launched at the campaign's time.
    assert!(scheduled >= started_s && scheduled < started_s + 600, "scheduled at {scheduled}, started at {started_s}");
    assert_eq!(setup, 300);
    assert_eq!(scheduled + setup + launch, session_start_s);
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/stop")).await;
    server.stop().await;
}
