//! The LoRa Alliance FUOTA device library, package version 1
//! (the code is `lorawan-library`).

type Component = lorawan_library::Library<false>;
airlift_plugin_sdk::device_library::export!(Component);
