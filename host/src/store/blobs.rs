//! Content-addressed blobs: `<dir>/<sha256 hex>`. Writers stream into a
//! temporary file and rename it into place, so a blob is whole or absent.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// Open the blob directory. Temporary files left by writers a crash
    /// interrupted are removed: no blob was made of them.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        for leftover in std::fs::read_dir(&tmp)? {
            let path = leftover?.path();
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "leftover upload not removed");
            }
        }
        Ok(Self { dir: dir.to_path_buf() })
    }

    pub fn path(&self, sha256_hex: &str) -> PathBuf {
        self.dir.join(sha256_hex)
    }

    pub fn read(&self, sha256_hex: &str) -> std::io::Result<Vec<u8>> {
        if sha256_hex.len() != 64 || !sha256_hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a SHA-256 hex digest"));
        }
        std::fs::read(self.path(sha256_hex))
    }

    /// Every stored blob's hash.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut hashes = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                hashes.push(name);
            }
        }
        Ok(hashes)
    }

    pub fn remove(&self, sha256_hex: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.path(sha256_hex))
    }

    /// Store bytes held in memory; returns their hash.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<String> {
        let mut w = self.writer(u64::MAX)?;
        w.write_chunk(bytes)?;
        Ok(w.finish()?.0)
    }

    /// A streaming writer that refuses more than `limit` bytes.
    pub fn writer(&self, limit: u64) -> std::io::Result<BlobWriter> {
        let tmp = self.dir.join("tmp").join(format!("{:016x}", rand::random::<u64>()));
        let file = std::fs::File::create(&tmp)?;
        Ok(BlobWriter { blobs: self.clone(), tmp, file, hasher: Sha256::new(), len: 0, limit })
    }
}

/// A blob being written. Dropped without `finish`, it leaves nothing.
pub struct BlobWriter {
    blobs: Blobs,
    tmp: PathBuf,
    file: std::fs::File,
    hasher: Sha256,
    len: u64,
    limit: u64,
}

/// The writer was given more bytes than its limit allows.
#[derive(Debug, thiserror::Error)]
#[error("content exceeds the limit of {0} bytes")]
pub struct TooLarge(pub u64);

impl BlobWriter {
    pub fn write_chunk(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.len += chunk.len() as u64;
        if self.len > self.limit {
            return Err(std::io::Error::other(TooLarge(self.limit)));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk)
    }

    /// Commit; returns (sha256 hex, length).
    pub fn finish(mut self) -> std::io::Result<(String, u64)> {
        self.file.sync_all()?;
        let hash = hex::encode(std::mem::take(&mut self.hasher).finalize());
        std::fs::rename(&self.tmp, self.blobs.path(&hash))?;
        Ok((hash, self.len))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful finish the temp file was renamed away.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_a_crash_interrupted_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let kept = blobs.put(b"whole").unwrap();
        let mut interrupted = blobs.writer(1 << 20).unwrap();
        interrupted.write_chunk(b"half of it").unwrap();
        std::mem::forget(interrupted); // as a SIGKILL leaves it
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 1);
        let reopened = Blobs::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "the leftover is gone");
        assert_eq!(reopened.read(&kept).unwrap(), b"whole");
    }

    #[test]
    fn blobs_are_addressed_by_hash_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let hash = blobs.put(b"abc").unwrap();
        assert_eq!(hash, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(blobs.read(&hash).unwrap(), b"abc");

        let mut w = blobs.writer(4).unwrap();
        w.write_chunk(b"abc").unwrap();
        let err = w.write_chunk(b"de").unwrap_err();
        assert!(err.to_string().contains("limit of 4 bytes"));
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "partial upload left behind");
        assert!(blobs.read("../../etc/passwd").is_err());
    }
}
