//! The LoRa Alliance FUOTA device library, for either package version:
//! `lorawan-v1` and `lorawan-v2` export [`Library`] as `Library<false>` and
//! `Library<true>`. Stateless: everything a later call needs goes back to
//! the host as `remember` and returns in `device.memory`.

use airlift_plugin_sdk::device_library::airlift::plugin::types::{Attribute, DeviceContext, SessionClass};
use airlift_plugin_sdk::device_library::airlift::plugin::{clock, keys};
use airlift_plugin_sdk::device_library::exports::airlift::plugin::device_library::*;
use airlift_plugin_sdk::library_support::*;
use lorawan_fuota::{coded_order, fec, ports, ts003, ts004, ts005, ts006, Version};

/// Stage names, as in the RMC progress messages.
mod stage {
    pub const PACKAGE_VERSION: &str = "PackageVersion";
    pub const MC_GROUP_SETUP: &str = "McGroupSetup";
    pub const DEV_REBOOT_TIME: &str = "DevRebootTime";
    pub const FRAG_SESSION_SETUP: &str = "FragSessionSetup";
    pub const MC_CLASS_C_SESSION: &str = "McClassCSessionSetup";
    pub const MC_CLASS_B_SESSION: &str = "McClassBSessionSetup";
    pub const WAIT_SESSION_START: &str = "WaitSessionStart";
    pub const DATA_FRAGMENT: &str = "DataFragment";
    pub const FRAG_SESSION_STATUS: &str = "FragSessionStatus";
    pub const DEV_VERSION: &str = "DevVersion";
    pub const DEV_UPGRADE_IMAGE: &str = "DevUpgradeImage";
    pub const CLEANUP: &str = "Cleanup";
}

/// Device memory key: the last TS004 v2 SessionCnt the device accepted.
const SESSION_CNT_KEY: &str = "ts004.session-cnt";
/// Device memory keys: the halves of Cleanup the device confirmed, so a
/// retry asks only for the other and the stage ends when both are done.
const FRAG_SESSION_DELETED_KEY: &str = "cleanup.frag-session-deleted";
const GROUP_DELETED_KEY: &str = "cleanup.group-deleted";
/// Requests per device in a setup stage: at 10 % loss each way a lost
/// exchange is ~19 %, and a v2 SessionCnt replay costs one more.
const SETUP_RETRIES: u32 = 5;
/// DataFragment header bytes (CID + 16-bit index/number).
const DATA_FRAGMENT_OVERHEAD: u16 = 3;
/// AppTimeReq a device out of sync is asked to send (ForceDeviceResyncReq):
/// more than one, so one lost uplink does not leave it out of sync.
const RESYNC_TRANSMISSIONS: u8 = 3;

/// The device library; `V2` picks the package version.
pub struct Library<const V2: bool>;

impl<const V2: bool> Library<V2> {
    const VERSION: Version = if V2 { Version::V2 } else { Version::V1 };
    const NAME: &'static str = if V2 { "lorawan-v2" } else { "lorawan-v1" };
}

/// The last SessionCnt the device is known to hold (0: none yet).
fn last_session_cnt(device: &DeviceContext) -> u16 {
    memory(device, SESSION_CNT_KEY).and_then(|v| v.parse::<u16>().ok()).unwrap_or(0)
}

/// SessionCnt for the setup request being built: above the last one held,
/// starting at 1, and one higher for each retry, so a retry after a lost
/// answer is never a replay. It never wraps: every public stack refuses a
/// SessionCnt not above the last (LoRa Basics Modem and LoRaMac-node's v2
/// variant alike), so after 65535 the device needs a new counter base
/// (a reset) and we say so instead of sending a request it must refuse.
fn next_session_cnt(device: &DeviceContext) -> Result<u16, LibraryError> {
    let next = last_session_cnt(device) as u32 + 1 + device.requests_sent;
    u16::try_from(next).map_err(|_| LibraryError::Unsupported("the device's TS004 SessionCnt is exhausted (65535); it accepts no new session".into()))
}

/// SessionCnt of the latest request sent, which an answer acknowledges.
fn sent_session_cnt(device: &DeviceContext) -> u16 {
    (last_session_cnt(device) as u32 + device.requests_sent.max(1)).min(u16::MAX as u32) as u16
}

/// One half of Cleanup confirmed: remember it, and answer the stage once
/// the other half is confirmed too.
fn cleanup_half_done(device: &DeviceContext, done: &str, other: &str) -> Vec<UplinkEvent> {
    half_confirmed(device, stage::CLEANUP, done, other)
}

fn session_stage(campaign: &CampaignContext) -> &'static str {
    match campaign.group.session_class {
        SessionClass::ClassB => stage::MC_CLASS_B_SESSION,
        SessionClass::ClassC => stage::MC_CLASS_C_SESSION,
    }
}

impl<const V2: bool> Library<V2> {
    fn frag_setup(device: &DeviceContext, campaign: &CampaignContext) -> Result<Vec<u8>, LibraryError> {
        let f = frag_session(campaign)?;
        let nb_frag = u16::try_from(f.nb_frag).map_err(|_| LibraryError::Invalid("too many fragments".into()))?;
        let frag_size = u8::try_from(f.frag_size).map_err(|_| LibraryError::Invalid("FragSize above 255".into()))?;
        let v2 = match Self::VERSION {
            Version::V1 => None,
            Version::V2 => {
                let cnt = next_session_cnt(device)?;
                let mic = keys::data_block_mic(device.dev_eui, cnt, f.frag_index, f.descriptor, &campaign.payload_sha256)
                    .map_err(|e| LibraryError::Key(format!("{e:?}")))?;
                Some((cnt, mic))
            }
        };
        let setup = ts004::SessionSetup {
            mc_group_mask: 1u8.checked_shl(campaign.group.group_id as u32).filter(|m| *m <= 0x0f).ok_or_else(|| LibraryError::Invalid(format!("McGroupID {} is not 0..3", campaign.group.group_id)))?,
            frag_index: f.frag_index,
            nb_frag,
            frag_size,
            block_ack_delay: f.block_ack_delay,
            frag_algo: 0,
            // v2 devices say when they rebuilt the block: LoRa Basics Modem
            // sends FragDataBlockReceivedReq only when asked to (TS004-2.0.0).
            ack_reception: Self::VERSION == Version::V2,
            padding: f.padding,
            descriptor: f.descriptor,
            v2,
        };
        ts004::Request::FragSessionSetup(setup).to_bytes(Self::VERSION).map_err(encode_error)
    }

    fn parse_multicast_setup(payload: &[u8], device: &DeviceContext, campaign: &CampaignContext) -> Result<Vec<UplinkEvent>, ParseError> {
        let mut events = Vec::new();
        for up in readable(ts005::Uplink::parse(payload), &mut events)? {
            if matches!(up, ts005::Uplink::McGroupDelete { .. }) {
                events.extend(cleanup_half_done(device, GROUP_DELETED_KEY, FRAG_SESSION_DELETED_KEY));
            }
            // An answer about another group answers no request of ours.
            let named = match &up {
                ts005::Uplink::McGroupSetup { group, .. } | ts005::Uplink::McClassCSession { group, .. } | ts005::Uplink::McClassBSession { group, .. } => Some(*group),
                _ => None,
            };
            if let Some(group) = named.filter(|g| *g != campaign.group.group_id) {
                events.push(not_ours("McGroupID", group, campaign.group.group_id));
                continue;
            }
            let event = match up {
                ts005::Uplink::PackageVersion(p) => UplinkEvent::Note(format!("remote multicast setup package {} v{}", p.package, p.version)),
                ts005::Uplink::McGroupSetup { id_error, .. } => {
                    answer(stage::MC_GROUP_SETUP, verdict(id_error.then(|| "McGroupID error".to_string())), vec![])
                }
                ts005::Uplink::McGroupDelete { undefined, group } => {
                    UplinkEvent::Note(format!("multicast group {group} deleted{}", if undefined { " (was undefined)" } else { "" }))
                }
                ts005::Uplink::McGroupStatus { groups, .. } => UplinkEvent::Note(format!("multicast groups defined: {groups:x?}")),
                ts005::Uplink::McClassCSession { time_to_start: Some(ts005::TIME_TO_START_OUT_OF_SYNC), .. }
                | ts005::Uplink::McClassBSession { time_to_start: Some(ts005::TIME_TO_START_OUT_OF_SYNC), .. } => {
                    // The device's clock is out of sync: it cannot start the
                    // session on time. Have it resynchronise (TS003) and
                    // leave the stage unanswered, so the session request is
                    // sent again once its clock is right.
                    let resync = ts003::Request::ForceDeviceResync { nb_transmissions: RESYNC_TRANSMISSIONS }.to_bytes().map_err(parse_error)?;
                    events.push(UplinkEvent::Reply(downlink(ports::CLOCK_SYNC, resync)));
                    UplinkEvent::Note("TimeToStart 0xFFFFFF: the device clock is out of sync; clock resynchronisation asked, the session request follows".into())
                }
                ts005::Uplink::McClassCSession { errors, time_to_start, .. } | ts005::Uplink::McClassBSession { errors, time_to_start, .. } => {
                    let name = if matches!(up, ts005::Uplink::McClassCSession { .. }) { stage::MC_CLASS_C_SESSION } else { stage::MC_CLASS_B_SESSION };
                    answer(name, verdict(Some(errors.describe())), time_to_start.map(Fact::TimeToStart).into_iter().collect())
                }
            };
            events.push(event);
        }
        Ok(events)
    }

    fn parse_fragmentation(payload: &[u8], device: &DeviceContext, campaign: &CampaignContext) -> Result<Vec<UplinkEvent>, ParseError> {
        let mut events = Vec::new();
        for up in readable(ts004::Uplink::parse(payload, Self::VERSION), &mut events)? {
            // An answer about another fragmentation session answers no
            // request of ours (the campaign's FragIndex, when it has one).
            let named = match &up {
                ts004::Uplink::FragSessionSetup { frag_index, .. } | ts004::Uplink::FragDataBlockReceived { frag_index, .. } => Some(*frag_index),
                ts004::Uplink::FragSessionStatus(s) => Some(s.frag_index),
                _ => None,
            };
            let ours = campaign.fragmentation.map(|f| f.frag_index);
            if let (Some(named), Some(ours)) = (named, ours) {
                if named != ours {
                    events.push(not_ours("FragIndex", named, ours));
                    continue;
                }
            }
            match up {
                ts004::Uplink::PackageVersion(p) => {
                    events.push(remember("ts004.version", &p.version.to_string()));
                    events.push(answer(stage::PACKAGE_VERSION, AnswerStatus::Ok, vec![Fact::PackageVersion((p.package, p.version))]));
                }
                ts004::Uplink::FragSessionSetup { errors, .. } if Self::VERSION == Version::V2 && errors == ts004::SetupErrors { session_cnt_replay: true, ..Default::default() } => {
                    // Our earlier request (whose answer was lost) used this
                    // SessionCnt: count it as spent; the retry goes one higher.
                    events.push(remember(SESSION_CNT_KEY, &sent_session_cnt(device).to_string()));
                    events.push(UplinkEvent::Note("SessionCnt already used; the next FragSessionSetupReq takes a higher one".into()));
                }
                ts004::Uplink::FragSessionSetup { errors, .. } => {
                    if !errors.any() && Self::VERSION == Version::V2 {
                        let cnt = sent_session_cnt(device);
                        events.push(remember(SESSION_CNT_KEY, &cnt.to_string()));
                    }
                    events.push(answer(stage::FRAG_SESSION_SETUP, verdict(Some(errors.describe())), vec![]));
                }
                ts004::Uplink::FragSessionStatus(s) => {
                    let mut facts = Vec::new();
                    if let Some(r) = s.received {
                        facts.push(Fact::ReceivedFragments(r as u32));
                    }
                    if let Some(m) = s.missing {
                        facts.push(Fact::MissingFragments(m as u32));
                        // Only MissingFrag == 0 means the device holds the file.
                        if m == 0 && !s.session_does_not_exist && !s.mic_error {
                            facts.push(Fact::HoldsFile);
                        }
                    }
                    let mut problems = Vec::new();
                    if s.session_does_not_exist {
                        problems.push("fragmentation session does not exist");
                    }
                    if s.not_enough_matrix_memory {
                        problems.push("not enough matrix memory");
                    }
                    if s.mic_error {
                        problems.push("data block MIC error");
                    }
                    events.push(answer(stage::FRAG_SESSION_STATUS, verdict(Some(problems.join(", "))), facts));
                }
                ts004::Uplink::FragSessionDelete { .. } => events.extend(cleanup_half_done(device, FRAG_SESSION_DELETED_KEY, GROUP_DELETED_KEY)),
                ts004::Uplink::FragDataBlockReceived { frag_index, mic_error } => {
                    // The answer stops the device's repeats (LoRa Basics Modem sends up to 3).
                    let ans = ts004::Request::FragDataBlockReceived { frag_index }.to_bytes(Self::VERSION).map_err(parse_error)?;
                    events.push(UplinkEvent::Reply(downlink(ports::FRAGMENTATION, ans)));
                    let (status, facts) = if mic_error {
                        (AnswerStatus::Rejected("data block MIC error".into()), vec![])
                    } else {
                        (AnswerStatus::Ok, vec![Fact::MissingFragments(0), Fact::HoldsFile])
                    };
                    events.push(answer(stage::FRAG_SESSION_STATUS, status, facts));
                }
            }
        }
        Ok(events)
    }

    fn parse_clock_sync(payload: &[u8]) -> Result<Vec<UplinkEvent>, ParseError> {
        let mut events = Vec::new();
        for up in readable(ts003::Uplink::parse(payload), &mut events)? {
            match up {
                ts003::Uplink::AppTimeReq { device_time, token, ans_required } => {
                    if let Some(ans) = ts003::answer_app_time(clock::now_gps_seconds(), device_time, token, ans_required, Self::VERSION) {
                        events.push(UplinkEvent::Reply(downlink(ports::CLOCK_SYNC, ans.to_bytes().map_err(parse_error)?)));
                    }
                }
                ts003::Uplink::DeviceAppTimePeriodicity { not_supported, device_time } => {
                    events.push(UplinkEvent::Note(format!("clock sync periodicity {} (device time {device_time})", if not_supported { "not supported" } else { "accepted" })))
                }
                ts003::Uplink::PackageVersion(p) => events.push(UplinkEvent::Note(format!("clock sync package {} v{}", p.package, p.version))),
            }
        }
        Ok(events)
    }

    fn parse_firmware_management(payload: &[u8]) -> Result<Vec<UplinkEvent>, ParseError> {
        let mut events = Vec::new();
        for up in readable(ts006::Uplink::parse(payload), &mut events)? {
            events.push(match up {
                ts006::Uplink::DevVersion { firmware, hardware } => {
                    answer(stage::DEV_VERSION, AnswerStatus::Ok, vec![Fact::FirmwareVersion(firmware), Fact::HardwareVersion(hardware)])
                }
                ts006::Uplink::DevRebootTime { reboot_time } => {
                    let status = verdict((reboot_time == 0).then(|| "reboot time refused".to_string()));
                    answer(stage::DEV_REBOOT_TIME, status, vec![Fact::Other(Attribute { key: "rebootTime".into(), value: reboot_time.to_string() })])
                }
                ts006::Uplink::DevRebootCountdown { countdown } => UplinkEvent::Note(format!("reboot countdown {countdown} s")),
                ts006::Uplink::DevUpgradeImage { status, next_version } => {
                    let refused = match status {
                        ts006::ImageStatus::Valid => None,
                        ts006::ImageStatus::NoImage => Some("no firmware image".to_string()),
                        ts006::ImageStatus::CorruptOrBadSignature => Some("image corrupt or signature invalid".to_string()),
                        ts006::ImageStatus::IncompatibleHardware => Some("image incompatible with the hardware".to_string()),
                    };
                    // A valid image is the device's own word that it holds
                    // the file (the final word on stacks whose status counts
                    // cannot say so).
                    let mut facts: Vec<Fact> = next_version.map(|v| Fact::Other(Attribute { key: "nextFirmwareVersion".into(), value: format!("{v:#010x}") })).into_iter().collect();
                    if refused.is_none() {
                        facts.push(Fact::HoldsFile);
                    }
                    answer(stage::DEV_UPGRADE_IMAGE, verdict(refused), facts)
                }
                ts006::Uplink::DevDeleteImage { invalid_version, no_valid_image } => {
                    UplinkEvent::Note(format!("delete image: invalid version {invalid_version}, no valid image {no_valid_image}"))
                }
                ts006::Uplink::PackageVersion(p) => UplinkEvent::Note(format!("firmware management package {} v{}", p.package, p.version)),
            });
        }
        Ok(events)
    }
}

impl<const V2: bool> Guest for Library<V2> {
    fn describe() -> LibraryInfo {
        let port = |name: &str, fport| PortBinding { package_name: name.into(), fport };
        LibraryInfo {
            name: Self::NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: format!("LoRa Alliance FUOTA packages {:?} (TS003, TS004, TS005, TS006)", Self::VERSION),
            ports: vec![
                port("remote-multicast-setup", ports::MULTICAST_SETUP),
                port("fragmentation", ports::FRAGMENTATION),
                port("clock-sync", ports::CLOCK_SYNC),
                port("firmware-management", ports::FIRMWARE_MANAGEMENT),
            ],
            max_fragments: fec::MAX_FRAGMENT_NUMBER / 2,
        }
    }

    fn plan(campaign: CampaignContext) -> Result<Vec<StageSpec>, LibraryError> {
        let delivers = campaign.kind != CampaignKind::MulticastSetup;
        let mut stages = vec![spec(stage::PACKAGE_VERSION, StageMode::Unicast, 1, 60, false)];
        // A delta only fits its base: learn each device's version before
        // anything else (the host refuses the ones on another version).
        if campaign.base_firmware.is_some() {
            stages.push(spec(stage::DEV_VERSION, StageMode::Unicast, SETUP_RETRIES, 60, true));
        }
        stages.push(spec(stage::MC_GROUP_SETUP, StageMode::Unicast, SETUP_RETRIES, 60, true));
        if campaign.kind == CampaignKind::FirmwareUpdate && campaign.reboot_gps.is_some() {
            stages.push(spec(stage::DEV_REBOOT_TIME, StageMode::Unicast, SETUP_RETRIES, 60, true));
        }
        if delivers {
            frag_session(&campaign)?;
            stages.push(spec(stage::FRAG_SESSION_SETUP, StageMode::Unicast, SETUP_RETRIES, 60, true));
        }
        stages.push(spec(session_stage(&campaign), StageMode::Unicast, SETUP_RETRIES, 60, true));
        if delivers {
            stages.push(spec(stage::WAIT_SESSION_START, StageMode::WaitSessionStart, 0, 0, true));
            stages.push(spec(stage::DATA_FRAGMENT, StageMode::Fragments, 0, 0, true));
            stages.push(spec(stage::FRAG_SESSION_STATUS, StageMode::Multicast, SETUP_RETRIES, 120, true));
        }
        if campaign.kind == CampaignKind::FirmwareUpdate {
            // The device checks the image (hash, signature, base) before
            // it reboots into it, and says so.
            stages.push(spec(stage::DEV_UPGRADE_IMAGE, StageMode::Unicast, SETUP_RETRIES, 60, true));
            stages.push(spec(stage::DEV_VERSION, StageMode::DeviceInitiated, SETUP_RETRIES, 300, true));
        }
        if delivers {
            stages.push(spec(stage::CLEANUP, StageMode::Unicast, 1, 60, false));
        }
        Ok(stages)
    }

    fn fragment_layout(file_size: u32, max_payload: u16) -> Result<Fragmentation, LibraryError> {
        let room = max_payload.saturating_sub(DATA_FRAGMENT_OVERHEAD).min(255);
        if room == 0 {
            return Err(LibraryError::Unsupported(format!("{max_payload} bytes per downlink leave no room for fragment data")));
        }
        let layout = fec::Layout::new(file_size as usize, room as u8).map_err(|e| LibraryError::Unsupported(e.to_string()))?;
        Ok(Fragmentation {
            frag_index: 0,
            nb_frag: layout.nb_frag,
            frag_size: layout.frag_size as u16,
            padding: layout.padding,
            descriptor: 0,
            block_ack_delay: 1,
            session_cnt: None,
        })
    }

    fn build_request(stage_name: String, device: Option<DeviceContext>, campaign: CampaignContext) -> Result<Vec<Downlink>, LibraryError> {
        let need_device = || device.as_ref().ok_or_else(|| LibraryError::Invalid(format!("{stage_name} is sent to one device")));
        // Tearing down: only a planned reboot and the sessions need undoing.
        if campaign.cancelling && !matches!(stage_name.as_str(), stage::DEV_REBOOT_TIME | stage::CLEANUP) {
            return Ok(vec![]);
        }
        let group = &campaign.group;
        Ok(match stage_name.as_str() {
            stage::PACKAGE_VERSION => vec![downlink(ports::FRAGMENTATION, ts004::Request::PackageVersion.to_bytes(Self::VERSION).map_err(encode_error)?)],
            stage::MC_GROUP_SETUP => {
                let d = need_device()?;
                let key = keys::mc_key_encrypted(d.dev_eui, group.group_eui).map_err(|e| LibraryError::Key(format!("{e:?}")))?;
                let mc_key_encrypted: [u8; 16] = key.try_into().map_err(|_| LibraryError::Key("McKey_encrypted is not 16 bytes".into()))?;
                let req = ts005::Request::McGroupSetup { group: group.group_id, mc_addr: group.mc_addr, mc_key_encrypted, min_fcnt: group.min_fcnt, max_fcnt: group.max_fcnt };
                vec![downlink(ports::MULTICAST_SETUP, req.to_bytes().map_err(encode_error)?)]
            }
            stage::DEV_REBOOT_TIME => {
                let reboot_time = if campaign.cancelling { ts006::CANCEL_REBOOT } else { campaign.reboot_gps.unwrap_or(0) as u32 };
                vec![downlink(ports::FIRMWARE_MANAGEMENT, ts006::Request::DevRebootTime { reboot_time }.to_bytes().map_err(encode_error)?)]
            }
            stage::FRAG_SESSION_SETUP => vec![downlink(ports::FRAGMENTATION, Self::frag_setup(need_device()?, &campaign)?)],
            stage::MC_CLASS_C_SESSION => {
                let req = ts005::Request::McClassCSession {
                    group: group.group_id,
                    session_time: campaign.session_start_gps as u32,
                    timeout: campaign.session_timeout,
                    frequency_hz: group.frequency_hz,
                    data_rate: group.data_rate,
                };
                vec![downlink(ports::MULTICAST_SETUP, req.to_bytes().map_err(encode_error)?)]
            }
            stage::MC_CLASS_B_SESSION => {
                // The host aligns a class B start on a beacon period (a
                // multiple of 128 s) and sends fragments from that time; an
                // unaligned one is an encoding error, never rounded here.
                let req = ts005::Request::McClassBSession {
                    group: group.group_id,
                    session_time: campaign.session_start_gps as u32,
                    timeout: campaign.session_timeout,
                    periodicity: group.ping_slot_periodicity,
                    frequency_hz: group.frequency_hz,
                    data_rate: group.data_rate,
                };
                vec![downlink(ports::MULTICAST_SETUP, req.to_bytes().map_err(encode_error)?)]
            }
            stage::FRAG_SESSION_STATUS => {
                let f = frag_session(&campaign)?;
                let req = ts004::Request::FragSessionStatus { participants: true, frag_index: f.frag_index };
                vec![downlink(ports::FRAGMENTATION, req.to_bytes(Self::VERSION).map_err(encode_error)?)]
            }
            stage::DEV_VERSION => vec![downlink(ports::FIRMWARE_MANAGEMENT, ts006::Request::DevVersion.to_bytes().map_err(encode_error)?)],
            stage::DEV_UPGRADE_IMAGE => vec![downlink(ports::FIRMWARE_MANAGEMENT, ts006::Request::DevUpgradeImage.to_bytes().map_err(encode_error)?)],
            stage::CLEANUP => {
                // Only what the device has not confirmed yet.
                let confirmed = |key| device.as_ref().is_some_and(|d| memory(d, key).is_some());
                let mut out = Vec::new();
                if let Some(f) = campaign.fragmentation.as_ref().filter(|_| !confirmed(FRAG_SESSION_DELETED_KEY)) {
                    out.push(downlink(ports::FRAGMENTATION, ts004::Request::FragSessionDelete { frag_index: f.frag_index }.to_bytes(Self::VERSION).map_err(encode_error)?));
                }
                if !confirmed(GROUP_DELETED_KEY) {
                    out.push(downlink(ports::MULTICAST_SETUP, ts005::Request::McGroupDelete { group: group.group_id }.to_bytes().map_err(encode_error)?));
                }
                out
            }
            _ => return Err(LibraryError::UnknownStage(stage_name)),
        })
    }

    fn parse_uplink(fport: u8, payload: Vec<u8>, device: DeviceContext, campaign: CampaignContext) -> Result<Vec<UplinkEvent>, ParseError> {
        match fport {
            ports::MULTICAST_SETUP => Self::parse_multicast_setup(&payload, &device, &campaign),
            ports::FRAGMENTATION => Self::parse_fragmentation(&payload, &device, &campaign),
            ports::CLOCK_SYNC => Self::parse_clock_sync(&payload),
            ports::FIRMWARE_MANAGEMENT => Self::parse_firmware_management(&payload),
            other => Err(ParseError::UnknownPort(other)),
        }
    }

    /// Coded fragments go in the order `coded_order` chooses, which for
    /// small M needs far fewer of them than TS004's lines in order.
    fn fragments(data: Vec<u8>, layout: Fragmentation, first: u32, count: u32) -> Result<Vec<DataFragment>, LibraryError> {
        let frag_size = u8::try_from(layout.frag_size).map_err(|_| LibraryError::Invalid("FragSize above 255".into()))?;
        let encoder = fec::Encoder::new(&data, frag_size, Self::VERSION).map_err(|e| LibraryError::Invalid(e.to_string()))?;
        if encoder.layout().nb_frag != layout.nb_frag {
            return Err(LibraryError::Invalid(format!("data makes {} fragments, the session says {}", encoder.layout().nb_frag, layout.nb_frag)));
        }
        let numbers = coded_order::fragment_numbers(layout.nb_frag, Self::VERSION, first, count).map_err(|e| LibraryError::Invalid(e.to_string()))?;
        numbers
            .into_iter()
            .map(|n| {
                let (number, payload) = encoder.fragment(n).map_err(|e| LibraryError::Invalid(e.to_string()))?;
                let req = ts004::Request::DataFragment { frag_index: layout.frag_index, n: number, payload };
                Ok(DataFragment { number: number as u32, downlink: downlink(ports::FRAGMENTATION, req.to_bytes(Self::VERSION).map_err(encode_error)?) })
            })
            .collect()
    }
}
