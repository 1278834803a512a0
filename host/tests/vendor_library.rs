//! `multitech-mdot`, a vendor device library built only on the plugin SDK,
//! runs campaigns on simulated MultiTech Dots (docs/multitech-mdot.md):
//! 0-based fragment numbers, the all-zero McKEKey, and the Dot's CRC-64
//! check of the whole file, a stage the standard libraries lack that the
//! engine runs from the plan alone. Run as a vendor runs their own
//! library: through the SDK's native harness, from its project directory.

use airlift_plugin_harness::{Behaviour, CampaignType, DeviceOutcome, Harness, Outcome, Stack};
use std::path::Path;

/// The project of the library, built where `host/build.rs` builds ours.
fn mdot() -> Harness {
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/vendors/multitech-mdot");
    let target = Path::new(env!("CARGO_BIN_EXE_airlift")).parent().and_then(Path::parent).unwrap().join("plugins");
    Harness::device_library(project).target_dir(target)
}

/// Both forms of the check the Dot firmware sends (`80 idx crc` then
/// `90 idx`, and the earliest `80 crc`), over a lossy link.
async fn run_dots(kind: CampaignType, behaviours: Vec<Behaviour>) -> Outcome {
    mdot()
        .fleet(|c| {
            c.behaviours = behaviours;
            c.fleet.loss = 0.1;
            c.fleet.stacks = vec![Stack::MultiTechDot, Stack::MultiTechDotEarly];
            c.campaign_type = kind;
        })
        .run()
        .await
        .unwrap()
}

fn remembered<'a>(d: &'a DeviceOutcome, key: &str) -> Option<&'a str> {
    d.memory.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn multitech_mdot_updates_dots_through_its_crc_stage() {
    let outcome = run_dots(CampaignType::FirmwareUpdate, vec![Behaviour::Normal; 12]).await;
    assert!(outcome.succeeded(), "{:?} {:?}", outcome.run.error, outcome.failures());
    let stages: Vec<&str> = outcome.run.stages.iter().map(|s| s.name.as_str()).collect();
    assert!(stages.contains(&"FileCheck"), "{stages:?}");
    // Every Dot installed the exact file: it does so only after the server
    // confirmed its CRC, which the library checked against the file.
    assert!(outcome.every_device_holds_the_file(), "{:?}", outcome.failures());
    for d in &outcome.devices {
        assert_eq!(remembered(d, "mdot.crc"), Some("ok"), "{}", d.dev_eui);
    }
}

#[tokio::test]
async fn a_dot_whose_crc_does_not_match_fails_and_installs_nothing() {
    let mut behaviours = vec![Behaviour::Normal; 10];
    behaviours[3] = Behaviour::CorruptFlash;
    let outcome = run_dots(CampaignType::BinaryTransfer, behaviours).await;
    assert!(outcome.succeeded(), "9 of 10 meet the 90 % threshold: {:?}", outcome.run.error);
    let corrupt = &outcome.devices[3];
    let why = corrupt.failed.as_deref().unwrap_or("");
    assert!(why.starts_with("FileCheck:") && why.contains("CRC-64 mismatch"), "{why}");
    assert!(!corrupt.succeeded && !corrupt.holds_exact_file, "told the CRC was wrong, the Dot deletes the file");
    assert_eq!(remembered(corrupt, "mdot.crc"), Some("failed"));
    let others: Vec<&DeviceOutcome> = outcome.devices.iter().filter(|d| d.dev_eui != corrupt.dev_eui).collect();
    assert!(others.iter().all(|d| d.succeeded && d.holds_exact_file), "{:?}", outcome.failures());
}
