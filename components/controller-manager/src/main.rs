//! The controller-manager binary. Flags are named as upstream's
//! kube-controller-manager names them, so its documentation reads across.

use std::net::SocketAddr;

use anyhow::Result;
use clap::Parser;

use controller_manager::{garbage_collector, namespace};

#[derive(Parser, Debug)]
#[command(name = "controller-manager", about = "kubelab's controller-manager: the cluster's control loops")]
struct Args {
    #[command(flatten)]
    client: component_base::client::ClientFlags,
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
    /// Garbage collector workers per queue.
    #[arg(long, default_value_t = garbage_collector::DEFAULT_CONCURRENCY)]
    concurrent_gc_syncs: u16,
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
    let settings = controller_manager::Settings { namespace_syncs: args.concurrent_namespace_syncs, gc_syncs: args.concurrent_gc_syncs };
    controller_manager::run_controllers(controller_manager::Context { client, settings }, &controllers).await;
    anyhow::bail!("the controllers stopped")
}
