//! The host imports plugins call, one module per WIT interface, each with
//! its own policy (Spin's "factor" idea): [`log`], [`clock`], [`keys`],
//! [`http`]. Host functions return `wasmtime::Result<Result<T, E>>`: the
//! outer error kills the call, the inner one is an ordinary error the
//! plugin sees.

mod clock;
mod http;
mod keys;
mod log;

use super::bindings::imports::HostImports;
use super::runtime::CallState;
use super::HostAllowList;
use crate::clock::Clock;
use crate::keys::{Sealed, Vault};
use crate::store::Store;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

/// What host imports reach: the store (devices, groups, keys), the vault,
/// the clock and an HTTP client.
pub struct HostServices {
    pub store: Store,
    pub vault: Arc<Vault>,
    pub clock: Arc<dyn Clock>,
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HostServices {
    /// Must be called inside a tokio runtime; HTTP imports run on it.
    pub fn new(store: Store, vault: Arc<Vault>, clock: Arc<dyn Clock>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client configuration is static");
        Self { store, vault, clock, http, runtime: tokio::runtime::Handle::current() }
    }
}

/// What a backend instance grants the plugin serving it: hosts it may reach
/// and the secrets the host substitutes for it.
pub struct BackendGrant {
    pub instance_id: String,
    pub allowed_hosts: HostAllowList,
    pub secrets: BTreeMap<String, Sealed>,
}

impl super::bindings::types::Host for CallState {}

pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    HostImports::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
}
