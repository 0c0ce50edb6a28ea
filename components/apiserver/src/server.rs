//! The HTTPS listener: TLS with optional client certificates, the caller's
//! identity attached to each request, HTTP/1.1 and HTTP/2; the limits of
//! a connection (handshake and header timeouts) and of a request (`limits`),
//! and draining when the server stops.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth;
use crate::limits::{Gate, RequestLimits};
use crate::shutdown::Shutdown;

pub struct TlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: &'a Path,
}

pub fn tls_config(files: &TlsFiles<'_>) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(files.cert)
        .with_context(|| format!("cannot read {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} holds no valid PEM certificate", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(files.key).with_context(|| format!("cannot read a private key from {}", files.key.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(files.client_ca).with_context(|| format!("cannot read {}", files.client_ca.display()))? {
        roots.add(ca.with_context(|| format!("{} holds no valid PEM certificate", files.client_ca.display()))?)?;
    }
    // A client without a certificate still connects (and gets 401 on the
    // API); a client with a certificate the CA did not sign does not.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).allow_unauthenticated().build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("the serving certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// How long a connection may take before it has sent what it must.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    /// From accept to a finished TLS handshake.
    pub tls_handshake: Duration,
    /// For an HTTP/1 request's headers to arrive.
    pub header_read: Duration,
}

impl Default for ConnectionTimeouts {
    /// Upstream sets ReadHeaderTimeout to 32 s ("just shy of" its 34 s
    /// upper bound on request timeouts), and Go's server bounds the TLS
    /// handshake by that same timeout.
    fn default() -> Self {
        ConnectionTimeouts { tls_handshake: Duration::from_secs(32), header_read: Duration::from_secs(32) }
    }
}

/// Go's http.Server waits this long after a failed accept, doubling up to
/// `MAX_ACCEPT_BACKOFF`, so that running out of file descriptors does not
/// spin a core.
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `shutdown` drains; then stops
/// accepting and returns once every connection has finished.
pub async fn serve_until_drained(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    router: Router,
    limits: RequestLimits,
    timeouts: ConnectionTimeouts,
    shutdown: Shutdown,
) -> Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let gate = Gate::new(&limits, shutdown.clone());
    // Each connection holds a sender; when all are dropped, all are done.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut backoff = FIRST_ACCEPT_BACKOFF;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.draining() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(c) => {
                backoff = FIRST_ACCEPT_BACKOFF;
                c
            }
            Err(e) => {
                tracing::warn!("accept failed, retrying in {backoff:?}: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection { acceptor: acceptor.clone(), router: router.clone(), gate: gate.clone(), timeouts, shutdown: shutdown.clone() };
        let open = open.clone();
        tokio::spawn(async move {
            connection.serve(tcp, peer).await;
            drop(open);
        });
    }
    drop(listener);
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

/// What serving one connection needs.
struct Connection {
    acceptor: TlsAcceptor,
    router: Router,
    gate: Gate,
    timeouts: ConnectionTimeouts,
    shutdown: Shutdown,
}

impl Connection {
    async fn serve(self, tcp: tokio::net::TcpStream, peer: SocketAddr) {
        let stream = match tokio::time::timeout(self.timeouts.tls_handshake, self.acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let user = auth::from_certificates(stream.get_ref().1.peer_certificates());
        let (router, gate) = (self.router, self.gate);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(user.clone());
            let (router, gate, user) = (router.clone(), gate.clone(), user.clone());
            async move { Ok::<_, std::convert::Infallible>(gate.serve(req.map(axum::body::Body::new), user.as_ref(), router).await) }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.timeouts.header_read);
        // With upgrades: pods/exec and pods/attach switch protocols.
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(connection);
        let served = tokio::select! {
            served = connection.as_mut() => served,
            _ = self.shutdown.draining() => {
                // HTTP/1: close once the current response is sent; h2:
                // GOAWAY, then finish the open streams.
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = served {
            tracing::debug!(%peer, "connection ended: {e}");
        }
    }
}
