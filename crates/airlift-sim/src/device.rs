//! A device model: what a LoRaWAN end device running the FUOTA packages
//! does with each request, byte for byte. Parsing and answers are written
//! here from the device's point of view, not shared with the server codecs.
//!
//! A device behaves as one of the [`Stack`]s: the specifications' ideal,
//! what the public LoRaMac-node and LoRa Basics Modem stacks observably do,
//! or MultiTech's Dot library. `docs/device-stacks.md` lists each modelled
//! behaviour with the source file it was read from; `docs/multitech-mdot.md`
//! the Dot's, section by section.

use crate::frag_decoder::FragDecoder;
use crate::upgrade::{self, Firmware, Upgrade};
use crate::frame::Receiver;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};

/// Which version of the packages the device implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageVersion {
    V1,
    V2,
}

/// Which public device stack a simulated device behaves as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// The LoRa Alliance specifications' ideal.
    Spec,
    /// Semtech's LoRaMac-node (`LmhpFragmentation.c`, `FragDecoder.c`,
    /// `LmhpRemoteMcastSetup.c`, `LmhpClockSync.c`); its v2 form is the
    /// STM32CubeWL port of the same files.
    LoRaMacNode,
    /// Semtech's LoRa Basics Modem (SWL2001 `lorawan_packages/`).
    BasicsModem,
    /// MultiTech's mDot/xDot library as its Conduit FOTA note describes it
    /// (docs/multitech-mdot.md): 0-based fragment numbers, the all-zero
    /// McKEKey, and a CRC-64 of the file, `80 idx crc`, that the server
    /// must confirm before the device installs, then `90 idx`.
    MultiTechDot,
    /// The same, as the earliest Dot firmware sends its check: `80 crc`
    /// with no index, only `80 01` taken as ok, and no `90`.
    MultiTechDotEarly,
}

impl Stack {
    fn is_multitech(self) -> bool {
        matches!(self, Stack::MultiTechDot | Stack::MultiTechDotEarly)
    }
}

impl std::str::FromStr for Stack {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spec" => Ok(Stack::Spec),
            "loramac-node" => Ok(Stack::LoRaMacNode),
            "basics-modem" => Ok(Stack::BasicsModem),
            "multitech-dot" => Ok(Stack::MultiTechDot),
            "multitech-dot-early" => Ok(Stack::MultiTechDotEarly),
            other => Err(format!("unknown device stack {other:?} (spec, loramac-node, basics-modem, multitech-dot, multitech-dot-early)")),
        }
    }
}

/// FragDataBlockReceivedReq transmissions LoRa Basics Modem makes until the
/// server answers (`nb_transmit_ans = 3`).
const BASICS_MODEM_BLOCK_ACK_SENDS: u8 = 3;

/// CRC uplinks a Dot sends until the server answers (`attempts = 5`,
/// docs/multitech-mdot.md §1).
const MULTITECH_CRC_SENDS: u8 = 5;

/// CRC-64/REDIS ("Jones"), the Dot library's `crc64()` (§2).
const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

/// An uplink the device sends in answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceReply {
    pub fport: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone)]
struct McGroup {
    key: [u8; 16],
    receiver: Receiver,
}

struct FragSession {
    nb_frag: u32,
    frag_size: usize,
    padding: usize,
    descriptor: [u8; 4],
    /// v2: (SessionCnt, MIC) to check the rebuilt block against.
    integrity: Option<(u16, [u8; 4])>,
    decoder: FragDecoder,
    reported: bool,
    /// v2: the server asked for FragDataBlockReceivedReq (AckReception).
    ack_reception: bool,
    /// FragNbRx of the public stacks: the number of the last fragment seen.
    last_number: u32,
    /// FragNbLastRx: where gap counting resumes.
    last_in_order: u32,
    /// FragNbLost: uncoded fragments counted as lost (gaps), never lowered.
    lost: u32,
    /// Decoding ended: the public stacks skip every later fragment.
    finished: bool,
    /// LoRa Basics Modem: MissingFrag as last computed; a loss-free
    /// completion returns before updating it, so it stays at 1.
    reported_missing: u32,
}

impl FragSession {
    /// Gap counting as `FragDecoderProcess` does it in both public stacks:
    /// gaps among the uncoded fragments are counted when a later fragment
    /// arrives; the first coded fragment counts the missing tail.
    fn count_gaps(&mut self, n: u32) -> bool {
        self.last_number = n;
        if n < self.last_in_order {
            return false; // out of order: dropped
        }
        let upto = n.saturating_sub(1).min(self.nb_frag);
        self.lost += upto.saturating_sub(self.last_in_order.min(self.nb_frag));
        self.last_in_order = if n > self.nb_frag { self.nb_frag + 1 } else { n };
        true
    }
}

/// Multicast session programmed by McClassC/BSessionReq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McSession {
    pub group: u8,
    pub class_b: bool,
    pub start_gps: u32,
    pub timeout: u8,
    pub frequency_hz: u32,
    pub data_rate: u8,
}

/// A simulated end device.
pub struct DeviceModel {
    pub dev_eui: u64,
    root_key: [u8; 16],
    /// LoRaWAN 1.1 devices derive McRootKey from AppKey, 1.0.x from GenAppKey.
    lorawan_1_1: bool,
    /// A McKEKey provisioned as such (seed 002's `mcKeKey`), used instead
    /// of one derived from the root key.
    pub given_mc_ke_key: Option<[u8; 16]>,
    pub version: PackageVersion,
    /// Device clock minus network clock, seconds.
    pub clock_offset_s: i64,
    pub supports_class_b: bool,
    pub supports_class_c: bool,
    groups: [Option<McGroup>; 4],
    frag_sessions: [Option<FragSession>; 4],
    pub session: Option<McSession>,
    last_session_cnt: Option<u16>,
    /// The stack this device behaves as.
    pub stack: Stack,
    /// Whether the device has a valid time (LoRa Basics Modem reads time
    /// as 0 until it is synchronised; the others just run their clock).
    pub clock_synced: bool,
    /// TS003 TokenReq: incremented with each AppTimeAns taken.
    clock_token: u8,
    /// LoRa Basics Modem: SessionCntPrev per FragIndex, set by the first
    /// DataFragment of a session, not at setup.
    session_cnt_prev: [Option<u16>; 4],
    /// LoRa Basics Modem: FragDataBlockReceivedReq sends left until the
    /// server answers (a Dot: its CRC uplink's).
    pub block_ack_sends_left: u8,
    /// A Dot: the rebuilt file of session FragIndex, waiting for the
    /// server's verdict on its CRC.
    awaiting_crc: Option<(u8, Vec<u8>)>,
    /// The file is stored with its first byte flipped (a flash fault).
    pub corrupt_flash: bool,
    /// The image the device runs, its version and the key it trusts.
    pub firmware: Firmware,
    pub hardware_version: u32,
    pub reboot_at_gps: Option<u32>,
    /// The last complete, verified data block (padding removed).
    pub received_file: Option<Vec<u8>>,
    /// What the device made of that file.
    pub upgrade: Option<Upgrade>,
    /// Take a file that is no firmware package as a raw image of this version.
    pub raw_install_version: Option<u32>,
    /// Packages this device runs off their default FPort: (default, on air).
    pub moved_ports: Vec<(u8, u8)>,
}

fn aes_encrypt(key: &[u8; 16], block: [u8; 16]) -> [u8; 16] {
    let mut b = block.into();
    Aes128::new(key.into()).encrypt_block(&mut b);
    b.into()
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u24(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], 0])
}

impl DeviceModel {
    pub fn new(dev_eui: u64, root_key: [u8; 16], lorawan_1_1: bool, version: PackageVersion) -> Self {
        Self {
            dev_eui,
            root_key,
            lorawan_1_1,
            given_mc_ke_key: None,
            version,
            clock_offset_s: 0,
            supports_class_b: true,
            supports_class_c: true,
            groups: Default::default(),
            frag_sessions: Default::default(),
            session: None,
            last_session_cnt: None,
            stack: Stack::Spec,
            clock_synced: true,
            clock_token: 0,
            session_cnt_prev: [None; 4],
            block_ack_sends_left: 0,
            awaiting_crc: None,
            corrupt_flash: false,
            firmware: Firmware { version: 0x0100_0000, image: Default::default(), public_key: None },
            hardware_version: 1,
            reboot_at_gps: None,
            received_file: None,
            upgrade: None,
            raw_install_version: None,
            moved_ports: vec![],
        }
    }

    /// The McKey the device holds for a group, once set up.
    pub fn mc_key(&self, group: u8) -> Option<[u8; 16]> {
        self.groups.get(group as usize)?.as_ref().map(|g| g.key)
    }

    /// McAddr and FCnt range of a group, once set up.
    pub fn group(&self, group: u8) -> Option<(u32, u32, u32)> {
        self.groups.get(group as usize)?.as_ref().map(|g| (g.receiver.addr, g.receiver.min_fcnt, g.receiver.max_fcnt))
    }

    /// A multicast frame heard on the air: dropped unless the device is in
    /// the group's session and the frame passes every check.
    pub fn receive_multicast(&mut self, phy: &[u8], network_gps: u64) -> Result<Vec<DeviceReply>, String> {
        let now = self.device_gps(network_gps);
        let session = self.session.ok_or("not in a multicast session")?;
        let lasts = if session.class_b { 128u32 << session.timeout } else { 1u32 << session.timeout };
        if now < session.start_gps || now >= session.start_gps.saturating_add(lasts) {
            return Err("outside the multicast session".into());
        }
        let group = self.groups[session.group as usize].as_mut().ok_or("group undefined")?;
        let (fport, payload) = group.receiver.accept(phy).map_err(str::to_string)?;
        self.handle(fport, &payload, network_gps)
    }

    /// A whole file arrived (by fragments, or by a session a gateway ran):
    /// keep it and examine it as the bootloader would.
    pub fn take_file(&mut self, file: Vec<u8>) {
        let (upgrade, installed) = upgrade::examine(&file, &self.firmware, self.hardware_version, self.raw_install_version);
        // The simulated device reboots into a verified image at once.
        if let Some(firmware) = installed {
            self.firmware = firmware;
        }
        self.upgrade = Some(upgrade);
        self.received_file = Some(file);
    }

    /// Whether the device is in the multicast session of the group at
    /// `mc_addr` (whether its time has come or not).
    pub fn listens_to(&self, mc_addr: u32) -> bool {
        self.session.is_some_and(|s| self.group(s.group).is_some_and(|(addr, _, _)| addr == mc_addr))
    }

    /// The session of the group at `mc_addr` is over: back to class A.
    /// A session of another group goes on; one whose group the device
    /// deleted (McGroupDeleteReq) ends too.
    pub fn end_session(&mut self, mc_addr: u32) {
        if self.session.is_some_and(|s| self.group(s.group).is_none_or(|(addr, _, _)| addr == mc_addr)) {
            self.session = None;
        }
    }

    /// M of a fragmentation session.
    pub fn frag_nb(&self, index: u8) -> Option<u32> {
        self.frag_sessions.get(index as usize)?.as_ref().map(|s| s.nb_frag)
    }

    /// Decoding progress of a fragmentation session.
    pub fn frag_progress(&self, index: u8) -> Option<crate::DecodeProgress> {
        self.frag_sessions.get(index as usize)?.as_ref().map(|s| s.decoder.progress())
    }

    pub fn device_gps(&self, network_gps: u64) -> u32 {
        (network_gps as i64 + self.clock_offset_s) as u32
    }

    /// The time the device's packages act on: LoRa Basics Modem reads 0
    /// until its clock was synchronised (`seconds_since_epoch = 0`).
    fn package_time(&self, network_gps: u64) -> u32 {
        if self.stack == Stack::BasicsModem && !self.clock_synced {
            return 0;
        }
        self.device_gps(network_gps)
    }

    /// A device that lost its time: its clock reads about 0 (GPS epoch).
    pub fn lose_clock(&mut self, network_gps: u64) {
        self.clock_offset_s = -(network_gps as i64);
        self.clock_synced = false;
    }

    /// AppTimeReq the device sends to sync its clock.
    pub fn app_time_req(&self, network_gps: u64, token: u8, ans_required: bool) -> DeviceReply {
        let mut p = vec![0x01];
        p.extend(self.device_gps(network_gps).to_le_bytes());
        p.push(token & 0x0f | (ans_required as u8) << 4);
        DeviceReply { fport: self.air_port(202), payload: p }
    }

    /// The device's own AppTimeReq with its current token. Both public
    /// stacks always send AnsRequired = 0.
    fn own_app_time_req(&self, network_gps: u64) -> DeviceReply {
        let mut r = self.app_time_req(network_gps, self.clock_token, false);
        r.fport = 202;
        r
    }

    /// Whether the uplink `payload` on `fport` is one the device repeats
    /// until answered (LoRa Basics Modem's FragDataBlockReceivedReq, a
    /// Dot's CRC) and another copy is due (the fleet calls this as each
    /// copy goes).
    pub fn repeats(&mut self, fport: u8, payload: &[u8]) -> bool {
        let repeated = if self.stack.is_multitech() { 0x80 } else { 0x04 };
        fport == self.air_port(201) && payload.first() == Some(&repeated) && self.repeat_block_ack()
    }

    /// The FragDataBlockReceivedReq LoRa Basics Modem repeats until it is
    /// answered, if one is due.
    pub fn repeat_block_ack(&mut self) -> bool {
        if self.block_ack_sends_left > 1 {
            self.block_ack_sends_left -= 1;
            return true;
        }
        self.block_ack_sends_left = 0;
        false
    }

    /// Provision the device's keys: its root key, and a McKEKey given as
    /// such (none: derived from the root key).
    pub fn set_keys(&mut self, root_key: [u8; 16], given_mc_ke_key: Option<[u8; 16]>) {
        self.root_key = root_key;
        self.given_mc_ke_key = given_mc_ke_key;
    }

    fn mc_ke_key(&self) -> [u8; 16] {
        if let Some(key) = self.given_mc_ke_key {
            return key;
        }
        // "The Conduit uses an McKEKey of all zeroes" (§4).
        if self.stack.is_multitech() {
            return [0; 16];
        }
        let mut block = [0u8; 16];
        if self.lorawan_1_1 {
            block[0] = 0x20;
        }
        let mc_root = aes_encrypt(&self.root_key, block);
        aes_encrypt(&mc_root, [0u8; 16])
    }

    /// Handle one downlink; returns the uplinks the device answers with, or
    /// what it found wrong (a device would drop the frame).
    pub fn handle(&mut self, fport: u8, payload: &[u8], network_gps: u64) -> Result<Vec<DeviceReply>, String> {
        let fport = self.moved_ports.iter().find(|(_, air)| *air == fport).map_or(fport, |(default, _)| *default);
        let mut out = self.handle_default_ports(fport, payload, network_gps)?;
        for r in &mut out {
            r.fport = self.air_port(r.fport);
        }
        Ok(out)
    }

    /// The FPort a package uses on the air for this device.
    pub fn air_port(&self, default: u8) -> u8 {
        self.moved_ports.iter().find(|(d, _)| *d == default).map_or(default, |(_, air)| *air)
    }

    fn handle_default_ports(&mut self, fport: u8, payload: &[u8], network_gps: u64) -> Result<Vec<DeviceReply>, String> {
        let mut out = Vec::new();
        let mut rest = payload;
        if rest.is_empty() {
            return Err("empty payload".into());
        }
        while !rest.is_empty() {
            let consumed = match fport {
                200 => self.multicast_setup(rest, network_gps, &mut out)?,
                201 => self.fragmentation(rest, &mut out)?,
                202 => self.clock_sync(rest, network_gps, &mut out)?,
                203 => self.firmware_management(rest, &mut out)?,
                other => return Err(format!("no package on port {other}")),
            };
            rest = &rest[consumed..];
        }
        Ok(out)
    }

    fn need<'a>(buf: &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
        buf.get(..n).ok_or_else(|| format!("{what} truncated"))
    }

    fn multicast_setup(&mut self, b: &[u8], network_gps: u64, out: &mut Vec<DeviceReply>) -> Result<usize, String> {
        let mut reply = |payload: Vec<u8>| out.push(DeviceReply { fport: 200, payload });
        match b[0] {
            0x00 => {
                reply(vec![0x00, 2, if self.version == PackageVersion::V2 { 2 } else { 1 }]);
                Ok(1)
            }
            0x01 => {
                let mask = Self::need(b, 2, "McGroupStatusReq")?[1] & 0x0f;
                let mut listed = Vec::new();
                for id in 0..4u8 {
                    if mask & (1 << id) != 0 {
                        if let Some(g) = &self.groups[id as usize] {
                            listed.push((id, g.receiver.addr));
                        }
                    }
                }
                let answered = listed.iter().fold(0u8, |m, (id, _)| m | 1 << id);
                let total = self.groups.iter().filter(|g| g.is_some()).count() as u8;
                let mut p = vec![0x01, total << 4 | answered];
                for (id, addr) in listed {
                    p.push(id);
                    p.extend(addr.to_le_bytes());
                }
                reply(p);
                Ok(2)
            }
            0x02 => {
                let f = Self::need(b, 30, "McGroupSetupReq")?;
                let id = f[1] & 0x03;
                let encrypted: [u8; 16] = f[6..22].try_into().unwrap();
                let key = aes_encrypt(&self.mc_ke_key(), encrypted);
                let addr = le_u32(&f[2..6]);
                let session_key = |first: u8| {
                    let mut block = [0u8; 16];
                    block[0] = first;
                    block[1..5].copy_from_slice(&addr.to_le_bytes());
                    aes_encrypt(&key, block)
                };
                let receiver = Receiver {
                    addr,
                    app_s_key: session_key(0x01),
                    net_s_key: session_key(0x02),
                    min_fcnt: le_u32(&f[22..26]),
                    max_fcnt: le_u32(&f[26..30]),
                    last_fcnt: None,
                };
                self.groups[id as usize] = Some(McGroup { key, receiver });
                reply(vec![0x02, id]);
                Ok(30)
            }
            0x03 => {
                let id = Self::need(b, 2, "McGroupDeleteReq")?[1] & 0x03;
                let undefined = self.groups[id as usize].take().is_none();
                reply(vec![0x03, id | (undefined as u8) << 2]);
                Ok(2)
            }
            cid @ (0x04 | 0x05) => {
                let f = Self::need(b, 11, "McClassSessionReq")?;
                let class_b = cid == 0x05;
                let id = f[1] & 0x03;
                let start = le_u32(&f[2..6]);
                let frequency_hz = le_u24(&f[7..10]) * 100;
                let data_rate = f[10];
                let mut status = id;
                if data_rate > 15 {
                    status |= 0x04;
                }
                if !(100_000_000..=1_000_000_000).contains(&frequency_hz) || (class_b && !self.supports_class_b) || (!class_b && !self.supports_class_c) {
                    status |= 0x08;
                }
                if self.groups[id as usize].is_none() {
                    status |= 0x10;
                }
                let now = self.package_time(network_gps);
                let session = McSession { group: id, class_b, start_gps: start, timeout: f[6] & 0x0f, frequency_hz, data_rate };
                let mut p = vec![cid];
                match self.stack {
                    // LoRaMac-node: a start already past sets McGroupUndefined;
                    // TimeToStart is masked to 24 bits, never saturated, and
                    // the clock is not checked.
                    Stack::LoRaMacNode => {
                        let to_start = start as i64 - now as i64;
                        if status == id && to_start <= 0 {
                            status |= 0x10;
                        }
                        p.push(status);
                        if status == id {
                            self.session = Some(session);
                            p.extend(&(to_start as u32).to_le_bytes()[..3]);
                        }
                    }
                    // The spec and LoRa Basics Modem: v2 StartMissed (Basics
                    // Modem sets it in v1 too, and only with a valid time),
                    // TimeToStart saturated at 0xFFFFFF. Basics Modem without
                    // a time answers success with 0xFFFFFF but launches nothing.
                    Stack::Spec | Stack::BasicsModem | Stack::MultiTechDot | Stack::MultiTechDotEarly => {
                        let checks_missed = match self.stack {
                            Stack::BasicsModem => self.clock_synced,
                            _ => self.version == PackageVersion::V2,
                        };
                        if checks_missed && start <= now {
                            status |= 0x20;
                        }
                        p.push(status);
                        if status == id {
                            let to_start = start.saturating_sub(now).min(0xff_ffff);
                            if self.stack != Stack::BasicsModem || self.clock_synced {
                                self.session = Some(session);
                            }
                            p.extend(&to_start.to_le_bytes()[..3]);
                        }
                    }
                }
                reply(p);
                Ok(11)
            }
            other => Err(format!("unknown multicast setup command 0x{other:02x}")),
        }
    }

    fn fragmentation(&mut self, b: &[u8], out: &mut Vec<DeviceReply>) -> Result<usize, String> {
        let v2 = self.version == PackageVersion::V2;
        match b[0] {
            // The Dot has no PackageVersionReq handler: silently skipped (§5).
            0x00 if self.stack.is_multitech() => Ok(1),
            0x00 => {
                out.push(DeviceReply { fport: 201, payload: vec![0x00, 3, if v2 { 2 } else { 1 }] });
                Ok(1)
            }
            0x80 if self.stack.is_multitech() => {
                let status = Self::need(b, 2, "CRC answer")?[1];
                self.crc_answer(status, out);
                Ok(2)
            }
            0x01 => {
                let param = Self::need(b, 2, "FragSessionStatusReq")?[1];
                let index = (param >> 1) & 0x03;
                let participants = param & 0x01 != 0;
                if let Some(payload) = self.status_answer(index, participants) {
                    out.push(DeviceReply { fport: 201, payload });
                }
                Ok(2)
            }
            0x02 => {
                let len = if v2 { 17 } else { 11 };
                let f = Self::need(b, len, "FragSessionSetupReq")?;
                let index = (f[1] >> 4) & 0x03;
                let nb_frag = u16::from_le_bytes([f[2], f[3]]) as u32;
                let frag_size = f[4] as usize;
                let algo = (f[5] >> 3) & 0x07;
                let mut status = 0u8;
                if algo != 0 {
                    status |= 0x01;
                }
                if nb_frag == 0 || frag_size == 0 || nb_frag > 8192 {
                    status |= 0x02;
                }
                let integrity = if v2 {
                    let cnt = u16::from_le_bytes([f[11], f[12]]);
                    // Basics Modem keeps the previous SessionCnt per FragIndex.
                    let prev = match self.stack {
                        Stack::BasicsModem => self.session_cnt_prev[index as usize],
                        _ => self.last_session_cnt,
                    };
                    if prev.is_some_and(|last| cnt <= last) {
                        status |= 0x10;
                    }
                    Some((cnt, f[13..17].try_into().unwrap()))
                } else {
                    None
                };
                if status == 0 {
                    if let (Some((cnt, _)), false) = (integrity, self.stack == Stack::BasicsModem) {
                        self.last_session_cnt = Some(cnt);
                    }
                    self.frag_sessions[index as usize] = Some(FragSession {
                        nb_frag,
                        frag_size,
                        padding: f[6] as usize,
                        descriptor: f[7..11].try_into().unwrap(),
                        integrity,
                        decoder: FragDecoder::new(nb_frag, frag_size, v2),
                        reported: false,
                        ack_reception: v2 && f[5] & 0x40 != 0,
                        last_number: 0,
                        last_in_order: 0,
                        lost: 0,
                        finished: false,
                        reported_missing: nb_frag,
                    });
                }
                // The Dot answers 0x00 without FragIndex in bits 7:6 (§5).
                let index_bits = if self.stack.is_multitech() { 0 } else { index << 6 };
                out.push(DeviceReply { fport: 201, payload: vec![0x02, index_bits | status] });
                Ok(len)
            }
            0x03 => {
                let index = Self::need(b, 2, "FragSessionDeleteReq")?[1] & 0x03;
                let missing = self.frag_sessions[index as usize].take().is_none();
                out.push(DeviceReply { fport: 201, payload: vec![0x03, index | (missing as u8) << 2] });
                Ok(2)
            }
            0x04 if v2 => {
                // FragDataBlockReceivedAns: stop repeating the request.
                Self::need(b, 2, "FragDataBlockReceivedAns")?;
                self.block_ack_sends_left = 0;
                Ok(2)
            }
            0x08 => {
                let f = Self::need(b, 3, "DataFragment")?;
                let head = u16::from_le_bytes([f[1], f[2]]);
                let index = (head >> 14) as usize;
                let n = (head & 0x3fff) as u32;
                let data = &b[3..];
                let root = self.root_key;
                let stack = self.stack;
                let Some(s) = self.frag_sessions[index].as_mut() else { return Ok(b.len()) };
                if s.finished {
                    // Both public stacks skip fragments once decoding ended.
                    return Ok(b.len());
                }
                if stack == Stack::BasicsModem {
                    if let Some((cnt, _)) = s.integrity {
                        self.session_cnt_prev[index] = Some(cnt);
                    }
                }
                if stack.is_multitech() {
                    // 0-based numbers: data rows 0..M-1, then parity line
                    // N - M from line 0 (§3).
                    let progress = if n < s.nb_frag { s.decoder.push(n + 1, data) } else { s.decoder.push_coded(n - s.nb_frag, data) };
                    if progress.complete && !s.reported {
                        s.reported = true;
                        s.finished = true;
                        let mut file = s.decoder.data().unwrap().to_vec();
                        file.truncate(s.nb_frag as usize * s.frag_size - s.padding);
                        if self.corrupt_flash {
                            file[0] ^= 0xff;
                        }
                        let crc = CRC64.checksum(&file).to_le_bytes();
                        let mut check = vec![0x80];
                        if stack == Stack::MultiTechDot {
                            check.push(index as u8);
                        }
                        check.extend(crc);
                        out.push(DeviceReply { fport: 201, payload: check });
                        self.block_ack_sends_left = MULTITECH_CRC_SENDS;
                        self.awaiting_crc = Some((index as u8, file));
                    }
                    return Ok(b.len());
                }
                let in_order = s.count_gaps(n);
                if stack != Stack::Spec && !in_order {
                    return Ok(b.len());
                }
                let progress = s.decoder.push(n, data);
                // Basics Modem returns before updating MissingFrag when the
                // last uncoded fragment completes a loss-free run.
                if !progress.complete {
                    s.reported_missing = progress.missing;
                } else if !(stack == Stack::BasicsModem && s.lost == 0 && n == s.nb_frag) {
                    s.reported_missing = 0;
                }
                if progress.complete && !s.reported {
                    s.reported = true;
                    s.finished = stack != Stack::Spec;
                    let mut file = s.decoder.data().unwrap().to_vec();
                    file.truncate(s.nb_frag as usize * s.frag_size - s.padding);
                    let mic_ok = s.integrity.is_none_or(|(cnt, mic)| Self::block_mic(&root, cnt, index as u8, s.descriptor, &file) == mic);
                    // FragDataBlockReceivedReq only when the session asked
                    // for it (TS004-2.0.0; LoRa Basics Modem repeats it).
                    if s.integrity.is_some() && s.ack_reception {
                        out.push(DeviceReply { fport: 201, payload: vec![0x04, index as u8 | (!mic_ok as u8) << 2] });
                        if stack == Stack::BasicsModem {
                            self.block_ack_sends_left = BASICS_MODEM_BLOCK_ACK_SENDS;
                        }
                    }
                    if mic_ok {
                        self.take_file(file);
                    }
                }
                // A fragment takes the rest of the frame.
                Ok(b.len())
            }
            other => Err(format!("unknown fragmentation command 0x{other:02x}")),
        }
    }

    /// A Dot hears the server's verdict on its CRC (§1, §5): it installs
    /// the file on ok and deletes it otherwise; either way the session
    /// ends and the current firmware says `90 idx`.
    fn crc_answer(&mut self, status: u8, out: &mut Vec<DeviceReply>) {
        let early = self.stack == Stack::MultiTechDotEarly;
        let (index, ok) = if early { (0, status == 0x01) } else { (status >> 6, status & 0x01 != 0) };
        let Some((awaiting, _)) = &self.awaiting_crc else { return };
        if *awaiting != index {
            return;
        }
        let (_, file) = self.awaiting_crc.take().unwrap();
        self.block_ack_sends_left = 0;
        self.frag_sessions[index as usize] = None;
        if !early {
            out.push(DeviceReply { fport: 201, payload: vec![0x90, index] });
        }
        if ok {
            self.take_file(file);
        }
    }

    /// FragSessionStatusAns as the device's stack builds it, if it answers.
    fn status_answer(&self, index: u8, participants: bool) -> Option<Vec<u8>> {
        let v2 = self.version == PackageVersion::V2;
        let session = self.frag_sessions[index as usize].as_ref();
        // (NbFragReceived, MissingFrag, status bits) and whether to answer.
        let (received, missing, status, answers) = match (self.stack, session) {
            (Stack::Spec, None) => return v2.then(|| vec![0x01, 0x04]),
            // The Dot: no answer without a session; else the standard
            // layout, answered like the specification's (§5).
            (Stack::MultiTechDot | Stack::MultiTechDotEarly, None) => return None,
            (Stack::Spec | Stack::MultiTechDot | Stack::MultiTechDotEarly, Some(s)) => {
                let p = s.decoder.progress();
                (p.received, p.missing, 0, participants || p.missing > 0)
            }
            // LoRaMac-node: the last fragment number and the lost count,
            // frozen at completion; with Participants = 0 it answers when it
            // ever lost one. It does not check that the session exists.
            (Stack::LoRaMacNode, s) => {
                let (last, lost) = s.map_or((0, 0), |s| (s.last_number, s.lost));
                (last, lost, 0, participants || lost > 0)
            }
            // Basics Modem: last number minus lost, MissingFrag as last
            // computed, the long form even without a session.
            (Stack::BasicsModem, None) => (0, 0, 0x04, true),
            (Stack::BasicsModem, Some(s)) => {
                let received = s.last_number.saturating_sub(s.lost);
                (received, s.reported_missing, 0, participants || s.reported_missing > 0)
            }
        };
        if !answers {
            return None;
        }
        // NbFragReceived is 14 bits and MissingFrag 8: both stacks truncate.
        let head = ((received & 0x3fff) as u16 | (index as u16) << 14).to_le_bytes();
        let missing = if matches!(self.stack, Stack::Spec | Stack::MultiTechDot | Stack::MultiTechDotEarly) { missing.min(255) } else { missing & 0xff } as u8;
        Some(if v2 { vec![0x01, status, head[0], head[1], missing] } else { vec![0x01, head[0], head[1], missing, status] })
    }

    /// DataBlockIntKey comes from the root key with the same block in 1.0
    /// and 1.1; only which key is the root differs.
    fn block_mic(root: &[u8; 16], cnt: u16, index: u8, descriptor: [u8; 4], file: &[u8]) -> [u8; 4] {
        let mut block = [0u8; 16];
        block[0] = 0x30;
        let int_key = aes_encrypt(root, block);
        let mut b0 = [0u8; 16];
        b0[0] = 0x49;
        b0[1..3].copy_from_slice(&cnt.to_le_bytes());
        b0[3] = index;
        b0[4..8].copy_from_slice(&descriptor);
        b0[12..16].copy_from_slice(&(file.len() as u32).to_le_bytes());
        let mut mac = <Cmac<Aes128> as Mac>::new((&int_key).into());
        mac.update(&b0);
        mac.update(file);
        mac.finalize().into_bytes()[..4].try_into().unwrap()
    }

    fn clock_sync(&mut self, b: &[u8], network_gps: u64, out: &mut Vec<DeviceReply>) -> Result<usize, String> {
        match b[0] {
            0x01 => {
                let f = Self::need(b, 6, "AppTimeAns")?;
                // Only the answer to the device's own token counts.
                if f[5] & 0x0f != self.clock_token {
                    return Ok(6);
                }
                let correction = le_u32(&f[1..5]) as i32;
                self.clock_offset_s += correction as i64;
                self.clock_token = (self.clock_token + 1) & 0x0f;
                self.clock_synced = true;
                // v2: a saturated correction means "ask again".
                if self.version == PackageVersion::V2 && (correction == i32::MAX || correction == i32::MIN) {
                    out.push(self.own_app_time_req(network_gps));
                }
                Ok(6)
            }
            0x02 => Ok(Self::need(b, 2, "DeviceAppTimePeriodicityReq")?.len()),
            0x03 => {
                // ForceDeviceResyncReq: NbTransmissions AppTimeReq.
                let n = Self::need(b, 2, "ForceDeviceResyncReq")?[1] & 0x07;
                for _ in 0..n {
                    out.push(self.own_app_time_req(network_gps));
                }
                Ok(2)
            }
            0x00 => Ok(1),
            other => Err(format!("unknown clock sync command 0x{other:02x}")),
        }
    }

    fn firmware_management(&mut self, b: &[u8], out: &mut Vec<DeviceReply>) -> Result<usize, String> {
        let mut reply = |payload: Vec<u8>| out.push(DeviceReply { fport: 203, payload });
        match b[0] {
            0x00 => {
                reply(vec![0x00, 4, 1]);
                Ok(1)
            }
            0x01 => {
                let mut p = vec![0x01];
                p.extend(self.firmware.version.to_le_bytes());
                p.extend(self.hardware_version.to_le_bytes());
                reply(p);
                Ok(1)
            }
            0x02 => {
                let t = le_u32(Self::need(b, 5, "DevRebootTimeReq")?[1..5].as_ref());
                self.reboot_at_gps = if t == 0xffff_ffff { None } else { Some(t) };
                let mut p = vec![0x02];
                p.extend(t.to_le_bytes());
                reply(p);
                Ok(5)
            }
            0x03 => {
                let c = le_u24(&Self::need(b, 4, "DevRebootCountdownReq")?[1..4]);
                let mut p = vec![0x03];
                p.extend(&c.to_le_bytes()[..3]);
                reply(p);
                Ok(4)
            }
            0x04 => {
                reply(Upgrade::answer(self.upgrade.as_ref()));
                Ok(1)
            }
            0x05 => {
                Self::need(b, 5, "DevDeleteImageReq")?;
                let had = self.received_file.take().is_some();
                self.upgrade = None;
                reply(vec![0x05, (!had) as u8]);
                Ok(5)
            }
            other => Err(format!("unknown firmware management command 0x{other:02x}")),
        }
    }
}

#[cfg(test)]
mod stack_tests {
    //! Each personality's observable behaviour, byte for byte, as
    //! docs/device-stacks.md describes it.
    use super::*;

    const GPS: u64 = 1_400_000_000;

    fn device(stack: Stack, version: PackageVersion) -> DeviceModel {
        let mut d = DeviceModel::new(1, [7; 16], false, version);
        d.stack = stack;
        d
    }

    /// FragSessionSetupReq for M fragments of 4 bytes (v2: SessionCnt, AckReception).
    fn setup(d: &mut DeviceModel, m: u16, session_cnt: u16, ack: bool) -> Vec<u8> {
        let mut req = vec![0x02, 0x01];
        req.extend(m.to_le_bytes());
        req.extend([4, if ack { 0x40 } else { 0 }, 0, 0, 0, 0, 0]);
        if d.version == PackageVersion::V2 {
            req.extend(session_cnt.to_le_bytes());
            req.extend([0; 4]);
        }
        d.handle(201, &req, GPS).unwrap().remove(0).payload
    }

    fn fragment(d: &mut DeviceModel, n: u16) -> Vec<DeviceReply> {
        let mut f = vec![0x08];
        f.extend(n.to_le_bytes());
        f.extend([n as u8; 4]);
        d.handle(201, &f, GPS).unwrap()
    }

    fn status(d: &mut DeviceModel) -> Vec<u8> {
        d.handle(201, &[0x01, 0x01], GPS).unwrap().remove(0).payload
    }

    #[test]
    fn loramac_node_reports_its_last_fragment_and_losses_never_lowered() {
        let mut d = device(Stack::LoRaMacNode, PackageVersion::V1);
        assert_eq!(setup(&mut d, 4, 0, false), vec![0x02, 0x00]);
        for n in [1, 3] {
            fragment(&mut d, n);
        }
        // Last fragment 3, fragment 2 lost; the missing tail is not counted yet.
        assert_eq!(status(&mut d), vec![0x01, 3, 0, 1, 0]);
        // The first coded fragment counts the tail (fragment 4) as lost.
        fragment(&mut d, 6);
        assert_eq!(status(&mut d), vec![0x01, 6, 0, 2, 0]);
        for n in 7..20 {
            fragment(&mut d, n);
        }
        assert!(d.received_file.is_some(), "the coded fragments rebuilt the file");
        // Frozen at the fragment that completed it, losses still 2.
        let frozen = status(&mut d);
        assert_eq!(frozen[3], 2, "MissingFrag is never lowered");
        assert!(frozen[1] < 19, "it stopped counting once done: {frozen:?}");
        // With Participants = 0 it still answers, having lost fragments.
        assert!(!d.handle(201, &[0x01, 0x00], GPS).unwrap().is_empty());
    }

    #[test]
    fn basics_modem_counts_like_the_spec_and_keeps_missing_at_one_after_a_clean_run() {
        let mut d = device(Stack::BasicsModem, PackageVersion::V1);
        setup(&mut d, 3, 0, false);
        for n in 1..=3 {
            fragment(&mut d, n);
        }
        assert!(d.received_file.is_some());
        // NbFragReceived = 3 - 0 lost, MissingFrag stuck at 1, Status last (v1).
        assert_eq!(status(&mut d), vec![0x01, 3, 0, 1, 0]);
    }

    #[test]
    fn data_block_received_only_when_asked_and_repeated_until_answered() {
        for (stack, repeats) in [(Stack::Spec, 0), (Stack::BasicsModem, BASICS_MODEM_BLOCK_ACK_SENDS)] {
            let mut d = device(stack, PackageVersion::V2);
            setup(&mut d, 2, 1, false);
            let done: Vec<_> = (1..=2).flat_map(|n| fragment(&mut d, n)).collect();
            assert!(done.is_empty(), "{stack:?}: no FragDataBlockReceivedReq without AckReception");
            setup(&mut d, 2, 2, true);
            let done: Vec<_> = (1..=2).flat_map(|n| fragment(&mut d, n)).collect();
            assert_eq!(done.iter().map(|r| r.payload[0]).collect::<Vec<_>>(), [0x04], "{stack:?}");
            assert_eq!(d.block_ack_sends_left, repeats, "{stack:?}");
        }
        let mut d = device(Stack::BasicsModem, PackageVersion::V2);
        setup(&mut d, 2, 1, true);
        (1..=2).for_each(|n| drop(fragment(&mut d, n)));
        assert!(d.repeat_block_ack(), "repeats while unanswered");
        d.handle(201, &[0x04, 0x00], GPS).unwrap();
        assert!(!d.repeat_block_ack(), "FragDataBlockReceivedAns stops the repeats");
    }

    #[test]
    fn basics_modem_keeps_session_cnt_per_index_from_the_first_fragment() {
        let mut d = device(Stack::BasicsModem, PackageVersion::V2);
        assert_eq!(setup(&mut d, 4, 5, false), vec![0x02, 0x00]);
        // No fragment yet: the same SessionCnt is accepted again.
        assert_eq!(setup(&mut d, 4, 5, false), vec![0x02, 0x00]);
        fragment(&mut d, 1);
        assert_eq!(setup(&mut d, 4, 5, false), vec![0x02, 0x10], "now a replay");
        // The spec device refuses a repeat at once.
        let mut s = device(Stack::Spec, PackageVersion::V2);
        setup(&mut s, 4, 5, false);
        assert_eq!(setup(&mut s, 4, 5, false), vec![0x02, 0x10]);
    }

    fn session_answer(d: &mut DeviceModel, start: u32) -> Vec<u8> {
        let mut req = vec![0x02, 0x00, 1, 0, 0, 0];
        req.extend([0; 24]);
        d.handle(200, &req, GPS).unwrap();
        let mut c = vec![0x04, 0x00];
        c.extend(start.to_le_bytes());
        c.extend([8, 0x28, 0x76, 0x84, 5]);
        d.handle(200, &c, GPS).unwrap().remove(0).payload
    }

    #[test]
    fn session_answers_by_stack() {
        let soon = GPS as u32 + 100;
        let past = GPS as u32 - 10;
        // LoRaMac-node: a start in the past is "group undefined", no TimeToStart.
        assert_eq!(session_answer(&mut device(Stack::LoRaMacNode, PackageVersion::V1), past), vec![0x04, 0x10]);
        assert_eq!(session_answer(&mut device(Stack::LoRaMacNode, PackageVersion::V1), soon), vec![0x04, 0x00, 100, 0, 0]);
        // Basics Modem: StartMissed even in v1.
        assert_eq!(session_answer(&mut device(Stack::BasicsModem, PackageVersion::V1), past), vec![0x04, 0x20]);
        // Out of sync: the spec device and Basics Modem saturate at 0xFFFFFF;
        // Basics Modem then launches nothing.
        for stack in [Stack::Spec, Stack::BasicsModem] {
            let mut d = device(stack, PackageVersion::V2);
            d.lose_clock(GPS);
            assert_eq!(session_answer(&mut d, soon), vec![0x04, 0x00, 0xff, 0xff, 0xff], "{stack:?}");
            assert_eq!(d.session.is_some(), stack == Stack::Spec, "{stack:?}");
        }
    }

    #[test]
    fn force_resync_sends_app_time_requests_and_a_saturated_v2_answer_asks_again() {
        let mut d = device(Stack::BasicsModem, PackageVersion::V2);
        d.lose_clock(GPS);
        let reqs = d.handle(202, &[0x03, 0x02], GPS).unwrap();
        assert_eq!(reqs.len(), 2);
        assert!(reqs.iter().all(|r| r.payload[0] == 0x01 && r.payload[5] == 0x00), "token 0, AnsRequired 0");
        let mut ans = vec![0x01];
        ans.extend(i32::MAX.to_le_bytes());
        ans.push(0);
        let again = d.handle(202, &ans, GPS).unwrap();
        assert_eq!(again.len(), 1, "a saturated correction is followed by another AppTimeReq");
        assert_eq!(again[0].payload[5], 1, "with the next token");
        assert!(d.clock_synced);
    }
}
