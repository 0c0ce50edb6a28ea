//! kubelab's cluster DNS: the [`zone`] built from every Service and
//! EndpointSlice, [`answer`]s to questions against it, and the [`server`]
//! on UDP and TCP. It serves the cluster domain and the reverse zones only
//! and forwards nothing. Health as CoreDNS's: `/health` (alive) and
//! `/ready` (the first zone is built), metrics on their own port.

pub mod answer;
pub mod server;
pub mod zone;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::http::StatusCode;
use axum::routing::get;
use component_base::watch::{self, cloned};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::Store;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;

use crate::server::Handler;

/// How long a TCP client may stay silent before its connection is closed.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Settings {
    pub domain: String,
    pub dns: SocketAddr,
    pub health: SocketAddr,
    pub ready: SocketAddr,
    pub metrics: SocketAddr,
}

/// Serves DNS and keeps the zone up to date until the process ends.
pub async fn run(client: kube::Client, settings: Settings) -> Result<()> {
    let handler = Handler::default();
    let ready = Arc::new(AtomicBool::new(false));
    serve_http(settings.health, axum::Router::new().route("/health", get(|| async { "OK" }))).await?;
    let flag = ready.clone();
    let readiness = move || {
        let flag = flag.clone();
        async move {
            if flag.load(Ordering::SeqCst) {
                (StatusCode::OK, "OK")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "the first lists of Services and EndpointSlices are not in yet")
            }
        }
    };
    serve_http(settings.ready, axum::Router::new().route("/ready", get(readiness))).await?;
    let counters = handler.counters.clone();
    let metrics = move || {
        let counters = counters.clone();
        async move { counters.lock().unwrap_or_else(|e| e.into_inner()).render() }
    };
    serve_http(settings.metrics, axum::Router::new().route("/metrics", get(metrics))).await?;

    let mut server = hickory_server::Server::new(handler.clone());
    server.register_socket(UdpSocket::bind(settings.dns).await.with_context(|| format!("binding UDP {}", settings.dns))?);
    server.register_listener(TcpListener::bind(settings.dns).await.with_context(|| format!("binding TCP {}", settings.dns))?, TCP_TIMEOUT, 64);
    tracing::info!(address = %settings.dns, domain = %settings.domain, "serving DNS");

    let changed = Arc::new(Notify::new());
    let notify = |changed: Arc<Notify>| move || changed.notify_one();
    let services = watch::all::<Service>(client.clone(), notify(changed.clone()));
    let slices = watch::all::<EndpointSlice>(client, notify(changed.clone()));
    let rebuild = keep_zone(handler.zone.clone(), settings.domain.clone(), services, slices, changed, ready);
    tokio::select! {
        result = server.block_until_done() => result.context("the DNS server stopped"),
        result = rebuild => result.context("watching Services and EndpointSlices"),
    }
}

/// Builds the zone once both lists are in, then again on every change.
/// Until then questions get SERVFAIL and /ready says not ready, as
/// CoreDNS's kubernetes plugin does. Returns only if a list never comes.
async fn keep_zone(
    zone: Arc<std::sync::RwLock<Option<Arc<zone::Zone>>>>,
    domain: String,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    changed: Arc<Notify>,
    ready: Arc<AtomicBool>,
) -> Result<()> {
    services.wait_until_ready().await?;
    slices.wait_until_ready().await?;
    loop {
        let serial = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0);
        let built = zone::build(&domain, &cloned(&services), &cloned(&slices), serial);
        tracing::debug!(names = built.len(), "zone rebuilt");
        *zone.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(built));
        if !ready.swap(true, Ordering::SeqCst) {
            tracing::info!("services and endpoint slices listed; the zone is served");
        }
        changed.notified().await;
    }
}

async fn serve_http(address: SocketAddr, router: axum::Router) -> Result<()> {
    let listener = TcpListener::bind(address).await.with_context(|| format!("binding {address}"))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("HTTP on {address}: {e}");
        }
    });
    Ok(())
}
