//! Backend for the simulated network server (`airlift sim-lns`); the code is
//! `simulated-backend-core`.

use airlift_plugin_sdk::PluginVersion;
use simulated_backend_core::Simulated;

struct ThisVersion;

impl PluginVersion for ThisVersion {
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
}

type Component = Simulated<ThisVersion>;
airlift_plugin_sdk::backend::export!(Component);
