//! Progress in the shape of the RMC Agent's progress messages (seed
//! `002_…`): campaign, current stage, and per-device state.

use super::run::{CampaignRun, DeviceRun, RunStatus, StageMode};
use serde_json::{json, Value};

/// Message format version, as in the RMC.AGENT topic name.
pub const FORMAT_VERSION: &str = "0.2.3";

fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

fn campaign_status(run: &CampaignRun) -> &'static str {
    match run.status {
        RunStatus::Running | RunStatus::Stopping => "RUNNING",
        RunStatus::Stopped => "STOPPED",
        RunStatus::Failed => "ERROR",
        RunStatus::Succeeded => "COMPLETED",
    }
}

/// Completed vs total operations of the current stage.
pub fn stage_operations(run: &CampaignRun, devices: &[DeviceRun]) -> (u64, u64) {
    match run.current().map(|s| s.mode) {
        Some(StageMode::Fragments) => (run.fragments_sent as u64, run.fragments_target.max(run.fragments_sent) as u64),
        Some(StageMode::Multicast) => {
            let active: Vec<_> = devices.iter().filter(|d| d.active()).collect();
            (active.iter().filter(|d| d.holds_file || d.answered).count() as u64, active.len() as u64)
        }
        Some(_) => {
            let active: Vec<_> = devices.iter().filter(|d| d.active()).collect();
            (active.iter().filter(|d| d.answered).count() as u64, active.len() as u64)
        }
        None => (devices.iter().filter(|d| d.succeeded).count() as u64, devices.len() as u64),
    }
}

/// Fields every progress message carries.
fn header(run: &CampaignRun, now_ms: u64) -> Value {
    json!({
        "version": FORMAT_VERSION,
        "time": time(now_ms),
        "campaignId": run.campaign_id,
        "campaignStagesCount": run.stages.len(),
        "campaignStagesCompleted": run.stage.min(run.stages.len()),
        "campaignStatus": campaign_status(run),
    })
}

/// Add `fields` to a message.
fn with(mut msg: Value, fields: Value) -> Value {
    if let (Some(m), Value::Object(f)) = (msg.as_object_mut(), fields) {
        m.extend(f);
    }
    msg
}

/// The campaign-level progress message.
pub fn campaign_message(run: &CampaignRun, devices: &[DeviceRun], now_ms: u64) -> Value {
    let (done, total) = stage_operations(run, devices);
    let stage_index = run.stage.min(run.stages.len().saturating_sub(1));
    let stage = run.stages.get(stage_index);
    let fields = json!({
        "stage": {
            "stageId": stage_index + 1,
            "stageName": stage.map(|s| s.name.as_str()).unwrap_or(""),
            "stageProgress": if total == 0 { 100 } else { done * 100 / total },
            "stageOperationsTotal": total,
            "stageOperationsCompleted": done,
            "stageStatus": if run.stage >= run.stages.len() { "COMPLETED" } else if run.status == RunStatus::Failed { "ERROR" } else { "RUNNING" },
            "stageStartTime": time(run.stage_started_ms),
        },
        "devicesTotal": devices.len(),
        "devicesSucceeded": devices.iter().filter(|d| d.succeeded).count(),
        "devicesFailed": devices.iter().filter(|d| !d.active()).count(),
        "fragmentsSent": run.fragments_sent,
        "mcGroupEui": run.group.to_string(),
        "mcGroupState": { "fCntDown": run.next_fcnt },
    });
    let mut msg = with(header(run, now_ms), fields);
    if let Some(e) = &run.error {
        msg["error"] = json!({"source": "AGENT", "text": e});
    }
    if let Some(t) = &run.network_trouble {
        msg["networkError"] = json!({"text": t.error, "since": time(t.since_ms), "failuresInARow": run.network_failures});
    }
    msg
}

/// One device's progress message.
pub fn device_message(run: &CampaignRun, device: &DeviceRun, now_ms: u64) -> Value {
    let status = if device.succeeded {
        "COMPLETED"
    } else if device.failed.is_some() {
        "ERROR"
    } else if run.status == RunStatus::Running {
        "RUNNING"
    } else {
        "PROCESSED"
    };
    let fields = json!({
        "deveui": device.dev_eui.to_string(),
        "deviceState": {
            "deviceStatus": status,
            "stage": run.stages.get(device.stage).map(|s| s.name.as_str()).unwrap_or("done"),
            "retries": device.attempts.saturating_sub(1),
            "fragmentsReceived": device.received_fragments,
            "fragmentsMissing": device.missing_fragments,
            "holdsFile": device.holds_file,
        },
    });
    let mut msg = with(header(run, now_ms), fields);
    if let Some(p) = device.offload_percent {
        msg["deviceState"]["gatewayProgress"] = json!(p);
    }
    if let Some(v) = device.firmware_version {
        msg["deviceState"]["fwVersion"] = json!(crate::model::firmware_version_text(v));
    }
    if let Some(e) = &device.failed {
        msg["error"] = json!({"source": "DEVICE", "text": e});
    }
    msg
}
