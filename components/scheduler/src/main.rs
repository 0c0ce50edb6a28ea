//! The scheduler binary. Flags are named as upstream's kube-scheduler
//! names them, so its documentation reads across.

use std::net::SocketAddr;

use anyhow::Result;
use clap::Parser;

/// The Lease the schedulers of a cluster elect their leader on (in
/// kube-system), upstream's name.
const LEASE: &str = "kube-scheduler";

#[derive(Parser, Debug)]
#[command(name = "scheduler", about = "kubelab's scheduler: binds pending pods to nodes")]
struct Args {
    #[command(flatten)]
    client: component_base::client::ClientFlags,
    #[command(flatten)]
    leader_election: component_base::leader_election::LeaderElectionFlags,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: std::net::IpAddr,
    /// The HTTPS port of /healthz (0: do not serve).
    #[arg(long, default_value_t = 10259)]
    secure_port: u16,
    /// The schedulerName of the pods this scheduler places (upstream sets
    /// it in its configuration file's profile).
    #[arg(long, default_value = scheduler::model::DEFAULT_SCHEDULER)]
    scheduler_name: String,
    /// Bindings and status writes in flight at once.
    #[arg(long, default_value_t = scheduler::Settings::default().parallel_writes)]
    parallel_writes: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    component_base::logging::init();
    let args = Args::parse();
    let client = args.client.client().await?;
    if args.secure_port != 0 {
        component_base::serving::serve_health(SocketAddr::new(args.bind_address, args.secure_port)).await?;
    }
    let settings = scheduler::Settings { scheduler_name: args.scheduler_name, parallel_writes: args.parallel_writes };
    if !args.leader_election.leader_elect {
        return scheduler::run(client, settings).await;
    }
    // Only the Lease's holder schedules; the others wait to take over.
    let election = args.leader_election.election(LEASE).map_err(anyhow::Error::msg)?;
    election
        .run(client.clone(), || {
            let (client, settings) = (client.clone(), settings.clone());
            async move {
                if let Err(e) = scheduler::run(client, settings).await {
                    tracing::error!("the scheduler stopped: {e:#}");
                    std::process::exit(1);
                }
            }
        })
        .await;
    anyhow::bail!("the scheduler stopped")
}
