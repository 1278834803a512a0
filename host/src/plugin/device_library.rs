//! Calling a device library: one typed method per export of the
//! `device-library` interface, and the types the engine speaks with it.
//! The rest of the host reaches device libraries only through here, so a
//! second contract version adapts in this module alone.

use super::bindings::device_library::exports::airlift::plugin::device_library as wit;
use super::{Plugin, PluginError, PluginRuntime};
use std::sync::Arc;

pub use super::bindings::types::{Attribute, DeviceContext, Eui, IsmBand, LorawanVersion, MulticastGroup, SessionClass};
pub use wit::{
    AnswerStatus, CampaignContext, CampaignKind, Downlink, Fact, Fragmentation, LibraryError, LibraryInfo, ParseError, PortBinding, StageAnswer, StageMode,
    StageSpec, UplinkEvent,
};

/// A device library to call. Each call runs in a fresh instance under the
/// plugin's limits; the outer error is the plugin failing (trap, timeout),
/// the inner one the library's own answer.
pub struct DeviceLibrary<'r> {
    runtime: &'r PluginRuntime,
    plugin: Arc<Plugin>,
}

impl PluginRuntime {
    pub fn device_library(&self, plugin: &Arc<Plugin>) -> DeviceLibrary<'_> {
        DeviceLibrary { runtime: self, plugin: plugin.clone() }
    }
}

impl DeviceLibrary<'_> {
    pub async fn describe(&self) -> Result<LibraryInfo, PluginError> {
        self.runtime.call_device_library(&self.plugin, |s, p| p.airlift_plugin_device_library().call_describe(s)).await
    }

    pub async fn plan(&self, campaign: CampaignContext) -> Result<Result<Vec<StageSpec>, LibraryError>, PluginError> {
        self.runtime.call_device_library(&self.plugin, move |s, p| p.airlift_plugin_device_library().call_plan(s, &campaign)).await
    }

    pub async fn fragment_layout(&self, file_size: u32, max_payload: u16) -> Result<Result<Fragmentation, LibraryError>, PluginError> {
        self.runtime.call_device_library(&self.plugin, move |s, p| p.airlift_plugin_device_library().call_fragment_layout(s, file_size, max_payload)).await
    }

    pub async fn build_request(&self, stage: String, device: Option<DeviceContext>, campaign: CampaignContext) -> Result<Result<Vec<Downlink>, LibraryError>, PluginError> {
        self.runtime
            .call_device_library(&self.plugin, move |s, p| p.airlift_plugin_device_library().call_build_request(s, &stage, device.as_ref(), &campaign))
            .await
    }

    pub async fn parse_uplink(&self, fport: u8, payload: Vec<u8>, device: DeviceContext) -> Result<Result<Vec<UplinkEvent>, ParseError>, PluginError> {
        self.runtime.call_device_library(&self.plugin, move |s, p| p.airlift_plugin_device_library().call_parse_uplink(s, fport, &payload, &device)).await
    }

    pub async fn fragments(&self, data: Vec<u8>, layout: Fragmentation, first: u32, count: u32) -> Result<Result<Vec<Downlink>, LibraryError>, PluginError> {
        self.runtime.call_device_library(&self.plugin, move |s, p| p.airlift_plugin_device_library().call_fragments(s, &data, layout, first, count)).await
    }
}
