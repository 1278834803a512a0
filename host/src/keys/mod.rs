//! Key handling in the host: secrets sealed at rest ([`vault`]), Smart
//! Delta signing, and multicast payloads the host encrypts ([`multicast`]). The LoRaWAN derivations behind the plugins' `keys` import
//! are `lorawan_fuota::keys`, beside the protocol they serve.

pub mod multicast;
pub mod smart_delta;
mod vault;

pub use vault::{Sealed, Secret, Vault, VaultError, MASTER_KEY_ENV, MASTER_KEY_FILE_ENV};
pub(crate) use vault::write_private;
