//! How a simulated network service listens: plain HTTP, or HTTPS with a
//! certificate a test made, as the real services are reached.

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A server certificate chain and its private key, PEM.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub certificate_chain_pem: String,
    pub private_key_pem: String,
}

/// Where and how to listen. Loopback only.
#[derive(Debug, Clone)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: Option<TlsIdentity>,
}

impl Listen {
    /// Plain HTTP on a free loopback port.
    pub fn loopback() -> Self {
        Self { addr: SocketAddr::from(([127, 0, 0, 1], 0)), tls: None }
    }

    /// HTTPS on a free loopback port.
    pub fn loopback_tls(identity: TlsIdentity) -> Self {
        Self { addr: SocketAddr::from(([127, 0, 0, 1], 0)), tls: Some(identity) }
    }
}

/// A running listener.
pub struct Listening {
    pub addr: SocketAddr,
    tls: bool,
    pub task: JoinHandle<()>,
}

impl Listening {
    /// `http://` or `https://` and the address.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }
}

/// Serve `app` as `listen` says; `name` tags a failure in the log.
pub async fn serve(app: Router, listen: Listen, name: &'static str) -> std::io::Result<Listening> {
    let listener = std::net::TcpListener::bind(listen.addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let tls = listen.tls.is_some();
    let task = match listen.tls {
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "{name} stopped");
                }
            })
        }
        Some(identity) => {
            let config = server_config(&identity)?;
            let server = axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(Arc::new(config)))?;
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "{name} stopped");
                }
            })
        }
    };
    Ok(Listening { addr, tls, task })
}

fn server_config(identity: &TlsIdentity) -> std::io::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"));
    let chain = CertificateDer::pem_slice_iter(identity.certificate_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(identity.private_key_pem.as_bytes()).map_err(|e| bad("private key", &e))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS", &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad("TLS identity", &e))
}
