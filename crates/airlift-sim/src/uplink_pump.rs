//! How a network peer hands the fleet's uplinks to the host: one request per
//! uplink, each posted again until the host takes it, in order. The fleet
//! learns which answers the host acknowledged. Used by the peers whose real
//! service posts one report per uplink (ThingPark, ChirpStack).

use crate::fleet::SimFleet;
use airlift::model::Eui;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often due uplinks are collected and posted (real time).
const PUMP_INTERVAL: Duration = Duration::from_millis(5);

/// An uplink waiting for the host.
#[derive(Debug, Clone)]
pub struct PendingUplink {
    pub dev_eui: Eui,
    pub fport: u8,
    pub payload: Vec<u8>,
    /// When the network received it (fleet time).
    pub received_ms: u64,
    /// The device's uplink frame counter.
    pub fcnt: u32,
}

/// The devices a network hears; None: all of the fleet.
pub type Coverage = Arc<Mutex<Option<BTreeSet<Eui>>>>;

/// Post the fleet's uplinks from the devices `coverage` names to the URL
/// in `url` (nothing while it is None), each as the request `request`
/// builds.
pub async fn post_each(
    fleet: Arc<SimFleet>,
    url: Arc<Mutex<Option<String>>>,
    coverage: Coverage,
    request: impl Fn(&reqwest::Client, &str, &PendingUplink) -> reqwest::RequestBuilder,
) {
    let http = reqwest::Client::new();
    let mut pending: Vec<PendingUplink> = Vec::new();
    let mut fcnt_up: HashMap<Eui, u32> = HashMap::new();
    loop {
        tokio::time::sleep(PUMP_INTERVAL).await;
        // Uplinks stay with the fleet until there is a host to post them to.
        let Some(url) = url.lock().unwrap().clone() else { continue };
        let now = fleet.now_unix_ms();
        let heard = coverage.lock().unwrap().clone();
        for (dev_eui, fport, payload) in fleet.take_due_uplinks_heard_by(|d| heard.as_ref().is_none_or(|h| h.contains(&d))) {
            let fcnt = *fcnt_up.entry(dev_eui).and_modify(|f| *f += 1).or_insert(0);
            pending.push(PendingUplink { dev_eui, fport, payload, received_ms: now, fcnt });
        }
        while let Some(up) = pending.first() {
            match request(&http, &url, up).send().await {
                Ok(r) if r.status().is_success() => {
                    fleet.acknowledge(up.dev_eui, up.fport, &up.payload);
                    pending.remove(0);
                }
                // Posted again on the next round, unchanged.
                _ => break,
            }
        }
    }
}
