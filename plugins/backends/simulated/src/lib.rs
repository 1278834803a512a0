//! Backend for the simulated network server (`airlift sim-lns`); the code is
//! `simulated-backend-core`.

airlift_plugin_sdk::plugin_version!(ThisVersion);
type Component = simulated_backend_core::Simulated<ThisVersion>;
airlift_plugin_sdk::backend::export!(Component);
