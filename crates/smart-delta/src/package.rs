//! The package: a fixed 100-byte header, the compressed patch blocks, and
//! the signature appended in DER.

use crate::diff;
use crate::stream::{self, BlockParams};
use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 4] = *b"ALZD";
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 100;
/// A DER ECDSA P-256 signature is at most 72 bytes.
pub const MAX_SIGNATURE_LEN: usize = 72;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub params: BlockParams,
    pub base_size: u32,
    pub new_size: u32,
    pub base_version: u32,
    pub new_version: u32,
    /// Length of the decompressed patch stream.
    pub stream_len: u32,
    /// Length of the compressed blocks that follow the header.
    pub body_len: u32,
    pub base_sha256: [u8; 32],
    pub new_sha256: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("not an LZ4DICT package (bad magic or format version)")]
    NotAPackage,
    #[error("truncated package")]
    Truncated,
    #[error("the signature is missing or not DER")]
    BadSignature,
    #[error("the signature does not verify with the device's public key")]
    SignatureMismatch,
    #[error("the base image is not the one the package was made for")]
    WrongBase,
    #[error("the patch is corrupt")]
    Corrupt,
    #[error("the result does not match the new image's hash")]
    WrongResult,
    #[error("{0}")]
    Invalid(String),
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = FORMAT_VERSION;
        h[6..8].copy_from_slice(&(self.params.block as u16).to_le_bytes());
        h[8..10].copy_from_slice(&(self.params.window as u16).to_le_bytes());
        for (at, v) in [(12, self.base_size), (16, self.new_size), (20, self.base_version), (24, self.new_version), (28, self.stream_len), (32, self.body_len)] {
            h[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        h[36..68].copy_from_slice(&self.base_sha256);
        h[68..100].copy_from_slice(&self.new_sha256);
        h
    }

    pub fn parse(b: &[u8]) -> Result<Self, PackageError> {
        let h = b.get(..HEADER_LEN).ok_or(PackageError::Truncated)?;
        if h[0..4] != MAGIC || h[4] != FORMAT_VERSION {
            return Err(PackageError::NotAPackage);
        }
        let u16_at = |at: usize| u16::from_le_bytes([h[at], h[at + 1]]) as usize;
        let u32_at = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap());
        let params = BlockParams { block: u16_at(6), window: u16_at(8) };
        if params.block == 0 || params.block > stream::MAX_BLOCK {
            return Err(PackageError::Invalid(format!("block size {}", params.block)));
        }
        Ok(Self {
            params,
            base_size: u32_at(12),
            new_size: u32_at(16),
            base_version: u32_at(20),
            new_version: u32_at(24),
            stream_len: u32_at(28),
            body_len: u32_at(32),
            base_sha256: h[36..68].try_into().unwrap(),
            new_sha256: h[68..100].try_into().unwrap(),
        })
    }
}

/// An unsigned package: header ‖ body. Sign [`message_to_sign`] and append.
#[derive(Debug, Clone)]
pub struct Package {
    pub header: Header,
    pub bytes: Vec<u8>,
}

/// What the signature covers: the header and the body.
pub fn message_to_sign(unsigned: &[u8]) -> &[u8] {
    unsigned
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Make the package that turns `base` into `new`.
pub fn build(base: &[u8], new: &[u8], base_version: u32, new_version: u32, params: BlockParams) -> Result<Package, PackageError> {
    let too_big = |what: &str| PackageError::Invalid(format!("{what} is larger than 4 GiB"));
    let records = diff::records(base, new);
    let stream = stream::serialize(&records);
    let body = stream::compress(&stream, params);
    let header = Header {
        params,
        base_size: u32::try_from(base.len()).map_err(|_| too_big("base image"))?,
        new_size: u32::try_from(new.len()).map_err(|_| too_big("new image"))?,
        base_version,
        new_version,
        stream_len: u32::try_from(stream.len()).map_err(|_| too_big("patch"))?,
        body_len: u32::try_from(body.len()).map_err(|_| too_big("patch"))?,
        base_sha256: sha256(base),
        new_sha256: sha256(new),
    };
    let mut bytes = header.to_bytes().to_vec();
    bytes.extend_from_slice(&body);
    Ok(Package { header, bytes })
}

/// Split a signed package: (header, header ‖ body, DER signature).
pub fn parse(signed: &[u8]) -> Result<(Header, &[u8], &[u8]), PackageError> {
    let header = Header::parse(signed)?;
    let end = HEADER_LEN.checked_add(header.body_len as usize).ok_or(PackageError::Truncated)?;
    let signature = signed.get(end..).ok_or(PackageError::Truncated)?;
    // DER SEQUENCE with a one-byte length covering the rest.
    if signature.len() < 8 || signature.len() > MAX_SIGNATURE_LEN || signature[0] != 0x30 || signature[1] as usize != signature.len() - 2 {
        return Err(PackageError::BadSignature);
    }
    Ok((header, &signed[..end], signature))
}

/// Rebuild the new image (reference decoder, whole buffers; devices stream).
/// The caller checks the signature.
pub fn apply(base: &[u8], signed: &[u8]) -> Result<Vec<u8>, PackageError> {
    let (header, signed_part, _) = parse(signed)?;
    if base.len() != header.base_size as usize || sha256(base) != header.base_sha256 {
        return Err(PackageError::WrongBase);
    }
    let stream = stream::decompress(&signed_part[HEADER_LEN..], header.stream_len as usize, header.params).ok_or(PackageError::Corrupt)?;
    let records = stream::deserialize(&stream).ok_or(PackageError::Corrupt)?;
    let new = diff::apply(base, &records).ok_or(PackageError::Corrupt)?;
    if new.len() != header.new_size as usize || sha256(&new) != header.new_sha256 {
        return Err(PackageError::WrongResult);
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_turns_the_base_into_the_new_image_and_nothing_else() {
        let base: Vec<u8> = (0..30_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut new = base.clone();
        new[10..20].copy_from_slice(b"version 2!");
        new.splice(15_000..15_000, std::iter::repeat_n(0xAA, 300));
        let p = build(&base, &new, 0x0100_0000, 0x0200_0000, BlockParams::DEFAULT).unwrap();
        assert!(p.bytes.len() < 1_000, "{}", p.bytes.len());
        let fake_signature = [0x30, 6, 2, 1, 1, 2, 1, 1];
        let mut signed = p.bytes.clone();
        signed.extend_from_slice(&fake_signature);
        assert_eq!(apply(&base, &signed).unwrap(), new);
        assert_eq!(parse(&signed).unwrap().0, p.header);
        let mut other_base = base.clone();
        other_base[0] ^= 1;
        assert_eq!(apply(&other_base, &signed), Err(PackageError::WrongBase));
        assert_eq!(apply(&base, &p.bytes[..p.bytes.len() - 5]), Err(PackageError::Truncated));
        assert_eq!(apply(&base, &p.bytes), Err(PackageError::BadSignature), "unsigned");
        assert_eq!(apply(&base, &signed[..50]), Err(PackageError::Truncated));
    }
}
