//! The plugin SDK's native half. `airlift-plugin-sdk` is what a plugin is
//! built on (for `wasm32-wasip2`); this crate is what its tests run on,
//! natively: [`Harness`] builds the project's component, loads it into an
//! Airlift host in the test's process and runs a campaign on the simulated
//! fleet in virtual time. It names, in one place, what such a test needs
//! from the simulator and the host.
//!
//! ```no_run
//! use airlift_plugin_harness::{Behaviour, Harness, Stack};
//!
//! #[tokio::test]
//! async fn the_fleet_gets_the_file() {
//!     let outcome = Harness::device_library(env!("CARGO_MANIFEST_DIR"))
//!         .fleet(|c| {
//!             c.behaviours = vec![Behaviour::Normal; 30];
//!             c.fleet.loss = 0.1;
//!             c.fleet.stacks = vec![Stack::LoRaMacNode, Stack::BasicsModem];
//!         })
//!         .run()
//!         .await
//!         .unwrap();
//!     assert!(outcome.every_device_holds_the_file(), "{:?}", outcome.failures());
//! }
//! ```

pub use airlift::model::{CampaignType, SessionClass};
pub use airlift_sim::fleet::Behaviour;
pub use airlift_sim::harness::{DeviceOutcome, Harness, HarnessError, Outcome};
pub use airlift_sim::scenario::ScenarioConfig;
pub use airlift_sim::{PackageVersion, Stack};
