//! An LZ4 block encoder that spends encoder time to save air time: every
//! position's longest match is found through hash chains over the
//! dictionary and the block, then the cheapest sequence of literals and
//! matches is chosen by dynamic programming over byte costs. The output is
//! a standard LZ4 block; any LZ4 decoder reads it.

/// Shortest match LZ4 can express.
const MIN_MATCH: usize = 4;
/// LZ4 offsets are 16-bit.
const MAX_OFFSET: usize = 65_535;
/// The last 5 bytes of a block are literals, and the last match starts at
/// least 12 bytes before its end (the LZ4 block format's rules).
const LAST_LITERALS: usize = 5;
const MF_LIMIT: usize = 12;
/// Candidates examined per position.
const MAX_CHAIN: usize = 256;
/// Match lengths tried per position besides the longest one; beyond this
/// the cost only grows by one byte per 255.
const SHORT_LENGTHS: usize = 36;
const HASH_BITS: u32 = 14;

fn hash(b: &[u8]) -> usize {
    (u32::from_le_bytes([b[0], b[1], b[2], b[3]]).wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize
}

/// Extra bytes a 4-bit length field needs for `n`.
fn extension_bytes(n: usize) -> usize {
    if n < 15 {
        0
    } else {
        1 + (n - 15) / 255
    }
}

/// `input` as one LZ4 block whose matches may reach into `dict`, the bytes
/// that precede it.
pub fn compress_with_dict(input: &[u8], dict: &[u8]) -> Vec<u8> {
    let dict = &dict[dict.len().saturating_sub(MAX_OFFSET)..];
    let data: Vec<u8> = [dict, input].concat();
    let start = dict.len();
    let n = input.len();
    let longest = longest_matches(&data, start, n);

    // cost[i]: fewest bytes for input[..i] ending in a match (or at 0);
    // a literal run's token is paid by the match that ends it.
    const NONE: usize = usize::MAX;
    let mut cost = vec![NONE; n + 1];
    let mut from: Vec<(usize, usize, usize)> = vec![(0, 0, 0); n + 1]; // (sequence start, literal count, offset)
    cost[0] = 0;
    for i in 0..n {
        if cost[i] == NONE {
            continue;
        }
        // A sequence starting at i: `lits` literals, then a match at i + lits.
        // Trying every run length is quadratic; matches from later positions
        // are reached through those positions' own sequences, so only
        // literal runs up to the next reachable match point matter.
        let mut lits = 0;
        loop {
            let m = i + lits;
            if m >= n {
                break;
            }
            if let Some((offset, len)) = longest[m] {
                let base = cost[i] + 1 + extension_bytes(lits) + lits + 2;
                let mut relax = |l: usize| {
                    let c = base + extension_bytes(l - MIN_MATCH);
                    if c < cost[m + l] {
                        cost[m + l] = c;
                        from[m + l] = (i, lits, offset);
                    }
                };
                for l in MIN_MATCH..=len.min(SHORT_LENGTHS) {
                    relax(l);
                }
                if len > SHORT_LENGTHS {
                    relax(len);
                }
            }
            lits += 1;
            // Stop once a later start point is at least as cheap a place
            // to begin the run from.
            if cost[i + lits] != NONE && cost[i + lits] <= cost[i] + lits {
                break;
            }
        }
    }
    // The block ends with a literal-only sequence from the best end point.
    let (mut end, mut best) = (0, NONE);
    for (i, &c) in cost.iter().enumerate() {
        if c != NONE {
            let total = c + 1 + extension_bytes(n - i) + (n - i);
            if total < best {
                (end, best) = (i, total);
            }
        }
    }
    let mut sequences = Vec::new();
    let mut at = end;
    while at > 0 {
        let (seq_start, lits, offset) = from[at];
        sequences.push((seq_start, lits, offset, at - seq_start - lits));
        at = seq_start;
    }
    sequences.reverse();

    let mut out = Vec::with_capacity(best);
    for (seq_start, lits, offset, len) in sequences {
        token(&mut out, lits, len - MIN_MATCH);
        out.extend_from_slice(&input[seq_start..seq_start + lits]);
        out.extend_from_slice(&(offset as u16).to_le_bytes());
        extend(&mut out, len - MIN_MATCH);
    }
    let lits = n - end;
    out.push((lits.min(15) as u8) << 4);
    extend(&mut out, lits);
    out.extend_from_slice(&input[end..]);
    out
}

fn token(out: &mut Vec<u8>, lits: usize, match_len: usize) {
    out.push((lits.min(15) as u8) << 4 | match_len.min(15) as u8);
    extend(out, lits);
}

/// The bytes after a 4-bit field that saturated at 15.
fn extend(out: &mut Vec<u8>, n: usize) {
    if n >= 15 {
        let mut rest = n - 15;
        while rest >= 255 {
            out.push(255);
            rest -= 255;
        }
        out.push(rest as u8);
    }
}

/// For each position of the block, its longest match (offset, length)
/// within the format's limits.
fn longest_matches(data: &[u8], start: usize, n: usize) -> Vec<Option<(usize, usize)>> {
    let mut out = vec![None; n];
    if n <= MF_LIMIT {
        return out;
    }
    let mut head = vec![usize::MAX; 1 << HASH_BITS];
    let mut prev = vec![usize::MAX; data.len()];
    let insert = |head: &mut Vec<usize>, prev: &mut Vec<usize>, p: usize| {
        let h = hash(&data[p..]);
        prev[p] = head[h];
        head[h] = p;
    };
    for p in 0..start.saturating_sub(MIN_MATCH - 1) {
        insert(&mut head, &mut prev, p);
    }
    // Dictionary positions whose 4 bytes run into the block.
    for p in start.saturating_sub(MIN_MATCH - 1)..start {
        if p + MIN_MATCH <= data.len() {
            insert(&mut head, &mut prev, p);
        }
    }
    let match_end = start + n - LAST_LITERALS;
    for i in 0..n - MF_LIMIT {
        let p = start + i;
        let mut candidate = head[hash(&data[p..])];
        let mut best = (0, 0);
        for _ in 0..MAX_CHAIN {
            if candidate == usize::MAX || p - candidate > MAX_OFFSET {
                break;
            }
            let len = data[candidate..].iter().zip(&data[p..match_end]).take_while(|(a, b)| a == b).count();
            if len > best.1 {
                best = (p - candidate, len);
            }
            candidate = prev[candidate];
        }
        if best.1 >= MIN_MATCH {
            out[i] = Some(best);
        }
        insert(&mut head, &mut prev, p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_decode_with_a_standard_decoder_and_beat_the_fast_encoder() {
        let dict: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 20) as u8).collect();
        let mut input: Vec<u8> = dict[1000..1600].to_vec();
        input.extend(std::iter::repeat_n(0u8, 300));
        input.extend((0..700u32).map(|i| (i * i % 13) as u8));
        input.extend_from_slice(&dict[3000..3400]);
        let ours = compress_with_dict(&input, &dict);
        assert_eq!(lz4_flex::block::decompress_with_dict(&ours, input.len(), &dict).unwrap(), input);
        let fast = lz4_flex::block::compress_with_dict(&input, &dict);
        assert!(ours.len() <= fast.len(), "{} > {}", ours.len(), fast.len());
        for small in [&b""[..], b"a", b"abcabcabcabcabc", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
            let c = compress_with_dict(small, b"");
            assert_eq!(lz4_flex::block::decompress(&c, small.len()).unwrap(), small);
        }
    }
}
