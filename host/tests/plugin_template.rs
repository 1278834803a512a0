//! `airlift plugin new` as a vendor runs it: for each plugin kind, the
//! project it writes (outside this repository) passes its own tests, builds
//! for wasm32-wasip2 and loads into a server; the device library then runs
//! a campaign on the simulated fleet.

mod common;

use airlift::clock::ManualClock;
use airlift::engine::{CampaignRun, RunOptions, RunStatus};
use airlift::model::CampaignType;
use airlift_sim::fleet::{drive, Behaviour};
use airlift_sim::scenario::{provision, ScenarioConfig};
use common::*;
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The build's target directory (the `airlift` binary is in its `debug/`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_airlift")).parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Run cargo in a template project. It shares the directory `host/build.rs`
/// builds our plugins in, with the same profile and flags, so the SDK and
/// its dependencies are compiled once.
fn cargo(project: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo).args(args).current_dir(project).env("CARGO_TARGET_DIR", target_dir().join("plugins")).output().unwrap();
    assert!(out.status.success(), "cargo {args:?} in {}:\n{}\n{}", project.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Its own tests ran and passed, not zero of them.
    if args[0] == "test" {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let passed: u32 = stdout.lines().filter_map(|l| l.strip_prefix("test result: ok. ")).filter_map(|l| l.split(' ').next()?.parse::<u32>().ok()).sum();
        assert!(passed > 0, "no test of the template ran:\n{stdout}");
    }
}

/// `airlift plugin new`, then its tests and its wasm build; the manifest
/// and component as built.
fn new_plugin(dir: &Path, kind: &str, name: &str) -> (Vec<u8>, Vec<u8>) {
    let project = dir.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_airlift")).args(["plugin", "new", "--kind", kind, name, "--dir"]).arg(&project).output().unwrap();
    assert!(out.status.success(), "plugin new: {}", String::from_utf8_lossy(&out.stderr));
    for file in ["Cargo.toml", "plugin.json", "src/lib.rs", "README.md"] {
        assert!(project.join(file).is_file(), "{kind}: no {file}");
    }
    // Written again over a project is refused: nothing of the vendor's is lost.
    let again = Command::new(env!("CARGO_BIN_EXE_airlift")).args(["plugin", "new", "--kind", kind, name, "--dir"]).arg(&project).output().unwrap();
    assert!(!again.status.success());
    // Our plugins' lock: the same dependency versions, already compiled.
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/Cargo.lock"), project.join("Cargo.lock")).unwrap();
    cargo(&project, &["test", "--quiet"]);
    cargo(&project, &["build", "--quiet", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target_dir().join("plugins/wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
    (std::fs::read(project.join("plugin.json")).unwrap(), std::fs::read(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_template_passes_its_tests_builds_loads_and_the_library_runs_a_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let data = tempfile::tempdir().unwrap();
    let h = TestHost::start_with(data.path(), |c| c.clock = clock.clone()).await.unwrap();

    for (kind, name) in [("backend", "acme-network"), ("update-type", "acme-image")] {
        let (manifest, wasm) = new_plugin(dir.path(), kind, name);
        let (status, body) = h.load_plugin_files(manifest, wasm).await;
        assert_eq!(status, StatusCode::CREATED, "{kind}: {body}");
        let (status, described) = h.get(&format!("/api/plugins/{name}/describe")).await;
        assert_eq!(status, StatusCode::OK, "{kind}: {described}");
    }

    let library = "acme-devices";
    let (manifest, wasm) = new_plugin(dir.path(), "device-library", library);
    let (status, body) = h.load_plugin_files(manifest, wasm).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut config = ScenarioConfig::new(10);
    config.behaviours = vec![Behaviour::Normal; 10];
    config.fleet.loss = 0.1;
    config.library = library.into();
    config.campaign_type = CampaignType::BinaryTransfer;
    config.file_size = 3_000;
    let state = &h.server.state;
    let s = provision(&state.store, &state.vault, &state.runtime, clock.clone(), &config).unwrap();
    s.engine.start(&s.campaign_id, RunOptions { fixed_redundancy_pct: None, target_firmware: None }).await.unwrap();
    assert!(drive(&s.engine, &clock, &s.campaign_id, |_| true).await.unwrap());
    let run = s.engine.store.get::<CampaignRun>(&s.campaign_id).unwrap().unwrap();
    let failed: Vec<_> = s.engine.device_runs(&s.campaign_id).unwrap().into_iter().filter_map(|d| d.failed.map(|f| format!("{}: {f}", d.dev_eui))).collect();
    assert_eq!(run.status, RunStatus::Succeeded, "{:?} {failed:?}", run.error);
    assert_eq!(run.library_name, library);
    for p in &s.devices {
        assert_eq!(s.engine.network.received_file(p.dev_eui).as_deref(), Some(s.image.as_slice()), "{} lacks the exact file", p.dev_eui);
    }
}
