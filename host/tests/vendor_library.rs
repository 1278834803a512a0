//! `multitech-mdot`, a vendor device library built only on the plugin SDK,
//! runs campaigns on simulated MultiTech Dots (docs/multitech-mdot.md):
//! 0-based fragment numbers, the all-zero McKEKey, and the Dot's CRC-64
//! check of the whole file, a stage the standard libraries lack that the
//! engine runs from the plan alone.

use airlift::clock::ManualClock;
use airlift::engine::{CampaignRun, DeviceRun, RunOptions, RunStatus};
use airlift::model::{CampaignType, Eui};
use airlift_sim::fleet::{drive, Behaviour};
use airlift_sim::scenario::{provision, Scenario, ScenarioConfig};
use airlift_sim::Stack;
mod common;
use common::*;
use reqwest::StatusCode;
use std::sync::Arc;

const START_MS: u64 = 1_800_000_000_000;
const LIBRARY: &str = "multitech-mdot";

struct Ran {
    run: CampaignRun,
    devices: Vec<DeviceRun>,
    scenario: Scenario,
}

async fn run_dots(kind: CampaignType, behaviours: Vec<Behaviour>) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_MS));
    let h = TestHost::start_with(dir.path(), |c| c.clock = clock.clone()).await.unwrap();
    assert_eq!(h.load_plugin(LIBRARY).await.0, StatusCode::CREATED);
    let mut config = ScenarioConfig::new(behaviours.len());
    config.behaviours = behaviours;
    config.fleet.loss = 0.1;
    // Both forms of the check the Dot firmware sends: `80 idx crc` then
    // `90 idx`, and the earliest `80 crc`.
    config.fleet.stacks = vec![Stack::MultiTechDot, Stack::MultiTechDotEarly];
    config.library = LIBRARY.into();
    config.campaign_type = kind;
    config.file_size = 5_000;
    let state = &h.server.state;
    let scenario = provision(&state.store, &state.vault, &state.runtime, clock.clone(), &config).unwrap();
    // A Dot reports no firmware version: the file check is its word.
    let options = RunOptions { fixed_redundancy_pct: None, target_firmware: None };
    scenario.engine.start(&scenario.campaign_id, options).await.unwrap();
    assert!(drive(&scenario.engine, &clock, &scenario.campaign_id, |_| true).await.unwrap());
    let run = scenario.engine.store.get::<CampaignRun>(&scenario.campaign_id).unwrap().unwrap();
    let devices = scenario.engine.device_runs(&scenario.campaign_id).unwrap();
    Ran { run, devices, scenario }
}

fn remembered<'a>(d: &'a DeviceRun, key: &str) -> Option<&'a str> {
    d.memory.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn multitech_mdot_updates_dots_through_its_crc_stage() {
    let Ran { run, devices, scenario } = run_dots(CampaignType::FirmwareUpdate, vec![Behaviour::Normal; 12]).await;
    let failed: Vec<_> = devices.iter().filter_map(|d| d.failed.clone().map(|f| format!("{}: {f}", d.dev_eui))).collect();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?} {failed:?}", run.error);
    let stages: Vec<&str> = run.stages.iter().map(|s| s.name.as_str()).collect();
    assert!(stages.contains(&"FileCheck"), "{stages:?}");
    for d in &devices {
        assert!(d.succeeded, "{}: {:?}", d.dev_eui, d.failed);
        // The device's CRC matched the file, as the library checked it.
        assert_eq!(remembered(d, "mdot.crc"), Some("ok"), "{}", d.dev_eui);
    }
    // Every Dot installed the exact file: it does so only after the
    // server confirmed its CRC.
    for p in &scenario.devices {
        assert_eq!(scenario.engine.network.received_file(p.dev_eui).as_deref(), Some(scenario.image.as_slice()), "{} lacks the exact file", p.dev_eui);
    }
}

#[tokio::test]
async fn a_dot_whose_crc_does_not_match_fails_and_installs_nothing() {
    let mut behaviours = vec![Behaviour::Normal; 10];
    behaviours[3] = Behaviour::CorruptFlash;
    let Ran { run, devices, scenario } = run_dots(CampaignType::BinaryTransfer, behaviours).await;
    let corrupt = Eui(scenario.devices[3].dev_eui.0);
    assert_eq!(run.status, RunStatus::Succeeded, "9 of 10 meet the 90 % threshold: {:?}", run.error);
    for d in &devices {
        if d.dev_eui == corrupt {
            let why = d.failed.as_deref().unwrap_or("");
            assert!(why.starts_with("FileCheck:") && why.contains("CRC-64 mismatch"), "{why}");
            assert!(!d.succeeded);
            assert_eq!(remembered(d, "mdot.crc"), Some("failed"));
            assert_eq!(scenario.engine.network.received_file(corrupt), None, "told the CRC was wrong, the Dot deletes the file");
        } else {
            assert!(d.succeeded, "{}: {:?}", d.dev_eui, d.failed);
            assert_eq!(scenario.engine.network.received_file(d.dev_eui).as_deref(), Some(scenario.image.as_slice()));
        }
    }
}
