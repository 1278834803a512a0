//! Airlift's simulator: the simulated side of the air (device models that
//! answer the FUOTA packages as real device stacks do, a fleet, and the
//! simulated network server), test peers of ThingPark, ChirpStack and the
//! mPower gateway, and the demo fleet (`scenario`, and the `airlift-demo`
//! binary). Its own crate: the product (`airlift`) ships without it. Written independently of the
//! server-side codecs and encoder (own parsing, own parity matrix), so
//! tests that pass a request through both catch a mistake on either side.

pub mod chirpstack;
pub mod device;
pub mod fleet;
pub mod frag_decoder;
pub mod frame;
pub mod gateway;
pub mod harness;
pub mod listen;
pub mod lns;
pub mod scenario;
pub mod thingpark;
pub mod upgrade;
pub mod uplink_pump;

pub use device::{DeviceModel, DeviceReply, PackageVersion, Stack};
pub use frag_decoder::{FragDecoder, DecodeProgress};
pub use upgrade::{Firmware, Upgrade};
