//! TS004 forward error correction: the file, padded to whole fragments, is
//! M uncoded rows; coded fragment M+k is the XOR of the rows chosen by line
//! k of a pseudo-random binary matrix. A streaming encoder: any fragment
//! number on demand, so more coded fragments can follow a status round.

use crate::Version;

/// Largest fragment number the 14-bit DataFragment header can carry.
pub const MAX_FRAGMENT_NUMBER: u32 = 0x3fff;

/// One step of the 23-bit PRBS the matrix is drawn from.
pub fn prbs23(x: u32) -> u32 {
    let feedback = (x & 1) ^ ((x >> 5) & 1);
    (x >> 1) | (feedback << 22)
}

/// Row indices (0-based, sorted, distinct) XORed into coded line `k`
/// (counting coded fragments only; TS004 starts at 1, early MultiTech
/// firmware at 0) for `m` uncoded rows.
///
/// v1 draws M/2 positions (a repeat stays marked once); v2, as LoRa Basics
/// Modem decodes it, draws until M/2 distinct positions are marked.
pub fn parity_line(k: u32, m: u32, version: Version) -> Vec<u32> {
    let modulus = m + u32::from(m.is_power_of_two());
    let wanted = m / 2;
    let mut marked = vec![false; m as usize];
    let (mut x, mut draws, mut distinct) = (1 + 1001 * k, 0, 0);
    while (version == Version::V1 && draws < wanted) || (version == Version::V2 && distinct < wanted) {
        let mut r = m;
        while r >= m {
            x = prbs23(x);
            r = x % modulus;
        }
        draws += 1;
        if !marked[r as usize] {
            marked[r as usize] = true;
            distinct += 1;
        }
    }
    (0..m).filter(|&i| marked[i as usize]).collect()
}

/// Why a payload cannot be fragmented as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FecError {
    #[error("fragment size must be 1-255 bytes")]
    FragSize,
    #[error("nothing to send: the payload is empty")]
    Empty,
    #[error("{0} fragments exceed the {MAX_FRAGMENT_NUMBER} the header can number")]
    TooManyFragments(u32),
    #[error("fragment number {0} is out of range")]
    FragmentNumber(u32),
}

/// Fragmentation layout of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub nb_frag: u32,
    pub frag_size: u8,
    pub padding: u8,
}

impl Layout {
    pub fn new(len: usize, frag_size: u8) -> Result<Self, FecError> {
        if frag_size == 0 {
            return Err(FecError::FragSize);
        }
        if len == 0 {
            return Err(FecError::Empty);
        }
        let fs = frag_size as usize;
        let nb_frag = len.div_ceil(fs);
        if nb_frag > MAX_FRAGMENT_NUMBER as usize {
            return Err(FecError::TooManyFragments(nb_frag as u32));
        }
        Ok(Self { nb_frag: nb_frag as u32, frag_size, padding: (nb_frag * fs - len) as u8 })
    }
}

/// Encodes fragments of one payload.
pub struct Encoder<'a> {
    data: &'a [u8],
    layout: Layout,
    version: Version,
}

impl<'a> Encoder<'a> {
    pub fn new(data: &'a [u8], frag_size: u8, version: Version) -> Result<Self, FecError> {
        Ok(Self { data, layout: Layout::new(data.len(), frag_size)?, version })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn uncoded_row(&self, i: u32, out: &mut [u8]) {
        let fs = self.layout.frag_size as usize;
        let start = i as usize * fs;
        let end = (start + fs).min(self.data.len());
        out[..end - start].copy_from_slice(&self.data[start..end]);
        out[end - start..].fill(0);
    }

    /// Fragment `n` (1-based) as (number sent in the header, data).
    ///
    /// n ≤ M is uncoded row n; n > M is coded line n − M. With M = 1 the
    /// matrix has no coefficients (M/2 = 0), so a coded fragment would
    /// carry nothing: the single row is repeated under number 1 instead,
    /// which every device accepts.
    pub fn fragment(&self, n: u32) -> Result<(u16, Vec<u8>), FecError> {
        let m = self.layout.nb_frag;
        if n == 0 || n > MAX_FRAGMENT_NUMBER {
            return Err(FecError::FragmentNumber(n));
        }
        if n <= m || m == 1 {
            let mut row = vec![0u8; self.layout.frag_size as usize];
            let i = if n <= m { n - 1 } else { 0 };
            self.uncoded_row(i, &mut row);
            return Ok((if n <= m { n as u16 } else { 1 }, row));
        }
        Ok((n as u16, self.coded_row(n - m)))
    }

    /// Coded line `k` of the parity matrix: the XOR of the uncoded rows
    /// `parity_line(k, M, version)` names. TS004 sends line k as fragment
    /// M + k (k ≥ 1); early MultiTech Dot firmware numbers from 0 and reads
    /// its first coded fragment as line 0, so k = 0 is allowed.
    pub fn coded_row(&self, k: u32) -> Vec<u8> {
        let fs = self.layout.frag_size as usize;
        let mut row = vec![0u8; fs];
        for i in parity_line(k, self.layout.nb_frag, self.version) {
            // XOR straight from the data; the padded tail is zeros anyway.
            let start = i as usize * fs;
            xor_into(&mut row, &self.data[start..(start + fs).min(self.data.len())]);
        }
        row
    }
}

/// `dst ^= src` over their common length, in 16-byte blocks (one SIMD
/// register on x86 and in WASM), then 8-byte words, then bytes: a 239-byte
/// fragment would otherwise leave a 15-byte tail XORed byte by byte, as
/// much work in WASM as the vectorised blocks before it.
fn xor_into(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    let mut blocks = dst.chunks_exact_mut(16);
    let mut from = src.chunks_exact(16);
    for (a, b) in (&mut blocks).zip(&mut from) {
        let x = u128::from_ne_bytes((&*a).try_into().unwrap()) ^ u128::from_ne_bytes(b.try_into().unwrap());
        a.copy_from_slice(&x.to_ne_bytes());
    }
    let (dst, src) = (blocks.into_remainder(), from.remainder());
    let mut words = dst.chunks_exact_mut(8);
    let mut from = src.chunks_exact(8);
    for (a, b) in (&mut words).zip(&mut from) {
        let x = u64::from_ne_bytes((&*a).try_into().unwrap()) ^ u64::from_ne_bytes(b.try_into().unwrap());
        a.copy_from_slice(&x.to_ne_bytes());
    }
    words.into_remainder().iter_mut().zip(from.remainder()).for_each(|(a, b)| *a ^= b);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn xor_covers_every_byte_of_any_length() {
        for len in [0, 1, 7, 8, 15, 16, 17, 239, 255] {
            let src: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
            let mut dst: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(11)).collect();
            let expected: Vec<u8> = dst.iter().zip(&src).map(|(a, b)| a ^ b).collect();
            xor_into(&mut dst, &src);
            assert_eq!(dst, expected, "length {len}");
        }
        // A shorter source (the last row of the file) leaves the rest alone.
        let mut dst = vec![0xff; 20];
        xor_into(&mut dst, &[0x0f; 13]);
        assert_eq!(dst, [[0xf0; 13].as_slice(), &[0xff; 7]].concat());
    }

    pub fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    const V1: [&str; 10] = [
        "26 26 22 22 2e 2e 22 22 26 26",
        "54 55 56 57 58 59 6a 6b 7c 7d",
        "5c 5d 6e 6f 10 11 02 03 04 05",
        "36 36 32 32 3e 3e 22 22 36 36",
        "3a 3a 0e 0e 0a 0a 06 06 0a 0a",
        "0e 0e 32 32 36 36 22 22 3e 3e",
        "02 02 0e 0e 72 72 76 76 62 62",
        "1e 1e 1a 1a 66 66 5a 5a 4e 4e",
        "1a 1b 1c 1d 1e 1f 30 31 22 23",
        "22 23 24 25 26 27 18 19 0a 0b",
    ];
    const V2: [&str; 10] = [
        "68 69 52 53 5c 5d 76 77 70 71",
        "54 55 56 57 58 59 6a 6b 7c 7d",
        "5c 5d 6e 6f 10 11 02 03 04 05",
        "6c 6d 6e 6f 60 61 42 43 54 55",
        "12 13 24 25 26 27 28 29 3a 3b",
        "48 49 7a 7b 7c 7d 6e 6f 70 71",
        "1c 1d 2e 2f 50 51 52 53 44 45",
        "58 59 52 53 2c 2d 16 17 00 01",
        "1a 1b 1c 1d 1e 1f 30 31 22 23",
        "00 01 3a 3b 44 45 7e 7f 68 69",
    ];

    #[test]
    fn coded_rows_match_the_vectors() {
        let data: Vec<u8> = (0..100).collect();
        for (version, table) in [(Version::V1, V1), (Version::V2, V2)] {
            let enc = Encoder::new(&data, 10, version).unwrap();
            assert_eq!(enc.layout(), Layout { nb_frag: 10, frag_size: 10, padding: 0 });
            for n in 1..=10 {
                assert_eq!(enc.fragment(n).unwrap(), (n as u16, data[(n as usize - 1) * 10..n as usize * 10].to_vec()));
            }
            for (k, expected) in table.iter().enumerate() {
                assert_eq!(enc.fragment(11 + k as u32).unwrap().1, hex(expected), "{version:?} line {}", k + 1);
            }
        }
    }

    #[test]
    fn coded_rows_are_the_coded_fragments_and_line_zero() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let enc = Encoder::new(&data, 37, Version::V1).unwrap();
        let m = enc.layout().nb_frag;
        for n in [m + 1, m + 2, m + 40] {
            assert_eq!(enc.coded_row(n - m), enc.fragment(n).unwrap().1, "n = {n}");
        }
        // Line 0, which TS004 never sends: the XOR of its rows all the same.
        let mut expected = vec![0u8; 37];
        for i in parity_line(0, m, Version::V1) {
            let mut row = vec![0u8; 37];
            enc.uncoded_row(i, &mut row);
            expected.iter_mut().zip(&row).for_each(|(a, b)| *a ^= b);
        }
        assert!(!parity_line(0, m, Version::V1).is_empty());
        assert_eq!(enc.coded_row(0), expected);
    }

    #[test]
    fn layout_pads_the_last_fragment() {
        assert_eq!(Layout::new(1000, 239).unwrap(), Layout { nb_frag: 5, frag_size: 239, padding: 195 });
        let data = [7u8; 5];
        let enc = Encoder::new(&data, 4, Version::V1).unwrap();
        assert_eq!(enc.fragment(2).unwrap().1, vec![7, 0, 0, 0]);
        assert_eq!(Layout::new(0, 10), Err(FecError::Empty));
        assert_eq!(Layout::new(10, 0), Err(FecError::FragSize));
        assert!(matches!(Layout::new(16_384, 1), Err(FecError::TooManyFragments(_))));
        assert_eq!(enc.fragment(0), Err(FecError::FragmentNumber(0)));
    }

    #[test]
    fn single_fragment_payloads_repeat_their_row() {
        let enc = Encoder::new(b"abc", 8, Version::V2).unwrap();
        assert_eq!(enc.fragment(3).unwrap(), (1, b"abc\0\0\0\0\0".to_vec()));
    }

    #[test]
    fn v2_lines_have_exactly_half_distinct_positions() {
        for m in [2, 7, 64, 100, 1000] {
            for k in 1..20 {
                assert_eq!(parity_line(k, m, Version::V2).len(), (m / 2) as usize);
                assert!(parity_line(k, m, Version::V1).len() <= (m / 2) as usize);
            }
        }
    }
}
