//! A running host: store, vault, plugin runtime and API put together.

use crate::api::{self, AppState, Auth};
use crate::backend::PluginNetwork;
use crate::engine::{Engine, Runner};
use crate::clock::{Clock, SystemClock};
use crate::keys::Vault;
use crate::plugin::{self, HostServices, PluginRuntime};
use crate::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("keys: {0}")]
    Vault(#[from] crate::keys::VaultError),
    #[error("plugins: {0}")]
    Plugin(#[from] plugin::PluginError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    /// Largest file upload, bytes.
    pub upload_limit: u64,
    /// Load the plugins built with this host (not the test fixtures).
    pub load_bundled: bool,
    /// Tokens to use instead of `AIRLIFT_API_TOKENS` / the data dir's.
    pub auth: Option<Auth>,
    pub clock: Arc<dyn Clock>,
    /// Run campaigns (and resume those left running). Off when something
    /// else drives the engine, like the demo's in-process fleet.
    pub run_campaigns: bool,
    /// How far an uplink's time may be from the host's clock.
    pub uplink_window: crate::api::UplinkWindow,
    /// Requests a second each API token may make (None: no limit).
    pub rate_limit_per_token: Option<std::num::NonZeroU32>,
    /// Serve `/metrics` without a token.
    pub metrics_public: bool,
    /// An RMC core: campaigns run on agents through this, none here.
    pub remote: Option<Arc<crate::distributed::rmc_core::Core>>,
}

impl ServerConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            bind: SocketAddr::from(([127, 0, 0, 1], 8740)),
            upload_limit: 16 * 1024 * 1024,
            load_bundled: true,
            auth: None,
            clock: Arc::new(SystemClock),
            run_campaigns: true,
            uplink_window: Default::default(),
            rate_limit_per_token: None,
            metrics_public: false,
            remote: None,
        }
    }
}

/// A host serving its API; dropped, it stops serving.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.runner.shutdown();
        self.task.abort();
    }
}

impl Server {
    pub async fn start(config: ServerConfig) -> Result<Self, StartError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let store = Store::open(&config.data_dir)?;
        let vault = Arc::new(Vault::open(&config.data_dir)?);
        let auth = match config.auth {
            Some(a) => a,
            None => Auth::load(&config.data_dir)?,
        };
        let host = Arc::new(HostServices::new(store.clone(), vault.clone(), config.clock.clone()));
        let runtime = Arc::new(PluginRuntime::new(config.data_dir.join("compiled"), host)?);
        let (rt, st) = (runtime.clone(), store.clone());
        tokio::task::spawn_blocking(move || -> Result<(), StartError> {
            let restored = plugin::restore(&rt, &st)?;
            if config.load_bundled {
                install_bundled(&rt, &st, &restored)?;
            }
            crate::blob_gc::collect(&st)?;
            Ok(())
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;

        // Counters count from the first server on (one recorder per process).
        crate::metrics::recorder();
        let network = Arc::new(PluginNetwork::new(store.clone(), runtime.clone()));
        let engine = Arc::new(Engine::new(store.clone(), runtime.clone(), config.clock.clone(), network));
        let runner = Arc::new(Runner::new(engine));
        if config.run_campaigns && config.remote.is_none() {
            runner.resume_all().map_err(|e| std::io::Error::other(format!("resuming campaigns: {e}")))?;
        }
        let state = AppState { store, vault, runtime, auth: Arc::new(auth), clock: config.clock, upload_limit: config.upload_limit, runner,
            uplink_window: config.uplink_window,
            rate_limit: config.rate_limit_per_token.map(|n| Arc::new(crate::api::TokenRateLimit::new(n))),
            metrics_public: config.metrics_public,
            openapi: Default::default(),
            console: Default::default(),
            remote: config.remote.clone(),
        };
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let app = api::router(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "API server stopped");
            }
        });
        tracing::info!(%addr, "Airlift API listening");
        Ok(Self { addr, state, task })
    }

    /// Stop serving and release the store (its lock included).
    pub async fn stop(mut self) {
        self.state.runner.shutdown();
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Serve until the task ends (ctrl-c handling is the caller's).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Install bundled plugins whose content differs from what is active.
fn install_bundled(runtime: &PluginRuntime, store: &Store, restored: &[Arc<plugin::Plugin>]) -> Result<(), StartError> {
    for bundled in plugin::bundled::bundled_plugins()?.into_iter().filter(|b| !b.fixture) {
        let wasm = bundled.wasm();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&wasm));
        if restored.iter().any(|p| p.sha256 == sha) {
            continue;
        }
        plugin::install(runtime, store, bundled.manifest, wasm)?;
    }
    Ok(())
}
