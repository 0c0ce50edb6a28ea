//! Cluster DNS, run by `just bench` (never as a timed test): the zone of
//! 10 000 ClusterIP Services (and a headless Service of 10 000 pods'
//! endpoints) built as the server builds it on each watch event, then
//! served by hickory's loop on ONE core (a current-thread runtime on its
//! own thread) while clients on the other core keep questions in flight
//! over UDP loopback: queries a second, latency percentiles, and the
//! process's memory with that zone.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_dns::server::Handler;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

const SERVICES: usize = 10_000;
const PODS: usize = 10_000;
/// How long the load runs.
const LOAD: Duration = Duration::from_secs(10);
/// Questions each client keeps in flight.
const IN_FLIGHT: usize = 32;
const CLIENTS: usize = 2;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    kb / 1024.0
}

fn objects() -> (Vec<Service>, Vec<EndpointSlice>) {
    let services: Vec<Service> = (0..SERVICES)
        .map(|i| {
            let ip = format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250);
            serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{}", i % 100)},
                "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
            }))
            .unwrap()
        })
        .chain(std::iter::once(serde_json::from_value(json!({"metadata": {"name": "pods", "namespace": "big"}, "spec": {"clusterIP": "None"}})).unwrap()))
        .collect();
    // The headless Service's endpoints, 100 to a slice as the controller writes them.
    let slices: Vec<EndpointSlice> = (0..PODS / 100)
        .map(|s| {
            let endpoints: Vec<serde_json::Value> = (0..100)
                .map(|e| {
                    let n = s * 100 + e;
                    json!({"addresses": [format!("10.244.{}.{}", n / 250, 1 + n % 250)], "conditions": {"ready": true}})
                })
                .collect();
            serde_json::from_value(json!({
                "metadata": {"name": format!("pods-{s}"), "namespace": "big", "labels": {"kubernetes.io/service-name": "pods"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints
            }))
            .unwrap()
        })
        .collect();
    (services, slices)
}

fn question(i: usize) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = (i % 65536) as u16;
    message.metadata.recursion_desired = true;
    let name = format!("svc-{}.ns-{}.svc.cluster.local.", i % SERVICES, (i % SERVICES) % 100);
    message.add_query(Query::query(Name::from_ascii(&name).unwrap(), RecordType::A));
    message.to_vec().unwrap()
}

/// One client on its own thread: keeps IN_FLIGHT questions out, matching
/// answers by id; returns the latencies it saw.
fn client(server: SocketAddr, offset: usize, until: Instant) -> Vec<Duration> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut sent: HashMap<u16, Instant> = HashMap::new();
    let mut latencies = Vec::new();
    let mut next = offset;
    let mut buffer = [0u8; 1500];
    while Instant::now() < until {
        while sent.len() < IN_FLIGHT {
            let packet = question(next);
            let id = (next % 65536) as u16;
            next += CLIENTS;
            socket.send_to(&packet, server).unwrap();
            sent.insert(id, Instant::now());
        }
        match socket.recv(&mut buffer) {
            Ok(n) if n >= 2 => {
                let id = u16::from_be_bytes([buffer[0], buffer[1]]);
                if let Some(at) = sent.remove(&id) {
                    latencies.push(at.elapsed());
                }
            }
            // A lost datagram: its slot is given back.
            _ => sent.clear(),
        }
    }
    latencies
}

pub fn main() {
    let before = rss_mb();
    let (services, slices) = objects();
    let started = Instant::now();
    let zone = cluster_dns::zone::build("cluster.local", &services, &slices, 1);
    let build = started.elapsed();
    drop((services, slices));
    let handler = Handler::default();
    *handler.zone.write().unwrap() = Some(Arc::new(zone));
    let with_zone = rss_mb();
    println!("zone of {SERVICES} Services and a headless Service of {PODS} endpoints: built in {:.0} ms", build.as_secs_f64() * 1000.0);

    // The server on one core.
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let serving = handler.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            address_tx.send(udp.local_addr().unwrap()).unwrap();
            let mut server = hickory_server::Server::new(serving);
            server.register_socket(udp);
            let _ = server.block_until_done().await;
        });
    });
    let address = address_rx.recv().unwrap();
    // Warm-up, then the measured load.
    client(address, 0, Instant::now() + Duration::from_millis(500));
    let until = Instant::now() + LOAD;
    let clients: Vec<_> = (0..CLIENTS).map(|c| std::thread::spawn(move || client(address, c, until))).collect();
    let mut latencies: Vec<Duration> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
    let qps = latencies.len() as f64 / LOAD.as_secs_f64();
    println!(
        "cluster names over UDP, server on one core, {CLIENTS} clients x {IN_FLIGHT} in flight: {qps:.0} queries/s (goal >= 30 000), \
         latency p50 {:.2} ms, p99 {:.2} ms (goal < 5 ms)",
        pct(0.50),
        pct(0.99)
    );
    println!(
        "memory: {before:.0} MB before the zone, {with_zone:.0} MB with it (the zone of {SERVICES} Services and {PODS} endpoints: {:.0} MB; \
         CoreDNS's sizing for that is about 54 + 20 MB), {:.0} MB after the load",
        with_zone - before,
        rss_mb()
    );
}
