//! The controller-manager binary. Flags are named as upstream's
//! kube-controller-manager names them, so its documentation reads across.

use std::net::SocketAddr;

use anyhow::Result;
use clap::Parser;

use controller_manager::{garbage_collector, namespace, node_ipam};

/// The Lease the controller-managers of a cluster elect their leader on
/// (in kube-system), upstream's name.
const LEASE: &str = "kube-controller-manager";

#[derive(Parser, Debug)]
#[command(name = "controller-manager", about = "kubelab's controller-manager: the cluster's control loops")]
struct Args {
    #[command(flatten)]
    client: component_base::client::ClientFlags,
    #[command(flatten)]
    leader_election: component_base::leader_election::LeaderElectionFlags,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// The HTTPS port of /healthz (0: do not serve).
    #[arg(long, default_value_t = 10257)]
    secure_port: u16,
    /// Controllers to run: `*` for all on by default, `name` to add one,
    /// `-name` to leave one out.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// Namespaces being deleted that are worked on at once.
    #[arg(long, default_value_t = namespace::DEFAULT_CONCURRENCY)]
    concurrent_namespace_syncs: u16,
    /// ReplicaSets synced at once.
    #[arg(long, default_value_t = controller_manager::replicaset::DEFAULT_CONCURRENCY)]
    concurrent_replicaset_syncs: u16,
    /// ReplicationControllers synced at once.
    #[arg(long, default_value_t = controller_manager::replicaset::DEFAULT_RC_CONCURRENCY)]
    concurrent_rc_syncs: u16,
    /// Deployments synced at once.
    #[arg(long, default_value_t = controller_manager::deployment::DEFAULT_CONCURRENCY)]
    concurrent_deployment_syncs: u16,
    /// Garbage collector workers per queue.
    #[arg(long, default_value_t = garbage_collector::DEFAULT_CONCURRENCY)]
    concurrent_gc_syncs: u16,
    /// Whether Nodes get pod CIDRs cut from --cluster-cidr.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// The CIDR range of pods (one per IP family, comma-separated).
    #[arg(long, value_delimiter = ',')]
    cluster_cidr: Vec<ipnet::IpNet>,
    /// The size of a node's pod CIDR in a single-stack cluster (default
    /// 24 for IPv4, 64 for IPv6).
    #[arg(long)]
    node_cidr_mask_size: Option<u8>,
    /// The size of a node's IPv4 pod CIDR in a dual-stack cluster.
    #[arg(long)]
    node_cidr_mask_size_ipv4: Option<u8>,
    /// The size of a node's IPv6 pod CIDR in a dual-stack cluster.
    #[arg(long)]
    node_cidr_mask_size_ipv6: Option<u8>,
    /// Services whose Endpoints are synced at once.
    #[arg(long, default_value_t = controller_manager::endpoints::DEFAULT_CONCURRENCY)]
    concurrent_endpoint_syncs: u16,
    /// Services whose EndpointSlices are synced at once.
    #[arg(long, default_value_t = controller_manager::endpointslice::DEFAULT_CONCURRENCY)]
    concurrent_service_endpoint_syncs: u16,
    /// How often nodes' health is looked at.
    #[arg(long, default_value = "5s", value_parser = component_base::flags::duration)]
    node_monitor_period: std::time::Duration,
    /// How long a kubelet may be silent before its node is Unknown.
    #[arg(long, default_value = "50s", value_parser = component_base::flags::duration)]
    node_monitor_grace_period: std::time::Duration,
    /// How long a new node may take to report at all.
    #[arg(long, default_value = "1m0s", value_parser = component_base::flags::duration)]
    node_startup_grace_period: std::time::Duration,
    /// DaemonSets synced at once.
    #[arg(long, default_value_t = controller_manager::daemonset::DEFAULT_CONCURRENCY)]
    concurrent_daemonset_syncs: u16,
    /// Jobs synced at once.
    #[arg(long, default_value_t = controller_manager::job::DEFAULT_CONCURRENCY)]
    concurrent_job_syncs: u16,
    /// CronJobs synced at once.
    #[arg(long, default_value_t = controller_manager::cronjob::DEFAULT_CONCURRENCY)]
    concurrent_cron_job_syncs: u16,
    /// StatefulSets synced at once.
    #[arg(long, default_value_t = controller_manager::statefulset::DEFAULT_CONCURRENCY)]
    concurrent_statefulset_syncs: u16,
    /// Addresses for LoadBalancer Services (the service-lb controller):
    /// ranges `first-last`, CIDRs or addresses, comma-separated, IPv4;
    /// empty: LoadBalancer Services get no address.
    #[arg(long, default_value = "", value_parser = |s: &str| s.parse::<controller_manager::service_lb::Pool>())]
    load_balancer_pool: controller_manager::service_lb::Pool,
    /// The image of the local-path provisioner's helper pods, which remove
    /// a deleted volume's directory on its node (ours: kind's provisioner
    /// runs apart, with its own helper image).
    #[arg(long, default_value = "busybox")]
    local_path_helper_image: String,
    /// How often each HorizontalPodAutoscaler is synced.
    #[arg(long, default_value = "15s", value_parser = component_base::flags::duration)]
    horizontal_pod_autoscaler_sync_period: std::time::Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    component_base::logging::init();
    let args = Args::parse();
    let controllers = controller_manager::selected(&args.controllers)?;
    let client = args.client.client().await?;
    if args.secure_port != 0 {
        component_base::serving::serve_health(SocketAddr::new(args.bind_address, args.secure_port)).await?;
    }
    if controllers.is_empty() {
        tracing::warn!("no controller is selected by --controllers; serving /healthz only");
        std::future::pending::<()>().await;
    }
    let node_ipam = node_ipam::Settings {
        allocate_node_cidrs: args.allocate_node_cidrs,
        cluster_cidrs: args.cluster_cidr,
        node_cidr_mask_size: args.node_cidr_mask_size,
        node_cidr_mask_size_ipv4: args.node_cidr_mask_size_ipv4,
        node_cidr_mask_size_ipv6: args.node_cidr_mask_size_ipv6,
    };
    let settings = controller_manager::Settings {
        namespace_syncs: args.concurrent_namespace_syncs,
        replicaset_syncs: args.concurrent_replicaset_syncs,
        rc_syncs: args.concurrent_rc_syncs,
        deployment_syncs: args.concurrent_deployment_syncs,
        gc_syncs: args.concurrent_gc_syncs,
        node_ipam,
        endpoint_syncs: args.concurrent_endpoint_syncs,
        endpointslice_syncs: args.concurrent_service_endpoint_syncs,
        node_timings: controller_manager::node_lifecycle::Timings {
            monitor_period: args.node_monitor_period,
            grace_period: args.node_monitor_grace_period,
            startup_grace_period: args.node_startup_grace_period,
        },
        daemonset_syncs: args.concurrent_daemonset_syncs,
        job_syncs: args.concurrent_job_syncs,
        cronjob_syncs: args.concurrent_cron_job_syncs,
        statefulset_syncs: args.concurrent_statefulset_syncs,
        load_balancer_pool: args.load_balancer_pool,
        local_path: controller_manager::volume::local_path::Settings { helper_image: args.local_path_helper_image },
        hpa_sync_period: args.horizontal_pod_autoscaler_sync_period,
    };
    let context = controller_manager::Context { client: client.clone(), settings };
    if args.leader_election.leader_elect {
        // Only the Lease's holder runs the controllers; the others wait.
        let election = args.leader_election.election(LEASE).map_err(anyhow::Error::msg)?;
        election.run(client, || controller_manager::run_controllers(context.clone(), &controllers)).await;
    } else {
        controller_manager::run_controllers(context, &controllers).await;
    }
    anyhow::bail!("the controllers stopped")
}
