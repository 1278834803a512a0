//! LoRa Alliance FUOTA application-layer packages, as pure codecs:
//!
//! - [`ts003`] clock synchronization (FPort 202),
//! - [`ts004`] fragmented data block transport (FPort 201) and [`fec`], its
//!   forward error correction, and [`coded_order`], which coded fragments
//!   to send,
//! - [`ts005`] remote multicast setup (FPort 200),
//! - [`ts006`] firmware management (FPort 203),
//! - [`region`] maximum payload per data rate and time on air,
//! - [`keys`] the multicast key derivations (TS005) and the TS004 v2
//!   data-block integrity code.
//!
//! Byte layouts follow `shared/specs/README.md`: CID first, integers little
//! endian. `Request`s go from server to device, `Uplink`s from device to
//! server (answers and device-originated requests). No I/O here.

pub mod coded_order;
pub mod fec;
pub mod keys;
pub mod region;
pub mod ts003;
pub mod ts004;
pub mod ts005;
pub mod ts006;
mod wire;

pub use wire::{CodecError, Parsed};

/// Package version a device speaks; the byte layouts differ in places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
}

/// Default FPorts of the packages.
pub mod ports {
    pub const MULTICAST_SETUP: u8 = 200;
    pub const FRAGMENTATION: u8 = 201;
    pub const CLOCK_SYNC: u8 = 202;
    pub const FIRMWARE_MANAGEMENT: u8 = 203;
}

/// PackageVersionAns, common to all packages (CID 0x00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageVersion {
    pub package: u8,
    pub version: u8,
}
