//! How the `http` import reaches a backend instance's network: rustls with
//! the platform's web PKI roots, plus what the instance adds (a CA for a
//! gateway's self-signed certificate, or a pinned certificate), and the
//! failures that will not heal by retrying (a certificate that does not
//! verify, a name that does not resolve), recognised by type.

use crate::model::Transport;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

/// Every certificate in a PEM text; at least one.
pub fn parse_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block in the PEM text".into());
    }
    let mut store = RootCertStore::empty();
    for cert in &certs {
        store.add(cert.clone()).map_err(|e| format!("certificate refused: {e}"))?;
    }
    Ok(certs)
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// The platform's trusted roots, read once; Mozilla's bundled roots when
/// the platform has none (a bare container without `ca-certificates`).
fn platform_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 {
            tracing::warn!("no trusted roots found on this machine; using the bundled Mozilla roots");
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
}

/// The TLS client configuration for an instance's transport settings.
pub fn client_config(transport: &Transport) -> Result<ClientConfig, String> {
    let mut roots = platform_roots().clone();
    let extra_ca = transport.ca_certificates_pem.as_deref().map(parse_certificates).transpose()?;
    for cert in extra_ca.iter().flatten() {
        roots.add(cert.clone()).map_err(|e| format!("CA certificate refused: {e}"))?;
    }
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
    let config = match &transport.pinned_certificate_sha256 {
        None => builder.with_root_certificates(roots).with_no_client_auth(),
        Some(pin) => {
            let mut sha256 = [0u8; 32];
            hex::decode_to_slice(pin, &mut sha256).map_err(|_| "pinned certificate SHA-256 is not 64 hex digits".to_string())?;
            // With an extra CA the chain must verify as well; a pin alone
            // identifies a self-signed gateway certificate.
            let chain = match extra_ca {
                Some(_) => Some(WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build().map_err(|e| e.to_string())?),
                None => None,
            };
            let verifier = PinnedCertificate { sha256, chain, provider: provider() };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
    };
    Ok(config)
}

/// Accepts exactly the server certificate whose SHA-256 is pinned.
#[derive(Debug)]
struct PinnedCertificate {
    sha256: [u8; 32],
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

/// The server presented another certificate than the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("the server certificate (SHA-256 {presented}) is not the pinned one")]
struct PinMismatch {
    presented: String,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if presented != self.sha256 {
            let mismatch = PinMismatch { presented: hex::encode(presented) };
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(mismatch)))));
        }
        match &self.chain {
            Some(chain) => chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A host name that does not resolve: typed, so the `http` import can tell
/// it from a connection that merely failed.
#[derive(Debug, thiserror::Error)]
#[error("the name '{name}' does not resolve: {source}")]
pub struct NameNotResolved {
    name: String,
    source: std::io::Error,
}

/// Name resolution through the system resolver, failing with
/// [`NameNotResolved`]. Names under `.invalid` fail at once without a
/// query, as RFC 6761 §6.4 lets applications do: they never resolve.
pub struct Resolver;

fn never_resolves(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "invalid" || host.ends_with(".invalid")
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved = if never_resolves(&host) {
                Err(std::io::Error::new(std::io::ErrorKind::NotFound, "a name under .invalid (RFC 6761)"))
            } else {
                tokio::net::lookup_host((host.as_str(), 0)).await.map(|addrs| addrs.collect::<Vec<SocketAddr>>())
            };
            match resolved {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                Err(source) => Err(Box::new(NameNotResolved { name: host, source }) as Box<dyn StdError + Send + Sync>),
            }
        })
    }
}

/// Why a failed request will fail the same way until the operator changes
/// something (a certificate that does not verify, a name that does not
/// resolve); `None` for failures worth retrying.
pub fn lasting_failure(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            if let Some(why) = lasting_tls_failure(tls) {
                return Some(why);
            }
        }
        if let Some(dns) = e.downcast_ref::<NameNotResolved>() {
            return Some(dns.to_string());
        }
        // `io::Error` hides the error it wraps from `source()`.
        next = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

fn lasting_tls_failure(e: &rustls::Error) -> Option<String> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => Some(format!("TLS: {}", other.0)),
        rustls::Error::InvalidCertificate(_) => Some(format!("TLS: {e}; trust the server's CA or pin its certificate in the instance's transport settings")),
        rustls::Error::NoCertificatesPresented | rustls::Error::PeerIncompatible(_) | rustls::Error::UnsupportedNameType => Some(format!("TLS: {e}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_pem_is_checked() {
        assert!(parse_certificates("").is_err());
        assert!(parse_certificates("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").is_err());
    }

    #[test]
    fn certificate_and_name_failures_last_and_others_do_not() {
        let pin = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        // As hyper wraps it: an io::Error around an io::Error around rustls's.
        let io = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, pin));
        assert!(lasting_failure(&io).is_some_and(|m| m.contains("pin its certificate")));
        assert!(never_resolves("gw.INVALID.") && never_resolves("invalid") && !never_resolves("invalid.example.com"));
        let dns = NameNotResolved { name: "gw.invalid".into(), source: std::io::Error::other("no such host") };
        assert!(lasting_failure(&dns).is_some());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(lasting_failure(&refused), None);
        assert_eq!(lasting_failure(&rustls::Error::DecryptError), None);
    }
}
