//! A campaign split over agents by multicast group. The engine runs a
//! campaign as one run per multicast group, each with its own session; a
//! core with several capable agents sends each group's run to its own
//! agent as a campaign of its own (a part, `{campaign id}.g{n}`), and
//! shows the parts' progress as the campaign's.
//!
//! Each part is judged by the campaign's success threshold over its own
//! devices (its agent sees no other); the campaign succeeds when the
//! devices that succeeded over all parts reach the threshold.

use super::seed::final_status;
use crate::model::{Campaign, CampaignStatus, Device, Eui};
use crate::store::{Store, StoreError};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A part's id: the campaign's and the part's place (1-based).
pub fn part_id(campaign_id: &str, n: usize) -> String {
    format!("{campaign_id}.g{n}")
}

/// The campaign's devices by multicast group, as the engine assigns them
/// (the group a device names, else the first of the regions' groups),
/// in the regions' order; groups with no device are left out.
pub fn devices_by_group(store: &Store, devices: impl IntoIterator<Item = Eui>, groups: &[Eui]) -> Result<Vec<(Eui, Vec<Eui>)>, StoreError> {
    let Some(default) = groups.first().copied() else { return Ok(vec![]) };
    let mut by_group: BTreeMap<Eui, Vec<Eui>> = BTreeMap::new();
    for eui in devices {
        let named = store.get::<Device>(&eui.to_string())?.and_then(|d| d.mc_group);
        by_group.entry(named.unwrap_or(default)).or_default().push(eui);
    }
    Ok(groups.iter().filter_map(|g| Some((*g, by_group.remove(g)?))).collect())
}

/// The campaign's progress message from its parts' latest campaign
/// messages (None: a part not heard from yet), and its final status once
/// every part has ended.
pub fn merged_progress(campaign: &Campaign, parts: &[Option<Value>]) -> (Value, Option<CampaignStatus>) {
    let heard: Vec<&Value> = parts.iter().flatten().collect();
    let sum = |field: &str| heard.iter().filter_map(|m| m[field].as_u64()).sum::<u64>();
    let ended: Vec<CampaignStatus> = heard.iter().filter_map(|m| final_status(m)).collect();
    let status = (ended.len() == parts.len()).then(|| {
        let (succeeded, total) = (sum("devicesSucceeded"), sum("devicesTotal"));
        if ended.contains(&CampaignStatus::Stopped) {
            CampaignStatus::Stopped
        } else if total > 0 && succeeded * 100 >= campaign.success_threshold as u64 * total {
            CampaignStatus::Succeeded
        } else {
            CampaignStatus::Failed
        }
    });
    // The stage shown is that of the part furthest behind that still runs.
    let running = heard.iter().filter(|m| m["campaignStatus"] == "RUNNING");
    let lead = running.min_by_key(|m| m["campaignStagesCompleted"].as_u64()).or(heard.first()).map(|m| (*m).clone());
    let mut msg = lead.unwrap_or_else(|| json!({}));
    msg["campaignId"] = json!(campaign.id);
    msg["campaignStatus"] = json!(match status {
        None => "RUNNING",
        Some(CampaignStatus::Succeeded) => "COMPLETED",
        Some(CampaignStatus::Stopped) => "STOPPED",
        Some(_) => "ERROR",
    });
    for field in ["devicesTotal", "devicesSucceeded", "devicesFailed", "fragmentsSent", "fragmentsUncoded", "fragmentsLowerBound"] {
        msg[field] = json!(sum(field));
    }
    msg["groups"] = heard.iter().flat_map(|m| m["groups"].as_array().cloned().unwrap_or_default()).collect();
    // Ours: every agent that runs a part.
    msg["instanceIds"] = heard.iter().filter_map(|m| m["instanceId"].as_str()).collect::<Vec<_>>().into();
    // A part's error is the campaign's unless the others carried it.
    msg.as_object_mut().map(|m| m.remove("error"));
    if status != Some(CampaignStatus::Succeeded) {
        if let Some(error) = heard.iter().find_map(|m| m.get("error")) {
            msg["error"] = error.clone();
        } else if status == Some(CampaignStatus::Failed) {
            msg["error"] = json!({"source": "AGENT", "text": format!("{} of {} devices succeeded", sum("devicesSucceeded"), sum("devicesTotal"))});
        }
    }
    (msg, status)
}
