//! The distributed mode under load: `distributed-bench --kafka HOST:PORT
//! --campaigns 100 --devices-per-campaign 100 --agents 3`. Our core and the
//! agents run in this process over the given broker (tansu on 127.0.0.1
//! will do), the simulated network server in front of one fleet of
//! campaigns × devices posts uplinks to the core, on a sped-up clock
//! (`--speed`, default 300; `--uplink-period` seconds, default 30: mind
//! that the fleet then sends devices × speed ÷ period uplinks a real
//! second, all through the core). All campaigns start together; the figures:
//! progress messages per second the core took in, and how long a progress
//! message took from its agent to the store the core's API reads (p50,
//! p99, max, by the wall clock).

use airlift::clock::{Clock, ScaledClock, SystemClock};
use airlift::distributed::{agent, bus, rmc_core};
use airlift::model::{Campaign, CampaignStatus, DeviceSet, DeviceSetInput, Editable, InputContext, Region, RegionInput};
use airlift::server::{Server, ServerConfig};
use airlift_sim::fleet::{Behaviour, SimFleet};
use airlift_sim::lns::SimLns;
use airlift_sim::scenario::{group_of, provision_objects, ScenarioConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-network-token";

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn host(dir: &std::path::Path, clock: Arc<dyn Clock>, speed: f64, remote: Option<Arc<rmc_core::Core>>) -> anyhow::Result<Server> {
    let mut config = ServerConfig::new(dir.to_path_buf());
    config.bind = "127.0.0.1:0".parse()?;
    config.clock = clock;
    config.uplink_window = airlift::api::UplinkWindow::for_clock_speed(speed);
    config.remote = remote;
    Ok(Server::start(config).await?)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers: String = arg("--kafka", String::new());
    anyhow::ensure!(!brokers.is_empty(), "--kafka HOST:PORT names the broker (e.g. tansu broker --listener-url tcp://127.0.0.1:9092)");
    let campaigns: usize = arg("--campaigns", 100);
    let per_campaign: usize = arg("--devices-per-campaign", 100);
    let agents: usize = arg("--agents", 3);
    let speed: f64 = arg("--speed", 300.0);
    let uplink_period: u64 = arg("--uplink-period", 30);
    let devices = campaigns * per_campaign;
    // RUST_LOG=warn shows what the core and agents complain of.
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into())).init();
    let dir = tempfile::tempdir()?;
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(SystemClock.now_unix_ms(), speed));
    let kafka = bus::KafkaSettings::new(brokers.clone());
    kafka.create_topics(3).await?;
    let cluster = Arc::new(airlift::keys::Vault::new(rand::random()));
    let core = Arc::new(rmc_core::Core::new(kafka.clone(), cluster.clone())?);
    let core_host = host(&dir.path().join("core"), clock.clone(), speed, Some(core.clone())).await?;
    let (store, vault) = (core_host.state.store.clone(), core_host.state.vault.clone());

    // One fleet, one multicast group per campaign.
    let mut scenario = ScenarioConfig::new(devices);
    scenario.groups = campaigns;
    scenario.file_size = 2_000;
    scenario.fleet.uplink_period_s = uplink_period;
    let (fleet, provisioned) = SimFleet::new(scenario.fleet.clone(), clock.clone(), vault.clone(), scenario.first_eui, &vec![Behaviour::Normal; devices]);
    let lns = SimLns::start(Arc::new(fleet), "127.0.0.1:0".parse()?, TOKEN).await?;
    let network = lns.instance_input(TOKEN);
    let objects = provision_objects(&store, &vault, clock.now_unix_ms(), &scenario, &provisioned, vec![network])?;
    let template = store.get::<Campaign>(&objects.campaign_id)?.expect("the provisioned campaign");
    let now = chrono::DateTime::from_timestamp_millis(clock.now_unix_ms() as i64).unwrap_or_default();
    let ctx = InputContext { store: &store, vault: &vault, now };
    let mut ids = Vec::new();
    for (g, group) in objects.groups.iter().enumerate() {
        let members = provisioned.iter().enumerate().filter(|(i, _)| group_of(&scenario, *i) == *group).map(|(_, d)| d.dev_eui).collect();
        let set = DeviceSet::from_input(DeviceSetInput { name: format!("group {g}"), description: String::new(), devices: members }, None, &ctx)?;
        store.put(&set)?;
        let region = Region::from_input(RegionInput { name: format!("region {g}"), description: String::new(), multicast_groups: vec![*group] }, None, &ctx)?;
        store.put(&region)?;
        let mut campaign = template.clone();
        campaign.id = store.new_id();
        campaign.name = format!("campaign {g}");
        campaign.device_sets = vec![set.id.clone()];
        campaign.regions = vec![region.id.clone()];
        store.put(&campaign)?;
        ids.push(campaign.id);
    }
    store.flush()?;
    lns.post_uplinks_to(&format!("http://{}/backends/{}/uplink", core_host.addr, objects.backend_instance));
    let consuming = tokio::spawn(core.clone().consume(store.clone(), vault.clone(), "bench-core".into(), std::future::pending()));
    let mut running = Vec::new();
    for n in 1..=agents {
        let id = format!("agent-{n}");
        let agent_host = host(&dir.path().join(&id), clock.clone(), speed, None).await?;
        let mut config = agent::AgentConfig::new(id, kafka.clone());
        config.group = "bench-agents".into();
        config.cluster_key = Some(cluster.clone());
        running.push((tokio::spawn(agent::run(agent_host.state.clone(), config, std::future::pending())), agent_host));
    }
    core.await_agents(agents, Duration::MAX).await;
    println!("{campaigns} campaigns × {per_campaign} devices on {agents} agents, broker {brokers}, clock ×{speed}, uplinks every {uplink_period} s ({:.0} a real second)", devices as f64 * speed / uplink_period as f64);
    let started = Instant::now();
    for id in &ids {
        core.start(&store, &vault, id, now).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(3 * 3600);
    let (mut said, mut taken_then, mut peak) = (Instant::now(), 0usize, 0f64);
    loop {
        let open = ids.iter().filter(|id| store.get::<Campaign>(id).ok().flatten().is_some_and(|c| c.status == CampaignStatus::Running)).count();
        if open == 0 || Instant::now() > deadline {
            break;
        }
        // A line every 10 s: where the campaigns are, as the core's API has them.
        if said.elapsed() >= Duration::from_secs(10) {
            let reported: Vec<serde_json::Value> = ids.iter().filter_map(|id| store.get::<rmc_core::RemoteCampaign>(id).ok().flatten()?.campaign).collect();
            let sum = |field: &str| reported.iter().filter_map(|m| m[field].as_u64()).sum::<u64>();
            let mut stages: Vec<String> = reported.iter().filter(|m| m["campaignStatus"] == "RUNNING").filter_map(|m| m["stage"]["stageName"].as_str().map(String::from)).collect();
            stages.sort();
            stages.dedup();
            let taken = core.progress_lags().len();
            let rate = (taken - taken_then) as f64 / said.elapsed().as_secs_f64().max(1.0);
            (taken_then, peak) = (taken, peak.max(rate));
            println!(
                "{:>6.0} s (simulated {:.0} min): {open} campaigns running, {} devices succeeded, {} fragments sent, stages now {stages:?}; {taken} progress messages ({:.0}/s)",
                started.elapsed().as_secs_f64(),
                started.elapsed().as_secs_f64() * speed / 60.0,
                sum("devicesSucceeded"),
                sum("fragmentsSent"),
                taken as f64 / started.elapsed().as_secs_f64()
            );
            said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let succeeded = ids.iter().filter(|id| store.get::<Campaign>(id).ok().flatten().is_some_and(|c| c.status == CampaignStatus::Succeeded)).count();
    let exact = provisioned.iter().filter(|d| lns.fleet.received_file(d.dev_eui).as_deref() == Some(objects.image.as_slice())).count();
    let mut lags = core.progress_lags();
    lags.sort_unstable();
    println!("campaigns succeeded: {succeeded} of {campaigns}; devices holding the exact file: {exact} of {devices}");
    // Why the others ended as they did (the first few).
    for id in ids.iter().filter(|id| store.get::<Campaign>(id).ok().flatten().is_some_and(|c| c.status != CampaignStatus::Succeeded)).take(3) {
        let said = store.get::<rmc_core::RemoteCampaign>(id).ok().flatten().and_then(|r| r.campaign).map(|m| format!("{} {}", m["campaignStatus"], m["error"]["text"])).unwrap_or_default();
        println!("  campaign {id}: {said}");
    }
    println!("wall time: {elapsed:.1} s (simulated {:.0} min)", elapsed * speed / 60.0);
    println!("progress messages taken by the core: {} ({:.0} per second on average, {peak:.0} per second at the busiest 10 s)", lags.len(), lags.len() as f64 / elapsed);
    println!("progress lag, agent to the core's store (API): p50 {} ms, p99 {} ms, max {} ms", percentile(&lags, 0.5), percentile(&lags, 0.99), lags.last().copied().unwrap_or(0));
    for (task, agent_host) in running {
        task.abort();
        agent_host.stop().await;
    }
    consuming.abort();
    core_host.stop().await;
    Ok(())
}
