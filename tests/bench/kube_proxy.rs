//! Benchmarks of kube-proxy's iptables and nftables backends, run by
//! `just bench` (never as timed tests; `KUBELAB_BENCH_ONLY=nftables just
//! bench kube_proxy` runs one mode). The process moves into a network namespace of its own
//! first (unshare CLONE_NEWNET; it ends with the process), so the real
//! iptables and iptables-restore write tables nobody else uses. For 500,
//! 1 000 and 2 000 ClusterIP Services of 10 endpoints each:
//! - a full sync into empty tables: the jumps checked, the nat table read
//!   back, the payload rendered, one iptables-restore (issue target: under
//!   1 s at 10 000);
//! - a sync after one Service changed (one endpoint gone) over the full
//!   tables: kubelab writes the whole state every time (issue target:
//!   under 100 ms at 10 000, which needs upstream's partial syncs);
//! - the rendering alone, and the number of rules.
//!
//! The iptables mode stops at 2 000 because Debian's iptables (1.8.9, the
//! nf_tables backend, as in the node image) restores in time that grows
//! faster than the rules do: 5 000 Services did not finish two syncs in 8
//! minutes. The nftables mode (Debian's nft 1.0.6, one `nft -f -` that
//! replaces the table) stops there too for now.

use std::net::Ipv4Addr;
use std::time::Instant;

use kube_proxy::exec::Host;
use kube_proxy::iptables::{Iptables, Settings};
use kube_proxy::model::{Endpoint, Protocol, ServicePort, ServicePortName};
use kube_proxy::nftables::Nftables;

const SIZES: [usize; 3] = [500, 1_000, 2_000];
// As the iptables mode's until syncs send only what changed: replacing the
// whole table took 7 s at 2 000 Services and more than 5 minutes at 10 000.
const NFTABLES_SIZES: [usize; 3] = [500, 1_000, 2_000];
const ENDPOINTS: usize = 10;

fn services(count: usize) -> Vec<ServicePort> {
    (0..count)
        .map(|i| {
            let cluster_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i as u32);
            let name = ServicePortName { namespace: "bench".into(), name: format!("svc-{i}"), port: "http".into() };
            let mut port = ServicePort::new(name, Protocol::Tcp, cluster_ip, 80);
            port.endpoints = (0..ENDPOINTS)
                .map(|e| Endpoint {
                    ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + (i * ENDPOINTS + e) as u32),
                    port: 8080,
                    ready: true,
                    serving: true,
                    terminating: false,
                    local: e == 0,
                })
                .collect();
            port
        })
        .collect()
}

pub fn main() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("a network namespace of our own (run as root)");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let only = std::env::var("KUBELAB_BENCH_ONLY").unwrap_or_default();
    let wanted = |mode: &str| only.is_empty() || only == mode;
    if wanted("iptables") {
        iptables(&runtime);
    }
    if wanted("nftables") {
        nftables(&runtime);
    }
}

/// A sync into empty tables, then one after a Service in the middle lost an
/// endpoint: each one's milliseconds. (`sync` takes its own copy of the
/// ports, made before the clock starts.)
fn full_then_one_change<F, R>(runtime: &tokio::runtime::Runtime, ports: &mut [ServicePort], sync: impl Fn(Vec<ServicePort>) -> F) -> (f64, f64)
where
    F: std::future::Future<Output = anyhow::Result<R>>,
{
    let first = ports.to_vec();
    let started = Instant::now();
    runtime.block_on(sync(first)).expect("the first sync");
    let full_ms = started.elapsed().as_secs_f64() * 1000.0;
    let middle = ports.len() / 2;
    ports[middle].endpoints.pop();
    let second = ports.to_vec();
    let started = Instant::now();
    runtime.block_on(sync(second)).expect("the second sync");
    (full_ms, started.elapsed().as_secs_f64() * 1000.0)
}

fn nftables(runtime: &tokio::runtime::Runtime) {
    let settings = kube_proxy::nftables::Settings { cluster_cidr: Some("10.128.0.0/9".parse().unwrap()), ..Default::default() };
    println!("kube-proxy, nftables mode ({ENDPOINTS} endpoints per Service), in a fresh network namespace:");
    println!("{:>8} {:>9} {:>9} {:>11} {:>13} {:>15}", "services", "rules", "elements", "render ms", "full sync ms", "one change ms");
    for size in NFTABLES_SIZES {
        let backend = &Nftables::new(Host, settings.clone());
        let mut ports = services(size);
        let started = Instant::now();
        let ruleset = kube_proxy::nftables::ruleset::render(&ports, &settings);
        let _ = ruleset.replace_all();
        let render_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (full_ms, change_ms) = full_then_one_change(runtime, &mut ports, |ports| async move { backend.sync(&ports).await });
        println!("{size:>8} {:>9} {:>9} {render_ms:>11.1} {full_ms:>13.1} {change_ms:>15.1}", ruleset.rule_count(), ruleset.element_count());
        // An empty namespace for the next size, as a new node would have.
        let status = std::process::Command::new("nft").args(["delete", "table", "ip", "kube-proxy"]).status().expect("nft runs");
        assert!(status.success(), "nft delete table: {status}");
    }
}

fn iptables(runtime: &tokio::runtime::Runtime) {
    let settings = Settings { cluster_cidr: Some("10.128.0.0/9".parse().unwrap()), masquerade_all: false, random_fully: true };
    println!("kube-proxy, iptables mode ({ENDPOINTS} endpoints per Service), in a fresh network namespace:");
    println!("{:>8} {:>9} {:>11} {:>13} {:>15}", "services", "rules", "render ms", "full sync ms", "one change ms");
    for size in SIZES {
        let backend = &Iptables::new(Host, settings.clone());
        let mut ports = services(size);
        let started = Instant::now();
        let rendered = kube_proxy::iptables::rules::render(&ports, &settings, &Default::default());
        let render_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (full_ms, change_ms) = full_then_one_change(runtime, &mut ports, |ports| async move { backend.sync(&ports).await });
        println!("{size:>8} {:>9} {render_ms:>11.1} {full_ms:>13.1} {change_ms:>15.1}", rendered.filter_rules + rendered.nat_rules);
        // Empty tables for the next size, as a new node would have.
        // A flush that failed would make the next "full sync" one over full tables.
        for table in ["nat", "filter"] {
            for what in ["-F", "-X"] {
                let status = std::process::Command::new("iptables").args(["-w", "-t", table, what]).status().expect("iptables runs");
                assert!(status.success(), "iptables -t {table} {what}: {status}");
            }
        }
    }
}
