//! A whole simulated setup in one call: a fleet, its devices, group, set,
//! region, firmware file and campaign, provisioned through the same
//! validation the API applies. Used by `airlift-demo`, tests and benchmarks.

use crate::fleet::{Behaviour, FleetConfig, Provisioned, SimFleet};
use airlift::clock::{Clock, ManualClock};
use airlift::engine::Engine;
use airlift::keys::Vault;
use airlift::model::*;
use airlift::plugin::PluginRuntime;
use airlift::store::{Store, StoreError};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}")]
    Field(#[from] FieldError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub behaviours: Vec<Behaviour>,
    pub fleet: FleetConfig,
    pub file_size: usize,
    pub library: String,
    pub campaign_type: CampaignType,
    pub max_duration_minutes: u32,
    pub success_threshold: u8,
    /// FPort overrides for the devices' profile (package name → FPort).
    pub fports: std::collections::BTreeMap<String, u8>,
    /// The device stack the devices' profile names (None: inferred).
    pub profile_stack: Option<airlift::model::DeviceStack>,
    /// DevEUI of the first device (the rest follow) and of the group, so
    /// several scenarios can share one store.
    pub first_eui: u64,
    pub group_eui: u64,
    /// Update-type plugin of the campaign (None: the file goes as it is).
    pub update_type: Option<String>,
    /// The payload of a message campaign.
    pub message: Option<MulticastMessage>,
    /// Secret scalar of the Smart Delta key the file is signed with; the
    /// devices trust `fleet.firmware.public_key`, which may differ.
    pub signing_key: Option<[u8; 32]>,
    /// Class of the multicast session.
    pub session_class: SessionClass,
    /// Multicast groups the devices are spread over (round robin, each
    /// device naming its group), one after another from `group_eui`.
    pub groups: usize,
    /// Simulated backend instances the groups are sent through (round
    /// robin), all reaching the one fleet ([`provision`] only).
    pub networks: usize,
}

impl ScenarioConfig {
    pub fn new(devices: usize) -> Self {
        Self {
            behaviours: vec![Behaviour::Normal; devices],
            fleet: FleetConfig::default(),
            file_size: 20_000,
            library: "lorawan-v1".into(),
            campaign_type: CampaignType::FirmwareUpdate,
            max_duration_minutes: 24 * 60,
            success_threshold: 90,
            fports: Default::default(),
            profile_stack: None,
            first_eui: 0x70b3_d57e_d000_0000,
            group_eui: 0x70b3_d57e_d0ff_0000,
            update_type: None,
            message: None,
            signing_key: None,
            session_class: SessionClass::C,
            groups: 1,
            networks: 1,
        }
    }
}

pub struct Scenario {
    pub engine: Engine<SimFleet>,
    pub clock: Arc<ManualClock>,
    pub campaign_id: String,
    pub image: Vec<u8>,
    pub devices: Vec<Provisioned>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Provision everything in `store` and return an engine over the fleet,
/// in process (the fleet is the engine's network).
pub fn provision(store: &Store, vault: &Arc<Vault>, runtime: &Arc<PluginRuntime>, clock: Arc<ManualClock>, config: &ScenarioConfig) -> Result<Scenario, ScenarioError> {
    let (fleet, devices) = SimFleet::new(config.fleet.clone(), clock.clone(), vault.clone(), config.first_eui, &config.behaviours);
    let backends = (1..=config.networks.max(1))
        .map(|n| BackendInstanceInput { name: format!("simulated network {n}"), plugin: "simulated".into(), settings: Default::default(), secrets: Default::default(), allowed_hosts: vec![], transport: Default::default() })
        .collect();
    let objects = provision_objects(store, vault, clock.now_unix_ms(), config, &devices, backends)?;
    let engine = Engine::new(store.clone(), runtime.clone(), clock.clone(), Arc::new(fleet));
    Ok(Scenario { engine, clock, campaign_id: objects.campaign_id, image: objects.image, devices })
}

/// What [`provision_objects`] created.
pub struct Objects {
    pub campaign_id: String,
    /// The campaign's backend instance (the first).
    pub backend_instance: String,
    /// Every backend instance, in the order given.
    pub backend_instances: Vec<String>,
    /// The multicast groups, in order.
    pub groups: Vec<Eui>,
    pub image: Vec<u8>,
}

/// The multicast group of device number `i` of a scenario.
pub fn group_of(config: &ScenarioConfig, i: usize) -> Eui {
    Eui(config.group_eui + (i % config.groups.max(1)) as u64)
}

/// The server's side of a scenario: profile, devices with the keys the
/// server holds, groups, set, region, file, backend instances and
/// campaign. With several groups each device names its own (round robin);
/// with several backend instances each group is sent through one of them
/// (round robin), the first being the campaign's.
pub fn provision_objects(store: &Store, vault: &Arc<Vault>, now_ms: u64, config: &ScenarioConfig, devices: &[Provisioned], backends: Vec<BackendInstanceInput>) -> Result<Objects, ScenarioError> {
    let now = chrono::DateTime::from_timestamp_millis(now_ms as i64).unwrap_or_default();
    let ctx = InputContext { store, vault, now };
    let mut backend_instances = Vec::with_capacity(backends.len());
    for input in backends {
        let backend = BackendInstance::from_input(input, None, &ctx)?;
        store.put(&backend)?;
        backend_instances.push(backend.id);
    }
    let Some(campaign_backend) = backend_instances.first().cloned() else {
        return Err(FieldError::new("backendInstance", "a scenario needs a backend instance").into());
    };
    let groups = config.groups.max(1);
    let profile = DeviceProfileInput {
        name: "simulated device".into(),
        description: String::new(),
        producer_id: None,
        module_id: None,
        hw_revision: None,
        hw_version: None,
        time_tolerance: None,
        default_ul_period: Some(config.fleet.uplink_period_s as u32),
        mcu_type: None,
        fuota_library: Some(config.library.clone()),
        smart_delta_key: None,
        fports: config.fports.clone(),
        hw_target: None,
        device_stack: config.profile_stack,
    };
    let profile = DeviceProfile::from_input(profile, None, &ctx)?;
    store.put(&profile)?;
    for (i, p) in devices.iter().enumerate() {
        let input = DeviceInput {
            dev_eui: p.dev_eui,
            name: format!("sim-{}", p.dev_eui),
            tag: "simulated".into(),
            multicast_classes: vec![config.session_class],
            lorawan_version: LorawanVersion::V1_0,
            device_key: Some(hex(&p.server_key)),
            mc_ke_key: None,
            device_profile: Some(profile.id.clone()),
            firmware: Some("1.0.0.0".into()),
            mc_group: (groups > 1).then(|| group_of(config, i)),
            uplink_rate: None,
        };
        // The groups come first: a device names its own.
        if i < groups {
            let group = MulticastGroupInput {
                dev_eui: group_of(config, i),
                name: format!("simulated group {}", i + 1),
                tag: String::new(),
                ism_band: IsmBand::EU868,
                dl_dwell_time: false,
                // One McAddr per group, also across scenarios sharing a fleet.
                dev_addr: format!("{:08x}", 0x0100_0000 | (group_of(config, i).0 as u32 & 0x00ff_ffff)),
                group_id: 0,
                frequency: 869_525_000,
                data_rate: 5,
                redundancy: None,
                ping_slot_periodicity: if config.session_class == SessionClass::B { 4 } else { 0 },
                session_class: config.session_class,
                mc_key: None,
                backend_instance: (backend_instances.len() > 1).then(|| backend_instances[i % backend_instances.len()].clone()),
            };
            store.put(&MulticastGroup::from_input(group, None, &ctx)?)?;
        }
        store.put(&Device::from_input(input, None, &ctx)?)?;
    }
    let group_euis: Vec<Eui> = (0..groups.min(devices.len()).max(1)).map(|i| group_of(config, i)).collect();
    let set = DeviceSet::from_input(DeviceSetInput { name: "fleet".into(), description: String::new(), devices: devices.iter().map(|p| p.dev_eui).collect() }, None, &ctx)?;
    store.put(&set)?;
    let region = Region::from_input(RegionInput { name: "region".into(), description: String::new(), multicast_groups: group_euis.clone() }, None, &ctx)?;
    store.put(&region)?;
    let smart_delta_key = match &config.signing_key {
        Some(secret) => {
            let pem = smart_delta_pem(secret);
            let key = SmartDeltaKey::from_input(SmartDeltaKeyInput { name: "fleet signing key".into(), description: String::new(), private_key: Some(pem) }, None, &ctx)?;
            store.put(&key)?;
            Some(key.id)
        }
        None => None,
    };
    let base = &config.fleet.firmware.image;
    let image = new_image(base, config.file_size, config.fleet.seed);
    let file = if matches!(config.campaign_type, CampaignType::MulticastSetup | CampaignType::Message) {
        None
    } else {
        // What the devices run, stored so a delta can be made from it.
        let base_version = (!base.is_empty()).then(|| airlift::model::firmware_version_text(config.fleet.firmware.version));
        if let Some(v) = &base_version {
            let id = store.blobs().put(base)?;
            let input = FileInput { name: format!("firmware-{v}.bin"), firmware_version: Some(v.clone()), ..FileInput::default() };
            store.put(&StoredFile::with_metadata(id, base.len() as u64, input, None, &ctx)?)?;
        }
        let id = store.blobs().put(&image)?;
        let input = FileInput {
            name: "firmware-2.0.0.0.bin".into(),
            firmware_version: Some("2.0.0.0".into()),
            firmware_base_version: base_version,
            smart_delta_key,
            ..FileInput::default()
        };
        store.put(&StoredFile::with_metadata(id.clone(), image.len() as u64, input, None, &ctx)?)?;
        Some(id)
    };
    let campaign = CampaignInput {
        name: "simulated campaign".into(),
        description: String::new(),
        campaign_type: config.campaign_type,
        device_sets: vec![set.id],
        regions: vec![region.id],
        reboot_at: None,
        session_start: None,
        file,
        max_duration_minutes: config.max_duration_minutes,
        success_threshold: config.success_threshold,
        device_library: config.library.clone(),
        backend_instance: campaign_backend.clone(),
        update_type: config.update_type.clone(),
        message: config.message.clone(),
    };
    let campaign = Campaign::from_input(campaign, None, &ctx)?;
    store.put(&campaign)?;
    Ok(Objects { campaign_id: campaign.id, backend_instance: campaign_backend, backend_instances, groups: group_euis, image })
}

/// The new firmware: random bytes, or (when devices run a base image) the
/// base with the edits a release makes: patched words, a grown function,
/// a removed one, a new section at the end.
fn new_image(base: &[u8], size: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    if base.is_empty() {
        return (0..size).map(|_| rng.gen()).collect();
    }
    let mut image = base.to_vec();
    for _ in 0..image.len() / 500 {
        let at = rng.gen_range(0..image.len());
        image[at] = image[at].wrapping_add(rng.gen_range(1..8));
    }
    let at = rng.gen_range(0..image.len());
    image.splice(at..at, (0..image.len() / 50).map(|_| rng.gen::<u8>()));
    let at = rng.gen_range(0..(image.len() / 2).max(1));
    image.drain(at..at + image.len() / 40);
    image.extend((0..image.len() / 20).map(|_| rng.gen::<u8>()));
    image
}

/// A firmware-like base image: code-ish runs with some entropy.
pub fn base_image(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xba5e);
    (0..size).map(|i| if i % 3 == 0 { rng.gen() } else { (i / 7) as u8 }).collect()
}

/// PKCS#8 PEM of the P-256 key with this secret scalar.
pub fn smart_delta_pem(secret: &[u8; 32]) -> String {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let key = p256::ecdsa::SigningKey::from_slice(secret).expect("a valid P-256 scalar");
    key.to_pkcs8_pem(LineEnding::LF).expect("P-256 keys encode").to_string()
}

/// Raw X ‖ Y public key for that secret, as a device build embeds it.
pub fn smart_delta_public(secret: &[u8; 32]) -> Vec<u8> {
    let key = p256::ecdsa::SigningKey::from_slice(secret).expect("a valid P-256 scalar");
    airlift::keys::smart_delta::public_raw(&key).to_vec()
}
