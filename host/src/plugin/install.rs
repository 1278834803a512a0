//! Plugins in the store: installing a new version (blob + record) and
//! restoring every active plugin when the host starts.

use super::{HostAllowList, Plugin, PluginError, PluginRuntime};
use crate::model::{PluginLimits, PluginManifest, PluginRecord, PluginVersion};
use crate::store::Store;
use std::sync::Arc;

/// WIT package versions (`major.minor`) this host can load: the current
/// one, and older ones through the adapters of the plugin facades.
pub const SUPPORTED_WIT: &[&str] = &["0.1", "0.2"];

/// Check a manifest before anything is compiled.
pub fn validate_manifest(m: &PluginManifest) -> Result<(), PluginError> {
    let bad = |msg: String| Err(PluginError::Invalid(msg));
    if m.name.is_empty() || m.name.len() > 64 || !m.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return bad(format!("name '{}' must be 1-64 characters of a-z, 0-9 and '-'", m.name));
    }
    if super::runtime::Contract::of(&m.wit_version).is_none() {
        return bad(format!("WIT version '{}' is not supported (supported: {})", m.wit_version, SUPPORTED_WIT.join(", ")));
    }
    let (l, max) = (&m.limits, PluginLimits::CEILING);
    if l.memory_mib == 0 || l.memory_mib > max.memory_mib || l.timeout_ms == 0 || l.timeout_ms > max.timeout_ms || l.max_concurrent_calls > max.max_concurrent_calls {
        return bad(format!("limits must be within memory 1-{} MiB, timeout 1-{} ms, concurrency 0-{}", max.memory_mib, max.timeout_ms, max.max_concurrent_calls));
    }
    HostAllowList::parse(&m.allowed_outbound_hosts).map_err(|e| PluginError::Invalid(format!("allowedOutboundHosts: {e}")))?;
    Ok(())
}

/// Store a plugin version and make it active (hot swap when the name is
/// already loaded). Returns the loaded plugin.
pub fn install(runtime: &PluginRuntime, store: &Store, manifest: PluginManifest, wasm: &[u8]) -> Result<Arc<Plugin>, PluginError> {
    validate_manifest(&manifest)?;
    if let Ok(Some(existing)) = store.get::<PluginRecord>(&manifest.name) {
        if existing.manifest.kind != manifest.kind {
            return Err(PluginError::Invalid(format!("'{}' is already a {} plugin", manifest.name, existing.manifest.kind)));
        }
    }
    let storage = |e: std::io::Error| PluginError::Storage(e.to_string());
    let sha256 = store.blobs().put(wasm).map_err(storage)?;
    let plugin = runtime.load(manifest.clone(), &sha256, wasm)?;
    let prior = store.get::<PluginRecord>(&manifest.name).map_err(|e| PluginError::Storage(e.to_string()))?;
    let mut versions = prior.map(|p| p.versions).unwrap_or_default();
    if !versions.iter().any(|v| v.sha256 == sha256) {
        versions.push(PluginVersion { sha256: sha256.clone(), manifest: manifest.clone() });
    }
    let record = PluginRecord { manifest, wasm_sha256: sha256, versions, loaded_at: chrono::Utc::now(), archived: false };
    store.put(&record).map_err(|e| PluginError::Storage(e.to_string()))?;
    Ok(plugin)
}

/// Load every stored, non-archived plugin's active version. A plugin that
/// no longer loads is logged and skipped; the host still starts.
pub fn restore(runtime: &PluginRuntime, store: &Store) -> Result<Vec<Arc<Plugin>>, PluginError> {
    let records = store.list::<PluginRecord>(false).map_err(|e| PluginError::Storage(e.to_string()))?;
    let mut loaded = Vec::new();
    for r in records {
        let result = store
            .blobs()
            .read(&r.wasm_sha256)
            .map_err(|e| PluginError::Storage(e.to_string()))
            .and_then(|wasm| runtime.load(r.manifest.clone(), &r.wasm_sha256, &wasm));
        match result {
            Ok(p) => loaded.push(p),
            Err(e) => tracing::error!(plugin = %r.manifest.name, error = %e, "stored plugin could not be restored"),
        }
    }
    Ok(loaded)
}
