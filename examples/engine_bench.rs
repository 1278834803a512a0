//! Engine cost at scale, in virtual time: one campaign of many devices, and
//! many campaigns of 100 devices (run one after the other on one store).
//! For the one campaign it prints the engine's time per uplink with the
//! simulated fleet's own time left out, and its memory per device with the
//! fleet's heap left out ([`concurrent`], [`heap_accounting`]); for the
//! campaigns one after the other, process CPU per uplink, fleet included.
//!
//!     cargo run --release -p airlift-examples --bin engine-bench -- [DEVICES] [CAMPAIGNS]
//!
//! With `--campaigns N --devices-per-campaign M` it runs N campaigns of M
//! devices concurrently instead.

/// The allocator the `airlift` binary runs with, mimalloc, with the live
/// bytes of the engine and of the simulated fleet counted apart.
#[global_allocator]
static ALLOCATOR: heap_accounting::Accounted = heap_accounting::Accounted;

mod heap_accounting;

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
    for name in ["lorawan-v1", "simulated"] {
        let b = bundled::bundled(name)?;
        install(&runtime, &store, b.manifest.clone(), b.wasm())?;
    }
    let probes = concurrent::Probes { rss_kib, cpu_seconds };
    if let Some((campaigns, per_campaign)) = concurrent {
        println!("{campaigns} campaigns of {per_campaign} devices at once, 10 % loss:");
        return concurrent::run(&store, &vault, &runtime, campaigns, per_campaign, probes).await;
    }
    println!("one campaign of {big} devices, 10 % loss:");
    concurrent::run(&store, &vault, &runtime, 1, big, probes).await?;

    if campaigns == 0 {
        return Ok(());
    }
    let mut each = Vec::with_capacity(campaigns);
    for i in 0..campaigns {
        each.push(run(&store, &vault, &runtime, 100, i as u64 + 1).await?);
    }
    let per_uplink = |figures: &[Figures]| {
        let (uplinks, cpu): (u64, f64) = figures.iter().fold((0, 0.0), |(u, c), f| (u + f.uplinks, c + f.cpu_s));
        cpu * 1e6 / uplinks.max(1) as f64
    };
    let (uplinks, wall): (u64, f64) = each.iter().fold((0, 0.0), |(u, w), f| (u + f.uplinks, w + f.wall_s));
    let tenth = (campaigns / 10).max(1);
    println!("{campaigns} campaigns of 100 devices, one after the other on one store (CPU with the fleet's):");
    println!("  {uplinks} uplinks, {:.1} µs CPU per uplink, {wall:.1} s wall", per_uplink(&each));
    // Flat in the number of campaigns stored: the last campaigns cost what the first did.
    println!("  the first {tenth}: {:.1} µs per uplink; the last {tenth}: {:.1} µs", per_uplink(&each[..tenth]), per_uplink(&each[campaigns - tenth..]));
    Ok(())
}
