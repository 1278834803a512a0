//! `payload`: a device library reads the file its campaign delivers, a
//! window at a time, straight from the blob store (a vendor's whole-file
//! check, say). Only payloads of campaigns the library runs are readable.

use super::super::bindings::latest::imports::airlift::plugin::payload::{Host, PayloadError};
use crate::model::PluginKind;
use crate::plugin::CallState;
use std::io::{Read, Seek, SeekFrom};

/// Most bytes one `read` returns.
const MAX_READ: u32 = 65_536;

type PayloadResult<T> = wasmtime::Result<Result<T, PayloadError>>;

impl CallState {
    /// The payload's file, once the caller is shown to deliver it.
    fn delivered_payload(&self, sha256: &str) -> Result<std::fs::File, PayloadError> {
        if self.plugin.kind != PluginKind::DeviceLibrary {
            return Err(PayloadError::Invalid("payloads are read by device libraries only".into()));
        }
        let delivers = self
            .any_running_run(|r| r.library_name == self.plugin.name && r.payload_sha256.as_deref() == Some(sha256))
            .map_err(|e| PayloadError::Unknown(e.to_string()))?;
        if !delivers {
            return Err(PayloadError::Invalid(format!("no campaign of '{}' delivers payload {sha256}", self.plugin.name)));
        }
        std::fs::File::open(self.host.store.blobs().path(sha256)).map_err(|e| PayloadError::Unknown(format!("payload {sha256}: {e}")))
    }
}

impl Host for CallState {
    fn size(&mut self, sha256: String) -> PayloadResult<u64> {
        Ok(self.delivered_payload(&sha256).and_then(|f| f.metadata().map(|m| m.len()).map_err(|e| PayloadError::Unknown(e.to_string()))))
    }

    fn read(&mut self, sha256: String, offset: u64, len: u32) -> PayloadResult<Vec<u8>> {
        if len > MAX_READ {
            return Ok(Err(PayloadError::Invalid(format!("{len} bytes asked; one read returns at most {MAX_READ}"))));
        }
        Ok(self.delivered_payload(&sha256).and_then(|mut file| {
            let io = |e: std::io::Error| PayloadError::Unknown(e.to_string());
            file.seek(SeekFrom::Start(offset)).map_err(io)?;
            let mut out = Vec::with_capacity(len as usize);
            file.take(len as u64).read_to_end(&mut out).map_err(io)?;
            Ok(out)
        }))
    }
}
