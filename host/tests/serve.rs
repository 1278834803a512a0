//! Campaigns in a serving host, through the API and the `simulated`
//! backend plugin to the simulated network server on loopback: stop
//! through the API tears the devices' sessions down; a token the network
//! refuses fails the campaign with the network's 401 named; a running
//! campaign moves to a new backend plugin version, then to another backend
//! instance, and finishes; a signed uplink posted again is taken once.

mod common;

use airlift_sim::scenario::ScenarioConfig;
use common::{assert_refused_credentials, serve_fleet, under_way};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_through_the_api_tears_the_sessions_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ScenarioConfig::new(10);
    config.fleet.uplink_period_s = 15;
    let (sim, server, api) = serve_fleet(dir.path(), &config, common::NETWORK_TOKEN).await;
    sim.lns.post_uplinks_to(&format!("{}/backends/{}/uplink", api.base, sim.objects.backend_instance));
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    // Stop once fragments are going out.
    api.wait_for(id, |p| under_way(p, "DataFragment")).await;
    assert!(sim.lns.fleet.in_session(sim.devices[0].dev_eui));
    // The file it sends can neither change nor go while it runs.
    let file = api.call(reqwest::Method::GET, &format!("/api/campaigns/{id}")).await["file"].as_str().unwrap().to_string();
    let changed = api.http.put(format!("{}/api/files/{file}", api.base)).bearer_auth(common::TOKEN).json(&json!({"description": "other"})).send().await.unwrap();
    assert_eq!(changed.status(), reqwest::StatusCode::CONFLICT);
    let archived = api.http.delete(format!("{}/api/files/{file}", api.base)).bearer_auth(common::TOKEN).send().await.unwrap();
    assert_eq!(archived.status(), reqwest::StatusCode::CONFLICT);
    let stopped = api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/stop")).await;
    assert_eq!(stopped["campaignStatus"], "STOPPED");
    // The teardown downlinks go out after the answer.
    let torn_down = || [(200, 0x03), (201, 0x03)].iter().all(|(port, cid)| sim.lns.fleet.unicast_requests(*port, *cid) == sim.devices.len()) && !sim.devices.iter().any(|d| sim.lns.fleet.in_session(d.dev_eui));
    common::eventually(std::time::Duration::from_secs(30), torn_down).await;
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
    let (sim, server, api) = serve_fleet(dir.path(), &ScenarioConfig::new(3), "not-the-network-token").await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_refused_credentials(&done, "401");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_campaign_moves_to_a_new_backend_version_then_to_another_instance() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ScenarioConfig::new(10);
    config.fleet.uplink_period_s = 15;
    let (sim, server, api) = serve_fleet(dir.path(), &config, common::NETWORK_TOKEN).await;
    let first = sim.objects.backend_instance.clone();
    sim.lns.post_uplinks_to(&format!("{}/backends/{first}/uplink", api.base));
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let agent = |version: &str, instance: &str| format!("airlift-simulated/{version} ({instance})");

    // Mid-setup, a new version of the backend plugin is loaded.
    api.wait_for(id, |p| under_way(p, "McGroupSetup")).await;
    let loaded = api.load_plugin("fixture-simulated-v2").await;
    assert_eq!(loaded["version"], "0.2.0", "{loaded}");
    api.wait_for(id, |_| sim.lns.clients().contains_key(&agent("0.2.0", &first))).await;

    // Once fragments go out, the campaign moves to another instance of the network.
    api.wait_for(id, |p| under_way(p, "DataFragment")).await;
    let instance = json!({"name": "second instance", "plugin": "simulated", "settings": {"url": sim.lns.url()}, "secrets": {"token": common::NETWORK_TOKEN}, "allowedHosts": [sim.lns.url()]});
    let second = api.move_to_new_instance(id, instance).await;
    // Uplinks count only through the campaign's instance: the network posts
    // to the new one from now on.
    sim.lns.post_uplinks_to(&format!("{}/backends/{second}/uplink", api.base));

    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    for d in &sim.devices {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui).as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
    let clients = sim.lns.clients();
    for (version, instance) in [("0.1.0", &first), ("0.2.0", &first), ("0.2.0", &second)] {
        assert!(clients.get(&agent(version, instance)).is_some_and(|n| *n > 0), "no request from {version} on {instance}: {clients:?}");
    }
    assert!(!clients.contains_key(&agent("0.1.0", &second)), "the old version never served the new instance: {clients:?}");
    let (redone, repeated) = sim.lns.fleet.redone();
    assert_eq!((redone, repeated), (0, 0), "nothing redone across the swaps");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_uplink_posted_again_or_out_of_its_time_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, server, api) = serve_fleet(dir.path(), &ScenarioConfig::new(2), common::NETWORK_TOKEN).await;
    let url = format!("{}/backends/{}/uplink", api.base, sim.objects.backend_instance);
    let post = |fcnt: u32, time: u64| {
        let body = json!({"uplinks": [{"devEui": sim.devices[0].dev_eui.to_string(), "fPort": 203, "payload": "00", "time": time, "fCnt": fcnt}]}).to_string();
        let signature = airlift_sim::lns::signature(&body, common::NETWORK_TOKEN);
        let request = api.http.post(&url).header("x-sim-signature", signature).body(body);
        async move { request.send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let now = || sim.lns.fleet.now_unix_ms();
    let (taken, replayed, outside) = (json!({"uplinks": 1, "replays": 0, "outsideTimeWindow": 0}), json!({"uplinks": 0, "replays": 1, "outsideTimeWindow": 0}), json!({"uplinks": 0, "replays": 0, "outsideTimeWindow": 1}));
    assert_eq!(post(7, now()).await, taken);
    for _ in 0..4 {
        assert_eq!(post(7, now()).await, replayed, "the same frame again is a replay");
    }
    assert_eq!(post(3, now()).await, replayed, "an older frame counter is a replay");
    // A report signed long ago (its counter new, as after a rejoin), or
    // dated ahead of the host's clock, is refused; the window is 15 min of
    // real time, scaled with the test's clock.
    let window = airlift::api::UplinkWindow::for_clock_speed(common::SPEED);
    assert_eq!(post(100, now() - window.max_age_ms - 60_000 * common::SPEED as u64).await, outside, "a stale report");
    assert_eq!(post(101, now() + window.max_ahead_ms + 60_000 * common::SPEED as u64).await, outside, "a report from the future");
    assert_eq!(post(8, now()).await, taken, "refused reports left the counter where it was");
    // The device's page keeps the uplinks taken, newest first; refused ones left no trace.
    let kept = api.call(reqwest::Method::GET, &format!("/api/devices/{}/uplinks", sim.devices[0].dev_eui)).await;
    let fcnts: Vec<u64> = kept.as_array().unwrap().iter().map(|u| u["fcnt"].as_u64().unwrap()).collect();
    assert_eq!(fcnts, [8, 7], "{kept}");
    assert_eq!((kept[0]["fport"].as_u64(), kept[0]["payloadHex"].as_str()), (Some(203), Some("00")), "{kept}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sends_one_unicast_message_to_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, server, api) = serve_fleet(dir.path(), &ScenarioConfig::new(2), common::NETWORK_TOKEN).await;
    let eui = sim.devices[0].dev_eui;
    let instance = &sim.objects.backend_instance;
    let post = |eui: String, body: serde_json::Value| {
        let request = api.http.post(format!("{}/api/devices/{eui}/downlink", api.base)).bearer_auth(common::TOKEN).json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, sent) = post(eui.to_string(), json!({"backendInstance": instance, "fport": 10, "payload": "01ab"})).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{sent}");
    assert_eq!(sent["sent"], true);
    assert_eq!(sim.lns.fleet.unicast_requests(10, 0x01), 1, "the network took it for the device");
    for (body, field) in [
        (json!({"backendInstance": instance, "fport": 0, "payload": "01"}), "fport"),
        (json!({"backendInstance": instance, "fport": 10, "payload": "zz"}), "payload"),
        (json!({"backendInstance": instance, "fport": 10, "payload": "00".repeat(243)}), "payload"),
        (json!({"backendInstance": "nope", "fport": 10, "payload": "01"}), "backendInstance"),
    ] {
        let (status, refused) = post(eui.to_string(), body).await;
        assert_eq!((status, refused["field"].as_str()), (reqwest::StatusCode::BAD_REQUEST, Some(field)), "{refused}");
    }
    assert_eq!(post("70b3d57ed00fffff".into(), json!({"backendInstance": instance, "fport": 10, "payload": "01"})).await.0, reqwest::StatusCode::NOT_FOUND);
    assert_eq!(sim.lns.fleet.unicast_requests(10, 0x01), 1, "refused requests sent nothing");
    server.stop().await;
}
