//! The kubelet binary. Flags are named as upstream's kubelet names them
//! where it has them; `--capacity` is kubelab's (a topology says what a
//! node offers, as a machine would).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use kubelet::Settings;

#[derive(Parser, Debug)]
#[command(name = "kubelet", about = "kubelab's kubelet: runs the pods bound to this node")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    client: component_base::client::ClientFlags,
    /// The Node's name (default: the host name).
    #[arg(long)]
    hostname_override: Option<String>,
    /// The node's address (default: the first global IPv4 address of eth0).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// `key=value,...` labels the Node registers with.
    #[arg(long, default_value = "")]
    node_labels: String,
    /// `key=value:Effect,...` taints the Node registers with.
    #[arg(long, default_value = "")]
    register_with_taints: String,
    /// What the node offers, `cpu=2,memory=4Gi,pods=110` (kubelab's; the
    /// machine's own figures for what is not given).
    #[arg(long, default_value = "")]
    capacity: String,
    /// The cluster DNS server pods are given (upstream's --cluster-dns).
    #[arg(long, default_value = "10.96.0.10")]
    cluster_dns: IpAddr,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// The pod network of the whole cluster: pods' traffic leaving it is
    /// masqueraded behind the node's address.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: ipnet::IpNet,
    #[arg(long, default_value = "/var/lib/kubelet")]
    root_dir: PathBuf,
    /// Images every node has, as `docker save` archives.
    #[arg(long, default_value = "/usr/share/kubelab/images")]
    image_dir: PathBuf,
    #[arg(long, default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_bin_dir: PathBuf,
    #[arg(long, default_value = "0.0.0.0")]
    address: IpAddr,
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// Serving certificate of :10250 (default: a self-signed one).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// The CA whose client certificates may use :10250.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// Plain-HTTP /healthz on localhost (upstream's --healthz-port).
    #[arg(long, default_value_t = 10248)]
    healthz_port: u16,
    #[arg(long, default_value = "10s", value_parser = component_base::flags::duration)]
    node_status_update_frequency: std::time::Duration,
    #[arg(long, default_value_t = 40)]
    node_lease_duration_seconds: i32,
    /// A container's log is rotated at this size (a quantity; negative:
    /// never), as upstream's containerLogMaxSize.
    #[arg(long, default_value = "10Mi", allow_hyphen_values = true)]
    container_log_max_size: String,
    /// Log files kept per container, the current one included (at least
    /// 2), as upstream's containerLogMaxFiles.
    #[arg(long, default_value_t = 5)]
    container_log_max_files: i64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the node's image store.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ImagesCommand {
    /// Import `docker save` archives into the node's store (what
    /// `lab load image` runs).
    Import { archives: Vec<PathBuf> },
    /// List the images in the node's store.
    List,
}

fn main() -> Result<()> {
    // The runtime's child sides first: before any thread is started.
    runtime::entry::run_child_if_asked();
    let args = Args::parse();
    if let Some(Command::Images { command }) = &args.command {
        return images_command(&args, command);
    }
    component_base::logging::init();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
}

fn images_command(args: &Args, command: &ImagesCommand) -> Result<()> {
    let store = runtime::images::ImageStore::open(&kubelet::paths::image_store(&args.root_dir))?;
    match command {
        ImagesCommand::Import { archives } => {
            for path in archives {
                let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
                for image in store.import(std::io::BufReader::new(file)).with_context(|| format!("importing {}", path.display()))? {
                    println!("{} {}", image.id, image.names.join(","));
                }
            }
        }
        ImagesCommand::List => {
            for image in store.list()? {
                println!("{} {}", image.id, image.names.join(","));
            }
        }
    }
    Ok(())
}

/// The flags' rotation policy, checked as upstream checks them.
fn container_log_rotation(max_size: &str, max_files: i64) -> Result<Option<runtime::log_rotation::Policy>> {
    let bytes = component_base::quantity::value(max_size).with_context(|| format!("--container-log-max-size {max_size:?} is not a quantity"))?;
    runtime::log_rotation::Policy::from_flags(bytes, max_files).map_err(anyhow::Error::msg)
}

async fn run(args: Args) -> Result<()> {
    let client = args.client.client().await?;
    let node_name = match &args.hostname_override {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/etc/hostname").context("reading /etc/hostname")?.trim().to_string(),
    };
    let node_ip = match args.node_ip {
        Some(ip) => ip,
        None => kubelet::node::first_address("eth0").context("finding the node's address on eth0 (or pass --node-ip)")?,
    };
    let settings = Settings {
        node_name,
        node_ip,
        labels: kubelet::node::parse_pairs(&args.node_labels).context("--node-labels")?,
        taints: kubelet::node::parse_taints(&args.register_with_taints).context("--register-with-taints")?,
        capacity: kubelet::node::parse_pairs(&args.capacity).context("--capacity")?,
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain,
        cluster_cidr: args.cluster_cidr,
        root_dir: args.root_dir,
        image_dir: args.image_dir,
        cni_conf_dir: args.cni_conf_dir,
        cni_bin_dir: args.cni_bin_dir,
        port: args.port,
        status_update_frequency: args.node_status_update_frequency,
        lease_duration_seconds: args.node_lease_duration_seconds,
        container_log_rotation: container_log_rotation(&args.container_log_max_size, args.container_log_max_files)?,
    };
    let server = kubelet::server::ServerSettings {
        addr: SocketAddr::new(args.address, args.port),
        cert: args.tls_cert_file,
        key: args.tls_private_key_file,
        client_ca: args.client_ca_file,
        healthz: (args.healthz_port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], args.healthz_port))),
    };
    kubelet::run(client, settings, server).await
}
