//! Devices: the unicast identity a campaign talks to.

use super::{limit_text, parse_key128, require_ref, DeviceProfile, Editable, Eui, FieldError, InputContext, Object};
use crate::keys::Sealed;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// LoRaWAN version of the device's unicast identity; decides whether the
/// device key is a GenAppKey (1.0) or an AppKey (1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub enum LorawanVersion {
    #[default]
    #[serde(rename = "1.0")]
    V1_0,
    #[serde(rename = "1.1")]
    V1_1,
}

/// Class of a temporary multicast session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SessionClass {
    B,
    C,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub dev_eui: Eui,
    pub name: String,
    pub tag: String,
    /// Multicast session classes the device supports.
    pub multicast_classes: Vec<SessionClass>,
    pub lorawan_version: LorawanVersion,
    /// GenAppKey (1.0) or AppKey (1.1), sealed.
    pub device_key: Option<Sealed>,
    /// The McKEKey itself, sealed, for a device given one instead of a
    /// root key to derive it from (seed 002's `mcKeKey`).
    #[serde(default)]
    pub mc_ke_key: Option<Sealed>,
    pub device_profile: Option<String>,
    /// Current firmware version (X.Y.Z.P or a free 32-bit number).
    pub firmware: Option<String>,
    pub firmware_changed: Option<DateTime<Utc>>,
    /// The campaign after which the device reported that firmware (none
    /// when an operator entered it).
    #[serde(default)]
    pub firmware_changed_by: Option<String>,
    /// The multicast group a campaign reaches the device through (seed
    /// 002's per-device `mcGroup`); without one, the first group of the
    /// campaign's first region.
    #[serde(default)]
    pub mc_group: Option<Eui>,
    /// Seconds between the device's uplinks (seed 002's `uplinkRate`);
    /// before its profile's uplink period.
    #[serde(default)]
    pub uplink_rate: Option<u32>,
    pub archived: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceInput {
    pub dev_eui: Eui,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub tag: String,
    #[serde(default = "default_classes")]
    pub multicast_classes: Vec<SessionClass>,
    #[serde(default)]
    pub lorawan_version: LorawanVersion,
    /// 32 hex digits; write-only.
    pub device_key: Option<String>,
    /// 32 hex digits; write-only. The McKEKey itself, for a device given
    /// one instead of a root key (seed 002's `mcKeKey`).
    #[serde(default)]
    pub mc_ke_key: Option<String>,
    pub device_profile: Option<String>,
    pub firmware: Option<String>,
    #[serde(default)]
    pub mc_group: Option<Eui>,
    /// Seconds, 1 or more.
    #[serde(default)]
    pub uplink_rate: Option<u32>,
}

fn default_classes() -> Vec<SessionClass> {
    vec![SessionClass::C]
}

impl Object for Device {
    const KIND: &'static str = "devices";
    const SECRET_FIELDS: &'static [&'static str] = &["deviceKey", "mcKeKey"];
    fn id(&self) -> String {
        self.dev_eui.to_string()
    }
    fn archived(&self) -> bool {
        self.archived
    }
    fn set_archived(&mut self) {
        self.archived = true;
    }
}

impl Editable for Device {
    type Input = DeviceInput;

    fn from_input(input: DeviceInput, prior: Option<&Self>, ctx: &InputContext) -> Result<Self, FieldError> {
        if let Some(p) = prior {
            if p.dev_eui != input.dev_eui {
                return Err(FieldError::new("devEui", "cannot be changed"));
            }
        }
        limit_text("name", &input.name)?;
        limit_text("tag", &input.tag)?;
        if input.multicast_classes.is_empty() {
            return Err(FieldError::new("multicastClasses", "must name class B, C or both"));
        }
        let device_key = match &input.device_key {
            Some(k) => Some(ctx.vault.seal(&parse_key128("deviceKey", k)?)),
            None => prior.and_then(|p| p.device_key.clone()),
        };
        let mc_ke_key = match &input.mc_ke_key {
            Some(k) => Some(ctx.vault.seal(&parse_key128("mcKeKey", k)?)),
            None => prior.and_then(|p| p.mc_ke_key.clone()),
        };
        if let Some(profile) = &input.device_profile {
            require_ref::<DeviceProfile>(ctx, "deviceProfile", profile)?;
        }
        if let Some(f) = &input.firmware {
            super::parse_firmware_version("firmware", f)?;
        }
        if let Some(group) = &input.mc_group {
            require_ref::<super::MulticastGroup>(ctx, "mcGroup", &group.to_string())?;
        }
        if input.uplink_rate == Some(0) {
            return Err(FieldError::new("uplinkRate", "must be 1 second or more"));
        }
        let (firmware_changed, firmware_changed_by) = match prior {
            Some(p) if p.firmware == input.firmware => (p.firmware_changed, p.firmware_changed_by.clone()),
            _ if input.firmware.is_some() => (Some(ctx.now), None),
            _ => (None, None),
        };
        Ok(Device {
            dev_eui: input.dev_eui,
            name: input.name,
            tag: input.tag,
            multicast_classes: input.multicast_classes,
            lorawan_version: input.lorawan_version,
            device_key,
            mc_ke_key,
            device_profile: input.device_profile,
            firmware: input.firmware,
            firmware_changed,
            firmware_changed_by,
            mc_group: input.mc_group,
            uplink_rate: input.uplink_rate,
            archived: prior.is_some_and(|p| p.archived),
        })
    }
}

/// One uplink as an operator sees it on a device's page (seed 003): when,
/// on which port, what it carried, and how it was heard.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UplinkRecord {
    pub received: DateTime<Utc>,
    pub backend_instance: String,
    pub fport: u8,
    pub payload_hex: String,
    pub fcnt: Option<u32>,
    pub rssi: Option<f32>,
    pub snr: Option<f32>,
}

/// A device's latest uplinks, newest first: at most [`Self::KEPT`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceUplinks {
    pub dev_eui: Eui,
    pub uplinks: Vec<UplinkRecord>,
    #[serde(default)]
    pub archived: bool,
}
super::fleet_object!(DeviceUplinks, "device-uplinks", |s| s.dev_eui.to_string());

impl DeviceUplinks {
    pub const KEPT: usize = 10;

    pub fn push(&mut self, uplink: UplinkRecord) {
        self.uplinks.insert(0, uplink);
        self.uplinks.truncate(Self::KEPT);
    }
}
