//! The server's objects (seed on server objects): what is stored, how
//! client input becomes a stored object, and which fields are secret.

mod backend_instance;
mod campaign;
mod device;
mod eui;
mod fleet;
pub(crate) use fleet::fleet_object_macro as fleet_object;
mod plugin;
mod ports;

pub use backend_instance::{BackendInstance, BackendInstanceInput, Transport, MAX_REQUEST_TIMEOUT_MS};
pub use campaign::{Campaign, CampaignInput, CampaignStatus, CampaignType, MessageFormat, MulticastMessage};
pub use device::{Device, DeviceInput, DeviceUplinks, LorawanVersion, SessionClass, UplinkRecord};
pub use eui::Eui;
pub use fleet::{
    firmware_version_text, parse_firmware_version, DeviceProfile, DeviceProfileInput, DeviceSet, DeviceStack, DeviceSetInput, FileInput,
    FileType, IsmBand, MulticastGroup, MulticastGroupInput, Region, RegionInput, SmartDeltaKey, SmartDeltaKeyInput,
    StoredFile,
};
pub use ports::PortMap;
pub use plugin::{MulticastEncryption, PluginKind, PluginLimits, PluginManifest, PluginRecord, PluginVersion};

use crate::keys::Vault;
use crate::store::Store;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A client-facing validation failure, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// What `from_input` may consult: the store (to check references), the
/// vault (to seal secrets) and the time.
pub struct InputContext<'a> {
    pub store: &'a Store,
    pub vault: &'a Vault,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// A kind of stored object.
pub trait Object: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// Tree name in the store and path segment in the API.
    const KIND: &'static str;
    /// camelCase names of fields holding sealed secrets: stored, never shown.
    const SECRET_FIELDS: &'static [&'static str] = &[];
    /// Stored in a compact binary form instead of JSON: records the engine
    /// writes and reads many times a step, which no one reads by hand.
    /// Records stored as JSON before are still read.
    const COMPACT: bool = false;

    fn id(&self) -> String;
    fn archived(&self) -> bool;
    fn set_archived(&mut self);
}

/// An object clients create and update through the API.
pub trait Editable: Object {
    /// What clients send.
    type Input: DeserializeOwned + Send + 'static;

    /// A new object from input, or `prior` updated with it. Secrets left
    /// out of an update keep their stored value.
    fn from_input(input: Self::Input, prior: Option<&Self>, ctx: &InputContext) -> Result<Self, FieldError>;
}

/// A JSON view of an object for clients: secret fields replaced by
/// `<field>Set: true|false`.
pub fn public_view<T: Object>(obj: &T) -> serde_json::Value {
    let mut value = serde_json::to_value(obj).expect("stored objects serialize");
    if let Some(map) = value.as_object_mut() {
        for field in T::SECRET_FIELDS {
            let present = map.remove(*field).is_some_and(|v| !v.is_null() && v != serde_json::json!({}));
            map.insert(format!("{field}Set"), present.into());
        }
    }
    value
}

/// Parse a 16-byte key given as 32 hex digits (separators allowed).
pub fn parse_key128(field: &str, text: &str) -> Result<[u8; 16], FieldError> {
    let clean: String = text.chars().filter(|c| !matches!(c, '-' | ':' | ' ')).collect();
    hex::decode(&clean)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| FieldError::new(field, "must be a 128-bit key in 32 hex digits"))
}

/// Fail unless an object of kind `T` with this id exists and is not archived.
pub fn require_ref<T: Object>(ctx: &InputContext, field: &str, id: &str) -> Result<(), FieldError> {
    match ctx.store.get::<T>(id) {
        Ok(Some(o)) if !o.archived() => Ok(()),
        Ok(_) => Err(FieldError::new(field, format!("unknown {} '{id}'", T::KIND.trim_end_matches('s')))),
        Err(e) => Err(FieldError::new(field, format!("cannot check reference: {e}"))),
    }
}

/// Fail when a required text field is empty.
/// Longest name or other required text field, in characters.
pub const MAX_TEXT_CHARS: usize = 256;

pub fn require_text(field: &str, value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    limit_text(field, value)
}

/// An optional short text field (a name or tag that may be empty).
pub fn limit_text(field: &str, value: &str) -> Result<(), FieldError> {
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(FieldError::new(field, format!("must be at most {MAX_TEXT_CHARS} characters")));
    }
    Ok(())
}
