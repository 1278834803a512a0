//! Key handling in the host: secrets sealed at rest ([`vault`]) and the
//! LoRaWAN derivations ([`lorawan`]) behind the plugins' `keys` import.

pub mod lorawan;
pub mod smart_delta;
mod vault;

pub use vault::{Sealed, Secret, Vault, VaultError, MASTER_KEY_ENV, MASTER_KEY_FILE_ENV};
pub(crate) use vault::write_private;
