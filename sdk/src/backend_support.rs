//! Helpers every backend plugin needs: instance settings and secrets, and
//! HTTP through the host with the network's answers mapped to the
//! backend's errors.

use crate::backend::airlift::plugin::http::{self, Header, HttpError, Request, Response};
use crate::backend::airlift::plugin::types::Attribute;
use crate::backend::airlift::plugin::backend_types::{BackendError, Instance};

/// Timeout of a request that names none: the instance's own (its
/// `transport.requestTimeoutMs`, 10 s unless set).
pub const INSTANCE_TIMEOUT: u32 = 0;

/// An instance setting, required.
pub fn setting<'a>(inst: &'a Instance, key: &str) -> Result<&'a str, BackendError> {
    inst.settings
        .iter()
        .find(|Attribute { key: k, .. }| k == key)
        .map(|a| a.value.as_str())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| BackendError::Invalid(format!("setting '{key}' is missing")))
}

/// The `url` setting: an http(s) base URL, without a trailing slash.
pub fn base_url(inst: &Instance) -> Result<String, BackendError> {
    let url = setting(inst, "url")?.trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(BackendError::Invalid(format!("setting 'url' must be an http(s) URL, not '{url}'")));
    }
    Ok(url)
}

/// Fails unless the instance has the secret `name` (its value stays in the host).
pub fn require_secret(inst: &Instance, name: &str) -> Result<(), BackendError> {
    if inst.secret_names.iter().any(|n| n == name) {
        Ok(())
    } else {
        Err(BackendError::Invalid(format!("secret '{name}' is missing")))
    }
}

pub fn header(name: &str, value: &str) -> Header {
    Header { name: name.into(), value: value.into() }
}

/// Send a request and take whatever status the network answers; only a
/// request that got no answer is an error (unavailable, or invalid when
/// the host refused it). `timeout_ms`: [`INSTANCE_TIMEOUT`], or longer for
/// a slow request (a firmware upload), up to 600 s.
pub fn send_raw(method: &str, url: String, headers: Vec<Header>, body: Vec<u8>, timeout_ms: u32) -> Result<Response, BackendError> {
    http::send(&Request { method: method.into(), url, headers, body, timeout_ms }).map_err(|e| match e {
        HttpError::Denied(m) => BackendError::Invalid(format!("refused by the host: {m}")),
        HttpError::Invalid(m) => BackendError::Invalid(m),
        HttpError::Timeout => BackendError::Unavailable("the network did not answer in time".into()),
        HttpError::Transport(m) => BackendError::Unavailable(m),
        HttpError::TooLarge => BackendError::Unavailable("the network's answer is too large".into()),
    })
}

/// The first 300 characters of a response body, for an error message.
pub fn body_text(resp: &Response) -> String {
    String::from_utf8_lossy(&resp.body).chars().take(300).collect()
}

/// Attempts of a request that is safe to repeat ([`send_idempotent`]).
pub const IDEMPOTENT_ATTEMPTS: u32 = 3;

/// [`send`] for a request that may be repeated (GET, PUT, DELETE): one the
/// network did not answer, or answered with a 5xx, is sent again, up to
/// [`IDEMPOTENT_ATTEMPTS`] times in all, before the host's own retry with
/// backoff. A POST is never repeated here: it may have been taken.
pub fn send_idempotent(method: &str, url: String, headers: Vec<Header>, body: Vec<u8>) -> Result<Response, BackendError> {
    if method.eq_ignore_ascii_case("POST") || method.eq_ignore_ascii_case("PATCH") {
        return send(method, url, headers, body);
    }
    retrying(IDEMPOTENT_ATTEMPTS, || send(method, url.clone(), headers.clone(), body.clone()))
}

/// Run `attempt` until it succeeds or fails other than unavailable, at
/// most `attempts` times.
pub fn retrying<T>(attempts: u32, mut attempt: impl FnMut() -> Result<T, BackendError>) -> Result<T, BackendError> {
    let mut left = attempts.max(1);
    loop {
        left -= 1;
        match attempt() {
            Err(BackendError::Unavailable(_)) if left > 0 => continue,
            other => return other,
        }
    }
}

/// Send a request; map the network's answer to the backend's errors:
/// 401/403 unauthorized, other 4xx rejected, 5xx and transport trouble
/// unavailable (the host retries those).
pub fn send(method: &str, url: String, headers: Vec<Header>, body: Vec<u8>) -> Result<Response, BackendError> {
    check_status(send_raw(method, url, headers, body, INSTANCE_TIMEOUT)?)
}

/// The network's answer as [`send`] maps it.
pub fn check_status(resp: Response) -> Result<Response, BackendError> {
    match resp.status {
        200..=299 => Ok(resp),
        401 | 403 => Err(BackendError::Unauthorized(format!("HTTP {}: {}", resp.status, body_text(&resp)))),
        400..=499 => Err(BackendError::Rejected(format!("HTTP {}: {}", resp.status, body_text(&resp)))),
        _ => Err(BackendError::Unavailable(format!("HTTP {}: {}", resp.status, body_text(&resp)))),
    }
}

/// A header of an incoming request, by case-insensitive name.
pub fn incoming_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unavailable_network_is_tried_again_and_only_so_often() {
        let mut calls = 0;
        let r: Result<(), _> = retrying(3, || {
            calls += 1;
            Err(BackendError::Unavailable("down".into()))
        });
        assert!(matches!(r, Err(BackendError::Unavailable(_))));
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<(), _> = retrying(3, || {
            calls += 1;
            Err(BackendError::Rejected("no".into()))
        });
        assert!(matches!(r, Err(BackendError::Rejected(_))));
        assert_eq!(calls, 1, "a refusal is final");
        let mut calls = 0;
        let r = retrying(3, || {
            calls += 1;
            if calls < 2 { Err(BackendError::Unavailable("blip".into())) } else { Ok(calls) }
        });
        assert_eq!(r.unwrap(), 2);
    }
}
