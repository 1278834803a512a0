//! Campaigns: what to deliver, to whom, through which plugins.

use super::fleet::object;
use super::{require_ref, require_text, BackendInstance, DeviceSet, Editable, FieldError, InputContext, Object, PluginKind, PluginRecord, Region, StoredFile};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CampaignType {
    /// Configure multicast groups and sessions only ("MCGROUP").
    #[serde(alias = "MCGROUP")]
    MulticastSetup,
    /// Deliver an arbitrary file ("BINARY").
    #[serde(alias = "BINARY")]
    BinaryTransfer,
    /// Deliver and install firmware ("FOTA").
    #[serde(alias = "FOTA")]
    FirmwareUpdate,
    /// A short multicast message (text or binary), on networks that send
    /// them themselves (a gateway's `/api/lora/mcm`).
    Message,
}

impl CampaignType {
    /// The name seed 002's messages give the type.
    pub fn seed_name(self) -> &'static str {
        match self {
            CampaignType::MulticastSetup => "MCGROUP",
            CampaignType::BinaryTransfer => "BINARY",
            CampaignType::FirmwareUpdate => "FOTA",
            CampaignType::Message => "MESSAGE",
        }
    }
}

/// How a message campaign's payload is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum MessageFormat {
    Hexadecimal,
    Base64,
}

/// The payload of a message campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MulticastMessage {
    pub message_format: MessageFormat,
    pub message_payload: String,
    /// FPort, 1..220.
    pub message_port: u8,
    /// Minutes, 0..15.
    pub multicast_session_timeout: u8,
}

impl MulticastMessage {
    /// The payload's bytes, or why they cannot be had.
    pub fn bytes(&self) -> Result<Vec<u8>, FieldError> {
        let decoded = match self.message_format {
            MessageFormat::Hexadecimal => hex::decode(&self.message_payload).ok(),
            MessageFormat::Base64 => base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &self.message_payload).ok(),
        };
        decoded.filter(|b| !b.is_empty() && b.len() <= 242).ok_or_else(|| FieldError::new("message.messagePayload", "must be 1-242 bytes in the given messageFormat"))
    }

    fn validate(&self) -> Result<(), FieldError> {
        self.bytes()?;
        if !(1..=220).contains(&self.message_port) {
            return Err(FieldError::new("message.messagePort", "must be 1-220"));
        }
        if self.multicast_session_timeout > 15 {
            return Err(FieldError::new("message.multicastSessionTimeout", "must be 0-15 minutes"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CampaignStatus {
    Configured,
    Running,
    Stopped,
    Failed,
    Succeeded,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created: DateTime<Utc>,
    pub started: Option<DateTime<Utc>>,
    pub last_changed: DateTime<Utc>,
    pub campaign_type: CampaignType,
    pub device_sets: Vec<String>,
    pub regions: Vec<String>,
    /// When devices reboot into the new image (firmware campaigns).
    pub reboot_at: Option<DateTime<Utc>>,
    /// When the multicast session starts; as soon as setup allows if absent.
    pub session_start: Option<DateTime<Utc>>,
    pub file: Option<String>,
    pub status: CampaignStatus,
    /// After this many minutes devices fall back to class A.
    pub max_duration_minutes: u32,
    /// Percent of devices that must succeed at every stage.
    pub success_threshold: u8,
    /// Device-library plugin name.
    pub device_library: String,
    pub backend_instance: String,
    /// Update-type plugin name (firmware campaigns).
    pub update_type: Option<String>,
    /// The payload of a message campaign.
    #[serde(default)]
    pub message: Option<MulticastMessage>,
    pub archived: bool,
}
object!(Campaign, "campaigns", |s| s.id.clone());

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CampaignInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub campaign_type: CampaignType,
    #[serde(default)]
    pub device_sets: Vec<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    pub reboot_at: Option<DateTime<Utc>>,
    pub session_start: Option<DateTime<Utc>>,
    pub file: Option<String>,
    pub max_duration_minutes: u32,
    pub success_threshold: u8,
    pub device_library: String,
    pub backend_instance: String,
    pub update_type: Option<String>,
    #[serde(default)]
    pub message: Option<MulticastMessage>,
}

impl Editable for Campaign {
    type Input = CampaignInput;
    fn from_input(i: CampaignInput, prior: Option<&Self>, ctx: &InputContext) -> Result<Self, FieldError> {
        if let Some(p) = prior {
            if p.status != CampaignStatus::Configured {
                return Err(FieldError::new("status", "only a CONFIGURED campaign can be changed"));
            }
        }
        require_text("name", &i.name)?;
        if i.success_threshold > 100 {
            return Err(FieldError::new("successThreshold", "must be 0-100 percent"));
        }
        if i.max_duration_minutes == 0 {
            return Err(FieldError::new("maxDurationMinutes", "must be at least 1"));
        }
        if i.device_sets.is_empty() {
            return Err(FieldError::new("deviceSets", "must name at least one device set"));
        }
        if i.regions.is_empty() {
            return Err(FieldError::new("regions", "must name at least one region"));
        }
        for id in &i.device_sets {
            require_ref::<DeviceSet>(ctx, "deviceSets", id)?;
        }
        for id in &i.regions {
            require_ref::<Region>(ctx, "regions", id)?;
        }
        match (&i.file, i.campaign_type) {
            (None, CampaignType::BinaryTransfer | CampaignType::FirmwareUpdate) => {
                return Err(FieldError::new("file", "is required for this campaign type"))
            }
            (Some(_), CampaignType::MulticastSetup | CampaignType::Message) => {
                return Err(FieldError::new("file", "this campaign type sends no file"))
            }
            (Some(f), _) => require_ref::<StoredFile>(ctx, "file", f)?,
            (None, _) => {}
        }
        match (&i.message, i.campaign_type) {
            (Some(m), CampaignType::Message) => m.validate()?,
            (None, CampaignType::Message) => return Err(FieldError::new("message", "is required for a message campaign")),
            (Some(_), _) => return Err(FieldError::new("message", "only a message campaign has one")),
            (None, _) => {}
        }
        require_plugin(ctx, "deviceLibrary", &i.device_library, PluginKind::DeviceLibrary)?;
        if let Some(u) = &i.update_type {
            require_plugin(ctx, "updateType", u, PluginKind::UpdateType)?;
        }
        require_ref::<BackendInstance>(ctx, "backendInstance", &i.backend_instance)?;
        Ok(Campaign {
            id: prior.map(|p| p.id.clone()).unwrap_or_else(|| ctx.store.new_id()),
            name: i.name,
            description: i.description,
            created: prior.map(|p| p.created).unwrap_or(ctx.now),
            started: None,
            last_changed: ctx.now,
            campaign_type: i.campaign_type,
            device_sets: i.device_sets,
            regions: i.regions,
            reboot_at: i.reboot_at,
            session_start: i.session_start,
            file: i.file,
            status: CampaignStatus::Configured,
            max_duration_minutes: i.max_duration_minutes,
            success_threshold: i.success_threshold,
            device_library: i.device_library,
            backend_instance: i.backend_instance,
            update_type: i.update_type,
            message: i.message,
            archived: prior.is_some_and(|p| p.archived),
        })
    }
}

/// Fail unless a plugin of this name and kind is loaded.
pub fn require_plugin(ctx: &InputContext, field: &str, name: &str, kind: PluginKind) -> Result<(), FieldError> {
    match ctx.store.get::<PluginRecord>(name) {
        Ok(Some(p)) if p.manifest.kind == kind && !p.archived => Ok(()),
        Ok(Some(p)) => Err(FieldError::new(field, format!("plugin '{name}' is a {} plugin, not a {kind}", p.manifest.kind))),
        _ => Err(FieldError::new(field, format!("unknown plugin '{name}'"))),
    }
}
