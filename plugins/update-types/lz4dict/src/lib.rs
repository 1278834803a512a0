//! Update type LZ4DICT: the smart delta of `docs/lz4dict-format.md`. The
//! package is built here; the signature comes from the host key service
//! (`keys.sign`), so the private key never enters this plugin.

use airlift_plugin_sdk::update_type::{airlift, exports};

use airlift::plugin::keys;
use exports::airlift::plugin::update_type::*;
use smart_delta::{BlockParams, PackageError};

struct Lz4Dict;
airlift_plugin_sdk::update_type::export!(Lz4Dict);

fn error(e: PackageError) -> UpdateError {
    match e {
        PackageError::WrongBase => UpdateError::WrongBase(e.to_string()),
        PackageError::BadSignature | PackageError::SignatureMismatch => UpdateError::BadSignature(e.to_string()),
        PackageError::Invalid(m) => UpdateError::Invalid(m),
        _ => UpdateError::Corrupt(e.to_string()),
    }
}

impl Guest for Lz4Dict {
    fn describe() -> UpdateTypeInfo {
        UpdateTypeInfo {
            name: "LZ4DICT".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Signed smart delta: bsdiff-style patch against the base image, linked LZ4 blocks, ECDSA P-256".into(),
            needs_base_image: true,
            signed: true,
        }
    }

    fn encode(req: EncodeRequest) -> Result<Vec<u8>, UpdateError> {
        let base = req.base_image.ok_or_else(|| UpdateError::Invalid("a delta needs the base image".into()))?;
        let base_version = req.base_version.ok_or_else(|| UpdateError::Invalid("a delta needs the base firmware version".into()))?;
        let key = req.signing_key.ok_or_else(|| UpdateError::Invalid("LZ4DICT packages are signed: the file needs a Smart Delta key".into()))?;
        let package = smart_delta::build(&base, &req.new_image, base_version, req.new_version, BlockParams::DEFAULT).map_err(error)?;
        let signature = keys::sign(&key, smart_delta::message_to_sign(&package.bytes)).map_err(|e| UpdateError::Key(format!("{e:?}")))?;
        let mut signed = package.bytes;
        signed.extend_from_slice(&signature);
        Ok(signed)
    }

    fn decode(payload: Vec<u8>, base: Option<Vec<u8>>, public_key: Option<Vec<u8>>) -> Result<DecodedImage, UpdateError> {
        let base = base.ok_or_else(|| UpdateError::Invalid("a delta needs the base image".into()))?;
        let key = public_key.ok_or_else(|| UpdateError::Invalid("LZ4DICT needs the public key to verify".into()))?;
        let installed = smart_delta::device::install(&payload, &base, &key).map_err(error)?;
        Ok(DecodedImage { image: installed.image, version: installed.version })
    }
}
