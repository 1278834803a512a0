//! 64-bit EUIs (DevEUI, multicast group DevEUI).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A 64-bit EUI, written as 16 hex digits (`70b3d5…`); input may use `-`
/// or `:` separators (`70-b3-d5-…`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Eui(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid EUI '{0}': expected 16 hex digits")]
pub struct EuiParseError(String);

impl FromStr for Eui {
    type Err = EuiParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let clean: String = s.chars().filter(|c| !matches!(c, '-' | ':')).collect();
        if clean.len() != 16 || !clean.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(EuiParseError(s.chars().take(40).collect()));
        }
        u64::from_str_radix(&clean, 16).map(Eui).map_err(|_| EuiParseError(s.into()))
    }
}

impl fmt::Display for Eui {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Eui {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Eui({self})")
    }
}

impl Serialize for Eui {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Eui {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_dashed_forms() {
        assert_eq!("0080ff0000000002".parse::<Eui>().unwrap(), Eui(0x0080ff0000000002));
        assert_eq!("00-80-00-ff-00-00-00-02".parse::<Eui>().unwrap(), Eui(0x008000ff00000002));
        assert_eq!(Eui(0x70b3d5).to_string(), "000000000070b3d5");
    }

    #[test]
    fn rejects_bad_euis() {
        for bad in ["", "123", "0080ff000000000g", "0080ff00000000021", "+080ff0000000002"] {
            assert!(bad.parse::<Eui>().is_err(), "{bad} accepted");
        }
    }
}

/// In the OpenAPI document: a string of 16 hex digits.
impl utoipa::PartialSchema for Eui {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-fA-F]{2}([-:]?[0-9a-fA-F]{2}){7}$"))
            .description(Some("64-bit EUI in 16 hex digits (`-` or `:` separators taken)"))
            .into()
    }
}

impl utoipa::ToSchema for Eui {}
