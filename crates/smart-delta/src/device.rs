//! The device side: what a device does with a received package, in the RAM
//! a microcontroller has. Two passes over the package as it lies in flash:
//!
//! 1. [`verify`]: the header, the signature over header ‖ body, and the
//!    hash of the base image the device runs. Nothing is decoded before the
//!    signature holds, so a forged package never reaches the decoder.
//! 2. [`apply`]: the LZ4 blocks are decoded one at a time into a buffer of
//!    `window + block` bytes, the patch records are parsed byte by byte as
//!    they come out, base bytes are read by random access, and the new image
//!    is written a flash page at a time while its hash is computed.
//!
//! [`install`] runs both; [`Installed::ram_bytes`] is what it needed.

use crate::package::{Header, PackageError, HEADER_LEN, MAX_SIGNATURE_LEN};
use crate::stream::BlockParams;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// Bytes the device writes to flash at once.
pub const FLASH_PAGE: usize = 256;
/// Bytes read from flash at once (package and base image).
const READ_CHUNK: usize = 64;
/// Bit 15 of a block length: the block is stored, not compressed.
const STORED: u16 = 0x8000;

/// Random-access reads from flash: the package, or the base image slot.
pub trait Flash {
    fn len(&self) -> usize;
    /// Fill `buf` from `offset`; false if that runs past the end.
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool;
}

impl Flash for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        match offset.checked_add(buf.len()).and_then(|end| self.get(offset..end)) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// What a device reports after a successful install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub image: Vec<u8>,
    pub version: u32,
    /// RAM the decoder held: buffers plus its state.
    pub ram_bytes: usize,
}

/// Verify then apply a package against the device's base image.
/// `public_key` is the raw 64-byte X ‖ Y of the Smart Delta key.
pub fn install(package: &[u8], base: &[u8], public_key: &[u8]) -> Result<Installed, PackageError> {
    let header = verify(package, base, public_key)?;
    let mut image = Vec::with_capacity(header.new_size as usize);
    let ram_bytes = apply(&header, package, base, &mut image)?;
    Ok(Installed { image, version: header.new_version, ram_bytes })
}

/// A P-256 public key from its raw X ‖ Y coordinates.
pub fn verifying_key(public_key: &[u8]) -> Result<VerifyingKey, PackageError> {
    let sec1: Vec<u8> = [&[0x04u8][..], public_key].concat();
    (public_key.len() == 64)
        .then(|| VerifyingKey::from_sec1_bytes(&sec1).ok())
        .flatten()
        .ok_or_else(|| PackageError::Invalid("the public key is not 64 bytes of a P-256 point".into()))
}

/// Pass 1: header, signature and base image, reading `READ_CHUNK` bytes at
/// a time.
pub fn verify(package: &(impl Flash + ?Sized), base: &(impl Flash + ?Sized), public_key: &[u8]) -> Result<Header, PackageError> {
    let key = verifying_key(public_key)?;
    let mut head = [0u8; HEADER_LEN];
    if !package.read(0, &mut head) {
        return Err(PackageError::Truncated);
    }
    let header = Header::parse(&head)?;
    let signed_len = HEADER_LEN + header.body_len as usize;
    let sig_len = package.len().checked_sub(signed_len).ok_or(PackageError::Truncated)?;
    if !(8..=MAX_SIGNATURE_LEN).contains(&sig_len) {
        return Err(if sig_len < 8 { PackageError::Truncated } else { PackageError::BadSignature });
    }
    let mut sig = [0u8; MAX_SIGNATURE_LEN];
    package.read(signed_len, &mut sig[..sig_len]);
    let signature = Signature::from_der(&sig[..sig_len]).map_err(|_| PackageError::BadSignature)?;
    let digest = hash_range(package, 0, signed_len)?;
    key.verify_prehash(&digest, &signature).map_err(|_| PackageError::SignatureMismatch)?;

    let base_len = header.base_size as usize;
    if base.len() < base_len || hash_range(base, 0, base_len)? != header.base_sha256 {
        return Err(PackageError::WrongBase);
    }
    Ok(header)
}

fn hash_range(flash: &(impl Flash + ?Sized), from: usize, to: usize) -> Result<[u8; 32], PackageError> {
    let mut h = Sha256::new();
    let mut chunk = [0u8; READ_CHUNK];
    let mut at = from;
    while at < to {
        let n = READ_CHUNK.min(to - at);
        if !flash.read(at, &mut chunk[..n]) {
            return Err(PackageError::Truncated);
        }
        h.update(&chunk[..n]);
        at += n;
    }
    Ok(h.finalize().into())
}

/// Pass 2: decode and apply a verified package, writing the new image to
/// `out` a page at a time. Returns the RAM the decoder held.
pub fn apply(header: &Header, package: &(impl Flash + ?Sized), base: &(impl Flash + ?Sized), out: &mut Vec<u8>) -> Result<usize, PackageError> {
    let p = header.params;
    let mut input = Reader { flash: package, at: HEADER_LEN, end: HEADER_LEN + header.body_len as usize, buf: [0; READ_CHUNK], pos: 0, len: 0 };
    let mut patch = Patcher::new(header, base);
    let mut ring = Ring::new(p);
    let mut decoded = 0usize;
    let stream_len = header.stream_len as usize;
    while decoded < stream_len {
        let raw_len = p.block.min(stream_len - decoded);
        let len = u16::from_le_bytes([input.byte()?, input.byte()?]);
        let size = (len & !STORED) as usize;
        if len & STORED != 0 {
            if size != raw_len {
                return Err(PackageError::Corrupt);
            }
            for _ in 0..size {
                ring.push(input.byte()?);
            }
        } else {
            let block_end = input.offset() + size;
            ring.decode_lz4(&mut input, block_end, raw_len)?;
        }
        for &b in ring.block() {
            patch.feed(b, out)?;
        }
        ring.slide();
        decoded += raw_len;
    }
    if input.offset() != input.end {
        return Err(PackageError::Corrupt);
    }
    let ram = ring.buf.capacity() + std::mem::size_of_val(&input) + std::mem::size_of_val(&patch);
    patch.finish(out)?;
    Ok(ram)
}

/// Sequential reads through a small buffer.
struct Reader<'a, F: Flash + ?Sized> {
    flash: &'a F,
    /// Flash offset of `buf[len]`… of the next chunk to load.
    at: usize,
    end: usize,
    buf: [u8; READ_CHUNK],
    pos: usize,
    len: usize,
}

impl<F: Flash + ?Sized> Reader<'_, F> {
    fn byte(&mut self) -> Result<u8, PackageError> {
        if self.pos == self.len {
            let n = READ_CHUNK.min(self.end - self.at);
            if n == 0 || !self.flash.read(self.at, &mut self.buf[..n]) {
                return Err(PackageError::Truncated);
            }
            self.at += n;
            self.pos = 0;
            self.len = n;
        }
        self.pos += 1;
        Ok(self.buf[self.pos - 1])
    }

    /// Flash offset of the next byte `byte` returns.
    fn offset(&self) -> usize {
        self.at - (self.len - self.pos)
    }
}

/// The last `window` bytes of patch stream, then the block being decoded.
struct Ring {
    buf: Vec<u8>,
    window: usize,
    /// Where the current block starts in `buf`.
    block_start: usize,
}

impl Ring {
    fn new(p: BlockParams) -> Self {
        Self { buf: Vec::with_capacity(p.window + p.block), window: p.window, block_start: 0 }
    }

    fn push(&mut self, b: u8) {
        self.buf.push(b);
    }

    fn block(&self) -> &[u8] {
        &self.buf[self.block_start..]
    }

    /// Keep only the window for the next block.
    fn slide(&mut self) {
        let keep = self.buf.len().min(self.window);
        let from = self.buf.len() - keep;
        self.buf.copy_within(from.., 0);
        self.buf.truncate(keep);
        self.block_start = keep;
    }

    /// One LZ4 block (sequences of literals then a back-reference) ending
    /// at flash offset `end`, producing exactly `raw_len` bytes.
    fn decode_lz4<F: Flash + ?Sized>(&mut self, input: &mut Reader<'_, F>, end: usize, raw_len: usize) -> Result<(), PackageError> {
        let limit = self.block_start + raw_len;
        loop {
            let token = input.byte()?;
            let literals = Self::length(input, (token >> 4) as usize)?;
            if self.buf.len() + literals > limit {
                return Err(PackageError::Corrupt);
            }
            for _ in 0..literals {
                self.buf.push(input.byte()?);
            }
            if input.offset() >= end {
                break;
            }
            let offset = u16::from_le_bytes([input.byte()?, input.byte()?]) as usize;
            let length = Self::length(input, (token & 0x0f) as usize)? + 4;
            if offset == 0 || offset > self.buf.len() || self.buf.len() + length > limit {
                return Err(PackageError::Corrupt);
            }
            // Byte by byte: a match may overlap the bytes it produces.
            for _ in 0..length {
                self.buf.push(self.buf[self.buf.len() - offset]);
            }
        }
        if input.offset() != end || self.buf.len() != limit {
            return Err(PackageError::Corrupt);
        }
        Ok(())
    }

    /// A 4-bit length, extended by bytes while they are 255.
    fn length<F: Flash + ?Sized>(input: &mut Reader<'_, F>, nibble: usize) -> Result<usize, PackageError> {
        let mut n = nibble;
        if nibble == 15 {
            loop {
                let b = input.byte()?;
                n = n.checked_add(b as usize).ok_or(PackageError::Corrupt)?;
                if b != 255 {
                    break;
                }
            }
        }
        Ok(n)
    }
}

/// Where the record parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    DiffLen,
    ExtraLen,
    Seek,
    Zeros,
    RunLen,
    RunBytes,
    Extra,
}

/// Parses patch records a byte at a time and writes the new image.
struct Patcher<'a, F: Flash + ?Sized> {
    base: &'a F,
    base_size: usize,
    new_size: usize,
    field: Field,
    varint: u64,
    shift: u32,
    diff_left: u64,
    extra_left: u64,
    seek: i64,
    run_left: u64,
    cursor: i64,
    /// A READ_CHUNK window of the base starting at `base_at`.
    base_buf: [u8; READ_CHUNK],
    base_at: Option<usize>,
    page: [u8; FLASH_PAGE],
    page_len: usize,
    written: usize,
    hash: Sha256,
    expected: [u8; 32],
}

impl<'a, F: Flash + ?Sized> Patcher<'a, F> {
    fn new(header: &Header, base: &'a F) -> Self {
        Self {
            base,
            base_size: header.base_size as usize,
            new_size: header.new_size as usize,
            field: Field::DiffLen,
            varint: 0,
            shift: 0,
            diff_left: 0,
            extra_left: 0,
            seek: 0,
            run_left: 0,
            cursor: 0,
            base_buf: [0; READ_CHUNK],
            base_at: None,
            page: [0; FLASH_PAGE],
            page_len: 0,
            written: 0,
            hash: Sha256::new(),
            expected: header.new_sha256,
        }
    }

    /// Accumulate a LEB128 varint; Some when its last byte arrived.
    fn varint(&mut self, b: u8) -> Result<Option<u64>, PackageError> {
        if self.shift >= 64 {
            return Err(PackageError::Corrupt);
        }
        self.varint |= ((b & 0x7f) as u64) << self.shift;
        self.shift += 7;
        if b & 0x80 != 0 {
            return Ok(None);
        }
        let v = self.varint;
        (self.varint, self.shift) = (0, 0);
        Ok(Some(v))
    }

    fn feed(&mut self, b: u8, out: &mut Vec<u8>) -> Result<(), PackageError> {
        match self.field {
            Field::RunBytes => {
                self.run_left -= 1;
                self.diff_byte(b, out)?;
                if self.run_left == 0 {
                    self.next_run_or_extra()?;
                }
            }
            Field::Extra => {
                self.extra_left -= 1;
                self.emit(b, out)?;
                if self.extra_left == 0 {
                    self.end_record()?;
                }
            }
            field => {
                let Some(v) = self.varint(b)? else { return Ok(()) };
                match field {
                    Field::DiffLen => (self.diff_left, self.field) = (v, Field::ExtraLen),
                    Field::ExtraLen => (self.extra_left, self.field) = (v, Field::Seek),
                    Field::Seek => {
                        self.seek = (v >> 1) as i64 ^ -((v & 1) as i64);
                        self.next_run_or_extra()?;
                    }
                    Field::Zeros => {
                        if v > self.diff_left {
                            return Err(PackageError::Corrupt);
                        }
                        for _ in 0..v {
                            self.diff_byte(0, out)?;
                        }
                        self.field = Field::RunLen;
                    }
                    _ => {
                        if v > self.diff_left {
                            return Err(PackageError::Corrupt);
                        }
                        self.run_left = v;
                        self.field = Field::RunBytes;
                        if v == 0 {
                            self.next_run_or_extra()?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Diff runs continue until the diff is covered, then the extra bytes.
    fn next_run_or_extra(&mut self) -> Result<(), PackageError> {
        self.field = if self.diff_left > 0 { Field::Zeros } else { Field::Extra };
        if self.field == Field::Extra && self.extra_left == 0 {
            self.end_record()?;
        }
        Ok(())
    }

    fn end_record(&mut self) -> Result<(), PackageError> {
        self.cursor = self.cursor.checked_add(self.seek).ok_or(PackageError::Corrupt)?;
        self.field = Field::DiffLen;
        Ok(())
    }

    /// new ← base[cursor] + d.
    fn diff_byte(&mut self, d: u8, out: &mut Vec<u8>) -> Result<(), PackageError> {
        let at = usize::try_from(self.cursor).ok().filter(|c| *c < self.base_size).ok_or(PackageError::Corrupt)?;
        let chunk_at = at - at % READ_CHUNK;
        if self.base_at != Some(chunk_at) {
            let n = READ_CHUNK.min(self.base_size - chunk_at);
            if !self.base.read(chunk_at, &mut self.base_buf[..n]) {
                return Err(PackageError::WrongBase);
            }
            self.base_at = Some(chunk_at);
        }
        self.cursor += 1;
        self.diff_left -= 1;
        self.emit(self.base_buf[at - chunk_at].wrapping_add(d), out)
    }

    fn emit(&mut self, b: u8, out: &mut Vec<u8>) -> Result<(), PackageError> {
        if self.written + self.page_len >= self.new_size {
            return Err(PackageError::Corrupt);
        }
        self.page[self.page_len] = b;
        self.page_len += 1;
        if self.page_len == FLASH_PAGE {
            self.flush(out);
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        let page = &self.page[..self.page_len];
        self.hash.update(page);
        out.extend_from_slice(page);
        self.written += self.page_len;
        self.page_len = 0;
    }

    fn finish(mut self, out: &mut Vec<u8>) -> Result<(), PackageError> {
        if self.field != Field::DiffLen || self.varint != 0 {
            return Err(PackageError::Corrupt);
        }
        self.flush(out);
        if self.written != self.new_size || <[u8; 32]>::from(self.hash.finalize()) != self.expected {
            return Err(PackageError::WrongResult);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{build, message_to_sign};
    use p256::ecdsa::{signature::Signer, SigningKey};

    fn images() -> (Vec<u8>, Vec<u8>) {
        let base: Vec<u8> = (0..40_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut new = base.clone();
        for i in (0..new.len()).step_by(997) {
            new[i] = new[i].wrapping_add(4);
        }
        new.splice(20_000..20_000, (0..3_000u32).map(|i| (i % 7) as u8));
        new.drain(30_000..31_000);
        (base, new)
    }

    fn signed(key: &SigningKey, unsigned: &[u8]) -> Vec<u8> {
        let sig: Signature = key.sign(message_to_sign(unsigned));
        [unsigned, sig.to_der().as_bytes()].concat()
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).unwrap()
    }

    fn public(key: &SigningKey) -> Vec<u8> {
        key.verifying_key().to_encoded_point(false).as_bytes()[1..].to_vec()
    }

    #[test]
    fn a_device_rebuilds_the_new_image_in_a_few_kib() {
        let (base, new) = images();
        let k = key(7);
        let package = signed(&k, &build(&base, &new, 1, 2, BlockParams::DEFAULT).unwrap().bytes);
        let installed = install(&package, &base, &public(&k)).unwrap();
        assert_eq!(installed.image, new);
        assert_eq!(installed.version, 2);
        assert!(installed.ram_bytes < 8 * 1024, "{} bytes", installed.ram_bytes);
        assert!(installed.ram_bytes >= BlockParams::DEFAULT.window + BlockParams::DEFAULT.block);
        // Small blocks and no window: stored blocks and block boundaries inside records.
        let tiny = BlockParams { block: 37, window: 0 };
        let package = signed(&k, &build(&base, &new, 1, 2, tiny).unwrap().bytes);
        assert_eq!(install(&package, &base, &public(&k)).unwrap().image, new);
    }

    #[test]
    fn a_device_rejects_what_it_must() {
        let (base, new) = images();
        let k = key(7);
        let unsigned = build(&base, &new, 1, 2, BlockParams::DEFAULT).unwrap().bytes;
        let package = signed(&k, &unsigned);
        assert_eq!(install(&package, &base, &public(&key(8))), Err(PackageError::SignatureMismatch));
        let mut other = base.clone();
        other[5] ^= 1;
        assert_eq!(install(&package, &other, &public(&k)), Err(PackageError::WrongBase));
        assert_eq!(install(&package, &base[..1000], &public(&k)), Err(PackageError::WrongBase));
        assert_eq!(install(&package[..package.len() - 80], &base, &public(&k)), Err(PackageError::Truncated));
        assert_eq!(install(&package[..50], &base, &public(&k)), Err(PackageError::Truncated));
        assert_eq!(install(&unsigned, &base, &public(&k)), Err(PackageError::Truncated), "no signature");
        let mut tampered = package.clone();
        tampered[HEADER_LEN + 10] ^= 0x40;
        assert_eq!(install(&tampered, &base, &public(&k)), Err(PackageError::SignatureMismatch));
        assert!(install(&package, &base, &[0; 64]).is_err(), "not a key");
    }

    #[test]
    fn a_signed_but_corrupt_body_is_an_error_not_a_panic() {
        let (base, new) = images();
        let k = key(3);
        let unsigned = build(&base, &new, 1, 2, BlockParams { block: 512, window: 1024 }).unwrap().bytes;
        let mut seen_error = 0;
        for i in (HEADER_LEN..unsigned.len()).step_by(unsigned.len() / 41 + 1) {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = unsigned.clone();
                bad[i] ^= flip;
                // Signed by the key holder, so decoding runs on garbage.
                match install(&signed(&k, &bad), &base, &public(&k)) {
                    Ok(i) => assert_eq!(i.image, new, "a corrupt patch produced a different image"),
                    Err(_) => seen_error += 1,
                }
            }
        }
        assert!(seen_error > 40, "{seen_error}");
    }
}
