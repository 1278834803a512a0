//! The LoRa Alliance FUOTA device library, package version 1. The code is
//! shared with the other version (`../library.rs`); only this constant differs.

const VERSION: lorawan_fuota::Version = lorawan_fuota::Version::V1;
const NAME: &str = "lorawan-v1";

include!("../../library.rs");
