//! Whatever bytes arrive on a package's port, the codecs answer with
//! commands or errors: no panic is reachable from an uplink or a downlink.

use lorawan_fuota::{ts003, ts004, ts005, ts006, Version};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn every_parser_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let _ = ts003::Request::parse(&bytes);
        let _ = ts003::Uplink::parse(&bytes);
        for version in [Version::V1, Version::V2] {
            let _ = ts004::Request::parse(&bytes, version);
            let _ = ts004::Uplink::parse(&bytes, version);
        }
        let _ = ts005::Request::parse(&bytes);
        let _ = ts005::Uplink::parse(&bytes);
        let _ = ts006::Request::parse(&bytes);
        let _ = ts006::Uplink::parse(&bytes);
    }

    /// A command that parses writes back to bytes, or says why not.
    #[test]
    fn parsed_uplinks_write_back_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        for version in [Version::V1, Version::V2] {
            for command in ts004::Uplink::parse(&bytes, version).commands {
                let _ = command.to_bytes(version);
            }
        }
        for command in ts005::Uplink::parse(&bytes).commands {
            let _ = command.to_bytes();
        }
        // Requests as a device reads them, written back by a server.
        for version in [Version::V1, Version::V2] {
            for command in ts004::Request::parse(&bytes, version).commands {
                let _ = command.to_bytes(version);
            }
        }
        for command in ts005::Request::parse(&bytes).commands {
            let _ = command.to_bytes();
        }
    }
}
