//! kubelab's kube-proxy: watches Services and EndpointSlices and keeps the
//! node's packet rules saying what they say. Three parts, as upstream's
//! `pkg/proxy`: the [`model`] read off the API objects, the sync loop
//! here (changes coalesced, a minimum interval between syncs, a periodic
//! full resync, a retry after a failure), and a backend that writes the
//! whole model in one transaction ([`iptables`] or [`nftables`], by
//! `--proxy-mode`).

pub mod conntrack;
pub mod exec;
pub mod health;
pub mod iptables;
pub mod model;
pub mod nftables;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use component_base::watch::{self, cloned};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::Notify;

use crate::exec::Commands;
use crate::health::{Health, HealthCheckPorts, RuleCounts};
use crate::iptables::Iptables;
use crate::model::ServicePort;
use crate::nftables::Nftables;

/// How often the tables are checked for having been wiped or flushed
/// (cheap: a few `iptables -S`, or one `nft list chain`), so that a hand-made flush is repaired
/// without waiting for the full resync.
pub const INTEGRITY_CHECK_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Settings {
    /// The Node this proxy runs on: its endpoints are the local ones.
    pub node_name: String,
    /// Rules are written again at least this often (upstream's 30 s).
    pub sync_period: Duration,
    /// and at most this often (upstream's 1 s; 0 here writes at once).
    pub min_sync_period: Duration,
    pub mode: ProxyMode,
    pub iptables: iptables::Settings,
    pub nftables: nftables::Settings,
}

/// Which backend writes the rules (`--proxy-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Iptables,
    Nftables,
}

impl std::str::FromStr for ProxyMode {
    type Err = String;

    /// As upstream, an empty mode is the default, iptables.
    fn from_str(text: &str) -> Result<ProxyMode, String> {
        match text {
            "" | "iptables" => Ok(ProxyMode::Iptables),
            "nftables" => Ok(ProxyMode::Nftables),
            other => Err(format!(
                "unknown proxy mode {other:?}: kubelab's kube-proxy has the modes iptables and nftables (upstream's ipvs and kernelspace are not written)"
            )),
        }
    }
}

/// The backend the mode picked.
pub enum Backend<C> {
    Iptables(Iptables<C>),
    Nftables(Nftables<C>),
}

impl<C: Commands> Backend<C> {
    pub fn new(commands: C, settings: &Settings) -> Backend<C> {
        match settings.mode {
            ProxyMode::Iptables => Backend::Iptables(Iptables::new(commands, settings.iptables.clone())),
            ProxyMode::Nftables => Backend::Nftables(Nftables::new(commands, settings.nftables.clone())),
        }
    }

    pub fn commands(&self) -> &C {
        match self {
            Backend::Iptables(b) => b.commands(),
            Backend::Nftables(b) => b.commands(),
        }
    }

    /// One sync: what was written, counted.
    pub async fn sync(&self, ports: &[ServicePort]) -> Result<RuleCounts> {
        Ok(match self {
            Backend::Iptables(b) => {
                let rendered = b.sync(ports).await?;
                RuleCounts::Iptables { filter: rendered.filter_rules, nat: rendered.nat_rules }
            }
            Backend::Nftables(b) => {
                let rendered = b.sync(ports).await?;
                RuleCounts::Nftables { rules: rendered.rules, elements: rendered.elements }
            }
        })
    }

    pub async fn intact(&self) -> bool {
        match self {
            Backend::Iptables(b) => b.intact().await,
            Backend::Nftables(b) => b.intact().await,
        }
    }
}

/// Watches the API and keeps the rules until the watches end.
pub async fn run<C: Commands + 'static>(client: kube::Client, settings: Settings, commands: C, health: Health) -> Result<()> {
    let changed = Arc::new(Notify::new());
    let on_change = |changed: Arc<Notify>, health: Health| {
        move || {
            health.queued();
            changed.notify_one();
        }
    };
    let services = watch::all::<Service>(client.clone(), on_change(changed.clone(), health.clone()));
    let slices = watch::all::<EndpointSlice>(client, on_change(changed.clone(), health.clone()));
    // Nothing is written until both lists are in: rules made from half a
    // picture would reject traffic to Services whose endpoints are not yet read.
    services.wait_until_ready().await?;
    slices.wait_until_ready().await?;
    tracing::info!("services and endpoint slices listed; writing rules");

    let backend = Backend::new(commands, &settings);
    let mut udp = conntrack::UdpEndpoints::default();
    let mut health_ports = HealthCheckPorts::default();
    let mut last: Option<Instant> = None;
    let mut failed = false;
    let mut integrity = tokio::time::interval(INTEGRITY_CHECK_INTERVAL);
    integrity.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Some(at) = last {
            let next_full = at + if failed { settings.min_sync_period.max(Duration::from_secs(1)) } else { settings.sync_period };
            tokio::select! {
                _ = changed.notified() => {}
                _ = tokio::time::sleep_until(next_full.into()) => {}
                _ = integrity.tick() => {
                    if backend.intact().await {
                        continue;
                    }
                    tracing::warn!("the proxy's rules were flushed or deleted; writing them again");
                }
            }
            let earliest = at + settings.min_sync_period;
            if Instant::now() < earliest {
                tokio::time::sleep_until(earliest.into()).await;
            }
        }
        let started = Instant::now();
        let ports = model::build(&cloned(&services), &cloned(&slices), &settings.node_name);
        match backend.sync(&ports).await {
            Ok(counts) => {
                let took = started.elapsed();
                health.synced(took, counts);
                tracing::info!(services = ports.len(), written = %counts, took_ms = took.as_millis() as u64, "synced proxy rules");
                conntrack::delete(backend.commands(), &udp.update(&ports)).await;
                health_ports.update(&ports).await;
                failed = false;
            }
            Err(e) => {
                tracing::error!("writing the proxy rules failed (trying again): {e:#}");
                failed = true;
            }
        }
        last = Some(started);
    }
}

#[cfg(test)]
mod tests {
    use super::ProxyMode;

    #[test]
    fn proxy_modes_parse_as_upstreams_flag_and_others_are_refused_by_name() {
        assert_eq!("nftables".parse(), Ok(ProxyMode::Nftables));
        assert_eq!("iptables".parse(), Ok(ProxyMode::Iptables));
        assert_eq!("".parse(), Ok(ProxyMode::Iptables));
        let refused = "ipvs".parse::<ProxyMode>().unwrap_err();
        assert!(refused.contains("\"ipvs\"") && refused.contains("iptables and nftables"), "{refused}");
    }
}
