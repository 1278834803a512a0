//! A simulated network server with its fleet in this process, and the
//! host's objects for it provisioned in a data directory.

use airlift::api::Auth;
use airlift::clock::Clock;
use airlift::keys::Vault;
use airlift::model::BackendInstanceInput;
use airlift::server::{Server, ServerConfig};
use airlift::sim::fleet::{Provisioned, SimFleet};
use airlift::sim::lns::SimLns;
use airlift::sim::scenario::{provision_objects, Objects, ScenarioConfig};
use std::path::Path;
use std::sync::Arc;

pub struct SimSetup {
    pub lns: SimLns,
    pub objects: Objects,
    pub devices: Vec<Provisioned>,
}

impl SimSetup {
    /// Start the network server and provision the host's objects in
    /// `data_dir` through an in-process host (it installs the bundled
    /// plugins), which then lets go of the store. The backend instance
    /// holds `instance_token`; the network expects `config`'s fleet token.
    pub async fn provision(data_dir: &Path, clock: Arc<dyn Clock>, config: &ScenarioConfig, instance_token: &str) -> anyhow::Result<Self> {
        let vault = Arc::new(Vault::open(data_dir)?);
        let (fleet, devices) = SimFleet::new(config.fleet.clone(), clock.clone(), vault.clone(), config.first_eui, &config.behaviours);
        let lns = SimLns::start(Arc::new(fleet), "127.0.0.1:0".parse()?, NETWORK_TOKEN).await?;
        let backend = BackendInstanceInput {
            name: "simulated network server".into(),
            plugin: "simulated".into(),
            settings: [("url".to_string(), lns.url())].into(),
            secrets: [("token".to_string(), instance_token.to_string())].into(),
            allowed_hosts: vec![lns.url()],
        };
        let mut setup = ServerConfig::new(data_dir.to_path_buf());
        setup.bind = "127.0.0.1:0".parse()?;
        setup.run_campaigns = false;
        setup.auth = Some(Auth::default());
        let server = Server::start(setup).await?;
        let objects = provision_objects(&server.state.store, &vault, clock.now_unix_ms(), config, &devices, backend)?;
        server.state.store.flush()?;
        server.stop().await;
        Ok(Self { lns, objects, devices })
    }
}

/// The token the simulated network server expects.
pub const NETWORK_TOKEN: &str = "sim-network-token";
