//! The stage engine end to end over the simulated fleet, in virtual time:
//! success under loss, silent devices against the success threshold,
//! maximum duration, stop, and a restart that redoes nothing.

use airlift::clock::{Clock, ManualClock};
use airlift::engine::{progress, Capabilities, CampaignRun, Engine, Network, NetworkError, OffloadJob, OffloadStatus, Pacing, RunOptions, RunStatus};
use airlift::model::{Campaign, CampaignStatus, Eui, MulticastGroup};
use airlift::plugin::PluginRuntime;
use airlift_sim::fleet::{drive, drive_fleet, Behaviour, SimFleet};
use airlift_sim::scenario::{provision, Scenario, ScenarioConfig};
use airlift_sim::PackageVersion;
mod common;
use common::*;
use reqwest::StatusCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

const START_MS: u64 = 1_800_000_000_000;

async fn host(dir: &std::path::Path, clock: Arc<ManualClock>, library: &str) -> TestHost {
    let h = TestHost::start_with(dir, |c| c.clock = clock).await.unwrap();
    assert_eq!(h.load_plugin(library).await.0, StatusCode::CREATED);
    h
}

fn scenario(h: &TestHost, clock: Arc<ManualClock>, config: &ScenarioConfig) -> Scenario {
    let s = &h.server.state;
    provision(&s.store, &s.vault, &s.runtime, clock, config).unwrap()
}

fn options(config: &ScenarioConfig) -> RunOptions {
    RunOptions { fixed_redundancy_pct: None, target_firmware: Some(config.fleet.installed_firmware) }
}

fn run_of(s: &Scenario) -> CampaignRun {
    s.engine.store.get::<CampaignRun>(&s.campaign_id).unwrap().unwrap()
}

/// A host with `library` loaded and `config`'s fleet and campaign
/// provisioned, in virtual time. The directory lives as long as the host.
async fn fixture(library: &str, config: &ScenarioConfig) -> (tempfile::TempDir, Arc<ManualClock>, TestHost, Scenario) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), library).await;
    let s = scenario(&h, clock.clone(), config);
    (dir, clock, h, s)
}

/// Start the campaign and drive it to its end: its run.
async fn run_through(s: &Scenario, clock: &ManualClock, options: RunOptions) -> CampaignRun {
    s.engine.start(&s.campaign_id, options).await.unwrap();
    assert!(drive(&s.engine, clock, &s.campaign_id, |_| true).await.unwrap());
    run_of(s)
}

fn campaign_status(s: &Scenario) -> CampaignStatus {
    s.engine.store.get::<Campaign>(&s.campaign_id).unwrap().unwrap().status
}

#[tokio::test]
async fn a_hundred_devices_at_ten_percent_loss_all_get_the_exact_file() {
    for (library, version) in [("lorawan-v1", PackageVersion::V1), ("lorawan-v2", PackageVersion::V2)] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START_MS));
        let h = host(dir.path(), clock.clone(), library).await;
        let mut config = ScenarioConfig::new(100);
        config.fleet.loss = 0.1;
        config.fleet.seed = 11;
        config.fleet.version = version;
        config.fleet.clock_drift_s = 20;
        config.library = library.into();
        let s = scenario(&h, clock.clone(), &config);
        s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
        assert!(drive(&s.engine, &clock, &s.campaign_id, |_| true).await.unwrap());

        let run = run_of(&s);
        assert_eq!(run.status, RunStatus::Succeeded, "{library}: {:?}", run.error);
        assert_eq!(campaign_status(&s), CampaignStatus::Succeeded);
        let devices = s.engine.device_runs(&s.campaign_id).unwrap();
        // Every device holds the file (checked below); a device whose
        // exchanges after delivery are all lost still fails that stage.
        let succeeded = devices.iter().filter(|d| d.succeeded).count();
        assert!(succeeded >= 90, "{library}: {:?}", devices.iter().filter_map(|d| d.failed.clone()).collect::<Vec<_>>());
        for d in devices.iter().filter(|d| !d.succeeded) {
            let failed = d.failed.as_deref().unwrap();
            assert!(failed.starts_with("DevVersion: no answer") || failed.starts_with("DevUpgradeImage: no answer"), "{library}: {failed}");
        }
        for p in &s.devices {
            assert_eq!(s.engine.network.received_file(p.dev_eui).as_deref(), Some(s.image.as_slice()), "{library}: {} lacks the exact file", p.dev_eui);
            assert!(!s.engine.network.in_session(p.dev_eui), "session ended: devices back in class A");
        }
        // The inventory follows: an updated device's stored firmware is the new one.
        for d in devices.iter().filter(|d| d.succeeded) {
            let device = s.engine.store.get::<airlift::model::Device>(&d.dev_eui.to_string()).unwrap().unwrap();
            assert_eq!(device.firmware.as_deref(), Some("2.0.0.0"), "{library}: {}", d.dev_eui);
            assert!(device.firmware_changed.is_some());
            assert_eq!(device.firmware_changed_by.as_deref(), Some(s.campaign_id.as_str()));
        }
        let m = run.layout.unwrap().nb_frag;
        assert!(run.fragments_sent >= m && run.extra_rounds >= 1, "loss needs a second round: {} sent for M={m}", run.fragments_sent);
        // Progress speaks the RMC shape.
        let msg = progress::campaign_message(&s.engine.parts(&s.campaign_id).unwrap(), clock.now_unix_ms());
        assert_eq!(msg["campaignStatus"], "COMPLETED");
        assert_eq!(msg["campaignStagesCount"], run.stages.len());
        assert_eq!(msg["devicesSucceeded"], succeeded);
        let dev = progress::device_message(&run, devices.iter().find(|d| d.succeeded).unwrap(), clock.now_unix_ms());
        assert_eq!(dev["deviceState"]["deviceStatus"], "COMPLETED");
        assert_eq!(dev["deviceState"]["fwVersion"], "2.0.0.0");
        // The same over the API.
        let (status, api) = h.get(&format!("/api/campaigns/{}/progress", s.campaign_id)).await;
        assert_eq!(status, StatusCode::OK, "{api}");
        assert_eq!(api["campaignStatus"], "COMPLETED");
        assert_eq!(api["devicesSucceeded"], succeeded);
        let (_, per_device) = h.get(&format!("/api/campaigns/{}/devices", s.campaign_id)).await;
        assert_eq!(per_device.as_array().unwrap().len(), 100);
        assert!(per_device.as_array().unwrap().iter().all(|d| d["deviceState"]["holdsFile"] == true));
    }
}

fn with_silent(n: usize, silent_every: usize, threshold: u8) -> ScenarioConfig {
    let mut config = ScenarioConfig::new(n);
    for (i, b) in config.behaviours.iter_mut().enumerate() {
        if i % silent_every == 0 {
            *b = Behaviour::Silent;
        }
    }
    config.success_threshold = threshold;
    config.fleet.seed = 5;
    config
}

#[tokio::test]
async fn silent_devices_fail_alone_while_the_threshold_holds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    let config = with_silent(50, 5, 70); // 20 % silent
    let s = scenario(&h, clock.clone(), &config);
    s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
    drive(&s.engine, &clock, &s.campaign_id, |_| true).await.unwrap();
    assert_eq!(run_of(&s).status, RunStatus::Succeeded, "{:?}", run_of(&s).error);
    let devices = s.engine.device_runs(&s.campaign_id).unwrap();
    let failed: Vec<_> = devices.iter().filter(|d| !d.succeeded).collect();
    assert_eq!(failed.len(), 10);
    // The device list finds them by where they stand in the campaign.
    for (state, count) in [("failed", 10), ("succeeded", 40)] {
        let (_, listed) = h.get(&format!("/api/devices?campaign={}&campaignState={state}", s.campaign_id)).await;
        assert_eq!(listed.as_array().map(|l| l.len()), Some(count), "{state}: {listed}");
    }

    // A new campaign for only the failed devices.
    let (status, retry) = h.post(&format!("/api/campaigns/{}/retry-failed", s.campaign_id), serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::CREATED, "{retry}");
    assert_eq!(retry["status"], "CONFIGURED");
    let set_id = retry["deviceSets"][0].as_str().unwrap();
    let (_, set) = h.get(&format!("/api/device-sets/{set_id}")).await;
    let mut in_set: Vec<String> = set["devices"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let mut expected: Vec<String> = failed.iter().map(|d| d.dev_eui.to_string()).collect();
    in_set.sort();
    expected.sort();
    assert_eq!(in_set, expected);
    // An archived campaign makes no new (hidden) campaign.
    assert_eq!(h.delete(&format!("/api/campaigns/{}", s.campaign_id)).await.0, StatusCode::OK);
    let (status, refused) = h.post(&format!("/api/campaigns/{}/retry-failed", s.campaign_id), serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");

    // The live stream tells the final state of a finished campaign, then ends.
    let body = h.http.get(h.url(&format!("/api/campaigns/{}/progress/stream", s.campaign_id))).bearer_auth(VIEWER).send().await.unwrap().text().await.unwrap();
    assert!(body.starts_with("event: progress"), "{body}");
    assert!(body.contains("\"campaignStatus\":\"COMPLETED\""), "{body}");
    for d in failed {
        let p = s.devices.iter().find(|p| p.dev_eui == d.dev_eui).unwrap();
        assert_eq!(p.behaviour, Behaviour::Silent);
        assert!(d.failed.as_deref().unwrap().contains("no answer"), "{:?}", d.failed);
    }
}

#[tokio::test]
async fn a_threshold_above_what_answers_fails_the_campaign_at_that_stage() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    let config = with_silent(50, 5, 90);
    let s = scenario(&h, clock.clone(), &config);
    s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
    drive(&s.engine, &clock, &s.campaign_id, |_| true).await.unwrap();
    let run = run_of(&s);
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.as_deref().unwrap().contains("success threshold not met at McGroupSetup"), "{:?}", run.error);
    assert_eq!(campaign_status(&s), CampaignStatus::Failed);
    assert_eq!(run.fragments_sent, 0, "nothing sent after the failed stage");
}

#[tokio::test]
async fn maximum_duration_fails_the_campaign_and_returns_devices_to_class_a() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    let mut config = ScenarioConfig::new(20);
    config.max_duration_minutes = 20;
    config.file_size = 200_000; // ~840 fragments at 2 s each: far beyond 20 minutes
    let s = scenario(&h, clock.clone(), &config);
    s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
    let mut saw_session = false;
    drive(&s.engine, &clock, &s.campaign_id, |e| {
        saw_session |= e.network.in_session(s.devices[0].dev_eui);
        true
    })
    .await
    .unwrap();
    assert!(saw_session, "devices were in class C during the session");
    let run = run_of(&s);
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.as_deref().unwrap().contains("maximum duration"), "{:?}", run.error);
    assert!(clock.now_unix_ms() <= START_MS + 20 * 60_000 + 2_000, "stopped at the deadline");
    for p in &s.devices {
        assert!(!s.engine.network.in_session(p.dev_eui), "{} still in class C", p.dev_eui);
    }
    let devices = s.engine.device_runs(&s.campaign_id).unwrap();
    assert!(devices.iter().all(|d| d.failed.as_deref().is_some_and(|e| e.contains("maximum duration"))));
}

#[tokio::test]
async fn stopping_mid_campaign_ends_it_and_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    let config = ScenarioConfig::new(10);
    let s = scenario(&h, clock.clone(), &config);
    s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
    let ended = drive(&s.engine, &clock, &s.campaign_id, |e| e.store.get::<CampaignRun>(&s.campaign_id).unwrap().unwrap().fragments_sent < 20).await.unwrap();
    assert!(!ended);
    assert!(s.engine.network.in_session(s.devices[0].dev_eui));
    let deletes = |fport, cid| s.engine.network.unicast_requests(fport, cid);
    let (frag_deletes, group_deletes) = (deletes(201, 0x03), deletes(200, 0x03));
    s.engine.stop(&s.campaign_id).await.unwrap();
    // Every device set up is told to drop its sessions, once.
    assert_eq!(deletes(201, 0x03) - frag_deletes, config.behaviours.len(), "FragSessionDeleteReq to each device");
    assert_eq!(deletes(200, 0x03) - group_deletes, config.behaviours.len(), "McGroupDeleteReq to each device");
    assert_eq!(run_of(&s).status, RunStatus::Stopped);
    assert_eq!(campaign_status(&s), CampaignStatus::Stopped);
    assert!(!s.engine.network.in_session(s.devices[0].dev_eui));
    let sent = run_of(&s).fragments_sent;
    assert_eq!(s.engine.step(&s.campaign_id).await.unwrap(), None, "a stopped campaign does nothing");
    assert_eq!(run_of(&s).fragments_sent, sent);
}

#[tokio::test]
async fn a_new_engine_over_the_same_store_continues_without_redoing_stages() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    let config = ScenarioConfig::new(30);
    let Scenario { engine, campaign_id, image, devices, .. } = scenario(&h, clock.clone(), &config);
    engine.start(&campaign_id, options(&config)).await.unwrap();
    // Run until the fragments are going out, then "crash".
    drive(&engine, &clock, &campaign_id, |e| e.store.get::<CampaignRun>(&campaign_id).unwrap().unwrap().fragments_sent < 10).await.unwrap();
    let before = engine.store.get::<CampaignRun>(&campaign_id).unwrap().unwrap();
    let group_setups = engine.network.unicast_requests(200, 0x02);
    let frag_setups = engine.network.unicast_requests(201, 0x02);
    let Engine { store, network, .. } = engine;

    // A fresh plugin runtime: the pinned library is reloaded from the store.
    let host_services = h.server.state.runtime.host().clone();
    let runtime = Arc::new(PluginRuntime::new(dir.path().join("compiled-after-restart"), host_services).unwrap());
    let engine = Engine::new(store, runtime, clock.clone(), network);
    drive(&engine, &clock, &campaign_id, |_| true).await.unwrap();

    let after = engine.store.get::<CampaignRun>(&campaign_id).unwrap().unwrap();
    assert_eq!(after.status, RunStatus::Succeeded, "{:?}", after.error);
    assert_eq!(engine.network.unicast_requests(200, 0x02), group_setups, "McGroupSetup redone after the restart");
    assert_eq!(engine.network.unicast_requests(201, 0x02), frag_setups, "FragSessionSetup redone after the restart");
    assert!(after.next_fcnt > before.next_fcnt && after.fragments_sent >= before.fragments_sent);
    for p in &devices {
        assert_eq!(engine.network.received_file(p.dev_eui).as_deref(), Some(image.as_slice()));
    }
}

#[tokio::test]
async fn devices_on_moved_fports_are_reached_through_their_profile() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    let mut config = ScenarioConfig::new(10);
    config.fports = [("fragmentation".to_string(), 30u8), ("remote-multicast-setup".to_string(), 31u8)].into();
    config.fleet.moved_ports = vec![(201, 30), (200, 31)];
    let s = scenario(&h, clock.clone(), &config);
    s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
    drive(&s.engine, &clock, &s.campaign_id, |_| true).await.unwrap();
    assert_eq!(run_of(&s).status, RunStatus::Succeeded, "{:?}", run_of(&s).error);
    assert_eq!(s.engine.network.unicast_requests(31, 0x02), 10, "McGroupSetupReq went out on the moved port");
    assert_eq!(s.engine.network.unicast_requests(200, 0x02), 0);
    for p in &s.devices {
        assert_eq!(s.engine.network.received_file(p.dev_eui).as_deref(), Some(s.image.as_slice()));
    }
}

#[tokio::test]
async fn a_network_outage_is_waited_out_with_backoff_and_costs_no_device() {
    // Outages of 40 minutes at three points: unicast setup, mid-fragments, the status round.
    for outage_stage in ["McGroupSetup", "DataFragment", "FragSessionStatus"] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(START_MS));
        let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
        let mut config = ScenarioConfig::new(30);
        config.fleet.seed = 3;
        let s = scenario(&h, clock.clone(), &config);
        s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
        let mut outage_started = None;
        assert!(drive(&s.engine, &clock, &s.campaign_id, |e| {
            let run = e.store.get::<CampaignRun>(&s.campaign_id).unwrap().unwrap();
            let in_stage = run.current().is_some_and(|st| st.name == outage_stage);
            // Strike once the stage has begun sending.
            if outage_started.is_none() && in_stage && (run.fragments_sent > 3 || run.round_sent_ms.is_some() || outage_stage == "McGroupSetup") {
                let now = clock.now_unix_ms();
                e.network.outage_until(now + 40 * 60_000);
                outage_started = Some(now);
            }
            true
        })
        .await
        .unwrap());
        assert!(outage_started.is_some(), "{outage_stage}: the outage happened");
        let run = run_of(&s);
        assert_eq!(run.status, RunStatus::Succeeded, "{outage_stage}: {:?}", run.error);
        let devices = s.engine.device_runs(&s.campaign_id).unwrap();
        assert!(devices.iter().all(|d| d.succeeded), "{outage_stage}: {:?}", devices.iter().filter_map(|d| d.failed.clone()).collect::<Vec<_>>());
        for p in &s.devices {
            assert_eq!(s.engine.network.received_file(p.dev_eui).as_deref(), Some(s.image.as_slice()));
        }
        // 40 minutes at a fixed 30 s would be 80 refused steps; the backoff
        // (30 s, 1, 2, 4, 8, 10, 10… min) makes it a handful.
        let refused = s.engine.network.refused_calls();
        assert!((1..=10).contains(&refused), "{outage_stage}: {refused} calls during the outage");
        assert_eq!(run.network_failures, 0, "reset once the network answered");
        assert!(run.fragments_sent <= run.layout.unwrap().nb_frag + 4, "{outage_stage}: unsent fragments were not counted as sent: {}", run.fragments_sent);
    }
}

#[tokio::test]
async fn an_uplink_feeds_only_the_campaigns_running_on_the_instance_it_came_through() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    let config = ScenarioConfig::new(2);
    let s = scenario(&h, clock.clone(), &config);
    s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
    // The first step makes the group, the second sends the first requests.
    s.engine.step(&s.campaign_id).await.unwrap();
    s.engine.step(&s.campaign_id).await.unwrap();
    let instance = s.engine.store.get::<Campaign>(&s.campaign_id).unwrap().unwrap().backend_instance;
    // A device's answer to the first stage's request.
    clock.advance_ms(600_000);
    let (device, fport, answer) = s.engine.network.take_due_uplinks().into_iter().next().expect("a device answered");
    let elsewhere = s.engine.on_uplink(Some("another-instance"), device, fport, answer.clone()).await.unwrap();
    assert!(elsewhere.is_empty(), "an uplink through another instance answered {elsewhere:?}");
    let here = s.engine.on_uplink(Some(&instance), device, fport, answer).await.unwrap();
    assert_eq!(here, vec![s.campaign_id.clone()], "the campaign's own instance feeds it");
}

#[tokio::test]
async fn devices_that_run_the_new_image_succeed_even_when_the_campaign_fails() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    let config = ScenarioConfig::new(10);
    let s = scenario(&h, clock.clone(), &config);
    let target = config.fleet.installed_firmware;
    s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
    // Run until some devices report the new firmware, then the deadline falls.
    drive(&s.engine, &clock, &s.campaign_id, |e| !e.device_runs(&s.campaign_id).unwrap().iter().any(|d| d.holds_file && d.firmware_version == Some(target)))
        .await
        .unwrap();
    let mut run = run_of(&s);
    run.deadline_ms = clock.now_unix_ms();
    s.engine.store.put(&run).unwrap();
    s.engine.step(&s.campaign_id).await.unwrap();

    let run = run_of(&s);
    assert_eq!(run.status, RunStatus::Failed, "{:?}", run.error);
    let devices = s.engine.device_runs(&s.campaign_id).unwrap();
    let upgraded: Vec<_> = devices.iter().filter(|d| d.holds_file && d.firmware_version == Some(target)).collect();
    assert!(!upgraded.is_empty());
    for d in &upgraded {
        assert!(d.succeeded, "{} runs the new image but is not counted a success", d.dev_eui);
    }
    assert!(devices.iter().filter(|d| !d.succeeded).all(|d| d.failed.is_some()));
}

#[tokio::test]
async fn a_second_campaign_cannot_take_devices_or_a_group_a_running_one_holds() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    let config = ScenarioConfig::new(3);
    let s = scenario(&h, clock.clone(), &config);
    s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
    // The same devices and group again, as a new campaign.
    let (_, first) = h.get(&format!("/api/campaigns/{}", s.campaign_id)).await;
    let mut again = first.clone();
    for field in ["id", "created", "started", "lastChanged", "status", "archived"] {
        again.as_object_mut().unwrap().remove(field);
    }
    again["name"] = serde_json::json!("again");
    let (status, second) = h.post("/api/campaigns", again).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let refused = s.engine.start(second["id"].as_str().unwrap(), options(&config)).await;
    match refused {
        Err(airlift::engine::EngineError::Invalid(why)) => assert!(why.contains("running campaign"), "{why}"),
        other => panic!("started over a running campaign: {:?}", other.map(|r| r[0].campaign_id.clone())),
    }
}

/// Fleets, each behind its own backend instance, as one network. While
/// the gate is closed, every call to the `hanging` instance's network
/// waits: a network that hangs. `can` is what the network says it can send.
struct TestNetwork {
    fleets: Vec<(String, Arc<SimFleet>)>,
    hanging: Option<String>,
    gate: tokio::sync::watch::Sender<bool>,
    waiting: std::sync::atomic::AtomicUsize,
    /// Sessions ended on the hanging instance.
    ended: std::sync::atomic::AtomicUsize,
    can: Capabilities,
}

impl TestNetwork {
    fn new(fleets: Vec<(String, Arc<SimFleet>)>) -> Self {
        Self { fleets, hanging: None, gate: tokio::sync::watch::channel(true).0, waiting: Default::default(), ended: Default::default(), can: Capabilities::ALL }
    }

    async fn fleet(&self, backend: &str) -> &SimFleet {
        if self.hanging.as_deref() == Some(backend) {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _ = self.gate.subscribe().wait_for(|open| *open).await;
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
        &self.fleets.iter().find(|(id, _)| id == backend).unwrap_or(&self.fleets[0]).1
    }
}

impl Network for TestNetwork {
    async fn pacing(&self, backend: &str) -> Result<Pacing, NetworkError> {
        self.fleet(backend).await.pacing(backend).await
    }
    async fn capabilities(&self, _backend: &str) -> Result<Capabilities, NetworkError> {
        Ok(self.can)
    }
    async fn create_group(&self, backend: &str, group: &MulticastGroup, devices: &[Eui], next_fcnt: u32) -> Result<(), NetworkError> {
        self.fleet(backend).await.create_group(backend, group, devices, next_fcnt).await
    }
    async fn send_unicast(&self, backend: &str, dev_eui: Eui, fport: u8, payload: Vec<u8>) -> Result<(), NetworkError> {
        self.fleet(backend).await.send_unicast(backend, dev_eui, fport, payload).await
    }
    async fn send_multicast(&self, backend: &str, group: &MulticastGroup, fcnt: u32, fport: u8, payload: Vec<u8>) -> Result<Option<u32>, NetworkError> {
        self.fleet(backend).await.send_multicast(backend, group, fcnt, fport, payload).await
    }
    async fn offloads(&self, backend: &str) -> Result<bool, NetworkError> {
        self.fleet(backend).await.offloads(backend).await
    }
    async fn offload_start(&self, backend: &str, job: OffloadJob) -> Result<String, NetworkError> {
        self.fleet(backend).await.offload_start(backend, job).await
    }
    async fn offload_poll(&self, backend: &str, handle: &str) -> Result<OffloadStatus, NetworkError> {
        self.fleet(backend).await.offload_poll(backend, handle).await
    }
    async fn offload_cancel(&self, backend: &str, handle: &str) -> Result<(), NetworkError> {
        self.fleet(backend).await.offload_cancel(backend, handle).await
    }
    async fn end_session(&self, backend: &str, group: &MulticastGroup) {
        if self.hanging.as_deref() == Some(backend) {
            self.ended.fetch_add(1, Ordering::SeqCst);
        }
        self.fleet(backend).await.end_session(backend, group).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_that_hangs_keeps_neither_another_campaign_nor_a_stop_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    let healthy_config = ScenarioConfig::new(5);
    let mut hanging_config = ScenarioConfig::new(5);
    hanging_config.first_eui += 0x1000;
    hanging_config.group_eui += 1;
    let (healthy, hanging) = (scenario(&h, clock.clone(), &healthy_config), scenario(&h, clock.clone(), &hanging_config));
    let instance = |s: &Scenario| s.engine.store.get::<Campaign>(&s.campaign_id).unwrap().unwrap().backend_instance;
    let mut network = TestNetwork::new(vec![(instance(&healthy), healthy.engine.network.clone()), (instance(&hanging), hanging.engine.network.clone())]);
    network.hanging = Some(instance(&hanging));
    let network = Arc::new(network);
    let engine = Arc::new(Engine::new(healthy.engine.store.clone(), healthy.engine.runtime.clone(), clock.clone(), network.clone()));

    // The hanging campaign's first step waits on its network (making its group).
    engine.start(&hanging.campaign_id, options(&hanging_config)).await.unwrap();
    network.gate.send_replace(false);
    let stuck_step = tokio::spawn({
        let (engine, id) = (engine.clone(), hanging.campaign_id.clone());
        async move { engine.step(&id).await }
    });
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while network.waiting.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(network.waiting.load(Ordering::SeqCst), 1, "the step did not reach the hanging network");

    // The healthy campaign runs through meanwhile: its steps and uplinks
    // (offered to every running campaign) never wait on the stuck one.
    engine.start(&healthy.campaign_id, options(&healthy_config)).await.unwrap();
    let ran = tokio::time::timeout(std::time::Duration::from_secs(120), drive_fleet(&engine, &healthy.engine.network, &clock, &healthy.campaign_id, |_| true)).await;
    assert!(ran.expect("the healthy campaign waited on the hanging network").unwrap());
    assert_eq!(run_of(&healthy).status, RunStatus::Succeeded, "{:?}", run_of(&healthy).error);

    // A stop is on disk at once, whatever the network does.
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(1), engine.mark_stopped(&hanging.campaign_id)).await;
    assert!(!stopped.expect("the stop waited on the hanging network").unwrap().is_empty());
    network.gate.send_replace(true);
    assert_eq!(stuck_step.await.unwrap().unwrap(), None, "the step answered after the stop leaves the campaign over");
    assert_eq!(run_of(&hanging).status, RunStatus::Stopped);
    assert_eq!(run_of(&hanging).group_backend, None, "a group answered after the stop is not recorded");
    assert_eq!(network.ended.load(Ordering::SeqCst), 1, "the group the network made after the stop had its session ended");
}

/// Calls of a plugin that ended with `outcome`, from the process's metrics.
fn plugin_calls(plugin: &str, outcome: &str) -> f64 {
    let labels = [format!("plugin=\"{plugin}\""), format!("outcome=\"{outcome}\"")];
    airlift::metrics::recorder()
        .render()
        .lines()
        .filter(|l| l.starts_with("airlift_plugin_calls_total{") && labels.iter().all(|x| l.contains(x.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_traps_loops_or_runs_out_of_memory_fails_only_its_own_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = host(dir.path(), clock.clone(), "lorawan-v1").await;
    assert_eq!(h.load_plugin("fixture-misbehave").await.0, StatusCode::CREATED);
    let mut healthy_config = ScenarioConfig::new(10);
    healthy_config.fleet.loss = 0.1;
    // The fixture's request for a device whose DevEUI ends in 1 traps, in
    // 2 spins past its 500 ms, in 3 allocates past its 16 MiB; the one
    // ending in 0 is asked normally (and never answers: port 9 is no
    // package of its).
    let mut broken_config = ScenarioConfig::new(4);
    broken_config.library = "fixture-misbehave".into();
    broken_config.campaign_type = airlift::model::CampaignType::MulticastSetup;
    broken_config.first_eui = 0x70b3_d57e_d000_1000;
    broken_config.group_eui += 1;
    let (healthy, broken) = (scenario(&h, clock.clone(), &healthy_config), scenario(&h, clock.clone(), &broken_config));
    let instance = |s: &Scenario| s.engine.store.get::<Campaign>(&s.campaign_id).unwrap().unwrap().backend_instance;
    let network = Arc::new(TestNetwork::new(vec![(instance(&healthy), healthy.engine.network.clone()), (instance(&broken), broken.engine.network.clone())]));
    let engine = Engine::new(healthy.engine.store.clone(), healthy.engine.runtime.clone(), clock.clone(), network);
    let outcomes = ["trap", "timeout", "out_of_memory"];
    let failures_before = outcomes.map(|o| plugin_calls("fixture-misbehave", o));

    engine.start(&broken.campaign_id, options(&broken_config)).await.unwrap();
    engine.start(&healthy.campaign_id, options(&healthy_config)).await.unwrap();
    let ids = [broken.campaign_id.as_str(), healthy.campaign_id.as_str()];
    let ran = tokio::time::timeout(std::time::Duration::from_secs(300), airlift_sim::fleet::drive_campaigns(&engine, &healthy.engine.network, &clock, &ids, |_| true)).await;
    assert!(ran.expect("the campaigns did not end").unwrap());

    // Each kind of failure happened, in the broken campaign's own calls…
    let failures_after = outcomes.map(|o| plugin_calls("fixture-misbehave", o));
    for (i, outcome) in outcomes.iter().enumerate() {
        assert!(failures_after[i] >= failures_before[i] + 2.0, "{outcome}: {} calls before, {} after", failures_before[i], failures_after[i]);
    }
    // …which failed its devices, as silent ones, and nothing else.
    assert_eq!(run_of(&broken).status, RunStatus::Failed);
    for d in engine.device_runs(&broken.campaign_id).unwrap() {
        assert_eq!(d.failed.as_deref(), Some("Poke: no answer after 2 requests"), "{}", d.dev_eui);
    }
    // The other campaign ran on meanwhile, over the same plugin runtime.
    let run = run_of(&healthy);
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    for p in &healthy.devices {
        assert_eq!(healthy.engine.network.received_file(p.dev_eui).as_deref(), Some(healthy.image.as_slice()), "{} lacks the exact file", p.dev_eui);
    }
    assert!(h.healthy().await);
}

#[tokio::test]
async fn a_campaign_needs_what_its_devices_and_network_can_do() {
    let mut config = ScenarioConfig::new(5);
    config.success_threshold = 50;
    let (_dir, clock, _h, s) = fixture("lorawan-v1", &config).await;
    let instance = s.engine.store.get::<Campaign>(&s.campaign_id).unwrap().unwrap().backend_instance;

    // A network that cannot send class C refuses a class C campaign at start.
    let mut limited = TestNetwork::new(vec![(instance, s.engine.network.clone())]);
    limited.can.multicast_class_c = false;
    let engine = Engine::new(s.engine.store.clone(), s.engine.runtime.clone(), clock.clone(), Arc::new(limited));
    match engine.start(&s.campaign_id, options(&config)).await {
        Err(airlift::engine::EngineError::Invalid(why)) => assert!(why.contains("cannot send class C"), "{why}"),
        other => panic!("started on a network without class C: {:?}", other.map(|r| r[0].campaign_id.clone())),
    }

    // A device that cannot join class C is left out, with why; the rest update.
    let mut device = s.engine.store.get::<airlift::model::Device>(&s.devices[0].dev_eui.to_string()).unwrap().unwrap();
    device.multicast_classes = vec![airlift::model::SessionClass::B];
    s.engine.store.put(&device).unwrap();
    let run = run_through(&s, &clock, options(&config)).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let devices = s.engine.device_runs(&s.campaign_id).unwrap();
    let left_out = devices.iter().find(|d| d.dev_eui == s.devices[0].dev_eui).unwrap();
    assert!(left_out.failed.as_deref().is_some_and(|f| f.contains("cannot join a class C")), "{:?}", left_out.failed);
    assert_eq!(devices.iter().filter(|d| d.succeeded).count(), 4);
}

#[tokio::test]
async fn the_session_starts_at_the_campaign_s_own_time() {
    let config = ScenarioConfig::new(5);
    let (_dir, clock, _h, s) = fixture("lorawan-v1", &config).await;
    let mut campaign = s.engine.store.get::<Campaign>(&s.campaign_id).unwrap().unwrap();
    // Past the maximum duration: refused at start, with why.
    campaign.session_start = chrono::DateTime::from_timestamp_millis((START_MS + 25 * 3_600_000) as i64);
    s.engine.store.put(&campaign).unwrap();
    assert!(matches!(s.engine.start(&s.campaign_id, options(&config)).await, Err(airlift::engine::EngineError::Invalid(why)) if why.contains("maximum duration")));
    // Three hours from now: setup goes first, the session waits for its time.
    let at_ms = START_MS + 3 * 3_600_000;
    campaign.session_start = chrono::DateTime::from_timestamp_millis(at_ms as i64);
    s.engine.store.put(&campaign).unwrap();
    let run = run_through(&s, &clock, options(&config)).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.session_start_gps, airlift::clock::unix_ms_to_gps_seconds(at_ms), "devices were told the campaign's time");
    assert!(run.finished_ms.unwrap() > at_ms);
}

#[tokio::test]
async fn a_binary_transfer_delivers_the_file_without_firmware_stages() {
    let mut config = ScenarioConfig::new(20);
    config.campaign_type = airlift::model::CampaignType::BinaryTransfer;
    config.fleet.loss = 0.1;
    let (_dir, clock, _h, s) = fixture("lorawan-v1", &config).await;
    let run = run_through(&s, &clock, RunOptions::default()).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert!(s.engine.device_runs(&s.campaign_id).unwrap().iter().all(|d| d.succeeded));
    for p in &s.devices {
        assert_eq!(s.engine.network.received_file(p.dev_eui).as_deref(), Some(s.image.as_slice()), "{} lacks the exact file", p.dev_eui);
    }
    assert_eq!(s.engine.network.unicast_requests(203, 0x02), 0, "no DevRebootTimeReq: nothing is installed");
    let device = s.engine.store.get::<airlift::model::Device>(&s.devices[0].dev_eui.to_string()).unwrap().unwrap();
    assert_eq!(device.firmware.as_deref(), Some("1.0.0.0"), "a file transfer leaves the firmware inventory alone");
}

#[tokio::test]
async fn a_multicast_setup_campaign_sets_the_group_up_and_sends_no_file() {
    let mut config = ScenarioConfig::new(10);
    config.campaign_type = airlift::model::CampaignType::MulticastSetup;
    let (_dir, clock, _h, s) = fixture("lorawan-v1", &config).await;
    let run = run_through(&s, &clock, RunOptions::default()).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert!(s.engine.device_runs(&s.campaign_id).unwrap().iter().all(|d| d.succeeded));
    assert!(s.engine.network.unicast_requests(200, 0x02) >= 10, "McGroupSetupReq to every device");
    assert!(s.engine.network.unicast_requests(200, 0x04) >= 10, "McClassCSessionReq to every device");
    assert_eq!(s.engine.network.unicast_requests(201, 0x02), 0, "no FragSessionSetupReq");
    assert_eq!((run.fragments_sent, run.layout), (0, None), "no file");
}

#[tokio::test]
async fn a_group_s_redundancy_sends_fixed_coded_fragments_and_none_means_the_closed_loop() {
    for (redundancy, extra_pct) in [(Some(50u8), Some(100u32)), (Some(1), Some(34)), (None, None)] {
        let config = ScenarioConfig::new(5);
        let (_dir, clock, _h, s) = fixture("lorawan-v1", &config).await;
        let mut group = s.engine.store.get::<airlift::model::MulticastGroup>(&airlift::model::Eui(config.group_eui).to_string()).unwrap().unwrap();
        group.redundancy = redundancy.map(|r| if r <= 4 { [50, 75, 83, 88, 100][r as usize] } else { r });
        s.engine.store.put(&group).unwrap();
        let run = run_through(&s, &clock, options(&config)).await;
        assert_eq!(run.fixed_redundancy_pct, extra_pct, "redundancy {redundancy:?}");
        let m = run.layout.unwrap().nb_frag;
        match extra_pct {
            Some(pct) => {
                assert_eq!(run.fragments_sent, m + (m * pct).div_ceil(100), "redundancy {redundancy:?}: M={m}");
                assert_eq!(run.extra_rounds, 0);
            }
            None => assert_eq!(run.status, RunStatus::Succeeded, "the closed loop delivers: {:?}", run.error),
        }
    }
}

#[tokio::test]
async fn devices_that_uplink_every_half_hour_are_asked_once_per_stage() {
    let mut config = ScenarioConfig::new(10);
    // Class A devices hear a request only after their next uplink, up to
    // 30 minutes on; their profile says so.
    config.fleet.uplink_period_s = 1800;
    config.max_duration_minutes = 3 * 24 * 60;
    let (_dir, clock, _h, s) = fixture("lorawan-v1", &config).await;
    let run = run_through(&s, &clock, options(&config)).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert!(s.engine.device_runs(&s.campaign_id).unwrap().iter().all(|d| d.succeeded));
    assert_eq!(s.engine.network.unicast_requests(200, 0x02), 10, "one McGroupSetupReq each, no retry while the answer was on its way");
}

#[tokio::test]
async fn a_device_whose_hardware_is_not_the_file_s_is_left_out() {
    let mut config = ScenarioConfig::new(4);
    config.success_threshold = 25;
    let (_dir, clock, h, s) = fixture("lorawan-v1", &config).await;
    // The file is for rev B boards; one device is one, the others rev A.
    let (_, rev_b) = h.post("/api/device-profiles", serde_json::json!({"name": "board rev B", "hwVersion": "2", "hwRevision": "B", "defaultUlPeriod": 60})).await;
    let rev_b = rev_b["id"].as_str().unwrap().to_string();
    let mut campaign = s.engine.store.get::<Campaign>(&s.campaign_id).unwrap().unwrap();
    let mut file = s.engine.store.get::<airlift::model::StoredFile>(campaign.file.as_ref().unwrap()).unwrap().unwrap();
    file.device_profile = Some(rev_b.clone());
    s.engine.store.put(&file).unwrap();
    let mut fitting = s.engine.store.get::<airlift::model::Device>(&s.devices[0].dev_eui.to_string()).unwrap().unwrap();
    fitting.device_profile = Some(rev_b);
    s.engine.store.put(&fitting).unwrap();
    campaign.success_threshold = 25;
    s.engine.store.put(&campaign).unwrap();

    run_through(&s, &clock, options(&config)).await;
    let devices = s.engine.device_runs(&s.campaign_id).unwrap();
    for d in &devices {
        if d.dev_eui == s.devices[0].dev_eui {
            assert!(d.succeeded, "{:?}", d.failed);
        } else {
            assert!(d.failed.as_deref().is_some_and(|f| f.contains("the file is for")), "{:?}", d.failed);
            assert!(s.engine.network.received_file(d.dev_eui).is_none(), "no fragment session for a device left out");
        }
    }
}

#[tokio::test]
async fn a_file_s_hardware_type_refuses_devices_of_another() {
    let mut config = ScenarioConfig::new(4);
    config.success_threshold = 25;
    let (_dir, clock, h, s) = fixture("lorawan-v1", &config).await;
    let campaign = s.engine.store.get::<Campaign>(&s.campaign_id).unwrap().unwrap();
    let file = campaign.file.clone().unwrap();
    // Seed 002's hwTarget on the file; the profile of device 0 names the same type (written another way).
    let (status, meta) = h.put(&format!("/api/files/{file}"), serde_json::json!({"name": "fw.bin", "firmwareVersion": "2.0.0.0", "firmwareBaseVersion": null, "hwTarget": "0a:0b:0c:0d:0e:0f"})).await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert_eq!(meta["hwTarget"], "0A:0B:0C:0D:0E:0F");
    let (status, bad) = h.post("/api/device-profiles", serde_json::json!({"name": "bad", "hwTarget": "0a:0b"})).await;
    assert_eq!((status, bad["field"].as_str()), (StatusCode::BAD_REQUEST, Some("hwTarget")), "{bad}");
    let (_, board) = h.post("/api/device-profiles", serde_json::json!({"name": "board", "hwTarget": "0A0B0C0D0E0F", "defaultUlPeriod": 60})).await;
    let mut fitting = s.engine.store.get::<airlift::model::Device>(&s.devices[0].dev_eui.to_string()).unwrap().unwrap();
    fitting.device_profile = Some(board["id"].as_str().unwrap().to_string());
    s.engine.store.put(&fitting).unwrap();

    run_through(&s, &clock, options(&config)).await;
    for d in s.engine.device_runs(&s.campaign_id).unwrap() {
        if d.dev_eui == s.devices[0].dev_eui {
            assert!(d.succeeded, "{:?}", d.failed);
        } else {
            assert!(d.failed.as_deref().is_some_and(|f| f.contains("the file is for 0A:0B:0C:0D:0E:0F")), "{:?}", d.failed);
        }
    }
}

/// 60 devices over three multicast groups (device i in group i % 3), the
/// third group's devices all silent.
fn three_groups_one_silent(threshold: u8) -> ScenarioConfig {
    let mut config = ScenarioConfig::new(60);
    config.groups = 3;
    config.success_threshold = threshold;
    config.fleet.loss = 0.05;
    config.fleet.seed = 21;
    for (i, b) in config.behaviours.iter_mut().enumerate() {
        if i % 3 == 2 {
            *b = Behaviour::Silent;
        }
    }
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn each_multicast_group_runs_its_own_session_and_the_threshold_is_over_all_devices() {
    let config = three_groups_one_silent(60);
    let (_dir, clock, h, s) = fixture("lorawan-v1", &config).await;
    let runs = s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
    assert_eq!(runs.len(), 3, "one run per group");
    assert!(drive(&s.engine, &clock, &s.campaign_id, |_| true).await.unwrap());

    let parts = s.engine.parts(&s.campaign_id).unwrap();
    let groups: Vec<Eui> = parts.iter().map(|p| p.run.group).collect();
    assert_eq!(groups, (0..3).map(|i| Eui(config.group_eui + i)).collect::<Vec<_>>());
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part.devices.len(), 20);
        // Each device is in the group it names.
        assert!(part.devices.iter().all(|d| s.devices.iter().position(|p| p.dev_eui == d.dev_eui).unwrap() % 3 == i));
    }
    // The silent group ends at its first stage, with nobody left; the
    // others are not held back and deliver the image.
    assert_eq!(parts[2].run.status, RunStatus::Failed);
    assert_eq!(parts[2].run.fragments_sent, 0, "no fragment goes to a group with nobody left");
    for part in &parts[..2] {
        assert_eq!(part.run.status, RunStatus::Succeeded, "{:?}", part.run.error);
        assert!(part.run.fragments_sent >= part.run.layout.unwrap().nb_frag);
        assert!(part.devices.iter().filter(|d| d.succeeded).count() >= 18, "a lost answer may fail a device, not more");
        for d in part.devices.iter().filter(|d| d.succeeded) {
            assert!(s.engine.network.received_file(d.dev_eui).as_deref() == Some(s.image.as_slice()), "{} lacks the image", d.dev_eui);
        }
    }
    assert!(s.devices.iter().all(|p| !s.engine.network.in_session(p.dev_eui)), "every group's session ended");
    // 36 or more of 60 devices meet the campaign's 60 %.
    assert_eq!(campaign_status(&s), CampaignStatus::Succeeded);
    let (status, msg) = h.get(&format!("/api/campaigns/{}/progress", s.campaign_id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(msg["campaignStatus"], "COMPLETED");
    let succeeded = parts.iter().flat_map(|p| &p.devices).filter(|d| d.succeeded).count();
    assert!(succeeded >= 36);
    assert_eq!((msg["devicesTotal"].as_u64(), msg["devicesSucceeded"].as_u64()), (Some(60), Some(succeeded as u64)));
    let per_group = msg["groups"].as_array().unwrap();
    assert_eq!(per_group.len(), 3);
    for (g, part) in per_group.iter().zip(&parts) {
        assert_eq!(g["mcGroupEui"], part.run.group.to_string());
        assert_eq!(g["mcGroupState"]["fCntDown"], part.run.next_fcnt);
    }
    assert!(per_group[0]["mcGroupState"]["fCntDown"].as_u64().unwrap() > 0);
    let (_, devices) = h.get(&format!("/api/campaigns/{}/devices", s.campaign_id)).await;
    assert_eq!(devices.as_array().unwrap().len(), 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_group_that_sinks_the_campaign_s_threshold_stops_the_others() {
    // 40 of 60 can never reach 80 %: once the silent group is out, the
    // others stop at the end of their stage rather than run to the end.
    let config = three_groups_one_silent(80);
    let (_dir, clock, _h, s) = fixture("lorawan-v1", &config).await;
    run_through(&s, &clock, options(&config)).await;
    let parts = s.engine.parts(&s.campaign_id).unwrap();
    assert_eq!(campaign_status(&s), CampaignStatus::Failed);
    assert_eq!(parts[2].run.fragments_sent, 0);
    for part in &parts {
        assert_eq!(part.run.status, RunStatus::Failed);
        assert!(part.run.error.as_deref().is_some_and(|e| e.contains("success threshold not met")), "{:?}", part.run.error);
        assert!(part.run.stage + 1 < part.run.stages.len(), "{} stopped at stage {} of {}", part.run.group, part.run.stage, part.run.stages.len());
        assert!(part.devices.iter().all(|d| !d.succeeded));
    }
}

/// The estimate before the run, and the virtual run's duration after.
async fn estimate_then_run(library: &str, config: &ScenarioConfig, loss: f64) -> (airlift::engine::estimate::DurationEstimate, u64, Vec<(String, u64)>) {
    let (_dir, clock, _h, s) = fixture(library, config).await;
    let campaign = s.engine.store.get::<Campaign>(&s.campaign_id).unwrap().unwrap();
    let estimate = s.engine.estimate(&campaign, airlift::engine::estimate::Assumptions { loss }).await.unwrap();
    let started = clock.now_unix_ms();
    let mut stage_started: Vec<(String, u64)> = Vec::new();
    s.engine.start(&s.campaign_id, options(config)).await.unwrap();
    assert!(drive(&s.engine, &clock, &s.campaign_id, |e| {
        let run = e.store.get::<CampaignRun>(&s.campaign_id).unwrap().unwrap();
        let name = run.current().map(|st| st.name.clone()).unwrap_or_else(|| "end".into());
        if stage_started.last().map(|(n, _)| n) != Some(&name) {
            stage_started.push((name, (clock.now_unix_ms() - started) / 1000));
        }
        true
    })
    .await
    .unwrap());
    assert_eq!(campaign_status(&s), CampaignStatus::Succeeded);
    let took_s = (s.engine.parts(&s.campaign_id).unwrap().iter().filter_map(|p| p.run.finished_ms).max().unwrap() - started) / 1000;
    (estimate, took_s, stage_started)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_duration_estimate_is_within_a_quarter_of_the_virtual_run() {
    // Lossy and lossless links, one group and two in parallel.
    for (devices, loss, groups) in [(100usize, 0.1f64, 1usize), (30, 0.0, 1), (100, 0.1, 2)] {
        let mut config = ScenarioConfig::new(devices);
        config.fleet.loss = loss;
        config.groups = groups;
        let (estimate, took, stages) = estimate_then_run("lorawan-v1", &config, loss).await;
        let ratio = estimate.seconds as f64 / took as f64;
        assert!((0.75..=1.25).contains(&ratio), "{devices} devices, loss {loss}, {groups} group(s): estimated {} s, ran {took} s; stages began at {stages:?}", estimate.seconds);
        assert_eq!(estimate.groups.len(), groups);
        let group = &estimate.groups[0];
        assert_eq!(group.devices, devices / groups);
        assert!(group.fragments >= 84, "M and the closed loop's extra: {}", group.fragments);
        // 0.4 s frames at 869.525 MHz (10 % duty cycle) go every 4 s, not at the network's 2 s.
        assert!(group.fragment_interval_ms > 3_500, "{}", group.fragment_interval_ms);
        let names: Vec<&str> = group.stages.iter().map(|s| s.stage_name.as_str()).collect();
        assert!(names.starts_with(&["PackageVersion", "McGroupSetup", "FragSessionSetup"]) && names.contains(&"DataFragment"), "{names:?}");
        assert!(group.stages.iter().map(|s| s.seconds).sum::<u64>().abs_diff(group.seconds) <= group.stages.len() as u64, "the stages add up to the group's total");
    }
}

#[tokio::test]
async fn the_duration_is_served_for_a_campaign_and_for_a_draft_and_a_schedule_it_cannot_meet_is_refused() {
    let config = ScenarioConfig::new(20);
    let (_dir, _clock, h, s) = fixture("lorawan-v1", &config).await;
    // The served API plans through the campaign's backend plugin.
    assert_eq!(h.load_plugin("simulated").await.0, StatusCode::CREATED);
    let (status, resp) = h.get(&format!("/api/campaigns/{}/duration?loss=0.05", s.campaign_id)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!((resp["action"].as_str(), resp["targetType"].as_str(), resp["campaignType"].as_str()), (Some("RESP"), Some("CAMPAIGN"), Some("FOTA")));
    let seconds = resp["duration"].as_u64().unwrap();
    assert!(seconds > 0 && resp["durationMinutes"].as_u64() == Some(seconds.div_ceil(60)), "{resp}");
    assert_eq!(resp["groups"][0]["mcGroupEui"], Eui(config.group_eui).to_string());
    // Lossier links take longer.
    let (_, lossy) = h.get(&format!("/api/campaigns/{}/duration?loss=0.3", s.campaign_id)).await;
    assert!(lossy["duration"].as_u64().unwrap() > seconds, "{lossy}");
    let (status, bad) = h.get(&format!("/api/campaigns/{}/duration?loss=2", s.campaign_id)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    // A draft: the campaign's fields, not stored.
    let mut campaign = s.engine.store.get::<Campaign>(&s.campaign_id).unwrap().unwrap();
    let draft = serde_json::json!({
        "name": "draft", "campaignType": "FOTA", "deviceSets": campaign.device_sets, "regions": campaign.regions, "file": campaign.file,
        "maxDurationMinutes": 600, "successThreshold": 90, "deviceLibrary": "lorawan-v1", "backendInstance": campaign.backend_instance,
    });
    let (status, resp) = h.post("/api/campaigns/duration?loss=0.05", draft.clone()).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["duration"].as_u64(), Some(seconds), "the draft is the stored campaign's twin");
    let (_, list) = h.get("/api/campaigns").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "nothing was stored: {list}");
    let mut unknown_set = draft;
    unknown_set["deviceSets"] = serde_json::json!(["nope"]);
    let (status, resp) = h.post("/api/campaigns/duration", unknown_set).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{resp}");

    // A session start sooner than the setup can end is refused at start, with why.
    campaign.session_start = chrono::DateTime::from_timestamp_millis((START_MS + 10 * 60_000) as i64);
    s.engine.store.put(&campaign).unwrap();
    let refused = s.engine.start(&s.campaign_id, options(&config)).await;
    assert!(matches!(&refused, Err(airlift::engine::EngineError::Invalid(why)) if why.contains("too early") && why.contains("setup")), "{:?}", refused.map(|r| r.len()));
    assert_eq!(campaign_status(&s), CampaignStatus::Configured, "nothing started");
}

/// A ledger that checks, at each reservation, that no frame went out at or
/// above the previous one, and refuses to publish while `down`.
struct CheckingLedger {
    fleet: Arc<SimFleet>,
    reserved: std::sync::Mutex<Vec<u32>>,
    sent_past_reservation: std::sync::atomic::AtomicU32,
    down: std::sync::atomic::AtomicBool,
}

impl airlift::engine::fcnt_ledger::FcntLedger for CheckingLedger {
    fn reserve<'a>(&'a self, _run: &'a CampaignRun, until: u32) -> futures_util::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err("broker away".into());
            }
            let mut reserved = self.reserved.lock().unwrap();
            let covered = reserved.last().copied().unwrap_or(0);
            if self.fleet.highest_multicast_fcnt().is_some_and(|f| f >= covered) {
                self.sent_past_reservation.fetch_add(1, Ordering::SeqCst);
            }
            reserved.push(until);
            Ok(())
        })
    }
}

/// Under a ledger (an RMC agent's), no multicast frame goes out before a
/// reservation that covers its counter is published; while the ledger
/// cannot publish, frames wait as for a network outage, and the campaign
/// still ends with every device holding the file.
#[tokio::test]
async fn multicast_frame_counters_are_published_before_frames_use_them() {
    let mut config = ScenarioConfig::new(20);
    // Over 256 frames: more than one block.
    config.file_size = 70_000;
    let (_dir, clock, _h, s) = fixture("lorawan-v1", &config).await;
    let ledger = Arc::new(CheckingLedger { fleet: s.engine.network.clone(), reserved: Default::default(), sent_past_reservation: Default::default(), down: Default::default() });
    assert!(s.engine.set_fcnt_ledger(ledger.clone()));
    s.engine.start(&s.campaign_id, options(&config)).await.unwrap();
    let mut outage = None;
    assert!(drive(&s.engine, &clock, &s.campaign_id, |e| {
        let run = e.store.get::<CampaignRun>(&s.campaign_id).unwrap().unwrap();
        // The ledger goes away mid-fragments, before the second block, for
        // ten minutes.
        if outage.is_none() && run.next_fcnt + 8 >= airlift::engine::fcnt_ledger::FCNT_BLOCK {
            ledger.down.store(true, Ordering::SeqCst);
            outage = Some((clock.now_unix_ms(), e.network.highest_multicast_fcnt()));
        }
        if let Some((from, _)) = outage {
            if clock.now_unix_ms() > from + 10 * 60_000 {
                ledger.down.store(false, Ordering::SeqCst);
            }
        }
        true
    })
    .await
    .unwrap());
    let run = run_of(&s);
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    for p in &s.devices {
        assert_eq!(s.engine.network.received_file(p.dev_eui).as_deref(), Some(s.image.as_slice()));
    }
    let reserved = ledger.reserved.lock().unwrap().clone();
    let highest = s.engine.network.highest_multicast_fcnt().expect("multicast frames went out");
    assert!(reserved.len() >= 2, "more than one block was used: {reserved:?}, highest {highest}");
    assert!(reserved.windows(2).all(|w| w[0] < w[1]), "reservations only grow: {reserved:?}");
    assert_eq!(ledger.sent_past_reservation.load(Ordering::SeqCst), 0, "a frame went out past its reservation");
    assert!(highest < *reserved.last().unwrap(), "the last frame ({highest}) is under the last reservation {reserved:?}");
    assert_eq!(run.fcnt_reserved, *reserved.last().unwrap(), "the run records what was published");
    assert!(outage.is_some_and(|(_, before)| before.is_some_and(|f| f < airlift::engine::fcnt_ledger::FCNT_BLOCK)), "the ledger went away before the first block ran out: {outage:?}");
}
