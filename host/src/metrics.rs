//! Prometheus metrics, served at `/metrics`. Counters and histograms are
//! recorded where things happen, through the `metrics` facade into one
//! process-wide Prometheus recorder; the gauges (campaigns by status,
//! devices by state, store size) are read from this host's store when
//! scraped.
//!
//! Families:
//! - `airlift_campaigns{status}`, `airlift_campaign_devices{state}` (running
//!   campaigns' devices: waiting, answered, failed, succeeded),
//!   `airlift_store_bytes`;
//! - `airlift_uplinks_total{backend_instance,result}`,
//!   `airlift_downlinks_total{backend_instance,kind,result}`,
//!   `airlift_network_errors_total{backend_instance,error}`;
//! - `airlift_plugin_calls_total{plugin,outcome}` (ok, trap, timeout,
//!   out_of_memory), `airlift_plugin_call_seconds{plugin}`,
//!   `airlift_plugin_fuel_used{plugin}` (wasm instructions metered);
//! - `airlift_engine_step_seconds`.

use crate::engine::{run, CampaignRun, RunStatus};
use crate::model::{Campaign, CampaignStatus};
use crate::store::{Store, StoreError};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::OnceLock;

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// Uplinks taken and downlinks sent by this process, for the RMC metrics
/// message (`uplinksAbs`, `downlinksAbs`), which needs the totals the
/// Prometheus counters keep per label.
pub static UPLINKS_TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static DOWNLINKS_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Latency buckets in seconds: plugin calls and engine steps take from
/// tens of microseconds to seconds (a backend waiting on its network).
const SECONDS_BUCKETS: &[f64] = &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];
const FUEL_BUCKETS: &[f64] = &[1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Install the recorder (once per process) and return its handle.
pub fn recorder() -> &'static PrometheusHandle {
    RECORDER.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("airlift_plugin_fuel_used".into()), FUEL_BUCKETS))
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder installed first (an embedding program's) keeps
        // its place; ours then renders what it saw.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The text a scrape gets: this host's gauges, then the process's
/// counters and histograms.
pub fn render(store: &Store) -> Result<String, StoreError> {
    let mut out = String::new();
    let mut campaigns: BTreeMap<&'static str, u64> = [CampaignStatus::Configured, CampaignStatus::Running, CampaignStatus::Succeeded, CampaignStatus::Failed, CampaignStatus::Stopped]
        .into_iter()
        .map(|s| (status_name(s), 0))
        .collect();
    for c in store.list::<Campaign>(false)? {
        *campaigns.entry(status_name(c.status)).or_default() += 1;
    }
    gauge(&mut out, "airlift_campaigns", "Campaigns by status.", "status", &campaigns);
    let mut devices: BTreeMap<&'static str, u64> = ["waiting", "answered", "failed", "succeeded"].into_iter().map(|s| (s, 0)).collect();
    for id in store.running_campaigns()? {
        let Some(r) = store.get::<CampaignRun>(&id)?.filter(|r| r.status == RunStatus::Running) else { continue };
        for d in run::DeviceRun::all_of(store, &r)? {
            let state = match (d.succeeded, d.failed.is_some(), d.answered) {
                (true, _, _) => "succeeded",
                (_, true, _) => "failed",
                (_, _, true) => "answered",
                _ => "waiting",
            };
            *devices.entry(state).or_default() += 1;
        }
    }
    gauge(&mut out, "airlift_campaign_devices", "Devices of running campaigns by their state in the current stage.", "state", &devices);
    let _ = writeln!(out, "# HELP airlift_store_bytes Size of the store on disk.\n# TYPE airlift_store_bytes gauge\nairlift_store_bytes {}", store.size_on_disk()?);
    out.push_str(&recorder().render());
    Ok(out)
}

fn status_name(s: CampaignStatus) -> &'static str {
    match s {
        CampaignStatus::Configured => "CONFIGURED",
        CampaignStatus::Running => "RUNNING",
        CampaignStatus::Succeeded => "SUCCEEDED",
        CampaignStatus::Failed => "FAILED",
        CampaignStatus::Stopped => "STOPPED",
    }
}

fn gauge(out: &mut String, name: &str, help: &str, label: &str, values: &BTreeMap<&'static str, u64>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (value, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
    }
}
