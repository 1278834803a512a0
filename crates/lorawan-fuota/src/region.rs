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

/// Share of time a transmitter may be on the air at `frequency_hz`: the
/// ETSI EN 300 220 sub-bands the EU868 parameters point to (g1 868.0-868.6
/// MHz 1 %, g2 868.7-869.2 MHz 0.1 %, g3 869.4-869.65 MHz 10 %, g4
/// 869.7-870.0 MHz 1 %); AS923's common 1 % (local rules may differ);
/// none for US915, whose limit is dwell time, not duty cycle.
pub fn duty_cycle(band: Band, frequency_hz: u32) -> f64 {
    match band {
        Band::US915 => 1.0,
        Band::AS923 => 0.01,
        Band::EU868 => match frequency_hz {
            868_000_000..=868_600_000 => 0.01,
            868_700_000..=869_200_000 => 0.001,
            869_400_000..=869_650_000 => 0.10,
            869_700_000..=870_000_000 => 0.01,
            // Outside the sub-bands LoRaWAN uses: the strictest common rule.
            _ => 0.001,
        },
    }
}

/// Shortest wait between two downlinks of `app_len` bytes at `dr` and
/// `frequency_hz` that the band's duty cycle allows, in milliseconds.
pub fn duty_cycle_interval_ms(band: Band, dr: u8, frequency_hz: u32, app_len: u16) -> Option<u64> {
    let toa_us = downlink_time_on_air_us(band, dr, app_len)?;
    Some((toa_us as f64 / duty_cycle(band, frequency_hz) / 1000.0).ceil() as u64)
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

    #[test]
    fn duty_cycle_follows_the_eu868_sub_band() {
        // 869.525 MHz (RX2, g3) allows 10 %: a 0.4 s frame every 4 s.
        let toa = downlink_time_on_air_us(Band::EU868, 5, 242).unwrap();
        assert_eq!(duty_cycle_interval_ms(Band::EU868, 5, 869_525_000, 242), Some((toa as f64 / 100.0).ceil() as u64));
        assert_eq!(duty_cycle(Band::EU868, 868_100_000), 0.01);
        assert_eq!(duty_cycle(Band::EU868, 868_900_000), 0.001);
        assert_eq!(duty_cycle(Band::US915, 923_300_000), 1.0);
    }
}
