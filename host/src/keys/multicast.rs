//! A stored multicast group's payload encryption, for networks that forward
//! an application-encrypted multicast payload as it is (ThingPark with
//! `FCntDn`): the host encrypts, so no plugin holds McAppSKey.

use super::Vault;
use crate::model::MulticastGroup;
use lorawan_fuota::keys::{frm_payload_crypt, mc_app_s_key, Key128};

#[derive(Debug, thiserror::Error)]
pub enum GroupKeyError {
    #[error("multicast group {0} has no McKey")]
    NoMcKey(String),
    #[error("multicast group {group}: {why}")]
    Unusable { group: String, why: String },
}

/// `payload` encrypted with the group's McAppSKey for frame counter `fcnt`.
pub fn encrypt_payload(group: &MulticastGroup, vault: &Vault, fcnt: u32, payload: &[u8]) -> Result<Vec<u8>, GroupKeyError> {
    let name = || group.dev_eui.to_string();
    let sealed = group.mc_key.as_ref().ok_or_else(|| GroupKeyError::NoMcKey(name()))?;
    let unusable = |why: String| GroupKeyError::Unusable { group: name(), why };
    let secret = vault.open_sealed(sealed).map_err(|e| unusable(e.to_string()))?;
    let mc_key: Key128 = secret.expose().try_into().map_err(|_| unusable("McKey is not 16 bytes".into()))?;
    let mc_addr = u32::from_str_radix(&group.dev_addr, 16).map_err(|_| unusable("McAddr is not hex".into()))?;
    Ok(frm_payload_crypt(&mc_app_s_key(&mc_key, mc_addr), mc_addr, fcnt, true, payload))
}
