//! The kube-proxy binary. Flags are named as upstream's kube-proxy names
//! them, so its documentation reads across.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "kube-proxy", about = "kubelab's kube-proxy: the node's packet rules for Services")]
struct Args {
    #[command(flatten)]
    client: component_base::client::ClientFlags,
    /// The Node this proxy runs on (its endpoints are the local ones); the
    /// host's name when not given.
    #[arg(long)]
    hostname_override: Option<String>,
    /// iptables or nftables.
    #[arg(long, default_value = "iptables", value_parser = |s: &str| s.parse::<kube_proxy::ProxyMode>())]
    proxy_mode: kube_proxy::ProxyMode,
    /// The pod network: traffic from outside it to a ClusterIP is masqueraded.
    #[arg(long)]
    cluster_cidr: Option<ipnet::Ipv4Net>,
    /// Masquerade all traffic sent to ClusterIPs.
    #[arg(long)]
    masquerade_all: bool,
    /// The longest time between two full writes of the rules.
    #[arg(long, default_value = "30s", value_parser = component_base::flags::duration)]
    sync_period: Duration,
    /// The shortest time between two writes, however fast changes come.
    #[arg(long, default_value = "1s", value_parser = component_base::flags::duration_or_zero)]
    min_sync_period: Duration,
    /// /healthz and /livez (plain HTTP, as upstream).
    #[arg(long, default_value = "0.0.0.0:10256")]
    healthz_bind_address: SocketAddr,
    /// /metrics (plain HTTP, as upstream).
    #[arg(long, default_value = "127.0.0.1:10249")]
    metrics_bind_address: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    component_base::logging::init();
    let args = Args::parse();
    let node_name = match args.hostname_override {
        Some(name) => name,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")?.trim().to_string(),
    };
    let client = args.client.client().await?;
    let health = kube_proxy::health::Health::new(args.sync_period);
    kube_proxy::health::serve_health(args.healthz_bind_address, health.clone()).await?;
    kube_proxy::health::serve_metrics(args.metrics_bind_address, health.clone()).await?;
    let settings = kube_proxy::Settings {
        node_name,
        sync_period: args.sync_period,
        min_sync_period: args.min_sync_period,
        mode: args.proxy_mode,
        iptables: kube_proxy::iptables::Settings { cluster_cidr: args.cluster_cidr, masquerade_all: args.masquerade_all, random_fully: true },
        // NodePorts on every local address but loopback (upstream's
        // `--nodeport-addresses` unset).
        nftables: kube_proxy::nftables::Settings { cluster_cidr: args.cluster_cidr, masquerade_all: args.masquerade_all, nodeport_ips: vec![] },
    };
    kube_proxy::run(client, settings, kube_proxy::exec::Host, health).await
}
