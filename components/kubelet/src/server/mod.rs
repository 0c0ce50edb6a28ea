//! The kubelet's HTTPS port (:10250): the apiserver's way in for logs,
//! exec, attach and port-forward. Serving certificate from `--tls-cert-file` (the lab's CA signed
//! it for the node's name), client certificates checked against
//! `--client-ca-file`; of those, only the apiserver's kubelet client (and
//! cluster admins, `system:masters`) may use it, as upstream's
//! authorization of `nodes/proxy` grants.

mod attach;
mod exec;
mod log_follower;
mod logs;
mod port_forward;
mod streams;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use component_base::serving::PeerCertificates;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::pods::Manager;
use crate::Kubelet;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub addr: SocketAddr,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    /// Plain HTTP /healthz (upstream's --healthz-port, on localhost).
    pub healthz: Option<SocketAddr>,
}

#[derive(Clone)]
pub(crate) struct Ctx {
    pub kubelet: Arc<Kubelet>,
    pub pods: Arc<Manager>,
}

/// The client certificate's names may use the port: the apiserver's
/// kubelet client, or any member of `system:masters`.
const ALLOWED_USER: &str = "kube-apiserver-kubelet-client";
const ALLOWED_GROUP: &str = "system:masters";

pub async fn start(kubelet: Arc<Kubelet>, pods: Arc<Manager>, settings: ServerSettings) -> Result<()> {
    let tls = tls_config(&settings, &kubelet.settings.node_name)?;
    let ctx = Ctx { kubelet, pods };
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods_list))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(logs::container_logs))
        .route("/exec/{namespace}/{pod}/{container}", any(exec::exec))
        .route("/exec/{namespace}/{pod}/{uid}/{container}", any(exec::exec))
        .route("/attach/{namespace}/{pod}/{container}", any(attach::attach))
        .route("/attach/{namespace}/{pod}/{uid}/{container}", any(attach::attach))
        .route("/portForward/{namespace}/{pod}", any(port_forward::port_forward))
        .route("/portForward/{namespace}/{pod}/{uid}", any(port_forward::port_forward_with_uid))
        .layer(axum::middleware::from_fn(authorize))
        .with_state(ctx);
    let listener = tokio::net::TcpListener::bind(settings.addr).await.with_context(|| format!("listening on {}", settings.addr))?;
    tracing::info!("serving on https://{}", settings.addr);
    tokio::spawn(async move {
        if let Err(e) = component_base::serving::serve(listener, tls, router).await {
            tracing::error!("the kubelet's port stopped: {e:#}");
        }
    });
    if let Some(addr) = settings.healthz {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, Router::new().route("/healthz", get(|| async { "ok" }))).await;
        });
    }
    Ok(())
}

fn tls_config(settings: &ServerSettings, node: &str) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match &settings.client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).with_context(|| format!("reading --client-ca-file {}", path.display()))? {
                roots.add(cert?)?;
            }
            builder.with_client_cert_verifier(rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => {
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(cert).with_context(|| format!("reading --tls-cert-file {}", cert.display()))?.collect::<Result<_, _>>()?;
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading --tls-private-key-file {}", key.display()))?;
            builder.with_single_cert(certs, key)?
        }
        _ => {
            // Upstream makes a self-signed one when given none; so do we.
            let mut names = component_base::serving::local_names();
            names.push(node.to_string());
            let (cert, key) = component_base::serving::self_signed_certificate(&names)?;
            builder.with_single_cert(vec![cert], key)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Only the apiserver (and admins) may use the port.
async fn authorize(request: Request, next: axum::middleware::Next) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let certs = request.extensions().get::<PeerCertificates>().cloned().unwrap_or_default();
    let Some(cert) = certs.0.first() else {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    };
    let (user, groups) = names(cert);
    if user != ALLOWED_USER && !groups.iter().any(|g| g == ALLOWED_GROUP) {
        let message = format!("Forbidden (user={user}, verb=get, resource=nodes, subresource(s)=[proxy])");
        return (StatusCode::FORBIDDEN, message).into_response();
    }
    next.run(request).await
}

/// The certificate's common name and organizations (user and groups, as
/// Kubernetes reads them).
fn names(cert: &CertificateDer<'_>) -> (String, Vec<String>) {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else { return (String::new(), vec![]) };
    let subject = parsed.subject();
    let user = subject.iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or("").to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok()).map(str::to_string).collect();
    (user, groups)
}

async fn pods_list(State(ctx): State<Ctx>) -> Response {
    let items = ctx.pods.pods();
    axum::Json(serde_json::json!({ "kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items })).into_response()
}

/// A plain-text error, as the kubelet answers them.
pub(crate) fn text(code: StatusCode, message: impl Into<String>) -> Response {
    (code, [("content-type", "text/plain; charset=utf-8")], message.into()).into_response()
}

pub(crate) type Params = Query<Vec<(String, String)>>;
pub(crate) type PodPath = Path<(String, String, String)>;
