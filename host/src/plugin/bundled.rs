//! Plugins built from this tree by `host/build.rs` (each crate under
//! `plugins/` with a `plugin.json` beside its `Cargo.toml`), embedded in the
//! binary: an installed `airlift` needs no source tree to find them.

use crate::model::PluginManifest;

/// What `host/build.rs` embeds for one plugin crate.
struct EmbeddedPlugin {
    crate_name: &'static str,
    fixture: bool,
    manifest: &'static str,
    wasm: &'static [u8],
}

const EMBEDDED: &[EmbeddedPlugin] = include!(concat!(env!("OUT_DIR"), "/bundled_plugins.rs"));

/// A plugin built with the host.
#[derive(Debug, Clone)]
pub struct BundledPlugin {
    pub manifest: PluginManifest,
    /// Its crate's name (fixtures that share a plugin name differ here).
    pub crate_name: &'static str,
    wasm: &'static [u8],
    /// Test fixtures (`plugins/fixtures/`) are not loaded by `serve`.
    pub fixture: bool,
}

impl BundledPlugin {
    /// The component's bytes.
    pub fn wasm(&self) -> &'static [u8] {
        self.wasm
    }
}

/// Every bundled plugin, fixtures included, sorted by crate path.
pub fn bundled_plugins() -> std::io::Result<Vec<BundledPlugin>> {
    EMBEDDED
        .iter()
        .map(|e| {
            let manifest = serde_json::from_str(e.manifest).map_err(|err| std::io::Error::other(format!("{}: plugin.json: {err}", e.crate_name)))?;
            Ok(BundledPlugin { manifest, crate_name: e.crate_name, wasm: e.wasm, fixture: e.fixture })
        })
        .collect()
}

/// A bundled plugin by the name in its manifest (fixtures included), or
/// by crate name for fixtures that share a plugin name.
pub fn bundled(name: &str) -> std::io::Result<BundledPlugin> {
    bundled_plugins()?
        .into_iter()
        .find(|p| p.manifest.name == name || p.crate_name == name)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no bundled plugin '{name}'")))
}
