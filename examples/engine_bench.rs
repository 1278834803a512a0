//! Engine cost at scale, in virtual time: one campaign of many devices, and
//! many campaigns of 100 devices (run one after the other on one store).
//! Prints process CPU per uplink handled (engine + device-library plugin +
//! simulated fleet, all in this process) and resident memory per device.
//!
//!     cargo run --release -p airlift-examples --bin engine-bench -- [DEVICES] [CAMPAIGNS]
//!
//! With `--campaigns N --devices-per-campaign M` it runs N campaigns of M
//! devices concurrently instead ([`concurrent`]).

/// The allocator the `airlift` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use airlift::clock::{Clock, ManualClock, SystemClock};
use airlift::engine::RunOptions;
use airlift::keys::Vault;
use airlift::plugin::{bundled, install, HostServices, PluginRuntime};
use airlift_sim::fleet::drive;
use airlift_sim::scenario::{provision, ScenarioConfig};
use airlift::store::Store;
use std::sync::Arc;
use std::time::Instant;

#[path = "concurrent_campaigns.rs"]
mod concurrent;

/// Process CPU seconds (user + system) from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0) + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Resident set size in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()))
        .unwrap_or(0)
}

struct Figures {
    uplinks: u64,
    cpu_s: f64,
    wall_s: f64,
}

async fn run(store: &Store, vault: &Arc<Vault>, runtime: &Arc<PluginRuntime>, devices: usize, index: u64) -> anyhow::Result<Figures> {
    let clock = Arc::new(ManualClock::new(SystemClock.now_unix_ms()));
    let mut config = ScenarioConfig::new(devices);
    config.fleet.loss = 0.1;
    config.fleet.seed = index + 1;
    config.first_eui = 0x70b3_d57e_0000_0000 + (index << 20);
    config.group_eui = 0x70b3_d57e_ff00_0000 + index;
    let s = provision(store, vault, runtime, clock.clone(), &config)?;
    let options = RunOptions { fixed_redundancy_pct: None, target_firmware: Some(config.fleet.installed_firmware) };
    s.engine.start(&s.campaign_id, options).await?;
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    drive(&s.engine, &clock, &s.campaign_id, |_| true).await?;
    let uplinks = s.engine.network.uplinks_delivered();
    Ok(Figures { uplinks, cpu_s: cpu_seconds() - cpu0, wall_s: wall0.elapsed().as_secs_f64() })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Plugin calls are counted through the metrics.
    airlift::metrics::recorder();
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| raw.iter().position(|a| a == name).and_then(|i| raw.get(i + 1)).and_then(|v| v.parse::<usize>().ok());
    let concurrent = flag("--campaigns").map(|n| (n, flag("--devices-per-campaign").unwrap_or(100)));
    let args: Vec<usize> = raw.iter().filter_map(|a| a.parse().ok()).collect();
    let (big, campaigns) = (args.first().copied().unwrap_or(10_000), args.get(1).copied().unwrap_or(100));
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let vault = Arc::new(Vault::new([0; 32]));
    let host = Arc::new(HostServices::new(store.clone(), vault.clone(), Arc::new(SystemClock)));
    let runtime = Arc::new(PluginRuntime::new(dir.path().join("compiled"), host)?);
    let b = bundled::bundled("lorawan-v1")?;
    install(&runtime, &store, b.manifest.clone(), b.wasm())?;
    if let Some((campaigns, per_campaign)) = concurrent {
        let b = bundled::bundled("simulated")?;
        install(&runtime, &store, b.manifest.clone(), b.wasm())?;
        println!("{campaigns} campaigns of {per_campaign} devices at once, 10 % loss:");
        return concurrent::run(&store, &vault, &runtime, campaigns, per_campaign, rss_kib).await;
    }
    let rss0 = rss_kib();

    let one = run(&store, &vault, &runtime, big, 0).await?;
    let rss1 = rss_kib();
    println!("one campaign of {big} devices, 10 % loss:");
    println!("  {} uplinks, {:.1} µs CPU per uplink, {:.1} s CPU, {:.1} s wall", one.uplinks, one.cpu_s * 1e6 / one.uplinks.max(1) as f64, one.cpu_s, one.wall_s);
    // RSS counts the simulated fleet too (each device keeps the file it
    // receives) and varies from run to run with the allocator; the store's
    // bytes are the engine's own.
    println!("  RSS grew {} KiB: {:.2} KiB per device (with the simulated fleet)", rss1.saturating_sub(rss0), rss1.saturating_sub(rss0) as f64 / big as f64);
    store.flush()?;
    let device_runs = store.list_prefix::<airlift::engine::DeviceRun>("")?.len().max(1);
    println!("  store: {:.2} KiB on disk per device ({device_runs} device runs)", store.size_on_disk()? as f64 / 1024.0 / device_runs as f64);

    let (mut uplinks, mut cpu, mut wall) = (0, 0.0, 0.0);
    for i in 0..campaigns {
        let f = run(&store, &vault, &runtime, 100, i as u64 + 1).await?;
        uplinks += f.uplinks;
        cpu += f.cpu_s;
        wall += f.wall_s;
    }
    let rss2 = rss_kib();
    println!("{campaigns} campaigns of 100 devices, one after the other on one store:");
    println!("  {uplinks} uplinks, {:.1} µs CPU per uplink, {cpu:.1} s CPU, {wall:.1} s wall", cpu * 1e6 / uplinks.max(1) as f64);
    println!("  RSS grew {} KiB over them: {:.2} KiB per device", rss2.saturating_sub(rss1), rss2.saturating_sub(rss1) as f64 / (campaigns * 100) as f64);
    Ok(())
}
