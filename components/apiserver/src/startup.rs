//! The one way an apiserver starts, for the binary and the tests alike:
//! connect etcd (retrying while it comes up), bootstrap the system objects,
//! start the watch caches, compaction and (when this server publishes an
//! address) the endpoints reconciler, then listen and serve until told to
//! stop, draining as it stops.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::limits::RequestLimits;
use crate::registry::Registry;
use crate::server::{ConnectionTimeouts, TlsFiles};
use crate::storage::{Etcd, EtcdTls, ExpiringLeases};
use crate::{allocator, bootstrap, componentstatus, endpoints_reconciler, kubelet, App};

/// Everything an apiserver needs to start; the binary fills it from its
/// flags, the test fixture directly.
#[derive(Debug, Clone)]
pub struct Config {
    pub etcd_servers: Vec<String>,
    /// `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`: TLS towards
    /// etcd; without them, plain http.
    pub etcd_cafile: Option<PathBuf>,
    pub etcd_certfile: Option<PathBuf>,
    pub etcd_keyfile: Option<PathBuf>,
    /// Where to listen; port 0 picks a free one (see [`Server::address`]).
    pub bind: SocketAddr,
    pub tls_cert_file: PathBuf,
    pub tls_private_key_file: PathBuf,
    pub client_ca_file: PathBuf,
    /// The address clients are told to use, in /api; the bound address
    /// when not given.
    pub advertise_address: Option<String>,
    /// Whether this server lists itself in the `kubernetes` Service's
    /// endpoints (under the IP the advertised address resolves to). The
    /// tests' servers do not, so a test can watch those endpoints change
    /// only by what it does itself.
    pub publish_endpoints: bool,
    pub service_cluster_ip_range: ipnet::Ipv4Net,
    pub service_node_ports: (u16, u16),
    pub event_ttl: Duration,
    /// Events each watch cache keeps; the registry's default when None.
    pub watch_history: Option<usize>,
    /// Bytes each watch cache's history keeps; the registry's default when None.
    pub watch_history_bytes: Option<usize>,
    /// Bytes of events that may wait for one watcher before it is closed;
    /// the registry's default when None.
    pub watcher_backlog_bytes: Option<usize>,
    /// How often etcd's history is compacted; None: never.
    pub etcd_compaction_interval: Option<Duration>,
    pub scheduler_address: String,
    pub controller_manager_address: String,
    pub kubelet_client_certificate: Option<PathBuf>,
    pub kubelet_client_key: Option<PathBuf>,
    pub kubelet_certificate_authority: Option<PathBuf>,
    pub kubelet_preferred_address_types: Vec<String>,
    pub kubelet_timeouts: kubelet::client::Timeouts,
    pub limits: RequestLimits,
    pub connections: ConnectionTimeouts,
    /// `--shutdown-delay-duration`: after SIGTERM, how long to go on
    /// serving (with /readyz failing) before draining starts.
    pub shutdown_delay: Duration,
    /// How long etcd may take to come up before start-up gives up.
    pub etcd_wait: Duration,
}

impl Config {
    /// Upstream's defaults for everything but the files and etcd.
    pub fn new(etcd_servers: Vec<String>, bind: SocketAddr, pki: &TlsFiles<'_>) -> Config {
        Config {
            etcd_servers,
            etcd_cafile: None,
            etcd_certfile: None,
            etcd_keyfile: None,
            bind,
            tls_cert_file: pki.cert.to_path_buf(),
            tls_private_key_file: pki.key.to_path_buf(),
            client_ca_file: pki.client_ca.to_path_buf(),
            advertise_address: None,
            publish_endpoints: true,
            service_cluster_ip_range: "10.96.0.0/16".parse().expect("a CIDR"),
            service_node_ports: (30000, 32767),
            event_ttl: Duration::from_secs(3600),
            watch_history: None,
            watch_history_bytes: None,
            watcher_backlog_bytes: None,
            etcd_compaction_interval: Some(Duration::from_secs(300)),
            scheduler_address: "127.0.0.1:10259".into(),
            controller_manager_address: "127.0.0.1:10257".into(),
            kubelet_client_certificate: None,
            kubelet_client_key: None,
            kubelet_certificate_authority: None,
            kubelet_preferred_address_types: vec![],
            kubelet_timeouts: kubelet::client::Timeouts::default(),
            limits: RequestLimits::default(),
            connections: ConnectionTimeouts::default(),
            shutdown_delay: Duration::ZERO,
            etcd_wait: Duration::from_secs(60),
        }
    }
}

/// A started apiserver: bootstrapped, listening, not yet serving.
pub struct Server {
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    tls: rustls::ServerConfig,
    address: SocketAddr,
    published: Option<(IpAddr, u16)>,
    limits: RequestLimits,
    connections: ConnectionTimeouts,
    shutdown_delay: Duration,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(config: Config) -> Result<Server> {
        let tls = crate::server::tls_config(&TlsFiles { cert: &config.tls_cert_file, key: &config.tls_private_key_file, client_ca: &config.client_ca_file })?;
        let etcd_tls = EtcdTls::from_files(config.etcd_cafile.as_deref(), config.etcd_certfile.as_deref(), config.etcd_keyfile.as_deref())?;
        let kubelet = kubelet::KubeletClient::new(&kubelet::KubeletClientFiles {
            certificate: config.kubelet_client_certificate.as_deref(),
            key: config.kubelet_client_key.as_deref(),
            certificate_authority: config.kubelet_certificate_authority.as_deref(),
            preferred_address_types: config.kubelet_preferred_address_types.clone(),
            timeouts: config.kubelet_timeouts,
        })?;
        // Bound before bootstrapping so that port 0 has become a real port
        // the kubernetes Service and /api can name.
        let listener = tokio::net::TcpListener::bind(config.bind).await.with_context(|| format!("cannot listen on {}", config.bind))?;
        let address = listener.local_addr()?;
        let advertise = config.advertise_address.clone().unwrap_or_else(|| address.to_string());
        let published = match config.publish_endpoints {
            true => published_address(&advertise, address.port()).await,
            false => None,
        };
        let registry = connect_and_bootstrap(&config, etcd_tls.as_ref(), published, address.port()).await?;
        registry.start_watch_caches().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut background = Vec::new();
        if let Some(interval) = config.etcd_compaction_interval {
            background.push(tokio::spawn(registry.etcd.clone().compact_every(interval)));
        }
        let probes = componentstatus::probes(&config.etcd_servers, etcd_tls.as_ref(), &config.scheduler_address, &config.controller_manager_address);
        let app = Arc::new(App { registry, advertise, probes, kubelet });
        if let Some((ip, port)) = published {
            let app = app.clone();
            background.push(tokio::spawn(async move { endpoints_reconciler::run(&app.registry, ip, port).await }));
        }
        Ok(Server {
            app,
            listener,
            tls,
            address,
            published,
            limits: config.limits,
            connections: config.connections,
            shutdown_delay: config.shutdown_delay,
            background,
        })
    }

    /// What the router serves from (tests drive it without a socket).
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// Where the server listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `stop` completes, then shuts down as upstream does:
    /// leave the kubernetes Service's endpoints at once, go on serving for
    /// the shutdown delay (with /readyz failing), then stop accepting, end
    /// watches and other long-running responses, and wait for the requests
    /// in flight up to the request timeout.
    pub async fn serve_until(self, stop: impl Future<Output = ()>) -> Result<()> {
        let shutdown = crate::shutdown::Shutdown::new();
        let router = crate::router(self.app.clone());
        let serving = crate::server::serve_until_drained(self.listener, self.tls, router, self.limits.clone(), self.connections, shutdown.clone());
        tokio::pin!(serving);
        tokio::select! {
            served = &mut serving => return served,
            _ = stop => {}
        }
        tracing::info!("shutting down");
        shutdown.begin();
        if let Some((ip, port)) = self.published {
            if let Err(e) = endpoints_reconciler::withdraw(&self.app.registry, ip, port).await {
                tracing::warn!("{e:#}");
            }
        }
        for task in &self.background {
            task.abort();
        }
        // Still serving: a load balancer notices /readyz and moves away.
        let _ = tokio::time::timeout(self.shutdown_delay, &mut serving).await;
        shutdown.drain();
        match tokio::time::timeout(self.limits.request_timeout, &mut serving).await {
            Ok(served) => served?,
            Err(_) => tracing::warn!("requests still in flight after {:?}; stopping anyway", self.limits.request_timeout),
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Connects etcd and bootstraps, retrying while etcd is still starting
/// (its gate passed, a member not yet elected), then gives up with the
/// reason.
async fn connect_and_bootstrap(config: &Config, etcd_tls: Option<&EtcdTls>, published: Option<(IpAddr, u16)>, port: u16) -> Result<Registry> {
    let deadline = Instant::now() + config.etcd_wait;
    loop {
        let attempt = async {
            let etcd = Etcd::connect_with(&config.etcd_servers, etcd_tls).await?.with_request_timeout(config.limits.request_timeout);
            let mut registry = Registry::new(etcd);
            registry.services = allocator::ServiceNetwork { cluster_ips: config.service_cluster_ip_range, node_ports: config.service_node_ports };
            registry.events = ExpiringLeases::new(config.event_ttl);
            if let Some(history) = config.watch_history {
                registry.watch_history = history;
            }
            if let Some(bytes) = config.watch_history_bytes {
                registry.watch_history_bytes = bytes;
            }
            if let Some(bytes) = config.watcher_backlog_bytes {
                registry.watcher_backlog_bytes = bytes;
            }
            bootstrap::run(&registry, published, port).await.context("bootstrapping the system namespaces and the kubernetes Service")?;
            anyhow::Ok(registry)
        };
        match attempt.await {
            Ok(registry) => return Ok(registry),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!("etcd not ready yet: {e:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The IP other components reach this apiserver at: the advertised
/// address, resolved when it is a name (the lab passes its alias). None
/// for an unspecified address such as 0.0.0.0.
async fn published_address(advertise: &str, port: u16) -> Option<(IpAddr, u16)> {
    let with_port =
        if advertise.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) { advertise.to_string() } else { format!("{advertise}:{port}") };
    let found = tokio::net::lookup_host(&with_port).await.ok()?.find(|a| a.is_ipv4())?;
    (!found.ip().is_unspecified()).then(|| (found.ip(), found.port()))
}
