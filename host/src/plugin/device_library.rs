//! Calling a device library: one typed method per export of the
//! `device-library` interface, and the types the engine speaks with it
//! (the current contract's). The rest of the host reaches device libraries
//! only through here; a library built against an older contract is
//! adapted here too.

use super::bindings::{latest, same_shape, v0_1};
use super::runtime::DeviceLibraryPre;
use super::{Plugin, PluginError, PluginRuntime};
use std::sync::Arc;
use wasmtime::Store;

pub use latest::device_library::exports::airlift::plugin::device_library::{
    AnswerStatus, CampaignContext, CampaignKind, DataFragment, Downlink, Fact, Fragmentation, LibraryError, LibraryInfo, ParseError, PortBinding, StageAnswer, StageMode,
    StageSpec, UplinkEvent,
};
pub use latest::types::{Attribute, DeviceContext, Eui, IsmBand, LorawanVersion, MulticastGroup, SessionClass};

/// A device library to call. Each call runs under the plugin's limits, in
/// a fresh instance or one its campaign's calls left warm; the outer error
/// is the plugin failing (trap, timeout), the inner one the library's own
/// answer.
pub struct DeviceLibrary<'r> {
    runtime: &'r PluginRuntime,
    plugin: Arc<Plugin>,
}

impl PluginRuntime {
    pub fn device_library(&self, plugin: &Arc<Plugin>) -> DeviceLibrary<'_> {
        DeviceLibrary { runtime: self, plugin: plugin.clone() }
    }
}

type Current = latest::device_library::DeviceLibraryPlugin;
type Old = v0_1::device_library::DeviceLibraryPlugin;

/// An instance, whichever contract the library speaks.
enum Instance {
    Current(Current),
    Old(Old),
}

fn instantiate(s: &mut Store<super::CallState>, pre: &DeviceLibraryPre) -> wasmtime::Result<Instance> {
    Ok(match pre {
        DeviceLibraryPre::V0_2(p) => Instance::Current(p.instantiate(&mut *s)?),
        DeviceLibraryPre::V0_1(p) => Instance::Old(p.instantiate(&mut *s)?),
    })
}

/// One device's request as the library built it: the outer error is the
/// plugin failing on that call, the inner one the library's answer.
pub type Built = Result<Result<Vec<Downlink>, LibraryError>, PluginError>;

/// Calls one instance serves at most: its memory is bounded by the
/// plugin's limit anyway; this bounds how long one batch holds a thread.
const CALLS_PER_INSTANCE: usize = 256;

impl DeviceLibrary<'_> {
    /// Run `current` on an instance of the library, or `old` when it was
    /// built against contract 0.1.0. On behalf of a campaign (`scope`), the
    /// call may run in an instance a call of that campaign left warm, and
    /// leaves its own.
    async fn call<R: Send + 'static>(
        &self,
        scope: Option<&str>,
        current: impl FnOnce(&mut Store<super::CallState>, &Current) -> wasmtime::Result<R> + Send + 'static,
        old: impl FnOnce(&mut Store<super::CallState>, &Old) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<R, PluginError> {
        let calls = vec![(current, old)];
        let mut results = self
            .runtime
            .call_device_library_many(&self.plugin, scope.map(str::to_string), calls, instantiate, |s, instance, (current, old)| match instance {
                Instance::Current(p) => current(s, p),
                Instance::Old(p) => old(s, p),
            })
            .await?;
        results.pop().unwrap_or_else(|| Err(PluginError::Trap { name: self.plugin.manifest.name.clone(), message: "the call returned nothing".into() }))
    }

    pub async fn describe(&self) -> Result<LibraryInfo, PluginError> {
        self.call(
            None,
            |s, p| p.airlift_plugin_device_library().call_describe(s),
            |s, p| same_shape(&p.airlift_plugin_device_library().call_describe(s)?),
        )
        .await
    }

    pub async fn plan(&self, campaign: CampaignContext) -> Result<Result<Vec<StageSpec>, LibraryError>, PluginError> {
        let old_campaign = campaign.clone();
        self.call(
            None,
            move |s, p| p.airlift_plugin_device_library().call_plan(s, &campaign),
            move |s, p| same_shape(&p.airlift_plugin_device_library().call_plan(s, &same_shape(&old_campaign)?)?),
        )
        .await
    }

    pub async fn fragment_layout(&self, file_size: u32, max_payload: u16) -> Result<Result<Fragmentation, LibraryError>, PluginError> {
        self.call(
            None,
            move |s, p| p.airlift_plugin_device_library().call_fragment_layout(s, file_size, max_payload),
            move |s, p| same_shape(&p.airlift_plugin_device_library().call_fragment_layout(s, file_size, max_payload)?),
        )
        .await
    }

    pub async fn build_request(&self, stage: String, device: Option<DeviceContext>, campaign: CampaignContext) -> Result<Result<Vec<Downlink>, LibraryError>, PluginError> {
        let (old_stage, old_device, old_campaign) = (stage.clone(), device.clone(), campaign.clone());
        let scope = campaign.campaign_id.clone();
        self.call(
            Some(&scope),
            move |s, p| p.airlift_plugin_device_library().call_build_request(s, &stage, device.as_ref(), &campaign),
            move |s, p| {
                let device: Option<v0_1::types::DeviceContext> = old_device.as_ref().map(same_shape).transpose()?;
                same_shape(&p.airlift_plugin_device_library().call_build_request(s, &old_stage, device.as_ref(), &same_shape(&old_campaign)?)?)
            },
        )
        .await
    }

    /// [`Self::build_request`] for each of `devices` in one stage, the
    /// calls sharing instances (a few hundred calls each, a fresh one
    /// after a call failed). One result per device, in order.
    pub async fn build_requests(&self, stage: String, devices: Vec<DeviceContext>, campaign: CampaignContext) -> Result<Vec<Built>, PluginError> {
        let mut built = Vec::with_capacity(devices.len());
        let mut devices = devices.into_iter().peekable();
        while devices.peek().is_some() {
            let batch: Vec<DeviceContext> = devices.by_ref().take(CALLS_PER_INSTANCE).collect();
            let (stage, campaign) = (stage.clone(), campaign.clone());
            let scope = Some(campaign.campaign_id.clone());
            let results = self
                .runtime
                .call_device_library_many(
                    &self.plugin,
                    scope,
                    batch,
                    instantiate,
                    move |s, instance, device| match instance {
                        Instance::Current(p) => p.airlift_plugin_device_library().call_build_request(s, &stage, Some(&device), &campaign),
                        Instance::Old(p) => {
                            let device: v0_1::types::DeviceContext = same_shape(&device)?;
                            same_shape(&p.airlift_plugin_device_library().call_build_request(s, &stage, Some(&device), &same_shape(&campaign)?)?)
                        }
                    },
                )
                .await?;
            built.extend(results);
        }
        Ok(built)
    }

    /// `campaign`: the campaign the device is in, so the library can tell
    /// an answer to the request outstanding from one to another session.
    /// A 0.1.0 library never sees it.
    pub async fn parse_uplink(&self, fport: u8, payload: Vec<u8>, device: DeviceContext, campaign: CampaignContext) -> Result<Result<Vec<UplinkEvent>, ParseError>, PluginError> {
        let (old_payload, old_device) = (payload.clone(), device.clone());
        let scope = campaign.campaign_id.clone();
        self.call(
            Some(&scope),
            move |s, p| p.airlift_plugin_device_library().call_parse_uplink(s, fport, &payload, &device, &campaign),
            move |s, p| same_shape(&p.airlift_plugin_device_library().call_parse_uplink(s, fport, &old_payload, &same_shape(&old_device)?)?),
        )
        .await
    }

    /// The fragments at positions `first..first + count` of the session,
    /// with the numbers the library gave them (a 0.1.0 library numbers
    /// them by position).
    pub async fn fragments(&self, data: Vec<u8>, layout: Fragmentation, first: u32, count: u32) -> Result<Result<Vec<DataFragment>, LibraryError>, PluginError> {
        // One copy of the file, whichever contract the library speaks.
        let data = Arc::new(data);
        let old_data = data.clone();
        self.call(
            None,
            move |s, p| p.airlift_plugin_device_library().call_fragments(s, &data, layout, first, count),
            move |s, p| {
                Ok(match p.airlift_plugin_device_library().call_fragments(s, &old_data, same_shape(&layout)?, first, count)? {
                    Ok(downlinks) => Ok((first..)
                        .zip(downlinks)
                        .map(|(number, d)| DataFragment { number, downlink: Downlink { fport: d.fport, payload: d.payload } })
                        .collect()),
                    Err(e) => Err(same_shape(&e)?),
                })
            },
        )
        .await
    }
}
