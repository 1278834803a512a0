//! `airlift-demo`, the README's main job: the server plus a simulated fleet
//! on the embedded store, running one firmware campaign on the standard
//! device library in virtual time, with a progress bar per stage.

mod distributed;
mod progress_bar;

use airlift::clock::{Clock, ManualClock, SystemClock};
use airlift::engine::{progress, RunOptions, RunStatus};
use airlift::model::CampaignStatus;
use airlift::server::{Server, ServerConfig};
use airlift_sim::fleet::drive;
use airlift_sim::scenario::{provision, Scenario, ScenarioConfig};
use airlift_sim::{PackageVersion, Stack};
use anyhow::Context;
use std::sync::Arc;

/// The main job: server plus a simulated fleet running a firmware campaign.
#[derive(clap::Parser)]
#[command(name = "airlift-demo", version)]
pub struct DemoArgs {
    /// Devices in the simulated fleet.
    #[arg(long, default_value_t = 100)]
    pub(crate) devices: usize,
    /// Probability that a frame is lost (0..1).
    #[arg(long, default_value_t = 0.1)]
    pub(crate) loss: f64,
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Firmware image size in bytes.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) file_size: usize,
    /// Device library plugin.
    #[arg(long, default_value = "lorawan-v1")]
    pub(crate) library: String,
    /// Send this percentage of extra fragments up front, no second round.
    #[arg(long)]
    fixed_redundancy: Option<u32>,
    /// Device clocks start off by up to ± this many seconds.
    #[arg(long, default_value_t = 0)]
    clock_drift: i64,
    /// Update type: `plain`, or `lz4dict` (devices run a base image and get
    /// a signed delta to the new one). Without it the image goes as it is.
    #[arg(long)]
    update_type: Option<String>,
    /// Device stacks the fleet mixes, given in turn: spec, loramac-node,
    /// basics-modem (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "spec")]
    stacks: Vec<Stack>,
    /// Multicast groups the fleet is spread over (round robin); each runs
    /// its own session, in parallel.
    #[arg(long, default_value_t = 1)]
    groups: usize,
    /// Simulated network backend instances the groups are sent through
    /// (round robin).
    #[arg(long, default_value_t = 1)]
    networks: usize,
    /// Print one JSON line with the result instead of progress bars.
    #[arg(long)]
    pub(crate) json: bool,
    /// Run distributed: our core and `--agents` agents over this Kafka
    /// broker (host:port), the simulated network in front of the fleet, on
    /// a clock 300 times faster than real time.
    #[arg(long)]
    pub(crate) kafka: Option<String>,
    /// Agents of the distributed run.
    #[arg(long, default_value_t = 3, requires = "kafka")]
    pub(crate) agents: usize,
    /// Kill this agent (1-based) while fragments go out; the campaign
    /// finishes on another.
    #[arg(long, requires = "kafka")]
    pub(crate) kill_agent: Option<usize>,
}

/// Largest simulated fleet the demo builds.
const MAX_DEVICES: usize = 100_000;
/// Most multicast groups the demo makes.
const MAX_GROUPS: usize = 64;
/// Largest image: 8,191 fragments of 239 B (EU868 DR5 less the header).
const MAX_FILE_SIZE: usize = 8_191 * 239;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    use clap::Parser;
    let args = DemoArgs::parse();
    // The demo draws progress: its logs stay at warnings unless asked.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!((0.0..1.0).contains(&args.loss), "--loss must be in [0, 1)");
    anyhow::ensure!((1..=MAX_DEVICES).contains(&args.devices), "--devices must be 1..={MAX_DEVICES}: the simulated fleet holds every device model in memory");
    anyhow::ensure!(
        (1..=MAX_FILE_SIZE).contains(&args.file_size),
        "--file-size must be 1..={MAX_FILE_SIZE} bytes: the device library sends at most 8,191 uncoded fragments (half the 16,383 TS004 numbers, the rest for coded ones) of 239 B at the demo's DR5"
    );
    anyhow::ensure!(!args.stacks.is_empty(), "--stacks names at least one device stack");
    anyhow::ensure!((1..=MAX_GROUPS).contains(&args.groups), "--groups must be 1..={MAX_GROUPS}");
    anyhow::ensure!((1..=args.groups).contains(&args.networks), "--networks must be 1..=--groups: each network sends at least one group");
    if let Some(brokers) = &args.kafka {
        return distributed::run(&args, brokers).await;
    }
    let data_dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(SystemClock.now_unix_ms()));
    let mut config = ServerConfig::new(data_dir.path().to_path_buf());
    config.bind = "127.0.0.1:0".parse()?;
    config.clock = clock.clone();
    // The demo drives its campaign itself, in virtual time.
    config.run_campaigns = false;
    let server = Server::start(config).await.context("starting the server")?;
    if !args.json {
        println!("Airlift API on http://{} (token in {}/admin.token)", server.addr, data_dir.path().display());
    }
    let state = server.state.clone();

    let mut scenario = ScenarioConfig::new(args.devices);
    scenario.fleet.seed = args.seed;
    scenario.fleet.loss = args.loss;
    scenario.fleet.clock_drift_s = args.clock_drift;
    scenario.fleet.version = if args.library.ends_with("v2") { PackageVersion::V2 } else { PackageVersion::V1 };
    scenario.fleet.stacks = args.stacks.clone();
    scenario.file_size = args.file_size;
    scenario.library = args.library.clone();
    scenario.groups = args.groups;
    scenario.networks = args.networks;
    if let Some(update_type) = &args.update_type {
        // The fleet runs a base image: the new one is a release built from it.
        const DEMO_KEY: [u8; 32] = [0x42; 32];
        scenario.update_type = Some(update_type.clone());
        scenario.signing_key = Some(DEMO_KEY);
        scenario.fleet.firmware.public_key = Some(airlift_sim::scenario::smart_delta_public(&DEMO_KEY));
        scenario.fleet.firmware.image = Arc::new(airlift_sim::scenario::base_image(args.file_size, args.seed));
    }
    let Scenario { engine, campaign_id, image, devices: provisioned, .. } = provision(&state.store, &state.vault, &state.runtime, clock.clone(), &scenario)?;
    // Raw images install as the fleet's configured version; packages carry theirs.
    let target_firmware = args.update_type.is_none().then_some(scenario.fleet.installed_firmware);
    let options = RunOptions { fixed_redundancy_pct: args.fixed_redundancy, target_firmware };
    let runs = engine.start(&campaign_id, options).await?;
    if !args.json {
        let run = &runs[0];
        let l = run.layout.unwrap();
        println!(
            "{} devices in {} multicast group(s) over {} network(s), {} B image as a {} B {} payload in {} fragments of {} B, loss {:.0} %, library {}",
            args.devices,
            runs.len(),
            args.networks,
            image.len(),
            run.payload_size,
            args.update_type.as_deref().unwrap_or("raw"),
            l.nb_frag,
            l.frag_size,
            args.loss * 100.0,
            args.library
        );
    }
    let started_ms = clock.now_unix_ms();
    let mut progress_bar = progress_bar::StageProgress::new();
    let quiet = args.json;
    drive(&engine, &clock, &campaign_id, |e| {
        if quiet {
            return true;
        }
        // The stage of the group furthest behind, its operations summed over the groups there.
        let Ok(parts) = e.parts(&campaign_id) else { return true };
        let Some(lead) = parts.iter().filter(|p| p.run.status == RunStatus::Running).map(|p| &p.run).min_by_key(|r| r.stage).or(parts.first().map(|p| &p.run)) else { return true };
        let (done, total) = parts.iter().filter(|p| p.run.stage == lead.stage).map(|p| progress::stage_operations(&p.run, &p.devices)).fold((0, 0), |(d, t), (pd, pt)| (d + pd, t + pt));
        let name = lead.current().map(|s| s.name.as_str()).unwrap_or("done");
        progress_bar.update(lead.stage, lead.stages.len(), name, done, total);
        true
    })
    .await?;
    progress_bar.finish();

    let parts = engine.parts(&campaign_id)?;
    let campaign = engine.store.get::<airlift::model::Campaign>(&campaign_id)?.context("campaign vanished")?;
    let run = &parts[0].run;
    let devices: Vec<_> = parts.iter().flat_map(|p| p.devices.iter().cloned()).collect();
    let fragments_sent: u32 = parts.iter().map(|p| p.run.fragments_sent).sum();
    let succeeded = devices.iter().filter(|d| d.succeeded).count();
    let exact = provisioned
        .iter()
        .filter(|p| match &args.update_type {
            Some(_) => engine.network.image(p.dev_eui).is_some_and(|i| *i == image),
            None => engine.network.received_file(p.dev_eui).as_deref() == Some(image.as_slice()),
        })
        .count();
    let lower_bound = engine.network.fragments_lower_bound();
    let decoded_bound = engine.network.fragments_decoded_bound();
    // The inventory follows: stored devices report the firmware they now run.
    let new_firmware = target_firmware.or(run.target_firmware).map(airlift::model::firmware_version_text);
    let inventory_updated = provisioned
        .iter()
        .filter(|p| engine.store.get::<airlift::model::Device>(&p.dev_eui.to_string()).ok().flatten().is_some_and(|d| d.firmware.is_some() && d.firmware == new_firmware))
        .count();
    let sim_seconds = (clock.now_unix_ms() - started_ms) as f64 / 1000.0;
    let summary = serde_json::json!({
        "campaign_status": match campaign.status { CampaignStatus::Succeeded => "SUCCEEDED", CampaignStatus::Stopped => "STOPPED", _ => "FAILED" },
        "devices_total": devices.len(),
        "devices_succeeded": succeeded,
        "devices_holding_exact_file": exact,
        "devices_stored_with_new_firmware": inventory_updated,
        "payload_bytes": run.payload_size,
        "fragments_uncoded": run.layout.map(|l| l.nb_frag),
        "fragments_sent": fragments_sent,
        "fragments_lower_bound": lower_bound,
        "fragments_decoded_bound": decoded_bound,
        "extra_rounds": parts.iter().map(|p| p.run.extra_rounds).max(),
        "sim_seconds": sim_seconds,
        "error": parts.iter().find_map(|p| p.run.error.clone()),
        "groups": parts.iter().map(|p| serde_json::json!({
            "mc_group": p.run.group.to_string(),
            "backend_instance": p.run.group_backend,
            "status": format!("{:?}", p.run.status).to_uppercase(),
            "devices_total": p.devices.len(),
            "devices_succeeded": p.devices.iter().filter(|d| d.succeeded).count(),
            "fragments_sent": p.run.fragments_sent,
            "extra_rounds": p.run.extra_rounds,
            "f_cnt_down": p.run.next_fcnt,
            "error": p.run.error,
        })).collect::<Vec<_>>(),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!("campaign {}: {succeeded}/{} devices updated, {exact} hold the exact image", summary["campaign_status"].as_str().unwrap(), devices.len());
        println!(
            "{fragments_sent} fragments sent for M = {} (lower bound {lower_bound}, ratio {:.3}), {} closed-loop rounds, {:.0} s of simulated time",
            run.layout.map(|l| l.nb_frag).unwrap_or(0),
            fragments_sent as f64 / lower_bound.max(1) as f64,
            summary["extra_rounds"],
            sim_seconds
        );
        if parts.len() > 1 {
            for p in &parts {
                let ok = p.devices.iter().filter(|d| d.succeeded).count();
                println!("  group {} via {}: {ok}/{} devices, {} fragments", p.run.group, p.run.group_backend.as_deref().unwrap_or("?"), p.devices.len(), p.run.fragments_sent);
            }
        }
        for d in devices.iter().filter(|d| !d.succeeded).take(5) {
            println!("  {}: {}", d.dev_eui, d.failed.as_deref().unwrap_or("unknown"));
        }
    }
    server.stop().await;
    Ok(())
}

