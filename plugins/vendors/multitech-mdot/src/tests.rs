//! Native tests of what runs without the host: every path here avoids the
//! `keys` and `payload` imports, which are stubs off wasm.

use super::*;
use airlift_plugin_sdk::device_library::airlift::plugin::types::{Attribute, IsmBand, LorawanVersion, MulticastGroup};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
}

fn layout(frag_index: u8, nb_frag: u32, frag_size: u16) -> Fragmentation {
    Fragmentation { frag_index, nb_frag, frag_size, padding: 0, descriptor: 0, block_ack_delay: 1, session_cnt: None }
}

fn campaign(kind: CampaignKind, frag_index: u8) -> CampaignContext {
    CampaignContext {
        campaign_id: "c1".into(),
        kind,
        group: MulticastGroup {
            group_eui: 0x70b3_d5ff_fe00_0001,
            group_id: 1,
            mc_addr: 0x0102_0304,
            session_class: SessionClass::ClassC,
            ism_band: IsmBand::Eu868,
            dl_dwell_time: false,
            frequency_hz: 869_525_000,
            data_rate: 3,
            ping_slot_periodicity: 0,
            min_fcnt: 0,
            max_fcnt: 0xffff,
        },
        session_start_gps: 1_400_000_000,
        session_timeout: 10,
        file_size: 100,
        payload_sha256: "00".into(),
        fragmentation: Some(Fragmentation { padding: 0, ..layout(frag_index, 10, 10) }),
        reboot_gps: None,
        target_firmware: None,
        base_firmware: None,
        cancelling: false,
    }
}

fn device(memory: &[(&str, &str)]) -> DeviceContext {
    DeviceContext {
        dev_eui: 0x0011_2233_4455_6677,
        lorawan_version: LorawanVersion::V10,
        classes: vec![SessionClass::ClassC],
        firmware_version: None,
        hardware_version: None,
        memory: memory.iter().map(|(k, v)| Attribute { key: (*k).into(), value: (*v).into() }).collect(),
        requests_sent: 1,
    }
}

/// The stage an event answers, and whether the answer is ok.
fn stage_of(event: &UplinkEvent) -> Option<(&str, bool)> {
    match event {
        UplinkEvent::Answer(a) => Some((a.stage.as_str(), matches!(a.status, AnswerStatus::Ok))),
        _ => None,
    }
}

#[test]
fn crc64_is_redis() {
    assert_eq!(CRC64.checksum(b"123456789"), 0xE9C6_D914_C4B8_D9CA);
}

#[test]
fn file_crc_is_read_in_windows() {
    let file: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut reads = Vec::new();
    let crc = crc_of_file(file.len() as u64, |offset, len| {
        reads.push((offset, len));
        Ok(file[offset as usize..offset as usize + len as usize].to_vec())
    });
    assert_eq!(crc, Ok(CRC64.checksum(&file)));
    assert_eq!(reads, vec![(0, 65_536), (65_536, 65_536), (131_072, 18_928)]);
    // A payload shorter than its size ends the loop with an error.
    assert!(crc_of_file(10, |_, _| Ok(vec![])).is_err());
    assert!(crc_of_file(10, |_, _| Err("gone".into())).is_err());
    assert_eq!(crc_of_file(0, |_, _| unreachable!()), Ok(0));
}

#[test]
fn crc_uplinks_of_both_generations() {
    // MultiTech's own example (S1): index 0, CRC bytes least significant first.
    let current = parse_crc(&hex("80 00 1c 57 ca e8 35 38 43 b2")).unwrap();
    assert_eq!(current, CrcReport { frag_index: Some(0), crc: 0xB243_3835_E8CA_571C });
    let legacy = parse_crc(&hex("80 1c 57 ca e8 35 38 43 b2")).unwrap();
    assert_eq!(legacy, CrcReport { frag_index: None, crc: 0xB243_3835_E8CA_571C });
    assert_eq!(parse_crc(&hex("80 02 01 00 00 00 00 00 00 00")).unwrap(), CrcReport { frag_index: Some(2), crc: 1 });
    assert!(matches!(parse_crc(&hex("80 00 1c 57")), Err(ParseError::Truncated(_))));
    assert!(matches!(parse_crc(&hex("80 04 00 00 00 00 00 00 00 00")), Err(ParseError::Malformed(_))));
    assert!(matches!(parse_crc(&[0x80; 11]), Err(ParseError::Malformed(_))));
}

#[test]
fn crc_answers_carry_index_and_verdict() {
    assert_eq!(crc_answer(0, true), [0x80, 0x01]);
    assert_eq!(crc_answer(0, false), [0x80, 0x00]);
    assert_eq!(crc_answer(2, true), [0x80, 0x81]);
    assert_eq!(crc_answer(3, false), [0x80, 0xc0]);
}

#[test]
fn fragments_are_numbered_from_zero() {
    let data: Vec<u8> = (0..100).collect();
    let enc = fec::Encoder::new(&data, 10, Version::V1).unwrap();
    let l = layout(0, 10, 10);
    // Uncoded: position p is row p − 1 under number p − 1.
    for p in 1..=10u32 {
        let (n, bytes) = wire_fragment(&enc, &l, p).unwrap();
        assert_eq!(n as u32, p - 1);
        assert_eq!(bytes[..3], [0x08, (p - 1) as u8, 0x00]);
        assert_eq!(bytes[3..], data[(p as usize - 1) * 10..p as usize * 10]);
    }
    // Coded: the first is parity line 0, which TS004 never sends.
    let (n, bytes) = wire_fragment(&enc, &l, 11).unwrap();
    assert_eq!((n, &bytes[..3]), (10, &[0x08, 10, 0][..]));
    assert_eq!(bytes[3..], enc.coded_row(0));
    // The second is line 1: TS004's first coded fragment (number M + 1).
    let (n, bytes) = wire_fragment(&enc, &l, 12).unwrap();
    assert_eq!(n, 11);
    assert_eq!(bytes[3..], enc.fragment(11).unwrap().1);
    // FragIndex in bits 15:14.
    let (_, bytes) = wire_fragment(&enc, &layout(2, 10, 10), 3).unwrap();
    assert_eq!(bytes[..3], [0x08, 0x02, 0x80]);
    // Numbers stop at the 14-bit field's end; positions start at 1.
    assert_eq!(wire_fragment(&enc, &l, 0x4000).unwrap().0, 0x3fff);
    assert!(matches!(wire_fragment(&enc, &l, 0x4001), Err(LibraryError::Invalid(_))));
    assert!(matches!(wire_fragment(&enc, &l, 0), Err(LibraryError::Invalid(_))));
    assert!(matches!(wire_fragment(&enc, &layout(4, 10, 10), 1), Err(LibraryError::Invalid(_))));
}

#[test]
fn a_single_fragment_is_repeated_not_zeroed() {
    let enc = fec::Encoder::new(b"abc", 4, Version::V1).unwrap();
    let (n, bytes) = wire_fragment(&enc, &layout(0, 1, 4), 3).unwrap();
    assert_eq!((n, bytes), (0, hex("08 00 00 61 62 63 00")));
}

#[test]
fn fragments_check_the_layout() {
    let data: Vec<u8> = (0..100).collect();
    let out = Library::fragments(data.clone(), layout(0, 10, 10), 9, 4).unwrap();
    assert_eq!(out.iter().map(|f| f.number).collect::<Vec<_>>(), vec![8, 9, 10, 11]);
    assert!(out.iter().all(|f| f.downlink.fport == 201));
    assert!(matches!(Library::fragments(data, layout(0, 11, 10), 1, 1), Err(LibraryError::Invalid(_))));
}

#[test]
fn plans_by_campaign_kind() {
    let names = |kind| Library::plan(campaign(kind, 0)).unwrap().into_iter().map(|s| s.name).collect::<Vec<_>>();
    let delivery = ["McGroupSetup", "FragSessionSetup", "McClassCSessionSetup", "WaitSessionStart", "DataFragment", "FragSessionStatus", "FileCheck"];
    assert_eq!(names(CampaignKind::FirmwareUpdate), [&delivery[..], &["SessionComplete"]].concat());
    assert_eq!(names(CampaignKind::BinaryTransfer), [&delivery[..], &["Cleanup"]].concat());
    assert_eq!(names(CampaignKind::MulticastSetup), ["McGroupSetup", "McClassCSessionSetup"]);
    let plan = Library::plan(campaign(CampaignKind::FirmwareUpdate, 0)).unwrap();
    let check = &plan[6];
    assert_eq!((check.mode, check.retry_limit, check.answer_timeout_s, check.required), (StageMode::DeviceInitiated, 1, 120, true));
    let mut class_b = campaign(CampaignKind::BinaryTransfer, 0);
    class_b.group.session_class = SessionClass::ClassB;
    assert!(matches!(Library::plan(class_b), Err(LibraryError::Unsupported(_))));
}

#[test]
fn layout_and_ports() {
    let l = Library::fragment_layout(1000, 242).unwrap();
    assert_eq!((l.nb_frag, l.frag_size, l.padding, l.block_ack_delay), (5, 239, 195, 1));
    assert!(matches!(Library::fragment_layout(8193 * 10, 13), Err(LibraryError::Unsupported(_))));
    let info = Library::describe();
    assert_eq!(info.max_fragments, 8192);
    assert_eq!(info.ports.iter().map(|p| p.fport).collect::<Vec<_>>(), vec![200, 201]);
}

#[test]
fn requests_without_keys() {
    let c = campaign(CampaignKind::FirmwareUpdate, 0);
    let d = Some(device(&[]));
    let req = |name: &str, c: &CampaignContext| Library::build_request(name.into(), d.clone(), c.clone());
    let setup = req("FragSessionSetup", &c).unwrap();
    assert_eq!(setup[0].payload, hex("02 02 0a 00 0a 01 00 00 00 00 00"));
    assert_eq!(req("FragSessionStatus", &c).unwrap()[0].payload, hex("01 01"));
    assert!(req("FileCheck", &c).unwrap().is_empty());
    assert!(req("SessionComplete", &c).unwrap().is_empty());
    assert!(matches!(req("DevVersion", &c), Err(LibraryError::UnknownStage(_))));
    let mut cancelling = c.clone();
    cancelling.cancelling = true;
    assert!(req("McClassCSessionSetup", &cancelling).unwrap().is_empty());
    let cleanup = req("Cleanup", &cancelling).unwrap();
    assert_eq!(cleanup.iter().map(|d| (d.fport, d.payload.clone())).collect::<Vec<_>>(), vec![(201, hex("03 00")), (200, hex("03 01"))]);
}

#[test]
fn session_complete_follows_the_file_check() {
    let c = campaign(CampaignKind::FirmwareUpdate, 1);
    let parse = |bytes: &str, memory: &[(&str, &str)]| Library::parse_uplink(201, hex(bytes), device(memory), c.clone());
    let ok = parse("90 01", &[("mdot.crc", "ok")]).unwrap();
    assert_eq!(stage_of(&ok[0]), Some(("SessionComplete", true)));
    let failed = parse("90 01", &[("mdot.crc", "failed")]).unwrap();
    assert_eq!(stage_of(&failed[0]), Some(("SessionComplete", false)));
    assert!(matches!(parse("90 00", &[("mdot.crc", "ok")]).unwrap()[..], [UplinkEvent::Note(_)]));
    assert!(matches!(parse("90", &[]), Err(ParseError::Truncated(_))));
}

#[test]
fn crc_messages_not_ours_need_no_file() {
    let c = campaign(CampaignKind::FirmwareUpdate, 1);
    let events = Library::parse_uplink(201, hex("80 00 1c 57 ca e8 35 38 43 b2"), device(&[]), c.clone()).unwrap();
    assert!(matches!(events[..], [UplinkEvent::Note(_)]));
    assert!(matches!(Library::parse_uplink(201, hex("80 01 1c"), device(&[]), c), Err(ParseError::Truncated(_))));
}

#[test]
fn ts004_and_ts005_answers() {
    let c = campaign(CampaignKind::BinaryTransfer, 1);
    let parse = |port, bytes: &str| Library::parse_uplink(port, hex(bytes), device(&[]), c.clone());
    // The Dot's success carries no FragIndex (§5).
    assert_eq!(stage_of(&parse(201, "02 00").unwrap()[0]), Some(("FragSessionSetup", true)));
    assert_eq!(stage_of(&parse(201, "02 42").unwrap()[0]), Some(("FragSessionSetup", false)));
    assert!(matches!(parse(201, "02 82").unwrap()[..], [UplinkEvent::Note(_)]));
    let status = parse(201, "01 0a 40 00 00").unwrap();
    match &status[0] {
        UplinkEvent::Answer(a) => {
            assert_eq!(a.stage, "FragSessionStatus");
            assert!(matches!(a.facts[..], [Fact::ReceivedFragments(10), Fact::MissingFragments(0), Fact::HoldsFile]));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(stage_of(&parse(200, "02 01").unwrap()[0]), Some(("McGroupSetup", true)));
    assert!(matches!(parse(200, "02 02").unwrap()[..], [UplinkEvent::Note(_)]));
    let session = parse(200, "04 01 0d 00 00").unwrap();
    assert_eq!(stage_of(&session[0]), Some(("McClassCSessionSetup", true)));
    assert_eq!(stage_of(&parse(200, "04 09").unwrap()[0]), Some(("McClassCSessionSetup", false)));
    // Cleanup: both halves confirmed answers the stage.
    let deleted = Library::parse_uplink(200, hex("03 01"), device(&[("cleanup.frag-session-deleted", "1")]), c.clone()).unwrap();
    assert!(deleted.iter().any(|e| stage_of(e) == Some(("Cleanup", true))));
    assert!(matches!(parse(202, "00"), Err(ParseError::UnknownPort(202))));
    assert!(matches!(parse(201, "7f 00"), Err(ParseError::UnknownCommand(0x7f))));
    assert!(matches!(parse(201, "02"), Err(ParseError::Truncated(_))));
    assert!(matches!(parse(201, ""), Err(ParseError::Truncated(_))));
}
