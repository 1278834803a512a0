//! Coded-fragment generation: inside the lorawan-v1/v2 WASM plugins versus
//! the same encoder native, measured in one run and printed as a ratio.
//!
//!     cargo run -p airlift-examples --bin fec-bench

use airlift::clock::SystemClock;
use airlift::keys::Vault;
use airlift::plugin::device_library::Fragmentation;
use airlift::plugin::{bundled, install, HostServices, PluginRuntime};
use airlift::store::Store;
use lorawan_fuota::{fec, ts004, Version};
use std::sync::Arc;
use std::time::Instant;

const FILE_BYTES: usize = 100 * 1024;
const FRAG_SIZE: u8 = 239;
const CODED: u32 = 4000;
const BATCH: u32 = 250;

fn native(data: &[u8], version: Version, m: u32) -> (f64, usize) {
    let enc = fec::Encoder::new(data, FRAG_SIZE, version).unwrap();
    let started = Instant::now();
    let mut bytes = 0;
    for n in m + 1..=m + CODED {
        let (number, payload) = enc.fragment(n).unwrap();
        bytes += ts004::Request::DataFragment { frag_index: 0, n: number, payload }.to_bytes(version).unwrap().len();
    }
    (started.elapsed().as_secs_f64(), bytes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let host = Arc::new(HostServices::new(store.clone(), Arc::new(Vault::new([0; 32])), Arc::new(SystemClock)));
    let runtime = Arc::new(PluginRuntime::new(dir.path().join("compiled"), host)?);
    let data: Vec<u8> = (0..FILE_BYTES).map(|i| (i * 7 + i / 251) as u8).collect();
    let m = fec::Layout::new(data.len(), FRAG_SIZE)?.nb_frag;
    println!("{FILE_BYTES} B payload, FragSize {FRAG_SIZE}, M = {m}, {CODED} coded fragments (WASM in calls of {BATCH})");
    println!("{:<12} {:>14} {:>10} {:>14} {:>10} {:>12}", "library", "native frag/s", "MB/s", "wasm frag/s", "MB/s", "wasm/native");
    for (name, version) in [("lorawan-v1", Version::V1), ("lorawan-v2", Version::V2)] {
        let b = bundled::bundled(name)?;
        let plugin = install(&runtime, &store, b.manifest.clone(), b.wasm())?;
        let layout = Fragmentation { frag_index: 0, nb_frag: m, frag_size: FRAG_SIZE as u16, padding: 0, descriptor: 0, block_ack_delay: 0, session_cnt: None };
        let layout = Fragmentation { padding: fec::Layout::new(data.len(), FRAG_SIZE)?.padding, ..layout };

        let (native_s, native_bytes) = native(&data, version, m);
        let started = Instant::now();
        let mut wasm_bytes = 0;
        for first in (m + 1..=m + CODED).step_by(BATCH as usize) {
            let out = runtime
                .device_library(&plugin)
                .fragments(data.clone(), layout, first, BATCH)
                .await?
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            wasm_bytes += out.iter().map(|f| f.downlink.payload.len()).sum::<usize>();
        }
        let wasm_s = started.elapsed().as_secs_f64();
        assert_eq!(wasm_bytes, native_bytes, "both produced the same amount");
        let rate = |s: f64| CODED as f64 / s;
        let mbps = |b: usize, s: f64| b as f64 / s / 1e6;
        println!(
            "{name:<12} {:>14.0} {:>10.2} {:>14.0} {:>10.2} {:>11.2}x",
            rate(native_s),
            mbps(native_bytes, native_s),
            rate(wasm_s),
            mbps(wasm_bytes, wasm_s),
            wasm_s / native_s
        );
    }
    Ok(())
}
