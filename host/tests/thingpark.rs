//! The `thingpark` backend plugin against a ThingPark LRC peer behind HTTPS
//! on loopback (`sim/thingpark.rs`), with a CA made in the test: a whole
//! campaign with downlinks signed by the AS key and DevEUI_uplink reports
//! checked by the plugin; a wrong AS key gets the LRC's 401 and a clear
//! campaign error; 500s are waited out; an untrusted or wrongly pinned
//! certificate fails the campaign at once with the reason.

mod common;

use airlift_sim::scenario::ScenarioConfig;
use airlift_sim::thingpark::ThingParkPeer;
use airlift_sim::listen::{Listen, TlsIdentity};
use common::{assert_refused_credentials, serve_fleet, under_way, Api, SimSetup, TestPki};
use serde_json::json;

const AS_ID: &str = "airlift.test";
const AS_KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// A host serving the setup's data, the LRC peer in front of its fleet
/// (HTTPS with a certificate from the test's CA), and the campaign moved to
/// a ThingPark instance holding `as_key` that trusts that CA.
async fn setup(dir: &std::path::Path, as_key: &str) -> (SimSetup, ThingParkPeer, airlift::server::Server, Api, String) {
    let pki = TestPki::new();
    setup_with(dir, as_key, pki.server, json!({"caCertificatesPem": pki.ca_pem})).await
}

async fn setup_with(dir: &std::path::Path, as_key: &str, identity: TlsIdentity, transport: serde_json::Value) -> (SimSetup, ThingParkPeer, airlift::server::Server, Api, String) {
    let mut config = ScenarioConfig::new(10);
    config.fleet.uplink_period_s = 15;
    config.fleet.loss = 0.05;
    let (sim, server, api) = serve_fleet(dir, &config, common::NETWORK_TOKEN).await;
    let lrc = ThingParkPeer::start(sim.lns.fleet.clone(), Listen::loopback_tls(identity), AS_ID, AS_KEY).await.unwrap();
    lrc.provision_multicast_device(sim.group.0, sim.group.1.clone());
    let instance = json!({"name": "ThingPark", "plugin": "thingpark", "settings": {"url": lrc.url(), "as_id": AS_ID}, "secrets": {"as_key": as_key}, "allowedHosts": [lrc.url()], "transport": transport});
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
    assert_eq!(lrc.fcnt_reused(), 0, "no multicast frame counter was used twice");
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

/// A campaign whose LRC presents a certificate the instance does not trust
/// fails at once, saying why, and nothing reaches the LRC.
async fn fails_at_once_on_tls(identity: TlsIdentity, transport: serde_json::Value, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (sim, lrc, server, api, _) = setup_with(dir.path(), AS_KEY, identity, transport).await;
    let error = common::start_expecting_prompt_failure(&api, &sim.objects.campaign_id).await;
    assert!(error.contains("TLS") && error.contains(reason), "{error}");
    assert_eq!(lrc.downlinks(), (0, 0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ca_fails_the_campaign_at_once() {
    // The platform's roots do not know the test's CA, and the instance adds none.
    fails_at_once_on_tls(TestPki::new().server, json!({}), "trust the server's CA").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_fails_the_campaign_at_once() {
    let (presented, other) = (TestPki::new(), TestPki::new());
    fails_at_once_on_tls(presented.self_signed, json!({"pinnedCertificateSha256": other.self_signed_sha256}), "not the pinned one").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_self_signed_certificate_is_trusted_plain_http_needs_the_flag_and_the_plugin_validates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    let (sim, lrc, server, api, _) = setup_with(dir.path(), AS_KEY, pki.self_signed, json!({"pinnedCertificateSha256": pki.self_signed_sha256})).await;
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    common::eventually(std::time::Duration::from_secs(60), || lrc.downlinks().0 > 0).await;
    assert!(lrc.downlinks().0 > 0, "nothing went through the pinned connection");
    let progress = api.call(reqwest::Method::GET, &format!("/api/campaigns/{id}/progress")).await;
    assert_ne!(progress["campaignStatus"], "ERROR", "{progress}");

    // Plain HTTP beyond loopback needs the instance to say so, and is shown.
    let instance = |transport: serde_json::Value| json!({"name": "LRC", "plugin": "thingpark", "settings": {"url": "http://lrc.example.com", "as_id": AS_ID}, "secrets": {"as_key": AS_KEY}, "allowedHosts": ["http://lrc.example.com"], "transport": transport});
    let refused = api.http.post(format!("{}/api/backend-instances", api.base)).bearer_auth(common::TOKEN).json(&instance(json!({}))).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    // The plugin's own `validate` checks the settings before they are stored.
    let mut no_key = instance(json!({"insecureHttp": true}));
    no_key["secrets"] = json!({});
    let refused = api.http.post(format!("{}/api/backend-instances", api.base)).bearer_auth(common::TOKEN).json(&no_key).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    let why: serde_json::Value = refused.json().await.unwrap();
    assert!(why.to_string().contains("as_key"), "{why}");
    let allowed = api.send_json(reqwest::Method::POST, "/api/backend-instances", instance(json!({"insecureHttp": true}))).await;
    assert!(allowed["warnings"][0].as_str().is_some_and(|w| w.contains("unencrypted")), "{allowed}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_is_not_kept_waiting_by_a_network_that_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, lrc, server, api, _) = setup(dir.path(), AS_KEY).await;
    let id = &sim.objects.campaign_id;
    lrc.hang(8_000);
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    common::eventually(std::time::Duration::from_secs(30), || lrc.hanging() > 0).await;
    assert!(lrc.hanging() > 0, "no request reached the hanging LRC");
    let asked = std::time::Instant::now();
    let stopped = api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/stop")).await;
    let took = asked.elapsed();
    assert_eq!(stopped["campaignStatus"], "STOPPED", "{stopped}");
    // STOPPED is on disk at once; the teardown downlinks (hanging too) go
    // out after the answer, and nothing waits for the step's send.
    assert!(took < std::time::Duration::from_secs(2), "stop took {took:?} behind a hanging network");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_fails_the_campaign_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, _lrc, server, api, _) = setup(dir.path(), AS_KEY).await;
    // Names under .invalid never resolve (RFC 6761): no query leaves the host.
    let url = "https://lrc.invalid";
    let instance = json!({"name": "LRC", "plugin": "thingpark", "settings": {"url": url, "as_id": AS_ID}, "secrets": {"as_key": AS_KEY}, "allowedHosts": [url]});
    api.move_to_new_instance(&sim.objects.campaign_id, instance).await;
    let error = common::start_expecting_prompt_failure(&api, &sim.objects.campaign_id).await;
    assert!(error.contains("lrc.invalid") && error.contains("does not resolve"), "{error}");
    server.stop().await;
}
