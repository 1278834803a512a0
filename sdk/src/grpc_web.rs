//! gRPC-Web over the host's HTTP import, for backends of gRPC services
//! (ChirpStack serves it on its API port for its own web UI), and the
//! protobuf wire format, enough to write and read a service's messages by
//! field number without code generation.
//!
//! A call is `POST {base}/{package.Service}/{Method}` with `content-type:
//! application/grpc-web+proto`, the request in one length-prefixed data
//! frame. The answer is a data frame and a trailer frame (flag 0x80) with
//! `grpc-status`, or, for errors, "trailers-only": the status in the HTTP
//! headers and an empty body. `grpc-message` is percent-encoded.

use crate::backend::airlift::plugin::http::Header;
use crate::backend::airlift::plugin::backend_types::BackendError;
use crate::backend_support::{body_text, header, send_raw, INSTANCE_TIMEOUT};

/// gRPC status codes a client acts on.
pub mod code {
    pub const OK: u32 = 0;
    pub const INVALID_ARGUMENT: u32 = 3;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const NOT_FOUND: u32 = 5;
    pub const ALREADY_EXISTS: u32 = 6;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// A call that did not succeed.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The service answered with this gRPC status (never OK).
    Status { code: u32, message: String },
    /// No gRPC answer at all (transport, HTTP error, malformed frames).
    Network(BackendError),
}

impl CallError {
    pub fn code(&self) -> Option<u32> {
        match self {
            CallError::Status { code, .. } => Some(*code),
            CallError::Network(_) => None,
        }
    }

    /// The usual meaning of a status for a backend: credentials refused,
    /// a method the server does not have (a wrong URL), a transient
    /// trouble, or a refusal of this request.
    pub fn into_backend_error(self, method: &str) -> BackendError {
        match self {
            CallError::Network(e) => e,
            CallError::Status { code, message } => {
                let text = format!("{method}: gRPC status {code}: {message}");
                match code {
                    code::UNAUTHENTICATED | code::PERMISSION_DENIED => BackendError::Unauthorized(text),
                    code::UNIMPLEMENTED => BackendError::Invalid(format!("{text} (is the URL the service's API?)")),
                    code::UNAVAILABLE | code::DEADLINE_EXCEEDED | code::RESOURCE_EXHAUSTED | code::INTERNAL => BackendError::Unavailable(text),
                    _ => BackendError::Rejected(text),
                }
            }
        }
    }
}

/// Decode `%XX` escapes (tonic's `grpc-message` encoding).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%').then(|| text.get(i + 1..i + 3)).flatten().and_then(|h| u8::from_str_radix(h, 16).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `grpc-status` / `grpc-message` from header lines.
fn status_of<'a>(lines: impl Iterator<Item = (&'a str, &'a str)>) -> Option<(u32, String)> {
    let (mut status, mut message) = (None, String::new());
    for (name, value) in lines {
        if name.trim().eq_ignore_ascii_case("grpc-status") {
            status = value.trim().parse().ok();
        } else if name.trim().eq_ignore_ascii_case("grpc-message") {
            message = percent_decode(value.trim());
        }
    }
    status.map(|s| (s, message))
}

/// Call `method` (`package.Service/Method`) at `base_url` with `headers`
/// (authorization and the like); returns the response message.
pub fn call(base_url: &str, method: &str, mut headers: Vec<Header>, request: &[u8]) -> Result<Vec<u8>, CallError> {
    let mut body = vec![0u8];
    body.extend_from_slice(&(request.len() as u32).to_be_bytes());
    body.extend_from_slice(request);
    headers.push(header("content-type", "application/grpc-web+proto"));
    headers.push(header("x-grpc-web", "1"));
    let resp = send_raw("POST", format!("{base_url}/{method}"), headers, body, INSTANCE_TIMEOUT).map_err(CallError::Network)?;
    let http_error = |e: fn(String) -> BackendError, hint: &str| CallError::Network(e(format!("{method}: HTTP {}: {}{hint}", resp.status, body_text(&resp))));
    match resp.status {
        200 => {}
        401 | 403 => return Err(http_error(BackendError::Unauthorized, "")),
        // A path the server does not route: not its gRPC API.
        404 | 405 | 415 => return Err(http_error(BackendError::Invalid, " (is the URL the service's API?)")),
        400..=499 => return Err(http_error(BackendError::Rejected, "")),
        _ => return Err(http_error(BackendError::Unavailable, "")),
    }
    let mut status = status_of(resp.headers.iter().map(|h| (h.name.as_str(), h.value.as_str())));
    let mut message = Vec::new();
    let mut rest = resp.body.as_slice();
    while rest.len() >= 5 {
        let flag = rest[0];
        let n = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let frame = rest.get(5..5 + n).ok_or_else(|| CallError::Network(BackendError::Unavailable(format!("{method}: truncated gRPC-Web frame"))))?;
        if flag & 0x80 != 0 {
            let text = String::from_utf8_lossy(frame);
            status = status_of(text.split("\r\n").filter_map(|l| l.split_once(':'))).or(status);
        } else {
            message = frame.to_vec();
        }
        rest = &rest[5 + n..];
    }
    match status {
        Some((code::OK, _)) => Ok(message),
        Some((code, message)) => Err(CallError::Status { code, message }),
        None => Err(CallError::Network(BackendError::Unavailable(format!("{method}: no grpc-status in the answer")))),
    }
}

/// The protobuf wire format: writing fields by number, reading a message's
/// fields. proto3 leaves zero values out, and so does the writer.
pub mod wire {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A varint field (uint32, uint64, bool, enum).
    pub fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
        if v != 0 {
            varint(out, (field as u64) << 3);
            varint(out, v);
        }
    }

    /// A length-delimited field: string, bytes or an embedded message.
    pub fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
        if !b.is_empty() {
            varint(out, (field as u64) << 3 | 2);
            varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
    }

    /// One field's value as it is on the wire.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Varint(u64),
        Fixed64(u64),
        Bytes(Vec<u8>),
        Fixed32(u32),
    }

    /// A decoded message: its fields in order (repeated ones repeat).
    #[derive(Debug, Clone, Default)]
    pub struct Message(pub Vec<(u32, Value)>);

    impl Message {
        pub fn parse(mut b: &[u8]) -> Option<Self> {
            fn read(b: &mut &[u8]) -> Option<u64> {
                let mut v = 0u64;
                for shift in (0..64).step_by(7) {
                    let (&byte, rest) = b.split_first()?;
                    *b = rest;
                    v |= ((byte & 0x7f) as u64) << shift;
                    if byte & 0x80 == 0 {
                        return Some(v);
                    }
                }
                None
            }
            fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
                let (head, rest) = (b.get(..n)?, b.get(n..)?);
                *b = rest;
                Some(head)
            }
            let mut out = Vec::new();
            while !b.is_empty() {
                let key = read(&mut b)?;
                let field = u32::try_from(key >> 3).ok()?;
                let value = match key & 7 {
                    0 => Value::Varint(read(&mut b)?),
                    1 => Value::Fixed64(u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?)),
                    2 => {
                        let n = usize::try_from(read(&mut b)?).ok()?;
                        Value::Bytes(take(&mut b, n)?.to_vec())
                    }
                    5 => Value::Fixed32(u32::from_le_bytes(take(&mut b, 4)?.try_into().ok()?)),
                    _ => return None,
                };
                out.push((field, value));
            }
            Some(Message(out))
        }

        fn last(&self, field: u32) -> Option<&Value> {
            self.0.iter().rev().find(|(n, _)| *n == field).map(|(_, v)| v)
        }

        /// A varint field; proto3's zero when absent.
        pub fn uint(&self, field: u32) -> u64 {
            match self.last(field) {
                Some(Value::Varint(v)) => *v,
                _ => 0,
            }
        }

        /// An int32 field (negative values are 10-byte varints).
        pub fn int32(&self, field: u32) -> Option<i32> {
            match self.last(field) {
                Some(Value::Varint(v)) => Some(*v as i64 as i32),
                _ => None,
            }
        }

        pub fn float(&self, field: u32) -> Option<f32> {
            match self.last(field) {
                Some(Value::Fixed32(v)) => Some(f32::from_bits(*v)),
                _ => None,
            }
        }

        pub fn bytes(&self, field: u32) -> Option<&[u8]> {
            match self.last(field) {
                Some(Value::Bytes(b)) => Some(b),
                _ => None,
            }
        }

        pub fn string(&self, field: u32) -> String {
            self.bytes(field).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
        }

        /// An embedded message field.
        pub fn message(&self, field: u32) -> Option<Message> {
            self.bytes(field).and_then(Message::parse)
        }

        /// Every value of a repeated embedded message field.
        pub fn messages(&self, field: u32) -> Vec<Message> {
            self.0
                .iter()
                .filter(|(n, _)| *n == field)
                .filter_map(|(_, v)| match v {
                    Value::Bytes(b) => Message::parse(b),
                    _ => None,
                })
                .collect()
        }
    }
}
