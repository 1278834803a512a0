//! Calling a backend: one typed method per export of the `backend`
//! interface, on behalf of one backend instance, and its types.

use super::bindings::backend::exports::airlift::plugin::backend as wit;
use super::bindings::backend::BackendPlugin;
use super::{BackendGrant, CallState, Plugin, PluginError, PluginRuntime};
use std::sync::Arc;

pub use super::bindings::imports::airlift::plugin::http::Header;
pub use super::bindings::types::{Attribute, MulticastGroup};
pub use wit::{
    BackendError, BackendInfo, Capabilities, IncomingRequest, Instance, MulticastDownlink, OffloadDevice, OffloadJob, OffloadState, OffloadStatus, Report,
    SendReceipt, UnicastDownlink, Uplink,
};

/// What a backend call came to: the plugin's own result, and a network
/// failure the host saw that retrying cannot heal (a certificate that
/// does not verify, a name that does not resolve), whatever the plugin
/// made of it.
pub struct Answer<R> {
    pub result: Result<R, BackendError>,
    pub lasting_network_failure: Option<String>,
}

/// A backend plugin bound to an instance: its settings, and the grant the
/// host checks its requests and secrets against.
pub struct Backend<'r> {
    runtime: &'r PluginRuntime,
    plugin: Arc<Plugin>,
    grant: Arc<BackendGrant>,
    instance: Instance,
}

impl PluginRuntime {
    pub fn backend(&self, plugin: &Arc<Plugin>, grant: Arc<BackendGrant>, instance: Instance) -> Backend<'_> {
        Backend { runtime: self, plugin: plugin.clone(), grant, instance }
    }
}

impl Backend<'_> {
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut wasmtime::Store<CallState>, &BackendPlugin, &Instance) -> wasmtime::Result<Result<R, BackendError>> + Send + 'static,
    ) -> Result<Answer<R>, PluginError> {
        let instance = self.instance.clone();
        let (result, lasting_network_failure) = self
            .runtime
            .call_backend(&self.plugin, self.grant.clone(), move |s, p| {
                let result = f(s, p, &instance)?;
                Ok((result, s.data_mut().take_lasting_network_failure()))
            })
            .await?;
        Ok(Answer { result, lasting_network_failure })
    }

    pub async fn describe(&self) -> Result<BackendInfo, PluginError> {
        self.runtime.call_backend(&self.plugin, self.grant.clone(), |s, p| p.airlift_plugin_backend().call_describe(s)).await
    }

    pub async fn validate(&self) -> Result<Answer<()>, PluginError> {
        self.call(|s, p, inst| p.airlift_plugin_backend().call_validate(s, inst)).await
    }

    pub async fn create_multicast_group(&self, group: MulticastGroup, devices: Vec<u64>) -> Result<Answer<()>, PluginError> {
        self.call(move |s, p, inst| p.airlift_plugin_backend().call_create_multicast_group(s, inst, group, &devices)).await
    }

    pub async fn delete_multicast_group(&self, group: MulticastGroup) -> Result<Answer<()>, PluginError> {
        self.call(move |s, p, inst| p.airlift_plugin_backend().call_delete_multicast_group(s, inst, group)).await
    }

    pub async fn send_unicast(&self, downlink: UnicastDownlink) -> Result<Answer<SendReceipt>, PluginError> {
        self.call(move |s, p, inst| p.airlift_plugin_backend().call_send_unicast(s, inst, &downlink)).await
    }

    pub async fn send_multicast(&self, downlink: MulticastDownlink) -> Result<Answer<SendReceipt>, PluginError> {
        self.call(move |s, p, inst| p.airlift_plugin_backend().call_send_multicast(s, inst, &downlink)).await
    }

    pub async fn parse_reports(&self, request: IncomingRequest) -> Result<Answer<Vec<Report>>, PluginError> {
        self.call(move |s, p, inst| p.airlift_plugin_backend().call_parse_reports(s, inst, &request)).await
    }

    pub async fn offload_start(&self, job: OffloadJob) -> Result<Answer<String>, PluginError> {
        self.call(move |s, p, inst| p.airlift_plugin_backend().call_offload_start(s, inst, &job)).await
    }

    pub async fn offload_poll(&self, handle: String) -> Result<Answer<OffloadStatus>, PluginError> {
        self.call(move |s, p, inst| p.airlift_plugin_backend().call_offload_poll(s, inst, &handle)).await
    }

    pub async fn offload_cancel(&self, handle: String) -> Result<Answer<()>, PluginError> {
        self.call(move |s, p, inst| p.airlift_plugin_backend().call_offload_cancel(s, inst, &handle)).await
    }
}
