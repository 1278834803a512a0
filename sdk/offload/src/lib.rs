//! The `offloading-backend-plugin` world: a backend whose network runs
//! whole sessions itself (a gateway's FOTA service) exports `offload` as
//! well as `backend`. A crate of its own because the export glue of the
//! `backend` interface may be generated once per crate; its imports and
//! `backend-types` are the SDK's, so `airlift_plugin_sdk::backend_support`
//! serves it unchanged.
//!
//! ```text
//! use airlift_plugin_sdk_offload::exports::airlift::plugin::{backend, offload};
//! struct MyGateway;
//! impl backend::Guest for MyGateway { /* … */ }
//! impl offload::Guest for MyGateway { /* … */ }
//! airlift_plugin_sdk_offload::export!(MyGateway);
//! ```

wit_bindgen::generate!({
    path: "../../wit/since_v0.2.0",
    world: "offloading-backend-plugin",
    pub_export_macro: true,
    default_bindings_module: "airlift_plugin_sdk_offload",
    with: {
        "airlift:plugin/types@0.2.0": airlift_plugin_sdk::backend::airlift::plugin::types,
        "airlift:plugin/log@0.2.0": airlift_plugin_sdk::backend::airlift::plugin::log,
        "airlift:plugin/clock@0.2.0": airlift_plugin_sdk::backend::airlift::plugin::clock,
        "airlift:plugin/keys@0.2.0": airlift_plugin_sdk::backend::airlift::plugin::keys,
        "airlift:plugin/http@0.2.0": airlift_plugin_sdk::backend::airlift::plugin::http,
        "airlift:plugin/backend-types@0.2.0": airlift_plugin_sdk::backend::airlift::plugin::backend_types,
    },
});
