//! Plugins built from this tree by `host/build.rs`: each crate under
//! `plugins/` with a `plugin.json` beside its `Cargo.toml`.

use crate::model::PluginManifest;
use std::path::{Path, PathBuf};

/// A plugin built with the host.
#[derive(Debug, Clone)]
pub struct BundledPlugin {
    pub manifest: PluginManifest,
    pub wasm_path: PathBuf,
    /// Test fixtures (`plugins/fixtures/`) are not loaded by `serve`.
    pub fixture: bool,
}

impl BundledPlugin {
    pub fn wasm(&self) -> std::io::Result<Vec<u8>> {
        std::fs::read(&self.wasm_path)
    }
}

/// Every bundled plugin, fixtures included, sorted by crate path.
pub fn bundled_plugins() -> std::io::Result<Vec<BundledPlugin>> {
    let src = Path::new(env!("AIRLIFT_PLUGINS_SRC"));
    let wasm_dir = Path::new(env!("AIRLIFT_BUNDLED_WASM"));
    let mut manifests = Vec::new();
    find_manifests(src, &mut manifests)?;
    manifests.sort();
    let mut out = Vec::new();
    for manifest_path in manifests {
        let crate_dir = manifest_path.parent().unwrap();
        let manifest: PluginManifest = serde_json::from_slice(&std::fs::read(&manifest_path)?)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", manifest_path.display())))?;
        let crate_name = crate_name(&crate_dir.join("Cargo.toml"))?;
        out.push(BundledPlugin {
            manifest,
            wasm_path: wasm_dir.join(format!("{}.wasm", crate_name.replace('-', "_"))),
            fixture: crate_dir.strip_prefix(src).is_ok_and(|p| p.starts_with("fixtures")),
        });
    }
    Ok(out)
}

/// A bundled plugin by the name in its manifest (fixtures included), or
/// by crate directory name for fixtures that share a plugin name.
pub fn bundled(name: &str) -> std::io::Result<BundledPlugin> {
    bundled_plugins()?
        .into_iter()
        .find(|p| p.manifest.name == name || p.wasm_path.file_stem().is_some_and(|s| s == name.replace('-', "_").as_str()))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no bundled plugin '{name}'")))
}

fn find_manifests(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target" && n != "src") {
            find_manifests(&path, out)?;
        } else if path.file_name().is_some_and(|n| n == "plugin.json") && path.with_file_name("Cargo.toml").exists() {
            out.push(path);
        }
    }
    Ok(())
}

fn crate_name(cargo_toml: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(cargo_toml)?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("name = \"").and_then(|r| r.strip_suffix('"')).map(str::to_string))
        .ok_or_else(|| std::io::Error::other(format!("{}: no package name", cargo_toml.display())))
}
