//! The distributed mode against a real Kafka-protocol broker (tansu, run
//! on 127.0.0.1 with a free port; `.ci/run` installs it): a plain Kafka
//! producer stands in for a third-party RMC core and sends seed 002's own
//! ADD example; our agent runs it against the ThingPark LRC peer.

mod common;

use airlift::clock::{Clock, ScaledClock, SystemClock};
use airlift::distributed::{agent, bus, seed};
use airlift::model::{BackendInstance, Eui, MulticastGroup};
use airlift::server::{Server, ServerConfig};
use airlift_sim::fleet::{Behaviour, FleetConfig, GroupSessionKeys, SimFleet};
use airlift_sim::listen::Listen;
use airlift_sim::thingpark::ThingParkPeer;
use common::{free_port, TestPki};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::Value;
use std::collections::BTreeSet;
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

/// The broker binary: `$AIRLIFT_TANSU`, else the one
/// `scripts/test-deps.sh` installs, else `tansu` on the PATH.
fn tansu() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("AIRLIFT_TANSU") {
        return path.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME").map(std::path::PathBuf::from).unwrap_or_else(|| std::path::Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    let cached = cache.join("airlift/tools/bin/tansu");
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
        .expect("the tansu broker is installed (bash scripts/test-deps.sh)");
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

/// An agent under test: a host on a sped-up clock, the fleet of the
/// seed's ADD example (device 1 with its McKEKey, device 2 with its
/// GenAppKey) behind a ThingPark LRC that answers as dev1.thingpark.com,
/// and the agent's task.
struct TestAgent {
    server: Server,
    lrc: ThingParkPeer,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: tokio::task::JoinHandle<Result<(), agent::AgentError>>,
    _dir: tempfile::TempDir,
}

impl TestAgent {
    /// An agent in the seed's compatibility mode (keys in clear).
    async fn start(kafka: &bus::KafkaSettings, instance_id: &str) -> Self {
        Self::start_with(kafka, instance_id, |c| c.accept_clear_keys = true).await
    }

    async fn start_with(kafka: &bus::KafkaSettings, instance_id: &str, configure: impl FnOnce(&mut agent::AgentConfig)) -> Self {
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
        fleet.set_keys(Eui(0x0018_b200_0000_0001), rand::random(), Some(hex16("2b7e151628aed216abf7158809cf4f00")));
        fleet.set_keys(Eui(0x0018_b200_0000_0002), hex16("2b7e151628aed216abf7158809cf4f00"), None);
        let pki = TestPki::for_names(&["dev1.thingpark.com"]);
        let lrc = ThingParkPeer::start(Arc::new(fleet), Listen::loopback_tls(pki.server), AS_ID, AS_KEY).await.unwrap();
        let lrc_addr: std::net::SocketAddr = lrc.url().trim_start_matches("https://").parse().unwrap();
        let mut agent_config = agent::AgentConfig::new(instance_id, kafka.clone());
        agent_config.progress_every = Duration::from_millis(200);
        agent_config.metrics_every = Duration::from_millis(500);
        agent_config.settings.lrc_transport.ca_certificates_pem = Some(pki.ca_pem.clone());
        agent_config.settings.lrc_transport.resolve.insert("dev1.thingpark.com".into(), lrc_addr);
        configure(&mut agent_config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(agent::run(server.state.clone(), agent_config, async move {
            let _ = stopped.await;
        }));
        Self { server, lrc, stop: Some(stop), running, _dir: dir }
    }

    /// Once the agent stored the ADD's objects: what the operator does in
    /// ThingPark (the groups' multicast devices) and the uplink route.
    async fn connect_lrc_when_added(&self) -> BackendInstance {
        let until = Instant::now() + Duration::from_secs(60);
        let instance = loop {
            if let Some(i) = self.server.state.store.list::<BackendInstance>(false).unwrap().into_iter().find(|i| i.id.starts_with("rmc-lrc-")) {
                break i;
            }
            assert!(Instant::now() < until, "the agent did not take the ADD");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for group in self.server.state.store.list::<MulticastGroup>(false).unwrap() {
            self.lrc.provision_multicast_device(group.dev_eui, GroupSessionKeys::of(&group, &self.server.state.vault).unwrap());
        }
        self.lrc.post_uplinks_to(&format!("http://{}/backends/{}/uplink", self.server.addr, instance.id));
        instance
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.running).await.unwrap().unwrap();
        self.server.stop().await;
    }
}

fn example(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-002").join(name)).unwrap()
}

/// A broker with the three topics, and its settings.
async fn broker_with_topics() -> (Broker, bus::KafkaSettings) {
    let broker = broker().await;
    let kafka = bus::KafkaSettings::new(broker.addr.clone());
    kafka.create_topics(3).await.unwrap();
    (broker, kafka)
}

/// The first message (key, JSON) on the consumer's topics that `wanted`
/// accepts, within a minute.
async fn first(consumer: &StreamConsumer, what: &str, wanted: impl Fn(&Value) -> bool) -> (String, Value) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < until, "no {what}");
        if let Some((_, key, m)) = next(consumer, Duration::from_secs(5)).await {
            if wanted(&m) {
                return (key, m);
            }
        }
    }
}

/// The next message on the consumer's topics within `limit`: (topic, key, JSON).
async fn next(consumer: &StreamConsumer, limit: Duration) -> Option<(String, String, Value)> {
    let m = tokio::time::timeout(limit, consumer.recv()).await.ok()?.ok()?;
    let value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_else(|e| panic!("not JSON on {}: {e}", m.topic()));
    Some((m.topic().to_string(), String::from_utf8_lossy(m.key().unwrap_or_default()).to_string(), value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_cores_seed_add_runs_on_our_agent_through_the_lrc_it_names() {
    let (_broker, kafka) = broker_with_topics().await;
    let agent = TestAgent::start(&kafka, "agent-1").await;
    // A plain consumer reads what the agent publishes, from the start.
    let core: StreamConsumer = kafka.consumer("third-party-core").unwrap();
    core.subscribe(&["RMC.AGENT", "RMC.METRIC"]).unwrap();
    // The third-party core's ADD: the seed's example, syntax mended.
    let producer = kafka.producer().unwrap();
    bus::publish(&producer, "RMC.CONFIG", "123", &example("add.json")).await.unwrap();
    let instance = agent.connect_lrc_when_added().await;
    assert_eq!(instance.settings["url"], "https://dev1.thingpark.com", "the lrc list's URL");

    // Progress until the campaign ends, and metrics.
    let mut progress: Vec<(String, Value)> = Vec::new();
    let mut metrics: Vec<Value> = Vec::new();
    let until = Instant::now() + Duration::from_secs(120);
    let ended = loop {
        assert!(Instant::now() < until, "no final progress; {} messages: {:?}", progress.len(), progress.last());
        let Some((topic, key, value)) = next(&core, Duration::from_secs(5)).await else { continue };
        if topic == "RMC.METRIC" {
            metrics.push(value);
            continue;
        }
        let done = value.get("deveui").is_none() && value["campaignStatus"] != "RUNNING";
        progress.push((key, value.clone()));
        if done && !metrics.is_empty() {
            break value;
        }
    };

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
    let (unicast, _) = agent.lrc.downlinks();
    assert!(unicast > 0, "downlinks through the LRC; last progress: {ended}");
    assert!(agent.lrc.refused().get(&401).is_none(), "no request refused for its token");
    // Metrics: the seed's fields.
    let last = metrics.last().unwrap();
    assert_eq!(last["instanceId"], "agent-1");
    assert_eq!(last["version"], seed::METRICS_VERSION);
    assert!(last["uplinksAbs"].is_u64() && last["downlinksAbs"].as_u64() > Some(0), "{last}");
    eprintln!("final progress: {ended}");
    agent.stop().await;
}

/// A STOP for a running campaign stops it, and its last progress says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_from_the_core_stops_the_agents_campaign() {
    let (_broker, kafka) = broker_with_topics().await;
    let agent = TestAgent::start(&kafka, "agent-1").await;
    let core: StreamConsumer = kafka.consumer("core").unwrap();
    core.subscribe(&["RMC.AGENT"]).unwrap();
    let producer = kafka.producer().unwrap();
    bus::publish(&producer, "RMC.CONFIG", "123", &example("add.json")).await.unwrap();
    agent.connect_lrc_when_added().await;
    // Running: then the seed's STOP, for this campaign.
    first(&core, "RUNNING progress", |m| m.get("deveui").is_none() && m["campaignStatus"] == "RUNNING").await;
    let mut stop: Value = serde_json::from_slice(&example("stop.json")).unwrap();
    stop["campaignId"] = 123.into();
    bus::publish(&producer, "RMC.CONFIG", "123", stop.to_string().as_bytes()).await.unwrap();
    let (key, stopped) = first(&core, "STOPPED progress", |m| m.get("deveui").is_none() && m["campaignStatus"] == "STOPPED").await;
    assert_eq!((key.as_str(), &stopped["campaignId"]), ("123", &Value::from(123)));
    let run = airlift::engine::run::parts_of(&agent.server.state.store, "rmc-123").unwrap().unwrap();
    assert!(run.iter().all(|p| p.run.status == airlift::engine::RunStatus::Stopped), "stopped on disk");
    agent.stop().await;
}

/// GET is answered with a RESP on RMC.CONFIG carrying the request's msgId
/// and the estimate: the seed's BINARY example, two groups, 1024 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_is_answered_with_a_resp_and_the_estimate() {
    let (_broker, kafka) = broker_with_topics().await;
    let agent = TestAgent::start(&kafka, "agent-1").await;
    let core: StreamConsumer = kafka.consumer("core").unwrap();
    core.subscribe(&["RMC.CONFIG"]).unwrap();
    let producer = kafka.producer().unwrap();
    bus::publish(&producer, "RMC.CONFIG", "12", &example("get-binary.json")).await.unwrap();
    let (key, resp) = first(&core, "RESP", |m| m["action"] == "RESP").await;
    assert_eq!(key, "12", "keyed by msgId");
    assert_eq!((&resp["msgId"], &resp["targetType"], &resp["campaignType"]), (&Value::from(12), &Value::from("CAMPAIGN"), &Value::from("BINARY")), "{resp}");
    assert!(resp.get("error").is_none(), "{resp}");
    assert!(resp["duration"].as_u64() > Some(0), "{resp}");
    assert_eq!(resp["groups"].as_array().map(Vec::len), Some(2), "{resp}");
    agent.stop().await;
}

/// Keys travel sealed with the cluster key: an agent outside the
/// compatibility mode refuses the seed's clear keys (saying why) and runs
/// the same ADD sealed; nothing on the topic shows a key in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_travel_sealed_and_clear_keys_need_the_compatibility_mode() {
    let (_broker, kafka) = broker_with_topics().await;
    let cluster = Arc::new(airlift::keys::Vault::new(rand::random()));
    let key = cluster.clone();
    let agent = TestAgent::start_with(&kafka, "agent-1", move |c| c.cluster_key = Some(key)).await;
    let core: StreamConsumer = kafka.consumer("core").unwrap();
    core.subscribe(&["RMC.AGENT", "RMC.CONFIG"]).unwrap();
    let producer = kafka.producer().unwrap();
    // The seed's clear ADD: refused, naming the mode that would take it.
    bus::publish(&producer, "RMC.CONFIG", "123", &example("add.json")).await.unwrap();
    // The same campaign sealed, as our core sends it (as campaign 124).
    let mut sealed = seed::ConfigMessage::parse(&example("add.json")).unwrap();
    sealed.campaign_id = Some(124.into());
    airlift::distributed::sealing::seal_keys(&mut sealed, &cluster);
    let sealed_bytes = serde_json::to_vec(&sealed).unwrap();
    bus::publish(&producer, "RMC.CONFIG", "124", &sealed_bytes).await.unwrap();
    let clear_keys = ["2b7e151628aed216abf7158809cf4f00", "000102030405060708090a0b0c0d0e0f", "82-5b-6c-8f-22-a8-10-76-67-c3-41-29-00-34-bf-6f"];
    let (mut refused, mut running, mut sealed_seen) = (false, false, false);
    let until = Instant::now() + Duration::from_secs(60);
    while !(refused && running && sealed_seen) {
        assert!(Instant::now() < until, "refused {refused}, running {running}, sealed seen {sealed_seen}");
        let Some((topic, _, m)) = next(&core, Duration::from_secs(5)).await else { continue };
        if topic == "RMC.CONFIG" {
            if m["campaignId"] == 124 {
                let text = m.to_string();
                assert!(clear_keys.iter().all(|k| !text.contains(k)), "a key in clear on the topic: {text}");
                sealed_seen = true;
            }
            continue;
        }
        if m["campaignId"] == 123 && m["campaignStatus"] == "ERROR" {
            assert!(m["error"]["text"].as_str().unwrap_or("").contains("--accept-clear-keys"), "{m}");
            refused = true;
        }
        if m["campaignId"] == 124 && m.get("deveui").is_none() && m["campaignStatus"] == "RUNNING" {
            running = true;
        }
    }
    assert!(agent.server.state.store.get::<airlift::model::Campaign>("rmc-123").unwrap().is_none(), "nothing stored of the refused ADD");
    // What the agent published never holds a key either.
    agent.stop().await;
}

/// An agent of our core: its host (with the bundled plugins or none) on
/// `clock`, and its task.
struct RunningAgent {
    host: Server,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<Result<(), agent::AgentError>>,
    _dir: tempfile::TempDir,
}

impl RunningAgent {
    async fn start(id: &str, bundled: bool, clock: Arc<dyn Clock>, kafka: &bus::KafkaSettings, cluster: &Arc<airlift::keys::Vault>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host = host_at(dir.path(), clock, common::SPEED, bundled, None).await;
        let mut config = agent::AgentConfig::new(id, kafka.clone());
        config.progress_every = Duration::from_millis(200);
        config.metrics_every = Duration::from_millis(300);
        config.cluster_key = Some(cluster.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(agent::run(host.state.clone(), config, async move {
            let _ = stopped.await;
        }));
        Self { host, stop, running, _dir: dir }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.running.await.unwrap().unwrap();
        self.host.stop().await;
    }
}

/// Our core on a data directory: its host (API, store, console) and the
/// task that takes progress and metrics into its store.
struct TestCore {
    core: Arc<airlift::distributed::rmc_core::Core>,
    host: Server,
    stop: tokio::sync::oneshot::Sender<()>,
    consuming: tokio::task::JoinHandle<Result<(), airlift::distributed::rmc_core::CoreError>>,
}

impl TestCore {
    async fn start(dir: &std::path::Path, clock: Arc<dyn Clock>, speed: f64, core: Arc<airlift::distributed::rmc_core::Core>) -> Self {
        let host = host_at(dir, clock, speed, true, Some(core.clone())).await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let consuming = tokio::spawn(core.clone().consume(host.state.store.clone(), host.state.vault.clone(), "airlift-core".into(), async move {
            let _ = stopped.await;
        }));
        Self { core, host, stop, consuming }
    }

    fn api(&self) -> common::Api {
        common::Api { http: reqwest::Client::new(), base: format!("http://{}", self.host.addr) }
    }

    /// Until `n` agents have been heard from (two minutes at most: agent
    /// processes take a while to start).
    async fn wait_for_agents(&self, n: usize) {
        assert!(self.core.await_agents(n, Duration::from_secs(120)).await, "agents heard: {:?}", self.core.live_agents());
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.consuming.await.unwrap().unwrap();
        self.host.stop().await;
    }
}

/// A host for the distributed tests on `clock`: an agent's or, with
/// `remote`, our core's.
async fn host_at(dir: &std::path::Path, clock: Arc<dyn Clock>, speed: f64, load_bundled: bool, remote: Option<Arc<airlift::distributed::rmc_core::Core>>) -> Server {
    let mut config = ServerConfig::new(dir.to_path_buf());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.clock = clock;
    config.uplink_window = airlift::api::UplinkWindow::for_clock_speed(speed);
    config.auth = Some(airlift::api::Auth::with_tokens(&[("test", airlift::api::Role::Admin, common::TOKEN)]));
    config.load_bundled = load_bundled;
    config.remote = remote;
    Server::start(config).await.unwrap()
}

/// Our core and two agents, one of which carries no plugin: the campaign
/// goes to the agent that carries its device library and network, runs to
/// the end on the simulated network server, and the core's API shows its
/// progress and outcome from what the agent published, also after the
/// core restarted mid-campaign. A second campaign over the same devices is
/// refused while the first runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_core_sends_a_campaign_to_a_capable_agent_and_shows_its_progress() {
    const FAST: f64 = common::SPEED;
    let (_broker, kafka) = broker_with_topics().await;
    let cluster = Arc::new(airlift::keys::Vault::new(rand::random()));
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(SystemClock.now_unix_ms(), FAST));
    let core_dir = tempfile::tempdir().unwrap();
    let mut scenario = airlift_sim::scenario::ScenarioConfig::new(6);
    scenario.file_size = 2_000;
    let sim = common::SimSetup::provision(core_dir.path(), clock.clone(), &scenario, common::NETWORK_TOKEN).await.unwrap();
    let core = Arc::new(airlift::distributed::rmc_core::Core::new(kafka.clone(), cluster.clone()).unwrap());
    let core_host = TestCore::start(core_dir.path(), clock.clone(), FAST, core.clone()).await;
    // Two agents: agent-1 carries no plugin at all.
    let mut agents = Vec::new();
    for (id, bundled) in [("agent-1", false), ("agent-2", true)] {
        agents.push(RunningAgent::start(id, bundled, clock.clone(), &kafka, &cluster).await);
    }
    let api = core_host.api();
    let campaign = sim.objects.campaign_id.clone();
    core_host.wait_for_agents(2).await;
    // The duration, estimated by the capable agent through GET and RESP.
    let estimate = api.call(reqwest::Method::GET, &format!("/api/campaigns/{campaign}/duration?loss=0.2")).await;
    assert_eq!((&estimate["action"], &estimate["instanceId"]), (&Value::from("RESP"), &Value::from("agent-2")), "{estimate}");
    assert!(estimate["duration"].as_u64() > Some(0) && estimate["groups"].as_array().map(Vec::len) == Some(1), "{estimate}");
    assert_eq!(estimate["assumptions"]["loss"], 0.2);
    // Started once the core has heard from the agents (503 before).
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.http.post(format!("{}/api/campaigns/{campaign}/start", api.base)).bearer_auth(common::TOKEN).send().await.unwrap();
        if r.status().is_success() {
            break;
        }
        assert_eq!(r.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE, "{}", r.text().await.unwrap());
        assert!(Instant::now() < until, "no capable agent: {}", r.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let agent_2 = &agents[1].host;
    sim.lns.post_uplinks_to(&format!("http://{}/backends/{}/uplink", agent_2.addr, sim.objects.backend_instance));
    // Another campaign over the same devices waits its turn: 409.
    let mut second = api.call(reqwest::Method::GET, &format!("/api/campaigns/{campaign}")).await;
    for shown in ["id", "created", "started", "lastChanged", "status", "archived"] {
        second.as_object_mut().unwrap().remove(shown);
    }
    second["name"] = "same devices".into();
    let second = api.send_json(reqwest::Method::POST, "/api/campaigns", second).await["id"].as_str().unwrap().to_string();
    let refused = api.http.post(format!("{}/api/campaigns/{second}/start", api.base)).bearer_auth(common::TOKEN).send().await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::CONFLICT, "{}", refused.text().await.unwrap());

    // The core restarts while the agent works: it reads on from the
    // progress it had committed, and its new API shows the end.
    api.wait_for(&campaign, |p| p["campaignStagesCompleted"].as_u64() >= Some(1)).await;
    core_host.stop().await;
    let core = Arc::new(airlift::distributed::rmc_core::Core::new(kafka.clone(), cluster.clone()).unwrap());
    let core_host = TestCore::start(core_dir.path(), clock.clone(), FAST, core.clone()).await;
    let api = core_host.api();
    let done = api.wait_for(&campaign, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    assert_eq!(done["instanceId"], "agent-2", "the agent that carries the library ran it");
    for d in &sim.devices {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui).as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
    // Device progress is keyed by DevEUI and the campaign's by its id, so
    // they travel on different partitions: the devices' last messages may
    // land after the campaign's.
    let all_completed = |d: &serde_json::Value| d.as_array().is_some_and(|d| d.len() == 6 && d.iter().all(|d| d["deviceState"]["deviceStatus"] == "COMPLETED"));
    api.wait_until(&format!("/api/campaigns/{campaign}/devices"), all_completed).await;
    let stored = api.call(reqwest::Method::GET, &format!("/api/campaigns/{campaign}")).await;
    assert_eq!(stored["status"], "SUCCEEDED", "{stored}");
    let local = airlift::distributed::translate::local_campaign_id(&campaign);
    assert!(agents[1].host.state.store.get::<airlift::model::Campaign>(&local).unwrap().is_some(), "agent-2 ran it");
    assert!(agents[0].host.state.store.get::<airlift::model::Campaign>(&local).unwrap().is_none(), "agent-1 never saw it");
    assert!(core_host.host.state.store.get::<airlift::engine::CampaignRun>(&campaign).unwrap().is_none(), "the core ran nothing itself");
    for agent in agents {
        agent.stop().await;
    }
    core_host.stop().await;
}

/// Our core and three agents over a broker, and nine devices in three
/// multicast groups whose network posts uplinks to the core: the agents
/// heard from.
struct ThreeAgents {
    scenario: airlift_sim::scenario::ScenarioConfig,
    sim: common::SimSetup,
    core_host: TestCore,
    agents: Vec<RunningAgent>,
    _core_dir: tempfile::TempDir,
    _broker: Broker,
}

impl ThreeAgents {
    async fn start() -> Self {
        let (broker, kafka) = broker_with_topics().await;
        let cluster = Arc::new(airlift::keys::Vault::new(rand::random()));
        let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(SystemClock.now_unix_ms(), common::SPEED));
        let core_dir = tempfile::tempdir().unwrap();
        let mut scenario = airlift_sim::scenario::ScenarioConfig::new(9);
        scenario.file_size = 2_000;
        scenario.groups = 3;
        let sim = common::SimSetup::provision(core_dir.path(), clock.clone(), &scenario, common::NETWORK_TOKEN).await.unwrap();
        let core = Arc::new(airlift::distributed::rmc_core::Core::new(kafka.clone(), cluster.clone()).unwrap());
        let core_host = TestCore::start(core_dir.path(), clock.clone(), common::SPEED, core).await;
        let mut agents = Vec::new();
        for id in ["agent-1", "agent-2", "agent-3"] {
            agents.push(RunningAgent::start(id, true, clock.clone(), &kafka, &cluster).await);
        }
        sim.lns.post_uplinks_to(&format!("{}/backends/{}/uplink", core_host.api().base, sim.objects.backend_instance));
        core_host.wait_for_agents(3).await;
        Self { scenario, sim, core_host, agents, _core_dir: core_dir, _broker: broker }
    }

    async fn stop(self) {
        for agent in self.agents {
            agent.stop().await;
        }
        self.core_host.stop().await;
    }
}

/// Three campaigns on three agents: each goes to the least loaded one, the
/// network posts its uplinks to the core, which forwards them, and every
/// device of every campaign gets the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_campaigns_spread_over_three_agents_with_uplinks_through_the_core() {
    let three = ThreeAgents::start().await;
    let (scenario, sim) = (&three.scenario, &three.sim);
    let api = three.core_host.api();
    // One campaign per multicast group, each over that group's devices.
    let mut template = api.call(reqwest::Method::GET, &format!("/api/campaigns/{}", sim.objects.campaign_id)).await;
    for shown in ["id", "created", "started", "lastChanged", "status", "archived"] {
        template.as_object_mut().unwrap().remove(shown);
    }
    let mut campaigns = Vec::new();
    for (g, group) in sim.objects.groups.iter().enumerate() {
        let members: Vec<String> = sim.devices.iter().enumerate().filter(|(i, _)| airlift_sim::scenario::group_of(scenario, *i) == *group).map(|(_, d)| d.dev_eui.to_string()).collect();
        let set = api.send_json(reqwest::Method::POST, "/api/device-sets", serde_json::json!({"name": format!("group {g}"), "devices": members})).await["id"].as_str().unwrap().to_string();
        let region = api.send_json(reqwest::Method::POST, "/api/regions", serde_json::json!({"name": format!("region {g}"), "multicastGroups": [group.to_string()]})).await["id"].as_str().unwrap().to_string();
        let mut campaign = template.clone();
        campaign["name"] = format!("campaign {g}").into();
        campaign["deviceSets"] = serde_json::json!([set]);
        campaign["regions"] = serde_json::json!([region]);
        campaigns.push(api.send_json(reqwest::Method::POST, "/api/campaigns", campaign).await["id"].as_str().unwrap().to_string());
    }
    // The operator sees the agents, what they carry and what they run.
    let seen = api.call(reqwest::Method::GET, "/api/agents").await;
    assert_eq!(seen["mode"], "core", "{seen}");
    let agents_seen = seen["agents"].as_array().unwrap();
    let live: BTreeSet<&str> = agents_seen.iter().filter(|a| a["live"] == true).filter_map(|a| a["instanceId"].as_str()).collect();
    assert_eq!(live, ["agent-1", "agent-2", "agent-3"].into(), "{seen}");
    assert!(agents_seen.iter().all(|a| a["plugins"].as_array().unwrap().iter().any(|p| p == "lorawan-v1") && a["runningCampaigns"].as_array().is_some()), "{seen}");
    for campaign in &campaigns {
        api.call(reqwest::Method::POST, &format!("/api/campaigns/{campaign}/start")).await;
    }
    let mut ran_on = BTreeSet::new();
    for campaign in &campaigns {
        let done = api.wait_for(campaign, |p| p["campaignStatus"] != "RUNNING").await;
        assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
        ran_on.insert(done["instanceId"].as_str().unwrap().to_string());
    }
    assert_eq!(ran_on.len(), 3, "one campaign per agent: {ran_on:?}");
    for d in &sim.devices {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui).as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
    three.stop().await;
}

/// One campaign of three multicast groups on three agents: each group's
/// run goes to an agent of its own, the core's API shows them as one
/// campaign (its devices, its groups, its outcome), and every device gets
/// the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_campaign_of_three_groups_runs_across_three_agents() {
    let three = ThreeAgents::start().await;
    let sim = &three.sim;
    let api = three.core_host.api();
    let campaign = &sim.objects.campaign_id;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{campaign}/start")).await;
    let done = api.wait_for(campaign, |p| p["campaignStatus"] != "RUNNING").await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    assert_eq!(done["campaignId"], campaign.as_str(), "{done}");
    assert_eq!((done["devicesTotal"].as_u64(), done["devicesSucceeded"].as_u64()), (Some(9), Some(9)), "{done}");
    let ran_on: BTreeSet<&str> = done["instanceIds"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(ran_on.len(), 3, "one group per agent: {done}");
    let groups: BTreeSet<&str> = done["groups"].as_array().unwrap().iter().filter_map(|g| g["mcGroupEui"].as_str()).collect();
    let provisioned: Vec<String> = sim.objects.groups.iter().map(|g| g.to_string()).collect();
    assert_eq!(groups, provisioned.iter().map(String::as_str).collect(), "each group ran: {done}");
    let devices = api.call(reqwest::Method::GET, &format!("/api/campaigns/{campaign}/devices")).await;
    assert_eq!(devices.as_array().map(Vec::len), Some(9), "every device's progress: {devices}");
    let stored = api.wait_until(&format!("/api/campaigns/{campaign}"), |c| c["status"] != "RUNNING").await;
    assert_eq!(stored["status"], "SUCCEEDED", "{stored}");
    for d in &sim.devices {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui).as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
    three.stop().await;
}

/// An agent process killed with SIGKILL mid-campaign: the core notices
/// from its missing metrics and the campaign goes on on another agent
/// process from the run state the progress carried. No device redoes a
/// finished stage, no multicast frame counter is used twice, every device
/// gets the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_with_sigkill_mid_campaign_loses_nothing() {
    let (_broker, kafka) = broker_with_topics().await;
    let cluster_hex = hex::encode(rand::random::<[u8; 32]>());
    let cluster = Arc::new(airlift::keys::Vault::new(hex::decode(&cluster_hex).unwrap().try_into().unwrap()));
    let origin = SystemClock.now_unix_ms();
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(origin, common::SPEED));
    let core_dir = tempfile::tempdir().unwrap();
    let mut scenario = airlift_sim::scenario::ScenarioConfig::new(6);
    scenario.file_size = 6_000;
    let sim = common::SimSetup::provision(core_dir.path(), clock.clone(), &scenario, common::NETWORK_TOKEN).await.unwrap();
    let mut core = airlift::distributed::rmc_core::Core::new(kafka.clone(), cluster.clone()).unwrap();
    core.agent_timeout = Duration::from_secs(3);
    let core = Arc::new(core);
    let core_host = TestCore::start(core_dir.path(), clock.clone(), common::SPEED, core.clone()).await;
    // Two agent processes on the test's timeline.
    let agents_dir = tempfile::tempdir().unwrap();
    let key_file = agents_dir.path().join("cluster.key");
    std::fs::write(&key_file, &cluster_hex).unwrap();
    let spawn_agent = |id: &str| {
        let speed = common::SPEED.to_string();
        let origin = origin.to_string();
        let bind = format!("127.0.0.1:{}", free_port());
        Command::new(env!("CARGO_BIN_EXE_airlift"))
            .arg("--data-dir")
            .arg(agents_dir.path().join(id))
            .args(["agent", "--instance-id", id, "--kafka", &kafka.brokers, "--bind", &bind, "--time-speed", &speed, "--time-origin", &origin])
            .arg("--cluster-key-file")
            .arg(&key_file)
            .env("AIRLIFT_API_TOKENS", format!("test:admin:{}", common::TOKEN))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning airlift agent")
    };
    let mut first = spawn_agent("agent-1");
    let mut second = spawn_agent("agent-2");
    let api = core_host.api();
    sim.lns.post_uplinks_to(&format!("{}/backends/{}/uplink", api.base, sim.objects.backend_instance));
    let campaign = sim.objects.campaign_id.clone();
    core_host.wait_for_agents(2).await;
    api.call(reqwest::Method::POST, &format!("/api/campaigns/{campaign}/start")).await;
    // Killed once its devices are set up and fragments go out.
    let seen = api.wait_for(&campaign, |p| p["stage"]["stageName"] == "DataFragment" && p["fragmentsSent"].as_u64() > Some(0)).await;
    let (victim, survivor) = if seen["instanceId"] == "agent-1" { (&mut first, "agent-2") } else { (&mut second, "agent-1") };
    let setups_before = sim.lns.fleet.unicast_requests(200, 0x02);
    assert!(setups_before >= 6, "McGroupSetupReq went to every device before: {setups_before}");
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    // Its fragments went out under a frame counter reservation the core
    // holds: the survivor goes on from there.
    let remote = core_host.host.state.store.get::<airlift::distributed::rmc_core::RemoteCampaign>(&campaign).unwrap().unwrap();
    assert!(remote.fcnt_reserved.get(&sim.group.0.to_string()).is_some_and(|r| *r > 0), "a reservation for the group: {:?}", remote.fcnt_reserved);
    let done = api.wait_for(&campaign, |p| p["campaignStatus"] != "RUNNING" && p["instanceId"] == survivor).await;
    assert_eq!(done["campaignStatus"], "COMPLETED", "{done}");
    for d in &sim.devices {
        assert_eq!(sim.lns.fleet.received_file(d.dev_eui).as_deref(), Some(sim.objects.image.as_slice()), "device {} lacks the exact file", d.dev_eui);
    }
    assert_eq!(sim.lns.fleet.unicast_requests(200, 0x02), setups_before, "no McGroupSetupReq again: that stage was done");
    assert_eq!(sim.lns.fcnt_reused(), 0, "no multicast frame counter used twice");
    for mut agent in [first, second] {
        let _ = agent.kill();
        let _ = agent.wait();
    }
    core_host.stop().await;
}

/// `airlift-demo --kafka … --agents 3 --kill-agent 1`: the distributed run
/// in one process, an agent killed mid-campaign, every device with the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributed_demo_finishes_on_another_agent_after_a_kill() {
    let (broker, _) = broker_with_topics().await;
    let cwd = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(common::demo_binary())
        .args(["--kafka", &broker.addr, "--agents", "3", "--kill-agent", "1", "--devices", "12", "--file-size", "4000", "--json"])
        .env("RUST_LOG", "error")
        .current_dir(cwd.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(summary["campaign_status"], "COMPLETED", "{summary}");
    assert_eq!(summary["stored_status"], "SUCCEEDED", "{summary}");
    assert_eq!(summary["devices_holding_exact_file"], 12, "{summary}");
    assert_eq!(summary["killed_agent"], "agent-1", "{summary}");
    assert_ne!(summary["finished_on"], "agent-1", "{summary}");
    assert_eq!(summary["multicast_fcnt_reused"], 0, "{summary}");
}
