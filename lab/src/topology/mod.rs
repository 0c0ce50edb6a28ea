//! Topology files: the user interface of a lab. A topology names the etcd
//! members, the control-plane replicas, the nodes and the networks; this module
//! reads one, checks it, and reports every problem with file, line and field.

mod source_map;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
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
    /// The lab's Docker network. Absent: Docker picks a free subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_subnet: Option<Cidr>,
    #[serde(default)]
    pub proxy_mode: ProxyMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    #[default]
    Iptables,
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
        Networking { pod_subnet: default_pod_subnet(), service_subnet: default_service_subnet(), lab_subnet: None, proxy_mode: ProxyMode::default() }
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
            // Network, gateway and broadcast addresses besides the containers.
            "networking.labSubnet" if subnet.hosts().count() < container_count(t) + 1 => {
                Some(format!("lab subnet {subnet} has too few addresses for the lab's {} containers", container_count(t)))
            }
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
    problems
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
