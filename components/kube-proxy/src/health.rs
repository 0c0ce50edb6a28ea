//! What kube-proxy tells about itself: `/healthz` and `/livez` (upstream's
//! port 10256: healthy once rules were written and no change has waited
//! longer than twice the sync period), `/metrics` (a few of upstream's
//! kubeproxy_* series), and the health-check node ports of Services with
//! externalTrafficPolicy Local, which answer 200 only on nodes that hold
//! one of their endpoints (so load balancers send traffic only there).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::model::ServicePort;

#[derive(Debug, Default)]
struct Inner {
    last_sync: Option<SystemTime>,
    /// When the oldest change not yet written arrived.
    pending_since: Option<Instant>,
    syncs: u64,
    sync_seconds_total: f64,
    counts: Option<RuleCounts>,
}

/// How much the last sync wrote, by backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleCounts {
    Iptables { filter: usize, nat: usize },
    Nftables { rules: usize, elements: usize },
}

impl std::fmt::Display for RuleCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleCounts::Iptables { filter, nat } => write!(f, "{filter} filter and {nat} nat rules"),
            RuleCounts::Nftables { rules, elements } => write!(f, "{rules} nftables rules and {elements} set elements"),
        }
    }
}

/// Shared between the sync loop and the HTTP handlers.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Mutex<Inner>>,
    timeout: Duration,
}

impl Health {
    pub fn new(sync_period: Duration) -> Health {
        Health { inner: Arc::default(), timeout: sync_period * 2 }
    }

    pub fn queued(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.pending_since.get_or_insert_with(Instant::now);
    }

    pub fn synced(&self, took: Duration, counts: RuleCounts) {
        let mut inner = self.inner.lock().unwrap();
        inner.last_sync = Some(SystemTime::now());
        inner.pending_since = None;
        inner.syncs += 1;
        inner.sync_seconds_total += took.as_secs_f64();
        inner.counts = Some(counts);
    }

    fn healthy(&self) -> (bool, serde_json::Value) {
        let inner = self.inner.lock().unwrap();
        let stuck = inner.pending_since.map(|t| t.elapsed() > self.timeout).unwrap_or(false);
        let healthy = inner.last_sync.is_some() && !stuck;
        let stamp = |t: SystemTime| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let body = json!({
            "lastUpdated": inner.last_sync.map(stamp).unwrap_or_default(),
            "currentTime": stamp(SystemTime::now()),
            "nodeEligible": true,
        });
        (healthy, body)
    }

    fn metrics(&self) -> String {
        let inner = self.inner.lock().unwrap();
        let last = inner.last_sync.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let mut text = format!(
            "# HELP kubeproxy_sync_proxy_rules_duration_seconds SyncProxyRules latency in seconds\n\
             # TYPE kubeproxy_sync_proxy_rules_duration_seconds summary\n\
             kubeproxy_sync_proxy_rules_duration_seconds_sum {}\n\
             kubeproxy_sync_proxy_rules_duration_seconds_count {}\n\
             # HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds The last time proxy rules were successfully synced\n\
             # TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge\n\
             kubeproxy_sync_proxy_rules_last_timestamp_seconds {last}\n",
            inner.sync_seconds_total, inner.syncs
        );
        // The rule counts of the mode in use (upstream's iptables gauge;
        // the nftables one named after it, as upstream has none).
        match inner.counts {
            Some(RuleCounts::Iptables { filter, nat }) => text.push_str(&format!(
                "# HELP kubeproxy_sync_proxy_rules_iptables_total Number of iptables rules written by kube-proxy in last sync\n\
                 # TYPE kubeproxy_sync_proxy_rules_iptables_total gauge\n\
                 kubeproxy_sync_proxy_rules_iptables_total{{table=\"filter\"}} {filter}\n\
                 kubeproxy_sync_proxy_rules_iptables_total{{table=\"nat\"}} {nat}\n"
            )),
            Some(RuleCounts::Nftables { rules, elements }) => text.push_str(&format!(
                "# HELP kubeproxy_sync_proxy_rules_nftables_total Number of nftables rules and set elements in kube-proxy's table after the last sync\n\
                 # TYPE kubeproxy_sync_proxy_rules_nftables_total gauge\n\
                 kubeproxy_sync_proxy_rules_nftables_total{{kind=\"rules\"}} {rules}\n\
                 kubeproxy_sync_proxy_rules_nftables_total{{kind=\"elements\"}} {elements}\n"
            )),
            None => {}
        }
        text
    }
}

async fn healthz(State(health): State<Health>) -> impl IntoResponse {
    let (healthy, body) = health.healthy();
    (if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

async fn metrics(State(health): State<Health>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], health.metrics())
}

/// Serves /healthz and /livez; returns the bound address.
pub async fn serve_health(addr: SocketAddr, health: Health) -> anyhow::Result<SocketAddr> {
    let router = Router::new().route("/healthz", get(healthz)).route("/livez", get(healthz)).with_state(health);
    serve(addr, router).await
}

/// Serves /metrics; returns the bound address.
pub async fn serve_metrics(addr: SocketAddr, health: Health) -> anyhow::Result<SocketAddr> {
    serve(addr, Router::new().route("/metrics", get(metrics)).with_state(health)).await
}

async fn serve(addr: SocketAddr, router: Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("the server on {bound} stopped: {e}");
        }
    });
    Ok(bound)
}

/// One Service's answer on its health-check node port.
#[derive(Debug, Clone, PartialEq)]
struct ServiceHealth {
    namespace: String,
    name: String,
    local_endpoints: usize,
}

async fn service_health(State(state): State<Arc<Mutex<ServiceHealth>>>) -> impl IntoResponse {
    let s = state.lock().unwrap().clone();
    let body = json!({"service": {"namespace": s.namespace, "name": s.name}, "localEndpoints": s.local_endpoints, "serviceProxyHealthy": true});
    (if s.local_endpoints > 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// The health-check node ports this node serves, kept to the model.
#[derive(Default)]
pub struct HealthCheckPorts {
    open: BTreeMap<u16, (Arc<Mutex<ServiceHealth>>, tokio::task::JoinHandle<()>)>,
}

impl HealthCheckPorts {
    pub async fn update(&mut self, ports: &[ServicePort]) {
        let mut wanted: BTreeMap<u16, ServiceHealth> = BTreeMap::new();
        for port in ports {
            let Some(number) = port.health_check_node_port else { continue };
            let entry = wanted.entry(number).or_insert_with(|| ServiceHealth {
                namespace: port.name.namespace.clone(),
                name: port.name.name.clone(),
                local_endpoints: 0,
            });
            entry.local_endpoints = entry.local_endpoints.max(port.usable_endpoints(true).len());
        }
        self.open.retain(|number, (_, task)| {
            let keep = wanted.contains_key(number);
            if !keep {
                task.abort();
            }
            keep
        });
        for (number, health) in wanted {
            if let Some((state, _)) = self.open.get(&number) {
                *state.lock().unwrap() = health;
                continue;
            }
            let state = Arc::new(Mutex::new(health));
            let router = Router::new().fallback(service_health).with_state(state.clone());
            match tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], number))).await {
                Ok(listener) => {
                    let task = tokio::spawn(async move {
                        let _ = axum::serve(listener, router).await;
                    });
                    self.open.insert(number, (state, task));
                }
                Err(e) => tracing::warn!("cannot serve the health-check node port {number}: {e}"),
            }
        }
    }
}
