//! Building the WIT records the device library is called with from the
//! stored objects and the run state.

use super::run::{CampaignRun, DeviceRun, FragLayout, StageMode};
use crate::model::{CampaignType, Device, IsmBand, LorawanVersion, MulticastGroup, SessionClass};
use crate::plugin::device_library as lib;
use crate::plugin::device_library as wit;

pub fn session_class(c: SessionClass) -> wit::SessionClass {
    match c {
        SessionClass::B => wit::SessionClass::ClassB,
        SessionClass::C => wit::SessionClass::ClassC,
    }
}

pub fn band(b: IsmBand) -> lorawan_fuota::region::Band {
    match b {
        IsmBand::EU868 => lorawan_fuota::region::Band::EU868,
        IsmBand::US915 => lorawan_fuota::region::Band::US915,
        IsmBand::AS923 => lorawan_fuota::region::Band::AS923,
    }
}

pub fn multicast_group(g: &MulticastGroup) -> wit::MulticastGroup {
    wit::MulticastGroup {
        group_eui: g.dev_eui.0,
        group_id: g.group_id,
        mc_addr: g.mc_addr(),
        session_class: session_class(g.session_class),
        ism_band: match g.ism_band {
            IsmBand::EU868 => wit::IsmBand::Eu868,
            IsmBand::US915 => wit::IsmBand::Us915,
            IsmBand::AS923 => wit::IsmBand::As923,
        },
        dl_dwell_time: g.dl_dwell_time,
        frequency_hz: g.frequency,
        data_rate: g.data_rate,
        ping_slot_periodicity: g.ping_slot_periodicity,
        // The first frame after setup must be below 2^16 (devices rebuild
        // FCnt32 from 16 bits); every frame of the session stays in range.
        min_fcnt: 0,
        max_fcnt: u32::MAX,
    }
}

pub fn device(d: &Device, run: &DeviceRun) -> wit::DeviceContext {
    wit::DeviceContext {
        dev_eui: d.dev_eui.0,
        lorawan_version: match d.lorawan_version {
            LorawanVersion::V1_0 => wit::LorawanVersion::V10,
            LorawanVersion::V1_1 => wit::LorawanVersion::V11,
        },
        classes: d.multicast_classes.iter().map(|c| session_class(*c)).collect(),
        firmware_version: run.firmware_version,
        hardware_version: None,
        memory: run.memory.iter().map(|(k, v)| wit::Attribute { key: k.clone(), value: v.clone() }).collect(),
        requests_sent: run.attempts,
    }
}

pub fn kind(t: CampaignType) -> lib::CampaignKind {
    match t {
        // A message needs the group set up and nothing the library sends after.
        CampaignType::MulticastSetup | CampaignType::Message => lib::CampaignKind::MulticastSetup,
        CampaignType::BinaryTransfer => lib::CampaignKind::BinaryTransfer,
        CampaignType::FirmwareUpdate => lib::CampaignKind::FirmwareUpdate,
    }
}

pub fn layout_to_wit(l: &FragLayout) -> lib::Fragmentation {
    lib::Fragmentation {
        frag_index: l.frag_index,
        nb_frag: l.nb_frag,
        frag_size: l.frag_size,
        padding: l.padding,
        descriptor: l.descriptor,
        block_ack_delay: l.block_ack_delay,
        session_cnt: None,
    }
}

pub fn campaign(run: &CampaignRun, kind: lib::CampaignKind, group: &MulticastGroup, cancelling: bool) -> lib::CampaignContext {
    lib::CampaignContext {
        campaign_id: run.campaign_id.clone(),
        kind,
        group: multicast_group(group),
        session_start_gps: run.session_start_gps,
        session_timeout: run.session_timeout,
        file_size: run.payload_size,
        payload_sha256: run.payload_sha256.clone().unwrap_or_default(),
        fragmentation: run.layout.as_ref().map(layout_to_wit),
        reboot_gps: run.reboot_gps,
        target_firmware: run.target_firmware,
        base_firmware: run.base_firmware,
        cancelling,
    }
}

pub fn mode(m: lib::StageMode) -> StageMode {
    match m {
        lib::StageMode::Unicast => StageMode::Unicast,
        lib::StageMode::Multicast => StageMode::Multicast,
        lib::StageMode::Fragments => StageMode::Fragments,
        lib::StageMode::WaitSessionStart => StageMode::WaitSessionStart,
        lib::StageMode::DeviceInitiated => StageMode::DeviceInitiated,
        lib::StageMode::Offloaded => StageMode::Offloaded,
    }
}
