//! Progress in the shape of the RMC Agent's progress messages (seed
//! `002_…`): campaign, current stage, and per-device state.

use super::run::{overall_status, CampaignRun, DeviceRun, Part, RunStatus, StageMode};
use serde_json::{json, Value};

/// Message format version, as in the RMC.AGENT topic name.
pub const FORMAT_VERSION: &str = "0.2.3";

fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3f%z").to_string()
}

fn status_text(status: RunStatus) -> &'static str {
    match status {
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
fn header(run: &CampaignRun, status: RunStatus, now_ms: u64) -> Value {
    json!({
        "version": FORMAT_VERSION,
        "time": time(now_ms),
        "campaignId": run.campaign_id,
        "campaignStagesCount": run.stages.len(),
        "campaignStagesCompleted": run.stage.min(run.stages.len()),
        "campaignStatus": status_text(status),
        "campaignStages": run.stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
    })
}

/// The fewest fragments an ideal sender could have sent for every device
/// that reported to rebuild the file at the loss it reported: for each, M
/// times the fragments sent over those it had heard when its report first
/// read so; M when none reported.
fn fragments_lower_bound(run: &CampaignRun, devices: &[DeviceRun]) -> Option<u64> {
    let m = run.layout?.nb_frag as u64;
    let worst = devices
        .iter()
        .filter_map(|d| {
            let (_, _, sent) = d.last_report?;
            let heard = d.received_fragments.filter(|h| *h > 0)? as u64;
            Some((m * sent as u64).div_ceil(heard))
        })
        .max();
    Some(worst.unwrap_or(m).max(m))
}

/// Add `fields` to a message.
fn with(mut msg: Value, fields: Value) -> Value {
    if let (Some(m), Value::Object(f)) = (msg.as_object_mut(), fields) {
        m.extend(f);
    }
    msg
}

/// A run's current stage, its multicast group and its devices' figures.
fn run_fields(part: &Part) -> Value {
    let (run, devices) = (&part.run, &part.devices);
    let (done, total) = stage_operations(run, devices);
    let stage_index = run.stage.min(run.stages.len().saturating_sub(1));
    let stage = run.stages.get(stage_index);
    json!({
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
        "fragmentsUncoded": run.layout.map(|l| l.nb_frag),
        "fragmentsLowerBound": fragments_lower_bound(run, devices),
        "mcGroupEui": run.group.to_string(),
        "mcGroupState": { "fCntDown": run.next_fcnt },
    })
}

/// A run's errors: the campaign-level one and the network's.
fn with_errors(mut msg: Value, run: &CampaignRun) -> Value {
    if let Some(e) = &run.error {
        msg["error"] = json!({"source": "AGENT", "text": e});
    }
    if let Some(t) = &run.network_trouble {
        msg["networkError"] = json!({"text": t.error, "since": time(t.since_ms), "failuresInARow": run.network_failures});
    }
    msg
}

/// One multicast group's progress message (seed 002's `mcgroup` form):
/// its run's stage, `mcGroupEui` and `mcGroupState`.
pub fn group_message(part: &Part, now_ms: u64) -> Value {
    with_errors(with(header(&part.run, part.run.status, now_ms), run_fields(part)), &part.run)
}

/// A multicast group's frame counter reservation (seed 002's multicast
/// group update form, `mcGroupState.fCntDown`): published before any
/// frame at or above the run's last reservation goes out, so a successor
/// that starts at `until` never reuses a counter. `fCntReserved` (ours)
/// tells it from a plain report of the current counter.
pub fn fcnt_reservation_message(run: &CampaignRun, until: u32, now_ms: u64) -> Value {
    let stage_index = run.stage.min(run.stages.len().saturating_sub(1));
    let fields = json!({
        "stage": {
            "stageId": stage_index + 1,
            "stageName": run.stages.get(stage_index).map(|s| s.name.as_str()).unwrap_or(""),
            "stageStatus": "RUNNING",
        },
        "mcGroupEui": run.group.to_string(),
        "mcGroupState": { "fCntDown": until, "fCntReserved": true },
    });
    with(header(run, run.status, now_ms), fields)
}

/// The campaign-level progress message, over every run of the campaign:
/// the stage and group shown are those of the run furthest behind, the
/// device figures are the campaign's, and `groups` has each group's
/// message.
pub fn campaign_message(parts: &[Part], now_ms: u64) -> Value {
    let runs: Vec<&CampaignRun> = parts.iter().map(|p| &p.run).collect();
    let succeeded = parts.iter().flat_map(|p| &p.devices).filter(|d| d.succeeded).count();
    let status = overall_status(&runs, succeeded);
    let Some(lead) = parts.iter().filter(|p| p.run.status == RunStatus::Running).min_by_key(|p| p.run.stage).or(parts.first()) else {
        return json!({ "version": FORMAT_VERSION, "time": time(now_ms) });
    };
    let devices = || parts.iter().flat_map(|p| &p.devices);
    let mut msg = with(header(&lead.run, status, now_ms), run_fields(lead));
    msg["devicesTotal"] = json!(devices().count());
    msg["devicesSucceeded"] = json!(succeeded);
    msg["devicesFailed"] = json!(devices().filter(|d| !d.active()).count());
    msg["fragmentsSent"] = json!(parts.iter().map(|p| p.run.fragments_sent as u64).sum::<u64>());
    msg["fragmentsUncoded"] = json!(parts.iter().filter_map(|p| p.run.layout.map(|l| l.nb_frag as u64)).sum::<u64>());
    msg["fragmentsLowerBound"] = json!(parts.iter().filter_map(|p| fragments_lower_bound(&p.run, &p.devices)).sum::<u64>());
    msg["groups"] = parts.iter().map(|p| group_message(p, now_ms)).collect();
    // The first error of any group, as the campaign's.
    for part in parts {
        msg = with_errors(msg, &part.run);
        if msg.get("error").is_some() {
            break;
        }
    }
    if status == RunStatus::Failed && msg.get("error").is_none() {
        msg["error"] = json!({"source": "AGENT", "text": format!("{succeeded} of {} devices succeeded", devices().count())});
    }
    msg
}

/// A campaign sent to an agent that has not reported yet (RMC core).
pub fn sent_to_agent(campaign_id: &str, agent: &str, now_ms: u64) -> Value {
    json!({
        "version": FORMAT_VERSION,
        "time": time(now_ms),
        "campaignId": campaign_id,
        "campaignStagesCount": 0,
        "campaignStagesCompleted": 0,
        "campaignStatus": "RUNNING",
        "instanceId": agent,
    })
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
    let mut msg = with(header(run, run.status, now_ms), fields);
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
