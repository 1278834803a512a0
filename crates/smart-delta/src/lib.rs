//! LZ4DICT smart-delta packages (specified in `docs/lz4dict-format.md`).
//!
//! A package turns a device's base image into a new image:
//! `header ‖ body ‖ signature`. The body is a bsdiff-style patch stream
//! (diff bytes against the base read by random access, extra bytes, seeks)
//! compressed with LZ4 in small blocks, each using the previous block's
//! output as its dictionary, so a device decodes it with a few KiB of RAM.
//! The signature (ECDSA P-256 over SHA-256 of header ‖ body, DER) is made
//! by whoever holds the key; this crate only says what to sign.
//!
//! - [`diff`]: the patch records, from a suffix array of the base.
//! - [`stream`]: records as bytes, and those bytes in linked LZ4 blocks.
//! - [`lz4`]: an LZ4 block encoder with an optimal parse.
//! - [`package`]: header, assembly, and a reference (non-streaming) decoder.
//! - [`device`]: the streaming decoder a device runs, in a few KiB of RAM.

pub mod device;
pub mod diff;
pub mod lz4;
pub mod package;
pub mod stream;

pub use package::{build, message_to_sign, parse, Header, Package, PackageError, HEADER_LEN, MAGIC};
pub use stream::BlockParams;
