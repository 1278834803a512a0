//! Compiled components on disk: `<dir>/<sha256 of wasm>-<engine hash>.cwasm`.
//! Only files this host wrote are ever deserialized (precompiled code is
//! trusted code), and a changed engine configuration misses the cache.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use wasmtime::component::Component;
use wasmtime::Engine;

pub struct CompiledCache {
    dir: PathBuf,
    engine_hash: String,
}

impl CompiledCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self { dir, engine_hash: format!("{:016x}", hasher.finish()) })
    }

    /// The compiled component and whether it came from the cache.
    pub fn load_or_compile(&self, engine: &Engine, sha256: &str, wasm: &[u8]) -> wasmtime::Result<(Component, bool)> {
        let path = self.dir.join(format!("{sha256}-{}.cwasm", self.engine_hash));
        if path.exists() {
            // SAFETY: the file was written by `serialize` below into a
            // directory only this host writes, keyed by the wasm's hash.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "discarding unreadable compiled plugin"),
            }
        }
        let component = Component::new(engine, wasm)?;
        let tmp = path.with_extension(format!("tmp{:08x}", rand::random::<u32>()));
        if let Err(e) = std::fs::write(&tmp, component.serialize()?).and_then(|_| std::fs::rename(&tmp, &path)) {
            // The cache is an optimisation: a failure to write it is not fatal.
            tracing::warn!(error = %e, "could not cache a compiled plugin");
            let _ = std::fs::remove_file(&tmp);
        }
        Ok((component, false))
    }
}
