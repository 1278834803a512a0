//! What a simulated device does with a file it received complete: a
//! firmware package is checked as the device's bootloader would (PLAIN:
//! size, hash and hardware; LZ4DICT: signature, base image, then the
//! streaming patch in a few KiB of RAM), and on success the device runs the
//! new image. Anything else is a raw image for devices built to take one,
//! or is kept as received (a binary transfer).

use lorawan_fuota::ts006::ImageStatus;

/// The image a device runs, and the key its build trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub version: u32,
    pub image: std::sync::Arc<Vec<u8>>,
    /// Raw X ‖ Y of the Smart Delta public key built into the device.
    pub public_key: Option<Vec<u8>>,
}

/// What became of the last file received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// Not a firmware package: kept as it is.
    Raw,
    /// Verified and installed; the device runs `version`.
    Installed { version: u32 },
    /// Refused: the TS006 status the device reports, and its reason.
    Rejected { status: ImageStatus, error: String },
}

impl Upgrade {
    /// DevUpgradeImageAns payload.
    pub fn answer(upgrade: Option<&Upgrade>) -> Vec<u8> {
        match upgrade {
            Some(Upgrade::Installed { version }) => [&[0x04, ImageStatus::Valid as u8][..], &version.to_le_bytes()].concat(),
            Some(Upgrade::Rejected { status, .. }) => vec![0x04, *status as u8],
            Some(Upgrade::Raw) | None => vec![0x04, ImageStatus::NoImage as u8],
        }
    }
}

/// Examine a received file; on success also the new firmware. A device
/// with `raw_version` takes any other file as a raw image of that version.
pub fn examine(file: &[u8], running: &Firmware, hardware: u32, raw_version: Option<u32>) -> (Upgrade, Option<Firmware>) {
    let corrupt = |error: String| (Upgrade::Rejected { status: ImageStatus::CorruptOrBadSignature, error }, None);
    let installed = |version: u32, image: Vec<u8>| {
        let firmware = Firmware { version, image: std::sync::Arc::new(image), public_key: running.public_key.clone() };
        (Upgrade::Installed { version }, Some(firmware))
    };
    if file.starts_with(&smart_delta::MAGIC) {
        let Some(key) = &running.public_key else { return corrupt("no Smart Delta public key in this build".into()) };
        match smart_delta::device::install(file, &running.image, key) {
            Ok(i) => installed(i.version, i.image),
            Err(e) => corrupt(e.to_string()),
        }
    } else if file.starts_with(&plain_image::MAGIC) {
        match plain_image::decode(file, Some(hardware as u64)) {
            Ok(p) => installed(p.version, p.image.to_vec()),
            Err(e @ plain_image::PlainError::WrongHardware { .. }) => (Upgrade::Rejected { status: ImageStatus::IncompatibleHardware, error: e.to_string() }, None),
            Err(e) => corrupt(e.to_string()),
        }
    } else if let Some(version) = raw_version {
        installed(version, file.to_vec())
    } else {
        (Upgrade::Raw, None)
    }
}
