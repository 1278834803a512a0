//! bsdiff-style matching: walk the new image, find long approximate matches
//! in the base through its suffix array, and describe the new image as
//! records of "add these diff bytes to the base at the cursor", "copy these
//! bytes as they are", "move the base cursor".

/// One patch record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// new[i] = base[cursor + i] + diff[i] (wrapping), then cursor += len.
    pub diff: Vec<u8>,
    /// Bytes of the new image not taken from the base.
    pub extra: Vec<u8>,
    /// Base cursor move after the extra bytes.
    pub seek: i64,
}

/// Matches shorter than this many bytes beyond what the current alignment
/// already gives are not worth a new record.
const MIN_GAIN: usize = 8;

struct Matcher<'a> {
    base: &'a [u8],
    sa: Vec<i32>,
}

impl<'a> Matcher<'a> {
    fn new(base: &'a [u8]) -> Self {
        let sa = if base.is_empty() { vec![] } else { divsufsort::sort(base).into_parts().1 };
        Self { base, sa }
    }

    fn common(a: &[u8], b: &[u8]) -> usize {
        a.iter().zip(b).take_while(|(x, y)| x == y).count()
    }

    /// The longest exact match of a prefix of `target` in the base: (position, length).
    fn longest(&self, target: &[u8]) -> (usize, usize) {
        if self.sa.is_empty() || target.is_empty() {
            return (0, 0);
        }
        let suffix = |i: usize| &self.base[self.sa[i] as usize..];
        let (mut lo, mut hi) = (0usize, self.sa.len() - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if suffix(mid) < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (a, b) = (Self::common(suffix(lo), target), Self::common(suffix(hi), target));
        if a >= b {
            (self.sa[lo] as usize, a)
        } else {
            (self.sa[hi] as usize, b)
        }
    }
}

/// The records that turn `base` into `new`.
pub fn records(base: &[u8], new: &[u8]) -> Vec<Record> {
    let m = Matcher::new(base);
    let (nb, nn) = (base.len() as i64, new.len());
    let same = |b: i64, n: usize| b >= 0 && b < nb && base[b as usize] == new[n];
    let mut out = Vec::new();
    let (mut scan, mut len, mut pos) = (0usize, 0usize, 0usize);
    let (mut last_scan, mut last_pos, mut last_offset) = (0usize, 0usize, 0i64);
    while scan < nn {
        // Find the next place where a fresh match beats the current
        // alignment (last_offset) by a margin.
        let mut old_score = 0usize;
        scan += len;
        let mut scored = scan;
        while scan < nn {
            (pos, len) = m.longest(&new[scan..]);
            while scored < scan + len {
                old_score += same(scored as i64 + last_offset, scored) as usize;
                scored += 1;
            }
            if (len == old_score && len != 0) || len > old_score + MIN_GAIN {
                break;
            }
            if same(scan as i64 + last_offset, scan) {
                old_score = old_score.saturating_sub(1);
            }
            scan += 1;
        }
        if len == old_score && scan != nn {
            continue;
        }
        // Extend the previous match forward and this one backward, as far
        // as more than half the bytes still agree.
        let (mut score, mut best, mut len_f) = (0i64, 0i64, 0usize);
        let mut i = 0;
        while last_scan + i < scan && last_pos + i < base.len() {
            score += (base[last_pos + i] == new[last_scan + i]) as i64;
            i += 1;
            if score * 2 - i as i64 > best * 2 - len_f as i64 {
                best = score;
                len_f = i;
            }
        }
        let mut len_b = 0usize;
        if scan < nn {
            let (mut score, mut best) = (0i64, 0i64);
            let mut i = 1;
            while scan >= last_scan + i && pos >= i {
                score += (base[pos - i] == new[scan - i]) as i64;
                if score * 2 - i as i64 > best * 2 - len_b as i64 {
                    best = score;
                    len_b = i;
                }
                i += 1;
            }
        }
        if last_scan + len_f > scan - len_b {
            // The two extensions overlap: split where the agreement is best.
            let overlap = last_scan + len_f - (scan - len_b);
            let (mut score, mut best, mut split) = (0i64, 0i64, 0usize);
            for i in 0..overlap {
                score += (new[last_scan + len_f - overlap + i] == base[last_pos + len_f - overlap + i]) as i64;
                score -= (new[scan - len_b + i] == base[pos - len_b + i]) as i64;
                if score > best {
                    best = score;
                    split = i + 1;
                }
            }
            len_f = len_f + split - overlap;
            len_b -= split;
        }
        let diff = (0..len_f).map(|i| new[last_scan + i].wrapping_sub(base[last_pos + i])).collect();
        let extra = new[last_scan + len_f..scan - len_b].to_vec();
        let seek = (pos as i64 - len_b as i64) - (last_pos + len_f) as i64;
        out.push(Record { diff, extra, seek });
        last_scan = scan - len_b;
        last_pos = pos - len_b;
        last_offset = pos as i64 - scan as i64;
    }
    out
}

/// Apply records to a base (reference implementation, whole buffers).
pub fn apply(base: &[u8], records: &[Record]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut cursor = 0i64;
    for r in records {
        for (i, d) in r.diff.iter().enumerate() {
            out.push(base.get(usize::try_from(cursor).ok()? + i)?.wrapping_add(*d));
        }
        cursor += r.diff.len() as i64;
        out.extend_from_slice(&r.extra);
        cursor += r.seek;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_rebuild_the_new_image() {
        let base: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut new = base.clone();
        new[100] ^= 0x55;
        new.splice(5_000..5_000, b"inserted code".iter().copied());
        new.drain(12_000..12_400);
        new.extend_from_slice(&base[..3_000]);
        let r = records(&base, &new);
        assert_eq!(apply(&base, &r).unwrap(), new);
        assert!(r.iter().map(|r| r.extra.len()).sum::<usize>() < 100, "almost everything comes from the base");
        assert_eq!(apply(&[], &records(&[], b"fresh")).unwrap(), b"fresh");
        assert_eq!(apply(&base, &records(&base, &[])).unwrap(), Vec::<u8>::new());
    }
}
