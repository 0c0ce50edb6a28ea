//! componentstatuses: not stored, but asked at read time, as upstream
//! does: each etcd member for its status, the scheduler and the
//! controller-manager on their /healthz (TLS, certificate not checked, as
//! upstream's probe does). Deprecated upstream; kubectl still shows it.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(2);
pub const DEPRECATION: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// One component to ask.
#[derive(Debug, Clone)]
pub enum Probe {
    /// An etcd member's client URL, asked with the apiserver's own etcd
    /// client TLS (etcd lets nothing else in).
    Etcd { name: String, endpoint: String, tls: Option<crate::storage::EtcdTls> },
    /// A component's health endpoint over HTTPS (`host:port`).
    Healthz { name: String, address: String },
}

impl Probe {
    fn name(&self) -> &str {
        match self {
            Probe::Etcd { name, .. } | Probe::Healthz { name, .. } => name,
        }
    }
}

/// The probes upstream makes: the scheduler, the controller-manager, and
/// every etcd server the apiserver uses.
pub fn probes(etcd_servers: &[String], etcd_tls: Option<&crate::storage::EtcdTls>, scheduler: &str, controller_manager: &str) -> Vec<Probe> {
    let mut probes = vec![
        Probe::Healthz { name: "controller-manager".into(), address: controller_manager.into() },
        Probe::Healthz { name: "scheduler".into(), address: scheduler.into() },
    ];
    for (i, endpoint) in etcd_servers.iter().enumerate() {
        probes.push(Probe::Etcd { name: format!("etcd-{i}"), endpoint: endpoint.clone(), tls: etcd_tls.cloned() });
    }
    probes.sort_by(|a, b| a.name().cmp(b.name()));
    probes
}

async fn ask(probe: &Probe) -> Result<(), String> {
    match probe {
        Probe::Etcd { endpoint, tls, .. } => {
            let mut options = etcd_client::ConnectOptions::new().with_connect_timeout(TIMEOUT).with_timeout(TIMEOUT);
            if let Some(tls) = tls {
                options = tls.apply(options);
            }
            let mut client = etcd_client::Client::connect([endpoint.as_str()], Some(options)).await.map_err(|e| e.to_string())?;
            client.status().await.map(|_| ()).map_err(|e| e.to_string())
        }
        Probe::Healthz { address, .. } => {
            let url = format!("https://{address}/healthz");
            healthz(address).await.map_err(|e| format!("Get \"{url}\": {e}"))
        }
    }
}

async fn healthz(address: &str) -> Result<(), String> {
    let config = component_base::tls::unchecked_client_config().map_err(|e| e.to_string())?;
    let host = address.rsplit_once(':').map(|(h, _)| h).unwrap_or(address).to_string();
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(address).await.map_err(|e| format!("dial tcp {address}: {e}"))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response);
        match text.lines().next() {
            Some(status) if status.split_whitespace().nth(1) == Some("200") => Ok(()),
            Some(status) => Err(format!("unhealthy: {status}")),
            None => Err("empty response".to_string()),
        }
    };
    tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| "timed out".to_string())?
}

fn object(name: &str, result: Result<(), String>) -> Value {
    let condition = match result {
        Ok(()) => json!({"type": "Healthy", "status": "True", "message": "ok"}),
        Err(e) => json!({"type": "Healthy", "status": "False", "error": e}),
    };
    json!({"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": name}, "conditions": [condition]})
}

/// Every component's status, asked in parallel.
pub async fn list(probes: &[Probe]) -> Vec<Value> {
    let answers = futures_util::future::join_all(probes.iter().map(ask)).await;
    probes.iter().zip(answers).map(|(p, a)| object(p.name(), a)).collect()
}

pub async fn get(probes: &[Probe], name: &str) -> Option<Value> {
    let probe = probes.iter().find(|p| p.name() == name)?;
    Some(object(name, ask(probe).await))
}
