//! The LoRa Alliance FUOTA device library, package version 2
//! (the code is `lorawan-library`).

type Component = lorawan_library::Library<true>;
airlift_plugin_sdk::device_library::export!(Component);
