//! TS005 Remote Multicast Setup (v1 and v2; v2 adds "start missed").

use crate::wire::{at_most, parse_all, put_u24, CodecError, Parsed};
use crate::PackageVersion;

/// TimeToStart of a device whose clock is out of sync: the start is more
/// than 2^24 - 1 s away by its clock (TS005-2.0.0 §4.4). The server should
/// resynchronise the device's clock and ask again.
pub const TIME_TO_START_OUT_OF_SYNC: u32 = 0xff_ffff;

/// Frequencies from this one up are in the 2.4 GHz band, whose channels the
/// 3-byte field carries in 200 Hz steps (below it, 100 Hz steps). The LoRa
/// Alliance defines no 2.4 GHz coding; this is the one ChirpStack's `lrwn`
/// uses (`helpers::encode_freq` / `decode_freq`), which Semtech's 2.4 GHz
/// physical layer proposal describes.
const BAND_2G4_HZ: u32 = 2_400_000_000;
/// Encoded values from this one up are 200 Hz steps (12,000,000 × 200 Hz
/// = 2.4 GHz; no sub-GHz channel reaches 1.2 GHz).
const BAND_2G4_ENCODED: u32 = 12_000_000;

/// DLFrequency as the 3-byte field carries it.
fn encode_frequency(hz: u32) -> Result<u32, CodecError> {
    let step = if hz >= BAND_2G4_HZ { 200 } else { 100 };
    if hz % step != 0 {
        return Err(CodecError::OutOfRange { field: "DLFrequency", value: hz as u64, allowed: "a multiple of 100 Hz (200 Hz at 2.4 GHz)" });
    }
    let encoded = hz / step;
    at_most("DLFrequency", hz as u64, 0xff_ffff * 200, "up to 3.35 GHz")?;
    if step == 100 && encoded >= BAND_2G4_ENCODED {
        return Err(CodecError::OutOfRange { field: "DLFrequency", value: hz as u64, allowed: "below 1.2 GHz, or in the 2.4 GHz band" });
    }
    Ok(encoded)
}

fn decode_frequency(encoded: u32) -> u32 {
    if encoded >= BAND_2G4_ENCODED {
        encoded * 200
    } else {
        encoded * 100
    }
}

fn group_id(value: u8) -> Result<u8, CodecError> {
    at_most("McGroupID", value as u64, 3, "0..3")?;
    Ok(value)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    PackageVersion,
    /// Groups (bit mask of 0..3) whose status is asked.
    McGroupStatus { mask: u8 },
    McGroupSetup { group: u8, mc_addr: u32, mc_key_encrypted: [u8; 16], min_fcnt: u32, max_fcnt: u32 },
    McGroupDelete { group: u8 },
    /// SessionTime in GPS seconds mod 2^32; the session lasts 2^timeout s.
    McClassCSession { group: u8, session_time: u32, timeout: u8, frequency_hz: u32, data_rate: u8 },
    /// The session lasts 128·2^timeout s; ping slots every 2^periodicity s.
    McClassBSession { group: u8, session_time: u32, timeout: u8, periodicity: u8, frequency_hz: u32, data_rate: u8 },
}

/// Error bits of McClassC/BSessionAns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionErrors {
    pub data_rate: bool,
    pub frequency: bool,
    pub group_undefined: bool,
    /// v2: the session start time had already passed.
    pub start_missed: bool,
    /// Bits 7:6, "reserved for future errors": errors when set (TS005-2.0.0).
    pub reserved: u8,
}

impl SessionErrors {
    fn from_bits(b: u8) -> Self {
        Self {
            data_rate: b & 0x04 != 0,
            frequency: b & 0x08 != 0,
            group_undefined: b & 0x10 != 0,
            start_missed: b & 0x20 != 0,
            reserved: b >> 6,
        }
    }
    fn bits(&self) -> u8 {
        (self.data_rate as u8) << 2 | (self.frequency as u8) << 3 | (self.group_undefined as u8) << 4 | (self.start_missed as u8) << 5 | (self.reserved & 0x03) << 6
    }
    pub fn any(&self) -> bool {
        self.bits() != 0
    }
    pub fn describe(&self) -> String {
        let mut v = vec![];
        if self.data_rate {
            v.push("data rate not supported");
        }
        if self.frequency {
            v.push("frequency not supported");
        }
        if self.group_undefined {
            v.push("multicast group undefined");
        }
        if self.start_missed {
            v.push("session start missed");
        }
        if self.reserved != 0 {
            v.push("reserved error bits set");
        }
        v.join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    PackageVersion(PackageVersion),
    /// Defined groups among those asked: (group id, McAddr).
    McGroupStatus { mask: u8, total_groups: u8, groups: Vec<(u8, u32)> },
    McGroupSetup { group: u8, id_error: bool },
    McGroupDelete { group: u8, undefined: bool },
    McClassCSession { group: u8, errors: SessionErrors, time_to_start: Option<u32> },
    McClassBSession { group: u8, errors: SessionErrors, time_to_start: Option<u32> },
}

impl Request {
    /// The request's bytes, or why a field cannot be encoded (nothing is
    /// masked into range).
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        let mut o = Vec::with_capacity(30);
        match *self {
            Request::PackageVersion => o.push(0x00),
            Request::McGroupStatus { mask } => {
                at_most("McGroupStatusReq mask", mask as u64, 0x0f, "0..15")?;
                o.extend([0x01, mask]);
            }
            Request::McGroupSetup { group, mc_addr, mc_key_encrypted, min_fcnt, max_fcnt } => {
                if min_fcnt > max_fcnt {
                    return Err(CodecError::OutOfRange { field: "minMcFCount", value: min_fcnt as u64, allowed: "at most maxMcFCount" });
                }
                o.extend([0x02, group_id(group)?]);
                o.extend(mc_addr.to_le_bytes());
                o.extend(mc_key_encrypted);
                o.extend(min_fcnt.to_le_bytes());
                o.extend(max_fcnt.to_le_bytes());
            }
            Request::McGroupDelete { group } => o.extend([0x03, group_id(group)?]),
            Request::McClassCSession { group, session_time, timeout, frequency_hz, data_rate } => {
                at_most("SessionTimeOut", timeout as u64, 15, "0..15")?;
                o.extend([0x04, group_id(group)?]);
                o.extend(session_time.to_le_bytes());
                o.push(timeout);
                put_u24(&mut o, encode_frequency(frequency_hz)?);
                o.push(data_rate);
            }
            Request::McClassBSession { group, session_time, timeout, periodicity, frequency_hz, data_rate } => {
                at_most("SessionTimeOut", timeout as u64, 15, "0..15")?;
                at_most("Periodicity", periodicity as u64, 7, "0..7")?;
                if session_time % 128 != 0 {
                    return Err(CodecError::OutOfRange { field: "SessionTime", value: session_time as u64, allowed: "a multiple of 128 s (a beacon period)" });
                }
                o.extend([0x05, group_id(group)?]);
                o.extend(session_time.to_le_bytes());
                o.push(periodicity << 4 | timeout);
                put_u24(&mut o, encode_frequency(frequency_hz)?);
                o.push(data_rate);
            }
        }
        Ok(o)
    }

    pub fn parse(bytes: &[u8]) -> Parsed<Request> {
        parse_all(bytes, |cid, r| {
            Ok(match cid {
                0x00 => Request::PackageVersion,
                0x01 => Request::McGroupStatus { mask: r.u8("McGroupStatusReq")? & 0x0f },
                0x02 => Request::McGroupSetup {
                    group: r.u8("McGroupSetupReq")? & 0x03,
                    mc_addr: r.u32("McAddr")?,
                    mc_key_encrypted: r.array("McKey_encrypted")?,
                    min_fcnt: r.u32("minMcFCount")?,
                    max_fcnt: r.u32("maxMcFCount")?,
                },
                0x03 => Request::McGroupDelete { group: r.u8("McGroupDeleteReq")? & 0x03 },
                0x04 => Request::McClassCSession {
                    group: r.u8("McClassCSessionReq")? & 0x03,
                    session_time: r.u32("SessionTime")?,
                    timeout: r.u8("SessionTimeOut")? & 0x0f,
                    frequency_hz: decode_frequency(r.u24("DLFrequency")?),
                    data_rate: r.u8("DR")?,
                },
                0x05 => {
                    let group = r.u8("McClassBSessionReq")? & 0x03;
                    let session_time = r.u32("SessionTime")?;
                    let tp = r.u8("TimeOutPeriodicity")?;
                    Request::McClassBSession {
                        group,
                        session_time,
                        timeout: tp & 0x0f,
                        periodicity: (tp >> 4) & 0x07,
                        frequency_hz: decode_frequency(r.u24("DLFrequency")?),
                        data_rate: r.u8("DR")?,
                    }
                }
                other => return Err(CodecError::UnknownCommand(other)),
            })
        })
    }
}

impl Uplink {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::new();
        match self {
            Uplink::PackageVersion(p) => o.extend([0x00, p.package, p.version]),
            Uplink::McGroupStatus { mask, total_groups, groups } => {
                o.extend([0x01, (total_groups & 0x07) << 4 | (mask & 0x0f)]);
                for (id, addr) in groups {
                    o.push(*id);
                    o.extend(addr.to_le_bytes());
                }
            }
            Uplink::McGroupSetup { group, id_error } => o.extend([0x02, group & 0x03 | (*id_error as u8) << 2]),
            Uplink::McGroupDelete { group, undefined } => o.extend([0x03, group & 0x03 | (*undefined as u8) << 2]),
            Uplink::McClassCSession { group, errors, time_to_start } | Uplink::McClassBSession { group, errors, time_to_start } => {
                o.push(if matches!(self, Uplink::McClassCSession { .. }) { 0x04 } else { 0x05 });
                o.push(group & 0x03 | errors.bits());
                if let Some(t) = time_to_start {
                    put_u24(&mut o, *t);
                }
            }
        }
        o
    }

    pub fn parse(bytes: &[u8]) -> Parsed<Uplink> {
        parse_all(bytes, |cid, r| {
            Ok(match cid {
                0x00 => Uplink::PackageVersion(PackageVersion { package: r.u8("PackageIdentifier")?, version: r.u8("PackageVersion")? }),
                0x01 => {
                    let status = r.u8("McGroupStatusAns")?;
                    let mask = status & 0x0f;
                    let mut groups = Vec::new();
                    for _ in 0..mask.count_ones() {
                        groups.push((r.u8("McGroupID")?, r.u32("McAddr")?));
                    }
                    Uplink::McGroupStatus { mask, total_groups: (status >> 4) & 0x07, groups }
                }
                0x02 => {
                    let b = r.u8("McGroupSetupAns")?;
                    Uplink::McGroupSetup { group: b & 0x03, id_error: b & 0x04 != 0 }
                }
                0x03 => {
                    let b = r.u8("McGroupDeleteAns")?;
                    Uplink::McGroupDelete { group: b & 0x03, undefined: b & 0x04 != 0 }
                }
                0x04 | 0x05 => {
                    // TimeToStart follows only when bits 7:2 are all 0
                    // (TS005-2.0.0; v1 stacks set fewer error bits, and
                    // LoRaMac-node answers a missed start with bit 4 alone).
                    let status = r.u8("session answer")?;
                    let errors = SessionErrors::from_bits(status & 0xfc);
                    let time_to_start = if status & 0xfc != 0 { None } else { Some(r.u24("TimeToStart")?) };
                    let group = status & 0x03;
                    if cid == 0x04 {
                        Uplink::McClassCSession { group, errors, time_to_start }
                    } else {
                        Uplink::McClassBSession { group, errors, time_to_start }
                    }
                }
                other => return Err(CodecError::UnknownCommand(other)),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec::tests::hex;

    #[test]
    fn requests_match_the_vectors() {
        let cases = [
            (
                Request::McGroupSetup {
                    group: 2,
                    mc_addr: 0x01020304,
                    mc_key_encrypted: [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8],
                    min_fcnt: 1024,
                    max_fcnt: 2048,
                },
                "02 02 04 03 02 01 01 02 03 04 05 06 07 08 01 02 03 04 05 06 07 08 00 04 00 00 00 08 00 00",
            ),
            (Request::McGroupStatus { mask: 0b11 }, "01 03"),
            (Request::McGroupDelete { group: 3 }, "03 03"),
            (Request::McClassCSession { group: 2, session_time: 1024, timeout: 15, frequency_hz: 868_100_000, data_rate: 5 }, "04 02 00 04 00 00 0f 28 76 84 05"),
            (
                Request::McClassBSession { group: 3, session_time: 1024, timeout: 15, periodicity: 4, frequency_hz: 868_100_000, data_rate: 5 },
                "05 03 00 04 00 00 4f 28 76 84 05",
            ),
            (Request::PackageVersion, "00"),
        ];
        for (req, bytes) in cases {
            assert_eq!(req.to_bytes().unwrap(), hex(bytes), "{req:?}");
            assert_eq!(Request::parse(&hex(bytes)).strict().unwrap(), vec![req]);
        }
    }

    #[test]
    fn out_of_range_requests_are_errors_not_masked() {
        let c = |timeout, frequency_hz| Request::McClassCSession { group: 0, session_time: 1024, timeout, frequency_hz, data_rate: 5 }.to_bytes();
        assert!(matches!(c(16, 868_100_000), Err(CodecError::OutOfRange { field: "SessionTimeOut", .. })));
        assert!(matches!(c(15, 868_100_050), Err(CodecError::OutOfRange { field: "DLFrequency", .. })));
        assert!(matches!(c(15, 1_500_000_000), Err(CodecError::OutOfRange { field: "DLFrequency", .. })));
        let b = |session_time, periodicity| Request::McClassBSession { group: 0, session_time, timeout: 1, periodicity, frequency_hz: 869_525_000, data_rate: 3 }.to_bytes();
        assert!(matches!(b(1024, 8), Err(CodecError::OutOfRange { field: "Periodicity", .. })));
        assert!(matches!(b(1000, 4), Err(CodecError::OutOfRange { field: "SessionTime", .. })));
        assert!(b(1024, 7).is_ok());
        assert!(matches!(Request::McGroupDelete { group: 4 }.to_bytes(), Err(CodecError::OutOfRange { field: "McGroupID", .. })));
        let setup = |min_fcnt, max_fcnt| Request::McGroupSetup { group: 0, mc_addr: 1, mc_key_encrypted: [0; 16], min_fcnt, max_fcnt }.to_bytes();
        assert!(matches!(setup(10, 9), Err(CodecError::OutOfRange { .. })));
    }

    /// 2.4 GHz channels go in 200 Hz steps (ChirpStack's coding); sub-GHz
    /// in 100 Hz steps, as the table-driven vectors above show.
    #[test]
    fn frequencies_in_the_2g4_band_use_200_hz_steps() {
        let req = Request::McClassCSession { group: 1, session_time: 1024, timeout: 4, frequency_hz: 2_403_000_000, data_rate: 0 };
        let bytes = req.to_bytes().unwrap();
        // 2,403,000,000 / 200 = 12,015,000 = 0xB75598.
        assert_eq!(&bytes[7..10], &hex("98 55 b7")[..]);
        assert_eq!(Request::parse(&bytes).strict().unwrap(), vec![req]);
        let odd = Request::McClassCSession { group: 1, session_time: 1024, timeout: 4, frequency_hz: 2_403_000_100, data_rate: 0 };
        assert!(matches!(odd.to_bytes(), Err(CodecError::OutOfRange { field: "DLFrequency", .. })));
    }

    #[test]
    fn uplinks_match_the_vectors() {
        let errors = |dr, f, g| SessionErrors { data_rate: dr, frequency: f, group_undefined: g, ..Default::default() };
        let cases = [
            (Uplink::McGroupSetup { group: 2, id_error: true }, "02 06"),
            (Uplink::McGroupStatus { mask: 0b11, total_groups: 2, groups: vec![(0, 0x01020304), (1, 0x02020304)] }, "01 23 00 04 03 02 01 01 04 03 02 02"),
            (Uplink::McGroupDelete { group: 3, undefined: true }, "03 07"),
            (Uplink::McClassCSession { group: 2, errors: errors(false, false, false), time_to_start: Some(1024) }, "04 02 00 04 00"),
            (Uplink::McClassCSession { group: 2, errors: errors(true, true, true), time_to_start: None }, "04 1e"),
            (Uplink::McClassBSession { group: 3, errors: errors(false, false, false), time_to_start: Some(1024) }, "05 03 00 04 00"),
            (Uplink::McClassBSession { group: 3, errors: errors(true, true, true), time_to_start: None }, "05 1f"),
            (Uplink::PackageVersion(PackageVersion { package: 1, version: 1 }), "00 01 01"),
        ];
        for (up, bytes) in cases {
            assert_eq!(up.to_bytes(), hex(bytes), "{up:?}");
            assert_eq!(Uplink::parse(&hex(bytes)).strict().unwrap(), vec![up]);
        }
        let missed = Uplink::parse(&hex("04 22")).strict().unwrap();
        assert!(matches!(&missed[0], Uplink::McClassCSession { errors, time_to_start: None, .. } if errors.start_missed));
    }

    /// TS005-2.0.0: reserved bits 7:6 are errors, and TimeToStart is there
    /// only when bits 7:2 are all 0; the rest of the uplink is read on.
    #[test]
    fn reserved_error_bits_are_errors_and_keep_the_rest() {
        let ups = Uplink::parse(&hex("05 41 02 01")).strict().unwrap();
        assert_eq!(ups.len(), 2, "{ups:?}");
        assert!(matches!(&ups[0], Uplink::McClassBSession { group: 1, errors, time_to_start: None } if errors.reserved == 1 && errors.any()));
        assert_eq!(ups[1], Uplink::McGroupSetup { group: 1, id_error: false });
        assert_eq!(SessionErrors::from_bits(0xc0).describe(), "reserved error bits set");
        // A device out of sync: 0xFFFFFF.
        let ups = Uplink::parse(&hex("04 00 ff ff ff")).strict().unwrap();
        assert_eq!(ups, vec![Uplink::McClassCSession { group: 0, errors: SessionErrors::default(), time_to_start: Some(TIME_TO_START_OUT_OF_SYNC) }]);
    }

    #[test]
    fn bad_uplinks_are_errors_not_panics() {
        assert_eq!(Uplink::parse(&hex("04 02 00")).strict(), Err(CodecError::Truncated("TimeToStart")));
        assert_eq!(Uplink::parse(&hex("01 23 00 04 03")).strict(), Err(CodecError::Truncated("McAddr")));
        assert_eq!(Uplink::parse(&hex("7f")).strict(), Err(CodecError::UnknownCommand(0x7f)));
        assert_eq!(Uplink::parse(&[]).strict(), Err(CodecError::Truncated("empty payload")));
        assert_eq!(Request::parse(&hex("02 02 04")).strict(), Err(CodecError::Truncated("McAddr")));
        // The answer before an unknown command is kept.
        let parsed = Uplink::parse(&hex("02 01 7f 00"));
        assert_eq!(parsed.commands, vec![Uplink::McGroupSetup { group: 1, id_error: false }]);
        assert_eq!(parsed.errors, vec![CodecError::UnknownCommand(0x7f)]);
    }
}
