//! Regional facts the engine needs to size fragments: maximum application
//! payload (N, no repeater) per downlink data rate, and LoRa time on air
//! (LoRaWAN Regional Parameters RP002-1.0.x).

/// ISM band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    EU868,
    US915,
    AS923,
}

/// Spreading factor and bandwidth (kHz) of a LoRa data rate; None for FSK
/// or undefined rates.
pub fn lora_modulation(band: Band, dr: u8) -> Option<(u8, u32)> {
    match band {
        Band::EU868 | Band::AS923 => match dr {
            0..=5 => Some((12 - dr, 125)),
            6 => Some((7, 250)),
            _ => None,
        },
        Band::US915 => match dr {
            0..=3 => Some((10 - dr, 125)),
            4 => Some((8, 500)),
            8..=13 => Some((20 - dr, 500)),
            _ => None,
        },
    }
}

/// Largest FRMPayload at a downlink data rate; None where the rate is not
/// usable downlink (or not at all).
pub fn max_app_payload(band: Band, dr: u8, dwell_time: bool) -> Option<u16> {
    let n = match (band, dwell_time) {
        (Band::EU868, _) => match dr {
            0..=2 => 51,
            3 => 115,
            4..=7 => 242,
            _ => return None,
        },
        (Band::US915, _) => match dr {
            8 => 53,
            9 => 129,
            10..=13 => 242,
            _ => return None,
        },
        (Band::AS923, false) => match dr {
            0..=2 => 51,
            3 => 115,
            4..=7 => 242,
            _ => return None,
        },
        (Band::AS923, true) => match dr {
            2 => 11,
            3 => 53,
            4 => 125,
            5..=7 => 242,
            _ => return None,
        },
    };
    Some(n)
}

/// LoRaWAN overhead around FRMPayload: MHDR, DevAddr, FCtrl, FCnt, FPort, MIC.
pub const FRAME_OVERHEAD: u16 = 13;

/// Time on air in microseconds of a LoRa frame with `phy_len` bytes of
/// PHYPayload, 8 preamble symbols, coding rate 4/5, explicit header;
/// downlinks carry no payload CRC.
pub fn time_on_air_us(sf: u8, bw_khz: u32, phy_len: u16, crc: bool) -> u64 {
    let t_sym_us = (1u64 << sf) * 1000 / bw_khz as u64;
    let low_dr_optimize = t_sym_us >= 16_000;
    let (sf, pl) = (sf as i64, phy_len as i64);
    let de = low_dr_optimize as i64;
    let numerator = 8 * pl - 4 * sf + 28 + 16 * crc as i64;
    let denominator = 4 * (sf - 2 * de);
    let payload_symbols = 8 + ((numerator + denominator - 1).div_euclid(denominator)).max(0) * 5;
    // Preamble: 8 + 4.25 symbols, counted in quarter symbols.
    (t_sym_us * (4 * 8 + 17) / 4) + payload_symbols as u64 * t_sym_us
}

/// Time on air of a downlink with `app_len` bytes of application payload.
pub fn downlink_time_on_air_us(band: Band, dr: u8, app_len: u16) -> Option<u64> {
    let (sf, bw) = lora_modulation(band, dr)?;
    Some(time_on_air_us(sf, bw, app_len + FRAME_OVERHEAD, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_limits() {
        assert_eq!(max_app_payload(Band::EU868, 5, false), Some(242));
        assert_eq!(max_app_payload(Band::EU868, 0, false), Some(51));
        assert_eq!(max_app_payload(Band::US915, 8, false), Some(53));
        assert_eq!(max_app_payload(Band::US915, 5, false), None);
        assert_eq!(max_app_payload(Band::AS923, 2, true), Some(11));
        assert_eq!(max_app_payload(Band::AS923, 0, true), None);
    }

    #[test]
    fn time_on_air_matches_known_figures() {
        // SF7/125 kHz, 13-byte frame, CRC on: 46.336 ms (Semtech calculator).
        assert_eq!(time_on_air_us(7, 125, 13, true), 46_336);
        // SF12/125 kHz, 51+13 bytes, CRC on, low data rate optimisation: 2793.472 ms.
        assert_eq!(time_on_air_us(12, 125, 64, true), 2_793_472);
        assert!(downlink_time_on_air_us(Band::EU868, 5, 242).unwrap() > downlink_time_on_air_us(Band::EU868, 5, 100).unwrap());
    }
}
