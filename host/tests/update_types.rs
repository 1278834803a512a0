//! Update types end to end on the simulated fleet: the payload is made by
//! the campaign's update-type plugin at start, and each simulated device
//! checks and applies it as its bootloader would (PLAIN: header and hash;
//! LZ4DICT: signature, base image, streaming patch).

use airlift::clock::ManualClock;
use airlift::engine::{CampaignRun, RunOptions, RunStatus};
use airlift::model::{Device, Object};
use airlift_sim::fleet::{drive, Behaviour};
use airlift_sim::scenario::{base_image, provision, smart_delta_public, Scenario, ScenarioConfig};
use airlift_sim::Upgrade;
mod common;
use common::*;
use lorawan_fuota::ts006::ImageStatus;
use reqwest::StatusCode;
use std::sync::Arc;

const START_MS: u64 = 1_800_000_000_000;
const SIGNING_KEY: [u8; 32] = [7; 32];
const NEW_VERSION: u32 = 0x0200_0000;
const BASE_VERSION: u32 = 0x0100_0000;

/// A host with the library and the update type loaded, and a scenario of
/// `devices` devices that run a 24 KiB base image and trust `trusted`.
async fn setup(dir: &std::path::Path, update_type: &str, behaviours: Vec<Behaviour>, trusted: [u8; 32]) -> (TestHost, Scenario, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = TestHost::start_with(dir, |c| c.clock = clock.clone()).await.unwrap();
    for plugin in ["lorawan-v1", update_type] {
        assert_eq!(h.load_plugin(plugin).await.0, StatusCode::CREATED, "{plugin}");
    }
    let mut config = ScenarioConfig::new(behaviours.len());
    config.behaviours = behaviours;
    config.fleet.loss = 0.05;
    config.success_threshold = 75;
    config.fleet.seed = 5;
    config.update_type = Some(update_type.into());
    config.signing_key = Some(SIGNING_KEY);
    config.fleet.firmware.version = BASE_VERSION;
    config.fleet.firmware.public_key = Some(smart_delta_public(&trusted));
    config.fleet.firmware.image = Arc::new(base_image(24_576, 1));
    let s = {
        let st = &h.server.state;
        provision(&st.store, &st.vault, &st.runtime, clock.clone(), &config).unwrap()
    };
    (h, s, clock)
}

async fn run(s: &Scenario, clock: &Arc<ManualClock>) -> CampaignRun {
    // No target given: the engine takes it from the file (2.0.0.0).
    s.engine.start(&s.campaign_id, RunOptions::default()).await.unwrap();
    assert!(drive(&s.engine, clock, &s.campaign_id, |_| true).await.unwrap());
    s.engine.store.get::<CampaignRun>(&s.campaign_id).unwrap().unwrap()
}

#[tokio::test]
async fn an_lz4dict_campaign_leaves_every_device_on_the_exact_new_image() {
    let dir = tempfile::tempdir().unwrap();
    let (_h, s, clock) = setup(dir.path(), "lz4dict", vec![Behaviour::Normal; 30], SIGNING_KEY).await;
    let run = run(&s, &clock).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.target_firmware, Some(NEW_VERSION));
    assert!(run.payload_size as usize * 4 < s.image.len(), "the delta ({} B) is far smaller than the image ({} B)", run.payload_size, s.image.len());
    let payload = s.engine.store.blobs().read(run.payload_sha256.as_deref().unwrap()).unwrap();
    assert!(payload.starts_with(b"ALZD"));
    let devices = s.engine.device_runs(&s.campaign_id).unwrap();
    for p in &s.devices {
        let (version, upgrade) = s.engine.network.firmware(p.dev_eui).unwrap();
        assert_eq!((version, upgrade), (NEW_VERSION, Some(Upgrade::Installed { version: NEW_VERSION })), "{}", p.dev_eui);
        assert_eq!(s.engine.network.image(p.dev_eui).unwrap().as_slice(), s.image.as_slice(), "{} runs the exact new image", p.dev_eui);
        assert_eq!(s.engine.network.received_file(p.dev_eui).as_deref(), Some(payload.as_slice()));
    }
    let succeeded: Vec<_> = devices.iter().filter(|d| d.succeeded).collect();
    assert!(succeeded.len() >= 27, "{:?}", devices.iter().filter_map(|d| d.failed.clone()).collect::<Vec<_>>());
    assert!(succeeded.iter().all(|d| d.firmware_version == Some(NEW_VERSION)));
}

#[tokio::test]
async fn with_the_wrong_key_every_device_rejects_the_image_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (_h, s, clock) = setup(dir.path(), "lz4dict", vec![Behaviour::Normal; 12], [9; 32]).await;
    let run = run(&s, &clock).await;
    assert_eq!(run.status, RunStatus::Failed);
    let devices = s.engine.device_runs(&s.campaign_id).unwrap();
    for d in &devices {
        assert!(!d.succeeded);
        assert_eq!(d.failed.as_deref(), Some("DevUpgradeImage: image corrupt or signature invalid"), "{}", d.dev_eui);
        let (version, upgrade) = s.engine.network.firmware(d.dev_eui).unwrap();
        assert_eq!(version, BASE_VERSION, "{} still runs its base", d.dev_eui);
        match upgrade {
            Some(Upgrade::Rejected { status: ImageStatus::CorruptOrBadSignature, error }) => assert!(error.contains("signature does not verify"), "{error}"),
            other => panic!("{}: {other:?}", d.dev_eui),
        }
    }
}

#[tokio::test]
async fn a_device_on_another_base_is_refused_before_any_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let mut behaviours = vec![Behaviour::Normal; 10];
    behaviours[2] = Behaviour::OtherFirmware;
    let (h, s, clock) = setup(dir.path(), "lz4dict", behaviours, SIGNING_KEY).await;
    // The store already knows one device runs something else.
    let known = s.devices[5].dev_eui;
    let mut device = h.server.state.store.get::<Device>(&known.to_string()).unwrap().unwrap();
    device.firmware = Some("1.0.1.0".into());
    h.server.state.store.put(&device).unwrap();

    let run = run(&s, &clock).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    let fragments_stage = run.stages.iter().position(|st| st.name == "DataFragment").unwrap();
    let devices = s.engine.device_runs(&s.campaign_id).unwrap();
    let reported = s.devices[2].dev_eui;
    for d in &devices {
        let refused = d.dev_eui == reported || d.dev_eui == known;
        assert_eq!(!d.succeeded, refused, "{}: {:?}", d.dev_eui, d.failed);
        if refused {
            let error = d.failed.as_deref().unwrap();
            assert!(error.contains("the delta is for base 0x01000000"), "{error}");
            assert!(d.stage < fragments_stage, "refused at stage {}", d.stage);
            assert_eq!(s.engine.network.fragments_heard(d.dev_eui), Some(0));
            assert_eq!(s.engine.network.received_file(d.dev_eui), None);
        }
    }
    let by_eui = |e| devices.iter().find(|d| d.dev_eui == e).unwrap();
    assert!(by_eui(reported).failed.as_deref().unwrap().starts_with("DevVersion: runs firmware 0x0100ff00"), "{:?}", by_eui(reported).failed);
    assert_eq!(by_eui(known).stage, 0, "refused from the stored version, before any request");
    assert_eq!(by_eui(known).failed.as_deref(), Some("runs firmware 0x01000100; the delta is for base 0x01000000"));
}

#[tokio::test]
async fn a_plain_campaign_installs_the_image_behind_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let (_h, s, clock) = setup(dir.path(), "plain", vec![Behaviour::Normal; 20], SIGNING_KEY).await;
    let run = run(&s, &clock).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.payload_size as usize, s.image.len() + plain_image::HEADER_LEN);
    for p in &s.devices {
        assert_eq!(s.engine.network.firmware(p.dev_eui).unwrap().0, NEW_VERSION);
        assert_eq!(s.engine.network.image(p.dev_eui).unwrap().as_slice(), s.image.as_slice());
    }
}

#[tokio::test]
async fn a_campaign_whose_delta_cannot_be_made_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let (h, s, _clock) = setup(dir.path(), "lz4dict", vec![Behaviour::Normal; 3], SIGNING_KEY).await;
    // Without its base image there is nothing to make the delta from.
    let st = &h.server.state;
    let mut base = st
        .store
        .list::<airlift::model::StoredFile>(false)
        .unwrap()
        .into_iter()
        .find(|f| f.firmware_version.as_deref() == Some("1.0.0.0"))
        .unwrap();
    base.set_archived();
    st.store.put(&base).unwrap();
    let e = s.engine.start(&s.campaign_id, RunOptions::default()).await.unwrap_err().to_string();
    assert!(e.contains("no stored firmware 1.0.0.0"), "{e}");
}
