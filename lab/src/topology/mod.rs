//! Topology files: the user interface of a lab. A topology names the etcd
//! members, the control-plane replicas, the nodes and the networks; this module
//! reads one, checks it, and reports every problem with file, line and field.

mod source_map;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use source_map::{Position, SourceMap};

pub const API_VERSION: &str = "kubelab.dev/v1alpha1";
pub const KIND: &str = "Topology";

/// A parsed and validated topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Topology {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub etcd: Etcd,
    #[serde(default)]
    pub control_plane: ControlPlane,
    #[serde(default)]
    pub nodes: Vec<Node>,
    #[serde(default)]
    pub networking: Networking,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Etcd {
    /// How many etcd members form the cluster.
    #[serde(default = "one")]
    pub members: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlane {
    /// apiserver replicas (controller-manager and scheduler run beside each,
    /// electing a leader). More than one puts a load balancer in front.
    #[serde(default = "one")]
    pub replicas: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Node {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Taint>,
    #[serde(default)]
    pub capacity: Capacity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

/// What a node declares to the scheduler; kubelab does not measure it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Capacity {
    #[serde(default = "default_cpu")]
    pub cpu: Quantity,
    #[serde(default = "default_memory")]
    pub memory: Quantity,
    #[serde(default = "default_pods")]
    pub pods: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Networking {
    #[serde(default = "default_pod_subnet")]
    pub pod_subnet: Cidr,
    #[serde(default = "default_service_subnet")]
    pub service_subnet: Cidr,
    /// The lab's Docker network. Absent: `lab up` picks a free /24 of
    /// [`AUTO_LAB_SUBNETS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_subnet: Option<Cidr>,
    /// Addresses for LoadBalancer Services, on the lab network (so the
    /// machine running the lab reaches them): a range `first-last` or a
    /// CIDR in the lab subnet's upper half. Absent: the top of the lab
    /// subnet ([`default_load_balancer_pool`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_pool: Option<AddressRange>,
    #[serde(default)]
    pub proxy_mode: ProxyMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// kube-proxy writes iptables rules (`iptables-restore`, the nf_tables backend).
    #[default]
    Iptables,
    /// kube-proxy writes one nftables table, `ip kube-proxy` (`nft -f`), as
    /// upstream's nftables mode (KEP-3866).
    Nftables,
}

impl ProxyMode {
    /// As kube-proxy's `--proxy-mode` spells it.
    pub fn flag(self) -> &'static str {
        match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
        }
    }
}

fn one() -> u8 {
    1
}
fn default_cpu() -> Quantity {
    Quantity("2".into())
}
fn default_memory() -> Quantity {
    Quantity("4Gi".into())
}
fn default_pods() -> u32 {
    110
}
fn default_pod_subnet() -> Cidr {
    Cidr("10.244.0.0/16".into())
}
fn default_service_subnet() -> Cidr {
    Cidr("10.96.0.0/16".into())
}

impl Default for Etcd {
    fn default() -> Self {
        Etcd { members: 1 }
    }
}
impl Default for ControlPlane {
    fn default() -> Self {
        ControlPlane { replicas: 1 }
    }
}
impl Default for Capacity {
    fn default() -> Self {
        Capacity { cpu: default_cpu(), memory: default_memory(), pods: default_pods() }
    }
}
impl Default for Networking {
    fn default() -> Self {
        Networking {
            pod_subnet: default_pod_subnet(),
            service_subnet: default_service_subnet(),
            lab_subnet: None,
            load_balancer_pool: None,
            proxy_mode: ProxyMode::default(),
        }
    }
}

/// An IPv4 network in CIDR notation whose host bits are zero. Kept as
/// written and checked after parsing, so that an error names the exact field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cidr(String);

impl Cidr {
    pub fn check(&self) -> Result<Ipv4Net, String> {
        let s = &self.0;
        let net: Ipv4Net = s.parse().map_err(|_| format!("invalid CIDR {s:?}: expected an IPv4 address and prefix length, such as 10.244.0.0/16"))?;
        if net.addr() != net.network() {
            return Err(format!("invalid CIDR {s:?}: host bits are set; the network is {}", net.trunc()));
        }
        Ok(net)
    }

    /// The network of a validated topology.
    pub fn net(&self) -> Ipv4Net {
        self.check().expect("topologies are validated when loaded")
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A range of IPv4 addresses, written `first-last` or as a CIDR (every
/// address in it). Kept as written and checked after parsing, as [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AddressRange(String);

impl AddressRange {
    pub fn check(&self) -> Result<(Ipv4Addr, Ipv4Addr), String> {
        let s = self.0.trim();
        let why = || format!("invalid address range {s:?}: expected first-last or a CIDR, such as 172.30.0.240-172.30.0.254");
        let (first, last) = match s.split_once('-') {
            Some((first, last)) => (first.trim().parse().map_err(|_| why())?, last.trim().parse().map_err(|_| why())?),
            None => {
                let net: Ipv4Net = s.parse().map_err(|_| why())?;
                (net.network(), net.broadcast())
            }
        };
        if first > last {
            return Err(format!("invalid address range {s:?}: the first address is after the last"));
        }
        Ok((first, last))
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where `lab up` picks a lab subnet when the topology names none: one
/// free /24 of this. Docker's own default pools (172.17-31.0.0/16 and
/// 192.168.0.0/16, /16 or /20 at a time) skip a range once a network uses
/// part of it, so the two do not collide.
pub const AUTO_LAB_SUBNETS: &str = "172.30.0.0/16";

/// A lab subnet for a topology that names none: the first /24 of
/// [`AUTO_LAB_SUBNETS`] that overlaps no existing Docker network (`used`)
/// and neither the pod nor the service subnet.
pub fn free_lab_subnet(used: &[Ipv4Net], networking: &Networking) -> Option<Ipv4Net> {
    let auto: Ipv4Net = AUTO_LAB_SUBNETS.parse().expect("a valid CIDR");
    let taken: Vec<Ipv4Net> = used.iter().copied().chain([networking.pod_subnet.net(), networking.service_subnet.net()]).collect();
    auto.subnets(24).expect("/24 is inside a /16").find(|candidate| !taken.iter().any(|t| overlaps(*t, *candidate)))
}

/// Where Docker gives containers their addresses in a lab subnet (the
/// network's `--ip-range`): the lower half, so that the upper half is the
/// lab's own, for load balancer addresses.
pub fn docker_range(lab_subnet: Ipv4Net) -> Ipv4Net {
    let half = lab_subnet.prefix_len().saturating_add(1).min(32);
    lab_subnet.subnets(half).ok().and_then(|mut s| s.next()).unwrap_or(lab_subnet)
}

/// The default load balancer pool of a lab subnet: its last 16 addresses
/// (fewer if the upper half is smaller) without the broadcast address.
pub fn default_load_balancer_pool(lab_subnet: Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let broadcast = u32::from(lab_subnet.broadcast());
    let upper_half = u32::from(docker_range(lab_subnet).broadcast()).saturating_add(1);
    let first = broadcast.saturating_sub(15).max(upper_half);
    (first.into(), broadcast.saturating_sub(1).max(first).into())
}

impl Networking {
    /// The load balancer pool on a lab subnet, as the controller-manager's
    /// `--load-balancer-pool` takes it.
    pub fn load_balancer_pool_on(&self, lab_subnet: Ipv4Net) -> String {
        let (first, last) = match &self.load_balancer_pool {
            Some(range) => range.check().expect("topologies are validated when loaded"),
            None => default_load_balancer_pool(lab_subnet),
        };
        format!("{first}-{last}")
    }
}

/// A Kubernetes resource quantity such as `2`, `500m` or `4Gi`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "QuantityInput", into = "String")]
pub struct Quantity(pub String);

/// Quantities are written as numbers or strings (`cpu: 2`, `memory: 4Gi`).
#[derive(Deserialize)]
#[serde(untagged)]
enum QuantityInput {
    Number(u64),
    Text(String),
}

impl From<QuantityInput> for Quantity {
    fn from(input: QuantityInput) -> Self {
        Quantity(match input {
            QuantityInput::Number(n) => n.to_string(),
            QuantityInput::Text(s) => s,
        })
    }
}

impl Quantity {
    /// Checked after parsing, so that the error can name the exact field.
    pub fn check(&self) -> Result<(), String> {
        let s = &self.0;
        const SUFFIXES: [&str; 14] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P"];
        let number = SUFFIXES.iter().find_map(|suffix| s.strip_suffix(suffix)).unwrap_or(s);
        let valid = !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || c == '.') && number.matches('.').count() <= 1 && number != ".";
        if valid {
            Ok(())
        } else {
            Err(format!("invalid quantity {s:?}: expected a number with an optional suffix, such as 2, 500m or 4Gi"))
        }
    }
}
impl From<Quantity> for String {
    fn from(q: Quantity) -> String {
        q.0
    }
}

/// One problem in a topology file, where it stands and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub position: Position,
    /// The field the problem is about, empty for the document itself.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.position.line, self.position.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a topology could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("unknown topology {name:?}; known topologies in {}: {}", dir.display(), known.join(", "))]
    Unknown { name: String, dir: PathBuf, known: Vec<String> },
    #[error("cannot read topology {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid { diagnostics: Vec<Diagnostic> },
}

/// A topology together with the file it came from.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    pub topology: Topology,
}

/// Finds a topology: an existing path is read as it is; otherwise `name`
/// is looked up as `<dir>/<name>.yaml`.
pub fn resolve(name_or_path: &str, dir: &Path) -> Result<PathBuf, TopologyError> {
    let as_path = Path::new(name_or_path);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    let candidate = dir.join(format!("{name_or_path}.yaml"));
    if !name_or_path.contains('/') && candidate.is_file() {
        return Ok(candidate);
    }
    Err(TopologyError::Unknown { name: name_or_path.to_string(), dir: dir.to_path_buf(), known: known(dir) })
}

/// Names of the topology files in `dir`, sorted.
pub fn known(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".yaml").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// Reads and validates a topology file.
pub fn load(path: &Path) -> Result<Source, TopologyError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read { path: path.to_path_buf(), source })?;
    let topology = parse(&text, path)?;
    Ok(Source { path: path.to_path_buf(), text, topology })
}

/// Parses and validates topology text; `file` names it in diagnostics.
pub fn parse(text: &str, file: &Path) -> Result<Topology, TopologyError> {
    let topology: Topology = serde_yaml::from_str(text).map_err(|e| TopologyError::Invalid { diagnostics: vec![syntax_diagnostic(&e, file)] })?;
    let map = SourceMap::of(text);
    let diagnostics: Vec<Diagnostic> = validate(&topology)
        .into_iter()
        .map(|(field, message)| Diagnostic { file: file.to_path_buf(), position: map.position(&field), field, message })
        .collect();
    if diagnostics.is_empty() {
        Ok(topology)
    } else {
        Err(TopologyError::Invalid { diagnostics })
    }
}

fn syntax_diagnostic(e: &serde_yaml::Error, file: &Path) -> Diagnostic {
    let position = e.location().map(|l| Position { line: l.line(), column: l.column() }).unwrap_or(Position { line: 1, column: 1 });
    // serde_yaml writes " at line L column C" into its messages; the
    // diagnostic leads with the position instead.
    let message = strip_positions(&e.to_string());
    // It also leads with the field path ("nodes[1]: unknown field ..."): split it off.
    let (field, message) = match message.split_once(": ") {
        Some((field, rest)) if !field.contains(' ') => (field.to_string(), rest.to_string()),
        _ => (String::new(), message),
    };
    Diagnostic { file: file.to_path_buf(), position, field, message }
}

fn strip_positions(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find(" at line ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + " at line ".len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let line_end = digits(after);
        match after[line_end..].strip_prefix(" column ") {
            Some(col) if line_end > 0 => rest = &col[digits(col)..],
            _ => {
                out.push_str(" at line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Checks that need the whole document; returns (field path, message) pairs.
fn validate(t: &Topology) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if t.api_version != API_VERSION {
        problems.push(("apiVersion".into(), format!("unsupported apiVersion {:?}: expected {API_VERSION:?}", t.api_version)));
    }
    if t.kind != KIND {
        problems.push(("kind".into(), format!("unsupported kind {:?}: expected {KIND:?}", t.kind)));
    }
    if !(1..=7).contains(&t.etcd.members) {
        problems.push(("etcd.members".into(), format!("{} etcd members: expected 1 to 7", t.etcd.members)));
    }
    if !(1..=5).contains(&t.control_plane.replicas) {
        problems.push(("controlPlane.replicas".into(), format!("{} replicas: expected 1 to 5", t.control_plane.replicas)));
    }

    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    for (i, node) in t.nodes.iter().enumerate() {
        let at = format!("nodes[{i}]");
        if let Err(why) = check_dns_label(&node.name) {
            problems.push((format!("{at}.name"), format!("invalid node name {:?}: {why}", node.name)));
        }
        if let Some(first) = first_seen.insert(&node.name, i) {
            first_seen.insert(&node.name, first);
            problems.push((format!("{at}.name"), format!("duplicate node name {:?}: nodes[{first}] has it already", node.name)));
        }
        for key in node.labels.keys() {
            if let Err(why) = check_label_key(key) {
                problems.push((format!("{at}.labels.{key}"), format!("invalid label key {key:?}: {why}")));
            }
        }
        for (j, taint) in node.taints.iter().enumerate() {
            if let Err(why) = check_label_key(&taint.key) {
                problems.push((format!("{at}.taints[{j}].key"), format!("invalid taint key {:?}: {why}", taint.key)));
            }
        }
        for (field, q) in [("cpu", &node.capacity.cpu), ("memory", &node.capacity.memory)] {
            if let Err(why) = q.check() {
                problems.push((format!("{at}.capacity.{field}"), why));
            }
        }
        if node.capacity.pods == 0 {
            problems.push((format!("{at}.capacity.pods"), "a node must hold at least one pod".into()));
        }
    }

    let net = &t.networking;
    let mut subnets = Vec::new();
    let fields = [
        ("networking.podSubnet", Some(&net.pod_subnet)),
        ("networking.serviceSubnet", Some(&net.service_subnet)),
        ("networking.labSubnet", net.lab_subnet.as_ref()),
    ];
    for (field, cidr) in fields {
        match cidr.map(Cidr::check) {
            Some(Ok(parsed)) => subnets.push((field, parsed)),
            Some(Err(why)) => problems.push((field.to_string(), why)),
            None => {}
        }
    }
    for (field, subnet) in &subnets {
        let too_small = match *field {
            // Each node gets one /24 of the pod subnet.
            "networking.podSubnet" if subnet.prefix_len() > 24 => Some(format!("pod subnet {subnet} is smaller than one /24 per node")),
            "networking.podSubnet" if (1usize << (24 - subnet.prefix_len())) < t.nodes.len() => {
                Some(format!("pod subnet {subnet} has fewer /24s than the {} nodes need", t.nodes.len()))
            }
            "networking.serviceSubnet" if subnet.prefix_len() > 28 => Some(format!("service subnet {subnet} is too small: expected /28 or larger")),
            // Docker allocates from the lower half: its network address
            // and the gateway's besides the containers'.
            "networking.labSubnet" if docker_range(*subnet).hosts().count() < container_count(t) + 1 => Some(format!(
                "lab subnet {subnet} has too few addresses for the lab's {} containers in its lower half {} (the upper half is for load balancer addresses)",
                container_count(t),
                docker_range(*subnet)
            )),
            _ => None,
        };
        if let Some(why) = too_small {
            problems.push((field.to_string(), why));
        }
    }
    for (i, (field_a, a)) in subnets.iter().enumerate() {
        for (field_b, b) in &subnets[i + 1..] {
            if overlaps(*a, *b) {
                problems.push((field_b.to_string(), format!("{b} overlaps {field_a} ({a})")));
            }
        }
    }
    if let Some(pool) = &net.load_balancer_pool {
        let lab_subnet = subnets.iter().find(|(field, _)| *field == "networking.labSubnet").map(|(_, s)| *s);
        if let Some(why) = check_pool(pool, lab_subnet, net.lab_subnet.is_some()) {
            problems.push(("networking.loadBalancerPool".into(), why));
        }
    }
    problems
}

/// What is wrong with a load balancer pool on the lab subnet, if anything.
fn check_pool(pool: &AddressRange, lab_subnet: Option<Ipv4Net>, named: bool) -> Option<String> {
    let (first, last) = match pool.check() {
        Ok(bounds) => bounds,
        Err(why) => return Some(why),
    };
    let Some(subnet) = lab_subnet else {
        // A bad labSubnet has its own message already.
        return (!named).then(|| "a load balancer pool needs networking.labSubnet to lie in (without one, lab picks the subnet itself)".into());
    };
    let docker = docker_range(subnet);
    if !subnet.contains(&first) || !subnet.contains(&last) {
        Some(format!("{pool} is not inside networking.labSubnet ({subnet})"))
    } else if last == subnet.broadcast() {
        Some(format!("{pool} holds the lab subnet's broadcast address {last}"))
    } else if first <= docker.broadcast() {
        Some(format!("{pool} overlaps {docker}, where Docker gives containers their addresses (the lower half of networking.labSubnet)"))
    } else {
        None
    }
}

/// Containers a lab of this topology runs: etcd members, per control-plane
/// replica an apiserver, controller-manager and scheduler, a load balancer
/// when there is more than one replica, and per node the node and its proxy.
pub fn container_count(t: &Topology) -> usize {
    let replicas = t.control_plane.replicas as usize;
    t.etcd.members as usize + 3 * replicas + usize::from(replicas > 1) + 2 * t.nodes.len()
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// RFC 1123 label: what Kubernetes requires of node names (kubelab names
/// node containers and hostnames after them, so labels rather than subdomains).
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    let ok_chars = s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let ok_ends = !s.starts_with('-') && !s.ends_with('-');
    if ok_chars && ok_ends {
        Ok(())
    } else {
        Err("must consist of lower-case letters, digits and '-', and start and end with a letter or digit".into())
    }
}

/// A label or taint key: an optional DNS-subdomain prefix and a name.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty() && p.len() <= 253 && p.split('.').all(|l| check_dns_label(l).is_ok());
        if !ok {
            return Err("the prefix must be a DNS subdomain such as example.com".into());
        }
    }
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err("the name must be 1 to 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn docker_keeps_to_the_lower_half_and_the_pool_takes_the_top() {
        assert_eq!(docker_range(net("172.30.5.0/24")), net("172.30.5.0/25"));
        assert_eq!(default_load_balancer_pool(net("172.30.5.0/24")), ("172.30.5.240".parse().unwrap(), "172.30.5.254".parse().unwrap()));
        assert_eq!(default_load_balancer_pool(net("10.1.0.0/16")), ("10.1.255.240".parse().unwrap(), "10.1.255.254".parse().unwrap()));
        // A small subnet: only its upper half.
        assert_eq!(default_load_balancer_pool(net("192.168.9.0/28")), ("192.168.9.8".parse().unwrap(), "192.168.9.14".parse().unwrap()));
        let networking = Networking::default();
        assert_eq!(networking.load_balancer_pool_on(net("172.30.0.0/24")), "172.30.0.240-172.30.0.254");
        let chosen = Networking { load_balancer_pool: Some(AddressRange("172.30.0.192/28".into())), ..Networking::default() };
        assert_eq!(chosen.load_balancer_pool_on(net("172.30.0.0/24")), "172.30.0.192-172.30.0.207");
    }

    #[test]
    fn a_free_lab_subnet_avoids_every_docker_network_and_the_clusters_subnets() {
        let networking = Networking::default();
        assert_eq!(free_lab_subnet(&[], &networking), Some(net("172.30.0.0/24")));
        let used = [net("172.30.0.0/24"), net("172.30.1.0/25"), net("172.17.0.0/16")];
        assert_eq!(free_lab_subnet(&used, &networking), Some(net("172.30.2.0/24")));
        // A network wider than a /24 covers all the /24s in it.
        assert_eq!(free_lab_subnet(&[net("172.30.0.0/23")], &networking), Some(net("172.30.2.0/24")));
        let pods_there = Networking { pod_subnet: Cidr("172.30.0.0/20".into()), ..Networking::default() };
        assert_eq!(free_lab_subnet(&[], &pods_there), Some(net("172.30.16.0/24")));
        assert_eq!(free_lab_subnet(&[net("172.30.0.0/16")], &networking), None);
    }

    #[test]
    fn a_pool_must_lie_in_the_upper_half_of_the_lab_subnet() {
        let subnet = Some(net("172.30.0.0/24"));
        let check = |pool: &str| check_pool(&AddressRange(pool.into()), subnet, true);
        assert_eq!(check("172.30.0.200-172.30.0.220"), None);
        assert_eq!(check("172.30.0.128/26"), None);
        assert_eq!(
            check("172.30.0.100-172.30.0.140").unwrap(),
            "172.30.0.100-172.30.0.140 overlaps 172.30.0.0/25, where Docker gives containers their addresses (the lower half of networking.labSubnet)"
        );
        assert_eq!(check("172.30.0.240/28").unwrap(), "172.30.0.240/28 holds the lab subnet's broadcast address 172.30.0.255");
        assert_eq!(check("172.30.1.1-172.30.1.9").unwrap(), "172.30.1.1-172.30.1.9 is not inside networking.labSubnet (172.30.0.0/24)");
        assert!(check("172.30.0.9-172.30.0.1").unwrap().contains("the first address is after the last"));
        assert!(check("nonsense").unwrap().starts_with("invalid address range \"nonsense\""));
        let without = check_pool(&AddressRange("172.30.0.200-172.30.0.220".into()), None, false).unwrap();
        assert!(without.starts_with("a load balancer pool needs networking.labSubnet"), "{without}");
    }
}
