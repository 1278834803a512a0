//! `airlift plugin new`: a plugin project to start from, written outside
//! this repository: `Cargo.toml` on the plugin SDK, `plugin.json`, a
//! working `src/lib.rs` with its own tests, a README. The templates live in
//! `host/templates/plugin/` and are built and run by
//! `host/tests/plugin_template.rs`.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Which plugin world the project exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TemplateKind {
    DeviceLibrary,
    Backend,
    UpdateType,
}

impl TemplateKind {
    fn manifest_kind(self) -> &'static str {
        match self {
            TemplateKind::DeviceLibrary => "device-library",
            TemplateKind::Backend => "backend",
            TemplateKind::UpdateType => "update-type",
        }
    }

    fn files(self) -> (&'static str, &'static str) {
        match self {
            TemplateKind::DeviceLibrary => (include_str!("../../templates/plugin/device-library/plugin.json.tmpl"), include_str!("../../templates/plugin/device-library/lib.rs.tmpl")),
            TemplateKind::Backend => (include_str!("../../templates/plugin/backend/plugin.json.tmpl"), include_str!("../../templates/plugin/backend/lib.rs.tmpl")),
            TemplateKind::UpdateType => (include_str!("../../templates/plugin/update-type/plugin.json.tmpl"), include_str!("../../templates/plugin/update-type/lib.rs.tmpl")),
        }
    }
}

/// Where this build's source tree keeps the SDK, when the binary was built
/// from one (an installed binary may be far from it: then `--sdk`).
const SOURCE_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

/// Write the project; returns its directory.
pub fn create(kind: TemplateKind, name: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let valid = name.len() <= 64 && name.starts_with(|c: char| c.is_ascii_lowercase()) && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    anyhow::ensure!(valid, "plugin name {name:?}: lower-case letters, digits and '-', starting with a letter, at most 64");
    let sdk = sdk.unwrap_or_else(|| PathBuf::from(SOURCE_SDK));
    let sdk = sdk
        .canonicalize()
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .with_context(|| format!("no plugin SDK at {}: pass --sdk with the path of the airlift-plugin-sdk crate (`sdk/` in Airlift's sources)", sdk.display()))?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        anyhow::bail!("{} exists and is not empty", dir.display());
    }
    let (manifest, lib) = kind.files();
    let extra_dependencies = if kind == TemplateKind::Backend { "serde_json = \"1\"\n" } else { "" };
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{upper_name}}", &name.to_uppercase().replace('-', "_"))
            .replace("{{kind}}", kind.manifest_kind())
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{extra_dependencies}}", extra_dependencies)
    };
    let files: [(&str, &str); 6] = [
        (".cargo/config.toml", include_str!("../../templates/plugin/cargo-config.toml.tmpl")),
        ("Cargo.toml", include_str!("../../templates/plugin/Cargo.toml.tmpl")),
        ("plugin.json", manifest),
        ("src/lib.rs", lib),
        ("README.md", include_str!("../../templates/plugin/README.md.tmpl")),
        (".gitignore", include_str!("../../templates/plugin/gitignore.tmpl")),
    ];
    for (path, template) in files {
        write(&dir.join(path), &fill(template))?;
    }
    Ok(dir)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
