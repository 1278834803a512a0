//! `clock`: the host's (possibly virtual) time.

use super::super::bindings::latest::imports::airlift::plugin::clock::Host;
use crate::plugin::CallState;

impl Host for CallState {
    fn now_unix_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(self.host.clock.now_unix_ms())
    }

    fn now_gps_seconds(&mut self) -> wasmtime::Result<u64> {
        Ok(self.host.clock.now_gps_seconds())
    }
}
