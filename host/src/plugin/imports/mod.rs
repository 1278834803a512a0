//! The host imports plugins call, one module per WIT interface, each with
//! its own policy (Spin's "factor" idea): [`log`], [`clock`], [`keys`],
//! [`http`], [`payload`]. Host functions return `wasmtime::Result<Result<T, E>>`: the
//! outer error kills the call, the inner one is an ordinary error the
//! plugin sees.

mod clock;
mod http;
mod keys;
mod log;
mod payload;
pub mod tls;
mod since_v0_1;

use super::bindings::{latest, v0_1};
use super::runtime::CallState;
use super::HostAllowList;
use crate::clock::Clock;
use crate::keys::{Sealed, Vault};
use crate::store::Store;
use crate::model::Transport;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use wasmtime::component::{HasSelf, Linker};

/// What host imports reach: the store (devices, groups, keys), the vault,
/// the clock and HTTP clients.
pub struct HostServices {
    pub store: Store,
    pub vault: Arc<Vault>,
    pub clock: Arc<dyn Clock>,
    /// One client per backend instance, built for its transport settings
    /// (rebuilt when they change). The lock is held only to look one up.
    http_clients: Mutex<HashMap<String, (Transport, reqwest::Client)>>,
    runtime: tokio::runtime::Handle,
}

impl HostServices {
    /// Must be called inside a tokio runtime; HTTP imports run on it.
    pub fn new(store: Store, vault: Arc<Vault>, clock: Arc<dyn Clock>) -> Self {
        Self { store, vault, clock, http_clients: Mutex::default(), runtime: tokio::runtime::Handle::current() }
    }

    /// The HTTP client for an instance's transport settings.
    fn http_client(&self, instance_id: &str, transport: &Transport) -> Result<reqwest::Client, String> {
        let mut clients = self.http_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built_for, client)) = clients.get(instance_id) {
            if built_for == transport {
                return Ok(client.clone());
            }
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .use_preconfigured_tls(tls::client_config(transport)?)
            .dns_resolver(Arc::new(tls::Resolver));
        for (name, addr) in &transport.resolve {
            builder = builder.resolve(name, *addr);
        }
        let client = builder
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        clients.insert(instance_id.to_string(), (transport.clone(), client.clone()));
        Ok(client)
    }
}

/// What a backend instance grants the plugin serving it: hosts it may reach
/// and the secrets the host substitutes for it.
#[derive(Default)]
pub struct BackendGrant {
    pub instance_id: String,
    pub allowed_hosts: HostAllowList,
    pub transport: Transport,
    pub secrets: BTreeMap<String, Sealed>,
}

impl CallState {
    /// Whether a running campaign run meets `test`: the grants of keys and
    /// payloads are scoped to what the caller's campaigns use.
    fn any_running_run(&self, test: impl Fn(&crate::engine::CampaignRun) -> bool) -> Result<bool, crate::store::StoreError> {
        let store = &self.host.store;
        Ok(store
            .running_campaigns()?
            .iter()
            .filter_map(|id| store.get::<crate::engine::CampaignRun>(id).ok().flatten())
            .any(|r| r.status == crate::engine::RunStatus::Running && test(&r)))
    }
}

impl latest::types::Host for CallState {}
impl latest::imports::airlift::plugin::backend_types::Host for CallState {}

/// Every contract version's imports: a plugin links against the ones of
/// the version it was built for.
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    latest::imports::HostImports::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)?;
    v0_1::imports::HostImports::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
}
