//! Airlift: a FUOTA campaign engine for LoRaWAN fleets.
//!
//! The host owns the campaign pipeline and the store; everything that
//! differs between fleets is a WASM component plugin behind `wit/`.
//!
//! - [`model`]: the server's objects and their validation.
//! - [`store`]: sled trees and content-addressed blobs.
//! - [`blob_gc`]: blobs no record refers to, removed at start.
//! - [`keys`]: secrets at rest and LoRaWAN key derivations.
//! - [`plugin`]: the WASM plugin runtime and its host imports.
//! - [`api`]: the REST API (axum) with bearer-token roles.
//! - [`server`]: assembling the pieces into a running host.
//! - [`clock`]: injectable time.
//! - [`metrics`]: Prometheus metrics.

pub mod api;
pub mod backend;
pub mod blob_gc;
pub mod clock;
pub mod console;
pub mod distributed;
pub mod engine;
pub mod keys;
pub mod metrics;
pub mod model;
pub mod plugin;
pub mod server;
pub mod store;
