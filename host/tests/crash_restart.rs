//! A campaign survives its host being killed with SIGKILL at a random
//! stage: the host runs as a separate `airlift serve` process, the fleet
//! lives here behind the simulated network server (as real devices outlive
//! a server crash), and both share a sped-up clock. After a restart the
//! campaign completes, every device holds the exact file, and no device is
//! asked again for anything it answered and the host acknowledged, and no
//! fragment number goes out twice.

mod common;

use airlift::clock::{Clock, ScaledClock, SystemClock};
use airlift_sim::scenario::ScenarioConfig;
use common::SimSetup;
use anyhow::Context;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "crash-test-token";
/// Campaign seconds per real second.
const SPEED: f64 = 300.0;

struct Host {
    child: Child,
    base: String,
}

impl Host {
    fn spawn(data_dir: &std::path::Path, port: u16, origin: u64) -> anyhow::Result<Self> {
        Self::spawn_with(data_dir, port, origin, &[])
    }

    /// A host with `env` set (the store's crash hook, say).
    fn spawn_with(data_dir: &std::path::Path, port: u16, origin: u64, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let (speed, origin) = (SPEED.to_string(), origin.to_string());
        let args: [&std::ffi::OsStr; 6] = ["--time-speed".as_ref(), speed.as_ref(), "--time-origin".as_ref(), origin.as_ref(), "--data-dir".as_ref(), data_dir.as_os_str()];
        let child = common::serve_command(None, port, data_dir, &args, TOKEN).envs(env.iter().copied()).spawn()?;
        Ok(Self { child, base: format!("http://127.0.0.1:{port}") })
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        common::wait_ready(&mut self.child, http, &self.base).await
    }

    async fn api(&self, http: &reqwest::Client, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
        let r = http.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN).send().await?;
        let status = r.status();
        let body: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok(body)
    }

    /// The campaign's progress once it is no longer RUNNING (five minutes
    /// at most).
    async fn wait_finished(&self, http: &reqwest::Client, progress: &str) -> anyhow::Result<Value> {
        let until = Instant::now() + Duration::from_secs(300);
        loop {
            anyhow::ensure!(Instant::now() < until, "the campaign did not finish after the restart");
            let p = self.api(http, reqwest::Method::GET, progress).await?;
            if p["campaignStatus"] != "RUNNING" {
                return Ok(p);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        // std's kill sends SIGKILL on Unix: no shutdown code runs.
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn crash_and_resume(seed: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let origin = SystemClock.now_unix_ms();
    let mut config = ScenarioConfig::new(20);
    config.fleet.seed = seed;
    config.fleet.clock_drift_s = 5;
    // Answers come well within the stages' 60 s timeout, so a request
    // after an acknowledged answer can only be work redone.
    config.fleet.uplink_period_s = 15;
    config.file_size = 4_000;
    let SimSetup { lns, objects, devices, .. } = SimSetup::provision(dir.path(), Arc::new(ScaledClock::new(origin, SPEED)), &config, common::NETWORK_TOKEN).await?;

    let http = reqwest::Client::new();
    let port = common::free_port();
    let mut host = Host::spawn(dir.path(), port, origin)?;
    host.wait_ready(&http).await?;
    lns.post_uplinks_to(&format!("{}/backends/{}/uplink", host.base, objects.backend_instance));
    let started = host.api(&http, reqwest::Method::POST, &format!("/api/campaigns/{}/start", objects.campaign_id)).await?;
    let stages = started["campaignStagesCount"].as_u64().context("stage count")?;

    // Kill at a random stage, at a random moment inside it; the seeds
    // spread the stages over the whole plan.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let kill_stage = 1 + (seed * 2 + rng.gen_range(0..2)) % (stages - 2);
    let progress = format!("/api/campaigns/{}/progress", objects.campaign_id);
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        anyhow::ensure!(Instant::now() < until, "stage {kill_stage} never reached");
        let p = host.api(&http, reqwest::Method::GET, &progress).await?;
        anyhow::ensure!(p["campaignStatus"] == "RUNNING", "campaign ended before the kill: {p}");
        if p["campaignStagesCompleted"].as_u64().unwrap_or(0) >= kill_stage {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..40))).await;
    let before = host.api(&http, reqwest::Method::GET, &progress).await?;
    host.kill();
    eprintln!("seed {seed}: killed the host at stage {} ({})", before["campaignStagesCompleted"], before["stage"]["stageName"]);

    let mut host = Host::spawn(dir.path(), port, origin)?;
    host.wait_ready(&http).await?;
    let last = host.wait_finished(&http, &progress).await?;
    assert_eq!(last["campaignStatus"], "COMPLETED", "seed {seed}: {last}");
    for d in &devices {
        assert_eq!(lns.fleet.received_file(d.dev_eui).as_deref(), Some(objects.image.as_slice()), "seed {seed}: device {} lacks the exact file", d.dev_eui);
    }
    let (redone_requests, repeated_fragments) = lns.fleet.redone();
    assert_eq!(redone_requests, 0, "seed {seed}: requests for commands already answered and acknowledged, by (FPort, CID): {:?}", lns.fleet.redone_commands());
    assert_eq!(repeated_fragments, 0, "seed {seed}: DataFragment numbers sent twice");
    let results = host.api(&http, reqwest::Method::GET, &format!("/api/campaigns/{}/devices", objects.campaign_id)).await?;
    assert_eq!(results.as_array().map(|a| a.len()), Some(devices.len()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_survives_sigkill_of_its_host_at_a_random_stage() {
    for seed in [1, 2, 3, 4] {
        crash_and_resume(seed).await.unwrap_or_else(|e| panic!("seed {seed}: {e:#}"));
    }
}

/// One engine step's writes (every device's record and the run's) commit
/// as one transaction. The host is killed halfway through writing the
/// first step that asks every device (its second multi-write batch, after
/// the start's): after it, no device shows the step's request as sent
/// while another does not, the run is as before the step, and a restarted
/// host finishes the campaign without asking anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_between_the_writes_of_one_step_leaves_the_step_whole_or_undone() -> anyhow::Result<()> {
    use airlift::engine::{CampaignRun, DeviceRun, RunStatus};
    let dir = tempfile::tempdir()?;
    let origin = SystemClock.now_unix_ms();
    let mut config = ScenarioConfig::new(20);
    config.fleet.uplink_period_s = 15;
    config.file_size = 4_000;
    let SimSetup { lns, objects, devices, .. } = SimSetup::provision(dir.path(), Arc::new(ScaledClock::new(origin, SPEED)), &config, common::NETWORK_TOKEN).await?;
    let http = reqwest::Client::new();
    let port = common::free_port();
    let mut host = Host::spawn_with(dir.path(), port, origin, &[(airlift::store::ABORT_IN_BATCH_ENV, "2")])?;
    host.wait_ready(&http).await?;
    lns.post_uplinks_to(&format!("{}/backends/{}/uplink", host.base, objects.backend_instance));
    host.api(&http, reqwest::Method::POST, &format!("/api/campaigns/{}/start", objects.campaign_id)).await?;
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = host.child.try_wait()? {
            break status;
        }
        anyhow::ensure!(Instant::now() < until, "the host never reached its second batch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    anyhow::ensure!(!status.success(), "the host was to die in the step, not exit: {status}");

    {
        let store = airlift::store::Store::open(dir.path())?;
        let run = store.get::<CampaignRun>(&objects.campaign_id)?.context("the started run is on disk")?;
        let runs = DeviceRun::all_of(&store, &run)?;
        assert_eq!(runs.len(), devices.len());
        assert_eq!(run.status, RunStatus::Running);
        let attempts: std::collections::BTreeSet<u32> = runs.iter().map(|d| d.attempts).collect();
        assert_eq!(attempts.len(), 1, "half a step on disk: device attempts {attempts:?}");
        assert!(runs.iter().all(|d| d.stage == run.stage), "devices and run disagree on the stage");
    }

    let mut host = Host::spawn(dir.path(), port, origin)?;
    host.wait_ready(&http).await?;
    let progress = format!("/api/campaigns/{}/progress", objects.campaign_id);
    let last = host.wait_finished(&http, &progress).await?;
    assert_eq!(last["campaignStatus"], "COMPLETED", "{last}");
    for d in &devices {
        assert_eq!(lns.fleet.received_file(d.dev_eui).as_deref(), Some(objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
    assert_eq!(lns.fleet.redone().0, 0, "requests asked twice: {:?}", lns.fleet.redone_commands());
    Ok(())
}
