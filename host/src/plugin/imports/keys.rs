//! `keys`: derived key material by handle. Each function is open to the
//! plugin kinds that need it and nobody else; root keys never leave here.

use super::super::bindings::latest::imports::airlift::plugin::keys::{Host, KeyError};
use lorawan_fuota::keys::{self as lorawan, Key128, RootKeyKind};
use crate::keys::Sealed;
use crate::model::{Device, Eui, LorawanVersion, MulticastGroup, Object, PluginKind, SmartDeltaKey};
use crate::plugin::CallState;
use sha2::{Digest, Sha256};

type KeyResult<T> = wasmtime::Result<Result<T, KeyError>>;

impl CallState {
    fn require_kind(&self, kind: PluginKind, what: &str) -> Result<(), KeyError> {
        if self.plugin.kind == kind {
            Ok(())
        } else {
            Err(KeyError::Denied(format!("{what} is for {kind} plugins")))
        }
    }

    fn object<T: Object>(&self, eui: u64) -> Result<T, KeyError> {
        let id = Eui(eui).to_string();
        match self.host.store.get::<T>(&id) {
            Ok(Some(o)) => Ok(o),
            Ok(None) => Err(KeyError::Unknown(format!("no {} {id}", T::KIND.trim_end_matches('s')))),
            Err(e) => Err(KeyError::Unknown(format!("store: {e}"))),
        }
    }

    fn key128(&self, sealed: Option<&Sealed>, what: &str) -> Result<Key128, KeyError> {
        let sealed = sealed.ok_or_else(|| KeyError::Unknown(format!("{what} is not set")))?;
        let secret = self.host.vault.open_sealed(sealed).map_err(|e| KeyError::Unknown(format!("{what}: {e}")))?;
        secret.expose().try_into().map_err(|_| KeyError::Invalid(format!("{what} is not 16 bytes")))
    }

    fn device_root(&self, device: u64) -> Result<(Key128, RootKeyKind), KeyError> {
        let d: Device = self.object(device)?;
        let kind = match d.lorawan_version {
            LorawanVersion::V1_0 => RootKeyKind::GenAppKey,
            LorawanVersion::V1_1 => RootKeyKind::AppKey,
        };
        Ok((self.key128(d.device_key.as_ref(), "device key")?, kind))
    }

    /// The device's McKEKey: given as such, else derived from its root key.
    fn mc_ke_key(&self, device: u64) -> Result<Key128, KeyError> {
        let d: Device = self.object(device)?;
        if d.mc_ke_key.is_some() {
            return self.key128(d.mc_ke_key.as_ref(), "McKEKey");
        }
        let (root, kind) = self.device_root(device)?;
        Ok(lorawan::mc_ke_key(&lorawan::mc_root_key(&root, kind)))
    }

    /// A backend gets a group's session keys only while its instance runs
    /// a campaign on that group.
    fn require_serves_group(&self, group: u64) -> Result<(), KeyError> {
        let grant = self.grant.as_ref().ok_or_else(|| KeyError::Denied("no backend instance".into()))?;
        let g: MulticastGroup = self.object(group)?;
        let serves = self
            .any_running_run(|r| {
                r.group == Eui(group) && self.host.store.get::<crate::model::Campaign>(&r.campaign_id).ok().flatten().is_some_and(|c| crate::engine::backend_of(&c, &g) == grant.instance_id)
            })
            .map_err(|e| KeyError::Unknown(e.to_string()))?;
        if serves {
            Ok(())
        } else {
            Err(KeyError::Denied(format!("backend instance '{}' runs no campaign on multicast group {}", grant.instance_id, Eui(group))))
        }
    }

    /// A device library gets a group's keys only while a campaign it runs
    /// uses that group.
    fn require_library_runs_group(&self, group: u64) -> Result<(), KeyError> {
        let runs = self.any_running_run(|r| r.group == Eui(group) && r.library_name == self.plugin.name).map_err(|e| KeyError::Unknown(e.to_string()))?;
        if runs {
            Ok(())
        } else {
            Err(KeyError::Denied(format!("device library '{}' runs no campaign on multicast group {}", self.plugin.name, Eui(group))))
        }
    }

    fn group_key(&self, group: u64) -> Result<(Key128, u32), KeyError> {
        let g: MulticastGroup = self.object(group)?;
        let addr = u32::from_str_radix(&g.dev_addr, 16).map_err(|_| KeyError::Invalid("group devAddr".into()))?;
        Ok((self.key128(g.mc_key.as_ref(), "McKey")?, addr))
    }
}

impl Host for CallState {
    fn mc_key_encrypted(&mut self, device: u64, group: u64) -> KeyResult<Vec<u8>> {
        Ok((|| {
            self.require_kind(PluginKind::DeviceLibrary, "mc-key-encrypted")?;
            let (mc_key, _) = self.group_key(group)?;
            let kek = self.mc_ke_key(device)?;
            Ok(lorawan::mc_key_encrypted(&kek, &mc_key).to_vec())
        })())
    }

    fn mc_key_encrypted_zero_kek(&mut self, group: u64) -> KeyResult<Vec<u8>> {
        Ok((|| {
            self.require_kind(PluginKind::DeviceLibrary, "mc-key-encrypted-zero-kek")?;
            self.require_library_runs_group(group)?;
            let (mc_key, _) = self.group_key(group)?;
            Ok(lorawan::mc_key_encrypted(&[0; 16], &mc_key).to_vec())
        })())
    }

    fn data_block_mic(&mut self, device: u64, session_cnt: u16, frag_index: u8, descriptor: u32, payload_sha256: String) -> KeyResult<u32> {
        Ok((|| {
            self.require_kind(PluginKind::DeviceLibrary, "data-block-mic")?;
            let (root, _) = self.device_root(device)?;
            let data = self
                .host
                .store
                .blobs()
                .read(&payload_sha256)
                .map_err(|e| KeyError::Unknown(format!("payload {payload_sha256}: {e}")))?;
            let int_key = lorawan::data_block_int_key(&root);
            Ok(lorawan::data_block_mic(&int_key, session_cnt, frag_index, descriptor, &data))
        })())
    }

    fn multicast_session_keys(&mut self, group: u64) -> KeyResult<(Vec<u8>, Vec<u8>)> {
        Ok((|| {
            self.require_kind(PluginKind::Backend, "multicast-session-keys")?;
            self.require_serves_group(group)?;
            let (mc_key, addr) = self.group_key(group)?;
            Ok((lorawan::mc_app_s_key(&mc_key, addr).to_vec(), lorawan::mc_net_s_key(&mc_key, addr).to_vec()))
        })())
    }

    fn encrypt_multicast_payload(&mut self, group: u64, fcnt: u32, payload: Vec<u8>) -> KeyResult<Vec<u8>> {
        Ok((|| {
            self.require_kind(PluginKind::Backend, "encrypt-multicast-payload")?;
            self.require_serves_group(group)?;
            let g: MulticastGroup = self.object(group)?;
            crate::keys::multicast::encrypt_payload(&g, &self.host.vault, fcnt, &payload).map_err(|e| KeyError::Invalid(e.to_string()))
        })())
    }

    fn sign(&mut self, key_id: String, message: Vec<u8>) -> KeyResult<Vec<u8>> {
        Ok((|| {
            self.require_kind(PluginKind::UpdateType, "sign")?;
            let key = match self.host.store.get::<SmartDeltaKey>(&key_id) {
                Ok(Some(k)) if !k.archived => k,
                _ => return Err(KeyError::Unknown(format!("no Smart Delta key '{key_id}'"))),
            };
            let signing = crate::keys::smart_delta::unseal(&self.host.vault, &key).map_err(|e| KeyError::Invalid(e.to_string()))?;
            Ok(crate::keys::smart_delta::sign_der(&signing, &message))
        })())
    }

    fn digest_with_secret(&mut self, secret: String, message: String) -> KeyResult<String> {
        Ok((|| {
            self.require_kind(PluginKind::Backend, "digest-with-secret")?;
            let grant = self.grant.as_ref().ok_or_else(|| KeyError::Denied("no backend instance".into()))?;
            let sealed = grant.secrets.get(&secret).ok_or_else(|| KeyError::Unknown(format!("no secret '{secret}'")))?;
            let value = self.host.vault.open_sealed(sealed).map_err(|e| KeyError::Unknown(e.to_string()))?;
            let mut h = Sha256::new();
            h.update(message.as_bytes());
            h.update(value.expose());
            Ok(hex::encode(h.finalize()))
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::keys::Vault;
    use crate::model::{Device, MulticastGroup, PluginManifest, SessionClass};
    use crate::plugin::{BackendGrant, HostServices};
    use crate::store::Store;
    use std::sync::Arc;

    fn state(kind: PluginKind, store: &Store, vault: &Arc<Vault>) -> CallState {
        let manifest = PluginManifest {
            name: "p".into(),
            kind,
            version: "1".into(),
            wit_version: "0.2.0".into(),
            description: String::new(),
            allowed_outbound_hosts: vec![],
            limits: Default::default(),
            multicast_encryption: Default::default(),
        };
        let host = Arc::new(HostServices::new(store.clone(), vault.clone(), Arc::new(SystemClock)));
        let mut secrets = std::collections::BTreeMap::new();
        secrets.insert("asKey".to_string(), vault.seal(b"46ab678cd45df4a4e4b375Eacd096acc"));
        let grant = Arc::new(BackendGrant { instance_id: "1".into(), secrets, ..Default::default() });
        CallState::for_tests(manifest, host, Some(grant))
    }

    #[tokio::test]
    async fn each_key_function_is_open_to_its_plugin_kind_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let vault = Arc::new(Vault::new([9; 32]));
        let root = [3u8; 16];
        store
            .put(&Device {
                dev_eui: Eui(1),
                name: String::new(),
                tag: String::new(),
                multicast_classes: vec![SessionClass::C],
                lorawan_version: LorawanVersion::V1_0,
                device_key: Some(vault.seal(&root)),
                mc_ke_key: None,
                device_profile: None,
                firmware: None,
                firmware_changed: None,
                firmware_changed_by: None,
                mc_group: None,
                uplink_rate: None,
                archived: false,
            })
            .unwrap();
        store
            .put(&MulticastGroup {
                dev_eui: Eui(2),
                name: String::new(),
                tag: String::new(),
                ism_band: crate::model::IsmBand::EU868,
                dl_dwell_time: false,
                dev_addr: "01020304".into(),
                group_id: 0,
                frequency: 869_525_000,
                data_rate: 5,
                redundancy: None,
                ping_slot_periodicity: 0,
                session_class: SessionClass::C,
                mc_key: Some(vault.seal(&[5; 16])),
                backend_instance: None,
                archived: false,
            })
            .unwrap();

        let mut library = state(PluginKind::DeviceLibrary, &store, &vault);
        let encrypted = library.mc_key_encrypted(1, 2).unwrap().unwrap();
        let kek = lorawan::mc_ke_key(&lorawan::mc_root_key(&root, RootKeyKind::GenAppKey));
        assert_eq!(encrypted, lorawan::mc_key_encrypted(&kek, &[5; 16]).to_vec());
        assert!(matches!(library.mc_key_encrypted(1, 99).unwrap(), Err(KeyError::Unknown(_))));
        // A device given its McKEKey (seed 002's mcKeKey) is sent the
        // McKey under that key, with no root key to derive one from.
        let mut given = store.get::<Device>(&Eui(1).to_string()).unwrap().unwrap();
        given.dev_eui = Eui(3);
        given.device_key = None;
        given.mc_ke_key = Some(vault.seal(&[7; 16]));
        store.put(&given).unwrap();
        assert_eq!(library.mc_key_encrypted(3, 2).unwrap().unwrap(), lorawan::mc_key_encrypted(&[7; 16], &[5; 16]).to_vec());
        assert!(matches!(library.multicast_session_keys(2).unwrap(), Err(KeyError::Denied(_))));
        // The zero-McKEKey form only for a group of a campaign the library
        // runs (the MultiTech campaigns of tests/vendor_library.rs take
        // the allowed path); never for a backend.
        assert!(matches!(library.mc_key_encrypted_zero_kek(2).unwrap(), Err(KeyError::Denied(_))));
        assert!(matches!(state(PluginKind::Backend, &store, &vault).mc_key_encrypted_zero_kek(2).unwrap(), Err(KeyError::Denied(_))));
        // Nor can it read a payload no campaign of it delivers, whatever
        // the name it gives.
        let sha = store.blobs().put(b"firmware").unwrap();
        use crate::plugin::bindings::latest::imports::airlift::plugin::payload::{Host as _, PayloadError};
        assert!(matches!(library.read(sha.clone(), 0, 8).unwrap(), Err(PayloadError::Invalid(_))));
        assert!(matches!(library.size("../../db".into()).unwrap(), Err(PayloadError::Invalid(_))));
        assert!(matches!(library.read(sha.clone(), 0, 1 << 20).unwrap(), Err(PayloadError::Invalid(_))));
        assert!(matches!(state(PluginKind::Backend, &store, &vault).read(sha, 0, 8).unwrap(), Err(PayloadError::Invalid(_))));
        assert!(matches!(library.sign("1".into(), vec![]).unwrap(), Err(KeyError::Denied(_))));
        assert!(matches!(library.digest_with_secret("asKey".into(), "x".into()).unwrap(), Err(KeyError::Denied(_))));

        let mut backend = state(PluginKind::Backend, &store, &vault);
        assert!(matches!(backend.mc_key_encrypted(1, 2).unwrap(), Err(KeyError::Denied(_))));
        assert!(matches!(backend.data_block_mic(1, 1, 0, 0, String::new()).unwrap(), Err(KeyError::Denied(_))));
        // No campaign of this instance runs on group 2: its keys stay in the
        // host (the ChirpStack end-to-end tests take the allowed path).
        assert!(matches!(backend.multicast_session_keys(2).unwrap(), Err(KeyError::Denied(_))));
        assert!(matches!(backend.encrypt_multicast_payload(2, 7, vec![1, 2, 3]).unwrap(), Err(KeyError::Denied(_))));
        assert!(matches!(library.encrypt_multicast_payload(2, 7, vec![1, 2, 3]).unwrap(), Err(KeyError::Denied(_))));
        // ThingPark's token vector from the specs.
        let token = backend
            .digest_with_secret("asKey".into(), "DevEUI=000000000F1D8693&FPort=1&Payload=00&AS_ID=app1.sample.com&Time=2016-01-11T14:28:00".into())
            .unwrap()
            .unwrap();
        assert_eq!(token, "b5a84fe9c8921e9de359e3041a37b76c4b122f6f9b83577b5596c842052f7e62");
        assert!(matches!(backend.digest_with_secret("nope".into(), "x".into()).unwrap(), Err(KeyError::Unknown(_))));
    }
}
