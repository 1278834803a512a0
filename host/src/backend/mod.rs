//! Networks reached through backend plugins.
//!
//! - [`PluginNetwork`]: the engine's [`Network`] over a campaign's backend
//!   instance and the newest active version of its plugin (so a plugin swap
//!   or an instance switch takes effect on the next call).
//! - [`bind`]: a backend instance with its plugin, for any call; the API
//!   uses it for the uplinks networks post to `/backends/{id}/uplink`.

use crate::engine::context::multicast_group;
use crate::engine::{Capabilities, Network, NetworkError, OffloadDevice, OffloadJob, OffloadPayload, OffloadState, OffloadStatus, Pacing};
use crate::model::{BackendInstance, Eui, MulticastEncryption, MulticastGroup, PluginKind};
use crate::plugin::backend::{self as wit, Answer, Backend};
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

impl Bound {
    /// The plugin, ready to call for this instance.
    pub fn on(self, runtime: &PluginRuntime) -> Backend<'_> {
        runtime.backend(&self.plugin, self.grant, self.instance)
    }
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
        settings: inst.settings.iter().map(|(k, v)| wit::Attribute { key: k.clone(), value: v.clone() }).collect(),
        secret_names: inst.secrets.keys().cloned().collect(),
    };
    let grant = Arc::new(BackendGrant { instance_id: inst.id, allowed_hosts, secrets: inst.secrets, transport: inst.transport });
    Ok(Bound { plugin, instance, grant })
}

/// Why an instance cannot be stored: its plugin is not loaded, is not a
/// backend, or its `validate` finds the settings wrong.
pub async fn validate(runtime: &PluginRuntime, inst: BackendInstance) -> Result<(), String> {
    let plugin_name = inst.plugin.clone();
    let bound = bind_instance(runtime, inst).map_err(|_| format!("plugin '{plugin_name}' is not a loaded backend plugin"))?;
    match bound.on(runtime).validate().await {
        Ok(Answer { result: Ok(()), .. }) => Ok(()),
        Ok(Answer { result: Err(e), .. }) => Err(network_error(e).to_string()),
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

/// A backend call's outcome as the engine sees it. A plugin that trapped
/// or timed out may do better after a swap or later; a failure the host
/// knows will not heal is the operator's, whatever the plugin calls it.
pub fn outcome<R>(answer: Result<Answer<R>, PluginError>) -> Result<R, NetworkError> {
    match answer.map_err(plugin_error)? {
        Answer { result: Ok(r), .. } => Ok(r),
        Answer { result: Err(_), lasting_network_failure: Some(why) } => Err(NetworkError::Misconfigured(why)),
        Answer { result: Err(e), lasting_network_failure: None } => Err(network_error(e)),
    }
}

/// A downlink in the metrics, and the network's error if it failed.
pub fn record_downlink<R>(backend: &str, kind: &'static str, sent: &Result<R, NetworkError>) {
    let result = if sent.is_ok() { "sent" } else { "failed" };
    if sent.is_ok() {
        crate::metrics::DOWNLINKS_SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    metrics::counter!("airlift_downlinks_total", "backend_instance" => backend.to_string(), "kind" => kind, "result" => result).increment(1);
    if let Err(e) = sent {
        let error = match e {
            NetworkError::Unavailable(_) => "unavailable",
            NetworkError::Refused(_) => "refused",
            NetworkError::Unauthorized(_) => "unauthorized",
            NetworkError::Misconfigured(_) => "misconfigured",
        };
        metrics::counter!("airlift_network_errors_total", "backend_instance" => backend.to_string(), "error" => error).increment(1);
    }
}

pub struct PluginNetwork {
    store: Store,
    runtime: Arc<PluginRuntime>,
}

impl PluginNetwork {
    pub fn new(store: Store, runtime: Arc<PluginRuntime>) -> Self {
        Self { store, runtime }
    }

    /// The plugin of the backend instance, ready to call.
    fn backend(&self, backend: &str) -> Result<Backend<'_>, NetworkError> {
        Ok(bind(&self.store, &self.runtime, backend)?.on(&self.runtime))
    }

    async fn declared(&self, backend: &str) -> Result<wit::Capabilities, NetworkError> {
        let info = self.backend(backend)?.describe().await.map_err(plugin_error)?;
        Ok(info.capabilities)
    }
}

impl Network for PluginNetwork {
    async fn pacing(&self, backend: &str) -> Result<Pacing, NetworkError> {
        let c = self.declared(backend).await?;
        Ok(Pacing { multicast_interval_ms: c.multicast_interval_ms as u64, unicast_interval_ms: c.unicast_interval_ms as u64 })
    }

    async fn capabilities(&self, backend: &str) -> Result<Capabilities, NetworkError> {
        let c = self.declared(backend).await?;
        Ok(Capabilities { unicast: c.unicast, multicast_class_b: c.multicast_class_b, multicast_class_c: c.multicast_class_c })
    }

    async fn create_group(&self, backend: &str, group: &MulticastGroup, devices: &[Eui], next_fcnt: u32) -> Result<(), NetworkError> {
        let group = wit::MulticastGroup { min_fcnt: next_fcnt, ..multicast_group(group) };
        let devices = devices.iter().map(|d| d.0).collect::<Vec<_>>();
        outcome(self.backend(backend)?.create_multicast_group(group, devices).await)
    }

    async fn send_unicast(&self, backend: &str, dev_eui: Eui, fport: u8, payload: Vec<u8>) -> Result<(), NetworkError> {
        // The engine has one request outstanding per device: a new one
        // replaces any unanswered copy still queued on the network.
        let downlink = wit::UnicastDownlink { dev_eui: dev_eui.0, fport, payload, confirmed: false, flush_queue: true, correlation_id: String::new() };
        let sent = outcome(self.backend(backend)?.send_unicast(downlink).await).map(drop);
        record_downlink(backend, "unicast", &sent);
        sent
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
        let sent = outcome(bound.on(&self.runtime).send_multicast(downlink).await).map(|receipt| receipt.fcnt);
        record_downlink(backend, "multicast", &sent);
        sent
    }

    async fn offloads(&self, backend: &str) -> Result<bool, NetworkError> {
        self.backend(backend)?.offloads().await.map_err(plugin_error)
    }

    async fn offload_start(&self, backend: &str, job: OffloadJob) -> Result<String, NetworkError> {
        let job = wit::OffloadJob {
            name: job.name,
            devices: job.devices.iter().map(|d| d.0).collect(),
            group: multicast_group(&job.group),
            data: job.data,
            scheduled_unix_ms: job.scheduled_unix_ms,
            setup_seconds: job.setup_seconds,
            start_unix_ms: job.start_unix_ms,
            payload: match job.payload {
                OffloadPayload::File { descriptor, session_timeout_exponent } => wit::OffloadPayload::File(wit::FileSession { descriptor, session_timeout_exponent }),
                OffloadPayload::Message { fport, timeout_minutes } => wit::OffloadPayload::Message(wit::MessageSession { fport, timeout_minutes }),
            },
        };
        outcome(self.backend(backend)?.offload_start(job).await)
    }

    async fn offload_poll(&self, backend: &str, handle: &str) -> Result<OffloadStatus, NetworkError> {
        let status = outcome(self.backend(backend)?.offload_poll(handle.to_string()).await)?;
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
        outcome(self.backend(backend)?.offload_cancel(handle.to_string()).await)
    }

    async fn end_session(&self, backend: &str, group: &MulticastGroup) {
        let deleted = match self.backend(backend) {
            Ok(b) => outcome(b.delete_multicast_group(multicast_group(group)).await),
            Err(e) => Err(e),
        };
        if let Err(e) = deleted {
            tracing::warn!(group = %group.dev_eui, error = %e, "multicast group not deleted on the network");
        }
    }
}
