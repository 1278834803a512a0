//! The RMC core (`airlift core`): the REST API, the store and the console
//! as `serve` has them, but no campaign runs here. Starting one sends an
//! ADD to an agent that carries what the campaign needs, the least loaded
//! (agents are known from their metrics on RMC.METRIC); stopping sends a
//! STOP to it. Progress from RMC.AGENT goes into the store, where the API,
//! its SSE stream and the console read it.

use super::bus::{publish, publish_all, BusError, KafkaSettings};
use super::seed::{self, Action, ConfigMessage, SeedBinary, SeedDevice, SeedDeviceOptions, SeedGroup, SeedGroupOptions, SeedNetwork, SeedOptions};
use crate::clock::{Clock, SystemClock};
use crate::keys::Vault;
use crate::model::fleet_object as object;
use crate::model::{BackendInstance, Campaign, CampaignStatus, CampaignType, Device, DeviceSet, Eui, IsmBand, LorawanVersion, MulticastGroup, Object, Region, SessionClass};
use crate::store::{Store, StoreError};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What an agent last said of itself.
#[derive(Debug, Clone)]
struct AgentSeen {
    at: Instant,
    plugins: BTreeSet<String>,
    devices: u64,
    /// The campaigns it runs (its ids, `rmc-…`).
    running: BTreeSet<String>,
}

/// A campaign run by an agent, with the progress it reported: the latest
/// campaign message, and the frame counter each of its multicast groups
/// may have reached. Each device's latest message is a [`RemoteDevice`].
///
/// A campaign split over agents ([`super::split`]) has one record of its
/// own (its `parts`, and their progress merged) and one per part, with the
/// part's agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteCampaign {
    /// The campaign's id, or a part's.
    pub campaign_id: String,
    /// The agent running it (a split campaign's: its parts' agents).
    pub agent: String,
    pub campaign: Option<Value>,
    /// A split campaign's parts, by id.
    #[serde(default)]
    pub parts: Vec<String>,
    /// A part's campaign and multicast group.
    #[serde(default)]
    pub part_of: Option<String>,
    #[serde(default)]
    pub group: Option<Eui>,
    /// Per multicast group (its EUI), the frame counter its agent published
    /// before using any counter below it (a multicast group message's
    /// `mcGroupState.fCntDown`): where another agent goes on.
    #[serde(default)]
    pub fcnt_reserved: BTreeMap<String, u32>,
    pub archived: bool,
}
object!(RemoteCampaign, "remote-campaigns", |s| s.campaign_id.clone());

impl RemoteCampaign {
    fn new(campaign_id: &str, agent: &str) -> Self {
        Self { campaign_id: campaign_id.into(), agent: agent.into(), campaign: None, parts: vec![], part_of: None, group: None, fcnt_reserved: BTreeMap::new(), archived: false }
    }

    /// The campaign this record's run belongs to.
    fn campaign_of(&self) -> &str {
        self.part_of.as_deref().unwrap_or(&self.campaign_id)
    }

    /// The campaign as sent to its agent; an archived record was never
    /// sent (the broker refused it).
    pub fn sent(store: &Store, campaign_id: &str) -> Result<Option<Self>, StoreError> {
        Ok(store.get::<Self>(campaign_id)?.filter(|r| !r.archived))
    }

    /// Each device's latest progress message (a split campaign's: part by
    /// part), in DevEUI order.
    pub fn devices(store: &Store, campaign_id: &str) -> Result<Vec<Value>, StoreError> {
        let parts = store.get::<Self>(campaign_id)?.map(|r| r.parts).unwrap_or_default();
        let mut devices = Vec::new();
        for id in if parts.is_empty() { vec![campaign_id.to_string()] } else { parts } {
            devices.extend(store.list_prefix::<RemoteDevice>(&format!("{id}/"))?.into_iter().map(|d| d.message));
        }
        Ok(devices)
    }
}

/// One device's latest progress message in a campaign an agent runs, a
/// record of its own: a message rewrites one device, not the campaign.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteDevice {
    /// `campaign id/DevEUI`.
    pub key: String,
    pub message: Value,
    #[serde(default)]
    pub archived: bool,
}
object!(RemoteDevice, "remote-devices", |s| s.key.clone());

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("no agent carries {needs} (agents seen: {seen})")]
    NoAgent { needs: String, seen: String },
    #[error("the campaign is {0:?}, not CONFIGURED")]
    NotStartable(CampaignStatus),
    #[error("the campaign runs on no agent")]
    NotRunning,
    #[error("held by another campaign: {0}")]
    Conflict(String),
    #[error("no agent answered within {0:?}")]
    NoAnswer(Duration),
}

/// The core's side of the bus.
pub struct Core {
    kafka: KafkaSettings,
    producer: FutureProducer,
    cluster_key: Arc<Vault>,
    agents: Mutex<BTreeMap<String, AgentSeen>>,
    /// Campaigns sent to an agent (its id for them → agent, devices), until
    /// the agent's metrics count them.
    assigned: Mutex<BTreeMap<String, (String, u64)>>,
    /// GETs waiting for their RESP, by msgId.
    pending: Mutex<BTreeMap<String, tokio::sync::oneshot::Sender<Value>>>,
    /// Progress messages stored, and how long each took from its agent to
    /// the store the API reads (ms, by the wall clock).
    progress_lag_ms: Mutex<Vec<u64>>,
    /// Since when the core reads the bus: an agent is taken for gone only
    /// after it had the time to be heard.
    listening_since: Mutex<Option<Instant>>,
    /// An agent silent this long is gone.
    pub agent_timeout: Duration,
    /// Which campaign each device was last sent in: where its uplinks go.
    routes: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    campaigns: HashMap<Eui, String>,
    /// When they were last read from the store.
    built: Option<Instant>,
}

/// A core that restarted learns its routes from the store, at most this
/// often (an uplink of a device in no campaign would otherwise read it
/// every time).
const ROUTES_REBUILT_AT_MOST_EVERY: Duration = Duration::from_secs(5);

impl Core {
    pub fn new(kafka: KafkaSettings, cluster_key: Arc<Vault>) -> Result<Self, CoreError> {
        Ok(Self { producer: kafka.producer()?, kafka, cluster_key, agents: Default::default(), assigned: Default::default(), pending: Default::default(), progress_lag_ms: Default::default(), listening_since: Default::default(), agent_timeout: Duration::from_secs(15), routes: Default::default() })
    }

    /// The live agents that carry every plugin in `needs`, least loaded first.
    fn capable_agents(&self, needs: &BTreeSet<String>) -> Vec<String> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
        // Load: the devices an agent reports, plus those of campaigns sent
        // to it that it does not report yet.
        let load = |id: &String, a: &AgentSeen| {
            let pending = assigned.iter().filter(|(c, (to, _))| to == id && !a.running.contains(*c));
            let (campaigns, devices) = pending.fold((a.running.len(), a.devices), |(n, d), (_, (_, more))| (n + 1, d + more));
            (devices, campaigns, id.clone())
        };
        let mut capable: Vec<(String, (u64, usize, String))> =
            agents.iter().filter(|(_, a)| a.at.elapsed() < self.agent_timeout && needs.is_subset(&a.plugins)).map(|(id, a)| (id.clone(), load(id, a))).collect();
        capable.sort_by(|a, b| a.1.cmp(&b.1));
        capable.into_iter().map(|(id, _)| id).collect()
    }

    /// The agent to send a campaign to: the least loaded live one carrying
    /// what it needs.
    fn choose_agent(&self, campaign: &Campaign, message: &ConfigMessage) -> Result<String, CoreError> {
        let needs = needs(campaign, message.backend_instance.as_ref().map(|n| n.plugin.clone()));
        self.capable_agents(&needs).into_iter().next().ok_or_else(|| CoreError::NoAgent { needs: needs.iter().cloned().collect::<Vec<_>>().join(", "), seen: self.agents_seen() })
    }

    /// The agents heard from within the timeout.
    pub fn live_agents(&self) -> Vec<String> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.iter().filter(|(_, a)| a.at.elapsed() < self.agent_timeout).map(|(id, _)| id.clone()).collect()
    }

    /// Wait until at least `n` agents are live; false if `within` passed
    /// first.
    pub async fn await_agents(&self, n: usize, within: Duration) -> bool {
        let heard = async {
            while self.live_agents().len() < n {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(within, heard).await.is_ok()
    }

    /// Each agent heard from, as the API and console show it.
    pub fn agents_view(&self) -> Vec<Value> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents
            .iter()
            .map(|(id, a)| {
                serde_json::json!({
                    "instanceId": id,
                    "live": a.at.elapsed() < self.agent_timeout,
                    "heardSecondsAgo": a.at.elapsed().as_secs(),
                    "plugins": a.plugins,
                    "runningCampaigns": a.running,
                    "devicesInCampaigns": a.devices,
                })
            })
            .collect()
    }

    fn agents_seen(&self) -> String {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        let seen: Vec<String> = agents.iter().map(|(id, a)| format!("{id} ({} s ago: {})", a.at.elapsed().as_secs(), a.plugins.iter().cloned().collect::<Vec<_>>().join(", "))).collect();
        if seen.is_empty() {
            "none".into()
        } else {
            seen.join("; ")
        }
    }

    /// Start a campaign: on the capable agent with the least load, or, for
    /// a campaign of several multicast groups with several capable agents,
    /// each group's run on its own agent ([`super::split`]). Every ADD is on
    /// the broker and the campaign RUNNING on disk when this returns; the
    /// answer names the agents.
    pub async fn start(&self, store: &Store, vault: &Vault, campaign_id: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, CoreError> {
        let mut campaign = store.get::<Campaign>(campaign_id)?.ok_or_else(|| CoreError::Invalid(format!("campaign {campaign_id} not found")))?;
        if campaign.status != CampaignStatus::Configured {
            return Err(CoreError::NotStartable(campaign.status));
        }
        self.check_conflicts(store, &campaign)?;
        let mut parts = self.plan(store, vault, &campaign)?;
        let mut records: Vec<RemoteCampaign> = Vec::new();
        for (record, add) in &mut parts {
            // Counted now: the agent's metrics say so only once it took the
            // campaign, and campaigns started meanwhile must see this load.
            self.assigned.lock().unwrap_or_else(|p| p.into_inner()).insert(super::translate::local_campaign_id(&record.campaign_id), (record.agent.clone(), add.devices.len() as u64));
            super::sealing::seal_keys(add, &self.cluster_key);
            records.push(record.clone());
        }
        if records.len() > 1 {
            let mut whole = RemoteCampaign::new(&campaign.id, &records.iter().map(|r| r.agent.as_str()).collect::<Vec<_>>().join(", "));
            whole.parts = records.iter().map(|r| r.campaign_id.clone()).collect();
            records.push(whole);
        }
        // On disk first: progress that arrives finds its campaign.
        for record in &records {
            store.put(record)?;
        }
        campaign.status = CampaignStatus::Running;
        campaign.started = Some(now);
        store.put(&campaign)?;
        store.flush()?;
        let mut sent = Vec::new();
        for (record, add) in &parts {
            let payload = serde_json::to_vec(add).expect("messages serialize");
            if let Err(e) = publish(&self.producer, &self.kafka.topics.config, &record.campaign_id, &payload).await {
                // Not sent: the campaign is as it was, to be started again;
                // the parts already sent are stopped.
                for part in sent {
                    let _ = self.send_stop(&part).await;
                }
                campaign.status = CampaignStatus::Configured;
                campaign.started = None;
                store.put(&campaign)?;
                for mut record in records {
                    record.archived = true;
                    store.put(&record)?;
                }
                store.flush()?;
                return Err(e.into());
            }
            sent.push(record.clone());
            let devices = add.devices.iter().filter_map(|d| d.eui.as_deref()?.parse::<Eui>().ok());
            self.routes.lock().unwrap_or_else(|p| p.into_inner()).campaigns.extend(devices.map(|d| (d, record.campaign_id.clone())));
            tracing::info!(campaign = %campaign.id, part = %record.campaign_id, agent = %record.agent, "campaign sent to its agent");
        }
        Ok(sent.iter().map(|r| r.agent.as_str()).collect::<Vec<_>>().join(", "))
    }

    /// Where a campaign's runs go: the whole campaign to the least loaded
    /// capable agent, or one part per multicast group over the capable
    /// agents, least loaded first.
    fn plan(&self, store: &Store, vault: &Vault, campaign: &Campaign) -> Result<Vec<(RemoteCampaign, ConfigMessage)>, CoreError> {
        let network = store.get::<BackendInstance>(&campaign.backend_instance)?.map(|i| i.plugin);
        let needs = needs(campaign, network);
        let agents = self.capable_agents(&needs);
        let Some(least_loaded) = agents.first().cloned() else {
            return Err(CoreError::NoAgent { needs: needs.iter().cloned().collect::<Vec<_>>().join(", "), seen: self.agents_seen() });
        };
        let (devices, groups) = members(store, campaign)?;
        let by_group = super::split::devices_by_group(store, devices, &groups)?;
        if by_group.len() < 2 || agents.len() < 2 {
            let mut whole = add_message(store, vault, campaign)?;
            whole.agent_id = Some(least_loaded.clone());
            return Ok(vec![(RemoteCampaign::new(&campaign.id, &least_loaded), whole)]);
        }
        let mut parts = Vec::new();
        for (n, ((group, devices), agent)) in by_group.into_iter().zip(agents.iter().cycle()).enumerate() {
            let mut record = RemoteCampaign::new(&super::split::part_id(&campaign.id, n + 1), agent);
            (record.part_of, record.group) = (Some(campaign.id.clone()), Some(group));
            let mut add = add_message_for(store, vault, campaign, Some((group, devices)))?;
            (add.campaign_id, add.agent_id) = (Some(record.campaign_id.clone().into()), Some(agent.clone()));
            parts.push((record, add));
        }
        Ok(parts)
    }

    /// A device or multicast group serves one running campaign at a time,
    /// whichever agent runs it.
    fn check_conflicts(&self, store: &Store, campaign: &Campaign) -> Result<(), CoreError> {
        let (devices, groups) = members(store, campaign)?;
        for other in store.list::<Campaign>(false)?.into_iter().filter(|c| c.status == CampaignStatus::Running && c.id != campaign.id) {
            if RemoteCampaign::sent(store, &other.id)?.is_none() {
                continue;
            }
            let Ok((held_devices, held_groups)) = members(store, &other) else { continue };
            let busy: Vec<String> = held_devices.intersection(&devices).take(10).map(|e| e.to_string()).collect();
            let busy_groups: Vec<String> = held_groups.iter().filter(|g| groups.contains(g)).map(|e| e.to_string()).collect();
            if !busy.is_empty() || !busy_groups.is_empty() {
                return Err(CoreError::Conflict(format!("campaign {} runs on devices [{}] and multicast groups [{}]", other.id, busy.join(", "), busy_groups.join(", "))));
            }
        }
        Ok(())
    }

    /// How long a campaign will take, estimated by a capable agent: a GET
    /// (the campaign without its keys, the file by its size, and our
    /// `assumedLoss`) and its RESP, within `timeout`.
    pub async fn estimate(&self, store: &Store, vault: &Vault, campaign: &Campaign, loss: f64, timeout: Duration) -> Result<Value, CoreError> {
        let mut get = add_message(store, vault, campaign)?;
        get.action = Action::Get;
        for d in &mut get.devices {
            (d.gen_app_key, d.app_key, d.mc_ke_key) = (None, None, None);
        }
        for g in &mut get.mc_groups {
            g.mc_key = None;
        }
        if let Some(network) = &mut get.backend_instance {
            network.secrets.clear();
        }
        if let Some(binary) = &mut get.binary {
            binary.size = binary.data.take().map(|d| (d.len() as u64 / 4) * 3 - d.bytes().rev().take_while(|b| *b == b'=').count() as u64);
        }
        get.extra.insert("assumedLoss".into(), loss.into());
        get.agent_id = Some(self.choose_agent(campaign, &get)?);
        let msg_id = format!("{}", rand::random::<u32>());
        get.msg_id = Some(msg_id.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(msg_id.clone())));
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(msg_id.clone(), answer);
        let sent = publish(&self.producer, &self.kafka.topics.config, &msg_id, &serde_json::to_vec(&get).expect("messages serialize")).await;
        let resp = match sent {
            Ok(()) => tokio::time::timeout(timeout, answered).await.ok().and_then(Result::ok),
            Err(_) => None,
        };
        // Answered, timed out or never sent: nobody waits for it any more.
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&msg_id);
        sent?;
        let resp = resp.ok_or(CoreError::NoAnswer(timeout))?;
        if let Some(error) = resp["error"]["text"].as_str() {
            return Err(CoreError::Invalid(format!("the agent could not estimate: {error}")));
        }
        Ok(resp)
    }

    /// Campaigns whose agent fell silent go to another capable agent, with
    /// the run state their progress carried: no device redoes a finished
    /// stage, the frame counter goes on past the published one. A stopped
    /// or finished campaign stays as it is.
    async fn take_over_from_lost_agents(&self, store: &Store, vault: &Vault) -> Result<(), CoreError> {
        let heard_long_enough = self.listening_since.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| t.elapsed() > self.agent_timeout);
        if !heard_long_enough {
            return Ok(());
        }
        let live = self.live_agents();
        // A split campaign's own record runs nothing: its parts do.
        for mut remote in store.list::<RemoteCampaign>(false)?.into_iter().filter(|r| r.parts.is_empty()) {
            // A part that ended stays as it is while the others run.
            if live.contains(&remote.agent) || remote.campaign.as_ref().and_then(seed::final_status).is_some() {
                continue;
            }
            let Some(campaign) = store.get::<Campaign>(remote.campaign_of())?.filter(|c| c.status == CampaignStatus::Running) else { continue };
            // What the lost agent last said of each run and device.
            let mut runs: Vec<Value> = remote.campaign.as_ref().and_then(|m| m["groups"].as_array()).map(|g| g.iter().filter_map(|g| g.get("runState").cloned()).collect()).unwrap_or_default();
            // A reservation may be newer than the last progress that carried
            // the run: the successor starts past the highest.
            for run in &mut runs {
                let reserved = run["group"].as_str().and_then(|g| remote.fcnt_reserved.get(g)).copied().unwrap_or(0);
                if run["fcntReserved"].as_u64().unwrap_or(0) < reserved as u64 {
                    run["fcntReserved"] = reserved.into();
                }
            }
            let devices: Vec<Value> = RemoteCampaign::devices(store, &remote.campaign_id)?.into_iter().filter_map(|m| m.get("runState").cloned()).collect();
            let resume = (!runs.is_empty()).then(|| serde_json::json!({"runs": runs, "devices": devices}));
            let mut add = part_add(store, vault, &campaign, &remote)?;
            let agent = match self.choose_agent(&campaign, &add) {
                Ok(agent) => agent,
                Err(e) => {
                    tracing::warn!(campaign = %campaign.id, lost = %remote.agent, error = %e, "no agent to take the campaign over yet");
                    continue;
                }
            };
            tracing::warn!(campaign = %campaign.id, lost = %remote.agent, to = %agent, "agent lost: its campaign goes on elsewhere");
            add.agent_id = Some(agent.clone());
            add.resume = resume;
            super::sealing::seal_keys(&mut add, &self.cluster_key);
            remote.agent = agent.clone();
            store.put(&remote)?;
            store.flush()?;
            self.assigned.lock().unwrap_or_else(|p| p.into_inner()).insert(super::translate::local_campaign_id(&remote.campaign_id), (agent, add.devices.len() as u64));
            publish(&self.producer, &self.kafka.topics.config, &remote.campaign_id, &serde_json::to_vec(&add).expect("messages serialize")).await?;
        }
        Ok(())
    }

    /// Uplinks a network posted here, checked (authenticity, time window,
    /// replay), each to the agent running its device's campaign, on that
    /// agent's own topic. One of a device in no running campaign goes
    /// nowhere: no campaign waits for it. Uplinks go out together (one
    /// request per agent's topic), and this returns once the broker has
    /// them all.
    pub async fn forward_uplinks<'a>(&self, store: &Store, instance: &str, uplinks: impl IntoIterator<Item = (Eui, u8, &'a [u8])>) -> Result<(), CoreError> {
        let mut by_agent: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        for (dev_eui, fport, payload) in uplinks {
            let Some(agent) = self.agent_running(store, dev_eui)? else {
                tracing::debug!(device = %dev_eui, "an uplink of a device in no running campaign");
                continue;
            };
            let uplink = serde_json::json!({"backendInstance": instance, "devEui": dev_eui.to_string(), "fport": fport, "payloadHex": hex::encode(payload)});
            by_agent.entry(agent).or_default().push((dev_eui.to_string(), uplink.to_string().into_bytes()));
        }
        for (agent, messages) in by_agent {
            for result in publish_all(&self.producer, &self.kafka.topics.uplinks_of(&agent), &messages).await {
                result?;
            }
        }
        Ok(())
    }

    /// The agent that runs a device's campaign now: the device's campaign
    /// from the routes (read again from the store, at most every few
    /// seconds, for a device they do not know: a core that restarted),
    /// that campaign's agent from its record (it moves on a takeover).
    fn agent_running(&self, store: &Store, dev_eui: Eui) -> Result<Option<String>, CoreError> {
        let known = self.routes.lock().unwrap_or_else(|p| p.into_inner()).campaigns.get(&dev_eui).cloned();
        let campaign = match known {
            Some(c) => Some(c),
            None => self.rebuild_routes(store)?.and_then(|routes| routes.get(&dev_eui).cloned()),
        };
        let Some(remote) = campaign.map(|c| RemoteCampaign::sent(store, &c)).transpose()?.flatten() else { return Ok(None) };
        if !store.get::<Campaign>(remote.campaign_of())?.is_some_and(|c| c.status == CampaignStatus::Running) {
            return Ok(None);
        }
        Ok(Some(remote.agent))
    }

    /// Every running campaign's devices, read from the store, unless that
    /// was done within [`ROUTES_REBUILT_AT_MOST_EVERY`] (None then).
    fn rebuild_routes(&self, store: &Store) -> Result<Option<HashMap<Eui, String>>, CoreError> {
        {
            let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
            if routes.built.is_some_and(|t| t.elapsed() < ROUTES_REBUILT_AT_MOST_EVERY) {
                return Ok(None);
            }
            routes.built = Some(Instant::now());
        }
        let mut campaigns = HashMap::new();
        for campaign in store.list::<Campaign>(false)?.into_iter().filter(|c| c.status == CampaignStatus::Running) {
            let Some(remote) = RemoteCampaign::sent(store, &campaign.id)? else { continue };
            let (devices, groups) = members(store, &campaign)?;
            if remote.parts.is_empty() {
                campaigns.extend(devices.into_iter().map(|d| (d, campaign.id.clone())));
                continue;
            }
            // A split campaign's devices go to their group's part.
            let parts: BTreeMap<Eui, String> = remote.parts.iter().filter_map(|id| Some((RemoteCampaign::sent(store, id).ok()??.group?, id.clone()))).collect();
            for (group, devices) in super::split::devices_by_group(store, devices, &groups)? {
                let Some(part) = parts.get(&group) else { continue };
                campaigns.extend(devices.into_iter().map(|d| (d, part.clone())));
            }
        }
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.campaigns.extend(campaigns.iter().map(|(d, c)| (*d, c.clone())));
        Ok(Some(campaigns))
    }

    /// Ask the campaign's agent (a split campaign's: each part's) to stop it.
    pub async fn stop(&self, store: &Store, campaign_id: &str) -> Result<(), CoreError> {
        let remote = RemoteCampaign::sent(store, campaign_id)?.ok_or(CoreError::NotRunning)?;
        if remote.parts.is_empty() {
            return self.send_stop(&remote).await;
        }
        for part in &remote.parts {
            if let Some(part) = RemoteCampaign::sent(store, part)? {
                self.send_stop(&part).await?;
            }
        }
        Ok(())
    }

    /// A STOP for one record's run, to its agent.
    async fn send_stop(&self, remote: &RemoteCampaign) -> Result<(), CoreError> {
        let stop = ConfigMessage {
            action: Action::Stop,
            target_type: Some("CAMPAIGN".into()),
            msg_id: Some(rand::random::<u32>().into()),
            campaign_id: Some(remote.campaign_id.clone().into()),
            version: Some(seed::CONFIG_VERSION.into()),
            time: None,
            campaign_type: None,
            devices: vec![],
            mc_groups: vec![],
            binary: None,
            options: Some(SeedOptions::default()),
            lrc: vec![],
            agent_id: Some(remote.agent.clone()),
            device_library: None,
            backend_instance: None,
            resume: None,
            extra: Default::default(),
        };
        publish(&self.producer, &self.kafka.topics.config, &remote.campaign_id, &serde_json::to_vec(&stop).expect("messages serialize")).await?;
        Ok(())
    }

    /// Take progress and metrics from the bus until `shutdown`.
    pub async fn consume(self: Arc<Self>, store: Store, vault: Arc<Vault>, group: String, shutdown: impl std::future::Future<Output = ()>) -> Result<(), CoreError> {
        let consumer: StreamConsumer = self.kafka.consumer(&group)?;
        consumer.subscribe(&[self.kafka.topics.progress.as_str(), self.kafka.topics.metrics.as_str()]).map_err(BusError::from)?;
        // RESPs to our GETs: only those from now on matter.
        let answers: StreamConsumer = self.kafka.consumer_from(&format!("{group}.answers"), super::bus::Start::Latest)?;
        answers.subscribe(&[self.kafka.topics.config.as_str()]).map_err(BusError::from)?;
        *self.listening_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        // Progress is stored as it comes and flushed in batches: an offset
        // is committed only once what it carried is on disk.
        let mut unflushed = Offsets::default();
        let mut flush = tokio::time::interval(PROGRESS_FLUSH_EVERY);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = flush.tick() => unflushed.flush_and_commit(&store, &consumer),
                _ = watch.tick() => {
                    if let Err(e) = self.take_over_from_lost_agents(&store, &vault).await {
                        tracing::warn!(error = %e, "moving campaigns off a lost agent");
                    }
                }
                Ok(message) = answers.recv() => {
                    if let Ok(resp) = serde_json::from_slice::<Value>(message.payload().unwrap_or_default()) {
                        if resp["action"] == "RESP" {
                            let id = seed::id_text(&resp["msgId"]);
                            if let Some(waiting) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
                                let _ = waiting.send(resp);
                            }
                        }
                    }
                    let _ = answers.commit_message(&message, CommitMode::Async);
                }
                read = consumer.recv() => {
                    let Some(message) = super::bus::received(read, "progress and metrics").await else { continue };
                    match serde_json::from_slice::<Value>(message.payload().unwrap_or_default()) {
                        Err(_) => tracing::warn!(topic = message.topic(), "a message that is not JSON was skipped"),
                        Ok(value) if message.topic() == self.kafka.topics.metrics => self.saw_agent(&value),
                        Ok(value) => {
                            if let Err(e) = self.take_progress(&store, &value) {
                                // Not committed: read again after a restart.
                                tracing::warn!(error = %e, "storing progress");
                                continue;
                            }
                        }
                    }
                    unflushed.read(&message);
                    if unflushed.count >= PROGRESS_FLUSH_BATCH {
                        unflushed.flush_and_commit(&store, &consumer);
                    }
                }
            }
        }
    }

    fn saw_agent(&self, metrics: &Value) {
        let Some(id) = metrics["instanceId"].as_str() else { return };
        let plugins = metrics["plugins"].as_array().map(|a| a.iter().filter_map(|p| p["name"].as_str().map(String::from)).collect()).unwrap_or_default();
        let running: BTreeSet<String> = metrics["runningCampaigns"].as_array().map(|a| a.iter().filter_map(|c| c.as_str().map(String::from)).collect()).unwrap_or_default();
        // Campaigns the agent now counts itself are no longer pending.
        self.assigned.lock().unwrap_or_else(|p| p.into_inner()).retain(|c, (to, _)| to != id || !running.contains(c));
        let seen = AgentSeen { at: Instant::now(), plugins, devices: metrics["devicesInCampaigns"].as_u64().unwrap_or(0), running };
        self.agents.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), seen);
    }
}

/// How often, at most, the progress taken is flushed and its offsets
/// committed, and how many messages make a flush sooner.
const PROGRESS_FLUSH_EVERY: Duration = Duration::from_millis(100);
const PROGRESS_FLUSH_BATCH: usize = 2_000;

/// The offsets read but not committed yet: per topic and partition, the
/// next to read.
#[derive(Default)]
struct Offsets {
    next: BTreeMap<(String, i32), i64>,
    count: usize,
}

impl Offsets {
    fn read(&mut self, message: &rdkafka::message::BorrowedMessage<'_>) {
        self.next.insert((message.topic().to_string(), message.partition()), message.offset() + 1);
        self.count += 1;
    }

    /// Flush the store, then commit what it now holds. On a failed flush
    /// nothing is committed: the messages are read again after a restart.
    fn flush_and_commit(&mut self, store: &Store, consumer: &StreamConsumer) {
        if self.next.is_empty() {
            return;
        }
        if let Err(e) = store.flush() {
            tracing::warn!(error = %e, "flushing progress");
            return;
        }
        let mut offsets = rdkafka::TopicPartitionList::new();
        for ((topic, partition), next) in std::mem::take(&mut self.next) {
            let _ = offsets.add_partition_offset(&topic, partition, rdkafka::Offset::Offset(next));
        }
        self.count = 0;
        if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(error = %e, "committing progress");
        }
    }
}

impl Core {
/// Store one progress message of one of our campaigns (others' are not
/// ours to keep); a final campaign message sets the campaign's status.
/// The caller flushes before it commits the message's offset.
fn take_progress(&self, store: &Store, msg: &Value) -> Result<(), StoreError> {
    let Some(id) = msg["campaignId"].as_str().map(String::from).or_else(|| msg["campaignId"].as_u64().map(|n| n.to_string())) else { return Ok(()) };
    let Some(mut remote) = RemoteCampaign::sent(store, &id)? else { return Ok(()) };
    let reservation = (msg["mcGroupState"]["fCntReserved"] == true).then(|| Some((msg["mcGroupEui"].as_str()?, u32::try_from(msg["mcGroupState"]["fCntDown"].as_u64()?).ok()?))).flatten();
    match (msg["deveui"].as_str(), reservation) {
        (Some(eui), _) => {
            store.put(&RemoteDevice { key: format!("{id}/{eui}"), message: msg.clone(), archived: false })?;
        }
        (None, Some((group, until))) => {
            // Kept as the highest: a successor starts there.
            let reserved = remote.fcnt_reserved.entry(group.to_string()).or_default();
            *reserved = (*reserved).max(until);
        }
        (None, None) => {
            let mut status = seed::final_status(msg);
            if status.is_some() {
                self.assigned.lock().unwrap_or_else(|p| p.into_inner()).remove(&super::translate::local_campaign_id(&id));
            }
            remote.campaign = Some(msg.clone());
            store.put(&remote)?;
            if let Some(whole) = &remote.part_of {
                status = self.merge_parts(store, whole)?;
            }
            if let (Some(status), Some(mut campaign)) = (status, store.get::<Campaign>(remote.campaign_of())?) {
                if campaign.status != status {
                    campaign.status = status;
                    store.put(&campaign)?;
                }
            }
            return Ok(self.took(msg));
        }
    }
    if msg["deveui"].is_null() {
        store.put(&remote)?;
    }
    self.took(msg);
    Ok(())
}

/// A split campaign's record shows its parts' progress merged; its final
/// status once every part ended.
fn merge_parts(&self, store: &Store, campaign_id: &str) -> Result<Option<CampaignStatus>, StoreError> {
    let (Some(mut whole), Some(campaign)) = (RemoteCampaign::sent(store, campaign_id)?, store.get::<Campaign>(campaign_id)?) else { return Ok(None) };
    let mut parts = Vec::new();
    for id in &whole.parts {
        parts.push(RemoteCampaign::sent(store, id)?.and_then(|p| p.campaign));
    }
    let (merged, status) = super::split::merged_progress(&campaign, &parts);
    whole.campaign = Some(merged);
    store.put(&whole)?;
    Ok(status)
}

/// Count a progress message taken: how long it took from its agent.
fn took(&self, msg: &Value) {
    if let Some(sent) = msg["sentAtMs"].as_u64() {
        let lag = SystemClock.now_unix_ms().saturating_sub(sent);
        metrics::histogram!("airlift_progress_lag_seconds").record(lag as f64 / 1000.0);
        let mut lags = self.progress_lag_ms.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: the latest million are plenty for percentiles.
        if lags.len() < 1_000_000 {
            lags.push(lag);
        }
    }
}

/// Progress messages stored so far, and their lag from agent to store
/// (ms): for benchmarks.
pub fn progress_lags(&self) -> Vec<u64> {
    self.progress_lag_ms.lock().unwrap_or_else(|p| p.into_inner()).clone()
}
}

fn uplink_rate(store: &Store, device: &Device) -> Result<Option<u32>, StoreError> {
    if device.uplink_rate.is_some() {
        return Ok(device.uplink_rate);
    }
    let profile = match &device.device_profile {
        Some(p) => store.get::<crate::model::DeviceProfile>(p)?,
        None => None,
    };
    Ok(profile.and_then(|p| p.default_ul_period).filter(|s| *s > 0))
}

fn open_key(vault: &Vault, sealed: Option<&crate::keys::Sealed>) -> Result<Option<String>, CoreError> {
    sealed.map(|s| vault.open_sealed(s).map(|k| hex::encode(k.expose())).map_err(|e| CoreError::Invalid(format!("a key does not open: {e}")))).transpose()
}

/// What an agent must carry to run a campaign: its device library, its
/// network's plugin and its update type.
fn needs(campaign: &Campaign, network_plugin: Option<String>) -> BTreeSet<String> {
    let mut needs: BTreeSet<String> = [campaign.device_library.clone()].into();
    needs.extend(network_plugin);
    needs.extend(campaign.update_type.clone());
    needs
}

/// The ADD for a record's run: the whole campaign's, or a part's (its
/// group and that group's devices, under the part's id).
fn part_add(store: &Store, vault: &Vault, campaign: &Campaign, record: &RemoteCampaign) -> Result<ConfigMessage, CoreError> {
    let part = match record.group {
        Some(group) => {
            let (devices, groups) = members(store, campaign)?;
            let devices = super::split::devices_by_group(store, devices, &groups)?.into_iter().find(|(g, _)| *g == group).map_or_else(Vec::new, |(_, d)| d);
            Some((group, devices))
        }
        None => None,
    };
    let mut add = add_message_for(store, vault, campaign, part)?;
    add.campaign_id = Some(record.campaign_id.clone().into());
    Ok(add)
}

/// The devices of a campaign's sets, and the multicast groups of its
/// regions in the regions' order (the first is the default group).
fn members(store: &Store, campaign: &Campaign) -> Result<(BTreeSet<Eui>, Vec<Eui>), CoreError> {
    let mut devices = BTreeSet::new();
    for set in &campaign.device_sets {
        let set = store.get::<DeviceSet>(set)?.ok_or_else(|| CoreError::Invalid(format!("device set {set} is gone")))?;
        devices.extend(set.devices);
    }
    let mut groups = Vec::new();
    for id in &campaign.regions {
        let region = store.get::<Region>(id)?.ok_or_else(|| CoreError::Invalid(format!("region {id} is gone")))?;
        groups.extend(region.multicast_groups.into_iter().filter(|g| !groups.contains(g)).collect::<Vec<_>>());
    }
    Ok((devices, groups))
}

/// The ADD for one of our campaigns: the seed's fields, and ours where the
/// seed has none (the device library, any backend). Keys are in clear
/// here, sealed before the message leaves.
pub fn add_message(store: &Store, vault: &Vault, campaign: &Campaign) -> Result<ConfigMessage, CoreError> {
    add_message_for(store, vault, campaign, None)
}

/// [`add_message`], for one multicast group and its devices (`part`).
fn add_message_for(store: &Store, vault: &Vault, campaign: &Campaign, part: Option<(Eui, Vec<Eui>)>) -> Result<ConfigMessage, CoreError> {
    let (euis, group_euis) = match part {
        Some((group, devices)) => (devices, vec![group]),
        None => {
            let (devices, groups) = members(store, campaign)?;
            (devices.into_iter().collect(), groups)
        }
    };
    let mut devices = Vec::new();
    for eui in euis {
        let d = store.get::<Device>(&eui.to_string())?.ok_or_else(|| CoreError::Invalid(format!("device {eui} is gone")))?;
        let root = open_key(vault, d.device_key.as_ref())?;
        let (gen_app_key, app_key) = match d.lorawan_version {
            LorawanVersion::V1_0 => (root, None),
            LorawanVersion::V1_1 => (None, root),
        };
        devices.push(SeedDevice {
            eui: Some(d.dev_eui.to_string()),
            lora_wan_scheme: Some(match d.lorawan_version {
                LorawanVersion::V1_0 => "1.0".into(),
                LorawanVersion::V1_1 => "1.1".into(),
            }),
            mc_group: d.mc_group.map(|g| g.to_string()),
            gen_app_key,
            app_key,
            mc_ke_key: open_key(vault, d.mc_ke_key.as_ref())?,
            // The device's own rate, else its profile's uplink period.
            options: uplink_rate(store, &d)?.map(|r| SeedDeviceOptions { uplink_rate: Some(r), ..Default::default() }),
            ..Default::default()
        });
    }
    let mut mc_groups = Vec::new();
    {
        for eui in group_euis {
            let g = store.get::<MulticastGroup>(&eui.to_string())?.ok_or_else(|| CoreError::Invalid(format!("multicast group {eui} is gone")))?;
            let mut options = SeedGroupOptions {
                rf_region: Some(
                    match g.ism_band {
                        IsmBand::EU868 => "EU868",
                        IsmBand::US915 => "US915",
                        IsmBand::AS923 => "AS923",
                    }
                    .into(),
                ),
                drate: Some(g.data_rate),
                downlink_dwell_time: Some(g.dl_dwell_time as u8),
                freq: Some(g.frequency),
                ..Default::default()
            };
            // Ours: a redundancy in percent (the seed's 0-4 codes map to
            // 50-100 % and are sent as such).
            if let Some(r) = g.redundancy {
                options.extra.insert("redundancyPercent".into(), r.into());
            }
            let mut group = SeedGroup {
                eui: Some(g.dev_eui.to_string()),
                net_addr: Some(g.dev_addr.clone()),
                mc_key: open_key(vault, g.mc_key.as_ref())?,
                session_class: Some(match g.session_class {
                    SessionClass::B => "B".into(),
                    SessionClass::C => "C".into(),
                }),
                options: Some(options),
                ..Default::default()
            };
            group.extra.insert("pingSlotPeriodicity".into(), g.ping_slot_periodicity.into());
            mc_groups.push(group);
        }
    }
    let instance = store.get::<BackendInstance>(&campaign.backend_instance)?.ok_or_else(|| CoreError::Invalid(format!("backend instance {} is gone", campaign.backend_instance)))?;
    let mut secrets = BTreeMap::new();
    for (name, sealed) in &instance.secrets {
        let secret = vault.open_sealed(sealed).map_err(|e| CoreError::Invalid(format!("secret {name} does not open: {e}")))?;
        secrets.insert(name.clone(), String::from_utf8(secret.expose().to_vec()).map_err(|_| CoreError::Invalid(format!("secret {name} is not text")))?);
    }
    let binary = match &campaign.file {
        Some(id) => {
            use base64::Engine;
            let data = store.blobs().read(id).map_err(|e| CoreError::Invalid(format!("file {id}: {e}")))?;
            Some(SeedBinary { data: Some(base64::engine::general_purpose::STANDARD.encode(data)), ..Default::default() })
        }
        None => None,
    };
    let file = campaign.file.as_deref().and_then(|id| store.get::<crate::model::StoredFile>(id).ok().flatten());
    let date_time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| (t.format("%Y-%m-%d").to_string(), t.format("%H:%M:%S").to_string())).unzip();
    let (session_date, session_time) = date_time(campaign.session_start);
    let (reboot_date, reboot_time) = date_time(campaign.reboot_at);
    Ok(ConfigMessage {
        action: Action::Add,
        target_type: Some("CAMPAIGN".into()),
        msg_id: Some(rand::random::<u32>().into()),
        campaign_id: Some(campaign.id.clone().into()),
        version: Some(seed::CONFIG_VERSION.into()),
        time: Some(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()),
        campaign_type: Some(match campaign.campaign_type {
            CampaignType::Message => return Err(CoreError::Invalid("message campaigns run on a gateway, not on an agent".into())),
            other => other.seed_name().into(),
        }),
        devices,
        mc_groups,
        binary,
        options: Some(SeedOptions {
            max_duration: Some(campaign.max_duration_minutes as u64 * 60),
            success_threshold: Some(campaign.success_threshold),
            fw_version: file.as_ref().and_then(|f| f.firmware_version.clone()),
            hw_target: file.as_ref().and_then(|f| f.hw_target.clone()),
            update_type: campaign.update_type.as_ref().map(|u| u.to_ascii_uppercase()),
            session_date,
            session_time,
            reboot_date,
            reboot_time,
            ..Default::default()
        }),
        lrc: vec![],
        agent_id: None,
        device_library: Some(campaign.device_library.clone()),
        backend_instance: Some(SeedNetwork {
            id: instance.id.clone(),
            name: instance.name.clone(),
            plugin: instance.plugin.clone(),
            settings: instance.settings.clone(),
            secrets,
            secrets_sealed: BTreeMap::new(),
            allowed_hosts: instance.allowed_hosts.clone(),
            transport: instance.transport.clone(),
        }),
        resume: None,
        extra: Default::default(),
    })
}
