//! The apiserver binary. Flags are named as upstream's kube-apiserver names
//! them, so its documentation reads across.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use apiserver::limits::RequestLimits;
use apiserver::server::TlsFiles;
use apiserver::startup::{Config, Server};

/// Every request parses, copies and frees many small JSON values across the
/// runtime's threads; mimalloc's per-thread heaps serve that better than
/// glibc's locked arenas (see the README's benchmark figures).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc keeps freed pages for 10 ms before it gives them back, and only
/// when the thread that freed them allocates again: after a LIST of 10 000
/// pods an idle server held a fifth more memory than with glibc. Giving
/// them back at once costs no measurable throughput here.
fn return_freed_memory_at_once() {
    // `mi_option_purge_delay` in mimalloc.h's `mi_option_t` (the crate
    // does not name it).
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // SAFETY: sets one of mimalloc's options, which it reads atomically.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

#[derive(Parser, Debug)]
#[command(name = "apiserver", about = "kubelab's Kubernetes API server")]
struct Args {
    /// etcd client URLs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_servers: Vec<String>,
    /// The CA etcd members' serving certificates are checked against (PEM).
    #[arg(long)]
    etcd_cafile: Option<PathBuf>,
    /// The client certificate shown to etcd (PEM).
    #[arg(long, requires = "etcd_keyfile")]
    etcd_certfile: Option<PathBuf>,
    #[arg(long, requires = "etcd_certfile")]
    etcd_keyfile: Option<PathBuf>,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// The serving certificate (PEM).
    #[arg(long)]
    tls_cert_file: PathBuf,
    #[arg(long)]
    tls_private_key_file: PathBuf,
    /// The CA that signs client certificates (PEM).
    #[arg(long)]
    client_ca_file: PathBuf,
    /// The address this server tells clients to use, in /api.
    #[arg(long)]
    advertise_address: Option<String>,
    /// Service ClusterIPs come from here; the first is the `kubernetes` Service's.
    #[arg(long, default_value = "10.96.0.0/16")]
    service_cluster_ip_range: ipnet::Ipv4Net,
    /// NodePorts come from here (low-high).
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: String,
    /// How long events are kept, as upstream's flag: a Go duration such as
    /// 1h, 30m or 1h0m0s (a bare number is seconds).
    #[arg(long, default_value = "1h", value_parser = component_base::flags::duration)]
    event_ttl: std::time::Duration,
    /// How often old etcd history is compacted away, in seconds (0: never).
    #[arg(long, default_value_t = 300)]
    etcd_compaction_interval: u64,
    /// Where componentstatuses finds the scheduler's /healthz (host:port).
    #[arg(long, default_value = "127.0.0.1:10259")]
    scheduler_address: String,
    /// Where componentstatuses finds the controller-manager's /healthz.
    #[arg(long, default_value = "127.0.0.1:10257")]
    controller_manager_address: String,
    /// The client certificate this server presents to kubelets (PEM).
    #[arg(long, requires = "kubelet_client_key")]
    kubelet_client_certificate: Option<PathBuf>,
    #[arg(long, requires = "kubelet_client_certificate")]
    kubelet_client_key: Option<PathBuf>,
    /// The CA kubelets' serving certificates are checked against; without
    /// it they are not checked, as upstream.
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Which Node address reaches its kubelet, first match wins.
    #[arg(long, value_delimiter = ',', default_values = apiserver::kubelet::client::DEFAULT_ADDRESS_TYPES)]
    kubelet_preferred_address_types: Vec<String>,
    /// Reads (get, list) served at once; beyond it, 429. Watches and other
    /// long-running requests are not counted. 0: no limit.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Writes served at once; beyond it, 429. 0: no limit.
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// How long a request that is not long-running may take before it is
    /// answered 504; also the bound of each etcd call and of draining at
    /// shutdown. A Go duration.
    #[arg(long, default_value = "1m0s", value_parser = component_base::flags::duration)]
    request_timeout: Duration,
    /// After SIGTERM, how long to go on serving with /readyz failing before
    /// draining. A Go duration.
    #[arg(long, default_value = "0s", value_parser = component_base::flags::duration_or_zero)]
    shutdown_delay_duration: Duration,
}

impl Args {
    fn config(&self) -> Result<Config> {
        let node_ports = self
            .service_node_port_range
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
            .filter(|(a, b)| a <= b)
            .with_context(|| format!("--service-node-port-range {:?}: expected LOW-HIGH, such as 30000-32767", self.service_node_port_range))?;
        let pki = TlsFiles { cert: &self.tls_cert_file, key: &self.tls_private_key_file, client_ca: &self.client_ca_file };
        let mut config = Config::new(self.etcd_servers.clone(), SocketAddr::new(self.bind_address, self.secure_port), &pki);
        config.etcd_cafile = self.etcd_cafile.clone();
        config.etcd_certfile = self.etcd_certfile.clone();
        config.etcd_keyfile = self.etcd_keyfile.clone();
        config.advertise_address = self.advertise_address.clone();
        config.service_cluster_ip_range = self.service_cluster_ip_range;
        config.service_node_ports = node_ports;
        config.event_ttl = self.event_ttl;
        config.etcd_compaction_interval = (self.etcd_compaction_interval > 0).then(|| Duration::from_secs(self.etcd_compaction_interval));
        config.scheduler_address = self.scheduler_address.clone();
        config.controller_manager_address = self.controller_manager_address.clone();
        config.kubelet_client_certificate = self.kubelet_client_certificate.clone();
        config.kubelet_client_key = self.kubelet_client_key.clone();
        config.kubelet_certificate_authority = self.kubelet_certificate_authority.clone();
        config.kubelet_preferred_address_types = self.kubelet_preferred_address_types.clone();
        config.limits = RequestLimits {
            max_requests_inflight: self.max_requests_inflight,
            max_mutating_requests_inflight: self.max_mutating_requests_inflight,
            request_timeout: self.request_timeout,
        };
        config.shutdown_delay = self.shutdown_delay_duration;
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    return_freed_memory_at_once();
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).init();
    let config = Args::parse().config()?;
    let server = Server::start(config).await?;
    tracing::info!("serving the Kubernetes API on https://{}", server.address());
    server.serve_until(terminated()).await
}

/// SIGTERM (docker stop) or SIGINT. As PID 1 in its container the
/// apiserver would otherwise ignore SIGTERM and be killed 10 s later.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
