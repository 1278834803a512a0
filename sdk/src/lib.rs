//! The Airlift plugin SDK: the bindings of each plugin world of the WIT
//! contract (`wit/since_v0.2.0`), generated once, and helpers for backend
//! plugins. A plugin implements its world's `Guest` trait and exports it:
//!
//! ```text
//! use airlift_plugin_sdk::device_library::exports::airlift::plugin::device_library::*;
//! struct MyLibrary;
//! impl Guest for MyLibrary { /* … */ }
//! airlift_plugin_sdk::device_library::export!(MyLibrary);
//! ```

/// The `device-library-plugin` world.
pub mod device_library {
    wit_bindgen::generate!({
        path: "../wit/since_v0.2.0",
        world: "device-library-plugin",
        pub_export_macro: true,
        default_bindings_module: "airlift_plugin_sdk::device_library",
    });
}

/// The `backend-plugin` world.
pub mod backend {
    wit_bindgen::generate!({
        path: "../wit/since_v0.2.0",
        world: "backend-plugin",
        pub_export_macro: true,
        default_bindings_module: "airlift_plugin_sdk::backend",
    });
}

/// The `update-type-plugin` world.
pub mod update_type {
    wit_bindgen::generate!({
        path: "../wit/since_v0.2.0",
        world: "update-type-plugin",
        pub_export_macro: true,
        default_bindings_module: "airlift_plugin_sdk::update_type",
    });
}

/// The LoRa Alliance FUOTA codecs (TS003–TS006), the TS004 FEC encoder and
/// the multicast key derivations, for device libraries that speak these
/// packages or a vendor's variant of them.
pub use lorawan_fuota as lorawan;

pub mod backend_support;
pub mod grpc_web;
pub mod hex;
pub mod library_support;
pub mod time;

/// A plugin's own version, for code shared by plugins built as several
/// crates: each component crate declares its version with
/// [`plugin_version!`] and exports the shared type with it.
pub trait PluginVersion {
    const VERSION: &'static str;
}

/// `plugin_version!(Name)` declares `Name`, a [`PluginVersion`] whose
/// version is the calling crate's (`CARGO_PKG_VERSION` where it expands).
#[macro_export]
macro_rules! plugin_version {
    ($name:ident) => {
        struct $name;
        impl $crate::PluginVersion for $name {
            const VERSION: &'static str = env!("CARGO_PKG_VERSION");
        }
    };
}
