//! A device fed any package, base image or key gets an answer, never a
//! panic: the decoder runs on data that crossed the air.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_package_base_and_key_are_refused_or_installed(
        package in proptest::collection::vec(any::<u8>(), 0..512),
        base in proptest::collection::vec(any::<u8>(), 0..256),
        key in proptest::collection::vec(any::<u8>(), 0..70),
    ) {
        let _ = smart_delta::package::parse(&package);
        let _ = smart_delta::device::install(&package, &base, &key);
    }
}
