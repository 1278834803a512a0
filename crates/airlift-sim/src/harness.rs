//! A plugin author's test harness: from an ordinary `cargo test` of a
//! device-library project, build its component, load it into an Airlift
//! host in the test's process, run a campaign on a simulated fleet in
//! virtual time, and see what each device ended with.
//!
//! ```no_run
//! // tests/fleet.rs of a device-library project, with `airlift-sim` as a
//! // dev-dependency:
//! #[tokio::test]
//! async fn the_fleet_gets_the_file() {
//!     let outcome = airlift_sim::harness::Harness::device_library(env!("CARGO_MANIFEST_DIR"))
//!         .fleet(|c| c.fleet.loss = 0.1)
//!         .run()
//!         .await
//!         .unwrap();
//!     assert!(outcome.every_device_holds_the_file(), "{:?}", outcome.failures());
//! }
//! ```

use crate::fleet::{drive, Behaviour};
use crate::scenario::{provision, ScenarioConfig, ScenarioError};
use airlift::clock::{Clock, ManualClock};
use airlift::engine::{CampaignRun, DeviceRun, EngineError, RunOptions, RunStatus};
use airlift::model::{CampaignType, Eui, PluginManifest};
use airlift::plugin::PluginError;
use airlift::server::{Server, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a harness run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("building the component: {0}")]
    Build(String),
    #[error("plugin.json: {0}")]
    Manifest(String),
    #[error("loading the plugin: {0}")]
    Load(#[from] PluginError),
    #[error("the host: {0}")]
    Host(String),
    #[error("the simulated fleet: {0}")]
    Scenario(#[from] ScenarioError),
    #[error("the campaign: {0}")]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One campaign of a device-library project on a simulated fleet.
pub struct Harness {
    project: PathBuf,
    config: ScenarioConfig,
    target_dir: Option<PathBuf>,
}

/// What one device ended with.
#[derive(Debug, Clone)]
pub struct DeviceOutcome {
    pub dev_eui: Eui,
    /// The host counts it a success.
    pub succeeded: bool,
    /// Why the host took it out of the campaign, if it did.
    pub failed: Option<String>,
    /// The simulated device holds exactly the file the campaign sent.
    pub holds_exact_file: bool,
    /// What the library asked the host to remember for it.
    pub memory: Vec<(String, String)>,
}

/// The campaign's end.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run: CampaignRun,
    pub devices: Vec<DeviceOutcome>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.run.status == RunStatus::Succeeded
    }

    /// Every device holds the exact file and the host counts it a success.
    pub fn every_device_holds_the_file(&self) -> bool {
        self.devices.iter().all(|d| d.succeeded && d.holds_exact_file)
    }

    /// Devices that did not succeed, with why.
    pub fn failures(&self) -> Vec<(Eui, String)> {
        self.devices.iter().filter(|d| !d.succeeded).map(|d| (d.dev_eui, d.failed.clone().unwrap_or_else(|| "did not succeed".into()))).collect()
    }
}

impl Harness {
    /// The device library whose project (its `Cargo.toml` and
    /// `plugin.json`) is in `project`; by default 20 loss-free devices of
    /// the specification's stack get a 5,000-byte file.
    pub fn device_library(project: impl Into<PathBuf>) -> Self {
        let mut config = ScenarioConfig::new(20);
        config.behaviours = vec![Behaviour::Normal; 20];
        config.campaign_type = CampaignType::BinaryTransfer;
        config.file_size = 5_000;
        Self { project: project.into(), config, target_dir: None }
    }

    /// Shape the fleet and the campaign (one device per entry of
    /// `behaviours`, loss, stacks, campaign type, file size…). The library
    /// is always the project's.
    pub fn fleet(mut self, adjust: impl FnOnce(&mut ScenarioConfig)) -> Self {
        adjust(&mut self.config);
        self
    }

    /// Build the component in this directory instead of the project's
    /// `target/`.
    pub fn target_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.target_dir = Some(dir.into());
        self
    }

    /// Build, load, run the campaign to its end; the outcome.
    pub async fn run(mut self) -> Result<Outcome, HarnessError> {
        let manifest_bytes = std::fs::read(self.project.join("plugin.json"))?;
        let manifest: PluginManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| HarnessError::Manifest(e.to_string()))?;
        let wasm = std::fs::read(build_component(&self.project, self.target_dir.as_deref())?)?;
        let data = tempfile::tempdir()?;
        let clock = Arc::new(ManualClock::new(airlift::clock::SystemClock.now_unix_ms()));
        let mut server_config = ServerConfig::new(data.path().to_path_buf());
        server_config.bind = ([127, 0, 0, 1], 0).into();
        server_config.load_bundled = false;
        server_config.clock = clock.clone();
        let server = Server::start(server_config).await.map_err(|e| HarnessError::Host(e.to_string()))?;
        let state = &server.state;
        airlift::plugin::install(&state.runtime, &state.store, manifest.clone(), &wasm)?;
        self.config.library = manifest.name;
        let s = provision(&state.store, &state.vault, &state.runtime, clock.clone(), &self.config)?;
        s.engine.start(&s.campaign_id, RunOptions { fixed_redundancy_pct: None, target_firmware: None }).await?;
        drive(&s.engine, &clock, &s.campaign_id, |_| true).await?;
        let run = s.engine.store.get::<CampaignRun>(&s.campaign_id).map_err(|e| HarnessError::Host(e.to_string()))?.ok_or_else(|| HarnessError::Host("the campaign's run is gone".into()))?;
        let devices = s
            .engine
            .device_runs(&s.campaign_id)?
            .into_iter()
            .map(|d: DeviceRun| DeviceOutcome {
                holds_exact_file: s.engine.network.received_file(d.dev_eui).as_deref() == Some(s.image.as_slice()),
                dev_eui: d.dev_eui,
                succeeded: d.succeeded,
                failed: d.failed,
                memory: d.memory,
            })
            .collect();
        Ok(Outcome { run, devices })
    }
}

/// `cargo build --release --target wasm32-wasip2` in the project; the
/// component's path, as cargo names it.
fn build_component(project: &Path, target_dir: Option<&Path>) -> Result<PathBuf, HarnessError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "--message-format=json"]).current_dir(project);
    if let Some(dir) = target_dir {
        command.env("CARGO_TARGET_DIR", dir);
    }
    let out = command.output()?;
    if !out.status.success() {
        return Err(HarnessError::Build(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().filter(|f| f.ends_with(".wasm")).map(PathBuf::from))
        .next_back()
        .ok_or_else(|| HarnessError::Build("cargo built no .wasm component (is the crate a cdylib?)".into()))
}
