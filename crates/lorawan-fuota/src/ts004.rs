//! TS004 Fragmented Data Block Transport (v1 and v2).

use crate::fec::MAX_FRAGMENT_NUMBER;
use crate::wire::{at_most, parse_all, CodecError, Parsed};
use crate::{PackageVersion, Version};

/// FragSessionSetupReq fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSetup {
    /// Multicast groups (bit mask of 0..3) the session listens on.
    pub mc_group_mask: u8,
    pub frag_index: u8,
    pub nb_frag: u16,
    pub frag_size: u8,
    pub block_ack_delay: u8,
    /// Fragmentation algorithm (FragAlgo); 0 is the parity-matrix code.
    pub frag_algo: u8,
    /// v2: device answers every fragment reception with FragDataBlockReceivedReq.
    pub ack_reception: bool,
    pub padding: u8,
    /// The 4 descriptor bytes as a little-endian u32.
    pub descriptor: u32,
    /// v2 only: session counter and data-block MIC.
    pub v2: Option<(u16, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    PackageVersion,
    FragSessionStatus { participants: bool, frag_index: u8 },
    FragSessionSetup(SessionSetup),
    FragSessionDelete { frag_index: u8 },
    /// `n` is 1-based; fragments above NbFrag are coded.
    DataFragment { frag_index: u8, n: u16, payload: Vec<u8> },
    /// v2: the server acknowledges a FragDataBlockReceivedReq.
    FragDataBlockReceived { frag_index: u8 },
}

/// FragSessionSetupAns status bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetupErrors {
    pub encoding_unsupported: bool,
    pub not_enough_memory: bool,
    pub index_unsupported: bool,
    pub wrong_descriptor: bool,
    /// v2: SessionCnt was not above the last one.
    pub session_cnt_replay: bool,
}

impl SetupErrors {
    fn from_bits(b: u8) -> Self {
        Self {
            encoding_unsupported: b & 0x01 != 0,
            not_enough_memory: b & 0x02 != 0,
            index_unsupported: b & 0x04 != 0,
            wrong_descriptor: b & 0x08 != 0,
            session_cnt_replay: b & 0x10 != 0,
        }
    }
    fn bits(&self) -> u8 {
        self.encoding_unsupported as u8
            | (self.not_enough_memory as u8) << 1
            | (self.index_unsupported as u8) << 2
            | (self.wrong_descriptor as u8) << 3
            | (self.session_cnt_replay as u8) << 4
    }
    pub fn any(&self) -> bool {
        self.bits() != 0
    }
    pub fn describe(&self) -> String {
        let names = ["encoding unsupported", "not enough memory", "FragIndex unsupported", "wrong descriptor", "SessionCnt replay"];
        names.iter().enumerate().filter(|(i, _)| self.bits() & (1 << i) != 0).map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
    }
}

/// FragSessionStatusAns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub frag_index: u8,
    /// Absent when a v2 device answers with the status byte alone.
    pub received: Option<u16>,
    pub missing: Option<u8>,
    pub not_enough_matrix_memory: bool,
    /// v2 status bits.
    pub session_does_not_exist: bool,
    pub mic_error: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    PackageVersion(PackageVersion),
    FragSessionStatus(SessionStatus),
    FragSessionSetup { frag_index: u8, errors: SetupErrors },
    FragSessionDelete { frag_index: u8, does_not_exist: bool },
    /// v2: the device rebuilt the block (MIC checked).
    FragDataBlockReceived { frag_index: u8, mic_error: bool },
}

fn frag_index(value: u8) -> Result<u8, CodecError> {
    at_most("FragIndex", value as u64, 3, "0..3")?;
    Ok(value)
}

/// A fragment number as the 14-bit field carries it: 1..16383.
fn fragment_number(field: &'static str, value: u32) -> Result<u16, CodecError> {
    if value == 0 {
        return Err(CodecError::OutOfRange { field, value: 0, allowed: "1..16383" });
    }
    at_most(field, value as u64, MAX_FRAGMENT_NUMBER as u64, "1..16383")?;
    Ok(value as u16)
}

impl Request {
    /// The request's bytes, or why a field cannot be encoded: nothing is
    /// masked into range, and a v2 setup without its v2 fields is an error.
    pub fn to_bytes(&self, version: Version) -> Result<Vec<u8>, CodecError> {
        let mut o = Vec::new();
        match self {
            Request::PackageVersion => o.push(0x00),
            Request::FragSessionStatus { participants, frag_index: i } => o.extend([0x01, (*participants as u8) | frag_index(*i)? << 1]),
            Request::FragSessionSetup(s) => {
                at_most("McGroupBitMask", s.mc_group_mask as u64, 0x0f, "0..15")?;
                at_most("BlockAckDelay", s.block_ack_delay as u64, 7, "0..7")?;
                at_most("FragAlgo", s.frag_algo as u64, 7, "0..7")?;
                o.extend([0x02, frag_index(s.frag_index)? << 4 | s.mc_group_mask]);
                o.extend(fragment_number("NbFrag", s.nb_frag as u32)?.to_le_bytes());
                if s.frag_size == 0 {
                    return Err(CodecError::OutOfRange { field: "FragSize", value: 0, allowed: "1..255" });
                }
                o.push(s.frag_size);
                let ack = match (version, s.ack_reception) {
                    (Version::V2, true) => 0x40,
                    (Version::V1, true) => return Err(CodecError::OutOfRange { field: "AckReception", value: 1, allowed: "v2 only" }),
                    (_, false) => 0,
                };
                o.push(ack | s.frag_algo << 3 | s.block_ack_delay);
                o.push(s.padding);
                o.extend(s.descriptor.to_le_bytes());
                match (version, s.v2) {
                    (Version::V2, Some((cnt, mic))) => {
                        o.extend(cnt.to_le_bytes());
                        o.extend(mic.to_le_bytes());
                    }
                    (Version::V2, None) => return Err(CodecError::Missing("SessionCnt and MIC")),
                    (Version::V1, Some(_)) => return Err(CodecError::OutOfRange { field: "SessionCnt", value: 1, allowed: "v2 only" }),
                    (Version::V1, None) => {}
                }
            }
            Request::FragSessionDelete { frag_index: i } => o.extend([0x03, frag_index(*i)?]),
            Request::DataFragment { frag_index: i, n, payload } => {
                o.push(0x08);
                o.extend((fragment_number("DataFragment N", *n as u32)? | (frag_index(*i)? as u16) << 14).to_le_bytes());
                o.extend(payload);
            }
            Request::FragDataBlockReceived { frag_index: i } => {
                if version == Version::V1 {
                    return Err(CodecError::OutOfRange { field: "FragDataBlockReceivedAns", value: 1, allowed: "v2 only" });
                }
                o.extend([0x04, frag_index(*i)?])
            }
        }
        Ok(o)
    }

    pub fn parse(bytes: &[u8], version: Version) -> Parsed<Request> {
        parse_all(bytes, |cid, r| {
            Ok(match cid {
                0x00 => Request::PackageVersion,
                0x01 => {
                    let b = r.u8("FragSessionStatusReq")?;
                    Request::FragSessionStatus { participants: b & 0x01 != 0, frag_index: (b >> 1) & 0x03 }
                }
                0x02 => {
                    let session = r.u8("FragSession")?;
                    let nb_frag = r.u16("NbFrag")?;
                    let frag_size = r.u8("FragSize")?;
                    let control = r.u8("Control")?;
                    let padding = r.u8("Padding")?;
                    let descriptor = r.u32("Descriptor")?;
                    let v2 = match version {
                        Version::V2 => Some((r.u16("SessionCnt")?, r.u32("MIC")?)),
                        Version::V1 => None,
                    };
                    Request::FragSessionSetup(SessionSetup {
                        mc_group_mask: session & 0x0f,
                        frag_index: (session >> 4) & 0x03,
                        nb_frag,
                        frag_size,
                        block_ack_delay: control & 0x07,
                        frag_algo: (control >> 3) & 0x07,
                        ack_reception: version == Version::V2 && control & 0x40 != 0,
                        padding,
                        descriptor,
                        v2,
                    })
                }
                0x03 => Request::FragSessionDelete { frag_index: r.u8("FragSessionDeleteReq")? & 0x03 },
                0x04 if version == Version::V2 => Request::FragDataBlockReceived { frag_index: r.u8("FragDataBlockReceivedAns")? & 0x03 },
                0x08 => {
                    let h = r.u16("DataFragment header")?;
                    Request::DataFragment { frag_index: (h >> 14) as u8, n: h & 0x3fff, payload: r.rest().to_vec() }
                }
                other => return Err(CodecError::UnknownCommand(other)),
            })
        })
    }
}

impl Uplink {
    pub fn to_bytes(&self, version: Version) -> Vec<u8> {
        let mut o = Vec::new();
        match self {
            Uplink::PackageVersion(p) => o.extend([0x00, p.package, p.version]),
            Uplink::FragSessionStatus(s) => {
                o.push(0x01);
                let head = (s.received.unwrap_or(0) & 0x3fff) | (s.frag_index as u16 & 0x03) << 14;
                match version {
                    Version::V1 => {
                        o.extend(head.to_le_bytes());
                        o.push(s.missing.unwrap_or(0));
                        o.push(s.not_enough_matrix_memory as u8);
                    }
                    Version::V2 => {
                        o.push(s.not_enough_matrix_memory as u8 | (s.mic_error as u8) << 1 | (s.session_does_not_exist as u8) << 2);
                        if s.received.is_some() {
                            o.extend(head.to_le_bytes());
                            o.push(s.missing.unwrap_or(0));
                        }
                    }
                }
            }
            Uplink::FragSessionSetup { frag_index, errors } => o.extend([0x02, (frag_index & 0x03) << 6 | errors.bits()]),
            Uplink::FragSessionDelete { frag_index, does_not_exist } => o.extend([0x03, frag_index & 0x03 | (*does_not_exist as u8) << 2]),
            Uplink::FragDataBlockReceived { frag_index, mic_error } => o.extend([0x04, frag_index & 0x03 | (*mic_error as u8) << 2]),
        }
        o
    }

    pub fn parse(bytes: &[u8], version: Version) -> Parsed<Uplink> {
        parse_all(bytes, |cid, r| {
            Ok(match cid {
                0x00 => Uplink::PackageVersion(PackageVersion { package: r.u8("PackageIdentifier")?, version: r.u8("PackageVersion")? }),
                0x01 => match version {
                    Version::V1 => {
                        let head = r.u16("FragSessionStatusAns")?;
                        let missing = r.u8("MissingFrag")?;
                        let status = r.u8("Status")?;
                        Uplink::FragSessionStatus(SessionStatus {
                            frag_index: (head >> 14) as u8,
                            received: Some(head & 0x3fff),
                            missing: Some(missing),
                            not_enough_matrix_memory: status & 0x01 != 0,
                            session_does_not_exist: false,
                            mic_error: false,
                        })
                    }
                    Version::V2 => {
                        let status = r.u8("Status")?;
                        let does_not_exist = status & 0x04 != 0;
                        // TS004-2.0.0: with SessionDoesNotExist set, the
                        // answer is the status byte alone. LoRa Basics Modem
                        // sends the count bytes anyway (zeros, or stale
                        // counts): take them when exactly they remain and
                        // they cannot be the one 3-byte command, a
                        // PackageVersionAns of this package.
                        let basics_modem_long_form = does_not_exist && r.remaining() == 3 && r.peek(2) != Some([0x00, 3].as_slice());
                        let (frag_index, received, missing) = if !does_not_exist || basics_modem_long_form {
                            let head = r.u16("FragSessionStatusAns")?;
                            let missing = r.u8("MissingFrag")?;
                            if does_not_exist {
                                (0, None, None)
                            } else {
                                ((head >> 14) as u8, Some(head & 0x3fff), Some(missing))
                            }
                        } else {
                            (0, None, None)
                        };
                        Uplink::FragSessionStatus(SessionStatus {
                            frag_index,
                            received,
                            missing,
                            not_enough_matrix_memory: status & 0x01 != 0,
                            mic_error: status & 0x02 != 0,
                            session_does_not_exist: status & 0x04 != 0,
                        })
                    }
                },
                0x02 => {
                    let b = r.u8("FragSessionSetupAns")?;
                    Uplink::FragSessionSetup { frag_index: b >> 6, errors: SetupErrors::from_bits(b & 0x3f) }
                }
                0x03 => {
                    let b = r.u8("FragSessionDeleteAns")?;
                    Uplink::FragSessionDelete { frag_index: b & 0x03, does_not_exist: b & 0x04 != 0 }
                }
                0x04 if version == Version::V2 => {
                    let b = r.u8("FragDataBlockReceivedReq")?;
                    Uplink::FragDataBlockReceived { frag_index: b & 0x03, mic_error: b & 0x04 != 0 }
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

    fn setup(v2: Option<(u16, u32)>) -> SessionSetup {
        SessionSetup {
            mc_group_mask: 1,
            frag_index: 3,
            nb_frag: 1024,
            frag_size: 128,
            block_ack_delay: 5,
            frag_algo: 1,
            ack_reception: false,
            padding: 64,
            descriptor: u32::from_le_bytes([1, 2, 3, 4]),
            v2,
        }
    }

    #[test]
    fn v1_vectors() {
        let v = Version::V1;
        let requests = [
            (Request::FragSessionSetup(setup(None)), "02 31 00 04 80 0d 40 01 02 03 04"),
            (Request::FragSessionStatus { participants: true, frag_index: 2 }, "01 05"),
            (Request::FragSessionDelete { frag_index: 3 }, "03 03"),
            (Request::DataFragment { frag_index: 2, n: 1024, payload: vec![1, 2, 3, 4] }, "08 00 84 01 02 03 04"),
        ];
        for (req, bytes) in requests {
            assert_eq!(req.to_bytes(v).unwrap(), hex(bytes), "{req:?}");
            assert_eq!(Request::parse(&hex(bytes), v).strict().unwrap(), vec![req]);
        }
        let all = SetupErrors { encoding_unsupported: true, not_enough_memory: true, wrong_descriptor: true, ..Default::default() };
        let uplinks = [
            (Uplink::FragSessionSetup { frag_index: 2, errors: all }, "02 8b"),
            (
                Uplink::FragSessionStatus(SessionStatus {
                    frag_index: 3,
                    received: Some(1024),
                    missing: Some(128),
                    not_enough_matrix_memory: true,
                    session_does_not_exist: false,
                    mic_error: false,
                }),
                "01 00 c4 80 01",
            ),
            (Uplink::FragSessionDelete { frag_index: 3, does_not_exist: true }, "03 07"),
        ];
        for (up, bytes) in uplinks {
            assert_eq!(up.to_bytes(v), hex(bytes), "{up:?}");
            assert_eq!(Uplink::parse(&hex(bytes), v).strict().unwrap(), vec![up]);
        }
        // 0x04 is a v2 command only.
        assert_eq!(Uplink::parse(&hex("04 06"), v).strict(), Err(CodecError::UnknownCommand(4)));
    }

    #[test]
    fn v2_vectors() {
        let v = Version::V2;
        let req = Request::FragSessionSetup(setup(Some((128, u32::from_le_bytes([1, 2, 3, 4])))));
        assert_eq!(req.to_bytes(v).unwrap(), hex("02 31 00 04 80 0d 40 01 02 03 04 80 00 01 02 03 04"));
        assert_eq!(Request::parse(&req.to_bytes(v).unwrap(), v).strict().unwrap(), vec![req]);
        let mut with_ack = setup(Some((1, 0)));
        with_ack.ack_reception = true;
        assert_eq!(Request::FragSessionSetup(with_ack).to_bytes(v).unwrap()[5], 0x4d);
        assert_eq!(Request::FragDataBlockReceived { frag_index: 2 }.to_bytes(v).unwrap(), hex("04 02"));

        let status = SessionStatus {
            frag_index: 3,
            received: Some(1024),
            missing: Some(128),
            not_enough_matrix_memory: true,
            session_does_not_exist: false,
            mic_error: false,
        };
        let uplinks = [
            (Uplink::FragSessionStatus(status), "01 01 00 c4 80"),
            (Uplink::FragDataBlockReceived { frag_index: 2, mic_error: true }, "04 06"),
            (Uplink::PackageVersion(PackageVersion { package: 3, version: 2 }), "00 03 02"),
            (Uplink::FragSessionSetup { frag_index: 0, errors: SetupErrors { session_cnt_replay: true, ..Default::default() } }, "02 10"),
        ];
        for (up, bytes) in uplinks {
            assert_eq!(up.to_bytes(v), hex(bytes), "{up:?}");
            assert_eq!(Uplink::parse(&hex(bytes), v).strict().unwrap(), vec![up]);
        }
        let alone = Uplink::parse(&hex("01 04"), v).strict().unwrap();
        assert!(matches!(&alone[0], Uplink::FragSessionStatus(s) if s.session_does_not_exist && s.missing.is_none()));
    }

    /// TS004-2.0.0: SessionDoesNotExist means the status byte alone, so a
    /// command after it is read as that command, whatever its length.
    #[test]
    fn v2_short_status_form_is_chosen_by_its_bit() {
        let v = Version::V2;
        // Short status, then FragSessionDeleteAns and FragDataBlockReceivedReq.
        let ups = Uplink::parse(&hex("01 04 03 07 04 02"), v).strict().unwrap();
        assert_eq!(ups.len(), 3, "{ups:?}");
        assert!(matches!(&ups[0], Uplink::FragSessionStatus(s) if s.session_does_not_exist && s.received.is_none()));
        assert_eq!(ups[1], Uplink::FragSessionDelete { frag_index: 3, does_not_exist: true });
        assert_eq!(ups[2], Uplink::FragDataBlockReceived { frag_index: 2, mic_error: false });
        // Short status then a PackageVersionAns: three bytes that are a command.
        let ups = Uplink::parse(&hex("01 04 00 03 02"), v).strict().unwrap();
        assert_eq!(ups[1], Uplink::PackageVersion(PackageVersion { package: 3, version: 2 }));
        // LoRa Basics Modem's long form with the bit set: one answer.
        let ups = Uplink::parse(&hex("01 04 00 00 00"), v).strict().unwrap();
        assert!(matches!(&ups[..], [Uplink::FragSessionStatus(s)] if s.session_does_not_exist && s.missing.is_none()));
    }

    #[test]
    fn out_of_range_requests_are_errors_not_masked() {
        let v1 = Version::V1;
        let v2 = Version::V2;
        let bad = |s: SessionSetup, v| Request::FragSessionSetup(s).to_bytes(v);
        assert_eq!(bad(setup(None), v2), Err(CodecError::Missing("SessionCnt and MIC")));
        assert!(matches!(bad(setup(Some((1, 0))), v1), Err(CodecError::OutOfRange { field: "SessionCnt", .. })));
        assert!(matches!(bad(SessionSetup { frag_index: 4, ..setup(None) }, v1), Err(CodecError::OutOfRange { field: "FragIndex", .. })));
        assert!(matches!(bad(SessionSetup { nb_frag: 16384, ..setup(None) }, v1), Err(CodecError::OutOfRange { field: "NbFrag", .. })));
        assert!(matches!(bad(SessionSetup { nb_frag: 0, ..setup(None) }, v1), Err(CodecError::OutOfRange { field: "NbFrag", .. })));
        assert!(matches!(bad(SessionSetup { block_ack_delay: 8, ..setup(None) }, v1), Err(CodecError::OutOfRange { field: "BlockAckDelay", .. })));
        assert!(matches!(bad(SessionSetup { mc_group_mask: 16, ..setup(None) }, v1), Err(CodecError::OutOfRange { .. })));
        assert!(matches!(bad(SessionSetup { ack_reception: true, ..setup(None) }, v1), Err(CodecError::OutOfRange { field: "AckReception", .. })));
        let fragment = |n| Request::DataFragment { frag_index: 0, n, payload: vec![1] }.to_bytes(v1);
        assert!(matches!(fragment(0), Err(CodecError::OutOfRange { .. })));
        assert!(matches!(fragment(16384), Err(CodecError::OutOfRange { .. })));
        assert_eq!(fragment(16383).unwrap(), hex("08 ff 3f 01"));
        assert!(matches!(Request::FragSessionStatus { participants: true, frag_index: 4 }.to_bytes(v1), Err(CodecError::OutOfRange { .. })));
    }

    #[test]
    fn truncated_uplinks_are_errors() {
        assert_eq!(Uplink::parse(&hex("01 00 c4"), Version::V1).strict(), Err(CodecError::Truncated("MissingFrag")));
        assert_eq!(Uplink::parse(&hex("02"), Version::V1).strict(), Err(CodecError::Truncated("FragSessionSetupAns")));
        assert_eq!(Request::parse(&hex("02 31 00 04 80 0d 40 01 02 03 04"), Version::V2).strict(), Err(CodecError::Truncated("SessionCnt")));
        // What came before a truncated command is kept.
        let parsed = Uplink::parse(&hex("02 00 01 00 c4"), Version::V1);
        assert_eq!(parsed.commands, vec![Uplink::FragSessionSetup { frag_index: 0, errors: SetupErrors::default() }]);
        assert_eq!(parsed.errors, vec![CodecError::Truncated("MissingFrag")]);
    }
}
