//! The stage engine: runs a campaign through the stages its device library
//! plans, generic over plugins and networks. State lives in the store
//! ([`run`]); [`Engine::step`] derives the next action from it, writes the
//! new state, then acts, so a restart resumes without redoing a stage.
//!
//! - [`run`]: stored run state per campaign and per device.
//! - [`step`]: the stage machine.
//! - [`network`]: what the engine needs from a network.
//! - [`context`]: WIT records built from stored objects.
//! - [`payload`]: what goes on the air, through the update-type plugin.
//! - [`progress`]: progress in the RMC message shape.
//! - [`estimate`]: how long a campaign will take, before it runs.
//! - [`runner`]: a task per running campaign in a serving host.

pub(crate) mod context;
pub mod estimate;
pub mod fcnt_ledger;
pub mod network;
mod payload;
pub mod progress;
pub mod run;
pub mod runner;
mod status_report;
mod step;

pub use network::{Capabilities, Network, NetworkError, OffloadDevice, OffloadJob, OffloadPayload, OffloadState, OffloadStatus, Pacing};
pub use runner::Runner;
pub use run::{CampaignRun, DeviceRun, RunStatus};

use crate::clock::Clock;
use crate::model::{Campaign, CampaignStatus, CampaignType, Device, DeviceProfile, DeviceSet, Eui, MulticastGroup, PluginKind, PluginRecord, PortMap, Region, SessionClass};
use std::collections::{BTreeMap, HashMap};
use crate::plugin::device_library as lib;
use crate::plugin::{Plugin, PluginError, PluginRuntime};
use crate::store::{Batch, Store, StoreError};
use run::{FragLayout, Stage, StageMode};
use std::sync::Arc;

/// The stage of a campaign a gateway runs itself.
pub const OFFLOADED_STAGE: &str = "GatewaySession";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Plugin(#[from] PluginError),
    #[error("device library: {0}")]
    Library(String),
    #[error("campaign '{0}' not found")]
    NotFound(String),
    #[error("campaign cannot start: {0}")]
    Invalid(String),
    #[error("{0}")]
    Network(#[from] NetworkError),
}

/// Options a run takes beyond the campaign object.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Send this percentage of extra coded fragments up front and never a
    /// second round (the classic open-loop behaviour, for comparison).
    pub fixed_redundancy_pct: Option<u32>,
    /// Firmware version devices must report at the end (firmware campaigns).
    pub target_firmware: Option<u32>,
}

/// What every run of a starting campaign shares.
struct Planning {
    payload: Option<payload::Payload>,
    info: lib::LibraryInfo,
    library: Arc<Plugin>,
    options: RunOptions,
    parts: u32,
    campaign_devices: usize,
    now: u64,
    deadline_ms: u64,
}

/// The backend instance a group is sent through: its own, else the
/// campaign's.
pub fn backend_of<'a>(campaign: &'a Campaign, group: &'a MulticastGroup) -> &'a str {
    group.backend_instance.as_deref().unwrap_or(&campaign.backend_instance)
}

pub struct Engine<N: Network> {
    pub store: Store,
    pub runtime: Arc<PluginRuntime>,
    pub clock: Arc<dyn Clock>,
    pub network: Arc<N>,
    /// One lock per campaign: a step, an uplink and a stop each read and
    /// write the run's records, and must not overwrite each other's.
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where multicast frame counters are published before use (an RMC
    /// agent's); none in the embedded default.
    fcnt_ledger: std::sync::OnceLock<Arc<dyn fcnt_ledger::FcntLedger>>,
}

impl<N: Network> Engine<N> {
    pub fn new(store: Store, runtime: Arc<PluginRuntime>, clock: Arc<dyn Clock>, network: Arc<N>) -> Self {
        Self { store, runtime, clock, network, locks: Default::default(), fcnt_ledger: Default::default() }
    }

    /// Publish multicast frame counters on `ledger` before frames use them,
    /// from now on (set once; false if one was set before).
    pub fn set_fcnt_ledger(&self, ledger: Arc<dyn fcnt_ledger::FcntLedger>) -> bool {
        self.fcnt_ledger.set(ledger).is_ok()
    }

    /// Hold this while reading and writing a campaign's run records.
    async fn lock(&self, campaign_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.locks.lock().unwrap().entry(campaign_id.to_string()).or_default().clone();
        lock.lock_owned().await
    }

    fn now(&self) -> u64 {
        self.clock.now_unix_ms()
    }

    /// The pinned library of a run; reloaded from the store after a restart.
    async fn library(&self, run: &CampaignRun) -> Result<Arc<Plugin>, EngineError> {
        if let Some(p) = self.runtime.by_hash(&run.library_sha256) {
            return Ok(p);
        }
        let record = self.store.get::<PluginRecord>(&run.library_name)?.ok_or_else(|| PluginError::NotFound(run.library_name.clone()))?;
        let version = record.versions.iter().find(|v| v.sha256 == run.library_sha256).ok_or_else(|| PluginError::NotFound(run.library_sha256.clone()))?;
        let wasm = self.store.blobs().read(&run.library_sha256).map_err(|e| PluginError::Storage(e.to_string()))?;
        Ok(self.runtime.load_pinned(version.manifest.clone(), &run.library_sha256, &wasm)?)
    }

    /// A profile named by a device or a file, if there is one.
    fn profile(&self, id: Option<&String>) -> Result<Option<DeviceProfile>, EngineError> {
        Ok(match id {
            Some(p) => self.store.get::<DeviceProfile>(p)?,
            None => None,
        })
    }

    /// The hardware a campaign's file is for: its device profile's (seed
    /// 004) and its hardware type (seed 002's `hwTarget`), where it names
    /// them.
    fn file_hardware(&self, campaign: &Campaign) -> Result<FileHardware, EngineError> {
        let Some(file) = &campaign.file else { return Ok(FileHardware::default()) };
        let Some(file) = self.store.get::<crate::model::StoredFile>(file)? else { return Ok(FileHardware::default()) };
        Ok(FileHardware { profile: self.profile(file.device_profile.as_ref())?, target: file.hw_target })
    }

    /// FPort overrides from a device's profile.
    fn profile_fports(&self, device: &Device) -> Result<BTreeMap<String, u8>, EngineError> {
        Ok(self.profile(device.device_profile.as_ref())?.map(|p| p.fports).unwrap_or_default())
    }

    /// The run's FPort translation (checked when the run started).
    pub(crate) fn ports(run: &CampaignRun) -> PortMap {
        PortMap::new(&run.library_ports, &run.fports).unwrap_or_default()
    }

    fn campaign(&self, id: &str) -> Result<Campaign, EngineError> {
        self.store.get::<Campaign>(id)?.ok_or_else(|| EngineError::NotFound(id.into()))
    }

    fn set_campaign_status(&self, id: &str, status: CampaignStatus, tx: &mut Batch) -> Result<(), EngineError> {
        let mut c = self.store.get_in::<Campaign>(tx, id)?.ok_or_else(|| EngineError::NotFound(id.into()))?;
        c.status = status;
        c.last_changed = chrono::DateTime::from_timestamp_millis(self.now() as i64).unwrap_or_default();
        if status == CampaignStatus::Running {
            c.started = Some(c.last_changed);
        }
        tx.put(&c);
        Ok(())
    }

    /// Plan and record a campaign's runs, one per multicast group, then
    /// mark the campaign RUNNING. Every run is planned before any is
    /// stored: a refusal leaves nothing behind.
    pub async fn start(&self, campaign_id: &str, options: RunOptions) -> Result<Vec<CampaignRun>, EngineError> {
        let _held = self.lock(campaign_id).await;
        let campaign = self.campaign(campaign_id)?;
        if campaign.status != CampaignStatus::Configured {
            return Err(EngineError::Invalid(format!("status is {:?}, not CONFIGURED", campaign.status)));
        }
        let devices = self.campaign_devices(&campaign)?;
        let groups = self.partition(&campaign, &devices)?;
        self.check_conflicts(&campaign, &groups, &devices)?;
        let planning = self.planning(&campaign, options, groups.len() as u32, devices.len()).await?;
        if let Some(at) = campaign.session_start.filter(|t| t.timestamp_millis() >= planning.deadline_ms as i64) {
            return Err(EngineError::Invalid(format!("the session start {at} is after the campaign's maximum duration ({} minutes from now)", campaign.max_duration_minutes)));
        }
        let mut planned = Vec::with_capacity(groups.len());
        for (part, (group, members)) in groups.into_iter().enumerate() {
            let run = self.plan_part(&campaign, &planning, part as u32, &group, &members).await?;
            self.check_schedule(&campaign, &run, &group, &members, planning.now).await?;
            planned.push((run, group, members));
        }
        let file_hardware = self.file_hardware(&campaign)?;
        let mut runs = Vec::with_capacity(planned.len());
        // Every run, its devices and the campaign's status commit together.
        let mut tx = Batch::default();
        for (run, group, members) in planned {
            // Indexed first: a crash before the run is stored leaves an
            // entry readers skip, never a run that cannot be found.
            self.store.index_running(&run.id(), members.iter().map(|d| d.dev_eui.to_string()))?;
            for device in &members {
                tx.put(&self.enrol(&run, &group, device, &file_hardware)?);
            }
            tx.put(&run);
            tracing::info!(campaign = %run.campaign_id, part = run.part, group = %run.group, devices = members.len(), stages = run.stages.len(), "campaign run planned");
            runs.push(run);
        }
        self.set_campaign_status(campaign_id, CampaignStatus::Running, &mut tx)?;
        self.store.commit(tx)?;
        self.store.flush()?;
        tracing::info!(campaign = %campaign_id, devices = devices.len(), groups = runs.len(), "campaign started");
        Ok(runs)
    }

    /// Every device of the campaign's sets, once each, in DevEUI order.
    fn campaign_devices(&self, campaign: &Campaign) -> Result<Vec<Eui>, EngineError> {
        let mut devices: Vec<Eui> = Vec::new();
        for set in &campaign.device_sets {
            let set = self.store.get::<DeviceSet>(set)?.ok_or_else(|| EngineError::Invalid(format!("device set {set} is gone")))?;
            devices.extend(set.devices);
        }
        devices.sort();
        devices.dedup();
        if devices.is_empty() {
            return Err(EngineError::Invalid("no devices".into()));
        }
        Ok(devices)
    }

    /// What every run of the campaign shares: its payload, its library
    /// and what the library says of itself, its deadline from now.
    async fn planning(&self, campaign: &Campaign, options: RunOptions, parts: u32, campaign_devices: usize) -> Result<Planning, EngineError> {
        let library = self.runtime.active(&campaign.device_library)?;
        if library.manifest.kind != PluginKind::DeviceLibrary {
            return Err(EngineError::Invalid(format!("{} is not a device library", campaign.device_library)));
        }
        let now = self.now();
        Ok(Planning {
            payload: self.payload(campaign).await?,
            info: self.runtime.device_library(&library).describe().await?,
            library,
            options,
            parts,
            campaign_devices,
            now,
            deadline_ms: now + campaign.max_duration_minutes as u64 * 60_000,
        })
    }

    /// The campaign's devices by multicast group: the group a device
    /// names (seed 002's `mcGroup`), else the first group of the
    /// campaign's first region. A named group must be one of the
    /// campaign's regions. The devices are read once, here, for all that
    /// planning needs of them.
    fn partition(&self, campaign: &Campaign, devices: &[Eui]) -> Result<Vec<(MulticastGroup, Vec<Device>)>, EngineError> {
        let mut in_regions: Vec<Eui> = Vec::new();
        for id in &campaign.regions {
            let region = self.store.get::<Region>(id)?.ok_or_else(|| EngineError::Invalid(format!("region {id} is gone")))?;
            in_regions.extend(region.multicast_groups);
        }
        let default = *in_regions.first().ok_or_else(|| EngineError::Invalid("the campaign's regions have no multicast group".into()))?;
        let mut by_group: BTreeMap<Eui, Vec<Device>> = BTreeMap::new();
        for dev in devices {
            let device = self.store.get::<Device>(&dev.to_string())?.ok_or_else(|| EngineError::Invalid(format!("device {dev} is gone")))?;
            let group = device.mc_group.unwrap_or(default);
            if !in_regions.contains(&group) {
                return Err(EngineError::Invalid(format!("device {dev} names multicast group {group}, which is in none of the campaign's regions")));
            }
            by_group.entry(group).or_default().push(device);
        }
        // The default group first: a one-group campaign's run keeps the campaign's id.
        let mut order: Vec<Eui> = by_group.keys().copied().collect();
        order.sort_by_key(|g| (*g != default, in_regions.iter().position(|r| r == g)));
        order
            .into_iter()
            .map(|eui| {
                let group = self.store.get::<MulticastGroup>(&eui.to_string())?.ok_or_else(|| EngineError::Invalid(format!("multicast group {eui} is gone")))?;
                Ok((group, by_group.remove(&eui).unwrap_or_default()))
            })
            .collect()
    }

    /// A device, and a multicast group, serve one running campaign at a
    /// time; the refusal names what is held and by which campaign.
    fn check_conflicts(&self, campaign: &Campaign, groups: &[(MulticastGroup, Vec<Device>)], devices: &[Eui]) -> Result<(), EngineError> {
        let mut held = Vec::new();
        for other in self.running()?.iter().filter(|r| r.campaign_id != campaign.id) {
            if groups.iter().any(|(g, _)| g.dev_eui == other.group) {
                held.push(format!("multicast group {} (group id and FragIndex slots) is in use by running campaign {}", other.group, other.campaign_id));
            }
            let busy: Vec<String> = DeviceRun::all_of(&self.store, other)?.iter().filter(|d| d.active() && devices.binary_search(&d.dev_eui).is_ok()).map(|d| d.dev_eui.to_string()).collect();
            if !busy.is_empty() {
                const NAMED: usize = 10;
                let more = if busy.len() > NAMED { format!(" and {} more", busy.len() - NAMED) } else { String::new() };
                held.push(format!("device {}{more} in running campaign {}", busy[..busy.len().min(NAMED)].join(", "), other.campaign_id));
            }
        }
        match held.is_empty() {
            true => Ok(()),
            false => Err(EngineError::Invalid(held.join("; "))),
        }
    }

    /// A campaign's own session start must leave its setup time to end
    /// first, even with no frame lost: else it is refused, with why.
    async fn check_schedule(&self, campaign: &Campaign, run: &CampaignRun, group: &MulticastGroup, members: &[Device], now: u64) -> Result<(), EngineError> {
        let Some(at) = campaign.session_start else { return Ok(()) };
        let fastest = self.estimate_run(campaign, run, group, members, estimate::Assumptions { loss: 0.0 }).await?;
        let Some(setup_s) = fastest.session_starts_after_s else { return Ok(()) };
        let ready_ms = now + setup_s * 1000;
        if (at.timestamp_millis().max(0) as u64) < ready_ms {
            let ready = chrono::DateTime::from_timestamp_millis(ready_ms as i64).unwrap_or_default();
            return Err(EngineError::Invalid(format!(
                "the session start {at} is too early: multicast group {}'s setup (its retries and its devices' uplink period included) ends at {ready} at the earliest",
                group.dev_eui
            )));
        }
        Ok(())
    }

    /// Plan one group's run: its fragment layout (the group's data rate
    /// sets the fragment size), the library's stages, and what its network
    /// can do.
    async fn plan_part(&self, campaign: &Campaign, p: &Planning, part: u32, group: &MulticastGroup, members: &[Device]) -> Result<CampaignRun, EngineError> {
        let library = &p.library;
        let file_size = p.payload.as_ref().map_or(0, |p| p.size);
        let layout = match &p.payload {
            Some(_) => {
                let max = lorawan_fuota::region::max_app_payload(context::band(group.ism_band), group.data_rate, group.dl_dwell_time)
                    .ok_or_else(|| EngineError::Invalid(format!("DR{} is not a downlink data rate of {:?}", group.data_rate, group.ism_band)))?;
                let l = self
                    .runtime
                    .device_library(library)
                    .fragment_layout(file_size, max)
                    .await?
                    .map_err(|e| EngineError::Library(format!("{e:?}")))?;
                Some(FragLayout { frag_index: 0, nb_frag: l.nb_frag, frag_size: l.frag_size, padding: l.padding, descriptor: 0, block_ack_delay: l.block_ack_delay })
            }
            None => None,
        };
        // The operator's fixed redundancy for the group, else the closed loop.
        let fixed_redundancy_pct = p.options.fixed_redundancy_pct.or(group.fixed_redundancy_pct());
        if let Some(l) = &layout {
            // Refused now, with the reason, rather than mid-session.
            step::fixed_fragment_count(l.nb_frag, fixed_redundancy_pct)?;
        }
        if let Some(l) = layout.as_ref().filter(|l| l.nb_frag > p.info.max_fragments) {
            return Err(EngineError::Invalid(format!("the file makes {} fragments at group {}'s DR{}; {} takes at most {}", l.nb_frag, group.dev_eui, group.data_rate, p.info.name, p.info.max_fragments)));
        }
        let library_ports: Vec<(String, u8)> = p.info.ports.iter().map(|p| (p.package_name.clone(), p.fport)).collect();
        // One multicast group means one set of FPorts: its devices must agree.
        let mut fports: Option<BTreeMap<String, u8>> = None;
        for device in members {
            let overrides = self.profile_fports(device)?;
            PortMap::new(&library_ports, &overrides).map_err(|e| EngineError::Invalid(format!("device {}: {e}", device.dev_eui)))?;
            match &fports {
                Some(f) if *f != overrides => return Err(EngineError::Invalid(format!("devices of multicast group {} use different FPorts", group.dev_eui))),
                _ => fports = Some(overrides),
            }
        }
        let payload = p.payload.as_ref();
        let mut run = CampaignRun {
            campaign_id: campaign.id.clone(),
            part,
            parts: p.parts,
            campaign_device_count: p.campaign_devices,
            stages: vec![],
            stage: 0,
            stage_started_ms: p.now,
            round: 0,
            round_sent_ms: None,
            started_ms: p.now,
            deadline_ms: p.deadline_ms,
            library_sha256: library.sha256.clone(),
            library_name: library.manifest.name.clone(),
            library_ports,
            fports: fports.unwrap_or_default(),
            group: group.dev_eui,
            group_backend: None,
            device_count: members.len(),
            success_threshold: campaign.success_threshold,
            payload_sha256: payload.map(|p| p.sha256.clone()),
            payload_size: file_size,
            base_firmware: payload.and_then(|p| p.base_firmware),
            layout,
            session_start_gps: 0,
            scheduled_session_gps: campaign.session_start.map(|t| crate::clock::unix_ms_to_gps_seconds(t.timestamp_millis().max(0) as u64)),
            session_timeout: 0,
            reboot_gps: campaign.reboot_at.map(|t| crate::clock::unix_ms_to_gps_seconds(t.timestamp_millis().max(0) as u64)),
            target_firmware: p.options.target_firmware.or(payload.and_then(|p| p.firmware)),
            next_fcnt: 0,
            fcnt_reserved: 0,
            next_fragment: 1,
            fragments_target: 0,
            fragments_sent: 0,
            coded_numbers: Vec::new(),
            extra_rounds: 0,
            fixed_redundancy_pct,
            status: RunStatus::Running,
            error: None,
            finished_ms: None,
            next_action_ms: 0,
            network_failures: 0,
            network_trouble: None,
            offload_handle: None,
            archived: false,
            answer_rate: None,
        };
        let ctx = context::campaign(&run, context::kind(campaign.campaign_type), group, false);
        let plan = self
            .runtime
            .device_library(library)
            .plan(ctx)
            .await?
            .map_err(|e| EngineError::Library(format!("{e:?}")))?;
        run.stages = plan
            .into_iter()
            .map(|s| Stage { name: s.name, mode: context::mode(s.mode), retry_limit: s.retry_limit, answer_timeout_s: s.answer_timeout_s, required: s.required })
            .collect();
        check_plan(&run.stages)?;
        // A network that runs whole sessions itself (a gateway) gets the
        // group as one offloaded stage; it checks the image itself.
        let backend = backend_of(campaign, group);
        if self.network.offloads(backend).await? {
            run.stages = vec![Stage { name: OFFLOADED_STAGE.into(), mode: StageMode::Offloaded, retry_limit: 0, answer_timeout_s: 0, required: true }];
            run.target_firmware = None;
        } else if campaign.campaign_type == CampaignType::Message {
            return Err(EngineError::Invalid("a message campaign needs a network that sends multicast messages itself (gateway-rest)".into()));
        } else {
            let can = self.network.capabilities(backend).await?;
            let class_ok = match group.session_class {
                SessionClass::B => can.multicast_class_b,
                SessionClass::C => can.multicast_class_c,
            };
            if !class_ok {
                return Err(EngineError::Invalid(format!("backend instance {backend} cannot send class {:?} multicast", group.session_class)));
            }
            if !can.unicast && run.stages.iter().any(|s| matches!(s.mode, StageMode::Unicast | StageMode::DeviceInitiated)) {
                return Err(EngineError::Invalid(format!("backend instance {backend} sends no unicast downlinks, which the device library's plan needs")));
            }
        }
        Ok(run)
    }

    /// A device's record in a new run; refused (with the reason) when its
    /// hardware, multicast classes or running firmware do not fit.
    fn enrol(&self, run: &CampaignRun, group: &MulticastGroup, device: &Device, file_hardware: &FileHardware) -> Result<DeviceRun, EngineError> {
        let profile = self.profile(device.device_profile.as_ref())?;
        let mut dev_run = DeviceRun::new(run, device.dev_eui);
        dev_run.uplink_period_s = uplink_period_s(device, profile.as_ref());
        if let Some(stack) = profile.as_ref().and_then(|p| p.device_stack) {
            dev_run.stack_known = true;
            dev_run.counts_losses = stack == crate::model::DeviceStack::LoramacNode;
        }
        if let Some(why) = file_hardware.refuses(profile.as_ref()) {
            dev_run.failed = Some(why);
        }
        if !device.multicast_classes.contains(&group.session_class) {
            dev_run.failed = Some(format!("cannot join a class {:?} multicast session (its multicastClasses)", group.session_class));
        }
        // A delta only fits its base: refuse devices known to run another version.
        if let (Some(base), Some(running)) = (run.base_firmware, device.firmware.as_deref().and_then(|v| crate::model::parse_firmware_version("firmware", v).ok())) {
            if running != base {
                dev_run.firmware_version = Some(running);
                dev_run.failed = Some(step::wrong_base(running, base));
            }
        }
        Ok(dev_run)
    }

    /// Move a campaign to another backend instance, even while it runs: the
    /// next step sends through it (and provisions the group there first).
    pub async fn switch_backend(&self, campaign_id: &str, instance: &str) -> Result<Campaign, EngineError> {
        let _held = self.lock(campaign_id).await;
        let mut campaign = self.campaign(campaign_id)?;
        if !matches!(campaign.status, CampaignStatus::Configured | CampaignStatus::Running) {
            return Err(EngineError::Invalid(format!("status is {:?}: the campaign is over", campaign.status)));
        }
        match self.store.get::<crate::model::BackendInstance>(instance)? {
            Some(i) if !i.archived => {}
            _ => return Err(EngineError::Invalid(format!("no backend instance '{instance}'"))),
        }
        tracing::info!(campaign = %campaign_id, from = %campaign.backend_instance, to = %instance, "backend instance switched");
        campaign.backend_instance = instance.to_string();
        campaign.last_changed = chrono::DateTime::from_timestamp_millis(self.now() as i64).unwrap_or_default();
        self.store.put(&campaign)?;
        self.store.flush()?;
        Ok(campaign)
    }

    /// Stop a running campaign; devices fall back to class A.
    pub async fn stop(&self, campaign_id: &str) -> Result<(), EngineError> {
        for run in self.mark_stopped(campaign_id).await? {
            self.wind_down(&run).await?;
        }
        Ok(())
    }

    /// The first half of a stop: every run of the campaign is STOPPED on
    /// disk. Returns the runs that were running, for [`Self::wind_down`].
    pub async fn mark_stopped(&self, campaign_id: &str) -> Result<Vec<CampaignRun>, EngineError> {
        let first = self.store.get::<CampaignRun>(campaign_id)?.ok_or_else(|| EngineError::NotFound(campaign_id.into()))?;
        let mut stopped = Vec::new();
        for id in first.sibling_ids() {
            let _held = self.lock(&id).await;
            let Some(mut run) = self.store.get::<CampaignRun>(&id)?.filter(|r| r.status == RunStatus::Running) else { continue };
            run.status = RunStatus::Stopped;
            run.finished_ms = Some(self.now());
            let mut tx = Batch::default();
            tx.put(&run);
            // The campaign is STOPPED with its first run that stops.
            if stopped.is_empty() {
                self.set_campaign_status(campaign_id, CampaignStatus::Stopped, &mut tx)?;
            }
            self.store.commit(tx)?;
            self.unindex(&run)?;
            stopped.push(run);
        }
        self.store.flush()?;
        Ok(stopped)
    }

    /// The second half, on the network and without the run's lock:
    /// cancel a gateway's session, end the multicast session, and tell the
    /// devices to drop what they were set up for.
    pub async fn wind_down(&self, run: &CampaignRun) -> Result<(), EngineError> {
        if let Some(handle) = &run.offload_handle {
            let (backend, _) = self.network_of(run)?;
            if let Err(e) = self.network.offload_cancel(&backend, handle).await {
                tracing::warn!(campaign = %run.campaign_id, error = %e, "the gateway's session could not be cancelled");
            }
        }
        self.end_session(run).await?;
        self.tear_down(run).await
    }

    /// A run's backend instance and multicast group, as stored now.
    fn network_of(&self, run: &CampaignRun) -> Result<(String, MulticastGroup), EngineError> {
        let group = self.store.get::<MulticastGroup>(&run.group.to_string())?.ok_or_else(|| EngineError::Invalid(format!("multicast group {} is gone", run.group)))?;
        let campaign = self.campaign(&run.campaign_id)?;
        Ok((backend_of(&campaign, &group).to_string(), group))
    }

    /// Undo what the devices of a stopped or failed run were set up for,
    /// once and without retries (see `campaign-context.cancelling`).
    async fn tear_down(&self, run: &CampaignRun) -> Result<(), EngineError> {
        let (backend, group) = self.network_of(run)?;
        let library = self.library(run).await?;
        let ctx = context::campaign(run, context::kind(self.campaign_type(run)?), &group, true);
        let ports = Self::ports(run);
        let last = run.stages.len().saturating_sub(1);
        // A device that succeeded or runs the new image is never torn back.
        for dev in self.members(run, &Batch::default())?.into_iter().filter(|d| d.stage > 0 && !d.succeeded && !step::runs_new_image(run, d)) {
            let Some(device) = self.store.get::<Device>(&dev.dev_eui.to_string())? else { continue };
            let mut stages: Vec<usize> = (0..dev.stage.min(run.stages.len())).rev().collect();
            if !stages.contains(&last) {
                stages.push(last);
            }
            for i in stages.into_iter().filter(|i| run.stages[*i].mode == StageMode::Unicast) {
                let (name, dctx, cctx) = (run.stages[i].name.clone(), context::device(&device, &dev), ctx.clone());
                let built = self.runtime.device_library(&library).build_request(name, Some(dctx), cctx).await;
                let downlinks = match built {
                    Ok(Ok(d)) => d,
                    Ok(Err(e)) => {
                        tracing::warn!(device = %dev.dev_eui, stage = %run.stages[i].name, error = ?e, "no teardown request");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(device = %dev.dev_eui, error = %e, "device library failed building a teardown request");
                        continue;
                    }
                };
                for d in downlinks {
                    if let Err(e) = self.network.send_unicast(&backend, dev.dev_eui, ports.to_air(d.fport), d.payload).await {
                        tracing::warn!(device = %dev.dev_eui, error = %e, "teardown downlink failed");
                    }
                }
            }
        }
        Ok(())
    }

    /// Tell the run's network that its multicast session is over.
    async fn end_session(&self, run: &CampaignRun) -> Result<(), EngineError> {
        let (backend, group) = self.network_of(run)?;
        self.network.end_session(&backend, &group).await;
        Ok(())
    }

    /// The device records of one run.
    fn members(&self, run: &CampaignRun, tx: &Batch) -> Result<Vec<DeviceRun>, EngineError> {
        Ok(DeviceRun::all_in(&self.store, tx, run)?)
    }

    /// Every run of a campaign with its devices.
    pub fn parts(&self, campaign_id: &str) -> Result<Vec<run::Part>, EngineError> {
        self.parts_in(campaign_id, &Batch::default())
    }

    /// [`Self::parts`] as a step's writes not yet committed leave them.
    fn parts_in(&self, campaign_id: &str, tx: &Batch) -> Result<Vec<run::Part>, EngineError> {
        run::parts_in(&self.store, tx, campaign_id)?.ok_or_else(|| EngineError::NotFound(campaign_id.into()))
    }

    /// The device records of every run of a campaign.
    pub fn device_runs(&self, campaign_id: &str) -> Result<Vec<DeviceRun>, EngineError> {
        Ok(self.parts(campaign_id)?.into_iter().flat_map(|p| p.devices).collect())
    }

    /// Every running campaign run, from the running index: campaigns that
    /// are over cost nothing here.
    pub fn running(&self) -> Result<Vec<CampaignRun>, EngineError> {
        let mut running = Vec::new();
        for id in self.store.running_campaigns()? {
            match self.store.get::<CampaignRun>(&id)? {
                Some(run) if run.status == RunStatus::Running => running.push(run),
                // Left by a crash between a run's end and its unindexing.
                Some(run) => self.unindex(&run)?,
                None => self.store.unindex_running(&id, [])?,
            }
        }
        Ok(running)
    }

    /// Index the running campaigns a store from before the running index
    /// holds (once, when a host starts; indexing is idempotent).
    pub fn index_running_runs(&self) -> Result<(), EngineError> {
        for run in self.store.list::<CampaignRun>(false)?.into_iter().filter(|r| r.status == RunStatus::Running) {
            let devices = DeviceRun::all_of(&self.store, &run)?;
            self.store.index_running(&run.id(), devices.iter().map(|d| d.dev_eui.to_string()))?;
        }
        Ok(())
    }

    /// Drop a run that is over from the running index.
    fn unindex(&self, run: &CampaignRun) -> Result<(), EngineError> {
        let devices = DeviceRun::all_of(&self.store, run)?;
        Ok(self.store.unindex_running(&run.id(), devices.iter().map(|d| d.dev_eui.to_string()))?)
    }

    /// An uplink from a device: parsed by the library of each running
    /// campaign run that has the device, answers recorded, replies sent
    /// once the run's lock is released. `via`: the backend instance the
    /// uplink came through; only runs sent through it take it (`None`: the
    /// engine's own in-process network). Returns the runs that recorded
    /// an answer.
    #[tracing::instrument(level = "debug", skip(self, payload), fields(device = %dev_eui))]
    pub async fn on_uplink(&self, via: Option<&str>, dev_eui: Eui, fport: u8, payload: Vec<u8>) -> Result<Vec<String>, EngineError> {
        let mut answered = Vec::new();
        let mut replies_due = Vec::new();
        // The index names the running runs that have this device: no
        // other campaign is looked at, let alone waited on.
        for run_id in self.store.running_campaigns_of(&dev_eui.to_string())? {
            let _held = self.lock(&run_id).await;
            // Read under the lock: a step may have moved it on.
            let Some(run) = self.store.get::<CampaignRun>(&run_id)?.filter(|r| r.status == RunStatus::Running) else { continue };
            let campaign = self.campaign(&run.campaign_id)?;
            let Some(group) = self.store.get::<MulticastGroup>(&run.group.to_string())? else { continue };
            let backend = backend_of(&campaign, &group).to_string();
            if via.is_some_and(|v| v != backend) {
                continue;
            }
            let Some(mut dev_run) = self.store.get::<DeviceRun>(&DeviceRun::key(&run_id, dev_eui))? else { continue };
            let Some(device) = self.store.get::<Device>(&dev_eui.to_string())? else { continue };
            let library = self.library(&run).await?;
            let ports = Self::ports(&run);
            let campaign_ctx = context::campaign(&run, context::kind(campaign.campaign_type), &group, false);
            let device_ctx = context::device(&device, &dev_run);
            let fport = ports.to_library(fport);
            let parsed = self.runtime.device_library(&library).parse_uplink(fport, payload.clone(), device_ctx, campaign_ctx).await;
            let events = match parsed {
                Ok(Ok(events)) => events,
                Ok(Err(e)) => {
                    tracing::warn!(device = %dev_eui, fport, error = ?e, "uplink not understood");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(device = %dev_eui, fport, error = %e, "device library failed on an uplink");
                    continue;
                }
            };
            let mut replies = Vec::new();
            for event in events {
                match event {
                    lib::UplinkEvent::Answer(a) => {
                        step::record_answer(&run, &mut dev_run, a);
                        if answered.last() != Some(&run_id) {
                            answered.push(run_id.clone());
                        }
                    }
                    lib::UplinkEvent::Reply(d) => replies.push(d),
                    lib::UplinkEvent::Remember(a) => {
                        dev_run.memory.retain(|(k, _)| *k != a.key);
                        dev_run.memory.push((a.key, a.value));
                    }
                    lib::UplinkEvent::Note(n) => tracing::debug!(device = %dev_eui, "{n}"),
                }
            }
            self.store.put(&dev_run)?;
            replies_due.extend(replies.into_iter().map(|d| (backend.clone(), ports.to_air(d.fport), d.payload)));
        }
        // No campaign lock is held while the network is asked.
        for (backend, fport, payload) in replies_due {
            if let Err(e) = self.network.send_unicast(&backend, dev_eui, fport, payload).await {
                tracing::warn!(device = %dev_eui, error = %e, "reply to a device request failed");
            }
        }
        Ok(answered)
    }

    fn campaign_type(&self, run: &CampaignRun) -> Result<CampaignType, EngineError> {
        Ok(self.campaign(&run.campaign_id)?.campaign_type)
    }
}

/// How often a device sends uplinks: its own rate, else its profile's
/// period; 0 if unknown.
fn uplink_period_s(device: &Device, profile: Option<&DeviceProfile>) -> u32 {
    device.uplink_rate.or(profile.and_then(|p| p.default_ul_period)).unwrap_or(0)
}

/// The hardware a file is for.
#[derive(Default)]
struct FileHardware {
    profile: Option<DeviceProfile>,
    target: Option<String>,
}

impl FileHardware {
    /// Why a device of `device`'s profile does not take the file; None
    /// when it does.
    fn refuses(&self, device: Option<&DeviceProfile>) -> Option<String> {
        if let Some(why) = self.profile.as_ref().and_then(|file| other_hardware(file, device)) {
            return Some(why);
        }
        let target = self.target.as_ref()?;
        let theirs = device.and_then(|d| d.hw_target.as_ref());
        (theirs != Some(target)).then(|| format!("hardware type {}; the file is for {target} (hwTarget)", theirs.map_or("unknown (no hwTarget in its profile)", String::as_str)))
    }
}

/// Why a device's hardware does not take a file made for `file`'s
/// profile: another profile with other hardware (HW version and revision),
/// or none. None when it fits.
fn other_hardware(file: &DeviceProfile, device: Option<&DeviceProfile>) -> Option<String> {
    let hardware = |p: &DeviceProfile| (p.hw_version.clone(), p.hw_revision.clone());
    match device {
        Some(d) if d.id == file.id => None,
        Some(d) if hardware(d) == hardware(file) && hardware(file) != (None, None) => None,
        Some(d) => Some(format!(
            "hardware {:?} rev {:?} (profile {}); the file is for {:?} rev {:?} (profile {})",
            d.hw_version, d.hw_revision, d.name, file.hw_version, file.hw_revision, file.name
        )),
        None => Some(format!("no device profile: the file is for the hardware of profile {}", file.name)),
    }
}

/// A plan the engine can run: a multicast status stage closes the loop of
/// a fragment stage before it, so one without the other cannot run.
fn check_plan(stages: &[Stage]) -> Result<(), EngineError> {
    let first_fragments = stages.iter().position(|s| s.mode == StageMode::Fragments);
    for (i, stage) in stages.iter().enumerate() {
        if stage.mode == StageMode::Multicast && first_fragments.is_none_or(|f| f > i) {
            return Err(EngineError::Invalid(format!("the device library's plan has the multicast stage {} without a fragment stage before it", stage.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, mode: StageMode) -> Stage {
        Stage { name: name.into(), mode, retry_limit: 1, answer_timeout_s: 60, required: true }
    }

    #[test]
    fn the_session_start_is_set_by_the_stage_before_the_session_whatever_its_name() {
        let unicast = |name: &str| stage(name, StageMode::Unicast);
        let fota = [unicast("McGroupSetup"), unicast("FragSessionSetup"), unicast("VendorSession"), stage("Wait", StageMode::WaitSessionStart), stage("DataFragment", StageMode::Fragments)];
        assert_eq!(step::session_setup_stage(&fota), Some(2));
        let setup_only = [unicast("PackageVersion"), unicast("McGroupSetup"), unicast("StartSession")];
        assert_eq!(step::session_setup_stage(&setup_only), Some(2));
        assert_eq!(step::session_setup_stage(&[stage("GatewaySession", StageMode::Offloaded)]), None);
    }

    #[test]
    fn fixed_redundancy_stays_within_the_fragment_numbers() {
        assert_eq!(step::fixed_fragment_count(84, None).unwrap(), 84);
        assert_eq!(step::fixed_fragment_count(84, Some(50)).unwrap(), 126);
        assert!(matches!(step::fixed_fragment_count(84, Some(u32::MAX)), Err(EngineError::Invalid(why)) if why.contains("16383")));
        assert!(step::fixed_fragment_count(16_000, Some(3)).is_err());
    }

    #[test]
    fn a_session_is_over_after_its_timeout_by_class() {
        use crate::clock::gps_seconds_to_unix_ms;
        use crate::model::SessionClass;
        let start = 1_400_000_000;
        let at = |s: u64| gps_seconds_to_unix_ms(start + s);
        // Class C lasts 2^t s, class B 128·2^t s.
        assert!(!step::session_over(start, 10, SessionClass::C, at(1023)));
        assert!(step::session_over(start, 10, SessionClass::C, at(1024)));
        assert!(!step::session_over(start, 3, SessionClass::B, at(1023)));
        assert!(step::session_over(start, 3, SessionClass::B, at(1024)));
        // Not started yet: nothing is over.
        assert!(!step::session_over(0, 0, SessionClass::C, at(1_000_000)));
    }

    #[test]
    fn a_multicast_stage_needs_a_fragment_stage_before_it() {
        let status = stage("FragSessionStatus", StageMode::Multicast);
        let fragments = stage("DataFragment", StageMode::Fragments);
        assert!(matches!(check_plan(&[status.clone()]), Err(EngineError::Invalid(why)) if why.contains("FragSessionStatus")));
        assert!(check_plan(&[status.clone(), fragments.clone()]).is_err(), "the fragments must come first");
        assert!(check_plan(&[fragments, status]).is_ok());
    }
}
