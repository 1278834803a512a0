//! TS006 Firmware Management Protocol.

use crate::wire::{at_most, parse_all, put_u24, CodecError, Parsed};
use crate::PackageVersion;

/// DevRebootTime value that cancels a scheduled reboot.
pub const CANCEL_REBOOT: u32 = 0xffff_ffff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    PackageVersion,
    DevVersion,
    /// Reboot at this GPS time; `CANCEL_REBOOT` cancels, 0 asks the time.
    DevRebootTime { reboot_time: u32 },
    /// Reboot after this many seconds (24 bits); 0xFFFFFF cancels.
    DevRebootCountdown { countdown: u32 },
    DevUpgradeImage,
    DevDeleteImage { firmware_version: u32 },
}

/// DevUpgradeImageAns status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStatus {
    NoImage,
    CorruptOrBadSignature,
    IncompatibleHardware,
    Valid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    PackageVersion(PackageVersion),
    DevVersion { firmware: u32, hardware: u32 },
    DevRebootTime { reboot_time: u32 },
    DevRebootCountdown { countdown: u32 },
    DevUpgradeImage { status: ImageStatus, next_version: Option<u32> },
    DevDeleteImage { invalid_version: bool, no_valid_image: bool },
}

impl Request {
    /// The request's bytes, or why a field cannot be encoded.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        Ok(match *self {
            Request::PackageVersion => vec![0x00],
            Request::DevVersion => vec![0x01],
            Request::DevRebootTime { reboot_time } => [vec![0x02], reboot_time.to_le_bytes().to_vec()].concat(),
            Request::DevRebootCountdown { countdown } => {
                at_most("Countdown", countdown as u64, 0xff_ffff, "0..16777215 s")?;
                let mut o = vec![0x03];
                put_u24(&mut o, countdown);
                o
            }
            Request::DevUpgradeImage => vec![0x04],
            Request::DevDeleteImage { firmware_version } => [vec![0x05], firmware_version.to_le_bytes().to_vec()].concat(),
        })
    }

    pub fn parse(bytes: &[u8]) -> Parsed<Request> {
        parse_all(bytes, |cid, r| {
            Ok(match cid {
                0x00 => Request::PackageVersion,
                0x01 => Request::DevVersion,
                0x02 => Request::DevRebootTime { reboot_time: r.u32("RebootTime")? },
                0x03 => Request::DevRebootCountdown { countdown: r.u24("Countdown")? },
                0x04 => Request::DevUpgradeImage,
                0x05 => Request::DevDeleteImage { firmware_version: r.u32("FirmwareVersion")? },
                other => return Err(CodecError::UnknownCommand(other)),
            })
        })
    }
}

impl Uplink {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::new();
        match *self {
            Uplink::PackageVersion(p) => o.extend([0x00, p.package, p.version]),
            Uplink::DevVersion { firmware, hardware } => {
                o.push(0x01);
                o.extend(firmware.to_le_bytes());
                o.extend(hardware.to_le_bytes());
            }
            Uplink::DevRebootTime { reboot_time } => {
                o.push(0x02);
                o.extend(reboot_time.to_le_bytes());
            }
            Uplink::DevRebootCountdown { countdown } => {
                o.push(0x03);
                put_u24(&mut o, countdown);
            }
            Uplink::DevUpgradeImage { status, next_version } => {
                o.extend([0x04, status as u8]);
                if let Some(v) = next_version {
                    o.extend(v.to_le_bytes());
                }
            }
            Uplink::DevDeleteImage { invalid_version, no_valid_image } => o.extend([0x05, no_valid_image as u8 | (invalid_version as u8) << 1]),
        }
        o
    }

    pub fn parse(bytes: &[u8]) -> Parsed<Uplink> {
        parse_all(bytes, |cid, r| {
            Ok(match cid {
                0x00 => Uplink::PackageVersion(PackageVersion { package: r.u8("PackageIdentifier")?, version: r.u8("PackageVersion")? }),
                0x01 => Uplink::DevVersion { firmware: r.u32("FW_version")?, hardware: r.u32("HW_version")? },
                0x02 => Uplink::DevRebootTime { reboot_time: r.u32("RebootTime")? },
                0x03 => Uplink::DevRebootCountdown { countdown: r.u24("Countdown")? },
                0x04 => {
                    let status = match r.u8("UpImageStatus")? & 0x03 {
                        0 => ImageStatus::NoImage,
                        1 => ImageStatus::CorruptOrBadSignature,
                        2 => ImageStatus::IncompatibleHardware,
                        _ => ImageStatus::Valid,
                    };
                    let next_version = if status == ImageStatus::Valid { Some(r.u32("nextFirmwareVersion")?) } else { None };
                    Uplink::DevUpgradeImage { status, next_version }
                }
                0x05 => {
                    let b = r.u8("DevDeleteImageAns")?;
                    Uplink::DevDeleteImage { no_valid_image: b & 0x01 != 0, invalid_version: b & 0x02 != 0 }
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
    fn vectors() {
        let requests = [
            (Request::DevVersion, "01"),
            (Request::DevRebootTime { reboot_time: 134480385 }, "02 01 02 04 08"),
            (Request::DevRebootCountdown { countdown: 262657 }, "03 01 02 04"),
            (Request::DevUpgradeImage, "04"),
            (Request::DevDeleteImage { firmware_version: 197121 }, "05 01 02 03 00"),
        ];
        for (req, bytes) in requests {
            assert_eq!(req.to_bytes().unwrap(), hex(bytes));
            assert_eq!(Request::parse(&hex(bytes)).strict().unwrap(), vec![req]);
        }
        let uplinks = [
            (Uplink::DevVersion { firmware: 513, hardware: 1264 }, "01 01 02 00 00 f0 04 00 00"),
            (Uplink::DevRebootTime { reboot_time: 134480385 }, "02 01 02 04 08"),
            (Uplink::DevRebootCountdown { countdown: 262657 }, "03 01 02 04"),
            (Uplink::DevUpgradeImage { status: ImageStatus::Valid, next_version: Some(262657) }, "04 03 01 02 04 00"),
            (Uplink::DevUpgradeImage { status: ImageStatus::CorruptOrBadSignature, next_version: None }, "04 01"),
            (Uplink::DevDeleteImage { invalid_version: true, no_valid_image: true }, "05 03"),
        ];
        for (up, bytes) in uplinks {
            assert_eq!(up.to_bytes(), hex(bytes));
            assert_eq!(Uplink::parse(&hex(bytes)).strict().unwrap(), vec![up]);
        }
        assert_eq!(Uplink::parse(&hex("01 01 02 00 00 f0")).strict(), Err(CodecError::Truncated("HW_version")));
        assert_eq!(Uplink::parse(&hex("04 03 01")).strict(), Err(CodecError::Truncated("nextFirmwareVersion")));
        assert!(matches!(Request::DevRebootCountdown { countdown: 1 << 24 }.to_bytes(), Err(CodecError::OutOfRange { .. })));
    }
}
