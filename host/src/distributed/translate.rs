//! A seed ADD as this host's objects, each made through its own
//! validation: a ThingPark backend instance from the `lrc` list, the
//! multicast groups, the devices with their keys, a device set, a region,
//! the file and the campaign. An agent stores them and starts the campaign
//! like any other; a repeated ADD of the same campaign changes nothing.
//!
//! Choices where the seed leaves room (also in the README):
//! - the campaign's id here is `rmc-<campaignId>`; progress carries the
//!   seed's `campaignId` as it came;
//! - a session or reboot date and time already past means "as soon as the
//!   setup allows" (the seed's example gives 1970-01-01); a time without a
//!   date is its next occurrence;
//! - `maxDuration` is in seconds, our campaigns count minutes: rounded up;
//! - an all-ones `fwVersion` or `hwTarget` (the example's
//!   `255.255.255.255`, `FF:FF:FF:FF:FF:FF`) means none given;
//! - a group's `mcKey` (obsolete in the seed) is used when given, else a
//!   key is generated; `fCntDown` is not honoured yet (our frame counters
//!   start at 0 and never repeat within a group's run).

use super::seed::{binary_data, eui, id_text, ConfigMessage, SeedError, SeedGroup, SeedLrc};
use crate::keys::Vault;
use crate::model::{
    BackendInstance, BackendInstanceInput, Campaign, CampaignInput, CampaignType, Device, DeviceInput, DeviceSet, DeviceSetInput, Editable, FieldError, FileInput, InputContext, IsmBand,
    LorawanVersion, MulticastGroup, MulticastGroupInput, Region, RegionInput, SessionClass, StoredFile, Transport,
};
use crate::store::Store;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde_json::Value;

/// What an agent adds to what the messages say.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// The device library of a campaign whose message names none
    /// (`deviceLibrary`, our field beside the seed's).
    pub device_library: String,
    /// TLS settings of the LRC instances made from `lrc` lists.
    pub lrc_transport: Transport,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self { device_library: "lorawan-v1".into(), lrc_transport: Transport::default() }
    }
}

/// This host's id of a seed campaign.
pub fn local_campaign_id(seed_id: &str) -> String {
    let clean: String = seed_id.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(64).collect();
    format!("rmc-{clean}")
}

fn field(e: FieldError, prefix: &str) -> SeedError {
    SeedError::field(format!("{prefix}{}", e.field), e.message)
}

/// The LRC base URL (the plugin adds `/thingpark/lrc/rest/downlink`).
fn lrc_base(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    url.strip_suffix("/thingpark/lrc/rest/downlink").unwrap_or(url).to_string()
}

/// `scheme://host[:port]` of a URL, for the instance's allowed hosts.
fn origin(url: &str) -> Result<String, SeedError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| SeedError::field("lrc.url", e.to_string()))?;
    let host = parsed.host_str().ok_or_else(|| SeedError::field("lrc.url", "has no host"))?;
    Ok(match parsed.port() {
        Some(p) => format!("{}://{host}:{p}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    })
}

fn backend_instance(lrc: &SeedLrc, settings: &AgentSettings, ctx: &InputContext) -> Result<BackendInstance, SeedError> {
    let base = lrc_base(&lrc.url);
    let mut values = std::collections::BTreeMap::from([("url".to_string(), base.clone())]);
    if let Some(as_id) = &lrc.as_id {
        values.insert("as_id".into(), as_id.clone());
    }
    let secrets = lrc.as_key.iter().map(|k| ("as_key".to_string(), k.clone())).collect();
    // One instance per LRC and AS: repeated ADDs share it.
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{base}\n{}", lrc.as_id.as_deref().unwrap_or("")).as_bytes());
    let id = format!("rmc-lrc-{}", &hex::encode(digest)[..12]);
    let prior = ctx.store.get::<BackendInstance>(&id).map_err(|e| SeedError::field("lrc", e.to_string()))?;
    let input = BackendInstanceInput {
        name: format!("ThingPark LRC {base}"),
        plugin: "thingpark".into(),
        settings: values,
        secrets,
        allowed_hosts: vec![origin(&base)?],
        transport: settings.lrc_transport.clone(),
    };
    let mut instance = BackendInstance::from_input(input, prior.as_ref(), ctx).map_err(|e| field(e, "lrc."))?;
    instance.id = id;
    Ok(instance)
}

/// Our core's network, for any backend plugin (secrets already opened).
fn network_instance(network: &super::seed::SeedNetwork, ctx: &InputContext) -> Result<BackendInstance, SeedError> {
    let sane = (1..=64).contains(&network.id.len()) && network.id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !sane {
        return Err(SeedError::field("backendInstance.id", "1 to 64 letters, digits, '-', '_' or '.'"));
    }
    let prior = ctx.store.get::<BackendInstance>(&network.id).map_err(|e| SeedError::field("backendInstance", e.to_string()))?;
    let input = BackendInstanceInput {
        name: network.name.clone(),
        plugin: network.plugin.clone(),
        settings: network.settings.clone(),
        secrets: network.secrets.clone(),
        allowed_hosts: network.allowed_hosts.clone(),
        transport: network.transport.clone(),
    };
    let mut instance = BackendInstance::from_input(input, prior.as_ref(), ctx).map_err(|e| field(e, "backendInstance."))?;
    instance.id = network.id.clone();
    Ok(instance)
}

fn band(region: Option<&str>) -> Result<IsmBand, SeedError> {
    match region.unwrap_or("EU868") {
        "EU868" => Ok(IsmBand::EU868),
        "US915" => Ok(IsmBand::US915),
        "AS923" => Ok(IsmBand::AS923),
        other => Err(SeedError::field("mcGroups.options.rfRegion", format!("'{other}' is not EU868, US915 or AS923"))),
    }
}

fn group(g: &SeedGroup, ctx: &InputContext) -> Result<MulticastGroup, SeedError> {
    let dev_eui = eui("mcGroups.eui", g.eui.as_deref().unwrap_or(""))?;
    let options = g.options.clone().unwrap_or_default();
    let ism_band = band(options.rf_region.as_deref())?;
    let session_class = match g.session_class.as_deref().unwrap_or("C") {
        "B" => SessionClass::B,
        "C" => SessionClass::C,
        other => return Err(SeedError::field("mcGroups.sessionClass", format!("'{other}' is not B or C"))),
    };
    let prior = ctx.store.get::<MulticastGroup>(&dev_eui.to_string()).map_err(|e| SeedError::field("mcGroups", e.to_string()))?;
    let input = MulticastGroupInput {
        dev_eui,
        name: format!("RMC group {dev_eui}"),
        tag: String::new(),
        ism_band,
        dl_dwell_time: options.downlink_dwell_time == Some(1),
        dev_addr: g.net_addr.clone().ok_or_else(|| SeedError::field("mcGroups.netAddr", "is required"))?,
        group_id: 0,
        frequency: options.frequency_hz().unwrap_or(869_525_000),
        data_rate: options.drate.unwrap_or(0),
        // The seed's 0-4 code, or our core's percent.
        redundancy: options.redundancy.or_else(|| options.extra.get("redundancyPercent").and_then(Value::as_u64).and_then(|v| u8::try_from(v).ok())),
        ping_slot_periodicity: g.extra.get("pingSlotPeriodicity").and_then(Value::as_u64).and_then(|v| u8::try_from(v).ok()).unwrap_or(0),
        session_class,
        mc_key: g.mc_key.clone(),
        backend_instance: None,
    };
    MulticastGroup::from_input(input, prior.as_ref(), ctx).map_err(|e| field(e, "mcGroups."))
}

/// A seed date (`YYYY-MM-DD`) and time (`HH:MM[:SS]`), UTC; None when
/// absent or already past.
fn schedule(date: Option<&str>, time: Option<&str>, now: DateTime<Utc>, name: &str) -> Result<Option<DateTime<Utc>>, SeedError> {
    let time = match time {
        Some(t) => Some(NaiveTime::parse_from_str(t, "%H:%M:%S").or_else(|_| NaiveTime::parse_from_str(t, "%H:%M")).map_err(|_| SeedError::field(format!("options.{name}Time"), format!("'{t}' is not HH:MM:SS")))?),
        None => None,
    };
    let at = match (date, time) {
        (None, None) => return Ok(None),
        (Some(d), t) => {
            let day = NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| SeedError::field(format!("options.{name}Date"), format!("'{d}' is not YYYY-MM-DD")))?;
            day.and_time(t.unwrap_or_default()).and_utc()
        }
        (None, Some(t)) => {
            let today = now.date_naive().and_time(t).and_utc();
            if today > now { today } else { today + chrono::Duration::days(1) }
        }
    };
    Ok((at > now).then_some(at))
}

/// A version or hardware type as given: all ones (`255.255.255.255`,
/// `FF:FF:FF:FF:FF:FF`, what the seed's example sends) means none.
fn given(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.chars().filter(|c| c.is_ascii_alphanumeric()).all(|c| c.eq_ignore_ascii_case(&'f')) && v.split('.').any(|p| p != "255"))
}

/// Store the objects of an ADD; the campaign's id here. A campaign stored
/// before (an ADD delivered again) stays as it is.
pub fn store_add(msg: &ConfigMessage, settings: &AgentSettings, store: &Store, vault: &Vault, now: DateTime<Utc>) -> Result<String, SeedError> {
    store_objects(msg, settings, store, vault, now, false)
}

/// `store_add`, replacing a campaign stored before when `replace`.
fn store_objects(msg: &ConfigMessage, settings: &AgentSettings, store: &Store, vault: &Vault, now: DateTime<Utc>, replace: bool) -> Result<String, SeedError> {
    let ctx = InputContext { store, vault, now };
    let seed_id = msg.campaign().ok_or_else(|| SeedError::field("campaignId", "is required for ADD"))?;
    let campaign_id = local_campaign_id(&seed_id);
    let put_err = |e: crate::store::StoreError| SeedError::field("store", e.to_string());
    let instance = match (&msg.backend_instance, msg.lrc.first()) {
        (Some(network), _) => network_instance(network, &ctx)?,
        (None, Some(lrc)) => backend_instance(lrc, settings, &ctx)?,
        (None, None) => return Err(SeedError::field("lrc", "names no LRC")),
    };
    store.put(&instance).map_err(put_err)?;

    let mut group_euis = Vec::new();
    for g in &msg.mc_groups {
        let g = group(g, &ctx)?;
        group_euis.push(g.dev_eui);
        store.put(&g).map_err(put_err)?;
    }
    let mut device_euis = Vec::new();
    for d in &msg.devices {
        let dev_eui = eui("devices.eui", d.eui.as_deref().unwrap_or(""))?;
        let lorawan_version = match d.lora_wan_scheme.as_deref().map(|s| s.trim_start_matches("LoRaWAN_")) {
            None | Some("1.0") | Some("1.0.2") | Some("1.0.3") | Some("1.0.4") => LorawanVersion::V1_0,
            Some("1.1") => LorawanVersion::V1_1,
            Some(other) => return Err(SeedError::field("devices.loraWanScheme", format!("'{other}' is not LoRaWAN 1.0 or 1.1"))),
        };
        let mc_group = d.mc_group.as_deref().map(|g| eui("devices.mcGroup", g)).transpose()?;
        let class = mc_group.and_then(|g| store.get::<MulticastGroup>(&g.to_string()).ok().flatten()).map(|g| g.session_class).unwrap_or(SessionClass::C);
        let prior = store.get::<Device>(&dev_eui.to_string()).map_err(put_err)?;
        let input = DeviceInput {
            dev_eui,
            name: prior.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
            tag: prior.as_ref().map(|p| p.tag.clone()).unwrap_or_default(),
            multicast_classes: vec![class],
            lorawan_version,
            device_key: d.gen_app_key.clone().or_else(|| d.app_key.clone()),
            mc_ke_key: d.mc_ke_key.clone(),
            device_profile: None,
            firmware: prior.as_ref().and_then(|p| p.firmware.clone()),
            mc_group,
            uplink_rate: d.options.as_ref().and_then(|o| o.uplink_rate).or(d.uplink_rate),
        };
        let device = Device::from_input(input, prior.as_ref(), &ctx).map_err(|e| field(e, "devices."))?;
        if device.device_key.is_none() && device.mc_ke_key.is_none() {
            return Err(SeedError::field("devices.genAppKey", format!("device {dev_eui} has no genAppKey, appKey or mcKeKey")));
        }
        device_euis.push(device.dev_eui);
        store.put(&device).map_err(put_err)?;
    }
    let set_id = format!("{campaign_id}-devices");
    let mut set = DeviceSet::from_input(DeviceSetInput { name: format!("devices of {campaign_id}"), description: String::new(), devices: device_euis }, None, &ctx).map_err(|e| field(e, ""))?;
    set.id = set_id.clone();
    store.put(&set).map_err(put_err)?;
    let region_id = format!("{campaign_id}-groups");
    let mut region = Region::from_input(RegionInput { name: format!("groups of {campaign_id}"), description: String::new(), multicast_groups: group_euis }, None, &ctx).map_err(|e| field(e, ""))?;
    region.id = region_id.clone();
    store.put(&region).map_err(put_err)?;

    let options = msg.options.clone().unwrap_or_default();
    let campaign_type: CampaignType = serde_json::from_value(serde_json::json!(msg.campaign_type.as_deref().unwrap_or("FOTA")))
        .map_err(|_| SeedError::field("campaignType", "is not BINARY, MCGROUP or FOTA"))?;
    let file = match msg.binary.as_ref().and_then(|b| b.data.as_deref()) {
        Some(data) if campaign_type != CampaignType::MulticastSetup => {
            let (bytes, cut) = binary_data(data)?;
            if cut {
                tracing::warn!(campaign = %campaign_id, bytes = bytes.len(), "binary.data ends in characters outside base64; the file is what comes before them");
            }
            let sha = store.blobs().put(&bytes).map_err(|e| SeedError::field("binary.data", e.to_string()))?;
            let input = FileInput { name: format!("{campaign_id}.bin"), firmware_version: given(&options.fw_version), hw_target: given(&options.hw_target), ..FileInput::default() };
            store.put(&StoredFile::with_metadata(sha.clone(), bytes.len() as u64, input, None, &ctx).map_err(|e| field(e, "binary."))?).map_err(put_err)?;
            Some(sha)
        }
        _ => None,
    };
    let device_library = msg.device_library.clone().unwrap_or_else(|| settings.device_library.clone());
    let input = CampaignInput {
        name: format!("RMC campaign {}", id_text(msg.campaign_id.as_ref().expect("checked above"))),
        description: String::new(),
        campaign_type,
        device_sets: vec![set_id],
        regions: vec![region_id],
        reboot_at: schedule(options.reboot_date.as_deref(), options.reboot_time.as_deref(), now, "reboot")?,
        session_start: schedule(options.session_date.as_deref(), options.session_time.as_deref(), now, "session")?,
        file,
        max_duration_minutes: options.max_duration.map(|s| s.div_ceil(60).max(1) as u32).unwrap_or(24 * 60),
        success_threshold: options.success_threshold.unwrap_or(100),
        device_library,
        backend_instance: instance.id.clone(),
        // A firmware update's type; a BINARY file goes as it is.
        update_type: options.update_type.as_deref().filter(|_| campaign_type == CampaignType::FirmwareUpdate).map(str::to_ascii_lowercase),
        message: None,
    };
    let prior = store.get::<Campaign>(&campaign_id).map_err(put_err)?.filter(|_| !replace);
    let mut campaign = Campaign::from_input(input, prior.as_ref(), &ctx).map_err(|e| field(e, ""))?;
    campaign.id = campaign_id.clone();
    if prior.is_none() {
        store.put(&campaign).map_err(put_err)?;
    }
    Ok(campaign_id)
}

/// The largest file a GET may ask an estimate for.
const MAX_ESTIMATE_FILE: u64 = 16 * 1024 * 1024;

/// Store what a GET describes, as an archived draft campaign whose
/// duration can be estimated: the seed's GET names no devices or groups,
/// only their uplink rates and group options, so they get made-up EUIs
/// (`ffff…`), an LRC that never resolves when none is named, and a file of
/// `binary.size` bytes. The campaign's id here.
pub fn store_get(msg: &ConfigMessage, settings: &AgentSettings, store: &Store, vault: &Vault, now: DateTime<Utc>) -> Result<String, SeedError> {
    use super::seed::{SeedBinary, SeedDevice, SeedDeviceOptions};
    let msg_id = msg.msg_id.as_ref().map(id_text).ok_or_else(|| SeedError::field("msgId", "is required for GET"))?;
    let mut add = msg.clone();
    add.action = super::seed::Action::Add;
    add.campaign_id = Some(format!("get-{msg_id}").into());
    if add.lrc.is_empty() {
        add.lrc.push(SeedLrc { url: "https://lrc.invalid".into(), ..SeedLrc::default() });
    }
    if add.mc_groups.is_empty() {
        add.mc_groups.push(SeedGroup::default());
    }
    // The draft's groups, devices and network are its own (made-up EUIs, an
    // id of its own), whatever the GET names: a real one is never touched.
    let mut renamed: std::collections::BTreeMap<String, String> = Default::default();
    for (i, g) in add.mc_groups.iter_mut().enumerate() {
        let draft_eui = format!("ffffff00{:08x}", i);
        if let Some(real) = g.eui.replace(draft_eui.clone()) {
            renamed.insert(real, draft_eui);
        }
        g.net_addr = Some(format!("{:08x}", 0xff00_0000u32 + i as u32));
        g.mc_key = None;
    }
    if let Some(network) = &mut add.backend_instance {
        network.id = format!("rmc-get-{}-network", msg_id.chars().filter(|c| c.is_ascii_alphanumeric()).take(32).collect::<String>());
        network.secrets.clear();
    }
    let groups: Vec<String> = add.mc_groups.iter().filter_map(|g| g.eui.clone()).collect();
    // The seed's GET may list one device standing for all ("the greatest
    // uplink rate in the devices list"): every group gets at least one.
    let rate = |d: &SeedDevice| d.options.as_ref().and_then(|o| o.uplink_rate).or(d.uplink_rate);
    let slowest = msg.devices.iter().filter_map(rate).max();
    add.devices = (0..msg.devices.len().max(groups.len()))
        .map(|i| {
            let d = msg.devices.get(i);
            SeedDevice {
                eui: Some(format!("ffff0000{:08x}", i)),
                mc_group: Some(d.and_then(|d| d.mc_group.as_ref()).and_then(|g| renamed.get(g).cloned()).unwrap_or_else(|| groups[i % groups.len()].clone())),
                gen_app_key: Some("00000000000000000000000000000000".into()),
                options: Some(SeedDeviceOptions { uplink_rate: d.and_then(rate).or(slowest), ..Default::default() }),
                ..SeedDevice::default()
            }
        })
        .collect();
    if let Some(size) = msg.binary.as_ref().and_then(|b| b.size) {
        if size > MAX_ESTIMATE_FILE {
            return Err(SeedError::field("binary.size", format!("at most {MAX_ESTIMATE_FILE} bytes")));
        }
        use base64::Engine;
        add.binary = Some(SeedBinary { data: Some(base64::engine::general_purpose::STANDARD.encode(vec![0u8; size as usize])), ..Default::default() });
    }
    let id = store_objects(&add, settings, store, vault, now, true)?;
    if let Ok(Some(mut draft)) = store.get::<Campaign>(&id) {
        draft.archived = true;
        store.put(&draft).map_err(|e| SeedError::field("store", e.to_string()))?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with the plugins an ADD's objects name.
    fn store_with_plugins(dir: &std::path::Path) -> Store {
        let store = Store::open(dir).unwrap();
        for (name, kind) in [("lorawan-v1", "device-library"), ("thingpark", "backend"), ("plain", "update-type")] {
            let manifest = serde_json::json!({"name": name, "kind": kind, "version": "0.1.0", "witVersion": "0.2.0"});
            let record = serde_json::json!({"manifest": manifest, "wasmSha256": "00", "versions": [], "loadedAt": "2026-01-01T00:00:00Z", "archived": false});
            store.put(&serde_json::from_value::<crate::model::PluginRecord>(record).unwrap()).unwrap();
        }
        store
    }

    #[test]
    fn the_seeds_add_becomes_valid_objects() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_plugins(dir.path());
        let vault = Vault::new([1; 32]);
        let msg = ConfigMessage::parse(&std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-002/add.json")).unwrap()).unwrap();
        let now = Utc::now();
        let id = store_add(&msg, &AgentSettings::default(), &store, &vault, now).unwrap();
        assert_eq!(id, "rmc-123");
        let campaign = store.get::<Campaign>(&id).unwrap().unwrap();
        assert_eq!(campaign.campaign_type, CampaignType::BinaryTransfer);
        assert_eq!((campaign.max_duration_minutes, campaign.success_threshold), (5, 50));
        assert_eq!(campaign.session_start, None, "1970 is past: as soon as possible");
        let instance = store.get::<BackendInstance>(&campaign.backend_instance).unwrap().unwrap();
        assert_eq!(instance.settings["url"], "https://dev1.thingpark.com");
        assert_eq!(instance.settings["as_id"], "TWA_1100000000.1.AS");
        assert!(instance.secrets.contains_key("as_key"));
        let first = store.get::<Device>("0018b20000000001").unwrap().unwrap();
        assert!(first.mc_ke_key.is_some() && first.device_key.is_none(), "device 1 came with its McKEKey");
        assert_eq!(first.uplink_rate, Some(10));
        assert_eq!(first.mc_group.map(|g| g.to_string()).as_deref(), Some("0018b200000000fd"));
        let group = store.get::<MulticastGroup>("0018b200000000fe").unwrap().unwrap();
        assert_eq!((group.frequency, group.data_rate, group.dev_addr.to_lowercase().as_str()), (868_100_000, 3, "040010f2"));
        let file = store.get::<StoredFile>(campaign.file.as_deref().unwrap()).unwrap().unwrap();
        assert_eq!(file.size, 12, "the example's base64 up to its ellipsis");
        assert_eq!((file.hw_target.as_deref(), file.firmware_version.as_deref()), (None, None), "all ones: none given");
        assert_eq!(given(&Some("1.2.3.4".into())).as_deref(), Some("1.2.3.4"));
        assert_eq!(given(&Some("00:11:22:33:44:55".into())).as_deref(), Some("00:11:22:33:44:55"));
        // Again: the same campaign, nothing duplicated.
        assert_eq!(store_add(&msg, &AgentSettings::default(), &store, &vault, now).unwrap(), id);
        assert_eq!(store.list::<Campaign>(false).unwrap().len(), 1);
        assert_eq!(store.list::<BackendInstance>(false).unwrap().len(), 1);
    }

    #[test]
    fn the_seeds_gets_become_archived_drafts() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_plugins(dir.path());
        let vault = Vault::new([1; 32]);
        let example = |name: &str| ConfigMessage::parse(&std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-002").join(name)).unwrap()).unwrap();
        let id = store_get(&example("get-binary.json"), &AgentSettings::default(), &store, &vault, Utc::now()).unwrap();
        let draft = store.get::<Campaign>(&id).unwrap().unwrap();
        assert!(draft.archived, "a draft for the estimate only");
        assert_eq!(store.get::<StoredFile>(draft.file.as_deref().unwrap()).unwrap().unwrap().size, 1024);
        let region = store.get::<Region>(&draft.regions[0]).unwrap().unwrap();
        assert_eq!(region.multicast_groups.len(), 2);
        let mcgroup = store_get(&example("get-mcgroup.json"), &AgentSettings::default(), &store, &vault, Utc::now()).unwrap();
        assert_eq!(store.get::<Campaign>(&mcgroup).unwrap().unwrap().campaign_type, CampaignType::MulticastSetup);
        // A GET naming real devices and groups leaves them as they are.
        let add = ConfigMessage::parse(&std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-002/add.json")).unwrap()).unwrap();
        store_add(&add, &AgentSettings::default(), &store, &vault, Utc::now()).unwrap();
        let before = serde_json::to_string(&store.get::<Device>("0018b20000000002").unwrap()).unwrap();
        let mut get = add.clone();
        get.action = crate::distributed::seed::Action::Get;
        store_get(&get, &AgentSettings::default(), &store, &vault, Utc::now()).unwrap();
        assert_eq!(serde_json::to_string(&store.get::<Device>("0018b20000000002").unwrap()).unwrap(), before, "the real device is untouched");
    }

    #[test]
    fn a_bad_add_is_refused_naming_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_plugins(dir.path());
        let vault = Vault::new([1; 32]);
        let bad = |json: &str| match store_add(&ConfigMessage::parse(json.as_bytes()).unwrap(), &AgentSettings::default(), &store, &vault, Utc::now()) {
            Err(SeedError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        };
        assert_eq!(bad(r#"{"action":"ADD"}"#), "campaignId");
        assert!(matches!(store_get(&ConfigMessage::parse(br#"{"action":"GET","msgId":1,"binary":{"size":99999999999}}"#).unwrap(), &AgentSettings::default(), &store, &vault, Utc::now()), Err(SeedError::Field { .. })));
        assert_eq!(bad(r#"{"action":"ADD","campaignId":1}"#), "lrc");
        assert_eq!(bad(r#"{"action":"ADD","campaignId":1,"lrc":[{"url":"https://lrc.example"}],"devices":[{"eui":"zz"}]}"#), "devices.eui");
        assert_eq!(bad(r#"{"action":"ADD","campaignId":1,"lrc":[{"url":"https://lrc.example"}],"devices":[{"eui":"01"}]}"#), "devices.genAppKey");
        assert_eq!(bad(r#"{"action":"ADD","campaignId":1,"lrc":[{"url":"https://lrc.example"}],"mcGroups":[{"eui":"02","netAddr":"01020304","options":{"rfRegion":"XX"}}]}"#), "mcGroups.options.rfRegion");
    }
}
