//! Keys in configuration messages travel sealed with the cluster key, a
//! 256-bit key only our core and agents hold (AES-256-GCM, the vault's
//! sealing). Sealed values go in fields we add beside the seed's, named
//! with `Sealed` (`genAppKeySealed`, `appKeySealed`, `mcKeKeySealed`,
//! `mcKeySealed`, `asKeySealed`); the seed's clear fields are accepted only
//! by an agent started in the seed's compatibility mode.

use super::seed::{ConfigMessage, SeedError};
use crate::keys::{Sealed, Vault};
use serde_json::{Map, Value};

/// Open one key field (`at` names where it is, for errors).
fn open_one(clear: &mut Option<String>, extra: &mut Map<String, Value>, field: &str, at: &str, cluster: Option<&Vault>, accept_clear: bool) -> Result<(), SeedError> {
    let sealed_field = format!("{field}Sealed");
    if let Some(sealed) = extra.remove(&sealed_field) {
        let cluster = cluster.ok_or_else(|| SeedError::field(format!("{at}.{sealed_field}"), "a sealed key, and this agent has no cluster key"))?;
        let sealed: Sealed = serde_json::from_value(sealed).map_err(|_| SeedError::field(format!("{at}.{sealed_field}"), "must be a string"))?;
        let secret = cluster.open_sealed(&sealed).map_err(|_| SeedError::field(format!("{at}.{sealed_field}"), "does not open with the cluster key"))?;
        *clear = Some(String::from_utf8(secret.expose().to_vec()).map_err(|_| SeedError::field(format!("{at}.{sealed_field}"), "does not hold text"))?);
        return Ok(());
    }
    if clear.is_some() && !accept_clear {
        return Err(SeedError::field(format!("{at}.{field}"), "a key in clear: accepted only in the seed's compatibility mode (--accept-clear-keys); our core seals keys with the cluster key"));
    }
    Ok(())
}

/// Open the sealed keys of a message in place (they are then in the
/// seed's fields, in memory only); refuse clear keys unless `accept_clear`.
pub fn open_keys(msg: &mut ConfigMessage, cluster: Option<&Vault>, accept_clear: bool) -> Result<(), SeedError> {
    for d in &mut msg.devices {
        open_one(&mut d.gen_app_key, &mut d.extra, "genAppKey", "devices", cluster, accept_clear)?;
        open_one(&mut d.app_key, &mut d.extra, "appKey", "devices", cluster, accept_clear)?;
        open_one(&mut d.mc_ke_key, &mut d.extra, "mcKeKey", "devices", cluster, accept_clear)?;
    }
    for g in &mut msg.mc_groups {
        open_one(&mut g.mc_key, &mut g.extra, "mcKey", "mcGroups", cluster, accept_clear)?;
    }
    for l in &mut msg.lrc {
        open_one(&mut l.as_key, &mut l.extra, "asKey", "lrc", cluster, accept_clear)?;
    }
    if let Some(network) = &mut msg.backend_instance {
        if !network.secrets.is_empty() && !accept_clear {
            return Err(SeedError::field("backendInstance.secrets", "secrets in clear: accepted only in the seed's compatibility mode (--accept-clear-keys)"));
        }
        for (name, sealed) in std::mem::take(&mut network.secrets_sealed) {
            let at = format!("backendInstance.secretsSealed.{name}");
            let cluster = cluster.ok_or_else(|| SeedError::field(at.clone(), "a sealed secret, and this agent has no cluster key"))?;
            let secret = cluster.open_sealed(&serde_json::from_value(Value::String(sealed)).expect("a string is a sealed value")).map_err(|_| SeedError::field(at.clone(), "does not open with the cluster key"))?;
            network.secrets.insert(name, String::from_utf8(secret.expose().to_vec()).map_err(|_| SeedError::field(at, "does not hold text"))?);
        }
    }
    Ok(())
}

fn seal_one(clear: &mut Option<String>, extra: &mut Map<String, Value>, field: &str, cluster: &Vault) {
    if let Some(text) = clear.take() {
        // The key as the message spells it (an AS key keeps its dashes).
        extra.insert(format!("{field}Sealed"), serde_json::to_value(cluster.seal(text.as_bytes())).expect("a sealed value is a string"));
    }
}

/// Seal every key of a message: the clear fields are removed.
pub fn seal_keys(msg: &mut ConfigMessage, cluster: &Vault) {
    for d in &mut msg.devices {
        seal_one(&mut d.gen_app_key, &mut d.extra, "genAppKey", cluster);
        seal_one(&mut d.app_key, &mut d.extra, "appKey", cluster);
        seal_one(&mut d.mc_ke_key, &mut d.extra, "mcKeKey", cluster);
    }
    for g in &mut msg.mc_groups {
        seal_one(&mut g.mc_key, &mut g.extra, "mcKey", cluster);
    }
    for l in &mut msg.lrc {
        seal_one(&mut l.as_key, &mut l.extra, "asKey", cluster);
    }
    if let Some(network) = &mut msg.backend_instance {
        for (name, secret) in std::mem::take(&mut network.secrets) {
            let sealed = serde_json::to_value(cluster.seal(secret.as_bytes())).expect("a sealed value is a string");
            network.secrets_sealed.insert(name, sealed.as_str().unwrap_or_default().to_string());
        }
    }
}

/// A cluster key from its file: 64 hex digits.
pub fn load_cluster_key(path: &std::path::Path) -> std::io::Result<Vault> {
    let text = std::fs::read_to_string(path)?;
    let bytes: [u8; 32] = hex::decode(text.trim()).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| std::io::Error::other("a cluster key file holds 64 hex digits"))?;
    Ok(Vault::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add() -> ConfigMessage {
        ConfigMessage::parse(&std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-002/add.json")).unwrap()).unwrap()
    }

    #[test]
    fn sealed_keys_open_with_the_cluster_key_only_and_clear_ones_need_the_compatibility_mode() {
        let cluster = Vault::new([7; 32]);
        let mut sealed = add();
        seal_keys(&mut sealed, &cluster);
        let text = serde_json::to_string(&sealed).unwrap();
        for clear in ["2b7e151628aed216abf7158809cf4f00", "000102030405060708090a0b0c0d0e0f", "82-5b-6c"] {
            assert!(!text.contains(clear), "{clear} in clear");
        }
        let mut opened = sealed.clone();
        open_keys(&mut opened, Some(&cluster), false).unwrap();
        assert_eq!(opened.devices[1].gen_app_key.as_deref(), Some("2b7e151628aed216abf7158809cf4f00"));
        assert_eq!(opened.devices[0].mc_ke_key.as_deref(), Some("2b7e151628aed216abf7158809cf4f00"));
        assert_eq!(opened.mc_groups[0].mc_key.as_deref(), Some("000102030405060708090a0b0c0d0e0f"));
        assert_eq!(opened.lrc[0].as_key.as_deref(), Some("82-5b-6c-8f-22-a8-10-76-67-c3-41-29-00-34-bf-6f"), "the AS key's own spelling");
        // Another cluster's key does not open them; no key at all neither.
        assert!(matches!(open_keys(&mut sealed.clone(), Some(&Vault::new([8; 32])), false), Err(SeedError::Field { .. })));
        assert!(matches!(open_keys(&mut sealed.clone(), None, true), Err(SeedError::Field { .. })));
        // The seed's clear form: only in the compatibility mode.
        assert!(matches!(open_keys(&mut add(), Some(&cluster), false), Err(SeedError::Field { field, .. }) if field == "devices.mcKeKey"));
        assert!(open_keys(&mut add(), None, true).is_ok());
    }
}
