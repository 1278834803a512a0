//! The messages of seed 002 ("RMC Core to Agent API") with the seed's
//! field names, nesting and types. Configuration messages (ADD, GET, RESP,
//! STOP) travel on RMC.CONFIG keyed by target id (else msgId); progress on
//! RMC.AGENT keyed by DevEUI; metrics on RMC.METRIC.
//!
//! Reading is lenient where the seed's own examples are: ids may be
//! numbers or strings, EUIs may have 14 hex digits (left-padded), the
//! multicast data rate is `drate` or `Datarate`, a frequency up to 0xFFFFFF
//! is in TS005's 100 Hz steps. Fields the seed does not know are kept in
//! `extra` and written back: we add fields, never rename or drop the
//! seed's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The configuration format this agent speaks (the topic's version in the
/// seed's deployment: `RMC.CONFIG.v0.2.7`).
pub const CONFIG_VERSION: &str = "0.2.7";
/// Progress format (`RMC.AGENT.v0.2.3`).
pub const PROGRESS_VERSION: &str = crate::engine::progress::FORMAT_VERSION;
/// Metrics format (`RMC.METRICS.v0.2.1`).
pub const METRICS_VERSION: &str = "0.2.1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Add,
    Get,
    Resp,
    Stop,
}

/// A configuration message: ADD, GET, RESP or STOP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMessage {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// Matches a response with its request: a number in the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// BINARY, MCGROUP or FOTA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<SeedDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mc_groups: Vec<SeedGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<SeedBinary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<SeedOptions>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lrc: Vec<SeedLrc>,
    /// Ours: the agent an ADD or STOP is for (chosen by our core for what
    /// it carries and its load). Without one, any agent of the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Ours: the device library (plugin name) the campaign runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_library: Option<String>,
    /// Ours: the network of any backend plugin, where `lrc` can only name
    /// a ThingPark LRC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_instance: Option<SeedNetwork>,
    /// Ours: a campaign taken over from a failed agent, from the run state
    /// its progress carried (`{"runs": [...], "devices": [...]}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Value>,
    /// What else our engine adds (a RESP's estimate…).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Ours: a backend instance as an ADD carries it. Secrets travel sealed
/// (`secretsSealed`); `secrets` is their clear form, in memory only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedNetwork {
    pub id: String,
    pub name: String,
    pub plugin: String,
    #[serde(default)]
    pub settings: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub secrets: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub secrets_sealed: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub transport: crate::model::Transport,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedDevice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eui: Option<String>,
    /// `1.0`, `1.1`, `LoRaWAN_1.0` or `LoRaWAN_1.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora_wan_scheme: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc_group: Option<String>,
    /// LoRaWAN 1.0's root key for multicast (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gen_app_key: Option<String>,
    /// LoRaWAN 1.1's root key (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_key: Option<String>,
    /// The McKEKey itself, instead of a root key to derive it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc_ke_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<SeedDeviceOptions>,
    /// GET's form: the uplink rate without `options`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_rate: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedDeviceOptions {
    /// Seconds between the device's uplinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_rate: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedGroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eui: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc_key: Option<String>,
    /// `B` or `C`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f_cnt_down: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<SeedGroupOptions>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedGroupOptions {
    /// EU868, US915 or AS923.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rf_region: Option<String>,
    /// The examples' `drate`; the prose's `Datarate`.
    #[serde(default, alias = "Datarate", alias = "datarate", skip_serializing_if = "Option::is_none")]
    pub drate: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downlink_dwell_time: Option<u8>,
    /// Hz, or TS005's 100 Hz steps when at most 0xFFFFFF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freq: Option<u32>,
    /// 0-4: 1/2, 3/4, 5/6, 7/8, 1 of the fragments uncoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<u8>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SeedGroupOptions {
    /// The frequency in Hz.
    pub fn frequency_hz(&self) -> Option<u32> {
        self.freq.map(|f| if f <= 0x00ff_ffff { f.saturating_mul(100) } else { f })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedBinary {
    /// The file, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Bytes (GET only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedOptions {
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<u64>,
    /// Percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fw_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hw_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// PLAIN or LZ4DICT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fw_req_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_time: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A ThingPark LRC the campaign's downlinks go through.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedLrc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_key: Option<String>,
    pub url: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Why a message was refused.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("not a configuration message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("format version {0} is not 0.2.x")]
    Version(String),
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

impl SeedError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Field { field: field.into(), message: message.into() }
    }
}

/// Whether a message's `version` (when it has one) is a 0.2 format, the
/// one this code speaks: the seed's versions are all 0.2.x.
pub fn check_version(version: Option<&str>) -> Result<(), SeedError> {
    match version {
        None => Ok(()),
        Some(v) if v.split('.').take(2).eq(["0", "2"]) => Ok(()),
        Some(v) => Err(SeedError::Version(v.chars().take(20).collect())),
    }
}

impl ConfigMessage {
    pub fn parse(bytes: &[u8]) -> Result<Self, SeedError> {
        let msg: Self = serde_json::from_slice(bytes)?;
        check_version(msg.version.as_deref())?;
        Ok(msg)
    }

    /// The Kafka key: the target (campaign) id, else the msgId.
    pub fn key(&self) -> String {
        self.campaign_id.as_ref().or(self.msg_id.as_ref()).map(id_text).unwrap_or_default()
    }

    /// The campaign id as text.
    pub fn campaign(&self) -> Option<String> {
        self.campaign_id.as_ref().map(id_text)
    }
}

/// The status a progress message's `campaignStatus` ends a campaign with;
/// None while it runs.
pub fn final_status(msg: &Value) -> Option<crate::model::CampaignStatus> {
    use crate::model::CampaignStatus;
    match msg["campaignStatus"].as_str()? {
        "COMPLETED" => Some(CampaignStatus::Succeeded),
        "ERROR" => Some(CampaignStatus::Failed),
        "STOPPED" => Some(CampaignStatus::Stopped),
        _ => None,
    }
}

/// An id that is a number or a string, as text.
pub fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An EUI of the seed's: 16 hex digits, or fewer (the examples have 14),
/// left-padded.
pub fn eui(field: &str, text: &str) -> Result<crate::model::Eui, SeedError> {
    let clean: String = text.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    if clean.is_empty() || clean.len() > 16 || !clean.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(SeedError::field(field, format!("'{}' is not an EUI (up to 16 hex digits)", text.chars().take(40).collect::<String>())));
    }
    Ok(crate::model::Eui(u64::from_str_radix(&clean, 16).expect("checked hex of at most 16 digits")))
}

/// A file's base64 as the seed's example writes it: characters past the
/// alphabet at its end (the example ends in an ellipsis) end the data.
pub fn binary_data(text: &str) -> Result<(Vec<u8>, bool), SeedError> {
    use base64::Engine;
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let cut = text.trim_end().trim_end_matches(|c: char| !valid(c));
    let cut_short = cut.len() != text.trim_end().len();
    let data = base64::engine::general_purpose::STANDARD.decode(cut).map_err(|e| SeedError::field("binary.data", format!("not base64: {e}")))?;
    Ok((data, cut_short))
}

/// A progress message's required fields (seed 002's table, 1-12): those
/// every message carries.
pub const PROGRESS_REQUIRED: [&str; 6] = ["version", "time", "campaignId", "campaignStagesCount", "campaignStagesCompleted", "campaignStatus"];

/// The metrics message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsMessage {
    pub version: String,
    pub time: String,
    pub instance_id: String,
    pub uplinks_abs: u64,
    pub downlinks_abs: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-002").join(name)).unwrap()
    }

    #[test]
    fn the_seeds_examples_parse_and_keep_every_field() {
        let add = ConfigMessage::parse(&example("add.json")).unwrap();
        assert_eq!(add.action, Action::Add);
        assert_eq!(add.key(), "123", "keyed by the target id");
        assert_eq!(add.devices.len(), 2);
        assert_eq!(eui("eui", add.devices[0].eui.as_deref().unwrap()).unwrap().to_string(), "0018b20000000001");
        assert_eq!(add.devices[0].mc_ke_key.as_deref(), Some("2b7e151628aed216abf7158809cf4f00"));
        assert_eq!(add.devices[0].options.as_ref().unwrap().uplink_rate, Some(10));
        let group = add.mc_groups[0].options.as_ref().unwrap();
        assert_eq!((group.drate, group.frequency_hz(), group.redundancy), (Some(3), Some(868_100_000), Some(0)));
        assert_eq!(add.options.as_ref().unwrap().max_duration, Some(300));
        assert_eq!(add.lrc[0].as_id.as_deref(), Some("TWA_1100000000.1.AS"));
        let (data, cut) = binary_data(add.binary.as_ref().unwrap().data.as_deref().unwrap()).unwrap();
        assert!(cut && data.starts_with(b"BM"), "the example's truncated bitmap");
        // Written back, every field of the seed's is there with its name.
        let original: Value = serde_json::from_slice(&example("add.json")).unwrap();
        let written = serde_json::to_value(&add).unwrap();
        assert_eq!(written, original, "nothing renamed or dropped");

        let stop = ConfigMessage::parse(&example("stop.json")).unwrap();
        assert_eq!((stop.action, stop.key()), (Action::Stop, "2".to_string()));
        let get = ConfigMessage::parse(&example("get-binary.json")).unwrap();
        assert_eq!((get.action, get.key()), (Action::Get, "12".to_string()), "keyed by msgId without a target");
        assert_eq!(get.devices[0].uplink_rate, Some(123));
        assert_eq!(get.binary.as_ref().unwrap().size, Some(1024));
        assert_eq!(get.mc_groups[1].options.as_ref().unwrap().frequency_hz(), Some(868_100_000), "Hz stay Hz");
        ConfigMessage::parse(&example("get-mcgroup.json")).unwrap();
    }

    #[test]
    fn versions_and_bad_input_are_refused_by_type() {
        assert!(check_version(Some("0.2.7")).is_ok());
        assert!(matches!(check_version(Some("1.0.0")), Err(SeedError::Version(_))));
        assert!(matches!(ConfigMessage::parse(br#"{"action":"ADD","version":"0.3.0"}"#), Err(SeedError::Version(_))));
        assert!(matches!(ConfigMessage::parse(b"{\"action\":\"JUMP\"}"), Err(SeedError::Json(_))));
        assert!(matches!(ConfigMessage::parse(b"\xff"), Err(SeedError::Json(_))));
        assert!(matches!(eui("eui", "xyz"), Err(SeedError::Field { .. })));
        assert!(matches!(eui("eui", "00112233445566778"), Err(SeedError::Field { .. })));
        assert!(matches!(binary_data("!!!!"), Ok((ref d, true)) if d.is_empty()));
    }
}
