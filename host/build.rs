//! Builds the guest plugins (the `plugins/` workspace) for wasm32-wasip2, so
//! `cargo run` and `cargo test` always use plugins built from this tree.
//! Each plugin's manifest and component are embedded in the host binary
//! (`$OUT_DIR/bundled_plugins.rs`).

use std::path::PathBuf;
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let plugins = root.join("plugins");
    for watched in ["plugins/Cargo.toml", "plugins/Cargo.lock", "plugins/.cargo", "plugins/fixtures", "plugins/lorawan", "plugins/backends", "plugins/update-types", "plugins/vendors", "sdk", "crates", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    // OUT_DIR is <target>/<profile>/build/<pkg>/out: keep the plugins' own
    // target dir beside the profiles so debug and release hosts share it.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = out_dir.ancestors().nth(4).unwrap().join("plugins");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .args(["build", "--release", "--target", WASM_TARGET])
        .env("CARGO_TARGET_DIR", &target_dir);
    // The outer build's flags are for the host target, not for wasm.
    for var in ["RUSTFLAGS", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER", "CARGO_PRIMARY_PACKAGE"] {
        cmd.env_remove(var);
    }
    // wit-bindgen's macro reads the WIT files without cargo knowing, so a
    // WIT change would leave plugins built against the old interface. A
    // digest of the WIT in the flags makes cargo rebuild them when it changes.
    // Flags from the environment replace `plugins/.cargo/config.toml`'s, so
    // its WASM SIMD flag is repeated here (without it the FEC's XOR loops
    // run a byte at a time: fec-bench measured 6× native, see the README).
    cmd.env("CARGO_ENCODED_RUSTFLAGS", format!("-Cmetadata=wit-{:016x}\x1f-Ctarget-feature=+simd128", wit_digest(&root.join("wit"))));
    let status = cmd.status().expect("failed to run cargo for the plugins");
    if !status.success() {
        panic!(
            "building the plugins failed; if the target is missing, run `rustup target add {WASM_TARGET}`"
        );
    }
    let wasm_dir = target_dir.join(WASM_TARGET).join("release");
    embed_plugins(&plugins, &wasm_dir, &out_dir.join("bundled_plugins.rs"));
}

/// Write the list of bundled plugins, each crate under `plugins/` with a
/// `plugin.json`, with its manifest and component embedded, so the binary
/// carries them wherever it is installed.
fn embed_plugins(plugins: &std::path::Path, wasm_dir: &std::path::Path, out: &std::path::Path) {
    let mut manifests = Vec::new();
    find_manifests(plugins, &mut manifests);
    manifests.sort();
    let mut code = String::from("&[\n");
    for manifest in manifests {
        let crate_dir = manifest.parent().unwrap();
        let cargo_toml = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("a plugin crate has a Cargo.toml");
        let crate_name = cargo_toml
            .lines()
            .find_map(|l| l.trim().strip_prefix("name = \"").and_then(|r| r.strip_suffix('"')))
            .expect("a plugin crate has a package name");
        let wasm = wasm_dir.join(format!("{}.wasm", crate_name.replace('-', "_")));
        let fixture = crate_dir.strip_prefix(plugins).is_ok_and(|p| p.starts_with("fixtures"));
        code.push_str(&format!(
            "    EmbeddedPlugin {{ crate_name: {crate_name:?}, fixture: {fixture}, manifest: include_str!({:?}), wasm: include_bytes!({:?}) }},\n",
            manifest.display().to_string(),
            wasm.display().to_string()
        ));
    }
    code.push(']');
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

fn find_manifests(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the plugins folder is readable").flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target" && n != "src") {
            find_manifests(&path, out);
        } else if path.file_name().is_some_and(|n| n == "plugin.json") && path.with_file_name("Cargo.toml").exists() {
            out.push(path);
        }
    }
}

/// A digest of every file under `dir`, by path and content.
fn wit_digest(dir: &std::path::Path) -> u64 {
    use std::hash::{Hash, Hasher};
    fn walk(dir: &std::path::Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("the wit folder is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, files);
            } else {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        f.strip_prefix(dir).unwrap().hash(&mut h);
        std::fs::read(&f).expect("WIT files are readable").hash(&mut h);
    }
    h.finish()
}
