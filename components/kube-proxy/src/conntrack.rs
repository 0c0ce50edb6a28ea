//! UDP has no connection to end: a conntrack entry keeps sending a
//! client's datagrams to the endpoint it first chose, even after that
//! endpoint is gone, and an entry made while a Service had no endpoints
//! keeps the REJECT. Upstream's kube-proxy deletes such entries after each
//! sync; so does this, with Debian's `conntrack` tool.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use crate::exec::Commands;
use crate::model::{Protocol, ServicePort, ServicePortName};

/// What one UDP Service port was at the last sync.
#[derive(Debug, Clone)]
struct UdpPort {
    /// ClusterIP, external IPs and load balancer addresses.
    addresses: Vec<Ipv4Addr>,
    node_port: Option<u16>,
    port: u16,
    /// Usable endpoints, address and port.
    endpoints: BTreeSet<(Ipv4Addr, u16)>,
}

/// The usable UDP endpoints of each Service port at the last sync.
#[derive(Debug, Default)]
pub struct UdpEndpoints(BTreeMap<ServicePortName, UdpPort>);

/// One `conntrack -D` to run.
pub type Deletion = Vec<String>;

impl UdpEndpoints {
    /// The deletions that the change from the last sync to `ports` calls
    /// for, and remembers `ports` for the next time.
    pub fn update(&mut self, ports: &[ServicePort]) -> Vec<Deletion> {
        let mut next = BTreeMap::new();
        for port in ports.iter().filter(|p| p.protocol == Protocol::Udp) {
            let addresses: Vec<Ipv4Addr> =
                std::iter::once(port.cluster_ip).chain(port.external_ips.iter().copied()).chain(port.load_balancer_ips.iter().copied()).collect();
            let endpoints: BTreeSet<(Ipv4Addr, u16)> = port.usable_endpoints(false).iter().map(|e| (e.ip, e.port)).collect();
            next.insert(port.name.clone(), UdpPort { addresses, node_port: port.node_port, port: port.port, endpoints });
        }
        let mut deletions = Vec::new();
        for (name, UdpPort { addresses, node_port, port, endpoints }) in &next {
            let before = self.0.get(name);
            let had_none = before.map(|b| b.endpoints.is_empty()).unwrap_or(true);
            if had_none && !endpoints.is_empty() {
                // Entries made while the Service rejected.
                for ip in addresses {
                    deletions.push(args(&["-D", "-p", "udp", "--orig-dst", &ip.to_string(), "--orig-port-dst", &port.to_string()]));
                }
                if let Some(node_port) = node_port {
                    deletions.push(args(&["-D", "-p", "udp", "--orig-port-dst", &node_port.to_string()]));
                }
            }
            if let Some(before) = before {
                for (ip, endpoint_port) in before.endpoints.difference(endpoints) {
                    for address in addresses {
                        deletions.push(args(&[
                            "-D",
                            "-p",
                            "udp",
                            "--orig-dst",
                            &address.to_string(),
                            "--orig-port-dst",
                            &port.to_string(),
                            "--reply-src",
                            &ip.to_string(),
                            "--reply-port-src",
                            &endpoint_port.to_string(),
                        ]));
                    }
                    if let Some(node_port) = node_port {
                        deletions.push(args(&[
                            "-D",
                            "-p",
                            "udp",
                            "--orig-port-dst",
                            &node_port.to_string(),
                            "--reply-src",
                            &ip.to_string(),
                            "--reply-port-src",
                            &endpoint_port.to_string(),
                        ]));
                    }
                }
            }
        }
        self.0 = next;
        deletions
    }
}

fn args(list: &[&str]) -> Deletion {
    list.iter().map(|s| s.to_string()).collect()
}

/// Runs the deletions; conntrack exits non-zero when nothing matched, which is no error.
pub async fn delete(commands: &impl Commands, deletions: &[Deletion]) {
    for deletion in deletions {
        if let Err(e) = commands.run("conntrack", deletion, None).await {
            let text = e.to_string();
            if !text.contains("0 flow entries") {
                tracing::debug!("{text}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    fn udp(endpoints: &[&str]) -> ServicePort {
        let mut port = ServicePort::new(
            ServicePortName { namespace: "kube-system".into(), name: "kube-dns".into(), port: "dns".into() },
            Protocol::Udp,
            "10.96.0.10".parse().unwrap(),
            53,
        );
        port.endpoints =
            endpoints.iter().map(|ip| Endpoint { ip: ip.parse().unwrap(), port: 53, ready: true, serving: true, terminating: false, local: false }).collect();
        port
    }

    #[test]
    fn entries_of_gone_endpoints_and_of_rejected_services_are_deleted() {
        let mut udp_endpoints = UdpEndpoints::default();
        assert!(udp_endpoints.update(&[udp(&[])]).is_empty(), "nothing to clear while there are no endpoints");
        let first = udp_endpoints.update(&[udp(&["10.244.1.5", "10.244.2.5"])]);
        assert_eq!(first, [args(&["-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53"])], "what was rejected before");
        let second = udp_endpoints.update(&[udp(&["10.244.2.5"])]);
        assert_eq!(
            second,
            [args(&["-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--orig-port-dst", "53", "--reply-src", "10.244.1.5", "--reply-port-src", "53"])],
            "only the flows to the endpoint that left"
        );
        assert!(udp_endpoints.update(&[udp(&["10.244.2.5"])]).is_empty());
    }
}
