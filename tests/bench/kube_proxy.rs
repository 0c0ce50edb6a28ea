//! Benchmarks of kube-proxy's iptables backend, run by `just bench` (never
//! as timed tests). The process moves into a network namespace of its own
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
//! It stops at 2 000 because Debian's iptables (1.8.9, the nf_tables
//! backend, as in the node image) restores in time that grows faster than
//! the rules do: 5 000 Services did not finish two syncs in 8 minutes.

use std::net::Ipv4Addr;
use std::time::Instant;

use kube_proxy::exec::Host;
use kube_proxy::iptables::{Iptables, Settings};
use kube_proxy::model::{Endpoint, Protocol, ServicePort, ServicePortName};

const SIZES: [usize; 3] = [500, 1_000, 2_000];
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
    let settings = Settings { cluster_cidr: Some("10.128.0.0/9".parse().unwrap()), masquerade_all: false, random_fully: true };
    println!("kube-proxy, iptables mode ({ENDPOINTS} endpoints per Service), in a fresh network namespace:");
    println!("{:>8} {:>9} {:>11} {:>13} {:>15}", "services", "rules", "render ms", "full sync ms", "one change ms");
    for size in SIZES {
        let backend = Iptables::new(Host, settings.clone());
        let mut ports = services(size);
        let started = Instant::now();
        let rendered = kube_proxy::iptables::rules::render(&ports, &settings, &Default::default());
        let render_ms = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        runtime.block_on(backend.sync(&ports)).expect("the first sync");
        let full_ms = started.elapsed().as_secs_f64() * 1000.0;
        ports[size / 2].endpoints.pop();
        let started = Instant::now();
        runtime.block_on(backend.sync(&ports)).expect("the second sync");
        let change_ms = started.elapsed().as_secs_f64() * 1000.0;
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
