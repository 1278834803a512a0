//! `airlift demo`: the server plus a simulated fleet on the embedded store,
//! running one firmware campaign on the standard device library in virtual
//! time, with a progress bar per stage.

use airlift::clock::{Clock, ManualClock, SystemClock};
use airlift::engine::{progress, Engine, RunOptions, RunStatus};
use airlift::model::*;
use airlift::server::{Server, ServerConfig};
use airlift::sim::fleet::{run_to_end, Behaviour, FleetConfig, SimFleet};
use anyhow::Context;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Devices in the simulated fleet.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Probability that a frame is lost (0..1).
    #[arg(long, default_value_t = 0.1)]
    loss: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Firmware image size in bytes.
    #[arg(long, default_value_t = 20_000)]
    file_size: usize,
    /// Device library plugin.
    #[arg(long, default_value = "lorawan-v1")]
    library: String,
    /// Send this percentage of extra fragments up front, no second round.
    #[arg(long)]
    fixed_redundancy: Option<u32>,
    /// Print one JSON line with the result instead of progress bars.
    #[arg(long)]
    json: bool,
}

fn bar(done: u64, total: u64) -> String {
    let width = 30;
    let filled = if total == 0 { width } else { (done * width as u64 / total) as usize }.min(width);
    format!("[{}{}] {done}/{total}", "#".repeat(filled), "-".repeat(width - filled))
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!((0.0..1.0).contains(&args.loss), "--loss must be in [0, 1)");
    anyhow::ensure!(args.devices > 0, "--devices must be at least 1");
    let data_dir = tempfile::tempdir()?;
    let clock = Arc::new(ManualClock::new(SystemClock.now_unix_ms()));
    let mut config = ServerConfig::new(data_dir.path().to_path_buf());
    config.bind = "127.0.0.1:0".parse()?;
    config.clock = clock.clone();
    let server = Server::start(config).await.context("starting the server")?;
    if !args.json {
        eprintln!("Airlift API on http://{} (token in {}/admin.token)", server.addr, data_dir.path().display());
    }
    let state = server.state.clone();

    let version = if args.library.ends_with("v2") { airlift::sim::PackageVersion::V2 } else { airlift::sim::PackageVersion::V1 };
    let fleet_config = FleetConfig { seed: args.seed, loss: args.loss, version, ..FleetConfig::default() };
    let (fleet, provisioned) = SimFleet::new(fleet_config.clone(), clock.clone(), state.vault.clone(), 0x70b3_d57e_d000_0000, &vec![Behaviour::Normal; args.devices]);

    // Provision through the same validation the API applies.
    let now = chrono::DateTime::from_timestamp_millis(clock.now_unix_ms() as i64).unwrap_or_default();
    let ctx = InputContext { store: &state.store, vault: &state.vault, now };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for p in &provisioned {
        let input = DeviceInput {
            dev_eui: p.dev_eui,
            name: format!("sim-{}", p.dev_eui),
            tag: "demo".into(),
            multicast_classes: vec![SessionClass::C],
            lorawan_version: LorawanVersion::V1_0,
            device_key: Some(hex(&p.server_key)),
            device_profile: None,
            firmware: Some("1.0.0.0".into()),
        };
        state.store.put(&Device::from_input(input, None, &ctx)?)?;
    }
    let group_eui = Eui(0x70b3_d57e_d0ff_0000);
    let group = MulticastGroupInput {
        dev_eui: group_eui,
        name: "demo group".into(),
        tag: String::new(),
        ism_band: IsmBand::EU868,
        dl_dwell_time: false,
        dev_addr: "01ffffff".into(),
        group_id: 0,
        frequency: 869_525_000,
        data_rate: 5,
        redundancy: 80,
        ping_slot_periodicity: 0,
        session_class: SessionClass::C,
        mc_key: None,
    };
    state.store.put(&MulticastGroup::from_input(group, None, &ctx)?)?;
    let set = DeviceSet::from_input(DeviceSetInput { name: "demo fleet".into(), description: String::new(), devices: provisioned.iter().map(|p| p.dev_eui).collect() }, None, &ctx)?;
    state.store.put(&set)?;
    let region = Region::from_input(RegionInput { name: "demo region".into(), description: String::new(), multicast_groups: vec![group_eui] }, None, &ctx)?;
    state.store.put(&region)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let image: Vec<u8> = (0..args.file_size).map(|_| rng.gen()).collect();
    let file_id = state.store.blobs().put(&image)?;
    let file_input = FileInput { name: "firmware-2.0.0.0.bin".into(), firmware_version: Some("2.0.0.0".into()), ..FileInput::default() };
    state.store.put(&StoredFile::with_metadata(file_id.clone(), image.len() as u64, file_input, None, &ctx)?)?;
    let backend = BackendInstance::from_input(BackendInstanceInput { name: "simulated network".into(), plugin: "simulated".into(), settings: Default::default(), secrets: Default::default(), allowed_hosts: vec![] }, None, &ctx)?;
    state.store.put(&backend)?;
    let campaign = CampaignInput {
        name: "demo firmware update".into(),
        description: String::new(),
        campaign_type: CampaignType::FirmwareUpdate,
        device_sets: vec![set.id.clone()],
        regions: vec![region.id.clone()],
        reboot_at: None,
        session_start: None,
        file: Some(file_id),
        max_duration_minutes: 24 * 60,
        success_threshold: 90,
        device_library: args.library.clone(),
        backend_instance: backend.id.clone(),
        update_type: None,
    };
    let campaign = Campaign::from_input(campaign, None, &ctx)?;
    state.store.put(&campaign)?;

    let engine = Engine::new(state.store.clone(), state.runtime.clone(), clock.clone(), Arc::new(fleet));
    let options = RunOptions { fixed_redundancy_pct: args.fixed_redundancy, target_firmware: Some(fleet_config.installed_firmware) };
    let run = engine.start(&campaign.id, options).await?;
    if !args.json {
        let l = run.layout.unwrap();
        eprintln!("{} devices, {} B image in {} fragments of {} B, loss {:.0} %, library {}", args.devices, image.len(), l.nb_frag, l.frag_size, args.loss * 100.0, args.library);
    }
    let started_ms = clock.now_unix_ms();
    let mut shown_stage = usize::MAX;
    let mut shown = (usize::MAX, u64::MAX, u64::MAX);
    let quiet = args.json;
    run_to_end(&engine, &clock, &campaign.id, |e| {
        if quiet {
            return;
        }
        let (Ok(Some(run)), Ok(devices)) = (e.store.get::<airlift::engine::CampaignRun>(&campaign.id), e.device_runs(&campaign.id)) else { return };
        let (done, total) = progress::stage_operations(&run, &devices);
        if shown == (run.stage, done, total) {
            return;
        }
        shown = (run.stage, done, total);
        if run.stage != shown_stage {
            if shown_stage != usize::MAX {
                eprintln!();
            }
            shown_stage = run.stage;
        }
        let name = run.current().map(|s| s.name.as_str()).unwrap_or("done");
        eprint!("\r  {:>2}/{} {:<22} {}", (run.stage + 1).min(run.stages.len()), run.stages.len(), name, bar(done, total));
        let _ = std::io::stderr().flush();
    })
    .await?;

    let run = engine.store.get::<airlift::engine::CampaignRun>(&campaign.id)?.context("run vanished")?;
    let devices = engine.device_runs(&campaign.id)?;
    let succeeded = devices.iter().filter(|d| d.succeeded).count();
    let exact = provisioned.iter().filter(|p| engine.network.received_file(p.dev_eui).as_deref() == Some(image.as_slice())).count();
    let lower_bound = engine.network.fragments_lower_bound();
    let sim_seconds = (clock.now_unix_ms() - started_ms) as f64 / 1000.0;
    let summary = serde_json::json!({
        "campaign_status": match run.status { RunStatus::Succeeded => "SUCCEEDED", RunStatus::Stopped => "STOPPED", _ => "FAILED" },
        "devices_total": devices.len(),
        "devices_succeeded": succeeded,
        "devices_holding_exact_file": exact,
        "fragments_uncoded": run.layout.map(|l| l.nb_frag),
        "fragments_sent": run.fragments_sent,
        "fragments_lower_bound": lower_bound,
        "extra_rounds": run.extra_rounds,
        "sim_seconds": sim_seconds,
        "error": run.error,
    });
    if args.json {
        println!("{summary}");
    } else {
        eprintln!();
        eprintln!("campaign {}: {succeeded}/{} devices updated, {exact} hold the exact image", summary["campaign_status"].as_str().unwrap(), devices.len());
        eprintln!(
            "{} fragments sent for M = {} (lower bound {lower_bound}, ratio {:.3}), {} closed-loop rounds, {:.0} s of simulated time",
            run.fragments_sent,
            run.layout.map(|l| l.nb_frag).unwrap_or(0),
            run.fragments_sent as f64 / lower_bound.max(1) as f64,
            run.extra_rounds,
            sim_seconds
        );
        for d in devices.iter().filter(|d| !d.succeeded).take(5) {
            eprintln!("  {}: {}", d.dev_eui, d.failed.as_deref().unwrap_or("unknown"));
        }
    }
    server.stop().await;
    Ok(())
}
