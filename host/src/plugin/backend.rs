//! Calling a backend: one typed method per export of the `backend` and
//! `offload` interfaces, on behalf of one backend instance, and their
//! types (the current contract's; a 0.1.0 plugin is adapted here).

use super::bindings::{latest, same_shape, v0_1};
use super::runtime::BackendPre;
use super::{BackendGrant, CallState, Plugin, PluginError, PluginRuntime};
use std::sync::Arc;
use wasmtime::Store;

pub use latest::backend::exports::airlift::plugin::backend::{BackendInfo, Capabilities, IncomingRequest, MulticastDownlink, Report, SendReceipt, UnicastDownlink, Uplink};
pub use latest::imports::airlift::plugin::backend_types::{BackendError, Instance};
pub use latest::imports::airlift::plugin::http::Header;
pub use latest::offloading_backend::exports::airlift::plugin::offload::{FileSession, MessageSession, OffloadDevice, OffloadJob, OffloadPayload, OffloadState, OffloadStatus};
pub use latest::types::{Attribute, MulticastGroup};
use v0_1::backend::exports::airlift::plugin::backend as old;

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

/// The backend export of a fresh instance, whatever its contract.
enum Exports {
    Current(latest::backend::BackendPlugin),
    Old(v0_1::backend::BackendPlugin),
}

fn instantiate(s: &mut Store<CallState>, pre: &BackendPre) -> wasmtime::Result<Exports> {
    Ok(match pre {
        BackendPre::V0_2 { backend, .. } => Exports::Current(backend.instantiate(&mut *s)?),
        BackendPre::V0_1(p) => Exports::Old(p.instantiate(&mut *s)?),
    })
}

/// A 0.1.0 plugin's result in the current types.
fn adapt<A: serde::Serialize, R: serde::de::DeserializeOwned>(r: Result<A, old::BackendError>) -> wasmtime::Result<Result<R, BackendError>> {
    Ok(match r {
        Ok(a) => Ok(same_shape(&a)?),
        Err(e) => Err(same_shape(&e)?),
    })
}

fn no_offload() -> BackendError {
    BackendError::Unsupported("this backend's network runs no sessions itself".into())
}

impl Backend<'_> {
    /// Run `f` with a fresh store, the plugin's entry point and the
    /// instance record; collect what the host saw of the network.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Store<CallState>, &BackendPre, &Instance) -> wasmtime::Result<Result<R, BackendError>> + Send + 'static,
    ) -> Result<Answer<R>, PluginError> {
        let instance = self.instance.clone();
        let (result, lasting_network_failure) = self
            .runtime
            .call_backend(&self.plugin, self.grant.clone(), move |s, pre| {
                let result = f(s, pre, &instance)?;
                Ok((result, s.data_mut().take_lasting_network_failure()))
            })
            .await?;
        Ok(Answer { result, lasting_network_failure })
    }

    pub async fn describe(&self) -> Result<BackendInfo, PluginError> {
        self.runtime
            .call_backend(&self.plugin, self.grant.clone(), |s, pre| match instantiate(s, pre)? {
                Exports::Current(p) => p.airlift_plugin_backend().call_describe(s),
                Exports::Old(p) => same_shape(&p.airlift_plugin_backend().call_describe(s)?),
            })
            .await
    }

    /// The network runs whole sessions itself: a 0.2.0 plugin exports
    /// `offload`; a 0.1.0 one said so in its capabilities.
    pub async fn offloads(&self) -> Result<bool, PluginError> {
        self.runtime
            .call_backend(&self.plugin, self.grant.clone(), |s, pre| match pre {
                BackendPre::V0_2 { offload, .. } => Ok(offload.is_some()),
                BackendPre::V0_1(p) => Ok(p.instantiate(&mut *s)?.airlift_plugin_backend().call_describe(s)?.capabilities.offload),
            })
            .await
    }

    pub async fn validate(&self) -> Result<Answer<()>, PluginError> {
        self.call(|s, pre, inst| match instantiate(s, pre)? {
            Exports::Current(p) => p.airlift_plugin_backend().call_validate(s, inst),
            Exports::Old(p) => adapt(p.airlift_plugin_backend().call_validate(s, &same_shape(inst)?)?),
        })
        .await
    }

    pub async fn create_multicast_group(&self, group: MulticastGroup, devices: Vec<u64>) -> Result<Answer<()>, PluginError> {
        self.call(move |s, pre, inst| match instantiate(s, pre)? {
            Exports::Current(p) => p.airlift_plugin_backend().call_create_multicast_group(s, inst, group, &devices),
            Exports::Old(p) => adapt(p.airlift_plugin_backend().call_create_multicast_group(s, &same_shape(inst)?, same_shape(&group)?, &devices)?),
        })
        .await
    }

    pub async fn delete_multicast_group(&self, group: MulticastGroup) -> Result<Answer<()>, PluginError> {
        self.call(move |s, pre, inst| match instantiate(s, pre)? {
            Exports::Current(p) => p.airlift_plugin_backend().call_delete_multicast_group(s, inst, group),
            Exports::Old(p) => adapt(p.airlift_plugin_backend().call_delete_multicast_group(s, &same_shape(inst)?, same_shape(&group)?)?),
        })
        .await
    }

    pub async fn send_unicast(&self, downlink: UnicastDownlink) -> Result<Answer<SendReceipt>, PluginError> {
        self.call(move |s, pre, inst| match instantiate(s, pre)? {
            Exports::Current(p) => p.airlift_plugin_backend().call_send_unicast(s, inst, &downlink),
            Exports::Old(p) => adapt(p.airlift_plugin_backend().call_send_unicast(s, &same_shape(inst)?, &same_shape(&downlink)?)?),
        })
        .await
    }

    pub async fn send_multicast(&self, downlink: MulticastDownlink) -> Result<Answer<SendReceipt>, PluginError> {
        self.call(move |s, pre, inst| match instantiate(s, pre)? {
            Exports::Current(p) => p.airlift_plugin_backend().call_send_multicast(s, inst, &downlink),
            Exports::Old(p) => adapt(p.airlift_plugin_backend().call_send_multicast(s, &same_shape(inst)?, &same_shape(&downlink)?)?),
        })
        .await
    }

    pub async fn parse_reports(&self, request: IncomingRequest) -> Result<Answer<Vec<Report>>, PluginError> {
        self.call(move |s, pre, inst| match instantiate(s, pre)? {
            Exports::Current(p) => p.airlift_plugin_backend().call_parse_reports(s, inst, &request),
            Exports::Old(p) => {
                let request = old::IncomingRequest {
                    method: request.method,
                    path: request.path,
                    query: request.query,
                    headers: same_shape(&request.headers)?,
                    body: request.body,
                };
                adapt(p.airlift_plugin_backend().call_parse_reports(s, &same_shape(inst)?, &request)?)
            }
        })
        .await
    }

    pub async fn offload_start(&self, job: OffloadJob) -> Result<Answer<String>, PluginError> {
        self.call(move |s, pre, inst| match pre {
            BackendPre::V0_2 { offload: Some(o), .. } => {
                let o = o.instantiate(&mut *s)?;
                o.airlift_plugin_offload().call_start(s, inst, &job)
            }
            BackendPre::V0_2 { offload: None, .. } => Ok(Err(no_offload())),
            BackendPre::V0_1(p) => {
                // 0.1.0 carried either timeout in one field, and the
                // message's FPort beside the file's descriptor.
                let (fport, descriptor, message, session_timeout) = match job.payload {
                    OffloadPayload::File(f) => (0, f.descriptor, false, f.session_timeout_exponent as u32),
                    OffloadPayload::Message(m) => (m.fport, 0, true, m.timeout_minutes),
                };
                let job = old::OffloadJob {
                    name: job.name,
                    devices: job.devices,
                    group: same_shape(&job.group)?,
                    data: job.data,
                    fport,
                    descriptor,
                    message,
                    start_unix_ms: job.start_unix_ms,
                    session_timeout,
                };
                adapt(p.instantiate(&mut *s)?.airlift_plugin_backend().call_offload_start(s, &same_shape(inst)?, &job)?)
            }
        })
        .await
    }

    pub async fn offload_poll(&self, handle: String) -> Result<Answer<OffloadStatus>, PluginError> {
        self.call(move |s, pre, inst| match pre {
            BackendPre::V0_2 { offload: Some(o), .. } => {
                let o = o.instantiate(&mut *s)?;
                o.airlift_plugin_offload().call_poll(s, inst, &handle)
            }
            BackendPre::V0_2 { offload: None, .. } => Ok(Err(no_offload())),
            BackendPre::V0_1(p) => adapt(p.instantiate(&mut *s)?.airlift_plugin_backend().call_offload_poll(s, &same_shape(inst)?, &handle)?),
        })
        .await
    }

    pub async fn offload_cancel(&self, handle: String) -> Result<Answer<()>, PluginError> {
        self.call(move |s, pre, inst| match pre {
            BackendPre::V0_2 { offload: Some(o), .. } => {
                let o = o.instantiate(&mut *s)?;
                o.airlift_plugin_offload().call_cancel(s, inst, &handle)
            }
            BackendPre::V0_2 { offload: None, .. } => Ok(Err(no_offload())),
            BackendPre::V0_1(p) => adapt(p.instantiate(&mut *s)?.airlift_plugin_backend().call_offload_cancel(s, &same_shape(inst)?, &handle)?),
        })
        .await
    }
}
