//! `http`: outbound requests for backend plugins, allowed only to hosts in
//! both the manifest's list and the backend instance's grant. Secrets are
//! substituted for `{{secret:NAME}}` here, after the plugin let go of the
//! request, so they never enter plugin memory.

use super::super::bindings::imports::airlift::plugin::http::{Header, Host, HttpError, Request, Response};
use crate::model::PluginKind;
use crate::plugin::{CallState, HostAllowList};
use reqwest::Url;
use std::time::Duration;

/// Largest response body handed to a plugin.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Longest a single request may take, whatever the plugin asks.
const MAX_TIMEOUT_MS: u32 = 30_000;

impl CallState {
    fn check_request(&self, req: &Request) -> Result<Url, HttpError> {
        if self.plugin.kind != PluginKind::Backend {
            return Err(HttpError::Denied("outbound HTTP is for backend plugins".into()));
        }
        let grant = self.grant.as_ref().ok_or_else(|| HttpError::Denied("no backend instance grants hosts".into()))?;
        let url = Url::parse(&req.url).map_err(|e| HttpError::Invalid(format!("url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::Invalid("only http and https".into()));
        }
        let manifest = HostAllowList::parse(&self.plugin.allowed_outbound_hosts).map_err(HttpError::Invalid)?;
        if !manifest.allows(&url) || !grant.allowed_hosts.allows(&url) {
            let host = url.host_str().unwrap_or("").to_string();
            tracing::warn!(plugin = %self.plugin.name, instance = %grant.instance_id, %host, "outbound request refused");
            return Err(HttpError::Denied(format!("host '{host}' is not allowed for this plugin and instance")));
        }
        Ok(url)
    }

    /// Replace every `{{secret:NAME}}` with the instance's secret NAME.
    fn substitute(&self, text: &[u8]) -> Result<Vec<u8>, HttpError> {
        const OPEN: &[u8] = b"{{secret:";
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.windows(OPEN.len()).position(|w| w == OPEN) {
            out.extend_from_slice(&rest[..at]);
            let after = &rest[at + OPEN.len()..];
            let end = after.windows(2).position(|w| w == b"}}").ok_or_else(|| HttpError::Invalid("unclosed {{secret:".into()))?;
            let name = String::from_utf8_lossy(&after[..end]).to_string();
            let grant = self.grant.as_ref().ok_or_else(|| HttpError::Denied("no backend instance".into()))?;
            let sealed = grant.secrets.get(&name).ok_or_else(|| HttpError::Invalid(format!("no secret '{name}'")))?;
            let value = self.host.vault.open_sealed(sealed).map_err(|e| HttpError::Invalid(e.to_string()))?;
            out.extend_from_slice(value.expose());
            rest = &after[end + 2..];
        }
        out.extend_from_slice(rest);
        Ok(out)
    }

    fn build(&self, url: Url, req: &Request) -> Result<reqwest::RequestBuilder, HttpError> {
        let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| HttpError::Invalid(format!("method '{}'", req.method)))?;
        let timeout = Duration::from_millis(req.timeout_ms.clamp(1, MAX_TIMEOUT_MS) as u64);
        let mut builder = self.host.http.request(method, url).timeout(timeout);
        for Header { name, value } in &req.headers {
            let value = self.substitute(value.as_bytes())?;
            let value = reqwest::header::HeaderValue::from_bytes(&value).map_err(|_| HttpError::Invalid(format!("header '{name}'")))?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| HttpError::Invalid(format!("header '{name}'")))?;
            builder = builder.header(name, value);
        }
        Ok(builder.body(self.substitute(&req.body)?))
    }
}

async fn perform(builder: reqwest::RequestBuilder) -> Result<Response, HttpError> {
    let mut resp = builder.send().await.map_err(|e| if e.is_timeout() { HttpError::Timeout } else { HttpError::Transport(e.without_url().to_string()) })?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| Header { name: n.to_string(), value: String::from_utf8_lossy(v.as_bytes()).into() })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| if e.is_timeout() { HttpError::Timeout } else { HttpError::Transport(e.without_url().to_string()) })? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response { status, headers, body })
}

impl Host for CallState {
    fn send(&mut self, req: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        let builder = match self.check_request(&req).and_then(|url| self.build(url, &req)) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        // Plugin calls run on a blocking thread, where waiting is allowed.
        Ok(self.host.runtime.block_on(perform(builder)))
    }
}
