//! kubelab's kubelet: the node agent. It registers its Node and keeps its
//! status and Lease, watches the pods bound to it (and only those), runs
//! them through kubelab's runtime with CNI networking, reports their
//! status, and serves logs and exec on :10250 for the apiserver.
//!
//! - `node` — the Node object, its conditions and the Lease heartbeat.
//! - `pods/` — one worker per pod: sandbox, network, containers, restarts,
//!   deletion, status (`pods/status` is a pure function of what runs).
//! - `overlay` — VXLAN between nodes, kept in step with the Node list.
//! - `cni` — the CNI plugins called as the spec says, results cached in
//!   libcni's layout.
//! - `server` — HTTPS on :10250 (`/healthz`, `/pods`, `/containerLogs`,
//!   `/exec`, `/attach`).
//! - `speaker` — announces load balancer addresses on the lab network
//!   (per Service, the node holding its Lease answers ARP for it).

pub mod cni;
pub mod node;
pub mod overlay;
pub mod paths;
pub mod pods;
pub mod server;
pub mod speaker;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// What the kubelet is told by its flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_name: String,
    pub node_ip: IpAddr,
    pub labels: Vec<(String, String)>,
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub capacity: Vec<(String, String)>,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    pub cluster_cidr: ipnet::IpNet,
    pub root_dir: PathBuf,
    pub image_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
    pub port: u16,
    pub status_update_frequency: Duration,
    pub lease_duration_seconds: i32,
    /// `--container-log-max-size` and `--container-log-max-files`, which
    /// the shims apply (None: logs are not rotated).
    pub container_log_rotation: Option<runtime::log_rotation::Policy>,
}

/// What the kubelet's parts share.
pub struct Kubelet {
    pub client: kube::Client,
    pub settings: Settings,
    pub runtime: runtime::Runtime,
    pub images: runtime::images::ImageStore,
    pub network: cni::Network,
    /// Every Service, kept by a watch: the variables containers are
    /// started with (`pods::service_env`) are read from it, not listed
    /// per container start.
    pub services: kube::runtime::reflector::Store<k8s_openapi::api::core::v1::Service>,
}

pub async fn run(client: kube::Client, settings: Settings, server: server::ServerSettings) -> Result<()> {
    let dirs = runtime::state::Dirs { run: PathBuf::from("/run/kubelab"), lib: paths::runtime_lib(&settings.root_dir) };
    let cgroups = runtime::cgroups::Cgroups::set_up(&dirs.run.join("cgroup"));
    if let Some(reason) = cgroups.unavailable_reason() {
        tracing::warn!("containers run without cgroup limits: {reason}");
    }
    let self_exe = std::fs::read_link("/proc/self/exe").context("finding the kubelet's own binary")?;
    let runtime = runtime::Runtime::new(dirs, self_exe, cgroups)?;
    let images = runtime::images::ImageStore::open(&paths::image_store(&settings.root_dir))?;
    if settings.image_dir.is_dir() {
        let started = std::time::Instant::now();
        let imported = images.import_dir(&settings.image_dir).with_context(|| format!("importing the images of {}", settings.image_dir.display()))?;
        tracing::info!("{} built-in images ready in {:?}", imported.len(), started.elapsed());
    }
    let network = cni::Network::new(&settings);
    let services = component_base::watch::all(client.clone(), || {});
    let kubelet = Arc::new(Kubelet { client, settings, runtime, images, network, services });

    let pods = pods::Manager::start(kubelet.clone()).await?;
    server::start(kubelet.clone(), pods.clone(), server).await?;
    let (client, node, ip) = (kubelet.client.clone(), kubelet.settings.node_name.clone(), kubelet.settings.node_ip);
    tokio::spawn(async move {
        // Announcing is not what the node is for: without it pods still run.
        if let Err(e) = speaker::run(client, node, ip).await {
            tracing::error!("the load balancer speaker stopped: {e:#}");
        }
    });
    node::run(kubelet).await
}
