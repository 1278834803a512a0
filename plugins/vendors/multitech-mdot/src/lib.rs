//! MultiTech mDot/xDot device library, for the legacy FOTA generation: Dot
//! firmware up to 3.2.x and the Conduit gateway of MultiTech's support note
//! "FOTA from Conduit gateway". It speaks TS005 v1 (McKey encrypted under an
//! all-zero McKEKey) and TS004 v1 with 0-based fragment numbers (the first
//! coded fragment is parity line 0), and checks the file with MultiTech's
//! CRC-64 exchange on FPort 201 (`80 [idx] crc64` up, `80 status` down, then
//! `90 idx` "session complete").
//!
//! Current Dot firmware (3.3.0 and later) numbers fragments as TS004 does
//! and derives McKEKey as TS005 does: reach it with the standard
//! `lorawan-v1` library, not this one. docs/multitech-mdot.md has the
//! research behind every choice here (its section numbers are cited).
//!
//! Stateless: what a later call needs returns to the host as `remember`.

use airlift_plugin_sdk::device_library::airlift::plugin::types::{DeviceContext, SessionClass};
use airlift_plugin_sdk::device_library::airlift::plugin::{keys, payload};
use airlift_plugin_sdk::device_library::exports::airlift::plugin::device_library::*;
use airlift_plugin_sdk::library_support::*;
use airlift_plugin_sdk::lorawan::{fec, ports, ts004, ts005, Version};

/// Stage names, as shown in progress messages.
mod stage {
    pub const MC_GROUP_SETUP: &str = "McGroupSetup";
    pub const FRAG_SESSION_SETUP: &str = "FragSessionSetup";
    pub const MC_CLASS_C_SESSION: &str = "McClassCSessionSetup";
    pub const WAIT_SESSION_START: &str = "WaitSessionStart";
    pub const DATA_FRAGMENT: &str = "DataFragment";
    pub const FRAG_SESSION_STATUS: &str = "FragSessionStatus";
    pub const FILE_CHECK: &str = "FileCheck";
    pub const SESSION_COMPLETE: &str = "SessionComplete";
    pub const CLEANUP: &str = "Cleanup";
}

/// MultiTech's FPort 201 commands beside TS004's (§1).
const CID_DATA_FRAGMENT: u8 = 0x08;
const CID_CRC: u8 = 0x80;
const CID_SESSION_COMPLETE: u8 = 0x90;

/// Device memory key: the outcome of the file check, which a later
/// "session complete" is judged by (the Dot sends it on a failed check too, §1).
const CRC_KEY: &str = "mdot.crc";
/// Device memory keys: the halves of Cleanup the device confirmed, so a
/// retry asks only for the rest.
const FRAG_SESSION_DELETED_KEY: &str = "cleanup.frag-session-deleted";
const GROUP_DELETED_KEY: &str = "cleanup.group-deleted";

/// Setup requests per device: answers come back unconfirmed (§5), so a lost
/// exchange is common enough to deserve a few tries.
const SETUP_RETRIES: u32 = 5;
/// DataFragment header bytes (CID + 16-bit index/number).
const DATA_FRAGMENT_OVERHEAD: u16 = 3;
/// Highest number the 14-bit DataFragment field carries.
const MAX_WIRE_NUMBER: u32 = 0x3fff;
/// Counted from 0 (§3), the field has one number more than TS004's.
const WIRE_NUMBERS: u32 = MAX_WIRE_NUMBER + 1;
/// Half the numbers for uncoded fragments, the other half left for coded
/// ones, as the standard library does. The Dot recovers at most 300 lost
/// fragments (150 on the xDot, §5), far below what the other half allows.
const MAX_FRAGMENTS: u32 = WIRE_NUMBERS / 2;
/// Largest read the host's `payload` import serves.
const READ_WINDOW: u32 = 65_536;

/// CRC-64/REDIS ("Jones"), the Dot's file checksum (§2).
const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_REDIS);

/// The device library.
pub struct Library;

/// One half of Cleanup confirmed: remember it, and answer the stage once
/// the other half is confirmed too.
fn cleanup_half_done(device: &DeviceContext, done: &str, other: &str) -> Vec<UplinkEvent> {
    half_confirmed(device, stage::CLEANUP, done, other)
}

fn group_mask(group_id: u8) -> Result<u8, LibraryError> {
    1u8.checked_shl(group_id as u32).filter(|m| *m <= 0x0f).ok_or_else(|| LibraryError::Invalid(format!("McGroupID {group_id} is not 0..3")))
}

/// The DataFragment at `position` (1-based) of the session, as the legacy
/// Dot reads it (§3): wire number N = position − 1, so uncoded row N for
/// N < M, and coded fragments N = M + k carrying parity line k from 0 up.
/// Returns N and the whole command (`08 | idx<<14 | N (LE) | data`).
///
/// With M = 1 the matrix has no coefficients, so a coded fragment would be
/// all zeros: the single row is sent again under number 0 instead.
fn wire_fragment(encoder: &fec::Encoder, layout: &Fragmentation, position: u32) -> Result<(u16, Vec<u8>), LibraryError> {
    let m = layout.nb_frag;
    let number = position.checked_sub(1).ok_or_else(|| LibraryError::Invalid("fragment positions start at 1".into()))?;
    if number > MAX_WIRE_NUMBER {
        return Err(LibraryError::Invalid(format!("position {position} needs fragment number {number}; the 14-bit field ends at {MAX_WIRE_NUMBER}")));
    }
    if layout.frag_index > 3 {
        return Err(LibraryError::Invalid(format!("FragIndex {} is not 0..3", layout.frag_index)));
    }
    let (number, data) = if number < m {
        (number, uncoded(encoder, number + 1)?)
    } else if m == 1 {
        (0, uncoded(encoder, 1)?)
    } else {
        (number, encoder.coded_row(number - m))
    };
    let header = (layout.frag_index as u16) << 14 | number as u16;
    let mut out = Vec::with_capacity(DATA_FRAGMENT_OVERHEAD as usize + data.len());
    out.push(CID_DATA_FRAGMENT);
    out.extend(header.to_le_bytes());
    out.extend(data);
    Ok((number as u16, out))
}

/// Uncoded row `n` (1-based, as the encoder counts).
fn uncoded(encoder: &fec::Encoder, n: u32) -> Result<Vec<u8>, LibraryError> {
    encoder.fragment(n).map(|(_, row)| row).map_err(|e| LibraryError::Invalid(e.to_string()))
}

/// A CRC uplink: the FragIndex it names (current firmware) or none (older
/// firmware), and the device's CRC-64 of the file it rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CrcReport {
    frag_index: Option<u8>,
    crc: u64,
}

/// `80 idx crc64(LE)` (10 bytes) or `80 crc64(LE)` (9 bytes), §1.
fn parse_crc(payload: &[u8]) -> Result<CrcReport, ParseError> {
    let le = |b: &[u8]| b.try_into().map(u64::from_le_bytes).map_err(|_| ParseError::Malformed("CRC-64 is not 8 bytes".into()));
    match payload.len() {
        0..=8 => Err(ParseError::Truncated(format!("CRC message of {} bytes; 9 or 10 expected", payload.len()))),
        9 => Ok(CrcReport { frag_index: None, crc: le(&payload[1..9])? }),
        10 if payload[1] > 3 => Err(ParseError::Malformed(format!("FragIndex {} is not 0..3", payload[1]))),
        10 => Ok(CrcReport { frag_index: Some(payload[1]), crc: le(&payload[2..10])? }),
        n => Err(ParseError::Malformed(format!("CRC message of {n} bytes; 9 or 10 expected"))),
    }
}

/// The server's verdict on a CRC: `80 (idx<<6)|ok` (§1). Legacy firmware
/// compares the byte with 0x01, which FragIndex 0 gives.
fn crc_answer(frag_index: u8, ok: bool) -> [u8; 2] {
    [CID_CRC, (frag_index & 0x03) << 6 | ok as u8]
}

/// CRC-64/REDIS of a file of `size` bytes read in windows of at most
/// `READ_WINDOW` bytes by `read(offset, len)`.
fn crc_of_file(size: u64, mut read: impl FnMut(u64, u32) -> Result<Vec<u8>, String>) -> Result<u64, String> {
    let mut digest = CRC64.digest();
    let mut offset = 0u64;
    while offset < size {
        let len = (size - offset).min(READ_WINDOW as u64) as u32;
        let window = read(offset, len)?;
        // A short read must not loop forever nor a long one count twice.
        if window.is_empty() || window.len() > len as usize {
            return Err(format!("read of {len} bytes at {offset} returned {}", window.len()));
        }
        digest.update(&window);
        offset += window.len() as u64;
    }
    Ok(digest.finalize())
}

/// CRC-64 of the campaign's payload, read through the host.
fn payload_crc(sha256: &str) -> Result<u64, String> {
    let size = payload::size(sha256).map_err(|e| format!("{e:?}"))?;
    crc_of_file(size, |offset, len| payload::read(sha256, offset, len).map_err(|e| format!("{e:?}")))
}

impl Library {
    fn parse_multicast_setup(bytes: &[u8], device: &DeviceContext, campaign: &CampaignContext) -> Result<Vec<UplinkEvent>, ParseError> {
        let mut events = Vec::new();
        let ours = campaign.group.group_id;
        for up in readable(ts005::Uplink::parse(bytes), &mut events)? {
            let event = match up {
                ts005::Uplink::McGroupSetup { group, .. } | ts005::Uplink::McClassCSession { group, .. } | ts005::Uplink::McGroupDelete { group, .. } if group != ours => {
                    not_ours("McGroupID", group, ours)
                }
                ts005::Uplink::McGroupDelete { group, undefined } => {
                    events.extend(cleanup_half_done(device, GROUP_DELETED_KEY, FRAG_SESSION_DELETED_KEY));
                    UplinkEvent::Note(format!("multicast group {group} deleted{}", if undefined { " (was undefined)" } else { "" }))
                }
                ts005::Uplink::McGroupSetup { id_error, .. } => {
                    answer(stage::MC_GROUP_SETUP, verdict(if id_error { "McGroupID error".into() } else { String::new() }), vec![])
                }
                ts005::Uplink::McClassCSession { time_to_start: Some(ts005::TIME_TO_START_OUT_OF_SYNC), .. } => {
                    // The Dot sets its clock with the MAC DeviceTimeReq only
                    // (§5): nothing this library sends can resynchronise it.
                    answer(stage::MC_CLASS_C_SESSION, AnswerStatus::Rejected("TimeToStart 0xFFFFFF: the device clock is out of sync".into()), vec![])
                }
                ts005::Uplink::McClassCSession { errors, time_to_start, .. } => {
                    answer(stage::MC_CLASS_C_SESSION, verdict(errors.describe()), time_to_start.map(Fact::TimeToStart).into_iter().collect())
                }
                ts005::Uplink::McClassBSession { group, .. } => UplinkEvent::Note(format!("class B session answer for group {group}; this library runs class C only")),
                ts005::Uplink::McGroupStatus { groups, .. } => UplinkEvent::Note(format!("multicast groups defined: {groups:x?}")),
                ts005::Uplink::PackageVersion(p) => UplinkEvent::Note(format!("remote multicast setup package {} v{}", p.package, p.version)),
            };
            events.push(event);
        }
        Ok(events)
    }

    fn parse_fragmentation(bytes: &[u8], device: &DeviceContext, campaign: &CampaignContext) -> Result<Vec<UplinkEvent>, ParseError> {
        match bytes.first() {
            Some(&CID_CRC) => Self::file_check(bytes, campaign),
            Some(&CID_SESSION_COMPLETE) => Self::session_complete(bytes, device, campaign),
            _ => Self::parse_ts004(bytes, device, campaign),
        }
    }

    /// The device's CRC of the file it rebuilt: answer it over the air (it
    /// repeats the CRC until answered, §1) and judge FileCheck.
    fn file_check(bytes: &[u8], campaign: &CampaignContext) -> Result<Vec<UplinkEvent>, ParseError> {
        let report = parse_crc(bytes)?;
        let Some(f) = campaign.fragmentation.as_ref() else {
            return Ok(vec![UplinkEvent::Note(format!("CRC {:016x} reported outside a fragmentation session", report.crc))]);
        };
        if let Some(idx) = report.frag_index.filter(|i| *i != f.frag_index) {
            return Ok(vec![not_ours("FragIndex", idx, f.frag_index)]);
        }
        let file = match payload_crc(&campaign.payload_sha256) {
            Ok(c) => c,
            // Unanswered, the device asks again (up to 5 times, §1).
            Err(e) => return Ok(vec![UplinkEvent::Note(format!("the device's CRC {:016x} is unanswered: the file could not be read ({e})", report.crc))]),
        };
        let ok = file == report.crc;
        let reply = downlink(ports::FRAGMENTATION, crc_answer(report.frag_index.unwrap_or(0), ok).to_vec());
        let (status, facts) = if ok {
            // A Dot installs what passed its check at once (§5) and has no
            // way to report a version: the image it confirmed is the target.
            (AnswerStatus::Ok, [Fact::HoldsFile].into_iter().chain(campaign.target_firmware.map(Fact::FirmwareVersion)).collect())
        } else {
            (AnswerStatus::Rejected(format!("CRC-64 mismatch: device {:016x}, file {file:016x}", report.crc)), vec![])
        };
        Ok(vec![UplinkEvent::Reply(reply), remember(CRC_KEY, if ok { "ok" } else { "failed" }), answer(stage::FILE_CHECK, status, facts)])
    }

    /// `90 idx`: the device is done with the session. It says so after a
    /// failed check as well (§1), so only a check that passed makes it ok.
    fn session_complete(bytes: &[u8], device: &DeviceContext, campaign: &CampaignContext) -> Result<Vec<UplinkEvent>, ParseError> {
        let idx = match bytes {
            [_, idx] => *idx,
            [_] => return Err(ParseError::Truncated("session complete".into())),
            _ => return Err(ParseError::Malformed(format!("session complete of {} bytes; 2 expected", bytes.len()))),
        };
        let ours = campaign.fragmentation.map(|f| f.frag_index);
        if ours != Some(idx) {
            return Ok(vec![match ours {
                Some(ours) => not_ours("FragIndex", idx, ours),
                None => UplinkEvent::Note(format!("session complete for FragIndex {idx} outside a fragmentation session")),
            }]);
        }
        let status = if memory(device, CRC_KEY) == Some("ok") {
            AnswerStatus::Ok
        } else {
            AnswerStatus::Rejected("the device reported completion after a failed file check".into())
        };
        Ok(vec![answer(stage::SESSION_COMPLETE, status, vec![])])
    }

    fn parse_ts004(bytes: &[u8], device: &DeviceContext, campaign: &CampaignContext) -> Result<Vec<UplinkEvent>, ParseError> {
        let mut events = Vec::new();
        let ours = campaign.fragmentation.map(|f| f.frag_index);
        for up in readable(ts004::Uplink::parse(bytes, Version::V1), &mut events)? {
            match up {
                ts004::Uplink::FragSessionSetup { frag_index, errors } => {
                    // The Dot answers success as 0x00 whatever the FragIndex (§5).
                    let dot_success = frag_index == 0 && !errors.any();
                    match ours.filter(|o| *o != frag_index && !dot_success) {
                        Some(o) => events.push(not_ours("FragIndex", frag_index, o)),
                        None => events.push(answer(stage::FRAG_SESSION_SETUP, verdict(errors.describe()), vec![])),
                    }
                }
                ts004::Uplink::FragSessionStatus(s) => {
                    if let Some(o) = ours.filter(|o| *o != s.frag_index) {
                        events.push(not_ours("FragIndex", s.frag_index, o));
                        continue;
                    }
                    let mut facts = Vec::new();
                    facts.extend(s.received.map(|r| Fact::ReceivedFragments(r as u32)));
                    if let Some(m) = s.missing {
                        facts.push(Fact::MissingFragments(m as u32));
                        // All fragments in; FileCheck has the last word on the file.
                        if m == 0 && !s.not_enough_matrix_memory {
                            facts.push(Fact::HoldsFile);
                        }
                    }
                    // The Dot sets bit 0 when it lost more than it can rebuild (§5).
                    let problems = if s.not_enough_matrix_memory { "too many fragments lost to recover" } else { "" };
                    events.push(answer(stage::FRAG_SESSION_STATUS, verdict(problems.to_string()), facts));
                }
                ts004::Uplink::FragSessionDelete { .. } => events.extend(cleanup_half_done(device, FRAG_SESSION_DELETED_KEY, GROUP_DELETED_KEY)),
                ts004::Uplink::PackageVersion(p) => events.push(UplinkEvent::Note(format!("fragmentation package {} v{}", p.package, p.version))),
                // A v2 command, which Version::V1 never parses.
                ts004::Uplink::FragDataBlockReceived { .. } => events.push(UplinkEvent::Note("FragDataBlockReceivedReq is not a TS004 v1 command".into())),
            }
        }
        Ok(events)
    }

    fn frag_setup(campaign: &CampaignContext) -> Result<Vec<u8>, LibraryError> {
        let f = frag_session(campaign)?;
        let setup = ts004::SessionSetup {
            mc_group_mask: group_mask(campaign.group.group_id)?,
            frag_index: f.frag_index,
            nb_frag: u16::try_from(f.nb_frag).map_err(|_| LibraryError::Invalid("too many fragments".into()))?,
            frag_size: u8::try_from(f.frag_size).map_err(|_| LibraryError::Invalid("FragSize above 255".into()))?,
            block_ack_delay: f.block_ack_delay,
            frag_algo: 0,
            ack_reception: false,
            padding: f.padding,
            descriptor: f.descriptor,
            v2: None,
        };
        ts004::Request::FragSessionSetup(setup).to_bytes(Version::V1).map_err(encode_error)
    }
}

impl Guest for Library {
    fn describe() -> LibraryInfo {
        let port = |name: &str, fport| PortBinding { package_name: name.into(), fport };
        LibraryInfo {
            name: "multitech-mdot".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "MultiTech mDot/xDot legacy FOTA (Dot ≤ 3.2.x, Conduit): TS005 with an all-zero McKEKey, TS004 v1 with 0-based fragment numbers, CRC-64 file check".into(),
            ports: vec![port("remote-multicast-setup", ports::MULTICAST_SETUP), port("fragmentation", ports::FRAGMENTATION)],
            max_fragments: MAX_FRAGMENTS,
        }
    }

    fn plan(campaign: CampaignContext) -> Result<Vec<StageSpec>, LibraryError> {
        if campaign.group.session_class == SessionClass::ClassB {
            return Err(LibraryError::Unsupported("the Dot library runs class C multicast sessions only".into()));
        }
        if campaign.base_firmware.is_some() {
            // No TS006 on the Dot: nothing tells which base a device runs.
            return Err(LibraryError::Unsupported("the Dot reports no firmware version, so a delta's base cannot be checked".into()));
        }
        let delivers = campaign.kind != CampaignKind::MulticastSetup;
        let mut stages = vec![spec(stage::MC_GROUP_SETUP, StageMode::Unicast, SETUP_RETRIES, 60, true)];
        if delivers {
            frag_session(&campaign)?;
            stages.push(spec(stage::FRAG_SESSION_SETUP, StageMode::Unicast, SETUP_RETRIES, 60, true));
        }
        stages.push(spec(stage::MC_CLASS_C_SESSION, StageMode::Unicast, SETUP_RETRIES, 60, true));
        if delivers {
            stages.push(spec(stage::WAIT_SESSION_START, StageMode::WaitSessionStart, 0, 0, true));
            stages.push(spec(stage::DATA_FRAGMENT, StageMode::Fragments, 0, 0, true));
            stages.push(spec(stage::FRAG_SESSION_STATUS, StageMode::Multicast, SETUP_RETRIES, 120, true));
            // The device sends its CRC once it holds the file: nothing to ask.
            stages.push(spec(stage::FILE_CHECK, StageMode::DeviceInitiated, 1, 120, true));
        }
        match campaign.kind {
            // The Dot installs and resets on its own after a good check (§5).
            CampaignKind::FirmwareUpdate => stages.push(spec(stage::SESSION_COMPLETE, StageMode::DeviceInitiated, 1, 120, false)),
            CampaignKind::BinaryTransfer => stages.push(spec(stage::CLEANUP, StageMode::Unicast, 1, 60, false)),
            CampaignKind::MulticastSetup => {}
        }
        Ok(stages)
    }

    fn fragment_layout(file_size: u32, max_payload: u16) -> Result<Fragmentation, LibraryError> {
        // FragSize is one byte on the air (§5).
        let room = max_payload.saturating_sub(DATA_FRAGMENT_OVERHEAD).min(255);
        if room == 0 {
            return Err(LibraryError::Unsupported(format!("{max_payload} bytes per downlink leave no room for fragment data")));
        }
        let layout = fec::Layout::new(file_size as usize, room as u8).map_err(|e| LibraryError::Unsupported(e.to_string()))?;
        if layout.nb_frag > MAX_FRAGMENTS {
            return Err(LibraryError::Unsupported(format!("{} fragments; the Dot's 0-based numbering leaves room for {MAX_FRAGMENTS}", layout.nb_frag)));
        }
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
        // Tearing down: only the sessions need undoing.
        if campaign.cancelling && stage_name != stage::CLEANUP {
            return Ok(vec![]);
        }
        let group = &campaign.group;
        Ok(match stage_name.as_str() {
            stage::MC_GROUP_SETUP => {
                // Legacy firmware keeps McKEKey all-zero (§4).
                let key = keys::mc_key_encrypted_zero_kek(group.group_eui).map_err(|e| LibraryError::Key(format!("{e:?}")))?;
                let mc_key_encrypted: [u8; 16] = key.try_into().map_err(|_| LibraryError::Key("McKey_encrypted is not 16 bytes".into()))?;
                let req = ts005::Request::McGroupSetup { group: group.group_id, mc_addr: group.mc_addr, mc_key_encrypted, min_fcnt: group.min_fcnt, max_fcnt: group.max_fcnt };
                vec![downlink(ports::MULTICAST_SETUP, req.to_bytes().map_err(encode_error)?)]
            }
            stage::FRAG_SESSION_SETUP => vec![downlink(ports::FRAGMENTATION, Self::frag_setup(&campaign)?)],
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
            stage::FRAG_SESSION_STATUS => {
                let req = ts004::Request::FragSessionStatus { participants: true, frag_index: frag_session(&campaign)?.frag_index };
                vec![downlink(ports::FRAGMENTATION, req.to_bytes(Version::V1).map_err(encode_error)?)]
            }
            // Device-initiated, and no downlink makes a Dot send them again.
            stage::FILE_CHECK | stage::SESSION_COMPLETE => vec![],
            stage::CLEANUP => {
                // Only what the device has not confirmed yet.
                let confirmed = |key| device.as_ref().is_some_and(|d| memory(d, key).is_some());
                let mut out = Vec::new();
                if let Some(f) = campaign.fragmentation.as_ref().filter(|_| !confirmed(FRAG_SESSION_DELETED_KEY)) {
                    let req = ts004::Request::FragSessionDelete { frag_index: f.frag_index };
                    out.push(downlink(ports::FRAGMENTATION, req.to_bytes(Version::V1).map_err(encode_error)?));
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
            other => Err(ParseError::UnknownPort(other)),
        }
    }

    /// Coded fragments go in line order from line 0: the legacy Dot reads
    /// the line from the number (§3), and nothing is known of how it takes
    /// gaps, so none are made.
    fn fragments(data: Vec<u8>, layout: Fragmentation, first: u32, count: u32) -> Result<Vec<DataFragment>, LibraryError> {
        let frag_size = u8::try_from(layout.frag_size).map_err(|_| LibraryError::Invalid("FragSize above 255".into()))?;
        let encoder = fec::Encoder::new(&data, frag_size, Version::V1).map_err(|e| LibraryError::Invalid(e.to_string()))?;
        if encoder.layout().nb_frag != layout.nb_frag {
            return Err(LibraryError::Invalid(format!("data makes {} fragments, the session says {}", encoder.layout().nb_frag, layout.nb_frag)));
        }
        (0..count)
            .map(|i| {
                let position = first.checked_add(i).ok_or_else(|| LibraryError::Invalid("fragment position overflows".into()))?;
                let (number, payload) = wire_fragment(&encoder, &layout, position)?;
                Ok(DataFragment { number: number as u32, downlink: downlink(ports::FRAGMENTATION, payload) })
            })
            .collect()
    }
}

airlift_plugin_sdk::device_library::export!(Library);

#[cfg(test)]
mod tests;
