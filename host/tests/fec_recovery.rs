//! TS004 FEC end to end: the server-side encoder (the code the plugins run)
//! against the independent device decoder, under random loss. Prints how
//! many fragments each case needed (`cargo test -- --nocapture`).

use airlift_sim::FragDecoder;
use lorawan_fuota::fec::Encoder;
use lorawan_fuota::Version;
use rand::{Rng, SeedableRng};

/// Transmissions until the device completes, with independent loss.
fn transmissions_needed(data: &[u8], frag_size: u8, version: Version, loss: f64, rng: &mut impl Rng) -> (u32, u32) {
    let enc = Encoder::new(data, frag_size, version).unwrap();
    let m = enc.layout().nb_frag;
    let mut dec = FragDecoder::new(m, frag_size as usize, version == Version::V2);
    let (mut sent, mut received) = (0u32, 0u32);
    for n in 1.. {
        sent += 1;
        if rng.gen_bool(loss) {
            continue;
        }
        let (number, row) = enc.fragment(n).unwrap();
        received += 1;
        if dec.push(number as u32, &row).complete {
            let rebuilt = &dec.data().unwrap()[..data.len()];
            assert_eq!(rebuilt, data, "M={m} rebuilt the wrong data");
            return (sent, received);
        }
        assert!(n < 16_000, "M={m} loss={loss} never completed");
    }
    unreachable!()
}

#[test]
fn devices_rebuild_the_payload_under_loss_for_every_size() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for version in [Version::V1, Version::V2] {
        for m in [1u32, 10, 100, 1000] {
            let frag_size = 16u8;
            let data: Vec<u8> = (0..m as usize * frag_size as usize - 3).map(|_| rng.gen()).collect();
            for loss in [0.0, 0.1, 0.2, 0.3, 0.4] {
                let (sent, received) = transmissions_needed(&data, frag_size, version, loss, &mut rng);
                println!("{version:?} M={m:4} loss={loss:.1}: sent {sent:5}, received {received:5} (M+{})", received - m);
                assert!(received >= m);
                if loss == 0.0 {
                    assert_eq!(received, m, "no loss needs exactly the uncoded fragments");
                }
            }
        }
    }
}

#[test]
fn mean_overhead_at_m_100_is_under_two_fragments() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let data: Vec<u8> = (0..100 * 8).map(|i| (i * 13 % 256) as u8).collect();
    for version in [Version::V1, Version::V2] {
        let trials = 1000;
        let mut extra = 0u64;
        for _ in 0..trials {
            let loss = rng.gen_range(0.0..0.4);
            let (_, received) = transmissions_needed(&data, 8, version, loss, &mut rng);
            extra += (received - 100) as u64;
        }
        let mean = extra as f64 / trials as f64;
        println!("{version:?} M=100, {trials} trials, loss 0-40 %: mean {mean:.3} fragments above M");
        assert!(mean < 2.0, "{version:?}: mean overhead {mean}");
    }
}
