//! A device model: what a LoRaWAN end device running the FUOTA packages
//! does with each request, byte for byte. Parsing and answers are written
//! here from the device's point of view, not shared with the server codecs.

use super::frag_decoder::FragDecoder;
use super::upgrade::{self, Firmware, Upgrade};
use super::frame::Receiver;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};

/// Which version of the packages the device implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageVersion {
    V1,
    V2,
}

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
    pub version: PackageVersion,
    /// Device clock minus network clock, seconds.
    pub clock_offset_s: i64,
    pub supports_class_b: bool,
    pub supports_class_c: bool,
    groups: [Option<McGroup>; 4],
    frag_sessions: [Option<FragSession>; 4],
    pub session: Option<McSession>,
    last_session_cnt: Option<u16>,
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
            version,
            clock_offset_s: 0,
            supports_class_b: true,
            supports_class_c: true,
            groups: Default::default(),
            frag_sessions: Default::default(),
            session: None,
            last_session_cnt: None,
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

    /// The session is over: back to class A.
    pub fn end_session(&mut self) {
        self.session = None;
    }

    /// M of a fragmentation session.
    pub fn frag_nb(&self, index: u8) -> Option<u32> {
        self.frag_sessions.get(index as usize)?.as_ref().map(|s| s.nb_frag)
    }

    /// Decoding progress of a fragmentation session.
    pub fn frag_progress(&self, index: u8) -> Option<super::DecodeProgress> {
        self.frag_sessions.get(index as usize)?.as_ref().map(|s| s.decoder.progress())
    }

    pub fn device_gps(&self, network_gps: u64) -> u32 {
        (network_gps as i64 + self.clock_offset_s) as u32
    }

    /// AppTimeReq the device sends to sync its clock.
    pub fn app_time_req(&self, network_gps: u64, token: u8, ans_required: bool) -> DeviceReply {
        let mut p = vec![0x01];
        p.extend(self.device_gps(network_gps).to_le_bytes());
        p.push(token & 0x0f | (ans_required as u8) << 4);
        DeviceReply { fport: self.air_port(202), payload: p }
    }

    fn mc_ke_key(&self) -> [u8; 16] {
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

    fn air_port(&self, default: u8) -> u8 {
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
                202 => self.clock_sync(rest)?,
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
                let now = self.device_gps(network_gps);
                if self.version == PackageVersion::V2 && start < now {
                    status |= 0x20;
                }
                let mut p = vec![cid, status];
                if status & 0xfc == 0 {
                    self.session = Some(McSession { group: id, class_b, start_gps: start, timeout: f[6] & 0x0f, frequency_hz, data_rate });
                    p.extend(&start.saturating_sub(now).to_le_bytes()[..3]);
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
            0x00 => {
                out.push(DeviceReply { fport: 201, payload: vec![0x00, 3, if v2 { 2 } else { 1 }] });
                Ok(1)
            }
            0x01 => {
                let param = Self::need(b, 2, "FragSessionStatusReq")?[1];
                let index = (param >> 1) & 0x03;
                let participants = param & 0x01 != 0;
                match &self.frag_sessions[index as usize] {
                    Some(s) => {
                        let p = s.decoder.progress();
                        if participants || p.missing > 0 {
                            let head = ((p.received & 0x3fff) as u16 | (index as u16) << 14).to_le_bytes();
                            let missing = p.missing.min(255) as u8;
                            let payload = if v2 { vec![0x01, 0x00, head[0], head[1], missing] } else { vec![0x01, head[0], head[1], missing, 0x00] };
                            out.push(DeviceReply { fport: 201, payload });
                        }
                    }
                    None if v2 => out.push(DeviceReply { fport: 201, payload: vec![0x01, 0x04] }),
                    None => {}
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
                    if self.last_session_cnt.is_some_and(|last| cnt <= last) {
                        status |= 0x10;
                    }
                    Some((cnt, f[13..17].try_into().unwrap()))
                } else {
                    None
                };
                if status == 0 {
                    if let Some((cnt, _)) = integrity {
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
                    });
                }
                out.push(DeviceReply { fport: 201, payload: vec![0x02, index << 6 | status] });
                Ok(len)
            }
            0x03 => {
                let index = Self::need(b, 2, "FragSessionDeleteReq")?[1] & 0x03;
                let missing = self.frag_sessions[index as usize].take().is_none();
                out.push(DeviceReply { fport: 201, payload: vec![0x03, index | (missing as u8) << 2] });
                Ok(2)
            }
            0x04 if v2 => Ok(Self::need(b, 2, "FragDataBlockReceivedAns")?.len()),
            0x08 => {
                let f = Self::need(b, 3, "DataFragment")?;
                let head = u16::from_le_bytes([f[1], f[2]]);
                let index = (head >> 14) as usize;
                let data = &b[3..];
                let root = self.root_key;
                if let Some(s) = self.frag_sessions[index].as_mut() {
                    let progress = s.decoder.push((head & 0x3fff) as u32, data);
                    if progress.complete && !s.reported {
                        s.reported = true;
                        let mut file = s.decoder.data().unwrap().to_vec();
                        file.truncate(s.nb_frag as usize * s.frag_size - s.padding);
                        let mic_ok = s.integrity.is_none_or(|(cnt, mic)| Self::block_mic(&root, cnt, index as u8, s.descriptor, &file) == mic);
                        if s.integrity.is_some() {
                            out.push(DeviceReply { fport: 201, payload: vec![0x04, index as u8 | (!mic_ok as u8) << 2] });
                        }
                        if mic_ok {
                            self.take_file(file);
                        }
                    }
                }
                // A fragment takes the rest of the frame.
                Ok(b.len())
            }
            other => Err(format!("unknown fragmentation command 0x{other:02x}")),
        }
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

    fn clock_sync(&mut self, b: &[u8]) -> Result<usize, String> {
        match b[0] {
            0x01 => {
                let f = Self::need(b, 6, "AppTimeAns")?;
                self.clock_offset_s += le_u32(&f[1..5]) as i32 as i64;
                Ok(6)
            }
            0x02 | 0x03 => Ok(Self::need(b, 2, "clock sync request")?.len()),
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
