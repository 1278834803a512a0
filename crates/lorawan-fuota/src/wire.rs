//! Little-endian reading and writing with typed errors.

/// Why bytes could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("unknown command 0x{0:02x}")]
    UnknownCommand(u8),
    #[error("{0}")]
    Malformed(String),
    /// A request field holds a value its encoding cannot carry; nothing
    /// is encoded rather than a masked or wrapped value.
    #[error("{field} = {value} is out of range ({allowed})")]
    OutOfRange { field: &'static str, value: u64, allowed: &'static str },
    /// A request needs a field the package version requires (a v2
    /// FragSessionSetupReq without SessionCnt and MIC, say).
    #[error("{0} is required by this package version")]
    Missing(&'static str),
}

/// Check that `value` is at most `max` before it is encoded.
pub(crate) fn at_most(field: &'static str, value: u64, max: u64, allowed: &'static str) -> Result<(), CodecError> {
    if value > max {
        return Err(CodecError::OutOfRange { field, value, allowed });
    }
    Ok(())
}

/// The commands of one payload, in order, and why reading stopped early if
/// it did. Commands before a bad one are kept; a bad command whose length
/// is known (a value the spec forbids) is skipped and reading goes on, while
/// a truncated or unknown one ends the payload, since where the next
/// command would start is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    pub commands: Vec<T>,
    pub errors: Vec<CodecError>,
}

impl<T> Parsed<T> {
    /// All commands, or the first error: for callers that want a payload
    /// whole or not at all.
    pub fn strict(self) -> Result<Vec<T>, CodecError> {
        match self.errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(self.commands),
        }
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(CodecError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `n` bytes without consuming them, if there are as many.
    pub fn peek(&self, n: usize) -> Option<&'a [u8]> {
        self.buf.get(self.pos..self.pos + n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        s
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u24(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let b = self.bytes(3, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CodecError> {
        Ok(self.bytes(N, what)?.try_into().unwrap())
    }
}

pub(crate) fn put_u24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes()[..3]);
}

/// Parse commands until the payload ends (see [`Parsed`]).
pub(crate) fn parse_all<T>(bytes: &[u8], mut one: impl FnMut(u8, &mut Reader) -> Result<T, CodecError>) -> Parsed<T> {
    let mut r = Reader::new(bytes);
    let mut parsed = Parsed { commands: Vec::new(), errors: Vec::new() };
    if r.is_empty() {
        parsed.errors.push(CodecError::Truncated("empty payload"));
        return parsed;
    }
    while !r.is_empty() {
        let Ok(cid) = r.u8("command id") else { break };
        match one(cid, &mut r) {
            Ok(command) => parsed.commands.push(command),
            Err(e @ CodecError::Malformed(_)) => parsed.errors.push(e),
            Err(e) => {
                parsed.errors.push(e);
                break;
            }
        }
    }
    parsed
}
