//! The plugin runtime: loads WASM components with their manifests, caches
//! compiled code, runs each call in a fresh store under memory and time
//! limits, and swaps versions without a restart.
//!
//! - [`device_library`], [`backend`], [`update_type`]: one typed facade
//!   per plugin kind; nothing outside this module touches the bindings.
//! - [`bindings`]: the host side of `wit/`.
//! - [`runtime`]: engine, limits, calls, hot swap.
//! - [`cache`]: compiled components on disk.
//! - [`imports`]: one module per host import (log, clock, keys, http).
//! - [`allow`]: outbound host allow-lists.
//! - [`install`]: persisting plugins in the store and restoring them.

mod allow;
pub mod backend;
pub mod bundled;
pub(crate) mod bindings;
pub mod device_library;
pub mod update_type;
mod cache;
mod error;
pub mod imports;
mod install;
mod runtime;

pub use allow::{HostPattern, HostAllowList};
pub use imports::tls;
pub use error::PluginError;
pub use imports::{BackendGrant, HostServices};
pub use install::{install, restore, validate_manifest, SUPPORTED_WIT};
pub use runtime::{CallState, Contract, Plugin, PluginRuntime};
