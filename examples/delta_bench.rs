//! LZ4DICT patch size against the alternatives on real firmware pairs
//! (`examples/firmware/`), with fragments and time on air at EU868 DR5 and
//! the RAM a streaming device decoder needs.
//!
//! `cargo run --release -p airlift-examples --bin delta-bench`

use lorawan_fuota::region::{self, Band};
use p256::ecdsa::{signature::Signer, DerSignature, SigningKey};
use smart_delta::BlockParams;
use std::path::Path;

const PAIRS: &[(&str, &str, &str)] = &[
    ("SeaBIOS 1.16.2 → 1.16.3 bios.bin", "seabios-1.16.2-bios.bin", "seabios-1.16.3-bios.bin"),
    (
        "SeaBIOS 1.16.2 → 1.16.3 vgabios",
        "seabios-1.16.2-vgabios-stdvga.bin",
        "seabios-1.16.3-vgabios-stdvga.bin",
    ),
    ("OpenSBI 1.1 → 1.6 fw_jump (riscv64)", "opensbi-1.1-fw_jump.bin", "opensbi-1.6-fw_jump.bin"),
];

/// TS004 DataFragment header: CID + 2-byte index.
const FRAGMENT_OVERHEAD: u16 = 3;

fn bsdiff_bzip2(base: &[u8], new: &[u8]) -> usize {
    let mut patch = Vec::new();
    qbsdiff::Bsdiff::new(base, new).compare(std::io::Cursor::new(&mut patch)).expect("bsdiff");
    patch.len()
}

fn main() -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware");
    let key = SigningKey::from_slice(&[7u8; 32])?;
    let public_key = key.verifying_key().to_encoded_point(false).as_bytes()[1..].to_vec();
    let mut device_ram = 0;
    let max = region::max_app_payload(Band::EU868, 5, false).expect("DR5");
    let frag = max - FRAGMENT_OVERHEAD;
    let toa_us = region::downlink_time_on_air_us(Band::EU868, 5, max).expect("DR5");
    println!(
        "sizes in bytes; fragments of {frag} B at EU868 DR5, {:.1} ms on air each",
        toa_us as f64 / 1000.0
    );
    println!(
        "{:<38} {:>8} {:>8} {:>9} {:>11} {:>8} {:>9} {:>7} {:>6} {:>8} {:>7}",
        "pair", "full", "lz4", "lz4+dict", "bsdiff+bz2", "LZ4DICT", "vs bsdiff", "frags", "vs full", "air s", "dev RAM"
    );
    let mut ratios = Vec::new();
    for (name, base_file, new_file) in PAIRS {
        let base = std::fs::read(dir.join(base_file))?;
        let new = std::fs::read(dir.join(new_file))?;
        let lz4 = lz4_flex::block::compress(&new).len();
        // LZ4's offsets are 16-bit: only the last 64 KiB of a dictionary count.
        let lz4_dict = lz4_flex::block::compress_with_dict(&new, &base[base.len().saturating_sub(65_535)..]).len();
        let reference = bsdiff_bzip2(&base, &new);
        let package = smart_delta::build(&base, &new, 1, 2, BlockParams::DEFAULT)?;
        let signature: DerSignature = key.sign(smart_delta::message_to_sign(&package.bytes));
        let mut signed = package.bytes.clone();
        signed.extend_from_slice(signature.as_bytes());
        // As a device does it: verify, then stream the patch.
        let installed = smart_delta::device::install(&signed, &base, &public_key)?;
        anyhow::ensure!(installed.image == new, "{name}: the package does not rebuild the image");
        device_ram = device_ram.max(installed.ram_bytes);
        let size = signed.len();
        let frags = size.div_ceil(frag as usize);
        let full_frags = new.len().div_ceil(frag as usize);
        let ratio = size as f64 / reference as f64;
        ratios.push(ratio);
        println!(
            "{:<38} {:>8} {:>8} {:>9} {:>11} {:>8} {:>8.2}x {:>7} {:>5.1}% {:>8.1} {:>7}",
            name,
            new.len(),
            lz4,
            lz4_dict,
            reference,
            size,
            ratio,
            frags,
            100.0 * frags as f64 / full_frags as f64,
            frags as f64 * toa_us as f64 / 1e6,
            installed.ram_bytes,
        );
    }
    let worst = ratios.iter().cloned().fold(0.0, f64::max);
    println!("LZ4DICT vs bsdiff+bzip2: worst {worst:.2}x (target ≤ 1.30x); device decoder RAM at most {device_ram} B (target < 8192 B)");
    Ok(())
}
