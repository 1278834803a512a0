//! PLAIN firmware payloads: the whole new image behind a 56-byte header a
//! device checks before it installs anything.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `APLN` |
//! | 4 | 1 | format version, 1 |
//! | 5 | 3 | reserved, 0 |
//! | 8 | 4 | firmware version (LE) |
//! | 12 | 8 | hardware target (LE; 0 = any hardware) |
//! | 20 | 4 | image size (LE) |
//! | 24 | 32 | SHA-256 of the image |
//! | 56 | size | the image |

use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 4] = *b"APLN";
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 56;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("not a PLAIN payload (bad magic or format version)")]
    NotAPayload,
    #[error("truncated payload: {0} bytes of image, the header says {1}")]
    Truncated(usize, usize),
    #[error("the image does not match its SHA-256")]
    WrongHash,
    #[error("the image is for hardware {target:#x}, not {hardware:#x}")]
    WrongHardware { target: u64, hardware: u64 },
    #[error("the image is larger than 4 GiB")]
    TooLarge,
}

/// What a device learns from a valid payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain<'a> {
    pub version: u32,
    pub hardware_target: u64,
    pub image: &'a [u8],
}

/// Header ‖ image.
pub fn encode(image: &[u8], version: u32, hardware_target: u64) -> Result<Vec<u8>, PlainError> {
    let size = u32::try_from(image.len()).map_err(|_| PlainError::TooLarge)?;
    let mut out = Vec::with_capacity(HEADER_LEN + image.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[FORMAT_VERSION, 0, 0, 0]);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&hardware_target.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(image));
    out.extend_from_slice(image);
    Ok(out)
}

/// Check a payload as a device running `hardware` does (`None`: skip the
/// hardware check).
pub fn decode(payload: &[u8], hardware: Option<u64>) -> Result<Plain<'_>, PlainError> {
    let h = payload.get(..HEADER_LEN).ok_or(PlainError::NotAPayload)?;
    if h[0..4] != MAGIC || h[4] != FORMAT_VERSION {
        return Err(PlainError::NotAPayload);
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap());
    let hardware_target = u64::from_le_bytes(h[12..20].try_into().unwrap());
    let size = u32::from_le_bytes(h[20..24].try_into().unwrap()) as usize;
    let image = &payload[HEADER_LEN..];
    if image.len() != size {
        return Err(PlainError::Truncated(image.len(), size));
    }
    if let Some(hardware) = hardware.filter(|h| hardware_target != 0 && *h != hardware_target) {
        return Err(PlainError::WrongHardware { target: hardware_target, hardware });
    }
    if Sha256::digest(image)[..] != h[24..56] {
        return Err(PlainError::WrongHash);
    }
    Ok(Plain { version, hardware_target, image })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_round_trips_and_every_check_bites() {
        let image: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let p = encode(&image, 0x0102_0304, 7).unwrap();
        assert_eq!(decode(&p, Some(7)).unwrap(), Plain { version: 0x0102_0304, hardware_target: 7, image: &image });
        assert_eq!(decode(&p, None).unwrap().image, &image[..]);
        assert_eq!(decode(&p, Some(8)), Err(PlainError::WrongHardware { target: 7, hardware: 8 }));
        assert_eq!(decode(&p[..p.len() - 1], Some(7)), Err(PlainError::Truncated(4999, 5000)));
        let mut bad = p.clone();
        bad[HEADER_LEN + 10] ^= 1;
        assert_eq!(decode(&bad, Some(7)), Err(PlainError::WrongHash));
        assert_eq!(decode(&image, None), Err(PlainError::NotAPayload));
        let any = encode(&image, 1, 0).unwrap();
        assert!(decode(&any, Some(99)).is_ok(), "target 0 runs anywhere");
    }
}
