//! The distributed mode against a real Kafka-protocol broker (tansu, run
//! on 127.0.0.1 with a free port; `.ci/run` installs it): a plain Kafka
//! producer stands in for a third-party RMC core and sends seed 002's own
//! ADD example; our agent runs it against the ThingPark LRC peer.

mod common;

use airlift::clock::{Clock, ScaledClock, SystemClock};
use airlift::distributed::{agent, bus, seed};
use airlift::model::{BackendInstance, Eui, MulticastGroup};
use airlift::server::{Server, ServerConfig};
use airlift::sim::fleet::{Behaviour, FleetConfig, GroupSessionKeys, SimFleet};
use airlift::sim::listen::Listen;
use airlift::sim::thingpark::ThingParkPeer;
use common::{free_port, TestPki};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A tansu broker with in-memory storage on 127.0.0.1; killed on drop.
struct Broker {
    child: Child,
    addr: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker binary: `$AIRLIFT_TANSU`, else the one `.ci/run` installs,
/// else `tansu` on the PATH.
fn tansu() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("AIRLIFT_TANSU") {
        return path.into();
    }
    let cached = std::path::Path::new(&std::env::var("HOME").unwrap_or_default()).join(".cache/airlift/tools/bin/tansu");
    if cached.exists() {
        return cached;
    }
    "tansu".into()
}

async fn broker() -> Broker {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(tansu())
        .args(["broker", "--kafka-cluster-id", "airlift-test", "--kafka-listener-url", &format!("tcp://{addr}"), "--kafka-advertised-listener-url", &format!("tcp://{addr}"), "--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the tansu broker is installed (.ci/run installs it: cargo install tansu --features dynostore)");
    let until = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(Instant::now() < until, "tansu did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Broker { child, addr }
}

const SPEED: f64 = 20.0;
const AS_ID: &str = "TWA_1100000000.1.AS";
const AS_KEY: &str = "82-5b-6c-8f-22-a8-10-76-67-c3-41-29-00-34-bf-6f";

fn hex16(text: &str) -> [u8; 16] {
    hex::decode(text).unwrap().try_into().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_cores_seed_add_runs_on_our_agent_through_the_lrc_it_names() {
    let broker = broker().await;
    let mut kafka = bus::KafkaSettings::new(broker.addr.clone());
    kafka.topics = bus::Topics::default();
    kafka.create_topics(3).await.unwrap();

    // The agent: a host on a sped-up clock, and the fleet of the seed's
    // example behind a ThingPark LRC that answers as dev1.thingpark.com.
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(SystemClock.now_unix_ms(), SPEED));
    let mut config = ServerConfig::new(dir.path().to_path_buf());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.clock = clock.clone();
    config.uplink_window = airlift::api::UplinkWindow::for_clock_speed(SPEED);
    config.auth = Some(airlift::api::Auth::with_tokens(&[("test", airlift::api::Role::Admin, common::TOKEN)]));
    let server = Server::start(config).await.unwrap();
    let fleet_config = FleetConfig { uplink_period_s: 10, ..FleetConfig::default() };
    let (fleet, _) = SimFleet::new(fleet_config, clock.clone(), server.state.vault.clone(), 0x0018_b200_0000_0001, &[Behaviour::Normal; 2]);
    // The keys the ADD gives: device 1 its McKEKey, device 2 its GenAppKey.
    fleet.set_keys(Eui(0x0018_b200_0000_0001), rand::random(), Some(hex16("2b7e151628aed216abf7158809cf4f00")));
    fleet.set_keys(Eui(0x0018_b200_0000_0002), hex16("2b7e151628aed216abf7158809cf4f00"), None);
    let fleet = Arc::new(fleet);
    let pki = TestPki::for_names(&["dev1.thingpark.com"]);
    let lrc = ThingParkPeer::start(fleet.clone(), Listen::loopback_tls(pki.server), AS_ID, AS_KEY).await.unwrap();
    let lrc_addr: std::net::SocketAddr = lrc.url().trim_start_matches("https://").parse().unwrap();
    let mut agent_config = agent::AgentConfig::new("agent-1", kafka.clone());
    agent_config.progress_every = Duration::from_millis(200);
    agent_config.metrics_every = Duration::from_millis(500);
    agent_config.settings.lrc_transport.ca_certificates_pem = Some(pki.ca_pem.clone());
    agent_config.settings.lrc_transport.resolve.insert("dev1.thingpark.com".into(), lrc_addr);
    let (stop_agent, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(agent::run(server.state.clone(), agent_config, async move {
        let _ = stopped.await;
    }));

    // A plain consumer reads what the agent publishes, from the start.
    let core: StreamConsumer = kafka.consumer("third-party-core").unwrap();
    core.subscribe(&["RMC.AGENT", "RMC.METRIC"]).unwrap();

    // The third-party core's ADD: the seed's example, syntax mended.
    let add = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/seed-002/add.json")).unwrap();
    let producer = kafka.producer().unwrap();
    bus::publish(&producer, "RMC.CONFIG", "123", &add).await.unwrap();

    // What the operator does in ThingPark: the groups' multicast devices,
    // and the uplink route to the agent.
    let until = Instant::now() + Duration::from_secs(60);
    let instance = loop {
        if let Some(i) = server.state.store.list::<BackendInstance>(false).unwrap().into_iter().next() {
            break i;
        }
        assert!(Instant::now() < until, "the agent did not take the ADD");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for group in server.state.store.list::<MulticastGroup>(false).unwrap() {
        lrc.provision_multicast_device(group.dev_eui, GroupSessionKeys::of(&group, &server.state.vault).unwrap());
    }
    lrc.post_uplinks_to(&format!("http://{}/backends/{}/uplink", server.addr, instance.id));
    assert_eq!(instance.settings["url"], "https://dev1.thingpark.com", "the lrc list's URL");

    // Progress until the campaign ends, and metrics.
    let mut progress: Vec<(String, Value)> = Vec::new();
    let mut metrics: Vec<Value> = Vec::new();
    let until = Instant::now() + Duration::from_secs(120);
    let ended = loop {
        assert!(Instant::now() < until, "no final progress; {} messages: {:?}", progress.len(), progress.last());
        let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), core.recv()).await else { continue };
        let value: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_else(|e| panic!("not JSON on {}: {e}", m.topic()));
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
        if m.topic() == "RMC.METRIC" {
            metrics.push(value);
            continue;
        }
        let done = value.get("deveui").is_none() && value["campaignStatus"] != "RUNNING";
        progress.push((key, value.clone()));
        if done && !metrics.is_empty() {
            break value;
        }
    };
    let _ = stop_agent.send(());
    running.await.unwrap().unwrap();

    // Every progress message has the seed's required fields and types;
    // device messages are keyed by DevEUI, the others by the campaign.
    assert!(progress.len() >= 3, "{progress:?}");
    for (key, msg) in &progress {
        for field in seed::PROGRESS_REQUIRED {
            assert!(msg.get(field).is_some(), "{field} missing: {msg}");
        }
        assert_eq!(msg["version"], seed::PROGRESS_VERSION);
        assert_eq!(msg["campaignId"], 123, "the seed's campaignId as it came: {msg}");
        assert!(msg["campaignStagesCount"].is_u64() && msg["campaignStagesCompleted"].is_u64(), "{msg}");
        assert!(["RUNNING", "COMPLETED", "ERROR", "STOPPED"].contains(&msg["campaignStatus"].as_str().unwrap_or("")), "{msg}");
        if let Some(stage) = msg.get("stage") {
            for field in ["stageId", "stageName", "stageProgress", "stageOperationsTotal", "stageOperationsCompleted", "stageStatus"] {
                assert!(stage.get(field).is_some(), "stage.{field} missing: {msg}");
            }
        }
        match msg.get("deveui") {
            Some(eui) => {
                assert_eq!(key, eui.as_str().unwrap(), "a device message is keyed by its DevEUI");
                assert!(msg["deviceState"]["deviceStatus"].is_string(), "{msg}");
            }
            None => assert_eq!(key, "123", "a campaign message is keyed by the campaign"),
        }
        if msg["campaignStatus"] == "ERROR" && msg.get("deveui").is_none() {
            assert!(msg["error"]["text"].is_string() && msg["error"]["source"].is_string(), "{msg}");
        }
    }
    let devices: std::collections::BTreeSet<&str> = progress.iter().filter_map(|(_, m)| m["deveui"].as_str()).collect();
    assert_eq!(devices, ["0018b20000000001", "0018b20000000002"].into(), "both devices reported");
    // The LRC took our downlinks, signed with the ADD's AS key.
    let (unicast, _) = lrc.downlinks();
    assert!(unicast > 0, "downlinks through the LRC");
    assert!(lrc.refused().get(&401).is_none(), "no request refused for its token");
    // Metrics: the seed's fields.
    let last = metrics.last().unwrap();
    assert_eq!(last["instanceId"], "agent-1");
    assert_eq!(last["version"], seed::METRICS_VERSION);
    assert!(last["uplinksAbs"].is_u64() && last["downlinksAbs"].as_u64() > Some(0), "{last}");
    eprintln!("final progress: {ended}");
    server.stop().await;
}
