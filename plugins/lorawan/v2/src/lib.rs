//! The LoRa Alliance FUOTA device library, package version 2. The code is
//! shared with the other version (`../library.rs`); only this constant differs.

const VERSION: lorawan_fuota::Version = lorawan_fuota::Version::V2;
const NAME: &str = "lorawan-v2";

include!("../../library.rs");
