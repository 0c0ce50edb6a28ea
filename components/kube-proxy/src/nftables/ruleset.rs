//! The whole desired state as one nftables table, `ip kube-proxy`, in
//! upstream's nftables layout (KEP-3866, `pkg/proxy/nftables`): the same
//! base chains and priorities, the same dispatch maps (`service-ips`,
//! `service-nodeports`), the same per-Service and per-endpoint chain names
//! (hashed as upstream hashes them), so what `nft list table ip kube-proxy`
//! shows in a node reads as upstream's documentation.
//!
//! [`render`] builds a [`Ruleset`] (chains with their rules, sets and maps
//! with their elements); [`Ruleset::replace_all`] writes it as one `nft -f`
//! transaction that replaces the table.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use crate::model::{CategorizedEndpoints, Endpoint, ServicePort, ServicePortName};

pub const TABLE: &str = "kube-proxy";
/// `nft` addresses the table as `ip kube-proxy`.
pub const FAMILY: &str = "ip";

pub const SERVICES: &str = "services";
pub const SERVICE_IPS: &str = "service-ips";
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
pub const NODEPORT_IPS: &str = "nodeport-ips";
pub const CLUSTER_IPS: &str = "cluster-ips";
pub const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";
pub const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
pub const REJECT_CHAIN: &str = "reject-chain";
pub const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
pub const FIREWALL_IPS: &str = "firewall-ips";
pub const FIREWALL_CHECK: &str = "firewall-check";
pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
pub const MASQUERADING: &str = "masquerading";
/// The bit of the packet mark that asks `masquerading` to masquerade
/// (upstream's bit 14, printed as upstream prints it).
pub const MASQUERADE_MARK: &str = "0x004000";

/// The base chains, as upstream names them (`<type>-<hook>`), with their
/// type, hook and priority. Filtering runs before DNAT (dstnat - 10), on
/// the addresses the client used; `filter-output-post-dnat` after it
/// (dstnat + 10). Written as numbers (dstnat is -100, srcnat 100): nft
/// 1.0.6 takes the names only on the hooks they were made for.
pub const BASE_CHAINS: &[(&str, &str, &str, &str)] = &[
    ("filter-prerouting", "filter", "prerouting", "-110"),
    ("filter-input", "filter", "input", "-110"),
    ("filter-forward", "filter", "forward", "-110"),
    ("filter-output", "filter", "output", "-110"),
    ("filter-output-post-dnat", "filter", "output", "-90"),
    ("nat-prerouting", "nat", "prerouting", "-100"),
    ("nat-output", "nat", "output", "-100"),
    ("nat-postrouting", "nat", "postrouting", "100"),
];

/// The jumps from the base chains into ours: (to, from, match before the jump).
/// `reject` is allowed only on the input, forward and output hooks (before
/// Linux 5.9), hence no endpoints check from prerouting.
pub const JUMPS: &[(&str, &str, &str)] = &[
    (NODEPORT_ENDPOINTS_CHECK, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-input", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-forward", "ct state new"),
    (SERVICE_ENDPOINTS_CHECK, "filter-output", "ct state new"),
    (FIREWALL_CHECK, "filter-prerouting", "ct state new"),
    (FIREWALL_CHECK, "filter-output", "ct state new"),
    (SERVICES, "nat-output", ""),
    (SERVICES, "nat-prerouting", ""),
    (MASQUERADING, "nat-postrouting", ""),
    (CLUSTER_IPS_CHECK, "filter-forward", "ct state new"),
    (CLUSTER_IPS_CHECK, "filter-output-post-dnat", "ct state new"),
];

/// How the rules are shaped beyond the model.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The cluster's pod CIDR: traffic from outside it to a ClusterIP is
    /// masqueraded (upstream's local-traffic detector, `--cluster-cidr`).
    pub cluster_cidr: Option<ipnet::Ipv4Net>,
    /// Masquerade every packet sent to a ClusterIP (`--masquerade-all`).
    pub masquerade_all: bool,
    /// The node addresses NodePorts answer on (the `nodeport-ips` set);
    /// empty: every local address but 127.0.0.0/8 (`fib daddr type local`).
    pub nodeport_ips: Vec<Ipv4Addr>,
}

/// A chain: its declaration (empty for a regular chain without comment)
/// and its rules in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    pub spec: String,
    pub rules: Vec<String>,
}

/// A set or a map: `kind` is `set` or `map`, with its declaration and
/// elements (each as `nft` writes it between braces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    pub kind: &'static str,
    pub name: String,
    pub spec: String,
    pub elements: BTreeSet<String>,
}

/// Everything in the table, in the order it is declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub chains: Vec<Chain>,
    pub sets: Vec<Set>,
    chain_index: HashMap<String, usize>,
    set_index: HashMap<String, usize>,
}

impl Ruleset {
    fn chain(&mut self, name: &str, spec: &str) {
        if self.chain_index.contains_key(name) {
            return;
        }
        self.chain_index.insert(name.to_string(), self.chains.len());
        self.chains.push(Chain { name: name.to_string(), spec: spec.to_string(), rules: vec![] });
    }

    fn rule(&mut self, chain: &str, rule: impl Into<String>) {
        let index = *self.chain_index.get(chain).unwrap_or_else(|| panic!("chain {chain} is declared before its rules"));
        self.chains[index].rules.push(rule.into());
    }

    fn set(&mut self, kind: &'static str, name: &str, spec: &str) {
        if self.set_index.contains_key(name) {
            return;
        }
        self.set_index.insert(name.to_string(), self.sets.len());
        self.sets.push(Set { kind, name: name.to_string(), spec: spec.to_string(), elements: BTreeSet::new() });
    }

    fn element(&mut self, set: &str, element: impl Into<String>) {
        let index = *self.set_index.get(set).unwrap_or_else(|| panic!("set {set} is declared before its elements"));
        self.sets[index].elements.insert(element.into());
    }

    pub fn get_chain(&self, name: &str) -> Option<&Chain> {
        self.chain_index.get(name).map(|i| &self.chains[*i])
    }

    pub fn get_set(&self, name: &str) -> Option<&Set> {
        self.set_index.get(name).map(|i| &self.sets[*i])
    }

    /// How many rules the chains hold.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// How many elements the sets and maps hold.
    pub fn element_count(&self) -> usize {
        self.sets.iter().map(|s| s.elements.len()).sum()
    }

    /// One `nft -f` transaction that replaces the whole table: `add`
    /// (so that the `delete` cannot fail), `delete`, then everything.
    pub fn replace_all(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "{}", add_table());
        let _ = writeln!(text, "delete table {FAMILY} {TABLE}");
        let _ = writeln!(text, "{}", add_table());
        for chain in &self.chains {
            let _ = writeln!(text, "{}", add_chain(chain));
        }
        for set in &self.sets {
            let _ = writeln!(text, "{}", add_set(set));
        }
        for chain in &self.chains {
            for rule in &chain.rules {
                let _ = writeln!(text, "add rule {FAMILY} {TABLE} {} {rule}", chain.name);
            }
        }
        for set in &self.sets {
            write_elements(&mut text, "add", &set.name, set.elements.iter());
        }
        text
    }
}

pub fn add_table() -> String {
    format!("add table {FAMILY} {TABLE} {{ comment \"rules for kube-proxy\" ; }}")
}

pub fn add_chain(chain: &Chain) -> String {
    if chain.spec.is_empty() {
        format!("add chain {FAMILY} {TABLE} {}", chain.name)
    } else {
        format!("add chain {FAMILY} {TABLE} {} {{ {} }}", chain.name, chain.spec)
    }
}

pub fn add_set(set: &Set) -> String {
    format!("add {} {FAMILY} {TABLE} {} {{ {} }}", set.kind, set.name, set.spec)
}

/// `add element` or `delete element` of some elements of one set or map,
/// one per line; nothing when there are none.
pub fn write_elements<'a>(text: &mut String, verb: &str, set: &str, elements: impl Iterator<Item = &'a String>) {
    let mut elements = elements.peekable();
    if elements.peek().is_none() {
        return;
    }
    let _ = writeln!(text, "{verb} element {FAMILY} {TABLE} {set} {{");
    while let Some(element) = elements.next() {
        let _ = writeln!(text, "\t{element}{}", if elements.peek().is_some() { "," } else { "" });
    }
    text.push_str("}\n");
}

/// Upstream's `hashAndTruncate`: the first 8 characters of
/// base32(sha256(name)), a dash, the name; cut to 240 characters.
fn hash_and_truncate(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let encoded = data_encoding::BASE32.encode(&digest);
    let mut full = format!("{}-{name}", &encoded[..8]);
    const MAX: usize = 256 - 16;
    if full.len() > MAX {
        full.truncate(MAX - 3);
        full.push_str("...");
    }
    full
}

/// `namespace/name/protocol/port`, hashed: the base of a Service port's chains.
fn port_base(name: &ServicePortName, protocol: &str) -> String {
    hash_and_truncate(&format!("{}/{}/{protocol}/{}", name.namespace, name.name, name.port))
}

fn endpoint_base(port: &ServicePort, endpoint: &Endpoint) -> String {
    let name = &port.name;
    hash_and_truncate(&format!("{}/{}/{}/{}__{}/{}", name.namespace, name.name, port.protocol.lower(), name.port, endpoint.ip, endpoint.port))
}

pub fn service_chain(port: &ServicePort) -> String {
    format!("service-{}", port_base(&port.name, port.protocol.lower()))
}

pub fn local_chain(port: &ServicePort) -> String {
    format!("local-{}", port_base(&port.name, port.protocol.lower()))
}

pub fn external_chain(port: &ServicePort) -> String {
    format!("external-{}", port_base(&port.name, port.protocol.lower()))
}

pub fn firewall_chain(port: &ServicePort) -> String {
    format!("firewall-{}", port_base(&port.name, port.protocol.lower()))
}

pub fn endpoint_chain(port: &ServicePort, endpoint: &Endpoint) -> String {
    format!("endpoint-{}", endpoint_base(port, endpoint))
}

pub fn affinity_set(port: &ServicePort, endpoint: &Endpoint) -> String {
    format!("affinity-{}", endpoint_base(port, endpoint))
}

/// Whether a chain is one of a Service port's (all of those, and only
/// those, have a `/` in their name).
pub fn is_service_chain(name: &str) -> bool {
    name.contains('/')
}

/// An element comment, as `nft` reads it.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "'"))
}

/// The table's fixed part: base chains, jumps, the dispatch and check
/// rules, the masquerading, and every set and map (empty).
fn skeleton(settings: &Settings) -> Ruleset {
    let mut set = Ruleset::default();
    for (name, kind, hook, priority) in BASE_CHAINS {
        set.chain(name, &format!("type {kind} hook {hook} priority {priority} ; policy accept ;"));
    }
    for (to, _, _) in JUMPS {
        set.chain(to, "");
    }
    for chain in [SERVICES, CLUSTER_IPS_CHECK, MASQUERADING, MARK_FOR_MASQUERADE] {
        set.chain(chain, "");
    }
    set.chain(REJECT_CHAIN, "comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ;");
    for (to, from, matches) in JUMPS {
        let rule = if matches.is_empty() { format!("jump {to}") } else { format!("{matches} jump {to}") };
        set.rule(from, rule);
    }

    set.rule(MARK_FOR_MASQUERADE, format!("mark set mark or {MASQUERADE_MARK}"));
    set.rule(MASQUERADING, format!("mark and {MASQUERADE_MARK} == 0 return"));
    // Cleared, so that a packet passing this node again is not masqueraded twice.
    set.rule(MASQUERADING, format!("mark set mark xor {MASQUERADE_MARK}"));
    set.rule(MASQUERADING, "masquerade fully-random");

    set.set("set", CLUSTER_IPS, "type ipv4_addr ; comment \"Active ClusterIPs\" ;");
    set.rule(CLUSTER_IPS_CHECK, format!("ip daddr @{CLUSTER_IPS} reject comment \"Reject traffic to invalid ports of ClusterIPs\""));

    let by_address = "type ipv4_addr . inet_proto . inet_service : verdict";
    let by_port = "type inet_proto . inet_service : verdict";
    if !settings.nodeport_ips.is_empty() {
        set.set("set", NODEPORT_IPS, "type ipv4_addr ; comment \"IPs that accept NodePort traffic\" ;");
        for ip in &settings.nodeport_ips {
            set.element(NODEPORT_IPS, ip.to_string());
        }
    }
    set.set("map", NO_ENDPOINT_SERVICES, &format!("{by_address} ; comment \"vmap to drop or reject packets to services with no endpoints\" ;"));
    set.set("map", NO_ENDPOINT_NODEPORTS, &format!("{by_port} ; comment \"vmap to drop or reject packets to service nodeports with no endpoints\" ;"));
    set.rule(REJECT_CHAIN, "reject");
    set.rule(SERVICE_ENDPOINTS_CHECK, format!("ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"));
    // Whose address a NodePort answers on: the listed addresses, or every
    // local one but loopback (upstream does not serve NodePorts there).
    let nodeport_match =
        if settings.nodeport_ips.is_empty() { "fib daddr type local ip daddr != 127.0.0.0/8".to_string() } else { format!("ip daddr @{NODEPORT_IPS}") };
    // From filter-input only: the destination is local already.
    let nodeport_check_match = if settings.nodeport_ips.is_empty() { "ip daddr != 127.0.0.0/8".to_string() } else { format!("ip daddr @{NODEPORT_IPS}") };
    set.rule(NODEPORT_ENDPOINTS_CHECK, format!("{nodeport_check_match} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"));

    set.set("map", FIREWALL_IPS, &format!("{by_address} ; comment \"destinations that are subject to LoadBalancerSourceRanges\" ;"));
    set.rule(FIREWALL_CHECK, format!("ip daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}"));

    set.set("map", SERVICE_IPS, &format!("{by_address} ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ;"));
    set.set("map", SERVICE_NODEPORTS, &format!("{by_port} ; comment \"NodePort traffic\" ;"));
    set.rule(SERVICES, format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"));
    set.rule(SERVICES, format!("{nodeport_match} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"));
    set
}

/// The whole table for these Service ports.
pub fn render(ports: &[ServicePort], settings: &Settings) -> Ruleset {
    let mut set = skeleton(settings);
    for port in ports {
        render_port(port, settings, &mut set);
    }
    set
}

fn render_port(port: &ServicePort, settings: &Settings, set: &mut Ruleset) {
    let name = port.name.to_string();
    let proto = port.protocol.lower();
    let external = port.is_external();

    let CategorizedEndpoints { cluster: cluster_endpoints, local: local_endpoints, any_usable: has_endpoints } = port.categorized_endpoints();

    let mut reachable: Vec<&Endpoint> = cluster_endpoints.iter().chain(local_endpoints.iter()).copied().collect();
    reachable.sort();
    reachable.dedup();
    for endpoint in &reachable {
        set.chain(&endpoint_chain(port, endpoint), "");
    }

    let cluster_chain = service_chain(port);
    if !cluster_endpoints.is_empty() {
        set.chain(&cluster_chain, "");
    }
    let svl_chain = local_chain(port);
    if !local_endpoints.is_empty() {
        set.chain(&svl_chain, "");
    }
    let (internal_chain, has_internal) =
        if port.internal_local { (svl_chain.clone(), !local_endpoints.is_empty()) } else { (cluster_chain.clone(), has_endpoints) };
    let (external_policy, has_external) =
        if port.external_local { (svl_chain.clone(), !local_endpoints.is_empty()) } else { (cluster_chain.clone(), has_endpoints) };
    let ext_chain = external_chain(port);
    let uses_external_chain = has_endpoints && external;
    if uses_external_chain {
        set.chain(&ext_chain, "");
    }

    let reject = format!("goto {REJECT_CHAIN}");
    let (internal_verdict, external_verdict) =
        if !has_endpoints { (Some(reject.as_str()), Some(reject.as_str())) } else { ((!has_internal).then_some("drop"), (!has_external).then_some("drop")) };
    let comment = quoted(&name);
    let key = |ip: &Ipv4Addr| format!("{ip} . {proto} . {}", port.port);

    // The ClusterIP.
    set.element(CLUSTER_IPS, port.cluster_ip.to_string());
    if has_internal {
        set.element(SERVICE_IPS, format!("{} : goto {internal_chain}", key(&port.cluster_ip)));
    } else if let Some(verdict) = internal_verdict {
        set.element(NO_ENDPOINT_SERVICES, format!("{} comment {comment} : {verdict}", key(&port.cluster_ip)));
    }

    // externalIPs.
    for ip in &port.external_ips {
        if has_endpoints {
            set.element(SERVICE_IPS, format!("{} : goto {ext_chain}", key(ip)));
        }
        if let Some(verdict) = external_verdict {
            set.element(NO_ENDPOINT_SERVICES, format!("{} comment {comment} : {verdict}", key(ip)));
        }
    }

    // Load balancer addresses, behind loadBalancerSourceRanges when given.
    let uses_firewall = !port.load_balancer_ips.is_empty() && !port.source_ranges.is_empty();
    let fw_chain = firewall_chain(port);
    if uses_firewall {
        set.chain(&fw_chain, "");
        // The load balancer's own addresses may reach it too (a node
        // sending to an address it holds itself), as the iptables mode does.
        let sources: Vec<String> = port.source_ranges.iter().map(|r| r.to_string()).chain(port.load_balancer_ips.iter().map(|ip| ip.to_string())).collect();
        set.rule(&fw_chain, format!("ip saddr != {{ {} }} drop", sources.join(", ")));
    }
    for ip in &port.load_balancer_ips {
        if has_endpoints {
            set.element(SERVICE_IPS, format!("{} : goto {ext_chain}", key(ip)));
        }
        if uses_firewall {
            set.element(FIREWALL_IPS, format!("{} comment {comment} : goto {fw_chain}", key(ip)));
        }
    }
    if let Some(verdict) = external_verdict {
        for ip in &port.load_balancer_ips {
            set.element(NO_ENDPOINT_SERVICES, format!("{} comment {comment} : {verdict}", key(ip)));
        }
    }

    // The NodePort.
    if let Some(node_port) = port.node_port {
        if has_endpoints {
            set.element(SERVICE_NODEPORTS, format!("{proto} . {node_port} : goto {ext_chain}"));
        }
        if let Some(verdict) = external_verdict {
            set.element(NO_ENDPOINT_NODEPORTS, format!("{proto} . {node_port} comment {comment} : {verdict}"));
        }
    }

    // Traffic to the ClusterIP from outside the pod network is masqueraded,
    // so that replies come back through this node.
    if has_internal {
        let dest = format!("ip daddr {} {proto} dport {}", port.cluster_ip, port.port);
        if settings.masquerade_all {
            set.rule(&internal_chain, format!("{dest} jump {MARK_FOR_MASQUERADE}"));
        } else if let Some(cidr) = settings.cluster_cidr {
            set.rule(&internal_chain, format!("{dest} ip saddr != {cidr} jump {MARK_FOR_MASQUERADE}"));
        }
    }

    // Traffic from outside the cluster.
    if uses_external_chain {
        if !port.external_local {
            // Masqueraded, in case the endpoint is on another node.
            set.rule(&ext_chain, format!("jump {MARK_FOR_MASQUERADE}"));
        } else {
            // Local policy keeps the client's address, except for pods and
            // the node itself, which take the cluster path.
            if let Some(cidr) = settings.cluster_cidr {
                set.rule(&ext_chain, format!("ip saddr {cidr} goto {cluster_chain} comment \"short-circuit pod traffic\""));
            }
            set.rule(&ext_chain, format!("fib saddr type local jump {MARK_FOR_MASQUERADE} comment \"masquerade local traffic\""));
            set.rule(&ext_chain, format!("fib saddr type local goto {cluster_chain} comment \"short-circuit local traffic\""));
        }
        if has_external {
            set.rule(&ext_chain, format!("goto {external_policy}"));
        }
    }

    // ClientIP affinity: a set per endpoint of the clients it served, each
    // remembered for the Service's timeout.
    if let Some(seconds) = port.affinity_seconds {
        for endpoint in &reachable {
            set.set("set", &affinity_set(port, endpoint), &format!("type ipv4_addr ; flags dynamic,timeout ; timeout {seconds}s ;"));
        }
    }

    if !cluster_endpoints.is_empty() {
        service_to_endpoints(port, &cluster_chain, &cluster_endpoints, set);
    }
    if !local_endpoints.is_empty() {
        service_to_endpoints(port, &svl_chain, &local_endpoints, set);
    }

    for endpoint in &reachable {
        let chain = endpoint_chain(port, endpoint);
        // A pod reaching itself through its Service (hairpin) is
        // masqueraded, or its reply would bypass the DNAT.
        set.rule(&chain, format!("ip saddr {} jump {MARK_FOR_MASQUERADE}", endpoint.ip));
        if port.affinity_seconds.is_some() {
            set.rule(&chain, format!("update @{} {{ ip saddr }}", affinity_set(port, endpoint)));
        }
        set.rule(&chain, format!("meta l4proto {proto} dnat to {}", endpoint.address()));
    }
}

/// A Service chain: affinity first (a client seen lately goes back to its
/// endpoint), then a uniform random choice among the endpoints.
fn service_to_endpoints(port: &ServicePort, chain: &str, endpoints: &[&Endpoint], set: &mut Ruleset) {
    if port.affinity_seconds.is_some() {
        for endpoint in endpoints {
            set.rule(chain, format!("ip saddr @{} goto {}", affinity_set(port, endpoint), endpoint_chain(port, endpoint)));
        }
    }
    let choices: Vec<String> = endpoints.iter().enumerate().map(|(i, e)| format!("{i} : goto {}", endpoint_chain(port, e))).collect();
    set.rule(chain, format!("numgen random mod {} vmap {{ {} }}", endpoints.len(), choices.join(", ")));
}
