//! The cluster-dns binary: ports and paths as CoreDNS's in a kubeadm
//! cluster (DNS on 53, /health on 8080, /ready on 8181, /metrics on 9153).

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "cluster-dns", about = "kubelab's cluster DNS: cluster.local from Services and EndpointSlices")]
struct Args {
    #[command(flatten)]
    client: component_base::client::ClientFlags,
    /// The cluster domain (the kubelet's --cluster-domain).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// DNS, on UDP and TCP.
    #[arg(long, default_value = "0.0.0.0:53")]
    dns_address: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:8080")]
    health_address: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:8181")]
    ready_address: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:9153")]
    metrics_address: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    component_base::logging::init();
    let args = Args::parse();
    let mut config = args.client.config().await?;
    // The API is reached through the `kubernetes` Service, which answers
    // only once kube-proxy has written its rules: until then a SYN goes
    // unanswered, and kube's 30 s connect timeout would hold the first list
    // (and so readiness) that long. A short one lets the watch retry.
    config.connect_timeout = Some(std::time::Duration::from_secs(1));
    let client = kube::Client::try_from(config).context("building the API client")?;
    let settings = cluster_dns::Settings {
        domain: args.cluster_domain,
        dns: args.dns_address,
        health: args.health_address,
        ready: args.ready_address,
        metrics: args.metrics_address,
    };
    cluster_dns::run(client, settings).await
}
