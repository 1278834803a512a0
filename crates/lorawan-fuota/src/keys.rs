//! LoRaWAN multicast key derivations (TS005) and the TS004 v2 data-block
//! integrity code. Every step is AES-128 on one 16-byte block; see
//! `shared/specs/README.md` for the table these follow.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};

/// A 128-bit AES key.
pub type Key128 = [u8; 16];

/// Which LoRaWAN version the device's root key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootKeyKind {
    /// LoRaWAN 1.0.x: the root key is GenAppKey.
    GenAppKey,
    /// LoRaWAN 1.1: the root key is AppKey.
    AppKey,
}

fn aes_encrypt(key: &Key128, block: [u8; 16]) -> Key128 {
    let mut b = block.into();
    Aes128::new(key.into()).encrypt_block(&mut b);
    b.into()
}

fn aes_decrypt(key: &Key128, block: [u8; 16]) -> Key128 {
    let mut b = block.into();
    Aes128::new(key.into()).decrypt_block(&mut b);
    b.into()
}

fn block_with(first: u8, addr: Option<u32>) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0] = first;
    if let Some(a) = addr {
        b[1..5].copy_from_slice(&a.to_le_bytes());
    }
    b
}

/// McRootKey from the device's root key.
pub fn mc_root_key(root: &Key128, kind: RootKeyKind) -> Key128 {
    let first = match kind {
        RootKeyKind::GenAppKey => 0x00,
        RootKeyKind::AppKey => 0x20,
    };
    aes_encrypt(root, block_with(first, None))
}

/// McKEKey from McRootKey.
pub fn mc_ke_key(mc_root_key: &Key128) -> Key128 {
    aes_encrypt(mc_root_key, [0u8; 16])
}

/// McKey as McGroupSetupReq carries it: AES-decrypt(McKEKey, McKey); the
/// device recovers McKey with AES-encrypt.
pub fn mc_key_encrypted(mc_ke_key: &Key128, mc_key: &Key128) -> Key128 {
    aes_decrypt(mc_ke_key, *mc_key)
}

/// McAppSKey of a group.
pub fn mc_app_s_key(mc_key: &Key128, mc_addr: u32) -> Key128 {
    aes_encrypt(mc_key, block_with(0x01, Some(mc_addr)))
}

/// McNetSKey of a group.
pub fn mc_net_s_key(mc_key: &Key128, mc_addr: u32) -> Key128 {
    aes_encrypt(mc_key, block_with(0x02, Some(mc_addr)))
}

/// DataBlockIntKey (TS004 v2) from the device's root key.
pub fn data_block_int_key(root: &Key128) -> Key128 {
    aes_encrypt(root, block_with(0x30, None))
}

/// TS004 v2 data-block MIC: first 4 bytes (LE) of
/// AES-CMAC(DataBlockIntKey, B0 ‖ data), B0 = 49 ‖ SessionCnt ‖ FragIndex ‖
/// Descriptor ‖ 00×4 ‖ len(data); `data` is the unpadded file.
pub fn data_block_mic(int_key: &Key128, session_cnt: u16, frag_index: u8, descriptor: u32, data: &[u8]) -> u32 {
    let mut b0 = [0u8; 16];
    b0[0] = 0x49;
    b0[1..3].copy_from_slice(&session_cnt.to_le_bytes());
    b0[3] = frag_index;
    b0[4..8].copy_from_slice(&descriptor.to_le_bytes());
    b0[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
    let mut mac = <Cmac<Aes128> as Mac>::new(int_key.into());
    mac.update(&b0);
    mac.update(data);
    let tag = mac.finalize().into_bytes();
    u32::from_le_bytes([tag[0], tag[1], tag[2], tag[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_from(first: u8) -> Key128 {
        let mut k: Key128 = core::array::from_fn(|i| i as u8 + 1);
        k[0] = first;
        k
    }

    fn hex16(s: &str) -> Key128 {
        crate::fec::tests::hex(s).try_into().unwrap()
    }

    #[test]
    fn derivations_match_the_spec_vectors() {
        let mc_key: Key128 = core::array::from_fn(|i| i as u8 + 1);
        assert_eq!(mc_root_key(&key_from(3), RootKeyKind::GenAppKey), hex16("55 34 4e 82 57 0e ae c8 bf 03 b9 99 62 d1 f4 45"));
        assert_eq!(mc_root_key(&key_from(2), RootKeyKind::AppKey), hex16("26 4f d8 59 58 3f cc 67 02 41 ac 07 1c c9 f5 bb"));
        assert_eq!(mc_ke_key(&key_from(4)), hex16("90 83 be bf 70 42 57 88 31 60 db fc de 33 ad 71"));
        assert_eq!(mc_app_s_key(&mc_key, 0x01020304), hex16("95 cb 45 18 ee 37 56 06 73 5b ba cb dc e8 37 fa"));
        assert_eq!(mc_net_s_key(&mc_key, 0x01020304), hex16("c3 f6 b3 88 ba d6 c0 00 b2 32 91 ad 52 c1 1c 7b"));
        assert_eq!(mc_key_encrypted(&[1; 16], &[2; 16]), hex16("34 37 d6 e2 31 d7 02 41 9b 51 b4 94 72 71 b6 11"));
    }

    #[test]
    fn reference_device_chain_matches() {
        let gen_app_key: Key128 = core::array::from_fn(|i| i as u8);
        let root = mc_root_key(&gen_app_key, RootKeyKind::GenAppKey);
        assert_eq!(root, hex16("c6 a1 3b 37 87 8f 5b 82 6f 4f 81 62 a1 c8 d8 79"));
        let kek = mc_ke_key(&root);
        assert_eq!(kek, hex16("2c 57 8f 79 27 a9 49 d3 b5 11 ae 8f b6 91 45 c6"));
        let mc_key: Key128 = core::array::from_fn(|i| i as u8 + 1);
        assert_eq!(mc_key_encrypted(&kek, &mc_key), hex16("01 5e 85 f4 b9 9d c0 b9 44 06 6c d0 74 98 33 0b"));
        assert_eq!(mc_app_s_key(&mc_key, 0x01ffffff), hex16("c3 f6 c3 9b 6b 64 96 c2 96 29 f7 e7 e9 b0 cd 29"));
        assert_eq!(mc_net_s_key(&mc_key, 0x01ffffff), hex16("bb 75 c3 62 58 8f 5d 65 fc c6 1c 08 0b 76 db a3"));
    }

    #[test]
    fn data_block_mic_matches_the_cross_check() {
        let int_key = data_block_int_key(&key_from(2));
        assert_eq!(int_key, hex16("98 69 f5 5b 54 34 8d ee cc d2 7f c4 ce 8a 28 23"));
        let data: Vec<u8> = (0..100).collect();
        let mic = data_block_mic(&int_key, 128, 0, u32::from_le_bytes([1, 2, 3, 4]), &data);
        assert_eq!(mic.to_le_bytes(), [0xc8, 0xd2, 0xf1, 0x0e]);
    }
}

/// FRMPayload encryption (LoRaWAN 1.0.x §4.3.3, 1.1 §4.3.3): the payload
/// XORed with AES-128(key, A_i), A_i = 0x01 ‖ 4×0x00 ‖ Dir ‖ DevAddr (LE) ‖
/// FCnt (LE, 32 bits) ‖ 0x00 ‖ i, i from 1. The same call decrypts.
/// `downlink`: Dir = 1. For a multicast downlink the key is McAppSKey and
/// the address McAddr.
pub fn frm_payload_crypt(key: &Key128, dev_addr: u32, fcnt: u32, downlink: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = payload.to_vec();
    for (i, chunk) in out.chunks_mut(16).enumerate() {
        let mut a = [0u8; 16];
        a[0] = 0x01;
        a[5] = downlink as u8;
        a[6..10].copy_from_slice(&dev_addr.to_le_bytes());
        a[10..14].copy_from_slice(&fcnt.to_le_bytes());
        a[15] = (i + 1) as u8;
        let s = aes_encrypt(key, a);
        chunk.iter_mut().zip(s).for_each(|(byte, k)| *byte ^= k);
    }
    out
}
