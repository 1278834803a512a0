//! Update type PLAIN: the whole new image, behind the header a device
//! checks before installing (`crates/plain-image`).

use airlift_plugin_sdk::update_type::exports;

use exports::airlift::plugin::update_type::*;
use plain_image::PlainError;

struct Plain;
airlift_plugin_sdk::update_type::export!(Plain);

impl Guest for Plain {
    fn describe() -> UpdateTypeInfo {
        UpdateTypeInfo {
            name: "PLAIN".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "The full image, with its version, hardware target, size and SHA-256".into(),
            needs_base_image: false,
            signed: false,
        }
    }

    fn encode(req: EncodeRequest) -> Result<Vec<u8>, UpdateError> {
        plain_image::encode(&req.new_image, req.new_version, req.hardware_target.unwrap_or(0)).map_err(|e| UpdateError::Invalid(e.to_string()))
    }

    fn decode(payload: Vec<u8>, _base: Option<Vec<u8>>, _public_key: Option<Vec<u8>>) -> Result<DecodedImage, UpdateError> {
        let p = plain_image::decode(&payload, None).map_err(|e| match e {
            PlainError::WrongHardware { .. } => UpdateError::Invalid(e.to_string()),
            _ => UpdateError::Corrupt(e.to_string()),
        })?;
        Ok(DecodedImage { image: p.image.to_vec(), version: p.version })
    }
}
