//! Which coded fragments a session sends, and in which order.
//!
//! Coded fragment number M + k carries line k of TS004's parity matrix, and
//! a device decodes any line it is sent: the public stacks compute the line
//! from the number, and accept numbers with gaps once the uncoded ones are
//! past (LoRaMac-node's `FragDecoderProcess` only drops a number below the
//! last uncoded one). So the sender chooses the lines.
//!
//! For small M the matrix's lines are poor: each draws M/2 positions from a
//! short pseudo-random sequence, so some lines repeat (M = 8: lines 3 and
//! 10 are equal) and some columns are rarely covered. Sent in order, a
//! fleet of 200 at 10 % loss needs about 21 transmissions for M = 8 and 41
//! for M = 17 where 13 and 24 suffice to hear M. Chosen here, 15–16 and 28.
//! Larger M sends lines in order (see [`CHOSEN_UP_TO_M`]).
//!
//! The choice is greedy and deterministic in (M, version): sample devices
//! with a fixed pseudo-random loss pattern; each next line is, among the
//! next [`window`] line numbers, the one that adds rank for the most
//! samples still unable to decode (ties: the one covering the least
//! covered columns). A position is a transmission's place in the session
//! (1..=M uncoded, then coded); the engine counts positions, the header
//! carries numbers.

use crate::fec::{parity_line, FecError, MAX_FRAGMENT_NUMBER};
use crate::Version;

/// Above this M, coded lines go in order: from M = 64 they behave as
/// random lines (measured at M = 84: no gain from choosing).
pub const CHOSEN_UP_TO_M: u32 = 64;
/// Loss the sample devices see: above a typical fleet's, so samples keep
/// needing lines for longer than most real devices do.
const SAMPLE_LOSS_PER_MILLE: u64 = 200;

/// Line numbers searched for each next coded position.
fn window(m: u32) -> u32 {
    if m <= 32 {
        64
    } else {
        32
    }
}

/// Sample devices: more for small M, where each costs little.
fn samples(m: u32) -> usize {
    match m {
        0..=16 => 512,
        17..=32 => 256,
        _ => 128,
    }
}

/// The fragment numbers of positions `first ..= first + count - 1`.
pub fn fragment_numbers(m: u32, version: Version, first: u32, count: u32) -> Result<Vec<u32>, FecError> {
    if first == 0 {
        return Err(FecError::FragmentNumber(0));
    }
    let last = first.saturating_add(count.saturating_sub(1));
    let lines = coded_lines(m, version, last.saturating_sub(m))?;
    // Positions up to M are the uncoded fragments, numbered as such.
    Ok((first..first.saturating_add(count)).map(|p| if p <= m { p } else { m + lines[(p - m) as usize - 1] }).collect())
}

/// The parity lines of the first `count` coded positions, in order.
pub fn coded_lines(m: u32, version: Version, count: u32) -> Result<Vec<u32>, FecError> {
    let highest_line = MAX_FRAGMENT_NUMBER.saturating_sub(m);
    if count > highest_line {
        return Err(FecError::FragmentNumber(m.saturating_add(count)));
    }
    // With M ≤ 1 a line has no coefficients; with M ≤ 3 there is nothing
    // to choose between.
    if m > CHOSEN_UP_TO_M || m <= 3 {
        return Ok((1..=count).collect());
    }
    let mut search = Search::new(m, samples(m));
    let mut lines = Vec::with_capacity(count as usize);
    let mut last = 0u32;
    for _ in 0..count {
        // Leave room below the highest line number for the positions after.
        let left = count - lines.len() as u32;
        let top = (last + window(m)).min(highest_line - (left - 1)).max(last + 1);
        let mut best: Option<(u32, u64, (u32, f64))> = None;
        for k in last + 1..=top {
            let row = line_mask(k, m, version);
            let score = search.score(row);
            // Most samples helped, then the rarest columns; the lowest number on a tie.
            if best.is_none_or(|(_, _, b)| score.0 > b.0 || (score.0 == b.0 && score.1 > b.1)) {
                best = Some((k, row, score));
            }
        }
        let (line, row, _) = best.ok_or(FecError::FragmentNumber(m + last + 1))?;
        search.add(row);
        lines.push(line);
        last = line;
    }
    Ok(lines)
}

fn line_mask(k: u32, m: u32, version: Version) -> u64 {
    parity_line(k, m, version).into_iter().fold(0u64, |mask, i| mask | 1 << i)
}

/// Sample devices decoding what was sent so far, as XOR bases (Gaussian
/// elimination over GF(2), one pivot per bit).
struct Search {
    m: u32,
    bases: Vec<[u64; 64]>,
    ranks: Vec<u32>,
    coverage: Vec<u32>,
    rng: u64,
}

impl Search {
    fn new(m: u32, samples: usize) -> Self {
        let mut s = Self { m, bases: vec![[0; 64]; samples], ranks: vec![0; samples], coverage: vec![1; m as usize], rng: 0x9e37_79b9_7f4a_7c15 };
        for i in 0..m {
            s.receive(1 << i);
        }
        s
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: fixed seed, so the order is a function of (M, version).
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn reduce(basis: &[u64; 64], mut row: u64) -> u64 {
        while row != 0 {
            let pivot = 63 - row.leading_zeros() as usize;
            if basis[pivot] == 0 {
                break;
            }
            row ^= basis[pivot];
        }
        row
    }

    /// (samples the row would add rank to, how rarely its columns are covered).
    fn score(&self, row: u64) -> (u32, f64) {
        let gains = self.bases.iter().zip(&self.ranks).filter(|(b, r)| **r < self.m && Self::reduce(b, row) != 0).count() as u32;
        let rarity = (0..self.m).filter(|i| row >> i & 1 == 1).map(|i| 1.0 / self.coverage[i as usize] as f64).sum();
        (gains, rarity)
    }

    fn add(&mut self, row: u64) {
        (0..self.m).filter(|i| row >> i & 1 == 1).for_each(|i| self.coverage[i as usize] += 1);
        self.receive(row);
    }

    /// Each sample hears the row unless its loss draw says otherwise.
    fn receive(&mut self, row: u64) {
        for s in 0..self.bases.len() {
            let lost = self.next_random() % 1000 < SAMPLE_LOSS_PER_MILLE;
            if lost || self.ranks[s] == self.m {
                continue;
            }
            let reduced = Self::reduce(&self.bases[s], row);
            if reduced != 0 {
                self.bases[s][63 - reduced.leading_zeros() as usize] = reduced;
                self.ranks[s] += 1;
            }
        }
    }
}

/// Position of fragment number `number` among those sent: the inverse of
/// [`fragment_numbers`] for numbers that were sent, and for others the
/// position of the last number sent below it.
pub fn position_of(number: u32, m: u32, coded: &[u32]) -> u32 {
    if number <= m {
        return number;
    }
    m + coded.partition_point(|&line| m + line <= number) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncoded_positions_are_their_numbers_and_coded_numbers_rise() {
        for version in [Version::V1, Version::V2] {
            for m in [2, 5, 8, 17, 40, 64, 65, 200] {
                let numbers = fragment_numbers(m, version, 1, m + 40).unwrap();
                assert_eq!(&numbers[..m as usize], &(1..=m).collect::<Vec<_>>()[..]);
                assert!(numbers.windows(2).all(|w| w[0] < w[1]), "M = {m}: {numbers:?}");
                // A batch asked later is the same as the whole sequence's slice.
                assert_eq!(fragment_numbers(m, version, m + 11, 7).unwrap(), numbers[(m + 10) as usize..(m + 17) as usize]);
            }
        }
    }

    #[test]
    fn large_m_sends_lines_in_order() {
        assert_eq!(coded_lines(CHOSEN_UP_TO_M + 1, Version::V1, 5).unwrap(), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn small_m_never_sends_a_line_twice_or_an_empty_one() {
        for m in [8, 17] {
            let lines = coded_lines(m, Version::V1, 30).unwrap();
            let masks: Vec<u64> = lines.iter().map(|&k| line_mask(k, m, Version::V1)).collect();
            // TS004 v1 repeats lines for M = 8 (3 and 10); the chosen ones
            // do not repeat while any sample still needs one.
            let early = &masks[..m as usize];
            assert!(early.iter().all(|&r| r != 0));
            let distinct: std::collections::HashSet<_> = early.iter().collect();
            assert_eq!(distinct.len(), early.len(), "M = {m}: {lines:?}");
        }
    }

    #[test]
    fn positions_are_recovered_from_numbers() {
        let m = 8;
        let coded = coded_lines(m, Version::V1, 20).unwrap();
        let numbers = fragment_numbers(m, Version::V1, 1, m + 20).unwrap();
        for (i, n) in numbers.iter().enumerate() {
            assert_eq!(position_of(*n, m, &coded), i as u32 + 1);
        }
        // A number between two sent ones: the position of the lower one.
        let between = numbers[m as usize + 3] + 1;
        if between < numbers[m as usize + 4] {
            assert_eq!(position_of(between, m, &coded), m + 4);
        }
    }

    #[test]
    fn chosen_lines_decode_sooner_than_lines_in_order_for_small_m() {
        // Over a fixed set of loss patterns (not the search's), the mean
        // position at which a device can decode.
        fn mean_decode_position(m: u32, rows: &[u64]) -> f64 {
            let mut rng = 0x1234_5678_9abc_def1u64;
            let trials = 400;
            let mut total = 0u64;
            for _ in 0..trials {
                let (mut basis, mut rank) = ([0u64; 64], 0);
                for (p, row) in rows.iter().enumerate() {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if rng % 10 == 0 {
                        continue; // lost
                    }
                    let r = Search::reduce(&basis, *row);
                    if r != 0 {
                        basis[63 - r.leading_zeros() as usize] = r;
                        rank += 1;
                    }
                    if rank == m {
                        total += p as u64 + 1;
                        break;
                    }
                }
            }
            total as f64 / trials as f64
        }
        for m in [8u32, 17] {
            let uncoded: Vec<u64> = (0..m).map(|i| 1 << i).collect();
            let in_order: Vec<u64> = uncoded.iter().copied().chain((1..=3 * m).map(|k| line_mask(k, m, Version::V1))).collect();
            let chosen: Vec<u64> = uncoded.iter().copied().chain(coded_lines(m, Version::V1, 3 * m).unwrap().iter().map(|&k| line_mask(k, m, Version::V1))).collect();
            let (a, b) = (mean_decode_position(m, &in_order), mean_decode_position(m, &chosen));
            assert!(b < a, "M = {m}: chosen {b:.2} vs in order {a:.2}");
        }
    }
}
