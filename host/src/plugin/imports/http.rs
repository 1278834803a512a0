//! `http`: outbound requests for backend plugins, allowed only to hosts in
//! both the manifest's list and the backend instance's grant, over the
//! instance's TLS settings ([`super::tls`]). Secrets are substituted for
//! `{{secret:NAME}}` here, after the plugin let go of the request, so they
//! never enter plugin memory. A failure that retrying cannot heal (a
//! certificate, a name) is also noted in the call state, so the host fails
//! the campaign with it whatever the plugin makes of it.

use super::super::bindings::latest::imports::airlift::plugin::http::{Header, Host, HttpError, Request, Response};
use crate::model::{PluginKind, MAX_REQUEST_TIMEOUT_MS};
use crate::plugin::{CallState, HostAllowList};
use reqwest::Url;
use std::time::{Duration, Instant};

/// Largest response body handed to a plugin.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

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
        // An instance that allows plain HTTP reaches the hosts the manifest
        // allows over HTTPS; the scheme is the operator's choice.
        let mut as_manifest_sees_it = url.clone();
        if url.scheme() == "http" && grant.transport.insecure_http {
            let _ = as_manifest_sees_it.set_scheme("https");
        }
        if !manifest.allows(&as_manifest_sees_it) || !grant.allowed_hosts.allows(&url) {
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

    /// The request's timeout: its own (up to 600 s), else the instance's,
    /// never past the call's deadline.
    fn timeout(&self, req: &Request) -> Result<Duration, HttpError> {
        let transport = self.grant.as_ref().map(|g| &g.transport);
        let asked = match req.timeout_ms {
            0 => transport.map_or(crate::model::Transport::default().request_timeout_ms(), |t| t.request_timeout_ms()),
            ms => ms.min(MAX_REQUEST_TIMEOUT_MS),
        };
        let left = self.call_deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        Ok(Duration::from_millis(asked as u64).min(left))
    }

    fn build(&self, url: Url, req: &Request) -> Result<reqwest::RequestBuilder, HttpError> {
        let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| HttpError::Invalid(format!("method '{}'", req.method)))?;
        let grant = self.grant.as_ref().ok_or_else(|| HttpError::Denied("no backend instance".into()))?;
        let client = self.host.http_client(&grant.instance_id, &grant.transport).map_err(HttpError::Invalid)?;
        let mut builder = client.request(method, url).timeout(self.timeout(req)?);
        for Header { name, value } in &req.headers {
            let value = self.substitute(value.as_bytes())?;
            let value = reqwest::header::HeaderValue::from_bytes(&value).map_err(|_| HttpError::Invalid(format!("header '{name}'")))?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| HttpError::Invalid(format!("header '{name}'")))?;
            builder = builder.header(name, value);
        }
        Ok(builder.body(self.substitute(&req.body)?))
    }
}

/// A failed request as the plugin sees it, and why it will keep failing
/// when retrying cannot help.
fn request_error(e: reqwest::Error) -> (HttpError, Option<String>) {
    if e.is_timeout() {
        return (HttpError::Timeout, None);
    }
    let lasting = super::tls::lasting_failure(&e);
    let message = lasting.clone().unwrap_or_else(|| e.without_url().to_string());
    (HttpError::Transport(message), lasting)
}

async fn perform(builder: reqwest::RequestBuilder) -> Result<Response, (HttpError, Option<String>)> {
    let mut resp = builder.send().await.map_err(request_error)?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| Header { name: n.to_string(), value: String::from_utf8_lossy(v.as_bytes()).into() })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err((HttpError::TooLarge, None));
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
        // Time spent waiting is not the plugin's CPU time.
        let started = Instant::now();
        let result = self.host.runtime.block_on(perform(builder));
        self.io_wait += started.elapsed();
        Ok(result.map_err(|(error, lasting)| match lasting {
            Some(why) => self.note_lasting(error, why),
            None => error,
        }))
    }
}

impl CallState {
    /// Remember a failure that retrying cannot heal for the host to act on.
    fn note_lasting(&mut self, error: HttpError, why: String) -> HttpError {
        tracing::warn!(plugin = %self.plugin.name, reason = %why, "outbound request cannot succeed until the instance is fixed");
        self.lasting_network_failure = Some(why);
        error
    }
}
