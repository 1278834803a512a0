//! Smart Delta signing keys: ECDSA P-256 with SHA-256, PKCS#8 PEM in, DER
//! signatures out, raw X‖Y or SPKI PEM public keys for device builds.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};

use super::Vault;
use crate::model::SmartDeltaKey;

#[derive(Debug, thiserror::Error)]
#[error("not a PKCS#8 PEM P-256 (prime256v1) private key")]
pub struct BadKey;

pub fn signing_key(pem: &str) -> Result<SigningKey, BadKey> {
    SigningKey::from_pkcs8_pem(pem).map_err(|_| BadKey)
}

/// A fresh key, as PKCS#8 PEM.
pub fn generate_pem() -> String {
    use p256::pkcs8::EncodePrivateKey;
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    key.to_pkcs8_pem(LineEnding::LF).expect("P-256 keys encode").to_string()
}

/// A stored key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyUnusable {
    #[error("Smart Delta key '{0}' has no private part")]
    NoPrivateKey(String),
    #[error("Smart Delta key '{0}' cannot be unsealed: {1}")]
    Sealed(String, String),
    #[error("Smart Delta key '{0}': {1}")]
    Bad(String, BadKey),
}

/// Unseal a stored Smart Delta key (inside the host only).
pub fn unseal(vault: &Vault, key: &SmartDeltaKey) -> Result<SigningKey, KeyUnusable> {
    let sealed = key.private_key.as_ref().ok_or_else(|| KeyUnusable::NoPrivateKey(key.id.clone()))?;
    let secret = vault.open_sealed(sealed).map_err(|e| KeyUnusable::Sealed(key.id.clone(), e.to_string()))?;
    let pem = std::str::from_utf8(secret.expose()).map_err(|_| KeyUnusable::Bad(key.id.clone(), BadKey))?;
    signing_key(pem).map_err(|e| KeyUnusable::Bad(key.id.clone(), e))
}

/// DER signature (at most 72 bytes) over SHA-256 of `message`.
pub fn sign_der(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let sig: DerSignature = key.sign(message);
    sig.as_bytes().to_vec()
}

/// Public key as raw 64 bytes X‖Y.
pub fn public_raw(key: &SigningKey) -> [u8; 64] {
    let point = key.verifying_key().to_encoded_point(false);
    point.as_bytes()[1..65].try_into().expect("uncompressed P-256 point is 65 bytes")
}

/// Public key as SPKI PEM.
pub fn public_pem(key: &SigningKey) -> String {
    key.verifying_key().to_public_key_pem(LineEnding::LF).expect("P-256 public keys encode")
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    use p256::pkcs8::EncodePrivateKey;

    #[test]
    fn signs_verifiably_with_an_imported_pkcs8_key() {
        let original = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let pem = original.to_pkcs8_pem(LineEnding::LF).unwrap();
        let key = signing_key(&pem).unwrap();
        let der = sign_der(&key, b"patch");
        assert!(der.len() <= 72);
        let raw = public_raw(&key);
        let mut sec1 = vec![4u8];
        sec1.extend_from_slice(&raw);
        let vk = VerifyingKey::from_sec1_bytes(&sec1).unwrap();
        vk.verify(b"patch", &Signature::from_der(&der).unwrap()).unwrap();
        assert!(public_pem(&key).starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(signing_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
    }
}
