//! The `chirpstack` backend plugin against a ChirpStack v4 peer behind
//! HTTPS on loopback (`sim/chirpstack`), which decodes every call with
//! ChirpStack's published `.proto` definitions and answers as its server
//! does: a class B campaign with its ping-slot periodicity in field 14, the
//! instance's gateway added to the group, retries replacing the queued copy,
//! UNAVAILABLE waited out, JSON and protobuf integration events, fPort 0
//! uplinks ignored; a group left by an earlier run brought to the
//! campaign's settings; a device ChirpStack does not have refused alone; no
//! gateway online shown in the progress; a wrong API token gets
//! UNAUTHENTICATED and a clear error.

mod common;

use airlift::model::{Eui, SessionClass};
use airlift_sim::chirpstack::proto::api;
use airlift_sim::chirpstack::{ChirpStackPeer, EventEncoding, PeerGateway};
use airlift_sim::listen::Listen;
use airlift_sim::scenario::ScenarioConfig;
use common::{assert_refused_credentials, serve_fleet, under_way, Api, SimSetup, TestPki};
use serde_json::json;

const API_TOKEN: &str = "chirpstack-api-token";
const INTEGRATION_TOKEN: &str = "integration-secret";
const APPLICATION: &str = "0b7e5b4c-43c9-4c63-9f8a-1d2a5e1f0c11";

/// A host serving the setup's data, ChirpStack behind HTTPS (a self-signed
/// certificate, pinned) in front of its fleet, and the campaign moved to a
/// ChirpStack instance holding `api_token` and naming the peer's gateway.
async fn setup(dir: &std::path::Path, api_token: &str, config: ScenarioConfig, before: impl FnOnce(&ChirpStackPeer, &SimSetup)) -> (SimSetup, ChirpStackPeer, airlift::server::Server, Api, String) {
    let (sim, server, api) = serve_fleet(dir, &config, common::NETWORK_TOKEN).await;
    let pki = TestPki::new();
    let ns = ChirpStackPeer::start(sim.lns.fleet.clone(), Listen::loopback_tls(pki.self_signed), API_TOKEN, APPLICATION, INTEGRATION_TOKEN).await.unwrap();
    before(&ns, &sim);
    let instance = json!({"name": "ChirpStack", "plugin": "chirpstack",
                          "settings": {"url": ns.url(), "application_id": APPLICATION, "gateway_ids": ChirpStackPeer::GATEWAY},
                          "secrets": {"api_token": api_token, "integration_token": INTEGRATION_TOKEN}, "allowedHosts": [ns.url()],
                          "transport": {"pinnedCertificateSha256": pki.self_signed_sha256}});
    let instance = api.move_to_new_instance(&sim.objects.campaign_id, instance).await;
    ns.post_uplinks_to(&format!("{}/backends/{instance}/uplink", api.base));
    (sim, ns, server, api, instance)
}

fn fleet_config(class: SessionClass) -> ScenarioConfig {
    let mut config = ScenarioConfig::new(10);
    config.fleet.uplink_period_s = 15;
    config.fleet.loss = 0.05;
    config.session_class = class;
    config
}

fn group_name(sim: &SimSetup) -> String {
    format!("airlift-{:016x}", sim.group.0 .0)
}

/// Every device of the fleet but `except` holds the exact file.
fn assert_files(sim: &SimSetup, except: &[Eui]) {
    for d in sim.devices.iter().filter(|d| !except.contains(&d.dev_eui)) {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui).as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_b_campaign_runs_end_to_end_through_chirpstack() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, ns, server, api, instance) = setup(dir.path(), API_TOKEN, fleet_config(SessionClass::B), |_, _| {}).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    // ChirpStack is overloaded for a moment once fragments go out.
    api.wait_for(id, |p| under_way(p, "DataFragment")).await;
    ns.fail_next(3);
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    assert_files(&sim, &[]);
    let statuses = ns.statuses();
    assert_eq!(statuses.get(&14), Some(&3), "the injected UNAVAILABLEs were waited out: {statuses:?}");
    assert_eq!(statuses.len(), 2, "nothing else failed: {statuses:?}");
    assert_eq!(ns.members_added(), sim.devices.iter().map(|d| d.dev_eui).collect::<Vec<_>>(), "every device was added to the group");

    // The group as ChirpStack stored it: class B with the ping-slot
    // periodicity of field 14, and the instance's gateway.
    let group = ns.group_as_configured(&group_name(&sim)).expect("the group was created");
    assert_eq!(group.group_type, api::MulticastGroupType::ClassB as i32);
    assert_eq!(group.class_b_ping_slot_periodicity, 4, "{group:?}");
    assert_eq!(ns.gateways_added(), [(group_name(&sim), ChirpStackPeer::GATEWAY.to_string())].into());
    assert_eq!(ns.multicast_unsent(), 0, "every multicast frame had a gateway");
    assert_eq!(ns.deepest_device_queue(), 1, "a retry replaces the unanswered copy in the device's queue");

    // The run is COMPLETED before its session is torn down: the group goes
    // right after, on the network's own time.
    common::eventually(std::time::Duration::from_secs(30), || ns.group_count() == 0).await;
    assert_eq!(ns.group_count(), 0, "the group is deleted once the session is over");

    // ChirpStack posts MAC-only uplinks too (fPort 0): taken and ignored.
    assert_eq!(ns.post_mac_only_uplink(sim.devices[0].dev_eui).await.unwrap(), reqwest::StatusCode::OK);
    // An integration call without the configured token is refused.
    let up = json!({"deviceInfo": {"devEui": "70b3d57ed0000000"}, "fPort": 201, "data": "AQA=", "fCnt": 1});
    let forged = api.http.post(format!("{}/backends/{instance}/uplink?event=up", api.base)).bearer_auth("guess").json(&up).send().await.unwrap();
    assert_eq!(forged.status(), reqwest::StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_group_is_updated_protobuf_events_are_read_and_an_unknown_device_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let stale = |ns: &ChirpStackPeer, sim: &SimSetup| {
        // An earlier run left the group behind, class B on other radio
        // settings with its frame counter far ahead.
        ns.preload_group(api::MulticastGroup {
            name: group_name(sim),
            mc_addr: "01020304".into(),
            f_cnt: 999,
            group_type: api::MulticastGroupType::ClassB as i32,
            dr: 1,
            frequency: 869_525_000,
            class_b_ping_slot_periodicity: 7,
            ..Default::default()
        });
        ns.set_event_encoding(EventEncoding::Protobuf);
        ns.unregister(sim.devices[0].dev_eui);
    };
    let (sim, ns, server, api, _) = setup(dir.path(), API_TOKEN, fleet_config(SessionClass::C), stale).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    let unknown = sim.devices[0].dev_eui;
    assert_files(&sim, &[unknown]);
    let devices = api.call(reqwest::Method::GET, &format!("/api/campaigns/{id}/devices")).await;
    let failed = devices.as_array().unwrap().iter().find(|d| d["devEUI"].as_str().is_some_and(|e| e.eq_ignore_ascii_case(&unknown.to_string()))).unwrap_or(&devices);
    assert!(failed.to_string().contains("not in ChirpStack"), "the unknown device's reason: {failed}");

    let group = ns.group_as_configured(&group_name(&sim)).unwrap();
    assert_eq!(group.group_type, api::MulticastGroupType::ClassC as i32, "{group:?}");
    assert_eq!(group.class_b_ping_slot_periodicity, 0, "{group:?}");
    assert_ne!((group.dr, group.frequency), (1, 869_525_000), "{group:?}");
    assert_eq!(group.f_cnt, 0, "the frame counter goes on from the campaign's: {group:?}");
    assert!(!ns.statuses().contains_key(&13) || ns.statuses()[&13] <= 2, "the unknown device was not retried: {:?}", ns.statuses());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_deleted_on_chirpstack_mid_session_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, ns, server, api, _) = setup(dir.path(), API_TOKEN, fleet_config(SessionClass::C), |_, _| {}).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    api.wait_for(id, |p| under_way(p, "DataFragment")).await;
    ns.delete_groups();
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    assert_files(&sim, &[]);
    assert_eq!(ns.groups_created(), 2, "the group was provisioned again");
    // It goes on from the campaign's frame counter, not from 0.
    assert!(ns.group_as_configured(&group_name(&sim)).unwrap().f_cnt > 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_gateway_online_the_campaign_waits_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let offline = |ns: &ChirpStackPeer, _: &SimSetup| ns.set_gateways(vec![PeerGateway { id: ChirpStackPeer::GATEWAY.into(), online: false }]);
    let (sim, ns, server, api, _) = setup(dir.path(), API_TOKEN, fleet_config(SessionClass::C), offline).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let waiting = api.wait_for(id, |p| p["networkError"]["text"].as_str().is_some_and(|t| t.contains("online"))).await;
    assert_eq!(waiting["campaignStatus"], "RUNNING", "{waiting}");
    assert!(waiting["networkError"]["since"].is_string(), "{waiting}");
    assert_eq!(ns.multicast_unsent(), 0, "nothing was enqueued for a group no gateway serves");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_token_gets_unauthenticated_and_a_clear_campaign_error() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, ns, server, api, _) = setup(dir.path(), "not-the-token", fleet_config(SessionClass::C), |_, _| {}).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    let done = api.wait_for(id, |p| p["campaignStatus"] != "RUNNING").await;
    assert_refused_credentials(&done, "gRPC status 16");
    assert!(ns.statuses().get(&16).is_some_and(|n| *n > 0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_is_not_chirpstacks_api_fails_the_campaign_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, server, api) = serve_fleet(dir.path(), &fleet_config(SessionClass::C), common::NETWORK_TOKEN).await;
    // Another service answers there: every gRPC path is a 404.
    let elsewhere = airlift_sim::thingpark::ThingParkPeer::start(sim.lns.fleet.clone(), Listen::loopback(), "as", "00112233445566778899aabbccddeeff").await.unwrap();
    let instance = json!({"name": "ChirpStack", "plugin": "chirpstack", "settings": {"url": elsewhere.url(), "application_id": APPLICATION},
                          "secrets": {"api_token": API_TOKEN, "integration_token": INTEGRATION_TOKEN}, "allowedHosts": [elsewhere.url()]});
    api.move_to_new_instance(&sim.objects.campaign_id, instance).await;
    let error = common::start_expecting_prompt_failure(&api, &sim.objects.campaign_id).await;
    assert!(error.contains("404") && error.contains("the service's API"), "{error}");
    server.stop().await;
}
