//! A running campaign's state, as stored. The engine derives every action
//! from these records and writes them before acting, so a restart resumes
//! where it stopped and no device redoes a finished stage.

use crate::store::Batch;
use crate::model::fleet_object as object;
use crate::model::{Eui, Object};
use serde::{Deserialize, Serialize};

/// How the engine runs a stage (mirrors the WIT `stage-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageMode {
    Unicast,
    Multicast,
    Fragments,
    WaitSessionStart,
    DeviceInitiated,
    Offloaded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    pub name: String,
    pub mode: StageMode,
    pub retry_limit: u32,
    pub answer_timeout_s: u32,
    pub required: bool,
}

/// TS004 session parameters fixed for the whole campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FragLayout {
    pub frag_index: u8,
    pub nb_frag: u32,
    pub frag_size: u16,
    pub padding: u8,
    pub descriptor: u32,
    pub block_ack_delay: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Running,
    Stopping,
    Stopped,
    Failed,
    Succeeded,
}

/// The run of a campaign's `part`-th multicast group: the campaign's own
/// id for the first, so a one-group campaign's run is found by it.
pub fn run_id(campaign_id: &str, part: u32) -> String {
    match part {
        0 => campaign_id.to_string(),
        n => format!("{campaign_id}-{n}"),
    }
}

fn one() -> u32 {
    1
}

/// One multicast group's run of a campaign. A campaign runs one per group
/// (its `parts`), each with its own session, network and pace; the
/// campaign's outcome is over all of them ([`overall_status`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignRun {
    pub campaign_id: String,
    /// Which of the campaign's runs this is (0-based).
    #[serde(default)]
    pub part: u32,
    /// How many runs the campaign has, one per multicast group.
    #[serde(default = "one")]
    pub parts: u32,
    /// Devices in the whole campaign (all parts): thresholds are over them.
    #[serde(default)]
    pub campaign_device_count: usize,
    pub stages: Vec<Stage>,
    /// Index of the stage being run.
    pub stage: usize,
    pub stage_started_ms: u64,
    /// Rounds of the current stage (retries, or status rounds).
    pub round: u32,
    /// When the current round's requests went out.
    pub round_sent_ms: Option<u64>,
    pub started_ms: u64,
    pub deadline_ms: u64,
    /// The device library, pinned by content hash for the whole session.
    pub library_sha256: String,
    pub library_name: String,
    /// The library's packages and default FPorts (for FPort overrides).
    pub library_ports: Vec<(String, u8)>,
    /// FPort overrides all devices share (multicast goes to all at once).
    pub fports: std::collections::BTreeMap<String, u8>,
    pub group: Eui,
    /// The backend instance the group and its members were provisioned on;
    /// a campaign switched to another instance provisions it there too.
    #[serde(default)]
    pub group_backend: Option<String>,
    /// Devices in the run; each has a `DeviceRun` (kept apart so this
    /// record stays small: it is read on every step and uplink).
    pub device_count: usize,
    pub success_threshold: u8,
    pub payload_sha256: Option<String>,
    /// Size of that payload in bytes.
    #[serde(default)]
    pub payload_size: u32,
    /// Firmware the payload was built against (deltas): devices reporting
    /// another version before the fragments are refused.
    #[serde(default)]
    pub base_firmware: Option<u32>,
    pub layout: Option<FragLayout>,
    pub session_start_gps: u64,
    /// The campaign's own session start (GPS seconds), when it has one:
    /// the session starts then, or when setup allows if that is later.
    #[serde(default)]
    pub scheduled_session_gps: Option<u64>,
    pub session_timeout: u8,
    pub reboot_gps: Option<u64>,
    pub target_firmware: Option<u32>,
    /// Next multicast frame counter (never reused).
    pub next_fcnt: u32,
    /// The frame counter last published as reserved: no frame at or above
    /// it goes out before a higher one is published (0: none published,
    /// a host without a ledger). See [`super::fcnt_ledger`].
    #[serde(default)]
    pub fcnt_reserved: u32,
    /// Next fragment position (a transmission's place in the session:
    /// 1..=M uncoded, then coded) and how far this burst goes.
    pub next_fragment: u32,
    pub fragments_target: u32,
    pub fragments_sent: u32,
    /// The numbers the library gave the coded positions sent so far, in
    /// order: a status answer may name a fragment by number.
    #[serde(default)]
    pub coded_numbers: Vec<u32>,
    /// Closed-loop rounds of extra coded fragments so far.
    pub extra_rounds: u32,
    /// Fixed redundancy instead of the closed loop (percent of extra fragments).
    pub fixed_redundancy_pct: Option<u32>,
    pub status: RunStatus,
    pub error: Option<String>,
    pub finished_ms: Option<u64>,
    /// The session a gateway runs for this campaign, once started.
    #[serde(default)]
    pub offload_handle: Option<String>,
    /// Steps in a row the network was unavailable for (sets the backoff).
    #[serde(default)]
    pub network_failures: u32,
    /// The network's current error while it is unavailable.
    #[serde(default)]
    pub network_trouble: Option<NetworkTrouble>,
    /// Set while a multicast or fragment burst is paced: wake no earlier.
    pub next_action_ms: u64,
    pub archived: bool,
    /// Share of unicast requests answered in the stages so far: how lossy
    /// the fleet's links are, request and answer together.
    #[serde(default)]
    pub answer_rate: Option<f64>,
}
object!(CampaignRun, "campaign-runs", |s| s.id(), compact = true);

/// The network has been failing since `since_ms`, the latest time with
/// `error`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkTrouble {
    pub error: String,
    pub since_ms: u64,
}

/// How often a stage may leave one device of the run unanswered.
const LEFT_BEHIND_PER_STAGE: f64 = 0.001;

/// Most requests one device is sent in a stage, whatever the loss.
const MAX_ATTEMPTS: u32 = 16;

impl CampaignRun {
    pub fn id(&self) -> String {
        run_id(&self.campaign_id, self.part)
    }

    /// The ids of every run of this run's campaign.
    pub fn sibling_ids(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.parts.max(1)).map(|p| run_id(&self.campaign_id, p))
    }

    /// Devices of the whole campaign (runs stored before campaigns had
    /// several parts count their own).
    pub fn campaign_devices(&self) -> usize {
        self.campaign_device_count.max(self.device_count)
    }

    pub fn current(&self) -> Option<&Stage> {
        self.stages.get(self.stage)
    }

    /// Times a silent device is asked again in `stage`: the plan's limit,
    /// or more when the answer rate seen so far makes that limit leave
    /// devices behind: enough that, of all the devices, one is left
    /// unanswered in fewer than one stage in a thousand
    /// ([`LEFT_BEHIND_PER_STAGE`]).
    /// A retry costs only the silent device's airtime; losing the device
    /// costs its update.
    pub fn retry_limit(&self, stage: &Stage) -> u32 {
        self.retry_limit_at(stage, self.answer_rate)
    }

    /// [`Self::retry_limit`] at a given answer rate.
    pub fn retry_limit_at(&self, stage: &Stage, rate: Option<f64>) -> u32 {
        let Some(rate) = rate.filter(|r| *r > 0.0 && *r < 1.0) else { return stage.retry_limit };
        let attempts = ((LEFT_BEHIND_PER_STAGE / self.device_count.max(1) as f64).ln() / (1.0 - rate).ln()).ceil();
        // Never below the plan's limit; above it, at most MAX_ATTEMPTS requests.
        let cap = stage.retry_limit.max(MAX_ATTEMPTS - 1);
        stage.retry_limit.max((attempts as u32).saturating_sub(1)).min(cap)
    }
}

/// Per device, per campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRun {
    pub campaign_id: String,
    /// The campaign's run (its multicast group) the device is in.
    #[serde(default)]
    pub part: u32,
    pub dev_eui: Eui,
    /// Stage the device is in (answered stages are below it).
    pub stage: usize,
    /// Requests sent in the current stage.
    pub attempts: u32,
    pub next_retry_ms: u64,
    /// Answered the current stage (and how).
    pub answered: bool,
    /// Out of the campaign, with why.
    pub failed: Option<String>,
    pub holds_file: bool,
    pub missing_fragments: Option<u32>,
    pub received_fragments: Option<u32>,
    pub firmware_version: Option<u32>,
    /// Progress a gateway reports for the device (offloaded sessions), 0..100.
    #[serde(default)]
    pub offload_percent: Option<f32>,
    /// What the library asked to remember.
    pub memory: Vec<(String, String)>,
    /// How often the device sends uplinks (its profile's), seconds; 0 if
    /// unknown. A class A device hears a unicast request only after its
    /// next uplink, so its answers take up to this much longer.
    #[serde(default)]
    pub uplink_period_s: u32,
    pub succeeded: bool,
    pub archived: bool,
    /// The device's status reports count the fragments it lost so far and
    /// give the number of the last one it heard (LoRaMac-node), learnt from
    /// a report no count of received and missing fragments could make.
    #[serde(default)]
    pub counts_losses: bool,
    /// The device's profile names its stack: its reading is known, not
    /// inferred.
    #[serde(default)]
    pub stack_known: bool,
    /// The last status report as sent, (NbFragReceived, MissingFrag), and
    /// the highest fragment number sent when it first read so.
    #[serde(default)]
    pub last_report: Option<(u32, u32, u32)>,
}
object!(DeviceRun, "device-runs", |s| DeviceRun::key(&run_id(&s.campaign_id, s.part), s.dev_eui), compact = true);

impl DeviceRun {
    pub fn key(run_id: &str, dev_eui: Eui) -> String {
        format!("{run_id}/{dev_eui}")
    }

    pub fn new(run: &CampaignRun, dev_eui: Eui) -> Self {
        Self {
            campaign_id: run.campaign_id.clone(),
            part: run.part,
            dev_eui,
            stage: 0,
            attempts: 0,
            next_retry_ms: 0,
            answered: false,
            failed: None,
            holds_file: false,
            missing_fragments: None,
            received_fragments: None,
            firmware_version: None,
            offload_percent: None,
            memory: vec![],
            uplink_period_s: 0,
            succeeded: false,
            archived: false,
            counts_losses: false,
            stack_known: false,
            last_report: None,
        }
    }

    pub fn active(&self) -> bool {
        self.failed.is_none()
    }

    /// Every device's record of a run, in DevEUI order.
    pub fn all_of(store: &crate::store::Store, run: &CampaignRun) -> Result<Vec<DeviceRun>, crate::store::StoreError> {
        store.list_prefix::<DeviceRun>(&format!("{}/", run.id()))
    }

    /// [`Self::all_of`] as a batch not yet committed will leave them.
    pub fn all_in(store: &crate::store::Store, batch: &Batch, run: &CampaignRun) -> Result<Vec<DeviceRun>, crate::store::StoreError> {
        store.list_prefix_in::<DeviceRun>(batch, &format!("{}/", run.id()))
    }
}

/// One run of a campaign with its devices.
#[derive(Debug, Clone)]
pub struct Part {
    pub run: CampaignRun,
    pub devices: Vec<DeviceRun>,
}

/// Every run of a campaign, in part order, with its devices; None when the
/// campaign never ran.
pub fn parts_of(store: &crate::store::Store, campaign_id: &str) -> Result<Option<Vec<Part>>, crate::store::StoreError> {
    parts_in(store, &Batch::default(), campaign_id)
}

/// [`parts_of`] as a batch not yet committed will leave them.
pub fn parts_in(store: &crate::store::Store, batch: &Batch, campaign_id: &str) -> Result<Option<Vec<Part>>, crate::store::StoreError> {
    let Some(first) = store.get_in::<CampaignRun>(batch, campaign_id)? else { return Ok(None) };
    let mut parts = Vec::with_capacity(first.parts as usize);
    for id in first.sibling_ids().skip(1) {
        if let Some(run) = store.get_in::<CampaignRun>(batch, &id)? {
            let devices = DeviceRun::all_in(store, batch, &run)?;
            parts.push(Part { run, devices });
        }
    }
    let devices = DeviceRun::all_in(store, batch, &first)?;
    parts.insert(0, Part { run: first, devices });
    Ok(Some(parts))
}

/// The campaign's outcome over all its runs: running while one runs;
/// stopped if stopped; else succeeded when enough of all its devices did.
pub fn overall_status(runs: &[&CampaignRun], succeeded: usize) -> RunStatus {
    if runs.iter().any(|r| matches!(r.status, RunStatus::Running | RunStatus::Stopping)) {
        return RunStatus::Running;
    }
    if runs.iter().any(|r| r.status == RunStatus::Stopped) {
        return RunStatus::Stopped;
    }
    let Some(first) = runs.first() else { return RunStatus::Failed };
    let met = succeeded * 100 >= first.success_threshold as usize * first.campaign_devices();
    if met && (runs.len() > 1 || first.status == RunStatus::Succeeded) { RunStatus::Succeeded } else { RunStatus::Failed }
}
