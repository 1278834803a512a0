//! `/metrics` during a campaign over the simulated network server: every
//! family is there, and the numbers move as the campaign runs. Without a
//! token it is refused (unless the host serves it openly).

mod common;

use airlift_sim::scenario::ScenarioConfig;
use common::{serve_fleet, under_way};

/// The sum of a family's samples whose labels include every `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_while_a_campaign_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ScenarioConfig::new(10);
    config.fleet.uplink_period_s = 15;
    let (sim, server, api) = serve_fleet(dir.path(), &config, common::NETWORK_TOKEN).await;
    let instance = &sim.objects.backend_instance;
    sim.lns.post_uplinks_to(&format!("{}/backends/{instance}/uplink", api.base));
    let scrape = || async {
        let r = api.http.get(format!("{}/metrics", api.base)).bearer_auth(common::TOKEN).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.text().await.unwrap()
    };
    let unauthenticated = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap();
    assert_eq!(unauthenticated.status(), reqwest::StatusCode::UNAUTHORIZED);

    let before = scrape().await;
    assert_eq!(sample(&before, "airlift_campaigns", &["status=\"CONFIGURED\""]), 1.0, "{before}");
    assert!(sample(&before, "airlift_store_bytes", &[]) > 0.0);
    let id = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{id}/start")).await;
    api.wait_for(id, |p| under_way(p, "DataFragment")).await;
    // A step records its fragments before they go out (the network is
    // called after, unlocked): wait for the first to be sent.
    let backend = format!("backend_instance=\"{instance}\"");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let during = loop {
        let now = scrape().await;
        if sample(&now, "airlift_downlinks_total", &[&backend, "kind=\"multicast\""]) > sample(&before, "airlift_downlinks_total", &[&backend, "kind=\"multicast\""]) {
            break now;
        }
        assert!(std::time::Instant::now() < until, "no multicast downlink counted: {now}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(sample(&during, "airlift_campaigns", &["status=\"RUNNING\""]), 1.0, "{during}");
    assert_eq!(sample(&during, "airlift_campaign_devices", &[]), 10.0, "every device of the running campaign has a state: {during}");
    let moved = |family: &str, labels: &[&str]| sample(&during, family, labels) > sample(&before, family, labels);
    assert!(moved("airlift_uplinks_total", &[&backend, "result=\"taken\""]), "uplinks: {during}");
    assert!(moved("airlift_downlinks_total", &[&backend, "kind=\"unicast\"", "result=\"sent\""]), "unicast downlinks");
    assert!(moved("airlift_downlinks_total", &[&backend, "kind=\"multicast\""]), "multicast downlinks");
    assert!(moved("airlift_plugin_calls_total", &["plugin=\"lorawan-v1\"", "outcome=\"ok\""]), "library calls");
    assert!(moved("airlift_plugin_calls_total", &["plugin=\"simulated\"", "outcome=\"ok\""]), "backend calls");
    assert!(moved("airlift_plugin_call_seconds_count", &["plugin=\"lorawan-v1\""]), "call latency histogram");
    assert!(sample(&during, "airlift_plugin_fuel_used_sum", &["plugin=\"lorawan-v1\""]) > 0.0, "fuel the library used");
    assert!(moved("airlift_engine_step_seconds_count", &[]), "engine steps");

    // A network that refuses is counted by instance and error: a message
    // through an instance holding a token the network does not take.
    let wrong = serde_json::json!({"name": "wrong token", "plugin": "simulated", "settings": {"url": sim.lns.url()}, "secrets": {"token": "not-the-token"}, "allowedHosts": [sim.lns.url()]});
    let wrong = api.send_json(reqwest::Method::POST, "/api/backend-instances", wrong).await["id"].as_str().unwrap().to_string();
    let device = sim.devices[0].dev_eui;
    let refused = api
        .http
        .post(format!("{}/api/devices/{device}/downlink", api.base))
        .bearer_auth(common::TOKEN)
        .json(&serde_json::json!({"backendInstance": wrong, "fport": 10, "payload": "01"}))
        .send()
        .await
        .unwrap();
    assert!(!refused.status().is_success());
    let after = scrape().await;
    let wrong = format!("backend_instance=\"{wrong}\"");
    assert_eq!(sample(&after, "airlift_network_errors_total", &[&wrong, "error=\"unauthorized\""]), 1.0, "{after}");
    assert_eq!(sample(&after, "airlift_downlinks_total", &[&wrong, "result=\"failed\""]), 1.0);
    server.stop().await;
}
