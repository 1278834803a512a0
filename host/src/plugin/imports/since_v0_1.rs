//! The host imports of contract 0.1.0, for plugins built against it: each
//! function does what its 0.2.0 namesake does (the interfaces did not
//! change), with the records moved across field by field.

use super::super::bindings::{latest, v0_1};
use crate::plugin::CallState;
use latest::imports::airlift::plugin as new;
use v0_1::imports::airlift::plugin as old;

impl old::types::Host for CallState {}

impl old::log::Host for CallState {
    fn write(&mut self, level: old::log::Level, message: String) -> wasmtime::Result<()> {
        use old::log::Level as L;
        let level = match level {
            L::Trace => new::log::Level::Trace,
            L::Debug => new::log::Level::Debug,
            L::Info => new::log::Level::Info,
            L::Warn => new::log::Level::Warn,
            L::Error => new::log::Level::Error,
        };
        new::log::Host::write(self, level, message)
    }
}

impl old::clock::Host for CallState {
    fn now_unix_ms(&mut self) -> wasmtime::Result<u64> {
        new::clock::Host::now_unix_ms(self)
    }

    fn now_gps_seconds(&mut self) -> wasmtime::Result<u64> {
        new::clock::Host::now_gps_seconds(self)
    }
}

fn key_error(e: new::keys::KeyError) -> old::keys::KeyError {
    match e {
        new::keys::KeyError::Unknown(m) => old::keys::KeyError::Unknown(m),
        new::keys::KeyError::Denied(m) => old::keys::KeyError::Denied(m),
        new::keys::KeyError::Invalid(m) => old::keys::KeyError::Invalid(m),
    }
}

type OldKeyResult<T> = wasmtime::Result<Result<T, old::keys::KeyError>>;

impl old::keys::Host for CallState {
    fn mc_key_encrypted(&mut self, device: u64, group: u64) -> OldKeyResult<Vec<u8>> {
        Ok(new::keys::Host::mc_key_encrypted(self, device, group)?.map_err(key_error))
    }

    fn data_block_mic(&mut self, device: u64, session_cnt: u16, frag_index: u8, descriptor: u32, payload_sha256: String) -> OldKeyResult<u32> {
        Ok(new::keys::Host::data_block_mic(self, device, session_cnt, frag_index, descriptor, payload_sha256)?.map_err(key_error))
    }

    fn multicast_session_keys(&mut self, group: u64) -> OldKeyResult<(Vec<u8>, Vec<u8>)> {
        Ok(new::keys::Host::multicast_session_keys(self, group)?.map_err(key_error))
    }

    fn sign(&mut self, key_id: String, message: Vec<u8>) -> OldKeyResult<Vec<u8>> {
        Ok(new::keys::Host::sign(self, key_id, message)?.map_err(key_error))
    }

    fn digest_with_secret(&mut self, secret: String, message: String) -> OldKeyResult<String> {
        Ok(new::keys::Host::digest_with_secret(self, secret, message)?.map_err(key_error))
    }
}

fn headers_to_new(headers: Vec<old::http::Header>) -> Vec<new::http::Header> {
    headers.into_iter().map(|h| new::http::Header { name: h.name, value: h.value }).collect()
}

impl old::http::Host for CallState {
    fn send(&mut self, req: old::http::Request) -> wasmtime::Result<Result<old::http::Response, old::http::HttpError>> {
        let req = new::http::Request { method: req.method, url: req.url, headers: headers_to_new(req.headers), body: req.body, timeout_ms: req.timeout_ms };
        Ok(match new::http::Host::send(self, req)? {
            Ok(r) => Ok(old::http::Response {
                status: r.status,
                headers: r.headers.into_iter().map(|h| old::http::Header { name: h.name, value: h.value }).collect(),
                body: r.body,
            }),
            Err(e) => Err(match e {
                new::http::HttpError::Denied(m) => old::http::HttpError::Denied(m),
                new::http::HttpError::Invalid(m) => old::http::HttpError::Invalid(m),
                new::http::HttpError::Timeout => old::http::HttpError::Timeout,
                new::http::HttpError::Transport(m) => old::http::HttpError::Transport(m),
                new::http::HttpError::TooLarge => old::http::HttpError::TooLarge,
            }),
        })
    }
}
