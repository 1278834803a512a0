//! TS003 Application Layer Clock Synchronization. The bytes are the same in
//! v1 and v2; v2 saturates a correction that does not fit 32 bits.

use crate::wire::{at_most, parse_all, CodecError, Parsed};
use crate::{PackageVersion, Version};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    PackageVersion,
    /// Correction to add to the device clock, and the token echoed.
    AppTimeAns { time_correction: i32, token: u8 },
    /// Ask the device to sync every 128·2^periodicity s.
    DeviceAppTimePeriodicity { periodicity: u8 },
    /// Ask the device to send AppTimeReq this many times (1-7).
    ForceDeviceResync { nb_transmissions: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    PackageVersion(PackageVersion),
    /// Device time in GPS seconds (mod 2^32).
    AppTimeReq { device_time: u32, token: u8, ans_required: bool },
    DeviceAppTimePeriodicity { not_supported: bool, device_time: u32 },
}

impl Request {
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        Ok(match *self {
            Request::PackageVersion => vec![0x00],
            Request::AppTimeAns { time_correction, token } => {
                at_most("TokenAns", token as u64, 0x0f, "0..15")?;
                let mut o = vec![0x01];
                o.extend(time_correction.to_le_bytes());
                o.push(token);
                o
            }
            Request::DeviceAppTimePeriodicity { periodicity } => {
                at_most("Periodicity", periodicity as u64, 0x0f, "0..15")?;
                vec![0x02, periodicity]
            }
            Request::ForceDeviceResync { nb_transmissions } => {
                if nb_transmissions == 0 {
                    return Err(CodecError::OutOfRange { field: "NbTransmissions", value: 0, allowed: "1..7" });
                }
                at_most("NbTransmissions", nb_transmissions as u64, 0x07, "1..7")?;
                vec![0x03, nb_transmissions]
            }
        })
    }

    pub fn parse(bytes: &[u8]) -> Parsed<Request> {
        parse_all(bytes, |cid, r| {
            Ok(match cid {
                0x00 => Request::PackageVersion,
                0x01 => Request::AppTimeAns { time_correction: r.u32("TimeCorrection")? as i32, token: r.u8("TokenAns")? & 0x0f },
                0x02 => Request::DeviceAppTimePeriodicity { periodicity: r.u8("Periodicity")? & 0x0f },
                0x03 => Request::ForceDeviceResync { nb_transmissions: r.u8("NbTransmissions")? & 0x07 },
                other => return Err(CodecError::UnknownCommand(other)),
            })
        })
    }
}

impl Uplink {
    pub fn to_bytes(&self) -> Vec<u8> {
        match *self {
            Uplink::PackageVersion(p) => vec![0x00, p.package, p.version],
            Uplink::AppTimeReq { device_time, token, ans_required } => {
                let mut o = vec![0x01];
                o.extend(device_time.to_le_bytes());
                o.push(token & 0x0f | (ans_required as u8) << 4);
                o
            }
            Uplink::DeviceAppTimePeriodicity { not_supported, device_time } => {
                let mut o = vec![0x02, not_supported as u8];
                o.extend(device_time.to_le_bytes());
                o
            }
        }
    }

    pub fn parse(bytes: &[u8]) -> Parsed<Uplink> {
        parse_all(bytes, |cid, r| {
            Ok(match cid {
                0x00 => Uplink::PackageVersion(PackageVersion { package: r.u8("PackageIdentifier")?, version: r.u8("PackageVersion")? }),
                0x01 => {
                    let device_time = r.u32("DeviceTime")?;
                    let p = r.u8("Param")?;
                    Uplink::AppTimeReq { device_time, token: p & 0x0f, ans_required: p & 0x10 != 0 }
                }
                0x02 => Uplink::DeviceAppTimePeriodicity { not_supported: r.u8("Status")? & 0x01 != 0, device_time: r.u32("Time")? },
                other => return Err(CodecError::UnknownCommand(other)),
            })
        })
    }
}

/// The server's answer to AppTimeReq, given the network's GPS time of the
/// uplink: none when the clock is right and no answer was required.
///
/// v1 corrects modulo 2^32 (the device adds a signed 32-bit value to a
/// 32-bit clock, so the nearest wrap is always exact). v2 (TS003-2.0.0
/// §3.2) wants the true difference, and when it does not fit a signed
/// 32-bit integer, the maximum or minimum value: the device applies it and
/// asks again, and the next answer finishes the correction.
pub fn answer_app_time(network_gps: u64, device_time: u32, token: u8, ans_required: bool, version: Version) -> Option<Request> {
    // DeviceTime is GPS time mod 2^32: compare within the same epoch.
    let network = network_gps as i64;
    let device = (network & !0xffff_ffff) | device_time as i64;
    let mut diff = network - device;
    if version == Version::V1 {
        // Pick the nearest wrap (a device just across a 2^32 boundary).
        if diff > 1 << 31 {
            diff -= 1 << 32;
        } else if diff < -(1 << 31) {
            diff += 1 << 32;
        }
    }
    if diff == 0 && !ans_required {
        return None;
    }
    let time_correction = diff.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    Some(Request::AppTimeAns { time_correction, token: token & 0x0f })
}

/// Whether a v2 correction was saturated, so the device will ask again.
pub fn is_saturated(time_correction: i32) -> bool {
    time_correction == i32::MAX || time_correction == i32::MIN
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec::tests::hex;

    #[test]
    fn vectors() {
        let up = Uplink::AppTimeReq { device_time: 1024, token: 15, ans_required: true };
        assert_eq!(up.to_bytes(), hex("01 00 04 00 00 1f"));
        assert_eq!(Uplink::parse(&hex("01 00 04 00 00 1f")).strict().unwrap(), vec![up]);
        let ans = Request::AppTimeAns { time_correction: 1024, token: 15 };
        assert_eq!(ans.to_bytes().unwrap(), hex("01 00 04 00 00 0f"));
        assert_eq!(Request::parse(&hex("01 00 04 00 00 0f")).strict().unwrap(), vec![ans]);
        assert_eq!(Request::DeviceAppTimePeriodicity { periodicity: 15 }.to_bytes().unwrap(), hex("02 0f"));
        let per = Uplink::DeviceAppTimePeriodicity { not_supported: true, device_time: 1024 };
        assert_eq!(per.to_bytes(), hex("02 01 00 04 00 00"));
        assert_eq!(Uplink::parse(&hex("02 01 00 04 00 00")).strict().unwrap(), vec![per]);
        assert_eq!(Request::ForceDeviceResync { nb_transmissions: 7 }.to_bytes().unwrap(), hex("03 07"));
        assert_eq!(Uplink::parse(&hex("01 00 04")).strict(), Err(CodecError::Truncated("DeviceTime")));
    }

    #[test]
    fn out_of_range_requests_are_errors_not_masked() {
        assert!(matches!(Request::AppTimeAns { time_correction: 0, token: 16 }.to_bytes(), Err(CodecError::OutOfRange { field: "TokenAns", .. })));
        assert!(matches!(Request::DeviceAppTimePeriodicity { periodicity: 16 }.to_bytes(), Err(CodecError::OutOfRange { .. })));
        assert!(matches!(Request::ForceDeviceResync { nb_transmissions: 8 }.to_bytes(), Err(CodecError::OutOfRange { .. })));
        assert!(matches!(Request::ForceDeviceResync { nb_transmissions: 0 }.to_bytes(), Err(CodecError::OutOfRange { .. })));
    }

    #[test]
    fn server_behaviour() {
        for v in [Version::V1, Version::V2] {
            assert_eq!(answer_app_time(1234, 1234, 3, false, v), None);
            assert_eq!(answer_app_time(1234, 1234, 3, true, v), Some(Request::AppTimeAns { time_correction: 0, token: 3 }));
            assert_eq!(answer_app_time(1234, 1200, 3, false, v), Some(Request::AppTimeAns { time_correction: 34, token: 3 }));
            assert_eq!(answer_app_time(1200, 1234, 9, false, v), Some(Request::AppTimeAns { time_correction: -34, token: 9 }));
        }
        // v1: across a 2^32 wrap of DeviceTime.
        assert_eq!(answer_app_time((1 << 32) + 5, u32::MAX, 1, false, Version::V1), Some(Request::AppTimeAns { time_correction: 6, token: 1 }));
    }

    /// TS003-2.0.0's own example: a +2208643200 s (0x83A53880) correction
    /// goes as 0x7FFFFFFF, and the device's next request gets the rest,
    /// 0x03A53881. v1 corrects modulo 2^32 in one answer instead.
    #[test]
    fn v2_saturates_as_the_spec_example_shows() {
        let (network, device) = (2_208_643_300u64, 100u32);
        let first = answer_app_time(network, device, 0, false, Version::V2);
        assert_eq!(first, Some(Request::AppTimeAns { time_correction: 0x7fff_ffff, token: 0 }));
        assert!(is_saturated(0x7fff_ffff) && is_saturated(i32::MIN) && !is_saturated(0x03a5_3881));
        let device = device.wrapping_add(0x7fff_ffff);
        assert_eq!(answer_app_time(network, device, 1, false, Version::V2), Some(Request::AppTimeAns { time_correction: 0x03a5_3881, token: 1 }));
        // v1 answers with the nearest wrap: 2208643200 - 2^32.
        let v1 = answer_app_time(network, 100, 0, false, Version::V1);
        assert_eq!(v1, Some(Request::AppTimeAns { time_correction: (2_208_643_200i64 - (1 << 32)) as i32, token: 0 }));
        // A device clock far in the future saturates at the minimum.
        assert_eq!(answer_app_time(1_400_000_000, u32::MAX, 2, false, Version::V2), Some(Request::AppTimeAns { time_correction: i32::MIN, token: 2 }));
    }
}
