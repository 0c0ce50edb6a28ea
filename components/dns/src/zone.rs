//! The cluster's zone as plain data: every name its Services and
//! EndpointSlices give, with the records each name holds, built whole from
//! the watched objects (names and record shapes as CoreDNS's `kubernetes`
//! plugin, the Kubernetes DNS specification, gives them).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The schema version of the Kubernetes DNS specification served.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// The reverse zones answered beside the cluster domain.
pub const REVERSE_ZONES: [&str; 2] = ["in-addr.arpa", "ip6.arpa"];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Srv { weight: u16, port: u16, target: String },
    Ptr(String),
    Txt(String),
}

/// Names (lower case, no trailing dot) and their records. A name with no
/// records is an empty non-terminal: it exists (NODATA, not NXDOMAIN).
#[derive(Debug, Clone, Default)]
pub struct Zone {
    pub domain: String,
    names: BTreeMap<String, BTreeSet<Data>>,
    /// The SOA serial: when the zone was last built (seconds since the epoch).
    pub serial: u32,
}

impl Zone {
    /// The records of `name`, or None when it does not exist.
    pub fn get(&self, name: &str) -> Option<&BTreeSet<Data>> {
        self.names.get(name)
    }

    /// How many names hold records (for the log).
    pub fn len(&self) -> usize {
        self.names.values().filter(|d| !d.is_empty()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn add(&mut self, name: String, data: Data) {
        self.names.entry(name).or_default().insert(data);
    }

    /// Every ancestor of every name, down to its zone's apex, exists.
    fn add_empty_non_terminals(&mut self) {
        let apexes: Vec<String> = std::iter::once(self.domain.clone()).chain(REVERSE_ZONES.iter().map(|z| z.to_string())).collect();
        let names: Vec<String> = self.names.keys().cloned().collect();
        for name in names {
            let Some(apex) = apexes.iter().find(|a| name == **a || name.ends_with(&format!(".{a}"))) else { continue };
            let mut rest = name.as_str();
            while rest != apex {
                let Some((_, parent)) = rest.split_once('.') else { break };
                self.names.entry(parent.to_string()).or_default();
                rest = parent;
            }
        }
    }
}

/// The name a pod address gets under its Service when it has no hostname:
/// the address with dashes (CoreDNS's endpoint names).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// The reverse-lookup name of an address (`4.3.2.1.in-addr.arpa`, nibbles in ip6.arpa).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let nibbles: Vec<String> = v6.octets().iter().rev().flat_map(|b| [format!("{:x}", b & 0xf), format!("{:x}", b >> 4)]).collect();
            format!("{}.ip6.arpa", nibbles.join("."))
        }
    }
}

fn address(ip: IpAddr) -> Data {
    match ip {
        IpAddr::V4(v4) => Data::A(v4),
        IpAddr::V6(v6) => Data::Aaaa(v6),
    }
}

/// One port of a Service or EndpointSlice: its SRV label pair.
fn srv_name(port_name: &str, protocol: Option<&str>, service: &str) -> String {
    format!("_{}._{}.{service}", port_name.to_lowercase(), protocol.unwrap_or("TCP").to_lowercase())
}

/// Upstream's SRV weights: the records of one name share 100 between them.
fn weight(count: usize) -> u16 {
    (100 / count.max(1)) as u16
}

/// A Service as (namespace, name).
type ServiceKey = (String, String);
/// A named port of an EndpointSlice: (name, protocol, number).
type NamedPort = (String, String, u16);

/// The zone of `domain` from every Service and EndpointSlice.
pub fn build(domain: &str, services: &[Service], slices: &[EndpointSlice], serial: u32) -> Zone {
    let domain = domain.trim_end_matches('.').to_lowercase();
    let mut zone = Zone { domain: domain.clone(), names: BTreeMap::new(), serial };
    zone.add(format!("dns-version.{domain}"), Data::Txt(SCHEMA_VERSION.into()));
    for fixed in ["svc", "pod"] {
        zone.names.entry(format!("{fixed}.{domain}")).or_default();
    }
    zone.names.entry(domain.clone()).or_default();

    // Ready endpoints by Service: (namespace, service) → [(endpoint name, address)], and the slices' ports.
    let mut endpoints: BTreeMap<ServiceKey, BTreeSet<(String, IpAddr)>> = BTreeMap::new();
    let mut slice_ports: BTreeMap<ServiceKey, BTreeSet<NamedPort>> = BTreeMap::new();
    for slice in slices {
        let ns = slice.metadata.namespace.clone().unwrap_or_default();
        let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).cloned() else { continue };
        let key = (ns, service);
        for port in slice.ports.iter().flatten() {
            if let (Some(name), Some(number)) = (&port.name, port.port) {
                if !name.is_empty() {
                    let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
                    slice_ports.entry(key.clone()).or_default().insert((name.clone(), protocol, number as u16));
                }
            }
        }
        for endpoint in &slice.endpoints {
            // An absent condition means ready (the API's documented default).
            if endpoint.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for text in &endpoint.addresses {
                let Ok(ip) = text.parse::<IpAddr>() else { continue };
                let name = endpoint.hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| dashed(ip));
                endpoints.entry(key.clone()).or_default().insert((name.to_lowercase(), ip));
            }
        }
    }

    for service in services {
        let (Some(name), Some(ns)) = (&service.metadata.name, &service.metadata.namespace) else { continue };
        let Some(spec) = &service.spec else { continue };
        let base = format!("{name}.{ns}.svc.{domain}");
        if spec.type_.as_deref() == Some("ExternalName") {
            if let Some(target) = spec.external_name.as_deref().filter(|t| !t.is_empty()) {
                zone.add(base, Data::Cname(target.trim_end_matches('.').to_lowercase()));
            }
            continue;
        }
        let ips: Vec<IpAddr> = spec
            .cluster_ips
            .clone()
            .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
            .unwrap_or_default()
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if !headless {
            if ips.is_empty() {
                continue;
            }
            for ip in &ips {
                zone.add(base.clone(), address(*ip));
                zone.add(reverse_name(*ip), Data::Ptr(base.clone()));
            }
            let ports = spec.ports.clone().unwrap_or_default();
            for port in &ports {
                let srv = Data::Srv { weight: weight(1), port: port.port as u16, target: base.clone() };
                if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                    zone.add(srv_name(port_name, port.protocol.as_deref(), &base), srv.clone());
                }
            }
            // The Service's own name answers SRV with every port.
            for port in &ports {
                zone.add(base.clone(), Data::Srv { weight: weight(ports.len()), port: port.port as u16, target: base.clone() });
            }
            continue;
        }
        // Headless: the Service's name is each ready endpoint's address, and
        // each endpoint has a name of its own under it.
        let key = (ns.clone(), name.clone());
        let Some(ready) = endpoints.get(&key).filter(|e| !e.is_empty()) else { continue };
        for (endpoint, ip) in ready {
            let own = format!("{endpoint}.{base}");
            zone.add(base.clone(), address(*ip));
            zone.add(own.clone(), address(*ip));
            zone.add(reverse_name(*ip), Data::Ptr(own));
        }
        let targets: BTreeSet<&String> = ready.iter().map(|(e, _)| e).collect();
        let ports = slice_ports.get(&key).cloned().unwrap_or_default();
        let all = targets.len() * ports.len();
        for (port_name, protocol, number) in &ports {
            for endpoint in &targets {
                let target = format!("{endpoint}.{base}");
                zone.add(srv_name(port_name, Some(protocol), &base), Data::Srv { weight: weight(targets.len()), port: *number, target: target.clone() });
                zone.add(base.clone(), Data::Srv { weight: weight(all), port: *number, target });
            }
        }
    }
    // The name server's own address: the kube-dns Service's.
    if let Some(ip) =
        zone.get(&format!("kube-dns.kube-system.svc.{domain}")).and_then(|d| d.iter().find_map(|d| if let Data::A(ip) = d { Some(*ip) } else { None }))
    {
        zone.add(format!("ns.dns.{domain}"), Data::A(ip));
    }
    zone.add_empty_non_terminals();
    zone
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    pub fn sample() -> Zone {
        let services = vec![
            service(json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"], "ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}})),
            service(json!({"metadata": {"name": "db", "namespace": "data"},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}})),
            service(json!({"metadata": {"name": "empty", "namespace": "data"}, "spec": {"clusterIP": "None"}})),
            service(json!({"metadata": {"name": "search", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local."}})),
            service(json!({"metadata": {"name": "kube-dns", "namespace": "kube-system"},
                "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}})),
        ];
        let slices = vec![slice(json!({
        "metadata": {"name": "db-abc", "namespace": "data", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.2.6"], "conditions": {}},
            {"addresses": ["10.244.3.7"], "conditions": {"ready": false}},
        ]}))];
        build("cluster.local", &services, &slices, 7)
    }

    fn records(zone: &Zone, name: &str) -> Vec<Data> {
        zone.get(name).unwrap_or_else(|| panic!("{name} is not in the zone")).iter().cloned().collect()
    }

    #[test]
    fn cluster_ip_services_have_addresses_ports_and_reverse_names() {
        let zone = sample();
        let base = "web.default.svc.cluster.local";
        let srv = |port, weight| Data::Srv { weight, port, target: base.into() };
        assert_eq!(records(&zone, base), vec![Data::A("10.96.0.20".parse().unwrap()), srv(53, 50), srv(80, 50)]);
        assert_eq!(records(&zone, &format!("_http._tcp.{base}")), vec![srv(80, 100)]);
        assert_eq!(records(&zone, &format!("_dns._udp.{base}")), vec![srv(53, 100)]);
        assert_eq!(records(&zone, "20.0.96.10.in-addr.arpa"), vec![Data::Ptr(base.into())]);
        assert_eq!(records(&zone, "ns.dns.cluster.local"), vec![Data::A("10.96.0.10".parse().unwrap())]);
        assert_eq!(records(&zone, "dns-version.cluster.local"), vec![Data::Txt("1.1.0".into())]);
    }

    #[test]
    fn headless_services_name_each_ready_endpoint() {
        let zone = sample();
        let base = "db.data.svc.cluster.local";
        let a = |ip: &str| Data::A(ip.parse().unwrap());
        assert_eq!(records(&zone, base).into_iter().filter(|d| matches!(d, Data::A(_))).collect::<Vec<_>>(), vec![a("10.244.1.5"), a("10.244.2.6")]);
        assert_eq!(records(&zone, &format!("db-0.{base}")), vec![a("10.244.1.5")]);
        assert_eq!(records(&zone, &format!("10-244-2-6.{base}")), vec![a("10.244.2.6")]);
        assert!(zone.get(&format!("10-244-3-7.{base}")).is_none(), "a not-ready endpoint has no name");
        let srv = |target: &str| Data::Srv { weight: 50, port: 5432, target: format!("{target}.{base}") };
        assert_eq!(records(&zone, &format!("_pg._tcp.{base}")), vec![srv("10-244-2-6"), srv("db-0")]);
        assert_eq!(records(&zone, "5.1.244.10.in-addr.arpa"), vec![Data::Ptr(format!("db-0.{base}"))]);
        assert!(zone.get("empty.data.svc.cluster.local").is_none(), "a headless Service without ready endpoints has no name");
    }

    #[test]
    fn external_names_are_aliases_and_parents_exist_empty() {
        let zone = sample();
        assert_eq!(records(&zone, "search.default.svc.cluster.local"), vec![Data::Cname("web.default.svc.cluster.local".into())]);
        for parent in [
            "default.svc.cluster.local",
            "data.svc.cluster.local",
            "svc.cluster.local",
            "pod.cluster.local",
            "cluster.local",
            "10.in-addr.arpa",
            "in-addr.arpa",
        ] {
            assert_eq!(records(&zone, parent), vec![], "{parent}");
        }
        assert!(zone.get("other.svc.cluster.local").is_none());
    }

    #[test]
    fn reverse_names_of_both_families() {
        assert_eq!(reverse_name("10.1.2.3".parse().unwrap()), "3.2.1.10.in-addr.arpa");
        assert!(reverse_name("fd00::1".parse().unwrap()).starts_with("1.0.0.0.0.0.0.0."));
        assert!(reverse_name("fd00::1".parse().unwrap()).ends_with("0.0.d.f.ip6.arpa"));
        assert_eq!(dashed("fd00::1".parse().unwrap()), "fd00--1");
    }
}
