//! The whole desired state as one `iptables-restore --noflush` payload for
//! the filter and nat tables, in upstream's layout: the same chain names
//! (hashed as upstream hashes them), the same comments, the same order of
//! rules within a chain, so what users read in `iptables-save` is what the
//! course notes and upstream's documentation describe.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::model::{CategorizedEndpoints, Endpoint, ServicePort, ServicePortName};

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
pub const KUBE_FIREWALL: &str = "KUBE-FIREWALL";
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
/// The bit of the packet mark that asks KUBE-POSTROUTING to masquerade.
pub const MASQUERADE_MARK: &str = "0x4000";

/// Prefixes of the per-Service chains this proxy owns in the nat table;
/// any such chain no longer wanted is deleted by the next sync.
pub const OWNED_PREFIXES: &[&str] = &["KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"];

/// How the rules are shaped beyond the model.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The cluster's pod CIDR: traffic from outside it to a ClusterIP is
    /// masqueraded (upstream's local-traffic detector, `--cluster-cidr`).
    pub cluster_cidr: Option<ipnet::Ipv4Net>,
    /// Masquerade every packet sent to a ClusterIP (`--masquerade-all`).
    pub masquerade_all: bool,
    /// MASQUERADE with `--random-fully` (upstream uses it when iptables has it).
    pub random_fully: bool,
}

/// A rendered sync: the restore payload and how many rules each table holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub payload: String,
    pub filter_rules: usize,
    pub nat_rules: usize,
}

/// A chain's name from its kind and the hashed text: upstream's
/// `<prefix>` + the first 16 characters of base32(sha256(text)).
fn hashed(prefix: &str, text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let encoded = data_encoding::BASE32.encode(&digest);
    format!("{prefix}{}", &encoded[..16])
}

fn port_hash_input(name: &ServicePortName, protocol: &str) -> String {
    format!("{name}{protocol}")
}

pub fn service_chain(port: &ServicePort) -> String {
    hashed("KUBE-SVC-", &port_hash_input(&port.name, port.protocol.lower()))
}

pub fn local_chain(port: &ServicePort) -> String {
    hashed("KUBE-SVL-", &port_hash_input(&port.name, port.protocol.lower()))
}

pub fn external_chain(port: &ServicePort) -> String {
    hashed("KUBE-EXT-", &port_hash_input(&port.name, port.protocol.lower()))
}

pub fn firewall_chain(port: &ServicePort) -> String {
    hashed("KUBE-FW-", &port_hash_input(&port.name, port.protocol.lower()))
}

pub fn endpoint_chain(port: &ServicePort, endpoint: &Endpoint) -> String {
    hashed("KUBE-SEP-", &format!("{}{}", port_hash_input(&port.name, port.protocol.lower()), endpoint.address()))
}

/// A comment as iptables-restore reads it: quoted when it has spaces.
fn comment(text: &str) -> String {
    if text.contains(' ') {
        format!("-m comment --comment \"{text}\"")
    } else {
        format!("-m comment --comment {text}")
    }
}

/// The probability of the i-th of n remaining endpoints, as upstream
/// prints it, so that the choice is uniform.
fn probability(remaining: usize) -> String {
    format!("{:.10}", 1.0 / remaining as f64)
}

#[derive(Default)]
struct Table {
    chains: Vec<String>,
    rules: Vec<String>,
}

impl Table {
    fn chain(&mut self, name: &str) {
        self.chains.push(name.to_string());
    }

    fn rule(&mut self, chain: &str, args: &str) {
        self.rules.push(format!("-A {chain} {args}"));
    }
}

/// Renders every Service port; `existing_nat_chains` are the chains the
/// nat table holds now, so the owned ones no longer wanted are deleted.
pub fn render(ports: &[ServicePort], settings: &Settings, existing_nat_chains: &BTreeSet<String>) -> Rendered {
    let mut filter = Table::default();
    let mut nat = Table::default();
    for chain in [KUBE_NODEPORTS, KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FIREWALL, KUBE_FORWARD, KUBE_PROXY_FIREWALL] {
        filter.chain(chain);
    }
    for chain in [KUBE_NODEPORTS, KUBE_SERVICES, KUBE_MARK_MASQ, KUBE_POSTROUTING] {
        nat.chain(chain);
    }
    let mark = format!("{MASQUERADE_MARK}/{MASQUERADE_MARK}");
    nat.rule(KUBE_POSTROUTING, &format!("-m mark ! --mark {mark} -j RETURN"));
    // Cleared, so that a packet passing this node again is not masqueraded twice.
    nat.rule(KUBE_POSTROUTING, &format!("-j MARK --xor-mark {MASQUERADE_MARK}"));
    let masquerade = if settings.random_fully { "-j MASQUERADE --random-fully" } else { "-j MASQUERADE" };
    nat.rule(KUBE_POSTROUTING, &format!("{} {masquerade}", comment("kubernetes service traffic requiring SNAT")));
    nat.rule(KUBE_MARK_MASQ, &format!("-j MARK --or-mark {MASQUERADE_MARK}"));

    let mut active: BTreeSet<String> = BTreeSet::new();
    for port in ports {
        render_port(port, settings, &mut filter, &mut nat, &mut active);
    }

    nat.rule(
        KUBE_SERVICES,
        &format!(
            "{} -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}",
            comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
        ),
    );

    filter.rule(
        KUBE_FIREWALL,
        &format!(
            "{} -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
            comment("block incoming localnet connections")
        ),
    );
    filter.rule(KUBE_FORWARD, "-m conntrack --ctstate INVALID -j DROP");
    filter.rule(KUBE_FORWARD, &format!("{} -m mark --mark {mark} -j ACCEPT", comment("kubernetes forwarding rules")));
    filter.rule(KUBE_FORWARD, &format!("{} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", comment("kubernetes forwarding conntrack rule")));

    // Chains of Services that are gone: declared (which flushes them), then deleted.
    let stale: Vec<&String> = existing_nat_chains.iter().filter(|c| OWNED_PREFIXES.iter().any(|p| c.starts_with(p)) && !active.contains(c.as_str())).collect();
    for chain in &stale {
        nat.chain(chain);
    }

    let (filter_rules, nat_rules) = (filter.rules.len(), nat.rules.len());
    let mut payload = String::new();
    for (name, table, deleted) in [("filter", &filter, &[][..]), ("nat", &nat, &stale[..])] {
        let _ = writeln!(payload, "*{name}");
        for chain in &table.chains {
            let _ = writeln!(payload, ":{chain} - [0:0]");
        }
        for rule in &table.rules {
            let _ = writeln!(payload, "{rule}");
        }
        for chain in deleted {
            let _ = writeln!(payload, "-X {chain}");
        }
        payload.push_str("COMMIT\n");
    }
    Rendered { payload, filter_rules, nat_rules }
}

fn render_port(port: &ServicePort, settings: &Settings, filter: &mut Table, nat: &mut Table, active: &mut BTreeSet<String>) {
    let name = port.name.to_string();
    let proto = port.protocol.lower();
    let matches = format!("-m {proto} -p {proto}");
    let external = port.is_external();

    let CategorizedEndpoints { cluster: cluster_endpoints, local: local_endpoints, any_usable: has_endpoints } = port.categorized_endpoints();

    let svc_chain = service_chain(port);
    let svl_chain = local_chain(port);
    let ext_chain = external_chain(port);
    let fw_chain = firewall_chain(port);
    let cluster_policy = svc_chain.clone();
    let (internal_chain, has_internal) =
        if port.internal_local { (svl_chain.clone(), has_endpoints && !local_endpoints.is_empty()) } else { (cluster_policy.clone(), has_endpoints) };
    let (external_policy, has_external) =
        if port.external_local { (svl_chain.clone(), has_endpoints && !local_endpoints.is_empty()) } else { (cluster_policy.clone(), has_endpoints) };
    let uses_firewall = has_endpoints && !port.load_balancer_ips.is_empty() && !port.source_ranges.is_empty();
    let lb_chain = if uses_firewall { fw_chain.clone() } else { ext_chain.clone() };

    let (internal_filter, external_filter) = if !has_endpoints {
        let text = format!("{name} has no endpoints");
        (Some(("REJECT", text.clone())), Some(("REJECT", text)))
    } else {
        let text = format!("{name} has no local endpoints");
        ((!has_internal).then(|| ("DROP", text.clone())), (!has_external).then_some(("DROP", text)))
    };

    // The ClusterIP.
    let cluster_ip = format!("-d {} --dport {}", port.cluster_ip, port.port);
    if has_internal {
        nat.rule(KUBE_SERVICES, &format!("{} {matches} {cluster_ip} -j {internal_chain}", comment(&format!("{name} cluster IP"))));
    } else if let Some((target, text)) = &internal_filter {
        filter.rule(KUBE_SERVICES, &format!("{} {matches} {cluster_ip} -j {target}", comment(text)));
    }

    // externalIPs.
    for ip in &port.external_ips {
        let dest = format!("-d {ip} --dport {}", port.port);
        if has_endpoints {
            nat.rule(KUBE_SERVICES, &format!("{} {matches} {dest} -j {ext_chain}", comment(&format!("{name} external IP"))));
        }
        if let Some((target, text)) = &external_filter {
            filter.rule(KUBE_EXTERNAL_SERVICES, &format!("{} {matches} {dest} -j {target}", comment(text)));
        }
    }

    // Load balancer addresses.
    for ip in &port.load_balancer_ips {
        let dest = format!("-d {ip} --dport {}", port.port);
        if has_endpoints {
            nat.rule(KUBE_SERVICES, &format!("{} {matches} {dest} -j {lb_chain}", comment(&format!("{name} loadbalancer IP"))));
        }
        if uses_firewall {
            filter.rule(KUBE_PROXY_FIREWALL, &format!("{} {matches} {dest} -j DROP", comment(&format!("{name} traffic not accepted by {fw_chain}"))));
        }
    }
    if let Some((target, text)) = &external_filter {
        for ip in &port.load_balancer_ips {
            filter.rule(KUBE_EXTERNAL_SERVICES, &format!("{} {matches} -d {ip} --dport {} -j {target}", comment(text), port.port));
        }
    }

    // The NodePort, on every local address.
    if let Some(node_port) = port.node_port {
        if has_endpoints {
            nat.rule(KUBE_NODEPORTS, &format!("{} {matches} --dport {node_port} -j {ext_chain}", comment(&name)));
        }
        if let Some((target, text)) = &external_filter {
            filter.rule(KUBE_EXTERNAL_SERVICES, &format!("{} -m addrtype --dst-type LOCAL {matches} --dport {node_port} -j {target}", comment(text)));
        }
    }
    if let Some(health) = port.health_check_node_port {
        filter.rule(KUBE_NODEPORTS, &format!("{} -m tcp -p tcp --dport {health} -j ACCEPT", comment(&format!("{name} health check node port"))));
    }

    // Traffic to the ClusterIP from outside the pod network is masqueraded,
    // so that replies come back through this node.
    if has_internal {
        let args = format!("{} {matches} {cluster_ip}", comment(&format!("{name} cluster IP")));
        if settings.masquerade_all {
            nat.rule(&internal_chain, &format!("{args} -j {KUBE_MARK_MASQ}"));
        } else if let Some(cidr) = settings.cluster_cidr {
            nat.rule(&internal_chain, &format!("{args} ! -s {cidr} -j {KUBE_MARK_MASQ}"));
        }
    }

    // Traffic from outside the cluster.
    if has_endpoints && external {
        nat.chain(&ext_chain);
        active.insert(ext_chain.clone());
        if !port.external_local {
            nat.rule(&ext_chain, &format!("{} -j {KUBE_MARK_MASQ}", comment(&format!("masquerade traffic for {name} external destinations"))));
        } else {
            // Local policy keeps the client's address, except for pods and
            // the node itself, which take the cluster path.
            if let Some(cidr) = settings.cluster_cidr {
                nat.rule(&ext_chain, &format!("{} -s {cidr} -j {cluster_policy}", comment(&format!("pod traffic for {name} external destinations"))));
            }
            nat.rule(
                &ext_chain,
                &format!("{} -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}", comment(&format!("masquerade LOCAL traffic for {name} external destinations"))),
            );
            nat.rule(
                &ext_chain,
                &format!("{} -m addrtype --src-type LOCAL -j {cluster_policy}", comment(&format!("route LOCAL traffic for {name} external destinations"))),
            );
        }
        if has_external {
            nat.rule(&ext_chain, &format!("-j {external_policy}"));
        }
    }

    if uses_firewall {
        nat.chain(&fw_chain);
        active.insert(fw_chain.clone());
        let text = comment(&format!("{name} loadbalancer IP"));
        for range in &port.source_ranges {
            nat.rule(&fw_chain, &format!("{text} -s {range} -j {ext_chain}"));
        }
        // The load balancer's own address may reach it (hairpin through it).
        for ip in &port.load_balancer_ips {
            nat.rule(&fw_chain, &format!("{text} -s {ip} -j {ext_chain}"));
        }
        nat.rule(&fw_chain, &comment(&format!("other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL")));
    }

    if !cluster_endpoints.is_empty() {
        nat.chain(&svc_chain);
        active.insert(svc_chain.clone());
        service_to_endpoints(port, &svc_chain, &cluster_endpoints, nat);
    }
    if !local_endpoints.is_empty() {
        nat.chain(&svl_chain);
        active.insert(svl_chain.clone());
        service_to_endpoints(port, &svl_chain, &local_endpoints, nat);
    }
    // Declared after their first rule was queued (the ClusterIP's
    // masquerade): the payload prints a table's declarations before its rules.

    let mut reachable: Vec<&Endpoint> = cluster_endpoints.iter().chain(local_endpoints.iter()).copied().collect();
    reachable.sort();
    reachable.dedup();
    for endpoint in reachable {
        let chain = endpoint_chain(port, endpoint);
        nat.chain(&chain);
        active.insert(chain.clone());
        let text = comment(&name);
        // A pod reaching itself through its Service (hairpin) is
        // masqueraded, or its reply would bypass the DNAT.
        nat.rule(&chain, &format!("{text} -s {} -j {KUBE_MARK_MASQ}", endpoint.ip));
        let affinity = if port.affinity_seconds.is_some() { format!(" -m recent --name {chain} --set") } else { String::new() };
        nat.rule(&chain, &format!("{text}{affinity} {matches} -j DNAT --to-destination {}", endpoint.address()));
    }
}

/// The rules of a Service chain: affinity first, then a random choice
/// among the endpoints, each rule taking 1/remaining of what reaches it.
fn service_to_endpoints(port: &ServicePort, chain: &str, endpoints: &[&Endpoint], nat: &mut Table) {
    let name = port.name.to_string();
    if let Some(seconds) = port.affinity_seconds {
        for endpoint in endpoints {
            let target = endpoint_chain(port, endpoint);
            nat.rule(
                chain,
                &format!("{} -m recent --name {target} --rcheck --seconds {seconds} --reap -j {target}", comment(&format!("{name} -> {}", endpoint.address()))),
            );
        }
    }
    let n = endpoints.len();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let target = endpoint_chain(port, endpoint);
        let text = comment(&format!("{name} -> {}", endpoint.address()));
        if i + 1 < n {
            nat.rule(chain, &format!("{text} -m statistic --mode random --probability {} -j {target}", probability(n - i)));
        } else {
            nat.rule(chain, &format!("{text} -j {target}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{port, services};

    #[test]
    fn chain_names_are_upstreams_hashes() {
        // Values from upstream's proxier tests.
        let svc1 = port("ns1", "svc1", "p80", "172.30.0.41", &[("10.180.0.1", false)]);
        assert_eq!(service_chain(&svc1), "KUBE-SVC-XPGD46QRK7WJZT7O");
        assert_eq!(endpoint_chain(&svc1, &svc1.endpoints[0]), "KUBE-SEP-SXIVWICOYRO3J4NJ");
        let svc2 = port("ns2", "svc2", "p80", "172.30.0.42", &[]);
        assert_eq!(external_chain(&svc2), "KUBE-EXT-GNZBNJ2PO5MGZ6GT");
        let svc5 = port("ns5", "svc5", "p80", "172.30.0.45", &[]);
        assert_eq!(firewall_chain(&svc5), "KUBE-FW-NUKIZ6OKUXPJNT4C");
    }

    #[test]
    fn every_shape_of_service_renders_in_upstreams_layout() {
        let settings = Settings { cluster_cidr: Some("10.180.0.0/16".parse().unwrap()), masquerade_all: false, random_fully: true };
        let existing: BTreeSet<String> =
            ["KUBE-SERVICES", "KUBE-SVC-AAAAAAAAAAAAAAAA", "KUBE-SEP-BBBBBBBBBBBBBBBB", "DOCKER", "CNI-HOSTPORT-DNAT"].iter().map(|s| s.to_string()).collect();
        let rendered = render(&services(), &settings, &existing);
        crate::iptables::check_payload(&rendered.payload).unwrap();
        assert!(rendered.payload.contains("-X KUBE-SVC-AAAAAAAAAAAAAAAA\n") && rendered.payload.contains("-X KUBE-SEP-BBBBBBBBBBBBBBBB\n"), "stale chains go");
        assert!(!rendered.payload.contains("DOCKER") && !rendered.payload.contains("CNI-HOSTPORT"), "chains of others are left alone");
        insta::assert_snapshot!(rendered.payload);
    }

    #[test]
    fn the_endpoint_choice_is_uniform() {
        // Each rule takes 1/remaining of what reaches it: 1/3, 1/2, the rest.
        let rendered = render(&services()[..1], &Settings::default(), &BTreeSet::new());
        let probabilities: Vec<&str> =
            rendered.payload.lines().filter_map(|l| l.split("--probability ").nth(1)).map(|p| p.split(' ').next().unwrap()).collect();
        assert_eq!(probabilities, ["0.3333333333", "0.5000000000"]);
        assert!(
            !rendered.payload.contains("KUBE-MARK-MASQ\n-A KUBE-SVC") && !rendered.payload.lines().any(|l| l.starts_with("-A KUBE-SVC") && l.contains("! -s")),
            "no cluster CIDR, no masquerade rule for outside traffic"
        );
    }
}
