//! Secrets at rest: AES-256-GCM under a master key that never enters the
//! store. Sealed values serialize as opaque base64 and print as
//! `Sealed(..)`, so neither the API nor a log line can show a secret.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Why the vault could not be opened or a value not unsealed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("sealed value is corrupt or was sealed under another master key")]
    Corrupt,
}

/// An encrypted secret as stored: nonce ‖ ciphertext ‖ tag, base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealed(..)")
    }
}

/// Plaintext secret bytes in memory; redacted in Debug and wiped on drop.
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // Volatile so the wipe is not optimised away.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Seals and opens secrets with the master key.
pub struct Vault {
    cipher: Aes256Gcm,
}

/// Environment variable holding the master key as 64 hex digits.
pub const MASTER_KEY_ENV: &str = "AIRLIFT_MASTER_KEY";
/// Environment variable naming a file that holds the master key.
pub const MASTER_KEY_FILE_ENV: &str = "AIRLIFT_MASTER_KEY_FILE";

impl Vault {
    pub fn new(master_key: [u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(&master_key.into()) }
    }

    /// The master key from `AIRLIFT_MASTER_KEY`, else the file named by
    /// `AIRLIFT_MASTER_KEY_FILE`, else `<data_dir>/master.key`, created
    /// with a random key (mode 0600) on first start.
    pub fn open(data_dir: &Path) -> Result<Self, VaultError> {
        if let Ok(hex_key) = std::env::var(MASTER_KEY_ENV) {
            return Ok(Self::new(parse_master_key(&hex_key)?));
        }
        let path = match std::env::var(MASTER_KEY_FILE_ENV) {
            Ok(p) => p.into(),
            Err(_) => data_dir.join("master.key"),
        };
        if !path.exists() {
            let mut key = [0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            write_private(&path, hex::encode(key).as_bytes())
                .map_err(|e| VaultError::MasterKey(format!("cannot create {}: {e}", path.display())))?;
            tracing::info!(path = %path.display(), "created a new master key file");
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| VaultError::MasterKey(format!("cannot read {}: {e}", path.display())))?;
        Ok(Self::new(parse_master_key(&text)?))
    }

    pub fn seal(&self, plaintext: &[u8]) -> Sealed {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Sealed(base64::engine::general_purpose::STANDARD.encode(out))
    }

    pub fn open_sealed(&self, sealed: &Sealed) -> Result<Secret, VaultError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&sealed.0)
            .map_err(|_| VaultError::Corrupt)?;
        if raw.len() < 12 + 16 {
            return Err(VaultError::Corrupt);
        }
        let (nonce, ciphertext) = raw.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map(Secret)
            .map_err(|_| VaultError::Corrupt)
    }
}

fn parse_master_key(text: &str) -> Result<[u8; 32], VaultError> {
    let bytes = hex::decode(text.trim())
        .map_err(|_| VaultError::MasterKey("must be 64 hex digits".into()))?;
    bytes.try_into().map_err(|_| VaultError::MasterKey("must be 64 hex digits (32 bytes)".into()))
}

/// Write a file only the owner can read.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_hides_plaintext() {
        let vault = Vault::new([7; 32]);
        let sealed = vault.seal(b"0102030405060708");
        assert!(!serde_json::to_string(&sealed).unwrap().contains("0102030405060708"));
        assert_eq!(format!("{sealed:?}"), "Sealed(..)");
        assert_eq!(vault.open_sealed(&sealed).unwrap().expose(), b"0102030405060708");
    }

    #[test]
    fn another_master_key_cannot_open() {
        let sealed = Vault::new([1; 32]).seal(b"secret");
        assert!(matches!(Vault::new([2; 32]).open_sealed(&sealed), Err(VaultError::Corrupt)));
    }
}
