//! Host-side bindings, one module per contract version the host loads
//! (`wit/since_v0.1.0`, `wit/since_v0.2.0`). In each, the imports are
//! generated once (world `host-imports`) and shared by the plugin worlds
//! through `with`, so each import has one host implementation per version.
//! Only the facades of this module (`device_library`, `backend`,
//! `update_type`) use these; the rest of the host speaks the newest
//! version's types through them.

macro_rules! plugin_world {
    ($module:ident, $path:literal, $world:literal, { $($with:tt)* }) => {
        #[doc = concat!("Bindings of the `", $world, "` world.")]
        pub mod $module {
            wasmtime::component::bindgen!({
                path: $path,
                world: $world,
                imports: { default: trappable },
                additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
                with: {
                    "airlift:plugin/types": super::imports::airlift::plugin::types,
                    "airlift:plugin/log": super::imports::airlift::plugin::log,
                    "airlift:plugin/clock": super::imports::airlift::plugin::clock,
                    "airlift:plugin/keys": super::imports::airlift::plugin::keys,
                    $($with)*
                },
            });
        }
    };
}

macro_rules! host_imports {
    ($path:literal) => {
        /// Host imports (`log`, `clock`, `keys`, `http`) and the shared `types`.
        pub mod imports {
            wasmtime::component::bindgen!({
                path: $path,
                world: "host-imports",
                imports: { default: trappable },
                additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
            });
        }
        pub use imports::airlift::plugin::types;
    };
}

/// The first contract. Plugins built against it keep working through the
/// adapters in each facade.
pub mod v0_1 {
    host_imports!("../wit/since_v0.1.0");
    plugin_world!(device_library, "../wit/since_v0.1.0", "device-library-plugin", {});
    plugin_world!(backend, "../wit/since_v0.1.0", "backend-plugin", { "airlift:plugin/http": super::imports::airlift::plugin::http, });
    plugin_world!(update_type, "../wit/since_v0.1.0", "update-type-plugin", {});
}

/// The current contract: the types the host speaks.
pub mod v0_2 {
    host_imports!("../wit/since_v0.2.0");
    plugin_world!(device_library, "../wit/since_v0.2.0", "device-library-plugin", {
        "airlift:plugin/payload": super::imports::airlift::plugin::payload,
    });
    plugin_world!(backend, "../wit/since_v0.2.0", "backend-plugin", {
        "airlift:plugin/http": super::imports::airlift::plugin::http,
        "airlift:plugin/backend-types": super::imports::airlift::plugin::backend_types,
    });
    // Used for the `offload` export only; the `backend` export is called
    // through the `backend` world's bindings. Both share `backend-types`.
    plugin_world!(offloading_backend, "../wit/since_v0.2.0", "offloading-backend-plugin", {
        "airlift:plugin/http": super::imports::airlift::plugin::http,
        "airlift:plugin/backend-types": super::imports::airlift::plugin::backend_types,
    });
    plugin_world!(update_type, "../wit/since_v0.2.0", "update-type-plugin", {});
}

pub use v0_2 as latest;

/// A record of one contract version as the same record of another: the
/// two are generated from WIT that is identical for it, so they serialize
/// alike. For the small records adapters pass (contexts, answers, errors);
/// bulk bytes are moved field by field.
pub fn same_shape<A: serde::Serialize, B: serde::de::DeserializeOwned>(a: &A) -> wasmtime::Result<B> {
    Ok(serde_json::from_value(serde_json::to_value(a)?)?)
}
