//! FPort overrides. A device library declares its packages' default FPorts
//! (`describe().ports`); a device profile may move a package to another
//! FPort. The host translates at the boundary, so libraries always see
//! their defaults and never need configuring.

use super::FieldError;
use std::collections::BTreeMap;

/// Translation between the FPorts on the air and a library's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMap {
    /// air FPort → library FPort, and back.
    to_library: BTreeMap<u8, u8>,
    to_air: BTreeMap<u8, u8>,
}

impl PortMap {
    /// `defaults`: (package name, library FPort) from the library;
    /// `overrides`: package name → FPort on the air, from the profile.
    pub fn new(defaults: &[(String, u8)], overrides: &BTreeMap<String, u8>) -> Result<Self, FieldError> {
        let mut map = PortMap::default();
        for (package, air) in overrides {
            let Some((_, library)) = defaults.iter().find(|(p, _)| p == package) else {
                return Err(FieldError::new("fports", format!("the device library has no package '{package}'")));
            };
            if !(1..=223).contains(air) {
                return Err(FieldError::new("fports", format!("FPort {air} for '{package}' is outside 1-223")));
            }
            if map.to_library.insert(*air, *library).is_some() {
                return Err(FieldError::new("fports", format!("FPort {air} is given to two packages")));
            }
            map.to_air.insert(*library, *air);
        }
        // A default port now used by another package must not be read as the old one.
        for (_, library) in defaults {
            if !map.to_air.contains_key(library) && map.to_library.contains_key(library) {
                return Err(FieldError::new("fports", format!("FPort {library} is taken by a moved package")));
            }
        }
        Ok(map)
    }

    /// FPort as the library knows it, for an uplink received on `air`.
    pub fn to_library(&self, air: u8) -> u8 {
        self.to_library.get(&air).copied().unwrap_or(air)
    }

    /// FPort to send on, for a downlink the library built on `library`.
    pub fn to_air(&self, library: u8) -> u8 {
        self.to_air.get(&library).copied().unwrap_or(library)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<(String, u8)> {
        vec![("remote-multicast-setup".into(), 200), ("fragmentation".into(), 201), ("clock-sync".into(), 202)]
    }

    #[test]
    fn moved_packages_translate_both_ways() {
        let overrides = BTreeMap::from([("fragmentation".to_string(), 30u8)]);
        let map = PortMap::new(&defaults(), &overrides).unwrap();
        assert_eq!(map.to_air(201), 30);
        assert_eq!(map.to_library(30), 201);
        assert_eq!(map.to_air(200), 200);
        assert_eq!(map.to_library(202), 202);
    }

    #[test]
    fn bad_overrides_are_refused() {
        let unknown = BTreeMap::from([("nope".to_string(), 30u8)]);
        assert_eq!(PortMap::new(&defaults(), &unknown).unwrap_err().field, "fports");
        let zero = BTreeMap::from([("fragmentation".to_string(), 0u8)]);
        assert!(PortMap::new(&defaults(), &zero).is_err());
        let clash = BTreeMap::from([("fragmentation".to_string(), 30u8), ("clock-sync".to_string(), 30u8)]);
        assert!(PortMap::new(&defaults(), &clash).is_err());
        let taken = BTreeMap::from([("fragmentation".to_string(), 200u8)]);
        assert!(PortMap::new(&defaults(), &taken).is_err());
    }
}
