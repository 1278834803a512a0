//! The patch stream and its LZ4 blocks.
//!
//! Stream: for each record, `varint(diff length) varint(extra length)
//! zigzag-varint(seek)`, then the diff bytes as runs, then the extra bytes.
//! Diff runs are `varint(zeros) varint(n)` followed by n non-zero-run
//! bytes, until the diff length is covered: diffs are mostly zeros with
//! sparse changes (moved addresses), and LZ4 alone codes those poorly.
//!
//! Blocks: the stream is cut into `block` bytes (the last may be shorter);
//! each is stored as a little-endian u16 length, then the LZ4 block. The
//! block's matches may reach back `window` bytes into the stream decoded
//! before it (its dictionary), so a decoder keeps `window + block` bytes.
//! Bit 15 of the length marks a block stored uncompressed.

use crate::diff::Record;

/// Block size and dictionary window, in bytes of patch stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockParams {
    pub block: usize,
    pub window: usize,
}

impl BlockParams {
    /// What we ship: a device decodes with under 7 KiB of RAM
    /// (`device::Installed::ram_bytes`).
    pub const DEFAULT: BlockParams = BlockParams { block: 2048, window: 4096 };
}

/// Largest block the length field can describe.
pub const MAX_BLOCK: usize = 0x7fff;
const STORED: u16 = 0x8000;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Zero runs shorter than this stay inside a literal run.
const MIN_ZERO_RUN: usize = 2;

fn diff_runs(out: &mut Vec<u8>, diff: &[u8]) {
    let mut at = 0;
    while at < diff.len() {
        let zeros = diff[at..].iter().take_while(|b| **b == 0).count();
        at += zeros;
        let start = at;
        // Literals run until a zero run long enough to be worth a break.
        while at < diff.len() {
            let z = diff[at..].iter().take_while(|b| **b == 0).count();
            if z >= MIN_ZERO_RUN || at + z == diff.len() {
                break;
            }
            at += z.max(1);
        }
        varint(out, zeros as u64);
        varint(out, (at - start) as u64);
        out.extend_from_slice(&diff[start..at]);
    }
}

fn read_diff_runs(b: &[u8], at: &mut usize, len: usize) -> Option<Vec<u8>> {
    let mut diff = Vec::with_capacity(len);
    while diff.len() < len {
        let zeros = read_varint(b, at)? as usize;
        let n = read_varint(b, at)? as usize;
        if zeros.checked_add(n)? > len - diff.len() {
            return None;
        }
        diff.resize(diff.len() + zeros, 0);
        diff.extend_from_slice(b.get(*at..at.checked_add(n)?)?);
        *at += n;
    }
    Some(diff)
}

pub fn serialize(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        varint(&mut out, r.diff.len() as u64);
        varint(&mut out, r.extra.len() as u64);
        varint(&mut out, ((r.seek << 1) ^ (r.seek >> 63)) as u64);
        diff_runs(&mut out, &r.diff);
        out.extend_from_slice(&r.extra);
    }
    out
}

pub fn deserialize(b: &[u8]) -> Option<Vec<Record>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let diff_len = read_varint(b, &mut at)? as usize;
        let extra_len = read_varint(b, &mut at)? as usize;
        let z = read_varint(b, &mut at)?;
        let seek = (z >> 1) as i64 ^ -((z & 1) as i64);
        let diff = read_diff_runs(b, &mut at, diff_len)?;
        let extra = b.get(at..at.checked_add(extra_len)?)?.to_vec();
        at += extra_len;
        out.push(Record { diff, extra, seek });
    }
    Some(out)
}

/// Compress the stream into linked LZ4 blocks.
pub fn compress(stream: &[u8], p: BlockParams) -> Vec<u8> {
    assert!(p.block > 0 && p.block <= MAX_BLOCK, "block size 1..={MAX_BLOCK}");
    let mut out = Vec::new();
    for (i, chunk) in stream.chunks(p.block).enumerate() {
        let start = i * p.block;
        let dict = &stream[start.saturating_sub(p.window)..start];
        let packed = crate::lz4::compress_with_dict(chunk, dict);
        if packed.len() < chunk.len() {
            out.extend_from_slice(&(packed.len() as u16).to_le_bytes());
            out.extend_from_slice(&packed);
        } else {
            out.extend_from_slice(&(chunk.len() as u16 | STORED).to_le_bytes());
            out.extend_from_slice(chunk);
        }
    }
    out
}

/// Decompress linked blocks back into a stream of `stream_len` bytes.
pub fn decompress(blocks: &[u8], stream_len: usize, p: BlockParams) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(stream_len);
    let mut at = 0;
    while out.len() < stream_len {
        let len = u16::from_le_bytes(blocks.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        let size = (len & !STORED) as usize;
        let data = blocks.get(at..at + size)?;
        at += size;
        let raw_len = p.block.min(stream_len - out.len());
        if len & STORED != 0 {
            if size != raw_len {
                return None;
            }
            out.extend_from_slice(data);
        } else {
            let dict_start = out.len().saturating_sub(p.window);
            let raw = lz4_flex::block::decompress_with_dict(data, raw_len, &out[dict_start..]).ok()?;
            if raw.len() != raw_len {
                return None;
            }
            out.extend_from_slice(&raw);
        }
    }
    (at == blocks.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_blocks_round_trip() {
        let records = vec![
            Record { diff: vec![0; 5000], extra: b"abc".to_vec(), seek: -1234 },
            Record { diff: (0..=255).collect(), extra: vec![], seek: 1 << 40 },
            Record { diff: vec![0, 0, 7, 0, 9, 0, 0, 0, 1, 0], extra: vec![], seek: 0 },
            Record { diff: vec![5, 0], extra: vec![1], seek: 0 },
        ];
        let stream = serialize(&records);
        assert_eq!(deserialize(&stream).unwrap(), records);
        for p in [BlockParams::DEFAULT, BlockParams { block: 100, window: 0 }] {
            let blocks = compress(&stream, p);
            assert!(blocks.len() <= stream.len() + 2 * stream.len().div_ceil(p.block), "never more than the framing");
            assert_eq!(decompress(&blocks, stream.len(), p).unwrap(), stream);
            assert!(decompress(&blocks[..blocks.len() - 1], stream.len(), p).is_none(), "truncated");
        }
    }
}
