//! LoRaWAN multicast downlink frames: the network side builds them, the
//! device side checks everything a device checks (MHDR, FCtrl, FPort, MIC,
//! FCnt) before decrypting.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};

fn keystream_xor(app_s_key: &[u8; 16], addr: u32, fcnt: u32, data: &mut [u8]) {
    let cipher = Aes128::new(app_s_key.into());
    for (i, chunk) in data.chunks_mut(16).enumerate() {
        let mut a = [0u8; 16];
        a[0] = 0x01;
        a[5] = 0x01; // downlink
        a[6..10].copy_from_slice(&addr.to_le_bytes());
        a[10..14].copy_from_slice(&fcnt.to_le_bytes());
        a[15] = (i + 1) as u8;
        let mut block = a.into();
        cipher.encrypt_block(&mut block);
        chunk.iter_mut().zip(block.iter()).for_each(|(d, k)| *d ^= k);
    }
}

fn mic(net_s_key: &[u8; 16], addr: u32, fcnt: u32, msg: &[u8]) -> [u8; 4] {
    let mut b0 = [0u8; 16];
    b0[0] = 0x49;
    b0[5] = 0x01;
    b0[6..10].copy_from_slice(&addr.to_le_bytes());
    b0[10..14].copy_from_slice(&fcnt.to_le_bytes());
    b0[15] = msg.len() as u8;
    let mut mac = <Cmac<Aes128> as Mac>::new(net_s_key.into());
    mac.update(&b0);
    mac.update(msg);
    mac.finalize().into_bytes()[..4].try_into().unwrap()
}

/// PHYPayload of an unconfirmed multicast downlink.
pub fn encode(app_s_key: &[u8; 16], net_s_key: &[u8; 16], addr: u32, fcnt: u32, fport: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = payload.to_vec();
    keystream_xor(app_s_key, addr, fcnt, &mut body);
    encode_encrypted(net_s_key, addr, fcnt, fport, &body)
}

/// The same around an FRMPayload the application already encrypted (a
/// network that forwards it as it is only adds the header and the MIC).
pub fn encode_encrypted(net_s_key: &[u8; 16], addr: u32, fcnt: u32, fport: u8, frm_payload: &[u8]) -> Vec<u8> {
    let mut msg = vec![0x60];
    msg.extend(addr.to_le_bytes());
    msg.push(0x00);
    msg.extend(&(fcnt as u16).to_le_bytes());
    msg.push(fport);
    msg.extend(frm_payload);
    let m = mic(net_s_key, addr, fcnt, &msg);
    msg.extend(m);
    msg
}

/// What an encrypted FRMPayload holds (the network side's bookkeeping).
pub fn decrypt(app_s_key: &[u8; 16], addr: u32, fcnt: u32, frm_payload: &[u8]) -> Vec<u8> {
    let mut body = frm_payload.to_vec();
    keystream_xor(app_s_key, addr, fcnt, &mut body);
    body
}

/// What a device keeps per multicast group to accept frames.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub addr: u32,
    pub app_s_key: [u8; 16],
    pub net_s_key: [u8; 16],
    pub min_fcnt: u32,
    pub max_fcnt: u32,
    /// None right after McGroupSetup.
    pub last_fcnt: Option<u32>,
}

impl Receiver {
    /// Check and decrypt a frame; returns (FPort, payload) or why it was dropped.
    pub fn accept(&mut self, phy: &[u8]) -> Result<(u8, Vec<u8>), &'static str> {
        if phy.len() < 12 {
            return Err("frame too short");
        }
        if phy[0] != 0x60 {
            return Err("not an unconfirmed data down frame");
        }
        if u32::from_le_bytes(phy[1..5].try_into().unwrap()) != self.addr {
            return Err("another address");
        }
        if phy[5] != 0x00 {
            return Err("FCtrl must be 0 (no ACK, no FOpts)");
        }
        let fport = phy[8];
        if fport == 0 {
            return Err("FPort 0 on multicast");
        }
        let fcnt16 = u16::from_le_bytes([phy[6], phy[7]]) as u32;
        // Rebuild the 32-bit counter from the 16 bits on the air.
        let fcnt = match self.last_fcnt {
            None => fcnt16,
            Some(last) if fcnt16 == last & 0xffff => return Err("repeated FCnt"),
            // A lower 16-bit value means the counter rolled over.
            Some(last) if fcnt16 < last & 0xffff => ((last & 0xffff_0000) | fcnt16).wrapping_add(0x1_0000),
            Some(last) => (last & 0xffff_0000) | fcnt16,
        };
        if fcnt < self.min_fcnt || fcnt > self.max_fcnt {
            return Err("FCnt outside the group's range");
        }
        let (msg, received_mic) = phy.split_at(phy.len() - 4);
        if mic(&self.net_s_key, self.addr, fcnt, msg) != received_mic {
            return Err("MIC mismatch");
        }
        self.last_fcnt = Some(fcnt);
        let mut body = msg[9..].to_vec();
        keystream_xor(&self.app_s_key, self.addr, fcnt, &mut body);
        Ok((fport, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_dropped() {
        let (app, net) = ([1u8; 16], [2u8; 16]);
        let mut rx = Receiver { addr: 0x01020304, app_s_key: app, net_s_key: net, min_fcnt: 0, max_fcnt: u32::MAX, last_fcnt: None };
        let f = encode(&app, &net, 0x01020304, 5, 201, b"fragment data that spans two blocks");
        assert_eq!(rx.accept(&f).unwrap(), (201, b"fragment data that spans two blocks".to_vec()));
        assert_eq!(rx.accept(&f), Err("repeated FCnt"));
        let mut tampered = encode(&app, &net, 0x01020304, 6, 201, b"x");
        tampered[9] ^= 1;
        assert_eq!(rx.accept(&tampered), Err("MIC mismatch"));
        assert_eq!(rx.accept(&encode(&[9; 16], &[9; 16], 0x01020304, 7, 201, b"x")), Err("MIC mismatch"));
        let mut confirmed = encode(&app, &net, 0x01020304, 8, 201, b"x");
        confirmed[0] = 0xa0;
        assert!(rx.accept(&confirmed).is_err());
        assert_eq!(rx.accept(&encode(&app, &net, 0x01020304, 9, 0, b"x")), Err("FPort 0 on multicast"));
        // Roll over past 16 bits.
        rx.last_fcnt = Some(0xfffe);
        assert!(rx.accept(&encode(&app, &net, 0x01020304, 0x1_0001, 201, b"x")).is_ok());
        assert_eq!(rx.last_fcnt, Some(0x1_0001));
    }
}
