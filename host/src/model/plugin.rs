//! Plugin manifests and the stored record of each loaded plugin.

use super::fleet::object;
use super::Object;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    DeviceLibrary,
    Backend,
    UpdateType,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginKind::DeviceLibrary => "device-library",
            PluginKind::Backend => "backend",
            PluginKind::UpdateType => "update-type",
        })
    }
}

/// Resource limits for each call into a plugin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PluginLimits {
    /// Linear memory a call may grow to.
    pub memory_mib: u32,
    /// Wall-clock deadline of one call.
    pub timeout_ms: u32,
    /// Calls into this plugin allowed at once.
    pub max_concurrent_calls: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self { memory_mib: 64, timeout_ms: 5_000, max_concurrent_calls: 8 }
    }
}

impl PluginLimits {
    /// Upper bounds an operator cannot exceed through a manifest.
    pub const CEILING: PluginLimits = PluginLimits { memory_mib: 1024, timeout_ms: 120_000, max_concurrent_calls: 64 };
}

/// The manifest shipped beside a plugin's `.wasm` (`plugin.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginManifest {
    pub name: String,
    pub kind: PluginKind,
    pub version: String,
    /// Version of the `airlift:plugin` WIT package the plugin was built for.
    pub wit_version: String,
    #[serde(default)]
    pub description: String,
    /// `scheme://host[:port]` or `*.domain`; backends only.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub limits: PluginLimits,
    /// Backends only: who encrypts multicast payloads.
    #[serde(default)]
    pub multicast_encryption: MulticastEncryption,
}

/// Who encrypts a multicast downlink's FRMPayload with McAppSKey, for
/// backends built against WIT 0.1.0. Since 0.2.0 a backend whose network
/// forwards application-encrypted payloads calls the host's
/// `keys.encrypt-multicast-payload` itself, and leaves this `network`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MulticastEncryption {
    /// The network server holds the session keys and encrypts (ChirpStack).
    #[default]
    Network,
    /// The network forwards an application-encrypted payload with the
    /// frame counter it was encrypted for (ThingPark with `FCntDn`): the
    /// host encrypts, so the plugin never holds McAppSKey.
    Host,
}

/// A loaded plugin version, as stored (the wasm itself is stored by hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginRecord {
    pub manifest: PluginManifest,
    /// SHA-256 of the active version's component.
    pub wasm_sha256: String,
    /// Every version ever loaded, oldest first (campaigns pin one by hash).
    pub versions: Vec<PluginVersion>,
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    pub archived: bool,
}
object!(PluginRecord, "plugins", |s| s.manifest.name.clone());

/// One loaded version of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginVersion {
    pub sha256: String,
    pub manifest: PluginManifest,
}
