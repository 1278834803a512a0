//! What a campaign sends on the air: its message, its file as stored, or what the
//! campaign's update-type plugin makes of it (a PLAIN image with its
//! header, an LZ4DICT delta against the stored base image). An encoded
//! payload is decoded again before the campaign starts, as a device would,
//! so a payload that cannot rebuild the image never reaches a fleet.

use super::{Engine, EngineError, Network};
use crate::model::{parse_firmware_version, Campaign, FileType, PluginKind, SmartDeltaKey, StoredFile};
use crate::plugin::update_type as wit;

/// The payload of a run, stored as a blob.
#[derive(Debug, Clone)]
pub struct Payload {
    pub sha256: String,
    pub size: u32,
    /// Version devices run once updated (from the file's metadata).
    pub firmware: Option<u32>,
    /// Version the payload was built against (deltas).
    pub base_firmware: Option<u32>,
}

fn invalid(what: impl Into<String>) -> EngineError {
    EngineError::Invalid(what.into())
}

fn version(field: &str, text: &Option<String>) -> Result<Option<u32>, EngineError> {
    text.as_deref().map(|t| parse_firmware_version(field, t).map_err(|e| invalid(e.to_string()))).transpose()
}

fn update_error(e: wit::UpdateError) -> String {
    match e {
        wit::UpdateError::Invalid(m) => format!("invalid: {m}"),
        wit::UpdateError::WrongBase(m) => format!("wrong base image: {m}"),
        wit::UpdateError::BadSignature(m) => format!("bad signature: {m}"),
        wit::UpdateError::Corrupt(m) => format!("corrupt: {m}"),
        wit::UpdateError::Key(m) => format!("key service: {m}"),
    }
}

impl<N: Network> Engine<N> {
    /// The payload for a campaign's file (None: the campaign sends none).
    pub(super) async fn payload(&self, campaign: &Campaign) -> Result<Option<Payload>, EngineError> {
        if let Some(message) = &campaign.message {
            let bytes = message.bytes().map_err(|e| invalid(e.to_string()))?;
            let sha256 = self.store.blobs().put(&bytes).map_err(|e| invalid(format!("storing the message: {e}")))?;
            return Ok(Some(Payload { sha256, size: bytes.len() as u32, firmware: None, base_firmware: None }));
        }
        let Some(file_id) = &campaign.file else { return Ok(None) };
        let file = self.store.get::<StoredFile>(file_id)?.ok_or_else(|| invalid("file is gone"))?;
        let firmware = version("firmwareVersion", &file.firmware_version)?;
        let Some(type_name) = &campaign.update_type else {
            return Ok(Some(Payload { sha256: file.id.clone(), size: file_size(file.size)?, firmware, base_firmware: None }));
        };
        let plugin = self.runtime.active(type_name)?;
        if plugin.manifest.kind != PluginKind::UpdateType {
            return Err(invalid(format!("{type_name} is not an update-type plugin")));
        }
        let new_version = firmware.ok_or_else(|| invalid(format!("{type_name} needs a firmware file (with firmwareVersion)")))?;
        let info = self.runtime.update_type(&plugin).describe().await?;
        let new_image = self.read_blob(&file.id)?;
        let (base_image, base_firmware) = if info.needs_base_image {
            let base = self.base_file(&file)?;
            (Some(self.read_blob(&base.id)?), version("firmwareVersion", &base.firmware_version)?)
        } else {
            (None, None)
        };
        let public_key = match (&file.smart_delta_key, info.signed) {
            (Some(id), true) => {
                let key = self.store.get::<SmartDeltaKey>(id)?.filter(|k| !k.archived).ok_or_else(|| invalid(format!("Smart Delta key '{id}' is gone")))?;
                let signing = crate::keys::smart_delta::unseal(&self.runtime.host().vault, &key).map_err(|e| invalid(e.to_string()))?;
                Some(crate::keys::smart_delta::public_raw(&signing).to_vec())
            }
            (None, true) => return Err(invalid(format!("{} payloads are signed: give the file a smartDeltaKey", info.name))),
            (_, false) => None,
        };
        let request = wit::EncodeRequest {
            new_image: new_image.clone(),
            base_image: base_image.clone(),
            new_version,
            base_version: base_firmware,
            hardware_target: None,
            signing_key: file.smart_delta_key.clone().filter(|_| info.signed),
        };
        let encoded = self
            .runtime
            .update_type(&plugin)
            .encode(request)
            .await?
            .map_err(|e| invalid(format!("{} could not encode the file: {}", info.name, update_error(e))))?;
        let check = encoded.clone();
        let decoded = self
            .runtime
            .update_type(&plugin)
            .decode(check, base_image, public_key)
            .await?
            .map_err(|e| invalid(format!("{} payload does not decode: {}", info.name, update_error(e))))?;
        if decoded.image != new_image || decoded.version != new_version {
            return Err(invalid(format!("{} payload does not rebuild the file", info.name)));
        }
        let sha256 = self.store.blobs().put(&encoded).map_err(|e| invalid(format!("storing the payload: {e}")))?;
        tracing::info!(campaign = %campaign.id, update_type = %info.name, file = file.size, payload = encoded.len(), "payload encoded");
        Ok(Some(Payload { sha256, size: file_size(encoded.len() as u64)?, firmware, base_firmware }))
    }

    fn read_blob(&self, sha256: &str) -> Result<Vec<u8>, EngineError> {
        self.store.blobs().read(sha256).map_err(|e| invalid(format!("file {sha256}: {e}")))
    }

    /// The stored firmware a delta file was made for: its
    /// `firmwareBaseVersion`, for the same device profile.
    fn base_file(&self, file: &StoredFile) -> Result<StoredFile, EngineError> {
        let wanted = file.firmware_base_version.as_ref().ok_or_else(|| invalid("a delta needs the file's firmwareBaseVersion"))?;
        let wanted_version = version("firmwareBaseVersion", &Some(wanted.clone()))?;
        let candidates: Vec<StoredFile> = self
            .store
            .list::<StoredFile>(false)?
            .into_iter()
            .filter(|f| f.file_type == FileType::Firmware && f.id != file.id && f.device_profile == file.device_profile)
            .filter(|f| version("firmwareVersion", &f.firmware_version).ok().flatten() == wanted_version)
            .collect();
        match candidates.as_slice() {
            [base] => Ok(base.clone()),
            [] => Err(invalid(format!("no stored firmware {wanted} to make the delta from: upload the base image first"))),
            _ => Err(invalid(format!("{} stored files are firmware {wanted}; archive all but the devices' base image", candidates.len()))),
        }
    }
}

fn file_size(size: u64) -> Result<u32, EngineError> {
    u32::try_from(size).map_err(|_| invalid("the payload is larger than 4 GiB"))
}
