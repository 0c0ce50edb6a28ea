//! The apiserver binary. Flags are named as upstream's kube-apiserver names
//! them, so its documentation reads across.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;

use apiserver::registry::Registry;
use apiserver::server::{self, TlsFiles};
use apiserver::storage::Etcd;
use apiserver::{endpoints_reconciler, App};

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
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
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
}

/// The IP other components reach this apiserver at: the advertised
/// address, resolved when it is a name (the lab passes its alias). None
/// for an unspecified address such as 0.0.0.0.
async fn published_address(advertise: &str, port: u16) -> Option<(std::net::IpAddr, u16)> {
    let with_port = if advertise.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) { advertise.to_string() } else { format!("{advertise}:{port}") };
    let found = tokio::net::lookup_host(&with_port).await.ok()?.find(|a| a.is_ipv4())?;
    (!found.ip().is_unspecified()).then(|| (found.ip(), found.port()))
}

/// A Go duration (`1h30m`, `45s`, `1h0m0s`) or a number of seconds.
fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(seconds));
    }
    let bad = || format!("{text:?} is not a duration such as 1h, 30m or 1h0m0s");
    let (mut total, mut number) = (0u64, String::new());
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().map_err(|_| bad())?;
        number.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
    }
    if !number.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}

#[tokio::main]
async fn main() -> Result<()> {
    return_freed_memory_at_once();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let tls = server::tls_config(&TlsFiles {
        cert: &args.tls_cert_file,
        key: &args.tls_private_key_file,
        client_ca: &args.client_ca_file,
    })?;
    let kubelet = apiserver::kubelet::KubeletClient::new(&apiserver::kubelet::KubeletClientFiles {
        certificate: args.kubelet_client_certificate.as_deref(),
        key: args.kubelet_client_key.as_deref(),
        certificate_authority: args.kubelet_certificate_authority.as_deref(),
        preferred_address_types: args.kubelet_preferred_address_types.clone(),
    })?;
    let node_ports = args
        .service_node_port_range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .filter(|(a, b)| a <= b)
        .with_context(|| format!("--service-node-port-range {:?}: expected LOW-HIGH, such as 30000-32767", args.service_node_port_range))?;
    let advertise = args.advertise_address.clone().unwrap_or_else(|| format!("{}:{}", args.bind_address, args.secure_port));
    let own_address = published_address(&advertise, args.secure_port).await;
    // etcd may still be starting (its gate passed, a member not yet
    // elected): keep trying for a while, then give up with the reason.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let registry = loop {
        let attempt = async {
            let mut registry = Registry::new(Etcd::connect(&args.etcd_servers).await?);
            registry.services = apiserver::allocator::ServiceNetwork { cluster_ips: args.service_cluster_ip_range, node_ports };
            registry.events = apiserver::storage::ExpiringLeases::new(args.event_ttl);
            apiserver::bootstrap::run(&registry, own_address, args.secure_port)
                .await
                .context("bootstrapping the system namespaces and the kubernetes Service")?;
            anyhow::Ok(registry)
        };
        match attempt.await {
            Ok(r) => break r,
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::warn!("etcd not ready yet: {e:#}");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let addr = SocketAddr::new(args.bind_address, args.secure_port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    registry.start_watch_caches().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.etcd_compaction_interval > 0 {
        let etcd = registry.etcd.clone();
        tokio::spawn(etcd.compact_every(std::time::Duration::from_secs(args.etcd_compaction_interval)));
    }
    let probes = apiserver::componentstatus::probes(&args.etcd_servers, &args.scheduler_address, &args.controller_manager_address);
    let app = Arc::new(App { registry, advertise, probes, kubelet });
    if let Some((ip, port)) = own_address {
        let app = app.clone();
        tokio::spawn(async move { endpoints_reconciler::run(&app.registry, ip, port).await });
    }
    tracing::info!("serving the Kubernetes API on https://{addr}");
    tokio::select! {
        served = server::serve(listener, tls, apiserver::router(app.clone())) => served,
        _ = terminated() => {
            // Leave the kubernetes Service's endpoints now rather than
            // when the lease expires.
            if let Some((ip, port)) = own_address {
                if let Err(e) = endpoints_reconciler::withdraw(&app.registry, ip, port).await {
                    tracing::warn!("{e:#}");
                }
            }
            tracing::info!("stopped");
            Ok(())
        }
    }
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

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h0m0s"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("10").is_ok());
        assert!(parse_duration("5m3").is_err());
        assert!(parse_duration("").is_err());
    }
}
