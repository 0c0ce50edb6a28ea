//! The controller-manager binary. Flags are named as upstream's
//! kube-controller-manager names them, so its documentation reads across.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use controller_manager::{healthz, namespace};

#[derive(Parser, Debug)]
#[command(name = "controller-manager", about = "kubelab's controller-manager: the cluster's control loops")]
struct Args {
    /// The kubeconfig with the apiserver's address and this component's
    /// credentials. Without it (and without --master), the in-cluster
    /// service-account configuration is used.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The apiserver's URL; overrides the kubeconfig's server.
    #[arg(long)]
    master: Option<String>,
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
}

async fn client_config(args: &Args) -> Result<kube::Config> {
    let mut config = match (&args.kubeconfig, &args.master) {
        (Some(path), _) => {
            let file = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading --kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default()).await.with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        (None, Some(master)) => kube::Config::new(master.parse().with_context(|| format!("--master {master:?} is not a URL"))?),
        (None, None) => kube::Config::incluster().context("neither --kubeconfig nor --master is given, and this is not a pod")?,
    };
    if let Some(master) = &args.master {
        config.cluster_url = master.parse().with_context(|| format!("--master {master:?} is not a URL"))?;
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into())).init();
    let args = Args::parse();
    let controllers = controller_manager::selected(&args.controllers)?;
    let client = kube::Client::try_from(client_config(&args).await?).context("building the API client")?;

    if args.secure_port != 0 {
        let addr = SocketAddr::new(args.bind_address, args.secure_port);
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        let hostname = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let names: Vec<String> = ["localhost".to_string(), "127.0.0.1".to_string(), hostname].into_iter().filter(|n| !n.is_empty()).collect();
        let tls = healthz::self_signed(&names)?;
        tracing::info!("serving /healthz on https://{addr}");
        tokio::spawn(async move {
            if let Err(e) = healthz::serve(listener, tls).await {
                tracing::error!("the secure port stopped: {e:#}");
            }
        });
    }
    if controllers.is_empty() {
        tracing::warn!("no controller is selected by --controllers; serving /healthz only");
        std::future::pending::<()>().await;
    }
    controller_manager::run_controllers(client, &controllers, args.concurrent_namespace_syncs).await;
    anyhow::bail!("the controllers stopped")
}
