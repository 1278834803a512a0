//! Calling an update type: one typed method per export of the
//! `update-type` interface, and its types.

use super::bindings::update_type::exports::airlift::plugin::update_type as wit;
use super::{Plugin, PluginError, PluginRuntime};
use std::sync::Arc;

pub use wit::{DecodedImage, EncodeRequest, UpdateError, UpdateTypeInfo};

/// An update type to call (see [`super::device_library::DeviceLibrary`]
/// for the two levels of errors).
pub struct UpdateType<'r> {
    runtime: &'r PluginRuntime,
    plugin: Arc<Plugin>,
}

impl PluginRuntime {
    pub fn update_type(&self, plugin: &Arc<Plugin>) -> UpdateType<'_> {
        UpdateType { runtime: self, plugin: plugin.clone() }
    }
}

impl UpdateType<'_> {
    pub async fn describe(&self) -> Result<UpdateTypeInfo, PluginError> {
        self.runtime.call_update_type(&self.plugin, |s, p| p.airlift_plugin_update_type().call_describe(s)).await
    }

    pub async fn encode(&self, request: EncodeRequest) -> Result<Result<Vec<u8>, UpdateError>, PluginError> {
        self.runtime.call_update_type(&self.plugin, move |s, p| p.airlift_plugin_update_type().call_encode(s, &request)).await
    }

    pub async fn decode(&self, payload: Vec<u8>, base_image: Option<Vec<u8>>, public_key: Option<Vec<u8>>) -> Result<Result<DecodedImage, UpdateError>, PluginError> {
        self.runtime
            .call_update_type(&self.plugin, move |s, p| p.airlift_plugin_update_type().call_decode(s, &payload, base_image.as_deref(), public_key.as_deref()))
            .await
    }
}
