//! The secure port of a component: `/healthz`, `/livez` and `/readyz` over
//! HTTPS with a self-signed certificate, as upstream's components serve
//! them when given no `--tls-cert-file`. The apiserver's
//! `componentstatuses` and the lab's health gates ask it; neither checks
//! the certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server configuration with a new self-signed certificate for `names`
/// (DNS names or IP addresses).
pub fn self_signed(names: &[String]) -> Result<rustls::ServerConfig> {
    let (cert, key) = self_signed_certificate(names)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config =
        rustls::ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_no_client_auth().with_single_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A new self-signed certificate for `names` and its key.
pub fn self_signed_certificate(names: &[String]) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec()).context("cannot make a self-signed serving certificate")?;
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    Ok((cert, key))
}

async fn ok() -> &'static str {
    "ok"
}

/// The health routes every component serves.
pub fn health_router() -> Router {
    Router::new().route("/healthz", get(ok)).route("/livez", get(ok)).route("/readyz", get(ok))
}

/// The names a self-signed certificate of this machine carries: localhost,
/// loopback and the hostname.
pub fn local_names() -> Vec<String> {
    let hostname = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    ["localhost".to_string(), "127.0.0.1".to_string(), hostname].into_iter().filter(|n| !n.is_empty()).collect()
}

/// Binds `addr` and serves the health routes on it in the background.
pub async fn serve_health(addr: SocketAddr) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let tls = self_signed(&local_names())?;
    tracing::info!("serving /healthz on https://{bound}");
    tokio::spawn(async move {
        if let Err(e) = serve(listener, tls, health_router()).await {
            tracing::error!("the secure port stopped: {e:#}");
        }
    });
    Ok(bound)
}

/// The certificates a client presented on its connection (empty without
/// one), in each request's extensions.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(pub Vec<CertificateDer<'static>>);

/// Serves `router` over TLS on `listener` until the process ends.
pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig, router: Router) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let mut backoff = Duration::from_millis(5);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = Duration::from_millis(5);
                accepted
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!("accept failed: {e}; trying again in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            // Handlers that authorize by client certificate read it here.
            let peer_certificates = PeerCertificates(stream.get_ref().1.peer_certificates().map(|c| c.to_vec()).unwrap_or_default());
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(peer_certificates.clone());
                router.clone().oneshot(request)
            });
            // With upgrades: the kubelet's exec, attach and port-forward
            // switch protocols on this connection.
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_is_served_over_tls() {
        let bound = serve_health((std::net::Ipv4Addr::LOCALHOST, 0).into()).await.unwrap();
        // As the lab's health gate asks: curl, not checking the
        // self-signed certificate.
        for path in ["/healthz", "/livez", "/readyz"] {
            let out =
                tokio::process::Command::new("curl").args(["-fsk", "--max-time", "10", &format!("https://{bound}{path}")]).output().await.expect("curl runs");
            assert!(out.status.success(), "{path}: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout), "ok", "{path}");
        }
    }
}
