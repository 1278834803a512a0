//! A device fed any PLAIN payload gets the image or an error, never a panic.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn any_payload_is_decoded_or_refused(payload in proptest::collection::vec(any::<u8>(), 0..512), hardware in any::<Option<u64>>()) {
        let _ = plain_image::decode(&payload, hardware);
    }
}
