//! Many campaigns at once on one engine, in virtual time: `engine-bench
//! --campaigns N --devices-per-campaign M`. One simulated fleet of N·M
//! devices, one store, N campaigns started together and stepped as each
//! asks, uplinks delivered as they fall due. The fleet's own work (the
//! network calls the engine makes into it, and its uplink queue) is timed
//! apart and left out of the engine's figures.

use airlift::clock::{Clock, ManualClock, SystemClock};
use airlift::engine::runner::answer_batch_ms;
use airlift::engine::{Capabilities, Engine, Network, NetworkError, OffloadJob, OffloadStatus, Pacing, RunOptions};
use airlift::keys::Vault;
use airlift::model::{Eui, MulticastGroup};
use airlift::plugin::PluginRuntime;
use airlift_sim::fleet::{FleetConfig, SimFleet};
use airlift_sim::scenario::{provision_objects, ScenarioConfig};
use airlift::store::Store;
use super::heap_accounting::{as_fleet, as_fleet_async, live};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The simulated fleet, with the time spent in it counted.
struct TimedFleet {
    fleet: SimFleet,
    spent_ns: AtomicU64,
}

impl TimedFleet {
    fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let r = as_fleet(f);
        self.spent_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }

    async fn time_async<R>(&self, f: impl std::future::Future<Output = R>) -> R {
        let started = Instant::now();
        let r = as_fleet_async(f).await;
        self.spent_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }

    fn spent(&self) -> Duration {
        Duration::from_nanos(self.spent_ns.load(Ordering::Relaxed))
    }
}

impl Network for TimedFleet {
    async fn pacing(&self, b: &str) -> Result<Pacing, NetworkError> {
        self.time_async(self.fleet.pacing(b)).await
    }
    async fn capabilities(&self, b: &str) -> Result<Capabilities, NetworkError> {
        self.time_async(self.fleet.capabilities(b)).await
    }
    async fn create_group(&self, b: &str, g: &MulticastGroup, d: &[Eui], f: u32) -> Result<(), NetworkError> {
        self.time_async(self.fleet.create_group(b, g, d, f)).await
    }
    async fn send_unicast(&self, b: &str, d: Eui, p: u8, x: Vec<u8>) -> Result<(), NetworkError> {
        self.time_async(self.fleet.send_unicast(b, d, p, x)).await
    }
    async fn send_multicast(&self, b: &str, g: &MulticastGroup, f: u32, p: u8, x: Vec<u8>) -> Result<Option<u32>, NetworkError> {
        self.time_async(self.fleet.send_multicast(b, g, f, p, x)).await
    }
    async fn end_session(&self, b: &str, g: &MulticastGroup) {
        self.time_async(self.fleet.end_session(b, g)).await
    }
    async fn offloads(&self, b: &str) -> Result<bool, NetworkError> {
        self.fleet.offloads(b).await
    }
    async fn offload_start(&self, b: &str, j: OffloadJob) -> Result<String, NetworkError> {
        self.fleet.offload_start(b, j).await
    }
    async fn offload_poll(&self, b: &str, h: &str) -> Result<OffloadStatus, NetworkError> {
        self.fleet.offload_poll(b, h).await
    }
    async fn offload_cancel(&self, b: &str, h: &str) -> Result<(), NetworkError> {
        self.fleet.offload_cancel(b, h).await
    }
}

/// A sample of a Prometheus family in the process's metrics.
fn metric(text: &str, name: &str) -> f64 {
    text.lines().filter(|l| l.split(['{', ' ']).next() == Some(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

pub async fn run(store: &Store, vault: &Arc<Vault>, runtime: &Arc<PluginRuntime>, campaigns: usize, per_campaign: usize, probes: Probes) -> anyhow::Result<()> {
    let Probes { rss_kib, cpu_seconds } = probes;
    let clock = Arc::new(ManualClock::new(SystemClock.now_unix_ms()));
    let (rss0, (engine_heap0, _)) = (rss_kib(), live());
    let store0 = store.size_on_disk()?;
    let total = campaigns * per_campaign;
    let fleet_config = FleetConfig { loss: 0.1, seed: 7, ..FleetConfig::default() };
    let first_eui = 0x70b3_d57e_1000_0000;
    let (fleet, devices) = as_fleet(|| SimFleet::new(fleet_config.clone(), clock.clone(), vault.clone(), first_eui, &vec![airlift_sim::fleet::Behaviour::Normal; total]));
    let mut ids = Vec::with_capacity(campaigns);
    let provisioning = Instant::now();
    for c in 0..campaigns {
        let mut config = ScenarioConfig::new(per_campaign);
        config.fleet = fleet_config.clone();
        config.group_eui = 0x70b3_d57e_f000_0000 + c as u64;
        let backend = airlift::model::BackendInstanceInput {
            name: format!("simulated {c}"),
            plugin: "simulated".into(),
            settings: Default::default(),
            secrets: Default::default(),
            allowed_hosts: vec![],
            transport: Default::default(),
        };
        let objects = provision_objects(store, vault, clock.now_unix_ms(), &config, &devices[c * per_campaign..(c + 1) * per_campaign], vec![backend])?;
        ids.push(objects.campaign_id);
    }
    println!("  provisioned {campaigns} campaigns of {per_campaign} devices in {:.1} s", provisioning.elapsed().as_secs_f64());
    let timed = Arc::new(TimedFleet { fleet, spent_ns: AtomicU64::new(0) });
    let engine = Engine::new(store.clone(), runtime.clone(), clock.clone(), timed.clone());
    let options = RunOptions { fixed_redundancy_pct: None, target_firmware: Some(fleet_config.installed_firmware) };
    // Each run and when it asked to be stepped.
    let mut due: BTreeMap<String, u64> = BTreeMap::new();
    for id in &ids {
        for run in engine.start(id, options.clone()).await? {
            due.insert(run.id(), clock.now_unix_ms());
        }
    }
    let metrics_before = airlift::metrics::recorder().render();
    let (started, fleet0, virtual0, cpu0) = (Instant::now(), timed.spent(), clock.now_unix_ms(), cpu_seconds());
    let (mut engine_time, mut uplinks, mut steps) = (Duration::ZERO, 0u64, Vec::new());
    let mut memory = Memory::default();
    let mut sampled = Instant::now();
    while !due.is_empty() {
        if sampled.elapsed() >= Duration::from_secs(1) {
            memory.sample(rss_kib());
            sampled = Instant::now();
        }
        let now = clock.now_unix_ms();
        let ready: Vec<String> = due.iter().filter(|(_, at)| **at <= now).map(|(id, _)| id.clone()).collect();
        for id in ready {
            let (t, spent) = (Instant::now(), timed.spent());
            let next = engine.step(&id).await?;
            let took = t.elapsed().saturating_sub(timed.spent() - spent);
            engine_time += took;
            // The benchmark's own records are not the engine's memory.
            as_fleet(|| steps.push(took));
            match next {
                Some(at) => due.insert(id, at),
                None => due.remove(&id),
            };
        }
        for (eui, fport, payload) in timed.time(|| timed.fleet.take_due_uplinks()) {
            let (t, spent) = (Instant::now(), timed.spent());
            let answered = engine.on_uplink(None, eui, fport, payload).await?;
            engine_time += t.elapsed().saturating_sub(timed.spent() - spent);
            uplinks += 1;
            // Answers are let in for a while before the run steps, as the
            // server's runner does.
            for id in answered {
                if let Some(at) = due.get_mut(&id) {
                    *at = (*at).min(now + answer_batch_ms(per_campaign));
                }
            }
        }
        let Some(next_step) = due.values().min().copied() else { break };
        let next_uplink = timed.fleet.next_uplink_ms().unwrap_or(u64::MAX);
        clock.advance_to(next_step.min(next_uplink).max(now + 1_000));
    }
    let (wall, cpu) = (started.elapsed(), cpu_seconds() - cpu0);
    let fleet_time = timed.spent() - fleet0;
    let metrics_after = airlift::metrics::recorder().render();
    let plugin_calls = metric(&metrics_after, "airlift_plugin_calls_total") - metric(&metrics_before, "airlift_plugin_calls_total");
    let instances = metric(&metrics_after, "airlift_plugin_instances_total") - metric(&metrics_before, "airlift_plugin_instances_total");
    steps.sort();
    let succeeded = ids.iter().filter(|id| engine.store.get::<airlift::model::Campaign>(id).ok().flatten().is_some_and(|c| c.status == airlift::model::CampaignStatus::Succeeded)).count();
    println!("  {succeeded} of {campaigns} campaigns succeeded; {uplinks} uplinks; {:.0} s of virtual time in {:.1} s wall", (clock.now_unix_ms() - virtual0) as f64 / 1000.0, wall.as_secs_f64());
    println!(
        "  per uplink, the fleet's own time ({:.1} s) left out: engine time {:.1} µs, process CPU {:.1} µs",
        fleet_time.as_secs_f64(),
        engine_time.as_secs_f64() * 1e6 / uplinks.max(1) as f64,
        (cpu - fleet_time.as_secs_f64()) * 1e6 / uplinks.max(1) as f64
    );
    println!(
        "  plugin calls per uplink: {:.2}; instantiations per uplink {:.2}, per second {:.0}",
        plugin_calls / uplinks.max(1) as f64,
        instances / uplinks.max(1) as f64,
        instances / wall.as_secs_f64()
    );
    println!("  step latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} steps", percentile(&steps, 0.5).as_secs_f64() * 1e3, percentile(&steps, 0.99).as_secs_f64() * 1e3, steps.last().copied().unwrap_or_default().as_secs_f64() * 1e3, steps.len());
    memory.sample(rss_kib());
    // The simulated devices live in this process too (each holds its
    // decoder and the file): their heap is counted apart. What RSS holds
    // beyond both heaps is the allocator's spare room (freed blocks it
    // keeps, half-used pages), which no owner can be charged with.
    let per_device = |bytes: u64| bytes as f64 / 1024.0 / total as f64;
    let (rss, fleet, engine) = (memory.at_peak.rss_kib.saturating_sub(rss0) * 1024, memory.at_peak.fleet_heap, memory.at_peak.engine_heap.saturating_sub(engine_heap0));
    println!(
        "  memory per device at peak RSS: RSS {:.2} KiB = the fleet's heap {:.2} + the engine's heap {:.2} + the allocator's spare room {:.2}; the engine's heap peaked at {:.2} KiB",
        per_device(rss),
        per_device(fleet),
        per_device(engine),
        per_device(rss.saturating_sub(fleet + engine)),
        per_device(memory.engine_heap_peak.saturating_sub(engine_heap0)),
    );
    println!("  store per device: {:.2} KiB", per_device(store.size_on_disk()?.saturating_sub(store0)));
    // What lies between the live heaps and RSS: memory the allocator keeps.
    let (engine_heap, fleet_heap) = live();
    if let Some(committed) = allocator_committed() {
        println!("  at the end: the allocator holds {} MiB for {} MiB live (engine and fleet)", committed >> 20, (engine_heap + fleet_heap) >> 20);
    }
    Ok(())
}

/// How the benchmark reads the process's memory and CPU.
pub struct Probes {
    pub rss_kib: fn() -> u64,
    pub cpu_seconds: fn() -> f64,
}

/// Bytes mimalloc has committed, from its own statistics.
fn allocator_committed() -> Option<u64> {
    let stats = mimalloc::MiMalloc::stats_json().ok()?;
    let stats: serde_json::Value = serde_json::from_slice(stats.to_bytes()).ok()?;
    stats["committed"]["current"].as_u64()
}

/// The process's memory where RSS was highest, and the engine's heap at
/// its own highest (sampled once a second).
#[derive(Default)]
struct Memory {
    at_peak: Sample,
    engine_heap_peak: u64,
}

#[derive(Default)]
struct Sample {
    rss_kib: u64,
    fleet_heap: u64,
    engine_heap: u64,
}

impl Memory {
    fn sample(&mut self, rss_kib: u64) {
        let (engine_heap, fleet_heap) = live();
        self.engine_heap_peak = self.engine_heap_peak.max(engine_heap);
        if rss_kib > self.at_peak.rss_kib {
            self.at_peak = Sample { rss_kib, fleet_heap, engine_heap };
        }
    }
}
