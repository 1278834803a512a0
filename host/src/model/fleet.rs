//! Device sets, multicast groups, regions, files, device profiles and Smart
//! Delta keys.

use super::{parse_key128, require_ref, require_text, Device, Editable, Eui, FieldError, InputContext, Object, SessionClass};
use crate::keys::Sealed;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Implements `Object` for a struct with an `archived` field.
macro_rules! object {
    ($ty:ty, $kind:literal, |$s:ident| $id:expr $(, secrets = [$($secret:literal),*])? $(, compact = $compact:literal)?) => {
        impl Object for $ty {
            const KIND: &'static str = $kind;
            $(const SECRET_FIELDS: &'static [&'static str] = &[$($secret),*];)?
            $(const COMPACT: bool = $compact;)?
            fn id(&self) -> String {
                let $s = self;
                $id
            }
            fn archived(&self) -> bool {
                self.archived
            }
            fn set_archived(&mut self) {
                self.archived = true;
            }
        }
    };
}
pub(crate) use object;
pub(crate) use object as fleet_object_macro;

/// The id of an updated object, or a fresh one.
pub(super) fn id_for<T: Object>(prior: Option<&T>, ctx: &InputContext) -> String {
    prior.map(|p| p.id()).unwrap_or_else(|| ctx.store.new_id())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSet {
    pub id: String,
    pub name: String,
    pub description: String,
    pub devices: Vec<Eui>,
    pub archived: bool,
}
object!(DeviceSet, "device-sets", |s| s.id.clone());

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceSetInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub devices: Vec<Eui>,
}

impl Editable for DeviceSet {
    type Input = DeviceSetInput;
    fn from_input(input: DeviceSetInput, prior: Option<&Self>, ctx: &InputContext) -> Result<Self, FieldError> {
        require_text("name", &input.name)?;
        Ok(DeviceSet {
            id: id_for(prior, ctx),
            name: input.name,
            description: input.description,
            devices: live_refs::<Device>(ctx, "devices", input.devices)?,
            archived: prior.is_some_and(|p| p.archived),
        })
    }
}

/// The EUIs sorted and deduplicated, failing unless each names a live `T`.
fn live_refs<T: Object>(ctx: &InputContext, field: &str, mut euis: Vec<Eui>) -> Result<Vec<Eui>, FieldError> {
    for eui in &euis {
        require_ref::<T>(ctx, field, &eui.to_string())?;
    }
    euis.sort();
    euis.dedup();
    Ok(euis)
}

/// ISM band; bounds the fragment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum IsmBand {
    EU868,
    US915,
    AS923,
}

/// A reliable multicast group (LoRa Alliance TS005).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MulticastGroup {
    /// DevEUI of the group's virtual device on the network server.
    pub dev_eui: Eui,
    pub name: String,
    pub tag: String,
    pub ism_band: IsmBand,
    pub dl_dwell_time: bool,
    /// McAddr, 8 hex digits.
    pub dev_addr: String,
    /// Group slot on the devices (McGroupIDHeader), 0..3.
    pub group_id: u8,
    pub frequency: u32,
    pub data_rate: u8,
    /// Percent of uncoded fragments over all fragments sent (50..100);
    /// None: the closed loop.
    #[serde(default)]
    pub redundancy: Option<u8>,
    pub ping_slot_periodicity: u8,
    pub session_class: SessionClass,
    pub mc_key: Option<Sealed>,
    /// The network the group is sent through; without one, the
    /// campaign's backend instance. Groups on different instances let one
    /// campaign reach devices behind several networks.
    #[serde(default)]
    pub backend_instance: Option<String>,
    pub archived: bool,
}
object!(MulticastGroup, "multicast-groups", |s| s.dev_eui.to_string(), secrets = ["mcKey"]);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MulticastGroupInput {
    pub dev_eui: Eui,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tag: String,
    pub ism_band: IsmBand,
    #[serde(default)]
    pub dl_dwell_time: bool,
    pub dev_addr: String,
    #[serde(default)]
    pub group_id: u8,
    pub frequency: u32,
    pub data_rate: u8,
    /// Fixed forward error correction: the share of uncoded fragments in
    /// all sent, in percent (seed 004: 50 sends one coded fragment per
    /// uncoded one), or seed 002's code 0-4 (1/2, 3/4, 5/6, 7/8, 1).
    /// Absent: the closed loop sizes the coded fragments from what the
    /// devices report.
    #[serde(default)]
    pub redundancy: Option<u8>,
    #[serde(default)]
    pub ping_slot_periodicity: u8,
    pub session_class: SessionClass,
    /// 32 hex digits; a random key is generated when absent. Write-only.
    pub mc_key: Option<String>,
    #[serde(default)]
    pub backend_instance: Option<String>,
}

/// A group's redundancy as the percent of uncoded fragments in all sent:
/// seed 002's codes 0-4 (code rates 1/2, 3/4, 5/6, 7/8, 1) or seed 004's
/// percent 50-100.
fn redundancy_percent(value: u8) -> Result<u8, FieldError> {
    match value {
        0..=4 => Ok([50, 75, 83, 88, 100][value as usize]),
        50..=100 => Ok(value),
        _ => Err(FieldError::new("redundancy", "must be a code 0-4 (1/2, 3/4, 5/6, 7/8, 1) or 50-100 percent of uncoded fragments")),
    }
}

impl MulticastGroup {
    /// McAddr as the air carries it (validated hex, so 0 only if unset).
    pub fn mc_addr(&self) -> u32 {
        u32::from_str_radix(&self.dev_addr, 16).unwrap_or(0)
    }

    /// Extra coded fragments, in percent of the uncoded ones, that the
    /// group's fixed redundancy sends; None for the closed loop.
    pub fn fixed_redundancy_pct(&self) -> Option<u32> {
        self.redundancy.map(|r| ((100 - r.min(100) as u32) * 100).div_ceil(r.max(1) as u32))
    }
}

impl Editable for MulticastGroup {
    type Input = MulticastGroupInput;
    fn from_input(input: MulticastGroupInput, prior: Option<&Self>, ctx: &InputContext) -> Result<Self, FieldError> {
        if prior.is_some_and(|p| p.dev_eui != input.dev_eui) {
            return Err(FieldError::new("devEui", "cannot be changed"));
        }
        if input.dev_addr.len() != 8 || u32::from_str_radix(&input.dev_addr, 16).is_err() {
            return Err(FieldError::new("devAddr", "must be a 32-bit address in 8 hex digits"));
        }
        if input.group_id > 3 {
            return Err(FieldError::new("groupId", "multicast group ID must be 0-3"));
        }
        if input.data_rate > 15 {
            return Err(FieldError::new("dataRate", "must be 0-15"));
        }
        if input.ping_slot_periodicity > 7 {
            return Err(FieldError::new("pingSlotPeriodicity", "must be 0-7"));
        }
        let redundancy = input.redundancy.map(redundancy_percent).transpose()?;
        if input.dl_dwell_time && input.ism_band != IsmBand::AS923 {
            return Err(FieldError::new("dlDwellTime", "applies to AS923 only"));
        }
        if !(100_000_000..=1_000_000_000).contains(&input.frequency) {
            return Err(FieldError::new("frequency", "must be in Hz (100 MHz to 1 GHz)"));
        }
        if let Some(instance) = &input.backend_instance {
            super::require_ref::<super::BackendInstance>(ctx, "backendInstance", instance)?;
        }
        let mc_key = match (&input.mc_key, prior) {
            (Some(k), _) => ctx.vault.seal(&parse_key128("mcKey", k)?),
            (None, Some(p)) if p.mc_key.is_some() => p.mc_key.clone().unwrap(),
            (None, _) => {
                let mut key = [0u8; 16];
                rand::thread_rng().fill_bytes(&mut key);
                ctx.vault.seal(&key)
            }
        };
        Ok(MulticastGroup {
            dev_eui: input.dev_eui,
            name: input.name,
            tag: input.tag,
            ism_band: input.ism_band,
            dl_dwell_time: input.dl_dwell_time,
            dev_addr: input.dev_addr.to_lowercase(),
            group_id: input.group_id,
            frequency: input.frequency,
            data_rate: input.data_rate,
            redundancy,
            ping_slot_periodicity: input.ping_slot_periodicity,
            session_class: input.session_class,
            mc_key: Some(mc_key),
            backend_instance: input.backend_instance,
            archived: prior.is_some_and(|p| p.archived),
        })
    }
}

/// A set of multicast groups forming a geographic area.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Region {
    pub id: String,
    pub name: String,
    pub description: String,
    pub multicast_groups: Vec<Eui>,
    pub archived: bool,
}
object!(Region, "regions", |s| s.id.clone());

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegionInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub multicast_groups: Vec<Eui>,
}

impl Editable for Region {
    type Input = RegionInput;
    fn from_input(input: RegionInput, prior: Option<&Self>, ctx: &InputContext) -> Result<Self, FieldError> {
        require_text("name", &input.name)?;
        Ok(Region {
            id: id_for(prior, ctx),
            name: input.name,
            description: input.description,
            multicast_groups: live_refs::<MulticastGroup>(ctx, "multicastGroups", input.multicast_groups)?,
            archived: prior.is_some_and(|p| p.archived),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    Binary,
    Firmware,
}

/// A stored file; its id is the SHA-256 of its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredFile {
    pub id: String,
    pub name: String,
    pub description: String,
    pub upload_time: DateTime<Utc>,
    pub size: u64,
    pub file_type: FileType,
    pub firmware_base_version: Option<String>,
    pub firmware_version: Option<String>,
    pub device_profile: Option<String>,
    pub time_tolerance: Option<u32>,
    pub default_ul_period: Option<u32>,
    pub fuota_library: Option<String>,
    pub smart_delta_key: Option<String>,
    /// The hardware type the image is for (seed 002's `hwTarget`,
    /// `AA:BB:CC:DD:EE:FF`): devices whose profile names another are
    /// refused at start.
    #[serde(default)]
    pub hw_target: Option<String>,
    pub archived: bool,
}
object!(StoredFile, "files", |s| s.id.clone());

/// File metadata as clients send it (upload form fields, or JSON on update).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileInput {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub file_type: Option<FileType>,
    pub firmware_base_version: Option<String>,
    pub firmware_version: Option<String>,
    pub device_profile: Option<String>,
    pub time_tolerance: Option<u32>,
    pub default_ul_period: Option<u32>,
    pub fuota_library: Option<String>,
    pub smart_delta_key: Option<String>,
    pub hw_target: Option<String>,
}

/// A hardware type as seed 002 writes it, six bytes in hex
/// (`AA:BB:CC:DD:EE:FF`; `:`, `-` or no separators taken), normalised.
pub fn parse_hw_target(field: &str, text: &str) -> Result<String, FieldError> {
    let clean: String = text.chars().filter(|c| !matches!(c, ':' | '-')).collect();
    match hex::decode(&clean) {
        Ok(bytes) if bytes.len() == 6 => Ok(bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")),
        _ => Err(FieldError::new(field, "must be a hardware type of six hex bytes, AA:BB:CC:DD:EE:FF")),
    }
}

/// X.Y.Z.P of a 32-bit firmware version (TS006 packs it that way).
pub fn firmware_version_text(v: u32) -> String {
    let b = v.to_be_bytes();
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

/// A firmware version: X.Y.Z.P (each 0..255) or a free 32-bit number.
pub fn parse_firmware_version(field: &str, text: &str) -> Result<u32, FieldError> {
    let parts: Vec<&str> = text.split('.').collect();
    let bad = || FieldError::new(field, "must be X.Y.Z.P (each 0-255) or a 32-bit number");
    match parts.len() {
        1 => text.parse::<u32>().map_err(|_| bad()),
        4 => {
            let mut v = 0u32;
            for p in parts {
                v = (v << 8) | p.parse::<u8>().map_err(|_| bad())? as u32;
            }
            Ok(v)
        }
        _ => Err(bad()),
    }
}

impl StoredFile {
    /// The same record but for when it was uploaded and whether archived.
    pub fn same_metadata(&self, other: &Self) -> bool {
        Self { upload_time: other.upload_time, archived: other.archived, ..self.clone() } == *other
    }

    /// Metadata from input for content already stored under `id`.
    pub fn with_metadata(
        id: String,
        size: u64,
        input: FileInput,
        prior: Option<&Self>,
        ctx: &InputContext,
    ) -> Result<Self, FieldError> {
        for (field, v) in [("firmwareVersion", &input.firmware_version), ("firmwareBaseVersion", &input.firmware_base_version)] {
            if let Some(v) = v {
                parse_firmware_version(field, v)?;
            }
        }
        if let Some(p) = &input.device_profile {
            require_ref::<DeviceProfile>(ctx, "deviceProfile", p)?;
        }
        if let Some(k) = &input.smart_delta_key {
            require_ref::<SmartDeltaKey>(ctx, "smartDeltaKey", k)?;
        }
        let hw_target = input.hw_target.as_deref().map(|t| parse_hw_target("hwTarget", t)).transpose()?;
        let file_type = input.file_type.unwrap_or(if input.firmware_version.is_some() { FileType::Firmware } else { FileType::Binary });
        if file_type == FileType::Firmware && input.firmware_version.is_none() {
            return Err(FieldError::new("firmwareVersion", "is required for a firmware file"));
        }
        Ok(StoredFile {
            name: if input.name.is_empty() { prior.map(|p| p.name.clone()).unwrap_or_default() } else { input.name },
            id,
            description: input.description,
            upload_time: prior.map(|p| p.upload_time).unwrap_or(ctx.now),
            size,
            file_type,
            firmware_base_version: input.firmware_base_version,
            firmware_version: input.firmware_version,
            device_profile: input.device_profile,
            time_tolerance: input.time_tolerance,
            default_ul_period: input.default_ul_period,
            fuota_library: input.fuota_library,
            smart_delta_key: input.smart_delta_key,
            hw_target,
            archived: prior.is_some_and(|p| p.archived),
        })
    }
}

impl Editable for StoredFile {
    type Input = FileInput;
    /// Files are created by upload; through this path only their metadata
    /// changes.
    fn from_input(input: FileInput, prior: Option<&Self>, ctx: &InputContext) -> Result<Self, FieldError> {
        let prior = prior.ok_or_else(|| FieldError::new("file", "upload the file content with POST /api/files"))?;
        Self::with_metadata(prior.id.clone(), prior.size, input, Some(prior), ctx)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProfile {
    pub id: String,
    pub name: String,
    pub description: String,
    pub producer_id: Option<String>,
    pub module_id: Option<String>,
    pub hw_revision: Option<String>,
    pub hw_version: Option<String>,
    pub time_tolerance: Option<u32>,
    pub default_ul_period: Option<u32>,
    pub mcu_type: Option<String>,
    pub fuota_library: Option<String>,
    pub smart_delta_key: Option<String>,
    /// Package name → FPort on the air, where the devices moved a package
    /// off the library's default port.
    #[serde(default)]
    pub fports: BTreeMap<String, u8>,
    /// The devices' hardware type (seed 002's `hwTarget` form).
    #[serde(default)]
    pub hw_target: Option<String>,
    /// The public device stack the devices run, when known: how they fill
    /// fragmentation status answers. Absent, the engine infers it from
    /// the answers (docs/device-stacks.md).
    #[serde(default)]
    pub device_stack: Option<DeviceStack>,
    pub archived: bool,
}
object!(DeviceProfile, "device-profiles", |s| s.id.clone());

/// A public device stack whose status answers read their own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceStack {
    /// As the TS004 specification says: fragments heard and still needed.
    Spec,
    /// LoRaMac-node: the last fragment number heard and the uncoded ones lost.
    LoramacNode,
    /// LoRa Basics Modem: the last number less the losses, and still needed.
    BasicsModem,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceProfileInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub producer_id: Option<String>,
    pub module_id: Option<String>,
    pub hw_revision: Option<String>,
    pub hw_version: Option<String>,
    pub time_tolerance: Option<u32>,
    pub default_ul_period: Option<u32>,
    pub mcu_type: Option<String>,
    pub fuota_library: Option<String>,
    pub smart_delta_key: Option<String>,
    #[serde(default)]
    pub fports: BTreeMap<String, u8>,
    pub hw_target: Option<String>,
    pub device_stack: Option<DeviceStack>,
}

impl Editable for DeviceProfile {
    type Input = DeviceProfileInput;
    fn from_input(i: DeviceProfileInput, prior: Option<&Self>, ctx: &InputContext) -> Result<Self, FieldError> {
        require_text("name", &i.name)?;
        if let Some(k) = &i.smart_delta_key {
            require_ref::<SmartDeltaKey>(ctx, "smartDeltaKey", k)?;
        }
        if let Some((package, port)) = i.fports.iter().find(|(_, p)| !(1..=223).contains(*p)) {
            return Err(FieldError::new("fports", format!("FPort {port} for '{package}' is outside 1-223")));
        }
        Ok(DeviceProfile {
            id: id_for(prior, ctx),
            name: i.name,
            description: i.description,
            producer_id: i.producer_id,
            module_id: i.module_id,
            hw_revision: i.hw_revision,
            hw_version: i.hw_version,
            time_tolerance: i.time_tolerance,
            default_ul_period: i.default_ul_period,
            mcu_type: i.mcu_type,
            fuota_library: i.fuota_library,
            smart_delta_key: i.smart_delta_key,
            fports: i.fports,
            hw_target: i.hw_target.as_deref().map(|t| parse_hw_target("hwTarget", t)).transpose()?,
            device_stack: i.device_stack,
            archived: prior.is_some_and(|p| p.archived),
        })
    }
}

/// A Smart Delta signing key; only its public part is ever shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SmartDeltaKey {
    pub id: String,
    pub name: String,
    pub description: String,
    /// PKCS#8 PEM of the private key, sealed.
    pub private_key: Option<Sealed>,
    pub archived: bool,
}
object!(SmartDeltaKey, "smart-delta-keys", |s| s.id.clone(), secrets = ["privateKey"]);

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmartDeltaKeyInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// PKCS#8 PEM to import; write-only. Without it (and no prior key) a
    /// fresh key is generated in the host.
    pub private_key: Option<String>,
}

impl Editable for SmartDeltaKey {
    type Input = SmartDeltaKeyInput;
    fn from_input(i: SmartDeltaKeyInput, prior: Option<&Self>, ctx: &InputContext) -> Result<Self, FieldError> {
        require_text("name", &i.name)?;
        let private_key = match &i.private_key {
            Some(pem) => {
                crate::keys::smart_delta::signing_key(pem).map_err(|e| FieldError::new("privateKey", e.to_string()))?;
                Some(ctx.vault.seal(pem.trim().as_bytes()))
            }
            None => match prior.and_then(|p| p.private_key.clone()) {
                Some(kept) => Some(kept),
                None => Some(ctx.vault.seal(crate::keys::smart_delta::generate_pem().as_bytes())),
            },
        };
        Ok(SmartDeltaKey {
            id: id_for(prior, ctx),
            name: i.name,
            description: i.description,
            private_key,
            archived: prior.is_some_and(|p| p.archived),
        })
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redundancy_reads_seed_002_codes_and_seed_004_percents() {
        assert_eq!(redundancy_percent(0).unwrap(), 50);
        assert_eq!(redundancy_percent(3).unwrap(), 88);
        assert_eq!(redundancy_percent(4).unwrap(), 100);
        assert_eq!(redundancy_percent(80).unwrap(), 80);
        assert!(redundancy_percent(5).is_err() && redundancy_percent(49).is_err() && redundancy_percent(101).is_err());
    }
}
