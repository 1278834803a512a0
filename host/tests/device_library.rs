//! The lorawan-v1 and lorawan-v2 device-library plugins against the
//! independent device models: every request built by the plugin is parsed
//! and answered by a device, and the answer parsed back by the plugin.

use airlift::clock::{unix_ms_to_gps_seconds, ManualClock};
use airlift::plugin::device_library::*;
use airlift::plugin::{Plugin, PluginRuntime};
use airlift_sim::{DeviceModel, PackageVersion};
mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;

const DEV: u64 = 0x70b3d57ed0000001;
const GROUP: u64 = 0x70b3d57ed00000f0;
const ROOT_KEY: [u8; 16] = [0x8e, 0x3b, 0x1f, 0x0c, 0x5a, 0x7d, 0x92, 0xe4, 0xb6, 0xc1, 0xd0, 0xf3, 0xa2, 0xe5, 0xb7, 0xc9];
const MC_KEY: [u8; 16] = [0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42, 0x7e];
const NOW_MS: u64 = 1_800_000_000_000;

struct Setup {
    host: TestHost,
    runtime: Arc<PluginRuntime>,
    plugin: Arc<Plugin>,
    _dir: tempfile::TempDir,
}

async fn setup(library: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start_with(dir.path(), |c| c.clock = Arc::new(ManualClock::new(NOW_MS))).await.unwrap();
    assert_eq!(host.load_plugin(library).await.0, StatusCode::CREATED);
    let device = json!({"devEui": format!("{DEV:016x}"), "deviceKey": hex(&ROOT_KEY), "lorawanVersion": "1.0", "multicastClasses": ["B", "C"]});
    assert_eq!(host.post("/api/devices", device).await.0, StatusCode::CREATED);
    let group = json!({"devEui": format!("{GROUP:016x}"), "ismBand": "EU868", "devAddr": "01ffffff", "groupId": 1,
        "frequency": 869525000, "dataRate": 5, "sessionClass": "C", "mcKey": hex(&MC_KEY)});
    assert_eq!(host.post("/api/multicast-groups", group).await.0, StatusCode::CREATED);
    let runtime = host.server.state.runtime.clone();
    let plugin = runtime.active(library).unwrap();
    Setup { host, runtime, plugin, _dir: dir }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn device_context(memory: Vec<Attribute>) -> DeviceContext {
    DeviceContext { dev_eui: DEV, lorawan_version: LorawanVersion::V10, classes: vec![SessionClass::ClassC], firmware_version: None, hardware_version: None, memory, requests_sent: 0 }
}

/// A multicast-setup campaign on the test group, for uplinks that name no
/// session of their own.
fn setup_only() -> CampaignContext {
    campaign(CampaignKind::MulticastSetup, &[], String::new(), None)
}

fn campaign(kind: CampaignKind, payload: &[u8], payload_sha256: String, layout: Option<Fragmentation>) -> CampaignContext {
    let base = campaign_context();
    CampaignContext {
        kind,
        group: MulticastGroup { group_eui: GROUP, ..base.group },
        session_start_gps: unix_ms_to_gps_seconds(NOW_MS) + 600,
        session_timeout: 10,
        file_size: payload.len() as u32,
        payload_sha256,
        fragmentation: layout,
        reboot_gps: Some(unix_ms_to_gps_seconds(NOW_MS) + 7200),
        target_firmware: Some(0x0102_0000),
        ..base
    }
}

impl Setup {
    async fn build(&self, stage: &str, device: Option<DeviceContext>, c: &CampaignContext) -> Result<Vec<Downlink>, LibraryError> {
        self.runtime.device_library(&self.plugin).build_request(stage.to_string(), device, c.clone()).await.unwrap()
    }

    async fn parse(&self, fport: u8, payload: Vec<u8>, device: DeviceContext, c: &CampaignContext) -> Result<Vec<UplinkEvent>, ParseError> {
        self.runtime.device_library(&self.plugin).parse_uplink(fport, payload, device, c.clone()).await.unwrap()
    }

    async fn fragments(&self, data: &[u8], layout: Fragmentation, first: u32, count: u32) -> Vec<Downlink> {
        let fragments = self.runtime.device_library(&self.plugin).fragments(data.to_vec(), layout, first, count).await.unwrap().unwrap();
        // The number the library reports is the one in the header.
        for f in &fragments {
            assert_eq!(f.number, (u16::from_le_bytes([f.downlink.payload[1], f.downlink.payload[2]]) & 0x3fff) as u32);
        }
        fragments.into_iter().map(|f| f.downlink).collect()
    }

    /// Send a stage's request to the device model and parse what it answers.
    async fn exchange(&self, device: &mut DeviceModel, stage: &str, c: &CampaignContext, memory: &mut Vec<Attribute>) -> Vec<UplinkEvent> {
        let gps = unix_ms_to_gps_seconds(NOW_MS);
        let mut events = Vec::new();
        for dl in self.build(stage, Some(device_context(memory.clone())), c).await.unwrap() {
            for reply in device.handle(dl.fport, &dl.payload, gps).unwrap() {
                for e in self.parse(reply.fport, reply.payload, device_context(memory.clone()), c).await.unwrap() {
                    if let UplinkEvent::Remember(a) = &e {
                        memory.push(a.clone());
                    }
                    events.push(e);
                }
            }
        }
        events
    }
}

fn ok_answer(events: &[UplinkEvent], stage: &str) -> Vec<Fact> {
    events
        .iter()
        .find_map(|e| match e {
            UplinkEvent::Answer(a) if a.stage == stage => {
                assert_eq!(a.status, AnswerStatus::Ok, "{stage}: {a:?}");
                Some(a.facts.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {stage} answer in {events:?}"))
}

async fn whole_session(library: &str, version: PackageVersion) {
    let s = setup(library).await;
    let payload: Vec<u8> = (0..2000u32).map(|i| (i * 31 % 251) as u8).collect();
    let sha = s.host.server.state.store.blobs().put(&payload).unwrap();
    let layout = {
        let mut l = s.runtime.device_library(&s.plugin).fragment_layout(2000, 242).await.unwrap().unwrap();
        assert_eq!((l.nb_frag, l.frag_size, l.padding), (9, 239, 151));
        l.descriptor = 0x0403_0201;
        l.frag_index = 2;
        l
    };
    let c = campaign(CampaignKind::FirmwareUpdate, &payload, sha, Some(layout));

    let plan: Vec<String> = s.runtime.device_library(&s.plugin).plan(c.clone()).await.unwrap().unwrap().into_iter().map(|x| x.name).collect();
    assert_eq!(plan, ["PackageVersion", "McGroupSetup", "DevRebootTime", "FragSessionSetup", "McClassCSessionSetup", "WaitSessionStart", "DataFragment", "FragSessionStatus", "DevUpgradeImage", "DevVersion", "Cleanup"]);

    let mut device = DeviceModel::new(DEV, ROOT_KEY, false, version);
    // This device's bootloader takes a raw image as the target version.
    device.raw_install_version = c.target_firmware;
    let mut memory = Vec::new();
    let facts = ok_answer(&s.exchange(&mut device, "PackageVersion", &c, &mut memory).await, "PackageVersion");
    assert_eq!(facts, vec![Fact::PackageVersion((3, if version == PackageVersion::V2 { 2 } else { 1 }))]);

    ok_answer(&s.exchange(&mut device, "McGroupSetup", &c, &mut memory).await, "McGroupSetup");
    assert_eq!(device.mc_key(1), Some(MC_KEY), "device recovered the group's McKey");
    assert_eq!(device.group(1), Some((0x01ffffff, 0, 65_535)));

    ok_answer(&s.exchange(&mut device, "DevRebootTime", &c, &mut memory).await, "DevRebootTime");
    assert_eq!(device.reboot_at_gps, Some(c.reboot_gps.unwrap() as u32));
    ok_answer(&s.exchange(&mut device, "FragSessionSetup", &c, &mut memory).await, "FragSessionSetup");
    let facts = ok_answer(&s.exchange(&mut device, "McClassCSessionSetup", &c, &mut memory).await, "McClassCSessionSetup");
    assert_eq!(facts, vec![Fact::TimeToStart(600)]);
    assert_eq!(device.session.unwrap().frequency_hz, 869_525_000);

    // Lose fragments 2 and 5, then send coded ones until the device has it.
    let mut completion = Vec::new();
    for dl in s.fragments(&payload, layout, 1, 14).await {
        let n = u16::from_le_bytes([dl.payload[1], dl.payload[2]]) & 0x3fff;
        assert_eq!(dl.payload[2] >> 6, 2, "FragIndex in the header");
        if n == 2 || n == 5 {
            continue;
        }
        completion.extend(device.handle(dl.fport, &dl.payload, 0).unwrap());
    }
    assert_eq!(device.received_file.as_deref(), Some(payload.as_slice()), "device rebuilt the exact payload");
    if version == PackageVersion::V2 {
        // The v2 device checked the data-block MIC and said so.
        assert_eq!(completion.len(), 1);
        let events = s.parse(completion[0].fport, completion[0].payload.clone(), device_context(memory.clone()), &c).await.unwrap();
        assert!(matches!(&events[0], UplinkEvent::Reply(d) if d.payload == vec![0x04, 0x02]));
        assert!(ok_answer(&events, "FragSessionStatus").contains(&Fact::HoldsFile));
        assert!(memory.iter().any(|a| a.key == "ts004.session-cnt" && a.value == "1"), "{memory:?}");
    }
    let facts = ok_answer(&s.exchange(&mut device, "FragSessionStatus", &c, &mut memory).await, "FragSessionStatus");
    assert!(facts.contains(&Fact::MissingFragments(0)) && facts.contains(&Fact::HoldsFile), "{facts:?}");

    let facts = ok_answer(&s.exchange(&mut device, "DevUpgradeImage", &c, &mut memory).await, "DevUpgradeImage");
    assert_eq!(facts, vec![Fact::Other(Attribute { key: "nextFirmwareVersion".into(), value: "0x01020000".into() }), Fact::HoldsFile]);
    let facts = ok_answer(&s.exchange(&mut device, "DevVersion", &c, &mut memory).await, "DevVersion");
    assert_eq!(facts, vec![Fact::FirmwareVersion(0x0102_0000), Fact::HardwareVersion(1)]);
    ok_answer(&s.exchange(&mut device, "Cleanup", &c, &mut memory).await, "Cleanup");
    assert_eq!(device.mc_key(1), None, "group deleted");
    // Cleanup is confirmed by halves: a retry asks only for the missing one.
    for (key, port) in [("cleanup.group-deleted", 201), ("cleanup.frag-session-deleted", 200)] {
        assert!(memory.iter().any(|a| a.key == key), "{key} remembered: {memory:?}");
        let half = vec![Attribute { key: key.into(), value: "1".into() }];
        let retry = s.build("Cleanup", Some(device_context(half)), &c).await.unwrap();
        assert_eq!(retry.iter().map(|d| d.fport).collect::<Vec<_>>(), [port], "after {key}");
    }

    if version == PackageVersion::V2 {
        // A second session must carry a higher SessionCnt; the plugin took it from memory.
        ok_answer(&s.exchange(&mut device, "FragSessionSetup", &c, &mut memory).await, "FragSessionSetup");
        assert!(memory.iter().any(|a| a.key == "ts004.session-cnt" && a.value == "2"));

        // The answer to a setup got lost, so the server retries with the same
        // SessionCnt: the device calls it a replay, the library spends that
        // counter and the next retry goes through.
        let lost = s.build("FragSessionSetup", Some(device_context(memory.clone())), &c).await.unwrap();
        device.handle(lost[0].fport, &lost[0].payload, 0).unwrap();
        let events = s.exchange(&mut device, "FragSessionSetup", &c, &mut memory).await;
        assert!(!events.iter().any(|e| matches!(e, UplinkEvent::Answer(_))), "a replay is not a final answer: {events:?}");
        assert_eq!(memory.iter().rev().find(|a| a.key == "ts004.session-cnt").unwrap().value, "3");
        ok_answer(&s.exchange(&mut device, "FragSessionSetup", &c, &mut memory).await, "FragSessionSetup");
        assert_eq!(memory.iter().rev().find(|a| a.key == "ts004.session-cnt").unwrap().value, "4");
    }

    // Cancelling a reboot sends 0xFFFFFFFF.
    let mut cancel = c.clone();
    cancel.cancelling = true;
    let dl = s.build("DevRebootTime", Some(device_context(vec![])), &cancel).await.unwrap();
    assert_eq!(dl[0].payload, vec![0x02, 0xff, 0xff, 0xff, 0xff]);
}

#[tokio::test]
async fn lorawan_v1_runs_a_whole_session_against_a_v1_device() {
    whole_session("lorawan-v1", PackageVersion::V1).await;
}

#[tokio::test]
async fn lorawan_v2_runs_a_whole_session_against_a_v2_device() {
    whole_session("lorawan-v2", PackageVersion::V2).await;
}

#[tokio::test]
async fn a_device_with_the_wrong_root_key_does_not_recover_mc_key() {
    let s = setup("lorawan-v1").await;
    let c = campaign(CampaignKind::MulticastSetup, &[], String::new(), None);
    let mut device = DeviceModel::new(DEV, [0x55; 16], false, PackageVersion::V1);
    s.exchange(&mut device, "McGroupSetup", &c, &mut vec![]).await;
    assert_ne!(device.mc_key(1), Some(MC_KEY));
}

#[tokio::test]
async fn clock_sync_corrects_a_drifting_device() {
    let s = setup("lorawan-v2").await;
    let gps = unix_ms_to_gps_seconds(NOW_MS);
    let mut device = DeviceModel::new(DEV, ROOT_KEY, false, PackageVersion::V2);
    device.clock_offset_s = -34;
    // An answer to another token than the device's own is ignored.
    let stale = s.parse(202, device.app_time_req(gps, 7, false).payload, device_context(vec![]), &setup_only()).await.unwrap();
    let UplinkEvent::Reply(stale) = &stale[0] else { panic!("{stale:?}") };
    device.handle(stale.fport, &stale.payload, gps).unwrap();
    assert_eq!(device.clock_offset_s, -34);
    let req = device.app_time_req(gps, 0, false);
    let events = s.parse(req.fport, req.payload, device_context(vec![]), &setup_only()).await.unwrap();
    let UplinkEvent::Reply(ans) = &events[0] else { panic!("{events:?}") };
    assert_eq!(ans.payload, vec![0x01, 34, 0, 0, 0, 0]);
    device.handle(ans.fport, &ans.payload, gps).unwrap();
    assert_eq!(device.clock_offset_s, 0);
    // In sync and no answer required: nothing to send.
    let req = device.app_time_req(gps, 1, false);
    assert!(s.parse(req.fport, req.payload, device_context(vec![]), &setup_only()).await.unwrap().is_empty());
}

#[tokio::test]
async fn malformed_uplinks_are_typed_errors_and_the_plugin_keeps_working() {
    let s = setup("lorawan-v1").await;
    let cases: [(u8, Vec<u8>, fn(&ParseError) -> bool); 5] = [
        (201, vec![0x01, 0x00, 0xc4], |e| matches!(e, ParseError::Truncated(_))),
        (200, vec![0x7f, 1, 2], |e| matches!(e, ParseError::UnknownCommand(0x7f))),
        (200, vec![], |e| matches!(e, ParseError::Truncated(_))),
        (17, vec![1], |e| matches!(e, ParseError::UnknownPort(17))),
        (203, vec![0x01, 1, 2, 0, 0, 0xf0], |e| matches!(e, ParseError::Truncated(_))),
    ];
    for (fport, payload, expected) in cases {
        let err = s.parse(fport, payload.clone(), device_context(vec![]), &setup_only()).await.unwrap_err();
        assert!(expected(&err), "port {fport} {payload:02x?}: {err:?}");
    }
    let events = s.parse(200, vec![0x02, 0x01], device_context(vec![]), &setup_only()).await.unwrap();
    ok_answer(&events, "McGroupSetup");
    let err = s.build("NoSuchStage", None, &campaign(CampaignKind::MulticastSetup, &[], String::new(), None)).await.unwrap_err();
    assert!(matches!(err, LibraryError::UnknownStage(_)));
}

#[tokio::test]
async fn the_plugin_sees_only_the_encrypted_mc_key() {
    let s = setup("lorawan-v1").await;
    let c = campaign(CampaignKind::MulticastSetup, &[], String::new(), None);
    let request = s.build("McGroupSetup", Some(device_context(vec![])), &c).await.unwrap();
    let bytes = &request[0].payload;
    use lorawan_fuota::keys::*;
    let kek = mc_ke_key(&mc_root_key(&ROOT_KEY, RootKeyKind::GenAppKey));
    assert_eq!(&bytes[6..22], &mc_key_encrypted(&kek, &MC_KEY), "McGroupSetupReq carries McKey_encrypted");
    let secrets = [ROOT_KEY, MC_KEY, kek, mc_root_key(&ROOT_KEY, RootKeyKind::GenAppKey)];
    for secret in secrets {
        assert!(!bytes.windows(16).any(|w| w == secret), "a key crossed into the plugin's output");
    }
}

#[tokio::test]
async fn class_b_sessions_start_on_a_beacon_period_with_the_right_periodicity() {
    let s = setup("lorawan-v2").await;
    let mut c = campaign(CampaignKind::MulticastSetup, &[], String::new(), None);
    c.group.session_class = SessionClass::ClassB;
    c.group.ping_slot_periodicity = 5;
    // The engine aligns a class B start; an unaligned one is refused, not rounded.
    let refused = s.build("McClassBSessionSetup", Some(device_context(vec![])), &c).await;
    assert!(matches!(refused, Err(LibraryError::Invalid(ref why)) if why.contains("SessionTime")), "{refused:?}");
    c.session_start_gps = c.session_start_gps.div_ceil(128) * 128;
    let plan: Vec<String> = s.runtime.device_library(&s.plugin).plan(c.clone()).await.unwrap().unwrap().into_iter().map(|x| x.name).collect();
    assert_eq!(plan, ["PackageVersion", "McGroupSetup", "McClassBSessionSetup"]);

    let mut device = DeviceModel::new(DEV, ROOT_KEY, false, PackageVersion::V2);
    let mut memory = Vec::new();
    ok_answer(&s.exchange(&mut device, "McGroupSetup", &c, &mut memory).await, "McGroupSetup");
    let events = s.exchange(&mut device, "McClassBSessionSetup", &c, &mut memory).await;
    ok_answer(&events, "McClassBSessionSetup");
    let session = device.session.unwrap();
    assert!(session.class_b);
    assert_eq!(session.start_gps as u64, c.session_start_gps, "the device is told the engine's aligned start");
    let dl = s.build("McClassBSessionSetup", Some(device_context(vec![])), &c).await.unwrap();
    assert_eq!(dl[0].payload[6] >> 4, 5, "ping-slot periodicity in the high nibble, not inverted");

    // A device that cannot do class B says so, and the answer is a rejection.
    let mut no_b = DeviceModel::new(DEV, ROOT_KEY, false, PackageVersion::V2);
    no_b.supports_class_b = false;
    s.exchange(&mut no_b, "McGroupSetup", &c, &mut vec![]).await;
    let events = s.exchange(&mut no_b, "McClassBSessionSetup", &c, &mut vec![]).await;
    assert!(events.iter().any(|e| matches!(e, UplinkEvent::Answer(a) if matches!(&a.status, AnswerStatus::Rejected(why) if why.contains("frequency")))), "{events:?}");
}

/// TS005-2.0.0: TimeToStart 0xFFFFFF means the device clock is out of sync.
/// The library has it resynchronised (TS003 ForceDeviceResyncReq) and does
/// not take the answer, so the session request goes again; once the clock
/// is right the device starts the session on time.
#[tokio::test]
async fn an_out_of_sync_device_is_resynchronised_and_asked_again() {
    for library in ["lorawan-v1", "lorawan-v2"] {
        let s = setup(library).await;
        let version = if library == "lorawan-v2" { PackageVersion::V2 } else { PackageVersion::V1 };
        let gps = unix_ms_to_gps_seconds(NOW_MS);
        let c = campaign(CampaignKind::MulticastSetup, &[], String::new(), None);
        let mut device = DeviceModel::new(DEV, ROOT_KEY, false, version);
        device.lose_clock(gps);
        let mut memory = Vec::new();
        ok_answer(&s.exchange(&mut device, "McGroupSetup", &c, &mut memory).await, "McGroupSetup");
        let events = s.exchange(&mut device, "McClassCSessionSetup", &c, &mut memory).await;
        assert!(!events.iter().any(|e| matches!(e, UplinkEvent::Answer(_))), "{library}: 0xFFFFFF is no answer: {events:?}");
        let resync = events.iter().find_map(|e| match e { UplinkEvent::Reply(d) => Some(d.clone()), _ => None }).expect("a resync request");
        assert_eq!((resync.fport, resync.payload[0]), (202, 0x03), "{library}: ForceDeviceResyncReq");
        // The device sends its AppTimeReq, the library answers, the clock is right.
        for req in device.handle(resync.fport, &resync.payload, gps).unwrap() {
            for e in s.parse(req.fport, req.payload, device_context(vec![]), &setup_only()).await.unwrap() {
                if let UplinkEvent::Reply(ans) = e {
                    device.handle(ans.fport, &ans.payload, gps).unwrap();
                }
            }
        }
        assert_eq!(device.device_gps(gps) as u64, gps, "{library}: clock resynchronised");
        let facts = ok_answer(&s.exchange(&mut device, "McClassCSessionSetup", &c, &mut memory).await, "McClassCSessionSetup");
        assert_eq!(facts, vec![Fact::TimeToStart(600)], "{library}");
    }
}

/// v2 sessions ask for AckReception, so LoRa Basics Modem (which sends
/// FragDataBlockReceivedReq only then) reports completion.
#[tokio::test]
async fn v2_sessions_ask_for_ack_reception() {
    let s = setup("lorawan-v2").await;
    let payload = vec![7u8; 500];
    let sha = s.host.server.state.store.blobs().put(&payload).unwrap();
    let layout = s.runtime.device_library(&s.plugin).fragment_layout(500, 242).await.unwrap().unwrap();
    let c = campaign(CampaignKind::BinaryTransfer, &payload, sha, Some(layout));
    let dl = s.build("FragSessionSetup", Some(device_context(vec![])), &c).await.unwrap();
    assert_eq!(dl[0].payload[5] & 0x40, 0x40, "AckReception set in Control");
}

#[tokio::test]
async fn an_answer_naming_another_session_is_no_answer() {
    for library in ["lorawan-v1", "lorawan-v2"] {
        let s = setup(library).await;
        let layout = Fragmentation { frag_index: 2, nb_frag: 9, frag_size: 239, padding: 0, descriptor: 0, block_ack_delay: 0, session_cnt: None };
        let c = campaign(CampaignKind::FirmwareUpdate, &[0; 2000], String::new(), Some(layout));
        let answers = |events: &[UplinkEvent]| events.iter().filter(|e| matches!(e, UplinkEvent::Answer(_))).count();
        // FragSessionSetupAns for FragIndex 1 and 2: only the campaign's (2) answers.
        for (frag_index, expected) in [(1u8, 0), (2, 1)] {
            let events = s.parse(201, vec![0x02, frag_index << 6], device_context(vec![]), &c).await.unwrap();
            assert_eq!(answers(&events), expected, "{library}: FragIndex {frag_index}: {events:?}");
        }
        // McGroupSetupAns for group 3 while the campaign's group is 1.
        let events = s.parse(200, vec![0x02, 0x03], device_context(vec![]), &c).await.unwrap();
        assert_eq!(answers(&events), 0, "{library}: {events:?}");
        assert!(matches!(&events[0], UplinkEvent::Note(n) if n.contains("McGroupID 3")), "{library}: {events:?}");
        let events = s.parse(200, vec![0x02, 0x01], device_context(vec![]), &c).await.unwrap();
        assert_eq!(answers(&events), 1, "{library}: {events:?}");
    }
}
