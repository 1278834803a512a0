//! TS004 fragment decoding as devices do it: Gaussian elimination over
//! GF(2), one equation per received fragment, never more than M rows held.

/// The device's own PRBS (same polynomial as the spec, separate code).
fn next_prbs(state: u32) -> u32 {
    ((state >> 1) | (((state ^ (state >> 5)) & 1) << 22)) & 0x7f_ffff
}

/// Which rows the coded fragment numbered `m + line` combines.
fn coded_row_coefficients(line: u32, m: u32, distinct_draws: bool) -> Vec<u64> {
    let words = (m as usize).div_ceil(64);
    let mut row = vec![0u64; words];
    let target = m / 2;
    let modulo = if m & (m - 1) == 0 { m + 1 } else { m };
    let mut state = 1 + 1001 * line;
    let (mut drawn, mut set) = (0u32, 0u32);
    loop {
        let done = if distinct_draws { set >= target } else { drawn >= target };
        if done {
            break;
        }
        let pick = loop {
            state = next_prbs(state);
            let r = state % modulo;
            if r < m {
                break r as usize;
            }
        };
        drawn += 1;
        if row[pick / 64] & (1 << (pick % 64)) == 0 {
            row[pick / 64] |= 1 << (pick % 64);
            set += 1;
        }
    }
    row
}

/// One reduced equation: coefficients over the M rows, and the XOR of data.
struct Equation {
    coefficients: Vec<u64>,
    data: Vec<u8>,
}

/// Where decoding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeProgress {
    /// Fragments accepted (including those that brought no new information).
    pub received: u32,
    /// Rows still unknown.
    pub missing: u32,
    pub complete: bool,
}

pub struct FragDecoder {
    m: u32,
    frag_size: usize,
    distinct_draws: bool,
    /// pivots[i] holds the equation whose lowest coefficient is row i.
    pivots: Vec<Option<Equation>>,
    known: u32,
    received: u32,
    solved: Option<Vec<u8>>,
}

impl FragDecoder {
    /// `v2` selects the matrix as LoRa Basics Modem devices decode it.
    pub fn new(nb_frag: u32, frag_size: usize, v2: bool) -> Self {
        Self {
            m: nb_frag,
            frag_size,
            distinct_draws: v2,
            pivots: (0..nb_frag).map(|_| None).collect(),
            known: 0,
            received: 0,
            solved: None,
        }
    }

    pub fn progress(&self) -> DecodeProgress {
        DecodeProgress { received: self.received, missing: self.m - self.known, complete: self.solved.is_some() }
    }

    /// Bytes of matrix and row storage this decoder holds at most: M rows
    /// of M bits plus M data rows (what a device must reserve).
    pub fn memory_bound(&self) -> usize {
        self.m as usize * ((self.m as usize).div_ceil(8) + self.frag_size)
    }

    /// Feed fragment `n` (1-based as on the air). Returns progress.
    pub fn push(&mut self, n: u32, payload: &[u8]) -> DecodeProgress {
        if n == 0 {
            return self.progress();
        }
        if n > self.m {
            return self.push_coded(n - self.m, payload);
        }
        let mut c = vec![0u64; (self.m as usize).div_ceil(64)];
        c[(n as usize - 1) / 64] |= 1 << ((n - 1) % 64);
        self.push_equation(c, payload)
    }

    /// Feed coded line `line` of the parity matrix; line 0 is a valid line
    /// too (early MultiTech firmware sends it first).
    pub fn push_coded(&mut self, line: u32, payload: &[u8]) -> DecodeProgress {
        if self.m == 0 {
            return self.progress();
        }
        self.push_equation(coded_row_coefficients(line, self.m, self.distinct_draws), payload)
    }

    fn push_equation(&mut self, coefficients: Vec<u64>, payload: &[u8]) -> DecodeProgress {
        if self.solved.is_some() || payload.len() != self.frag_size || self.m == 0 {
            return self.progress();
        }
        self.received += 1;
        let mut eq = Equation { coefficients, data: payload.to_vec() };
        while let Some(lead) = lowest_bit(&eq.coefficients) {
            match &self.pivots[lead] {
                Some(pivot) => {
                    xor_into(&mut eq.coefficients, &pivot.coefficients);
                    xor_into(&mut eq.data, &pivot.data);
                }
                None => {
                    self.pivots[lead] = Some(eq);
                    self.known += 1;
                    break;
                }
            }
        }
        if self.known == self.m {
            self.back_substitute();
        }
        self.progress()
    }

    fn back_substitute(&mut self) {
        for i in (0..self.m as usize).rev() {
            let mut eq = self.pivots[i].take().expect("every row has a pivot");
            for j in i + 1..self.m as usize {
                if eq.coefficients[j / 64] & (1 << (j % 64)) != 0 {
                    let solved = self.pivots[j].as_ref().expect("solved above");
                    xor_into(&mut eq.data, &solved.data);
                }
            }
            self.pivots[i] = Some(eq);
        }
        let mut out = Vec::with_capacity(self.m as usize * self.frag_size);
        for eq in self.pivots.iter_mut() {
            out.extend_from_slice(&eq.take().unwrap().data);
        }
        self.solved = Some(out);
    }

    /// The rebuilt data, padding included, once complete.
    pub fn data(&self) -> Option<&[u8]> {
        self.solved.as_deref()
    }
}

fn lowest_bit(words: &[u64]) -> Option<usize> {
    words.iter().enumerate().find(|(_, w)| **w != 0).map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
}

fn xor_into<T: Copy + std::ops::BitXorAssign>(a: &mut [T], b: &[T]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x ^= *y);
}

#[cfg(test)]
mod tests {
    use super::*;
    use lorawan_fuota::{fec, Version};

    #[test]
    fn the_device_matrix_agrees_with_the_spec_for_all_small_m() {
        for m in 2..70 {
            for k in 1..40 {
                for (version, v2) in [(Version::V1, false), (Version::V2, true)] {
                    let ours: Vec<u32> = (0..m).filter(|&i| coded_row_coefficients(k, m, v2)[(i / 64) as usize] & (1 << (i % 64)) != 0).collect();
                    assert_eq!(ours, fec::parity_line(k, m, version), "m={m} k={k} {version:?}");
                }
            }
        }
    }

    #[test]
    fn rebuilds_from_coded_fragments_only() {
        let data: Vec<u8> = (0..100u8).collect();
        let enc = fec::Encoder::new(&data, 10, Version::V1).unwrap();
        let mut dec = FragDecoder::new(10, 10, false);
        let mut n = 11;
        while !dec.progress().complete {
            let (num, row) = enc.fragment(n).unwrap();
            dec.push(num as u32, &row);
            n += 1;
            assert!(n < 60, "never completed");
        }
        assert_eq!(dec.data().unwrap(), data.as_slice());
        assert_eq!(dec.memory_bound(), 10 * (2 + 10));
    }
}
