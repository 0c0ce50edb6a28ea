//! What the rules are made from: each Service port with the endpoints that
//! serve it, read off Services and EndpointSlices as upstream's service
//! and endpoints change trackers read them. Pure data, so the backends can
//! be tested on a model written by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Services (and slices) a different proxy serves carry this label;
/// upstream's kube-proxy leaves them alone.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Session affinity's timeout when the Service gives none (upstream's).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

/// `namespace/name:port`, or `namespace/name` for an unnamed port:
/// upstream's ServicePortName, which names chains and comments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    pub port: String,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            write!(f, "{}/{}", self.namespace, self.name)
        } else {
            write!(f, "{}/{}:{}", self.namespace, self.name, self.port)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Protocol {
        match text.unwrap_or("TCP") {
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            _ => Protocol::Tcp,
        }
    }

    /// As iptables and upstream's chain hashes spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One endpoint of one Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On the node this proxy runs on.
    pub local: bool,
}

impl Endpoint {
    /// `ip:port`, as upstream hashes and comments it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// One port of one Service, with everything its rules need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub protocol: Protocol,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `loadBalancerSourceRanges`: who may use the load balancer address.
    pub source_ranges: Vec<ipnet::Ipv4Net>,
    /// ClientIP affinity's timeout in seconds, when the Service asks for it.
    pub affinity_seconds: Option<u32>,
    /// externalTrafficPolicy: Local (on a NodePort or LoadBalancer Service).
    pub external_local: bool,
    /// internalTrafficPolicy: Local.
    pub internal_local: bool,
    pub health_check_node_port: Option<u16>,
    /// Every endpoint of the port, sorted by address.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// A ClusterIP-only port without endpoints; the other fields are set
    /// by whoever needs more.
    pub fn new(name: ServicePortName, protocol: Protocol, cluster_ip: Ipv4Addr, port: u16) -> ServicePort {
        ServicePort {
            name,
            protocol,
            cluster_ip,
            port,
            node_port: None,
            external_ips: vec![],
            load_balancer_ips: vec![],
            source_ranges: vec![],
            affinity_seconds: None,
            external_local: false,
            internal_local: false,
            health_check_node_port: None,
            endpoints: vec![],
        }
    }

    /// The endpoints traffic may go to, as upstream's topology filter picks
    /// them: the ready ones, or, when none is ready, those still serving
    /// while they terminate; `local_only` keeps those on this node.
    pub fn usable_endpoints(&self, local_only: bool) -> Vec<&Endpoint> {
        let candidates: Vec<&Endpoint> = self.endpoints.iter().filter(|e| !local_only || e.local).collect();
        let ready: Vec<&Endpoint> = candidates.iter().copied().filter(|e| e.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        candidates.into_iter().filter(|e| e.serving && e.terminating).collect()
    }

    /// Whether traffic from outside the cluster reaches this port by a node
    /// or load balancer address.
    pub fn is_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty() || !self.load_balancer_ips.is_empty()
    }

    /// Which endpoints each traffic policy sends to, as upstream's
    /// CategorizeEndpoints: both proxy modes write their chains from it.
    pub fn categorized_endpoints(&self) -> CategorizedEndpoints<'_> {
        // An externally reachable port needs its cluster endpoints even
        // under the Local policy: pods and the node itself take the cluster path.
        let external = self.is_external();
        let uses_cluster = !self.internal_local || external;
        let uses_local = self.internal_local || (external && self.external_local);
        CategorizedEndpoints {
            cluster: if uses_cluster { self.usable_endpoints(false) } else { vec![] },
            local: if uses_local { self.usable_endpoints(true) } else { vec![] },
            any_usable: !self.usable_endpoints(false).is_empty(),
        }
    }
}

/// A port's endpoints by the policy that sends traffic to them.
#[derive(Debug)]
pub struct CategorizedEndpoints<'a> {
    /// For the Cluster policy (empty when no policy of the port uses it).
    pub cluster: Vec<&'a Endpoint>,
    /// For the Local policy: this node's (empty when no policy uses it).
    pub local: Vec<&'a Endpoint>,
    /// Whether the port has any usable endpoint at all.
    pub any_usable: bool,
}

/// The Services and EndpointSlices of the cluster, as the proxy's rules see
/// them: every proxied Service port, sorted by name.
pub fn build(services: &[Service], slices: &[EndpointSlice], node_name: &str) -> Vec<ServicePort> {
    // Endpoints per (namespace, service) and port name, merged over slices;
    // an address seen in two slices counts once.
    let mut endpoints: BTreeMap<(String, String), BTreeMap<String, BTreeSet<Endpoint>>> = BTreeMap::new();
    for slice in slices {
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        if labels.contains_key(SERVICE_PROXY_NAME_LABEL) || slice.address_type != "IPv4" {
            continue;
        }
        let Some(service) = labels.get(SERVICE_NAME_LABEL) else { continue };
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        let per_port = endpoints.entry((namespace, service.clone())).or_default();
        for port in slice.ports.iter().flatten() {
            let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) else { continue };
            let set = per_port.entry(port.name.clone().unwrap_or_default()).or_default();
            for endpoint in &slice.endpoints {
                let conditions = endpoint.conditions.clone().unwrap_or_default();
                // As upstream: an absent `ready` means ready; `serving`
                // defaults to `ready`; `terminating` to false.
                let ready = conditions.ready.unwrap_or(true);
                let serving = conditions.serving.unwrap_or(ready);
                let terminating = conditions.terminating.unwrap_or(false);
                let local = endpoint.node_name.as_deref() == Some(node_name);
                for address in &endpoint.addresses {
                    let Ok(ip) = address.parse::<Ipv4Addr>() else { continue };
                    set.insert(Endpoint { ip, port: number, ready, serving, terminating, local });
                }
            }
        }
    }

    let mut ports = Vec::new();
    for service in services {
        let labels = service.metadata.labels.clone().unwrap_or_default();
        if labels.contains_key(SERVICE_PROXY_NAME_LABEL) {
            continue;
        }
        let Some(spec) = &service.spec else { continue };
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if kind == "ExternalName" {
            continue;
        }
        let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else { continue };
        let namespace = service.metadata.namespace.clone().unwrap_or_default();
        let name = service.metadata.name.clone().unwrap_or_default();
        let external_ips = spec.external_ips.iter().flatten().filter_map(|ip| ip.parse().ok()).collect::<Vec<Ipv4Addr>>();
        let load_balancer_ips: Vec<Ipv4Addr> = if kind == "LoadBalancer" {
            service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|ingress| ingress.ip.as_deref().and_then(|ip| ip.parse().ok()))
                .collect()
        } else {
            vec![]
        };
        let source_ranges = spec.load_balancer_source_ranges.iter().flatten().filter_map(|r| r.trim().parse().ok()).collect::<Vec<ipnet::Ipv4Net>>();
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        let external = matches!(kind, "NodePort" | "LoadBalancer");
        let external_local = external && spec.external_traffic_policy.as_deref() == Some("Local");
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let health_check_node_port = spec.health_check_node_port.and_then(|p| u16::try_from(p).ok()).filter(|_| external_local);
        let service_endpoints = endpoints.get(&(namespace.clone(), name.clone()));
        for port in spec.ports.iter().flatten() {
            let Ok(number) = u16::try_from(port.port) else { continue };
            let port_name = port.name.clone().unwrap_or_default();
            let protocol = Protocol::parse(port.protocol.as_deref());
            let node_port = port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| external && *p > 0);
            let endpoints = service_endpoints.and_then(|e| e.get(&port_name)).map(|set| set.iter().cloned().collect()).unwrap_or_default();
            ports.push(ServicePort {
                name: ServicePortName { namespace: namespace.clone(), name: name.clone(), port: port_name },
                protocol,
                cluster_ip,
                port: number,
                node_port,
                external_ips: external_ips.clone(),
                load_balancer_ips: load_balancer_ips.clone(),
                source_ranges: source_ranges.clone(),
                affinity_seconds,
                external_local,
                internal_local,
                health_check_node_port,
                endpoints,
            });
        }
    }
    ports.sort_by(|a, b| (&a.name, a.protocol).cmp(&(&b.name, b.protocol)));
    ports
}

/// Service ports written by hand, shared by the backends' tests.
#[cfg(test)]
pub mod fixtures {
    use super::*;

    pub fn port(ns: &str, name: &str, port_name: &str, cluster_ip: &str, endpoints: &[(&str, bool)]) -> ServicePort {
        let mut service = ServicePort::new(
            ServicePortName { namespace: ns.into(), name: name.into(), port: port_name.into() },
            Protocol::Tcp,
            cluster_ip.parse().unwrap(),
            80,
        );
        service.endpoints = endpoints
            .iter()
            .map(|(ip, local)| Endpoint { ip: ip.parse().unwrap(), port: 80, ready: true, serving: true, terminating: false, local: *local })
            .collect();
        service
    }

    /// One Service of each shape the rules distinguish.
    pub fn services() -> Vec<ServicePort> {
        let clusterip = port("ns1", "svc1", "p80", "172.30.0.41", &[("10.180.0.1", false), ("10.180.1.1", false), ("10.180.2.1", true)]);
        let mut nodeport_local = port("ns2", "svc2", "p80", "172.30.0.42", &[("10.180.0.2", true), ("10.180.1.2", false)]);
        nodeport_local.node_port = Some(30001);
        nodeport_local.external_local = true;
        nodeport_local.health_check_node_port = Some(30000);
        nodeport_local.external_ips = vec!["192.168.99.22".parse().unwrap()];
        let mut lb = port("ns3", "svc3", "p80", "172.30.0.43", &[("10.180.0.3", false)]);
        lb.node_port = Some(30003);
        lb.load_balancer_ips = vec!["172.18.255.200".parse().unwrap()];
        lb.source_ranges = vec!["203.0.113.0/25".parse().unwrap()];
        let mut sticky = port("ns4", "svc4", "", "172.30.0.44", &[("10.180.0.4", false), ("10.180.1.4", false)]);
        sticky.affinity_seconds = Some(10800);
        sticky.protocol = Protocol::Udp;
        let mut none = port("ns5", "svc5", "p80", "172.30.0.45", &[]);
        none.node_port = Some(30005);
        let mut internal_local = port("ns6", "svc6", "p80", "172.30.0.46", &[("10.180.1.6", false)]);
        internal_local.internal_local = true;
        vec![clusterip, nodeport_local, lb, sticky, none, internal_local]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON documents separated by `---` lines.
    fn parse<T: serde::de::DeserializeOwned>(docs: &str) -> Vec<T> {
        docs.split("\n---\n").map(|doc| serde_json::from_str(doc).unwrap()).collect()
    }

    #[test]
    fn ports_get_their_endpoints_by_name_across_slices_with_upstreams_conditions() {
        let services: Vec<Service> = parse(
            r#"{"metadata":{"name":"web","namespace":"dev"},"spec":{"type":"NodePort","clusterIP":"10.96.0.20","externalTrafficPolicy":"Local","healthCheckNodePort":31000,
                "sessionAffinity":"ClientIP","ports":[{"name":"http","port":80,"nodePort":30080},{"name":"dns","port":53,"protocol":"UDP"}]}}
---
{"metadata":{"name":"headless","namespace":"dev"},"spec":{"clusterIP":"None","ports":[{"port":80}]}}
---
{"metadata":{"name":"away","namespace":"dev"},"spec":{"type":"ExternalName","externalName":"example.org"}}"#,
        );
        let slices: Vec<EndpointSlice> = parse(
            r#"{"metadata":{"name":"web-a","namespace":"dev","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4",
                "ports":[{"name":"http","port":8080},{"name":"dns","port":5353,"protocol":"UDP"}],
                "endpoints":[{"addresses":["10.244.1.5"],"nodeName":"worker-1"},{"addresses":["10.244.2.5"],"conditions":{"ready":false,"serving":true,"terminating":true},"nodeName":"worker-2"}]}
---
{"metadata":{"name":"web-b","namespace":"dev","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4",
                "ports":[{"name":"http","port":8080}],"endpoints":[{"addresses":["10.244.3.5"],"nodeName":"worker-3","conditions":{"ready":false}}]}"#,
        );
        let ports = build(&services, &slices, "worker-1");
        let names: Vec<String> = ports.iter().map(|p| p.name.to_string()).collect();
        assert_eq!(names, ["dev/web:dns", "dev/web:http"], "headless and ExternalName Services are not proxied");
        let http = &ports[1];
        assert_eq!(
            (http.port, http.node_port, http.affinity_seconds, http.external_local, http.health_check_node_port),
            (80, Some(30080), Some(10800), true, Some(31000))
        );
        let addresses: Vec<String> = http.endpoints.iter().map(Endpoint::address).collect();
        assert_eq!(addresses, ["10.244.1.5:8080", "10.244.2.5:8080", "10.244.3.5:8080"]);
        let usable: Vec<String> = http.usable_endpoints(false).iter().map(|e| e.address()).collect();
        assert_eq!(usable, ["10.244.1.5:8080"], "only ready endpoints while one is ready");
        let local: Vec<String> = http.usable_endpoints(true).iter().map(|e| e.address()).collect();
        assert_eq!(local, ["10.244.1.5:8080"]);
        assert_eq!(ports[0].protocol, Protocol::Udp);
        assert_eq!(ports[0].endpoints.iter().map(|e| e.port).collect::<Vec<_>>(), [5353, 5353]);
    }

    #[test]
    fn terminating_endpoints_that_still_serve_are_used_when_none_is_ready() {
        let endpoint = |ip: &str, ready, serving, terminating| Endpoint { ip: ip.parse().unwrap(), port: 80, ready, serving, terminating, local: false };
        let mut port = ServicePort::new(
            ServicePortName { namespace: "ns".into(), name: "s".into(), port: String::new() },
            Protocol::Tcp,
            "10.96.0.5".parse().unwrap(),
            80,
        );
        port.endpoints = vec![endpoint("10.0.0.1", false, true, true), endpoint("10.0.0.2", false, false, true), endpoint("10.0.0.3", false, false, false)];
        let usable: Vec<String> = port.usable_endpoints(false).iter().map(|e| e.address()).collect();
        assert_eq!(usable, ["10.0.0.1:80"]);
        assert_eq!(port.name.to_string(), "ns/s");
    }
}
