//! Plugin runtime: misbehaving plugins fail their call and nothing else;
//! hot swap changes the next call without a restart; compiled components
//! are reused after a restart.

use airlift::plugin::device_library::{DeviceContext, LorawanVersion, UplinkEvent};
use airlift::plugin::{Plugin, PluginError, PluginRuntime};
mod common;
use common::*;
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn device() -> DeviceContext {
    DeviceContext {
        dev_eui: 0x70b3d57ed0000001,
        lorawan_version: LorawanVersion::V10,
        classes: vec![],
        firmware_version: None,
        hardware_version: None,
        memory: vec![],
        requests_sent: 0,
    }
}

async fn parse(runtime: &PluginRuntime, plugin: &Arc<Plugin>, fport: u8) -> Result<Vec<UplinkEvent>, PluginError> {
    parse_for(runtime, plugin, &campaign_context().campaign_id, fport).await
}

/// [`parse`] on behalf of campaign `campaign`.
async fn parse_for(runtime: &PluginRuntime, plugin: &Arc<Plugin>, campaign: &str, fport: u8) -> Result<Vec<UplinkEvent>, PluginError> {
    let ctx = airlift::plugin::device_library::CampaignContext { campaign_id: campaign.into(), ..campaign_context() };
    runtime.device_library(plugin).parse_uplink(fport, vec![1, 2, 3], device(), ctx).await.map(|r| r.expect("fixture never returns a parse error"))
}

/// A host with `fixture-misbehave` loaded, its runtime and the plugin.
async fn misbehaving(dir: &std::path::Path) -> (TestHost, Arc<PluginRuntime>, Arc<Plugin>) {
    let h = TestHost::start(dir).await.unwrap();
    assert_eq!(h.load_plugin("fixture-misbehave").await.0, StatusCode::CREATED);
    let runtime = h.server.state.runtime.clone();
    let plugin = runtime.active("fixture-misbehave").unwrap();
    (h, runtime, plugin)
}

fn note(events: &[UplinkEvent]) -> String {
    match events {
        [UplinkEvent::Note(n)] => n.clone(),
        other => panic!("expected one note, got {other:?}"),
    }
}

#[tokio::test]
async fn trap_loop_and_unbounded_allocation_each_fail_only_their_call() {
    let dir = tempfile::tempdir().unwrap();
    let (h, runtime, plugin) = misbehaving(dir.path()).await;

    match parse(&runtime, &plugin, 1).await {
        Err(PluginError::Trap { name, message }) => {
            assert_eq!(name, "fixture-misbehave");
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("trap expected, got {other:?}"),
    }
    assert!(h.healthy().await);

    let started = Instant::now();
    match parse(&runtime, &plugin, 2).await {
        Err(PluginError::Timeout { timeout_ms, .. }) => assert_eq!(timeout_ms, 500),
        other => panic!("timeout expected, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "deadline not enforced: {:?}", started.elapsed());
    assert!(h.healthy().await);

    match parse(&runtime, &plugin, 3).await {
        Err(PluginError::OutOfMemory { memory_mib, .. }) => assert_eq!(memory_mib, 16),
        other => panic!("out of memory expected, got {other:?}"),
    }
    assert!(h.healthy().await);

    // The same plugin still serves ordinary calls, and the API maps a
    // plugin failure to a clear error, not a crash.
    assert!(note(&parse(&runtime, &plugin, 9).await.unwrap()).contains("3 bytes on port 9"));
    let (status, body) = h.get("/api/plugins/fixture-misbehave/describe").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "fixture-misbehave");
}

#[tokio::test]
async fn a_warm_instance_serves_only_its_own_campaign_and_never_after_a_failed_call() {
    let dir = tempfile::tempdir().unwrap();
    let (_h, runtime, plugin) = misbehaving(dir.path()).await;
    // The fixture counts the calls its instance served (state the contract
    // tells libraries not to keep).
    let call = |events: Vec<UplinkEvent>| note(&events).split(' ').nth(1).and_then(|n| n.parse::<u32>().ok()).expect("a call number");
    assert_eq!(call(parse_for(&runtime, &plugin, "a", 9).await.unwrap()), 1);
    assert_eq!(call(parse_for(&runtime, &plugin, "a", 9).await.unwrap()), 2, "campaign a's next call runs warm");
    assert_eq!(call(parse_for(&runtime, &plugin, "b", 9).await.unwrap()), 1, "campaign b never gets a's instance");
    assert!(matches!(parse_for(&runtime, &plugin, "a", 1).await, Err(PluginError::Trap { .. })));
    assert_eq!(call(parse_for(&runtime, &plugin, "a", 9).await.unwrap()), 1, "a failed call's instance is dropped");
    assert_eq!(call(parse_for(&runtime, &plugin, "b", 9).await.unwrap()), 2);
    // A refused allocation the library coped with leaves its warm instance
    // usable, and a later trap there is a trap, not running out of memory.
    assert_eq!(note(&parse_for(&runtime, &plugin, "c", 4).await.unwrap()), "64 MiB refused: true");
    match parse_for(&runtime, &plugin, "c", 1).await {
        Err(PluginError::Trap { message, .. }) => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("trap expected, got {other:?}"),
    }
}

#[tokio::test]
async fn many_concurrent_runaway_calls_do_not_starve_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (h, runtime, plugin) = misbehaving(dir.path()).await;
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let (r, p) = (runtime.clone(), plugin.clone());
            tokio::spawn(async move { parse(&r, &p, 2).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.healthy().await, "API blocked while plugins spin");
    for c in calls {
        assert!(matches!(c.await.unwrap(), Err(PluginError::Timeout { .. })));
    }
}

#[tokio::test]
async fn hot_swap_changes_the_next_call_and_running_calls_keep_their_version() {
    let dir = tempfile::tempdir().unwrap();
    let h = TestHost::start(dir.path()).await.unwrap();
    let runtime = h.server.state.runtime.clone();

    let (status, v1) = h.load_plugin("fixture-echo-v1").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(v1["version"], "1.0.0");
    let old = runtime.active("fixture-echo").unwrap();
    assert!(note(&parse(&runtime, &old, 5).await.unwrap()).starts_with("echo 1.0.0"));
    assert_eq!(h.get("/api/plugins/fixture-echo/describe").await.1["version"], "1.0.0");

    let (status, v2) = h.load_plugin("fixture-echo-v2").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(v2["version"], "2.0.0");
    assert_eq!(v2["versions"].as_array().unwrap().len(), 2, "both versions recorded: {v2}");

    // Next call: the new version, no restart.
    let new = runtime.active("fixture-echo").unwrap();
    assert!(note(&parse(&runtime, &new, 5).await.unwrap()).starts_with("echo 2.0.0"));
    assert_eq!(h.get("/api/plugins/fixture-echo/describe").await.1["version"], "2.0.0");
    // A caller holding the old version (a call in flight, a pinned
    // campaign) still runs it.
    assert!(note(&parse(&runtime, &old, 5).await.unwrap()).starts_with("echo 1.0.0"));
    assert!(runtime.by_hash(&old.sha256).is_some());
}

#[tokio::test]
async fn compiled_components_are_cached_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = TestHost::start(dir.path()).await.unwrap();
        let (_, loaded) = h.load_plugin("fixture-echo-v1").await;
        assert_eq!(loaded["compiledFromCache"], false);
        h.server.stop().await;
    }
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("compiled")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");

    let h = TestHost::start(dir.path()).await.unwrap();
    let (status, restored) = h.get("/api/plugins/fixture-echo").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(restored["active"], true);
    assert_eq!(restored["compiledFromCache"], true, "{restored}");
    let plugin = h.server.state.runtime.active("fixture-echo").unwrap();
    assert!(note(&parse(&h.server.state.runtime, &plugin, 5).await.unwrap()).starts_with("echo 1.0.0"));
}

#[tokio::test]
async fn invalid_plugins_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let h = TestHost::start(dir.path()).await.unwrap();
    let bundled = airlift::plugin::bundled::bundled("fixture-echo-v1").unwrap();
    let send = |manifest: serde_json::Value, wasm: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .part("manifest", reqwest::multipart::Part::bytes(manifest.to_string().into_bytes()))
            .part("wasm", reqwest::multipart::Part::bytes(wasm));
        h.http.post(h.url("/api/plugins")).bearer_auth(ADMIN).multipart(form).send()
    };
    let manifest = serde_json::to_value(&bundled.manifest).unwrap();

    let resp = send(manifest.clone(), b"not wasm".to_vec()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("not a valid component"));

    let mut wrong_kind = manifest.clone();
    wrong_kind["kind"] = "backend".into();
    let resp = send(wrong_kind, bundled.wasm().to_vec()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("does not implement the backend world"));

    let mut future = manifest.clone();
    future["witVersion"] = "0.9.0".into();
    let resp = send(future, bundled.wasm().to_vec()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.unwrap().contains("not supported"));

    let mut greedy = manifest;
    greedy["limits"] = serde_json::json!({"memoryMib": 100000});
    assert_eq!(send(greedy, bundled.wasm().to_vec()).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert!(h.get("/api/plugins").await.1.as_array().unwrap().is_empty());
}
