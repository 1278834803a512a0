//! TS003 Application Layer Clock Synchronization (same bytes in v1 and v2).

use crate::wire::{parse_all, CodecError};
use crate::PackageVersion;

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
    pub fn to_bytes(&self) -> Vec<u8> {
        match *self {
            Request::PackageVersion => vec![0x00],
            Request::AppTimeAns { time_correction, token } => {
                let mut o = vec![0x01];
                o.extend(time_correction.to_le_bytes());
                o.push(token & 0x0f);
                o
            }
            Request::DeviceAppTimePeriodicity { periodicity } => vec![0x02, periodicity & 0x0f],
            Request::ForceDeviceResync { nb_transmissions } => vec![0x03, nb_transmissions & 0x07],
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Vec<Request>, CodecError> {
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

    pub fn parse(bytes: &[u8]) -> Result<Vec<Uplink>, CodecError> {
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
/// uplink: none when the clock is right and no answer was required. The
/// correction saturates at the i32 limits.
pub fn answer_app_time(network_gps: u64, device_time: u32, token: u8, ans_required: bool) -> Option<Request> {
    // DeviceTime is GPS time mod 2^32: compare within the same epoch.
    let network = network_gps as i64;
    let device = (network & !0xffff_ffff) | device_time as i64;
    let mut diff = network - device;
    // Pick the nearest wrap (a device just across a 2^32 boundary).
    if diff > 1 << 31 {
        diff -= 1 << 32;
    } else if diff < -(1 << 31) {
        diff += 1 << 32;
    }
    if diff == 0 && !ans_required {
        return None;
    }
    let time_correction = diff.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    Some(Request::AppTimeAns { time_correction, token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec::tests::hex;

    #[test]
    fn vectors() {
        let up = Uplink::AppTimeReq { device_time: 1024, token: 15, ans_required: true };
        assert_eq!(up.to_bytes(), hex("01 00 04 00 00 1f"));
        assert_eq!(Uplink::parse(&hex("01 00 04 00 00 1f")).unwrap(), vec![up]);
        let ans = Request::AppTimeAns { time_correction: 1024, token: 15 };
        assert_eq!(ans.to_bytes(), hex("01 00 04 00 00 0f"));
        assert_eq!(Request::parse(&hex("01 00 04 00 00 0f")).unwrap(), vec![ans]);
        assert_eq!(Request::DeviceAppTimePeriodicity { periodicity: 15 }.to_bytes(), hex("02 0f"));
        let per = Uplink::DeviceAppTimePeriodicity { not_supported: true, device_time: 1024 };
        assert_eq!(per.to_bytes(), hex("02 01 00 04 00 00"));
        assert_eq!(Uplink::parse(&hex("02 01 00 04 00 00")).unwrap(), vec![per]);
        assert_eq!(Request::ForceDeviceResync { nb_transmissions: 7 }.to_bytes(), hex("03 07"));
        assert_eq!(Uplink::parse(&hex("01 00 04")), Err(CodecError::Truncated("DeviceTime")));
    }

    #[test]
    fn server_behaviour() {
        assert_eq!(answer_app_time(1234, 1234, 3, false), None);
        assert_eq!(answer_app_time(1234, 1234, 3, true), Some(Request::AppTimeAns { time_correction: 0, token: 3 }));
        assert_eq!(answer_app_time(1234, 1200, 3, false), Some(Request::AppTimeAns { time_correction: 34, token: 3 }));
        assert_eq!(answer_app_time(1200, 1234, 9, false), Some(Request::AppTimeAns { time_correction: -34, token: 9 }));
        // Across a 2^32 wrap of DeviceTime.
        assert_eq!(answer_app_time((1 << 32) + 5, u32::MAX, 1, false), Some(Request::AppTimeAns { time_correction: 6, token: 1 }));
    }
}
