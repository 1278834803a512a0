//! An RMC agent: it takes configuration messages from RMC.CONFIG in a
//! consumer group, runs their campaigns with this host's engine and
//! plugins, and publishes progress on RMC.AGENT and metrics on RMC.METRIC.
//!
//! A configuration message's offset is committed only once what it asked
//! is on disk (the campaign stored and started, or stopped), so an agent
//! killed before that gets the message again, and another agent of the
//! group gets it when this one is gone.

use super::bus::{publish, publish_all, BusError, KafkaSettings, Start};
use super::seed::{self, Action, ConfigMessage, MetricsMessage};
use super::translate::{self, AgentSettings};
use crate::api::AppState;
use crate::clock::{Clock, SystemClock};
use crate::engine::fcnt_ledger::FcntLedger;
use crate::engine::progress;
use crate::engine::run::{parts_of, RunStatus};
use crate::engine::RunOptions;
use crate::model::Object;
use futures_util::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How an agent runs.
#[derive(Clone)]
pub struct AgentConfig {
    /// This agent's name in metrics and progress (`instanceId`).
    pub instance_id: String,
    pub kafka: KafkaSettings,
    /// The consumer group the agents share.
    pub group: String,
    pub settings: AgentSettings,
    /// How often progress is looked at.
    pub progress_every: Duration,
    /// How often metrics are published.
    pub metrics_every: Duration,
    /// The key sealing the keys in configuration messages.
    pub cluster_key: Option<Arc<crate::keys::Vault>>,
    /// Accept keys in clear, as seed 002's messages carry them (the
    /// compatibility mode, for a third-party core).
    pub accept_clear_keys: bool,
}

impl AgentConfig {
    pub fn new(instance_id: impl Into<String>, kafka: KafkaSettings) -> Self {
        Self {
            instance_id: instance_id.into(),
            kafka,
            group: "airlift-agents".into(),
            settings: AgentSettings::default(),
            progress_every: Duration::from_millis(500),
            metrics_every: Duration::from_secs(5),
            cluster_key: None,
            accept_clear_keys: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// What the progress publisher last sent for a campaign, to publish only
/// changes: the campaign message without its time, and each device's
/// record with its run's stage and status (what its message is made of;
/// compared as they are, no message is built for a device that did not
/// change).
#[derive(Default)]
struct Published {
    campaign: String,
    devices: BTreeMap<crate::model::Eui, (crate::engine::DeviceRun, usize, RunStatus)>,
}

/// The campaigns this agent reports on: local id → the seed's campaignId.
type Watched = Arc<Mutex<BTreeMap<String, Value>>>;

/// A campaign taken from an ADD, with the campaignId it came with (a
/// number or a string, given back as it came), so an agent that restarts
/// reports on it again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TakenCampaign {
    pub campaign_id: String,
    pub seed_id: Value,
    pub archived: bool,
}
crate::model::fleet_object!(TakenCampaign, "taken-campaigns", |s| s.campaign_id.clone());

/// Run the agent until `shutdown` resolves.
pub async fn run(state: AppState, config: AgentConfig, shutdown: impl std::future::Future<Output = ()>) -> Result<(), AgentError> {
    let producer = config.kafka.producer()?;
    // Two readers of the configuration topic: in the group all agents
    // share, the messages for any agent (a third-party core's); in this
    // agent's own group, those our core addressed to it. Each message is
    // acted on by exactly one agent.
    let shared: StreamConsumer = config.kafka.consumer(&config.group)?;
    shared.subscribe(&[config.kafka.topics.config.as_str()])?;
    let own: StreamConsumer = config.kafka.consumer(&format!("{}.{}", config.group, config.instance_id))?;
    own.subscribe(&[config.kafka.topics.config.as_str()])?;
    // Uplinks our core forwards to this agent, for the devices of the
    // campaigns it runs, on a topic of its own: made before the agent is
    // heard of, read from where it left off.
    let uplink_topic = config.kafka.topics.uplinks_of(&config.instance_id);
    config.kafka.create(&[&uplink_topic], 1).await?;
    config.kafka.await_topic(&uplink_topic, Duration::from_secs(30)).await?;
    let uplinks: StreamConsumer = config.kafka.consumer_from(&format!("{}.{}.uplinks", config.group, config.instance_id), Start::Earliest)?;
    uplinks.subscribe(&[uplink_topic.as_str()])?;
    // The campaigns taken before a restart that still run (the host
    // resumed them) are reported on again.
    let watched: Watched = Default::default();
    for taken in state.store.list::<TakenCampaign>(false).unwrap_or_default() {
        let running = parts_of(&state.store, &taken.campaign_id).ok().flatten().is_some_and(|parts| parts.iter().any(|p| p.run.status == RunStatus::Running));
        if running {
            watched.lock().unwrap_or_else(|p| p.into_inner()).insert(taken.campaign_id, taken.seed_id);
        }
    }
    // From now on, no multicast frame counter is used before it is on the
    // progress topic.
    let ledger = ProgressLedger { store: state.store.clone(), clock: state.clock.clone(), producer: producer.clone(), topic: config.kafka.topics.progress.clone(), instance_id: config.instance_id.clone() };
    state.runner.engine.set_fcnt_ledger(Arc::new(ledger));
    // Aborted with this future, however it ends (a dropped agent is
    // silent at once).
    let _reporter = AbortOnDrop(tokio::spawn(report_progress(state.clone(), config.clone(), producer.clone(), watched.clone())));
    let _metrics = AbortOnDrop(tokio::spawn(report_metrics(state.clone(), config.clone(), producer.clone(), watched.clone())));
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            received = shared.recv() => take(&state, &config, &producer, &watched, &shared, received, None).await,
            received = own.recv() => take(&state, &config, &producer, &watched, &own, received, Some(&config.instance_id)).await,
            received = uplinks.recv() => take_uplink(&state, &uplinks, received).await,
        }
    };
    result
}

/// The agent's frame counter ledger: a reservation is a multicast group
/// progress message on the progress topic, keyed as its campaign's
/// messages are, so the core reads it in order with them.
struct ProgressLedger {
    store: crate::store::Store,
    clock: Arc<dyn Clock>,
    producer: FutureProducer,
    topic: String,
    instance_id: String,
}

impl FcntLedger for ProgressLedger {
    fn reserve<'a>(&'a self, run: &'a crate::engine::CampaignRun, until: u32) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let seed_id = self.store.get::<TakenCampaign>(&run.campaign_id).ok().flatten().map_or_else(|| json!(run.campaign_id), |t| t.seed_id);
            let mut msg = progress::fcnt_reservation_message(run, until, self.clock.now_unix_ms());
            msg["campaignId"] = seed_id.clone();
            msg["instanceId"] = json!(self.instance_id);
            publish(&self.producer, &self.topic, &seed::id_text(&seed_id), msg.to_string().as_bytes()).await.map_err(|e| e.to_string())
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Take over runs another agent ran: their records as its last progress
/// carried them (`runState`).
fn adopt(state: &AppState, resume: &Value) -> Result<(), String> {
    let runs: Vec<crate::engine::CampaignRun> = serde_json::from_value(resume["runs"].clone()).map_err(|e| format!("resume.runs: {e}"))?;
    let devices: Vec<crate::engine::DeviceRun> = serde_json::from_value(resume["devices"].clone()).map_err(|e| format!("resume.devices: {e}"))?;
    state.runner.adopt(runs, devices).map_err(|e| e.to_string())
}

/// Give a forwarded uplink to the engine (which ignores devices in none
/// of this agent's running campaigns), then commit it.
async fn take_uplink(state: &AppState, consumer: &StreamConsumer, received: Result<rdkafka::message::BorrowedMessage<'_>, rdkafka::error::KafkaError>) {
    let Some(message) = super::bus::received(received, "uplinks").await else { return };
    let uplink: Option<(String, crate::model::Eui, u8, Vec<u8>)> = serde_json::from_slice::<Value>(message.payload().unwrap_or_default()).ok().and_then(|v| {
        Some((v["backendInstance"].as_str()?.to_string(), v["devEui"].as_str()?.parse().ok()?, u8::try_from(v["fport"].as_u64()?).ok()?, hex::decode(v["payloadHex"].as_str()?).ok()?))
    });
    match uplink {
        Some((instance, eui, fport, payload)) => {
            if let Err(e) = state.runner.on_uplink(&instance, eui, fport, payload).await {
                tracing::warn!(device = %eui, error = %e, "a forwarded uplink");
            }
        }
        None => tracing::warn!("a forwarded uplink that is not one was skipped"),
    }
    if let Err(e) = consumer.commit_message(&message, CommitMode::Async) {
        tracing::warn!(error = %e, "committing an uplink");
    }
}

/// Act on a configuration message read by `consumer` when it is for
/// `addressee` (None: for any agent), then commit it.
async fn take(
    state: &AppState,
    config: &AgentConfig,
    producer: &FutureProducer,
    watched: &Watched,
    consumer: &StreamConsumer,
    received: Result<rdkafka::message::BorrowedMessage<'_>, rdkafka::error::KafkaError>,
    addressee: Option<&String>,
) {
    let Some(message) = super::bus::received(received, "configuration").await else { return };
    let payload = message.payload().unwrap_or_default();
    // Only the address is read here; `handle` reads the whole message.
    let addressed_to = serde_json::from_slice::<Value>(payload).ok().and_then(|v| v["agentId"].as_str().map(String::from));
    if addressed_to.as_ref() == addressee {
        handle(state, config, producer, watched, payload).await;
    }
    if let Err(e) = consumer.commit_message(&message, CommitMode::Sync) {
        tracing::warn!(error = %e, "committing a configuration message");
    }
}

/// Act on one configuration message. Whatever it holds, the agent goes
/// on: a message it cannot act on is answered with an error (on the
/// progress topic for a campaign) and logged.
async fn handle(state: &AppState, config: &AgentConfig, producer: &FutureProducer, watched: &Watched, payload: &[u8]) {
    let mut msg = match ConfigMessage::parse(payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "a configuration message that is not one was skipped");
            return;
        }
    };
    // Keys are opened in memory; one in clear is refused outside the
    // compatibility mode, with the message it came in.
    let keys = super::sealing::open_keys(&mut msg, config.cluster_key.as_deref(), config.accept_clear_keys);
    match msg.action {
        Action::Add => {
            let seed_id = msg.campaign_id.clone().unwrap_or(Value::Null);
            let now = chrono::DateTime::from_timestamp_millis(state.clock.now_unix_ms() as i64).unwrap_or_default();
            let added = keys.and_then(|()| translate::store_add(&msg, &config.settings, &state.store, &state.vault, now));
            let started = match added {
                Ok(id) => {
                    if let Err(e) = state.store.put(&TakenCampaign { campaign_id: id.clone(), seed_id: seed_id.clone(), archived: false }) {
                        tracing::warn!(campaign = %id, error = %e, "remembering the campaign's seed id");
                    }
                    let fresh = matches!(parts_of(&state.store, &id), Ok(None));
                    let start = match (&msg.resume, fresh) {
                        (_, false) => Ok(()),
                        // Taken over from a failed agent, from the state its
                        // progress carried.
                        (Some(resume), true) => adopt(state, resume),
                        (None, true) => state.runner.start(&id, RunOptions::default()).await.map(drop).map_err(|e| e.to_string()),
                    };
                    start.map(|()| id)
                }
                Err(e) => Err(e.to_string()),
            };
            match started {
                Ok(id) => {
                    tracing::info!(campaign = %id, "campaign taken from RMC.CONFIG");
                    watched.lock().unwrap_or_else(|p| p.into_inner()).insert(id, seed_id);
                }
                Err(error) => {
                    tracing::warn!(campaign = %seed::id_text(&seed_id), %error, "an ADD was refused");
                    let msg = json!({
                        "version": seed::PROGRESS_VERSION,
                        "time": progress_time(state.clock.now_unix_ms()),
                        "campaignId": seed_id,
                        "campaignStagesCount": 0,
                        "campaignStagesCompleted": 0,
                        "campaignStatus": "ERROR",
                        "error": {"source": "AGENT", "text": error},
                        "instanceId": config.instance_id,
                    });
                    let _ = publish(producer, &config.kafka.topics.progress, &seed::id_text(&seed_id), msg.to_string().as_bytes()).await;
                }
            }
        }
        Action::Stop => {
            let Some(seed_id) = msg.campaign() else { return };
            let id = translate::local_campaign_id(&seed_id);
            match state.runner.stop(&id).await {
                Ok(()) => tracing::info!(campaign = %id, "stopped from RMC.CONFIG"),
                Err(e) => tracing::warn!(campaign = %id, error = %e, "a STOP could not be applied"),
            }
        }
        Action::Get => {
            let answer = estimate(state, config, &msg, keys).await;
            let key = msg.key();
            if let Err(e) = publish(producer, &config.kafka.topics.config, &key, answer.to_string().as_bytes()).await {
                tracing::warn!(msg = %key, error = %e, "publishing a RESP");
            }
        }
        // For the core.
        Action::Resp => {}
    }
}

/// The RESP to a GET: seed 002's duration request answered with our
/// estimate (`duration` seconds, each group's stages), or its error.
async fn estimate(state: &AppState, config: &AgentConfig, msg: &ConfigMessage, keys: Result<(), seed::SeedError>) -> Value {
    let mut resp = json!({
        "action": "RESP",
        "targetType": msg.target_type.clone().unwrap_or_else(|| "CAMPAIGN".into()),
        "msgId": msg.msg_id,
        "version": seed::CONFIG_VERSION,
        "time": progress_time(state.clock.now_unix_ms()),
        "instanceId": config.instance_id,
    });
    if let Some(t) = &msg.campaign_type {
        resp["campaignType"] = json!(t);
    }
    let now = chrono::DateTime::from_timestamp_millis(state.clock.now_unix_ms() as i64).unwrap_or_default();
    let estimated = match keys.and_then(|()| translate::store_get(msg, &config.settings, &state.store, &state.vault, now)) {
        Ok(id) => match state.store.get::<crate::model::Campaign>(&id) {
            Ok(Some(campaign)) => {
                // Ours: the loss the estimate assumes (the seed's GET has none).
                let mut assumptions = crate::engine::estimate::Assumptions::default();
                if let Some(loss) = msg.extra.get("assumedLoss").and_then(Value::as_f64).filter(|l| (0.0..1.0).contains(l)) {
                    assumptions.loss = loss;
                }
                state.runner.engine.estimate(&campaign, assumptions).await.map_err(|e| e.to_string())
            }
            _ => Err("the draft campaign is gone".to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    match estimated {
        Ok(e) => {
            resp["duration"] = json!(e.seconds);
            resp["durationMinutes"] = json!(e.seconds.div_ceil(60));
            resp["groups"] = json!(e.groups);
        }
        Err(text) => resp["error"] = json!({"source": "AGENT", "text": text}),
    }
    resp
}

fn progress_time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

/// A message's content without its time: what makes it news.
fn untimed(msg: &Value) -> String {
    let mut m = msg.clone();
    m.as_object_mut().map(|o| o.remove("time"));
    m.to_string()
}

/// Publish each watched campaign's progress when it changed: the campaign
/// message (keyed by campaignId) and each device's (keyed by DevEUI).
async fn report_progress(state: AppState, config: AgentConfig, producer: FutureProducer, watched: Watched) {
    let mut published: BTreeMap<String, Published> = BTreeMap::new();
    loop {
        tokio::time::sleep(config.progress_every).await;
        let campaigns: Vec<(String, Value)> = watched.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (id, seed_id) in campaigns {
            let Ok(Some(parts)) = parts_of(&state.store, &id) else { continue };
            let now = state.clock.now_unix_ms();
            let last = published.entry(id.clone()).or_default();
            let mut outgoing: Vec<(String, Value)> = Vec::new();
            for part in &parts {
                for device in &part.devices {
                    let made_of = (device.clone(), part.run.stage, part.run.status);
                    if last.devices.get(&device.dev_eui) == Some(&made_of) {
                        continue;
                    }
                    let mut msg = progress::device_message(&part.run, device, now);
                    msg["campaignId"] = seed_id.clone();
                    msg["instanceId"] = json!(config.instance_id);
                    // Ours: the device's run state, from which another agent
                    // takes over if this one fails.
                    msg["runState"] = serde_json::to_value(device).expect("run state serializes");
                    outgoing.push((device.dev_eui.to_string(), msg));
                    last.devices.insert(device.dev_eui, made_of);
                }
            }
            let mut msg = progress::campaign_message(&parts, now);
            msg["campaignId"] = seed_id.clone();
            if let Some(groups) = msg.get_mut("groups").and_then(Value::as_array_mut) {
                for (group, part) in groups.iter_mut().zip(&parts) {
                    group["campaignId"] = seed_id.clone();
                    group["runState"] = serde_json::to_value(&part.run).expect("run state serializes");
                }
            }
            msg["instanceId"] = json!(config.instance_id);
            let finished = msg["campaignStatus"] != "RUNNING";
            let key = untimed(&msg);
            if last.campaign != key {
                outgoing.push((seed::id_text(&seed_id), msg));
                last.campaign = key;
            }
            let mut all_sent = true;
            // Ours: when it left, by the wall clock (the core measures how
            // long progress takes to reach its API).
            let sent_at = SystemClock.now_unix_ms();
            let outgoing: Vec<(String, Vec<u8>)> = outgoing
                .into_iter()
                .map(|(key, mut msg)| {
                    msg["sentAtMs"] = json!(sent_at);
                    (key, msg.to_string().into_bytes())
                })
                .collect();
            for result in publish_all(&producer, &config.kafka.topics.progress, &outgoing).await {
                if let Err(e) = result {
                    tracing::warn!(campaign = %id, error = %e, "publishing progress");
                    all_sent = false;
                }
            }
            if !all_sent {
                // Sent again at the next look.
                published.remove(&id);
            } else if finished {
                watched.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                published.remove(&id);
            }
        }
    }
}

/// Publish this agent's metrics: the seed's fields, and what a core needs
/// to choose an agent (campaigns running, devices in them, the plugins it
/// carries).
async fn report_metrics(state: AppState, config: AgentConfig, producer: FutureProducer, watched: Watched) {
    loop {
        let running: Vec<String> = watched.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        let devices: usize = running
            .iter()
            .filter_map(|id| parts_of(&state.store, id).ok().flatten())
            .flat_map(|parts| parts.into_iter().filter(|p| p.run.status == RunStatus::Running).map(|p| p.run.device_count))
            .sum();
        let plugins: Vec<Value> = state.runtime.list().iter().map(|p| json!({"name": p.manifest.name, "kind": p.manifest.kind, "version": p.manifest.version})).collect();
        let msg = MetricsMessage {
            version: seed::METRICS_VERSION.into(),
            time: progress_time(state.clock.now_unix_ms()),
            instance_id: config.instance_id.clone(),
            uplinks_abs: crate::metrics::UPLINKS_TAKEN.load(Ordering::Relaxed),
            downlinks_abs: crate::metrics::DOWNLINKS_SENT.load(Ordering::Relaxed),
            extra: json!({"runningCampaigns": running, "devicesInCampaigns": devices, "plugins": plugins}).as_object().cloned().unwrap_or_default(),
        };
        let payload = serde_json::to_vec(&msg).expect("metrics serialize");
        if let Err(e) = publish(&producer, &config.kafka.topics.metrics, &config.instance_id, &payload).await {
            tracing::warn!(error = %e, "publishing metrics");
        }
        tokio::time::sleep(config.metrics_every).await;
    }
}
