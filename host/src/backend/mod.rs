//! Networks reached through backend plugins.
//!
//! - [`PluginNetwork`]: the engine's [`Network`] over a campaign's backend
//!   instance and the newest active version of its plugin (so a plugin swap
//!   or an instance switch takes effect on the next call).
//! - [`bind`]: a backend instance with its plugin, for any call; the API
//!   uses it for the uplinks networks post to `/backends/{id}/uplink`.

use crate::engine::context::multicast_group;
use crate::engine::{Network, NetworkError, OffloadDevice, OffloadJob, OffloadState, OffloadStatus, Pacing};
use crate::model::{BackendInstance, Eui, MulticastEncryption, MulticastGroup, PluginKind};
use crate::plugin::bindings::backend::exports::airlift::plugin::backend as wit;
use crate::plugin::{BackendGrant, HostAllowList, Plugin, PluginError, PluginRuntime};
use crate::store::Store;
use std::sync::Arc;

/// What a call needs: the plugin, the instance as the plugin sees it, and
/// the grant the host checks its outbound requests and secrets against.
pub struct Bound {
    pub plugin: Arc<Plugin>,
    pub instance: wit::Instance,
    pub grant: Arc<BackendGrant>,
}

/// Find a backend instance and its plugin.
pub fn bind(store: &Store, runtime: &PluginRuntime, instance_id: &str) -> Result<Bound, NetworkError> {
    let inst = match store.get::<BackendInstance>(instance_id) {
        Ok(Some(i)) if !i.archived => i,
        Ok(_) => return Err(NetworkError::Refused(format!("backend instance '{instance_id}' not found"))),
        Err(e) => return Err(NetworkError::Unavailable(e.to_string())),
    };
    bind_instance(runtime, inst)
}

/// A backend instance (stored or not) with its plugin.
fn bind_instance(runtime: &PluginRuntime, inst: BackendInstance) -> Result<Bound, NetworkError> {
    let instance_id = &inst.id;
    let plugin = runtime.active(&inst.plugin).map_err(|e| NetworkError::Refused(format!("backend instance '{instance_id}': {e}")))?;
    if plugin.manifest.kind != PluginKind::Backend {
        return Err(NetworkError::Refused(format!("plugin '{}' is not a backend", inst.plugin)));
    }
    let allowed_hosts = HostAllowList::parse(&inst.allowed_hosts).map_err(NetworkError::Refused)?;
    let instance = wit::Instance {
        id: inst.id.clone(),
        settings: inst.settings.iter().map(|(k, v)| crate::plugin::bindings::types::Attribute { key: k.clone(), value: v.clone() }).collect(),
        secret_names: inst.secrets.keys().cloned().collect(),
    };
    let grant = Arc::new(BackendGrant { instance_id: inst.id, allowed_hosts, secrets: inst.secrets, transport: inst.transport });
    Ok(Bound { plugin, instance, grant })
}

/// Why an instance cannot be stored: its plugin is not loaded, is not a
/// backend, or its `validate` finds the settings wrong.
pub async fn validate(runtime: &PluginRuntime, inst: BackendInstance) -> Result<(), String> {
    let plugin_name = inst.plugin.clone();
    let Bound { plugin, instance, grant } = bind_instance(runtime, inst).map_err(|_| format!("plugin '{plugin_name}' is not a loaded backend plugin"))?;
    match runtime.call_backend(&plugin, grant, move |s, p| p.airlift_plugin_backend().call_validate(s, &instance)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(network_error(e).to_string()),
        Err(e) => Err(format!("the plugin could not check the settings: {e}")),
    }
}

/// A backend's own error as the engine sees it: only unavailability is
/// worth retrying; a wrong configuration (`invalid`: a bad setting, a 404 on
/// an endpoint the backend needs) fails the campaign at once.
pub fn network_error(e: wit::BackendError) -> NetworkError {
    match e {
        wit::BackendError::Unavailable(m) => NetworkError::Unavailable(m),
        wit::BackendError::Unauthorized(m) => NetworkError::Unauthorized(format!("unauthorized: {m}")),
        wit::BackendError::Rejected(m) => NetworkError::Refused(format!("rejected: {m}")),
        wit::BackendError::Unsupported(m) => NetworkError::Refused(format!("unsupported: {m}")),
        wit::BackendError::Invalid(m) => NetworkError::Misconfigured(m),
    }
}

/// A plugin that trapped or timed out may do better after a swap or later.
fn plugin_error(e: PluginError) -> NetworkError {
    NetworkError::Unavailable(format!("backend plugin: {e}"))
}

pub struct PluginNetwork {
    store: Store,
    runtime: Arc<PluginRuntime>,
}

impl PluginNetwork {
    pub fn new(store: Store, runtime: Arc<PluginRuntime>) -> Self {
        Self { store, runtime }
    }

    /// Call the instance's plugin with the instance record.
    async fn call<R: Send + 'static>(
        &self,
        backend: &str,
        f: impl FnOnce(&mut wasmtime::Store<crate::plugin::CallState>, &crate::plugin::bindings::backend::BackendPlugin, &wit::Instance) -> wasmtime::Result<Result<R, wit::BackendError>> + Send + 'static,
    ) -> Result<R, NetworkError> {
        self.call_bound(bind(&self.store, &self.runtime, backend)?, f).await
    }

    async fn call_bound<R: Send + 'static>(
        &self,
        bound: Bound,
        f: impl FnOnce(&mut wasmtime::Store<crate::plugin::CallState>, &crate::plugin::bindings::backend::BackendPlugin, &wit::Instance) -> wasmtime::Result<Result<R, wit::BackendError>> + Send + 'static,
    ) -> Result<R, NetworkError> {
        let Bound { plugin, instance, grant } = bound;
        let outcome = self
            .runtime
            .call_backend(&plugin, grant, move |s, p| {
                let result = f(s, p, &instance)?;
                Ok((result, s.data_mut().take_lasting_network_failure()))
            })
            .await
            .map_err(plugin_error)?;
        match outcome {
            (Ok(r), _) => Ok(r),
            // Whatever the plugin calls it, the host knows it will not heal.
            (Err(_), Some(why)) => Err(NetworkError::Misconfigured(why)),
            (Err(e), None) => Err(network_error(e)),
        }
    }
}

impl Network for PluginNetwork {
    async fn pacing(&self, backend: &str) -> Result<Pacing, NetworkError> {
        let info = self.call(backend, |s, p, _| p.airlift_plugin_backend().call_describe(s).map(Ok)).await?;
        Ok(Pacing { multicast_interval_ms: info.capabilities.multicast_interval_ms as u64, unicast_interval_ms: info.capabilities.unicast_interval_ms as u64 })
    }

    async fn create_group(&self, backend: &str, group: &MulticastGroup, devices: &[Eui], next_fcnt: u32) -> Result<(), NetworkError> {
        let group = wit::MulticastGroup { min_fcnt: next_fcnt, ..multicast_group(group) };
        let devices = devices.iter().map(|d| d.0).collect::<Vec<_>>();
        self.call(backend, move |s, p, inst| p.airlift_plugin_backend().call_create_multicast_group(s, inst, group, &devices)).await
    }

    async fn send_unicast(&self, backend: &str, dev_eui: Eui, fport: u8, payload: Vec<u8>) -> Result<(), NetworkError> {
        // The engine has one request outstanding per device: a new one
        // replaces any unanswered copy still queued on the network.
        let downlink = wit::UnicastDownlink { dev_eui: dev_eui.0, fport, payload, confirmed: false, flush_queue: true, correlation_id: String::new() };
        self.call(backend, move |s, p, inst| p.airlift_plugin_backend().call_send_unicast(s, inst, &downlink)).await.map(drop)
    }

    async fn send_multicast(&self, backend: &str, group: &MulticastGroup, fcnt: u32, fport: u8, payload: Vec<u8>) -> Result<Option<u32>, NetworkError> {
        let bound = bind(&self.store, &self.runtime, backend)?;
        let payload = match bound.plugin.manifest.multicast_encryption {
            MulticastEncryption::Network => payload,
            MulticastEncryption::Host => {
                crate::keys::multicast::encrypt_payload(group, &self.runtime.host().vault, fcnt, &payload).map_err(|e| NetworkError::Misconfigured(e.to_string()))?
            }
        };
        let downlink = wit::MulticastDownlink { group: multicast_group(group), fport, payload, fcnt, correlation_id: String::new() };
        let receipt = self.call_bound(bound, move |s, p, inst| p.airlift_plugin_backend().call_send_multicast(s, inst, &downlink)).await?;
        Ok(receipt.fcnt)
    }

    async fn offloads(&self, backend: &str) -> Result<bool, NetworkError> {
        let info = self.call(backend, |s, p, _| p.airlift_plugin_backend().call_describe(s).map(Ok)).await?;
        Ok(info.capabilities.offload)
    }

    async fn offload_start(&self, backend: &str, job: OffloadJob) -> Result<String, NetworkError> {
        let job = wit::OffloadJob {
            name: job.name,
            devices: job.devices.iter().map(|d| d.0).collect(),
            group: multicast_group(&job.group),
            data: job.data,
            fport: job.message_port.unwrap_or(0),
            descriptor: job.descriptor,
            message: job.message_port.is_some(),
            start_unix_ms: job.start_unix_ms,
            session_timeout: job.session_timeout,
        };
        self.call(backend, move |s, p, inst| p.airlift_plugin_backend().call_offload_start(s, inst, &job)).await
    }

    async fn offload_poll(&self, backend: &str, handle: &str) -> Result<OffloadStatus, NetworkError> {
        let handle = handle.to_string();
        let status = self.call(backend, move |s, p, inst| p.airlift_plugin_backend().call_offload_poll(s, inst, &handle)).await?;
        Ok(OffloadStatus {
            finished: status.finished,
            devices: status
                .devices
                .into_iter()
                .map(|d| OffloadDevice {
                    dev_eui: Eui(d.dev_eui),
                    percent: d.percent.clamp(0.0, 100.0),
                    state: match d.state {
                        wit::OffloadState::Pending => OffloadState::Pending,
                        wit::OffloadState::Running => OffloadState::Running,
                        wit::OffloadState::Succeeded => OffloadState::Succeeded,
                        wit::OffloadState::Failed => OffloadState::Failed,
                    },
                    error: d.error,
                })
                .collect(),
        })
    }

    async fn offload_cancel(&self, backend: &str, handle: &str) -> Result<(), NetworkError> {
        let handle = handle.to_string();
        self.call(backend, move |s, p, inst| p.airlift_plugin_backend().call_offload_cancel(s, inst, &handle)).await
    }

    async fn end_session(&self, backend: &str, group: &MulticastGroup) {
        let g = multicast_group(group);
        if let Err(e) = self.call(backend, move |s, p, inst| p.airlift_plugin_backend().call_delete_multicast_group(s, inst, g)).await {
            tracing::warn!(group = %group.dev_eui, error = %e, "multicast group not deleted on the network");
        }
    }
}
