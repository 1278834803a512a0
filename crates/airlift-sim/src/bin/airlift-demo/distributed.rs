//! `airlift-demo --kafka HOST:PORT --agents N --kill-agent K`: the
//! distributed mode in one process. Our core and N agents talk over the
//! given broker; the simulated network server is in front of the fleet and
//! posts uplinks to the core; the clock runs 300 times faster than real
//! time. Agent K is dropped while fragments go out (its tasks and host
//! gone at once, silent on the bus) and the campaign finishes on another.

use crate::DemoArgs;
use airlift::clock::{Clock, ScaledClock, SystemClock};
use airlift::distributed::{agent, bus, rmc_core};
use airlift::model::Campaign;
use airlift::server::{Server, ServerConfig};
use airlift_sim::fleet::{Behaviour, SimFleet};
use airlift_sim::lns::SimLns;
use airlift_sim::scenario::{provision_objects, ScenarioConfig};
use anyhow::Context;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SPEED: f64 = 300.0;
const NETWORK_TOKEN: &str = "demo-network-token";

async fn host(dir: &std::path::Path, clock: Arc<dyn Clock>, remote: Option<Arc<rmc_core::Core>>) -> anyhow::Result<Server> {
    let mut config = ServerConfig::new(dir.to_path_buf());
    config.bind = "127.0.0.1:0".parse()?;
    config.clock = clock;
    config.uplink_window = airlift::api::UplinkWindow::for_clock_speed(SPEED);
    config.remote = remote;
    Ok(Server::start(config).await.context("starting a host")?)
}

pub async fn run(args: &DemoArgs, brokers: &str) -> anyhow::Result<()> {
    anyhow::ensure!((1..=16).contains(&args.agents), "--agents must be 1..=16");
    anyhow::ensure!(args.kill_agent.is_none_or(|k| (1..=args.agents).contains(&k)), "--kill-agent names one of the agents, 1..={}", args.agents);
    anyhow::ensure!(args.kill_agent.is_none() || args.agents > 1, "killing the only agent leaves none to finish the campaign");
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    let dir = tempfile::tempdir()?;
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(SystemClock.now_unix_ms(), SPEED));
    let kafka = bus::KafkaSettings::new(brokers);
    kafka.create_topics(3).await.context("creating the topics")?;
    let cluster = Arc::new(airlift::keys::Vault::new(rand::random()));

    // The core, with the fleet's objects, and the network in front of it.
    let mut core = rmc_core::Core::new(kafka.clone(), cluster.clone())?;
    core.agent_timeout = Duration::from_secs(3);
    let core = Arc::new(core);
    let core_host = host(&dir.path().join("core"), clock.clone(), Some(core.clone())).await?;
    let mut scenario = ScenarioConfig::new(args.devices);
    scenario.fleet.seed = args.seed;
    scenario.fleet.loss = args.loss;
    scenario.fleet.uplink_period_s = 30;
    scenario.file_size = args.file_size;
    scenario.library = args.library.clone();
    let (fleet, devices) = SimFleet::new(scenario.fleet.clone(), clock.clone(), core_host.state.vault.clone(), scenario.first_eui, &vec![Behaviour::Normal; args.devices]);
    let lns = SimLns::start(Arc::new(fleet), "127.0.0.1:0".parse()?, NETWORK_TOKEN).await?;
    let network = lns.instance_input(NETWORK_TOKEN);
    let objects = provision_objects(&core_host.state.store, &core_host.state.vault, clock.now_unix_ms(), &scenario, &devices, vec![network])?;
    core_host.state.store.flush()?;
    lns.post_uplinks_to(&format!("http://{}/backends/{}/uplink", core_host.addr, objects.backend_instance));
    let (stop_core, core_stopped) = tokio::sync::oneshot::channel::<()>();
    let consuming = tokio::spawn(core.clone().consume(core_host.state.store.clone(), core_host.state.vault.clone(), "airlift-demo-core".into(), async move {
        let _ = core_stopped.await;
    }));
    say(format!("core on http://{} with {} devices; broker {brokers}", core_host.addr, args.devices));

    // The agents.
    let mut agents = Vec::new();
    for n in 1..=args.agents {
        let id = format!("agent-{n}");
        let host = host(&dir.path().join(&id), clock.clone(), None).await?;
        let mut config = agent::AgentConfig::new(id.clone(), kafka.clone());
        config.group = "airlift-demo-agents".into();
        config.cluster_key = Some(cluster.clone());
        config.progress_every = Duration::from_millis(200);
        config.metrics_every = Duration::from_millis(500);
        let task = tokio::spawn(agent::run(host.state.clone(), config, std::future::pending()));
        agents.push(Some((id, host, task)));
    }
    anyhow::ensure!(core.await_agents(args.agents, Duration::from_secs(60)).await, "only {:?} of the agents were heard on the broker", core.live_agents());
    let now = chrono::DateTime::from_timestamp_millis(clock.now_unix_ms() as i64).unwrap_or_default();
    let first_agent = core.start(&core_host.state.store, &core_host.state.vault, &objects.campaign_id, now).await?;
    say(format!("campaign {} sent to {first_agent}", objects.campaign_id));

    // Progress as the core stores it; the kill when fragments go out.
    let (mut last_line, mut killed) = (String::new(), None::<String>);
    let until = Instant::now() + Duration::from_secs(30 * 60);
    let last = loop {
        anyhow::ensure!(Instant::now() < until, "the campaign did not end within 30 minutes");
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Some(remote) = core_host.state.store.get::<rmc_core::RemoteCampaign>(&objects.campaign_id)? else { continue };
        let Some(msg) = remote.campaign.clone() else { continue };
        let line = format!("[{}] {} {} % — {} of {} devices succeeded, {} fragments sent", msg["instanceId"].as_str().unwrap_or("?"), msg["stage"]["stageName"].as_str().unwrap_or(""), msg["stage"]["stageProgress"], msg["devicesSucceeded"], msg["devicesTotal"], msg["fragmentsSent"]);
        if line != last_line {
            say(line.clone());
            last_line = line;
        }
        if let (Some(k), None) = (args.kill_agent, &killed) {
            // Once fragments went out (the fragment stage itself may pass
            // between two progress messages at this speed).
            if msg["campaignStatus"] == "RUNNING" && msg["fragmentsSent"].as_u64() > Some(0) {
                if let Some((id, host, task)) = agents[k - 1].take() {
                    task.abort();
                    drop(host);
                    say(format!("{id} killed"));
                    killed = Some(id);
                }
            }
        }
        let ended = msg["campaignStatus"] != "RUNNING";
        let by_survivor = killed.as_deref().is_none_or(|k| msg["instanceId"].as_str() != Some(k));
        if ended && by_survivor {
            break msg;
        }
    };
    let exact = devices.iter().filter(|d| lns.fleet.received_file(d.dev_eui).as_deref() == Some(objects.image.as_slice())).count();
    let campaign = core_host.state.store.get::<Campaign>(&objects.campaign_id)?.context("campaign vanished")?;
    let summary: Value = json!({
        "campaign_status": last["campaignStatus"],
        "stored_status": campaign.status,
        "devices_total": args.devices,
        "devices_holding_exact_file": exact,
        "first_agent": first_agent,
        "killed_agent": killed,
        "finished_on": last["instanceId"],
        "fragments_sent": last["fragmentsSent"],
        "multicast_fcnt_reused": lns.fcnt_reused(),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{}: {exact} of {} devices hold the exact image; started on {first_agent}{}, finished on {}; multicast frame counters reused: {}",
            summary["campaign_status"].as_str().unwrap_or("?"),
            args.devices,
            killed.as_ref().map(|k| format!(", {k} killed mid-campaign")).unwrap_or_default(),
            summary["finished_on"].as_str().unwrap_or("?"),
            lns.fcnt_reused()
        );
    }
    for (_, host, task) in agents.into_iter().flatten() {
        task.abort();
        host.stop().await;
    }
    let _ = stop_core.send(());
    consuming.await??;
    core_host.stop().await;
    Ok(())
}
