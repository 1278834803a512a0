//! Host-side bindings generated from `wit/since_v0.1.0`. The imports are
//! generated once (world `host-imports`) and shared by the three plugin
//! worlds through `with`, so each import has one host implementation.

/// Host imports (`log`, `clock`, `keys`, `http`) and the shared `types`.
pub mod imports {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "host-imports",
        imports: { default: trappable },
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}

macro_rules! plugin_world {
    ($module:ident, $world:literal, { $($with:tt)* }) => {
        #[doc = concat!("Bindings of the `", $world, "` world.")]
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "../wit/since_v0.1.0",
                world: $world,
                imports: { default: trappable },
                additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
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

plugin_world!(device_library, "device-library-plugin", {});
plugin_world!(backend, "backend-plugin", { "airlift:plugin/http": super::imports::airlift::plugin::http, });
plugin_world!(update_type, "update-type-plugin", {});

pub use imports::airlift::plugin::types;
