//! A simulated fleet behind a simulated network: N device models with
//! independent or bursty loss, uplink delays, clock drift, and devices that
//! stay silent, hold the wrong key or cannot do class C. Implements the
//! engine's [`Network`]; [`run_to_end`] drives a campaign in virtual time.

use crate::device::{DeviceModel, PackageVersion, Stack};
use crate::upgrade::{Firmware, Upgrade};
use crate::frame;
use airlift::clock::{Clock, ManualClock};
use airlift::engine::{Capabilities, Engine, EngineError, Network, NetworkError, OffloadJob, OffloadStatus, Pacing};
use airlift::keys::Vault;
use lorawan_fuota::keys as lorawan;
use airlift::model::{Eui, MulticastGroup};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

/// How a simulated device misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Never answers anything.
    Silent,
    /// Its root key differs from the one the server holds.
    WrongKey,
    /// Refuses class C sessions.
    NoClassC,
    /// Runs another firmware (version and image) than the fleet's.
    OtherFirmware,
    /// Lost its time: its clock reads about the GPS epoch until the server
    /// resynchronises it (TS003).
    UnsyncedClock,
    /// Its flash corrupts the file it rebuilt (one byte): a device that
    /// checks the file with the server (a Dot's CRC) must not install it.
    CorruptFlash,
}

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub seed: u64,
    /// Probability that a downlink or an uplink is lost.
    pub loss: f64,
    /// Gilbert-Elliott bursts: (P(good→bad), P(bad→bad)); loss is total in bad.
    pub burst: Option<(f64, f64)>,
    /// A unicast downlink reaches a class A device within this many seconds.
    pub uplink_period_s: u64,
    /// Clock offsets are drawn from ±this many seconds.
    pub clock_drift_s: i64,
    pub version: PackageVersion,
    /// Version a device reports once it installed a file that is no
    /// firmware package (a raw image).
    pub installed_firmware: u32,
    /// What the devices run before the campaign (and the key they trust).
    pub firmware: Firmware,
    pub pacing: Pacing,
    /// Packages the devices run off their default FPort: (default, on air).
    pub moved_ports: Vec<(u8, u8)>,
    /// Device stacks, given to the devices in turn (round robin).
    pub stacks: Vec<Stack>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            loss: 0.0,
            burst: None,
            uplink_period_s: 60,
            clock_drift_s: 0,
            version: PackageVersion::V1,
            installed_firmware: 0x0200_0000,
            firmware: Firmware { version: 0x0100_0000, image: Default::default(), public_key: None },
            pacing: Pacing { multicast_interval_ms: 2000, unicast_interval_ms: 1000 },
            moved_ports: vec![],
            stacks: vec![Stack::Spec],
        }
    }
}

struct SimDevice {
    model: DeviceModel,
    behaviour: Behaviour,
    /// Channel state for bursty loss.
    in_burst: bool,
    /// Fragments of the current session heard, and at which multicast
    /// transmission the device had heard M of them.
    fragments_heard: u32,
    /// (the group's McAddr, that transmission's number in its group)
    heard_m_at: Option<(u32, u32)>,
    /// The same for the transmission after which its decoder had the file.
    decoded_at: Option<(u32, u32)>,
}

struct State {
    devices: BTreeMap<Eui, SimDevice>,
    rng: StdRng,
    /// Uplinks in flight: (due ms, sequence, device, fport, payload).
    uplinks: BinaryHeap<Reverse<(u64, u64, Eui, u8, Vec<u8>)>>,
    seq: u64,
    /// DataFragment transmissions so far, per multicast group (McAddr).
    fragment_transmissions: HashMap<u32, u32>,
    /// Unicast requests delivered, by (FPort, CID).
    unicast_requests: BTreeMap<(u8, u8), usize>,
    /// Uplinks handed to the server.
    uplinks_delivered: u64,
    /// Answers the server acknowledged, by (device, FPort, CID).
    acknowledged: BTreeSet<(Eui, u8, u8)>,
    /// Requests for a command the device's answer to was acknowledged.
    redone_requests: u64,
    /// Which (FPort, CID) those were, for a failing test to show.
    redone_commands: BTreeMap<(u8, u8), u64>,
    /// The network answers every call with a 500 until this time (ms).
    down_until_ms: u64,
    /// Calls refused that way.
    refused_calls: u64,
    /// DataFragment numbers sent per group (McAddr), and how many went
    /// out twice.
    fragment_numbers: BTreeSet<(u32, u16)>,
    repeated_fragments: u64,
    /// The highest multicast frame counter sent through this network.
    highest_multicast_fcnt: Option<u32>,
}

pub struct SimFleet {
    config: FleetConfig,
    clock: Arc<dyn Clock>,
    vault: Arc<Vault>,
    state: Mutex<State>,
}

/// One device of the fleet as the server should know it.
pub struct Provisioned {
    pub dev_eui: Eui,
    /// The key the server stores (differs from the device's for WrongKey).
    pub server_key: [u8; 16],
    pub behaviour: Behaviour,
}

impl SimFleet {
    /// `behaviours` gives each device's behaviour in order; DevEUIs start at `first_eui`.
    pub fn new(config: FleetConfig, clock: Arc<dyn Clock>, vault: Arc<Vault>, first_eui: u64, behaviours: &[Behaviour]) -> (Self, Vec<Provisioned>) {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let gps_now = clock.now_gps_seconds();
        let mut devices = BTreeMap::new();
        let mut provisioned = Vec::new();
        for (i, behaviour) in behaviours.iter().enumerate() {
            let eui = Eui(first_eui + i as u64);
            let key: [u8; 16] = rng.gen();
            let device_key = if *behaviour == Behaviour::WrongKey { rng.gen() } else { key };
            let mut model = DeviceModel::new(eui.0, device_key, false, config.version);
            model.supports_class_c = *behaviour != Behaviour::NoClassC;
            model.moved_ports = config.moved_ports.clone();
            model.raw_install_version = Some(config.installed_firmware);
            model.firmware = config.firmware.clone();
            if *behaviour == Behaviour::OtherFirmware {
                model.firmware.version ^= 0x0000_ff00;
                model.firmware.image = Arc::new(model.firmware.image.iter().map(|b| b ^ 0x5a).collect());
            }
            if config.clock_drift_s > 0 {
                model.clock_offset_s = rng.gen_range(-config.clock_drift_s..=config.clock_drift_s);
            }
            if let Some(stack) = config.stacks.get(i % config.stacks.len().max(1)) {
                model.stack = *stack;
            }
            model.corrupt_flash = *behaviour == Behaviour::CorruptFlash;
            if *behaviour == Behaviour::UnsyncedClock {
                model.lose_clock(gps_now);
            }
            devices.insert(eui, SimDevice { model, behaviour: *behaviour, in_burst: false, fragments_heard: 0, heard_m_at: None, decoded_at: None });
            provisioned.push(Provisioned { dev_eui: eui, server_key: key, behaviour: *behaviour });
        }
        let state = State {
            devices,
            rng,
            uplinks: BinaryHeap::new(),
            seq: 0,
            fragment_transmissions: HashMap::new(),
            unicast_requests: BTreeMap::new(),
            uplinks_delivered: 0,
            acknowledged: BTreeSet::new(),
            redone_requests: 0,
            redone_commands: BTreeMap::new(),
            down_until_ms: 0,
            refused_calls: 0,
            fragment_numbers: BTreeSet::new(),
            repeated_fragments: 0,
            highest_multicast_fcnt: None,
        };
        (Self { config, clock, vault, state: Mutex::new(state) }, provisioned)
    }

    /// Give a device the keys a server was told of (a seed ADD's), in
    /// place of those the fleet drew.
    pub fn set_keys(&self, eui: Eui, root_key: [u8; 16], given_mc_ke_key: Option<[u8; 16]>) {
        if let Some(d) = self.state.lock().unwrap().devices.get_mut(&eui) {
            d.model.set_keys(root_key, given_mc_ke_key);
        }
    }

    /// The fleet's time (the host's, when they share a clock).
    pub fn now_unix_ms(&self) -> u64 {
        self.clock.now_unix_ms()
    }

    fn gps(&self) -> u64 {
        self.clock.now_gps_seconds()
    }

    /// Whether one frame to or from this device is lost.
    fn lost(config: &FleetConfig, rng: &mut StdRng, device: &mut SimDevice) -> bool {
        match config.burst {
            Some((enter, stay)) => {
                device.in_burst = rng.gen_bool(if device.in_burst { stay } else { enter });
                device.in_burst || rng.gen_bool(config.loss)
            }
            None => rng.gen_bool(config.loss),
        }
    }

    fn queue_replies(&self, st: &mut State, eui: Eui, replies: Vec<crate::DeviceReply>, earliest_ms: u64) {
        for r in replies {
            let delay = st.rng.gen_range(1_000..=self.config.uplink_period_s.max(1) * 1000);
            st.seq += 1;
            let seq = st.seq;
            st.uplinks.push(Reverse((earliest_ms + delay, seq, eui, r.fport, r.payload)));
        }
    }

    /// Uplinks due by now, in order, with the lost ones dropped.
    pub fn take_due_uplinks(&self) -> Vec<(Eui, u8, Vec<u8>)> {
        self.take_due_uplinks_heard_by(|_| true)
    }

    /// [`Self::take_due_uplinks`] for a network that hears only the
    /// devices `hears` names (the others are behind another network; their
    /// uplinks stay for it).
    pub fn take_due_uplinks_heard_by(&self, hears: impl Fn(Eui) -> bool) -> Vec<(Eui, u8, Vec<u8>)> {
        let now = self.clock.now_unix_ms();
        let mut st = self.state.lock().unwrap();
        let mut due = Vec::new();
        let mut elsewhere = Vec::new();
        while st.uplinks.peek().is_some_and(|Reverse(u)| u.0 <= now) {
            let Reverse(uplink) = st.uplinks.pop().unwrap();
            if !hears(uplink.2) {
                elsewhere.push(Reverse(uplink));
                continue;
            }
            let (_, _, eui, fport, payload) = uplink;
            let State { devices, rng, .. } = &mut *st;
            let Some(d) = devices.get_mut(&eui) else { continue };
            // Requests the device repeats until answered (FragDataBlockReceivedReq, a Dot's CRC).
            let repeat = d.model.repeats(fport, &payload);
            let lost = Self::lost(&self.config, rng, d);
            if repeat {
                let reply = crate::DeviceReply { fport, payload: payload.clone() };
                self.queue_replies(&mut st, eui, vec![reply], now);
            }
            if !lost {
                due.push((eui, fport, payload));
            }
        }
        st.uplinks.extend(elsewhere);
        st.uplinks_delivered += due.len() as u64;
        due
    }

    /// Uplinks handed to the server so far.
    pub fn uplinks_delivered(&self) -> u64 {
        self.state.lock().unwrap().uplinks_delivered
    }

    /// The server acknowledged this uplink (it is stored): a request for
    /// the same command after this is work redone. Device-initiated clock
    /// requests (TS003, FPort 202) are not answers and are left out.
    pub fn acknowledge(&self, dev_eui: Eui, fport: u8, payload: &[u8]) {
        if let (Some(&cid), true) = (payload.first(), fport != lorawan_fuota::ports::CLOCK_SYNC) {
            self.state.lock().unwrap().acknowledged.insert((dev_eui, fport, cid));
        }
    }

    /// (requests for commands already answered and acknowledged, DataFragments sent twice).
    pub fn redone(&self) -> (u64, u64) {
        let st = self.state.lock().unwrap();
        (st.redone_requests, st.repeated_fragments)
    }

    /// The network fails every call (as an HTTP 500) until `until_ms`.
    pub fn outage_until(&self, until_ms: u64) {
        self.state.lock().unwrap().down_until_ms = until_ms;
    }

    /// The highest multicast frame counter sent through this network.
    pub fn highest_multicast_fcnt(&self) -> Option<u32> {
        self.state.lock().unwrap().highest_multicast_fcnt
    }

    /// Calls refused during outages.
    pub fn refused_calls(&self) -> u64 {
        self.state.lock().unwrap().refused_calls
    }

    fn check_up(&self) -> Result<(), NetworkError> {
        let mut st = self.state.lock().unwrap();
        if self.clock.now_unix_ms() < st.down_until_ms {
            st.refused_calls += 1;
            return Err(NetworkError::Unavailable("HTTP 500: simulated outage".into()));
        }
        Ok(())
    }

    /// Redone requests by (FPort, CID).
    pub fn redone_commands(&self) -> BTreeMap<(u8, u8), u64> {
        self.state.lock().unwrap().redone_commands.clone()
    }

    pub fn next_uplink_ms(&self) -> Option<u64> {
        self.state.lock().unwrap().uplinks.peek().map(|Reverse(u)| u.0)
    }

    /// The file a device holds, if any.
    pub fn received_file(&self, eui: Eui) -> Option<Vec<u8>> {
        self.state.lock().unwrap().devices.get(&eui).and_then(|d| d.model.received_file.clone())
    }

    /// The version a device runs and what it made of the last file.
    pub fn firmware(&self, eui: Eui) -> Option<(u32, Option<Upgrade>)> {
        self.state.lock().unwrap().devices.get(&eui).map(|d| (d.model.firmware.version, d.model.upgrade.clone()))
    }

    /// DataFragments a device decoded in its session.
    pub fn fragments_heard(&self, eui: Eui) -> Option<u32> {
        self.state.lock().unwrap().devices.get(&eui).map(|d| d.fragments_heard)
    }

    /// The image a device runs.
    pub fn image(&self, eui: Eui) -> Option<Arc<Vec<u8>>> {
        self.state.lock().unwrap().devices.get(&eui).map(|d| d.model.firmware.image.clone())
    }

    /// Unicast requests sent so far with this FPort and command id.
    pub fn unicast_requests(&self, fport: u8, cid: u8) -> usize {
        self.state.lock().unwrap().unicast_requests.get(&(fport, cid)).copied().unwrap_or(0)
    }

    pub fn in_session(&self, eui: Eui) -> bool {
        self.state.lock().unwrap().devices.get(&eui).is_some_and(|d| d.model.session.is_some())
    }

    /// For each device that heard M fragments, the transmission of its
    /// group at which it did; the maximum per group is the least any
    /// sender could have sent it, and the bound is their sum.
    pub fn fragments_lower_bound(&self) -> u32 {
        self.latest_per_group(|d| d.heard_m_at)
    }

    /// The same with each device's own decoder: when it had the file. Above
    /// the lower bound by what the code itself costs (TS004's parity rows
    /// are not independent for small M), which no sender can avoid.
    pub fn fragments_decoded_bound(&self) -> u32 {
        self.latest_per_group(|d| d.decoded_at)
    }

    fn latest_per_group(&self, at: impl Fn(&SimDevice) -> Option<(u32, u32)>) -> u32 {
        let mut per_group: HashMap<u32, u32> = HashMap::new();
        for (group, at) in self.state.lock().unwrap().devices.values().filter_map(at) {
            let most = per_group.entry(group).or_default();
            *most = (*most).max(at);
        }
        per_group.values().sum()
    }
}

impl SimFleet {
    /// A unicast downlink reaches the device (unless lost); its answers
    /// are queued as uplinks.
    pub fn deliver_unicast(&self, dev_eui: Eui, fport: u8, payload: &[u8]) -> Result<(), NetworkError> {
        let now = self.clock.now_unix_ms();
        let gps = self.gps();
        let mut st = self.state.lock().unwrap();
        let cid = payload.first().copied().unwrap_or(0);
        *st.unicast_requests.entry((fport, cid)).or_default() += 1;
        if st.acknowledged.contains(&(dev_eui, fport, cid)) {
            st.redone_requests += 1;
            *st.redone_commands.entry((fport, cid)).or_default() += 1;
        }
        let State { devices, rng, .. } = &mut *st;
        let Some(device) = devices.get_mut(&dev_eui) else { return Err(NetworkError::Refused(format!("unknown device {dev_eui}"))) };
        if device.behaviour == Behaviour::Silent || Self::lost(&self.config, rng, device) {
            return Ok(());
        }
        let replies = device.model.handle(fport, payload, gps).unwrap_or_default();
        self.queue_replies(&mut st, dev_eui, replies, now);
        Ok(())
    }

    /// A multicast frame goes out, encrypted with the group's session keys
    /// as a network server does; each device hears it unless lost.
    pub fn deliver_multicast(&self, keys: &GroupSessionKeys, fcnt: u32, fport: u8, payload: &[u8]) {
        let phy = frame::encode(&keys.app_s_key, &keys.net_s_key, keys.dev_addr, fcnt, fport, payload);
        self.transmit_multicast(keys.dev_addr, phy, payload);
    }

    /// A multicast frame whose FRMPayload the application encrypted goes
    /// out as it is: the network adds the header and the MIC only. A
    /// payload that was not encrypted for this group and `fcnt` reaches the
    /// devices as garbage.
    pub fn deliver_multicast_encrypted(&self, keys: &GroupSessionKeys, fcnt: u32, fport: u8, frm_payload: &[u8]) {
        let phy = frame::encode_encrypted(&keys.net_s_key, keys.dev_addr, fcnt, fport, frm_payload);
        self.transmit_multicast(keys.dev_addr, phy, &frame::decrypt(&keys.app_s_key, keys.dev_addr, fcnt, frm_payload));
    }

    /// Every device hears `phy` unless lost; `payload` is what it carries.
    fn transmit_multicast(&self, mc_addr: u32, phy: Vec<u8>, payload: &[u8]) {
        let is_fragment = payload.first() == Some(&0x08);
        let (now, gps) = (self.clock.now_unix_ms(), self.gps());
        let mut st = self.state.lock().unwrap();
        let transmission = if is_fragment {
            let number = payload.get(1..3).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) & 0x3fff);
            if !st.fragment_numbers.insert((mc_addr, number)) {
                st.repeated_fragments += 1;
            }
            let sent = st.fragment_transmissions.entry(mc_addr).or_default();
            *sent += 1;
            *sent
        } else {
            0
        };
        // Only devices in this group's session hear it (a large fleet has
        // many groups on the air at once).
        let euis: Vec<Eui> = st.devices.iter().filter(|(_, d)| d.model.listens_to(mc_addr)).map(|(e, _)| *e).collect();
        for eui in euis {
            let State { devices, rng, .. } = &mut *st;
            let device = devices.get_mut(&eui).unwrap();
            if Self::lost(&self.config, rng, device) || device.behaviour == Behaviour::Silent {
                continue;
            }
            let Ok(replies) = device.model.receive_multicast(&phy, gps) else { continue };
            if is_fragment {
                device.fragments_heard += 1;
                let m = device.model.frag_nb(0).unwrap_or(u32::MAX);
                if device.heard_m_at.is_none() && device.fragments_heard >= m {
                    device.heard_m_at = Some((mc_addr, transmission));
                }
                if device.decoded_at.is_none() && device.model.frag_progress(0).is_some_and(|p| p.complete) {
                    device.decoded_at = Some((mc_addr, transmission));
                }
            }
            self.queue_replies(&mut st, eui, replies, now);
        }
    }

    /// Devices that can hear a session a gateway runs itself, and how
    /// often a frame to each is lost: (device, silent, loss).
    pub fn gateway_reach(&self, euis: &[Eui]) -> Vec<(Eui, bool, f64)> {
        let st = self.state.lock().unwrap();
        euis.iter().filter_map(|e| st.devices.get(e).map(|d| (*e, d.behaviour == Behaviour::Silent, self.config.loss))).collect()
    }

    /// A session the network ran itself left this device with the whole file.
    pub fn deliver_file(&self, eui: Eui, file: &[u8]) {
        if let Some(d) = self.state.lock().unwrap().devices.get_mut(&eui) {
            d.model.take_file(file.to_vec());
        }
    }

    /// The group at `mc_addr` is done: its devices leave its multicast
    /// session (class A again).
    pub fn end_sessions(&self, mc_addr: u32) {
        for d in self.state.lock().unwrap().devices.values_mut() {
            d.model.end_session(mc_addr);
        }
    }
}

/// A multicast group's address and session keys, as a network server holds them.
#[derive(Debug, Clone)]
pub struct GroupSessionKeys {
    pub dev_addr: u32,
    pub app_s_key: [u8; 16],
    pub net_s_key: [u8; 16],
}

impl GroupSessionKeys {
    /// What a network server is given for a group: its address and the
    /// session keys derived from its McKey.
    pub fn of(group: &MulticastGroup, vault: &Vault) -> Result<Self, String> {
        let sealed = group.mc_key.as_ref().ok_or("the group has no McKey")?;
        let mc_key: [u8; 16] = vault.open_sealed(sealed).map_err(|e| e.to_string())?.expose().try_into().map_err(|_| "McKey length")?;
        let dev_addr = u32::from_str_radix(&group.dev_addr, 16).map_err(|_| "McAddr is not hex")?;
        Ok(Self { dev_addr, app_s_key: lorawan::mc_app_s_key(&mc_key, dev_addr), net_s_key: lorawan::mc_net_s_key(&mc_key, dev_addr) })
    }
}

/// The fleet as the engine's network, in process: session keys come
/// straight from the vault.
impl Network for SimFleet {
    async fn pacing(&self, _backend: &str) -> Result<Pacing, NetworkError> {
        self.check_up()?;
        Ok(self.config.pacing)
    }

    async fn capabilities(&self, _backend: &str) -> Result<Capabilities, NetworkError> {
        Ok(Capabilities::ALL)
    }

    async fn create_group(&self, _backend: &str, _group: &MulticastGroup, _devices: &[Eui], _next_fcnt: u32) -> Result<(), NetworkError> {
        self.check_up()
    }

    async fn send_unicast(&self, _backend: &str, dev_eui: Eui, fport: u8, payload: Vec<u8>) -> Result<(), NetworkError> {
        self.check_up()?;
        self.deliver_unicast(dev_eui, fport, &payload)
    }

    async fn send_multicast(&self, _backend: &str, group: &MulticastGroup, fcnt: u32, fport: u8, payload: Vec<u8>) -> Result<Option<u32>, NetworkError> {
        self.check_up()?;
        let keys = GroupSessionKeys::of(group, &self.vault).map_err(NetworkError::Refused)?;
        {
            let mut st = self.state.lock().unwrap();
            st.highest_multicast_fcnt = st.highest_multicast_fcnt.max(Some(fcnt));
        }
        self.deliver_multicast(&keys, fcnt, fport, &payload);
        Ok(None)
    }

    async fn end_session(&self, _backend: &str, group: &MulticastGroup) {
        self.end_sessions(group.mc_addr());
    }

    async fn offloads(&self, _backend: &str) -> Result<bool, NetworkError> {
        Ok(false)
    }

    async fn offload_start(&self, _backend: &str, _job: OffloadJob) -> Result<String, NetworkError> {
        Err(NetworkError::Refused("the simulated network runs no sessions itself".into()))
    }

    async fn offload_poll(&self, _backend: &str, _handle: &str) -> Result<OffloadStatus, NetworkError> {
        Err(NetworkError::Refused("the simulated network runs no sessions itself".into()))
    }

    async fn offload_cancel(&self, _backend: &str, _handle: &str) -> Result<(), NetworkError> {
        Ok(())
    }
}

/// Drive one campaign in virtual time: step the engine, deliver due
/// uplinks, jump the clock to the next event. `keep_going` sees the engine
/// after every step; returning false pauses (the campaign stays RUNNING).
/// Returns true when the campaign ended.
pub async fn drive(engine: &Engine<SimFleet>, clock: &ManualClock, campaign_id: &str, keep_going: impl FnMut(&Engine<SimFleet>) -> bool) -> Result<bool, EngineError> {
    drive_fleet(engine, &engine.network, clock, campaign_id, keep_going).await
}

/// [`drive`] for an engine whose network reaches `fleet` some other way
/// (a wrapper, or one network of several).
pub async fn drive_fleet<N: Network>(engine: &Engine<N>, fleet: &SimFleet, clock: &ManualClock, campaign_id: &str, keep_going: impl FnMut(&Engine<N>) -> bool) -> Result<bool, EngineError> {
    drive_campaigns(engine, fleet, clock, &[campaign_id], keep_going).await
}

/// [`drive_fleet`] for several campaigns at once on one fleet: each is
/// stepped as it falls due, uplinks go to whichever campaign the engine
/// routes them to. Returns true when every campaign ended.
pub async fn drive_campaigns<N: Network>(engine: &Engine<N>, fleet: &SimFleet, clock: &ManualClock, campaign_ids: &[&str], mut keep_going: impl FnMut(&Engine<N>) -> bool) -> Result<bool, EngineError> {
    loop {
        let mut wake: Option<u64> = None;
        for id in campaign_ids {
            wake = earliest(wake, step_all(engine, id).await?);
        }
        let go_on = keep_going(engine);
        let Some(wake) = wake else { return Ok(true) };
        if !go_on {
            return Ok(false);
        }
        // Deliver uplinks as they fall due until the engine wants to act,
        // looking in at most every STEP_AT_MOST_EVERY_MS of virtual time
        // in case the answers completed a stage (a step costs O(devices)).
        let mut answered = false;
        let look_in = clock.now_unix_ms() + STEP_AT_MOST_EVERY_MS;
        loop {
            for (eui, fport, payload) in fleet.take_due_uplinks() {
                engine.on_uplink(None, eui, fport, payload).await?;
                answered = true;
            }
            let now = clock.now_unix_ms();
            let next_uplink = fleet.next_uplink_ms().unwrap_or(u64::MAX);
            let until = if answered { wake.min(look_in) } else { wake };
            if next_uplink >= until {
                // Uplinks are handled in one-second batches of virtual time.
                clock.advance_to(until.max(now + 1_000));
                break;
            }
            clock.advance_to(next_uplink.max(now + 1_000));
        }
    }
}

/// Step every run of a campaign (one per multicast group); the earliest
/// wake of those still going, None once all are over.
async fn step_all<N: Network>(engine: &Engine<N>, campaign_id: &str) -> Result<Option<u64>, EngineError> {
    let ids: Vec<String> = match engine.store.get::<airlift::engine::CampaignRun>(campaign_id)? {
        Some(first) => first.sibling_ids().collect(),
        None => return Err(EngineError::NotFound(campaign_id.into())),
    };
    let mut wake: Option<u64> = None;
    for id in ids {
        wake = earliest(wake, engine.step(&id).await?);
    }
    Ok(wake)
}

/// The earlier of two wakes, either of which may be none.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How long uplinks may accumulate before the driver steps the engine.
const STEP_AT_MOST_EVERY_MS: u64 = 10_000;
