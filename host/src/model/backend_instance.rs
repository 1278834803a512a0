//! A configured backend (network) instance: which backend plugin, its
//! settings, its secrets (sealed), the hosts it may reach and how the host
//! reaches them (TLS trust, plain HTTP, timeouts).

use super::fleet::{fleet_object_macro as object, id_for};
use super::{require_text, Editable, FieldError, InputContext, Object};
use crate::keys::Sealed;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest request timeout an instance or a single request may set: a
/// firmware upload to a gateway takes up to 600 s (seed 000).
pub const MAX_REQUEST_TIMEOUT_MS: u32 = 600_000;
/// Request timeout when the instance sets none: short, so a network that
/// hangs is found out soon.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u32 = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendInstance {
    pub id: String,
    pub name: String,
    pub plugin: String,
    pub settings: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Sealed>,
    /// `scheme://host[:port]` or `*.domain` entries the operator grants.
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub transport: Transport,
    /// What the operator should know about this configuration (plain HTTP
    /// beyond loopback); shown, never read back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub archived: bool,
}
object!(BackendInstance, "backend-instances", |s| s.id.clone(), secrets = ["secrets"]);

/// How the host reaches the instance's network. Gateways ship self-signed
/// certificates, so an operator may trust an extra CA or pin the server's
/// certificate; the platform's web PKI roots apply otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Transport {
    /// PEM certificates trusted besides the platform's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificates_pem: Option<String>,
    /// SHA-256 of the server certificate (DER), 64 hex digits (colons
    /// allowed): the server must present exactly this certificate. Without
    /// a CA as well, the pin alone identifies the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_certificate_sha256: Option<String>,
    /// Allow plain `http://` beyond loopback (logged and shown as a warning).
    #[serde(default)]
    pub insecure_http: bool,
    /// Timeout of a request that names none; a request may ask for up to
    /// [`MAX_REQUEST_TIMEOUT_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u32>,
    /// Host names to connect to at a given address instead of resolving
    /// them (curl's `--resolve`): `{"lrc.example.com": "10.0.0.5:443"}`.
    /// TLS still checks the certificate against the name. For networks
    /// whose names their DNS does not serve, and for tests.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub resolve: std::collections::BTreeMap<String, std::net::SocketAddr>,
}

impl Transport {
    /// Check and normalise what an operator entered.
    fn checked(mut self) -> Result<Self, FieldError> {
        if let Some(pem) = &self.ca_certificates_pem {
            crate::plugin::tls::parse_certificates(pem).map_err(|e| FieldError::new("transport.caCertificatesPem", e))?;
        }
        if let Some(pin) = &self.pinned_certificate_sha256 {
            let hex: String = pin.chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FieldError::new("transport.pinnedCertificateSha256", "64 hex digits (colons allowed): the SHA-256 of the server certificate"));
            }
            self.pinned_certificate_sha256 = Some(hex);
        }
        if let Some(ms) = self.request_timeout_ms {
            if !(1..=MAX_REQUEST_TIMEOUT_MS).contains(&ms) {
                return Err(FieldError::new("transport.requestTimeoutMs", format!("1..={MAX_REQUEST_TIMEOUT_MS}")));
            }
        }
        Ok(self)
    }

    pub fn request_timeout_ms(&self) -> u32 {
        self.request_timeout_ms.unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendInstanceInput {
    pub name: String,
    pub plugin: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Write-only; names given replace stored values, others are kept.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub transport: Transport,
}

impl Editable for BackendInstance {
    type Input = BackendInstanceInput;
    fn from_input(i: BackendInstanceInput, prior: Option<&Self>, ctx: &InputContext) -> Result<Self, FieldError> {
        require_text("name", &i.name)?;
        require_text("plugin", &i.plugin)?;
        let transport = i.transport.checked()?;
        let mut warnings = Vec::new();
        for host in &i.allowed_hosts {
            let pattern = crate::plugin::HostPattern::parse(host).map_err(|e| FieldError::new("allowedHosts", e))?;
            if let Some(why) = pattern.grant_problem(transport.insecure_http) {
                return Err(FieldError::new("allowedHosts", format!("'{host}': {why}")));
            }
            if pattern.is_plain_http_beyond_loopback() {
                warnings.push(format!("'{host}' is reached over plain HTTP: requests and secrets cross the network unencrypted"));
            }
        }
        let mut secrets = prior.map(|p| p.secrets.clone()).unwrap_or_default();
        for (name, value) in &i.secrets {
            secrets.insert(name.clone(), ctx.vault.seal(value.as_bytes()));
        }
        let id = id_for(prior, ctx);
        for w in &warnings {
            tracing::warn!(instance = %id, "{w}");
        }
        Ok(BackendInstance {
            id,
            name: i.name,
            plugin: i.plugin,
            settings: i.settings,
            secrets,
            allowed_hosts: i.allowed_hosts,
            transport,
            warnings,
            archived: prior.is_some_and(|p| p.archived),
        })
    }
}
