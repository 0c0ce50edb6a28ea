//! The secure port: /healthz over HTTPS, which the apiserver's
//! componentstatuses and the lab's health gate ask. As upstream does when
//! it is given no serving certificate, the controller-manager makes a
//! self-signed one at start; the probes do not verify it.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::routing::get;
use axum::Router;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// A server configuration with a new self-signed certificate for `names`
/// (DNS names or IP addresses).
pub fn self_signed(names: &[String]) -> Result<rustls::ServerConfig> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec()).context("cannot make a self-signed serving certificate")?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config =
        rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_no_client_auth().with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn ok() -> &'static str {
    "ok"
}

pub fn router() -> Router {
    Router::new().route("/healthz", get(ok))
}

/// Serves /healthz on `listener` until the process ends, through the
/// apiserver library's HTTPS listener (as upstream's controller-manager
/// serves through k8s.io/apiserver's secure serving).
pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig) -> Result<()> {
    apiserver::server::serve(listener, tls, router()).await
}
