//! What the scheduler keeps of Nodes and Pods: only the fields its filters
//! and scores read, parsed once when the object arrives (quantities to
//! integers, conditions to taints), so that a decision reads no JSON and a
//! cluster of thousands of nodes stays small in memory.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, NodeSelector, Pod, PodAffinityTerm, PreferredSchedulingTerm, Taint, Toleration};

use crate::labels::Labels;
use component_base::quantity;

/// The scheduler's name that pods without `spec.schedulerName` get.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// The label every node carries with its host name (upstream's `LabelHostname`).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The zone label (upstream's `LabelTopologyZone`).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The taints upstream's node lifecycle controller puts on nodes by their
/// conditions and `spec.unschedulable`; the scheduler reads conditions
/// through them, so pods tolerating them (DaemonSet pods) still fit.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Upstream's requests assumed for containers that request no cpu or
/// memory, when spreading by load (`DefaultMilliCPURequest`,
/// `DefaultMemoryRequest`): 0.1 core and 200 MiB.
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl Resources {
    fn add(&mut self, other: Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
    }

    fn max(self, other: Resources) -> Resources {
        Resources { milli_cpu: self.milli_cpu.max(other.milli_cpu), memory: self.memory.max(other.memory) }
    }

    pub fn plus(self, other: Resources) -> Resources {
        Resources { milli_cpu: self.milli_cpu + other.milli_cpu, memory: self.memory + other.memory }
    }

    pub fn minus(self, other: Resources) -> Resources {
        Resources { milli_cpu: self.milli_cpu - other.milli_cpu, memory: self.memory - other.memory }
    }
}

/// A host port a pod takes on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Two host ports conflict on one node when protocol and port are the
    /// same and the addresses overlap (0.0.0.0 overlaps every address).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port && self.protocol == other.protocol && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// What the scheduler knows of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    pub node_name: Option<String>,
    pub scheduler_name: String,
    pub deleting: bool,
    /// `spec.schedulingGates` is not empty: the pod is not to be scheduled yet.
    pub gated: bool,
    pub priority: i32,
    pub preempt_never: bool,
    /// The effective requests: what it asks of allocatable.
    pub requests: Resources,
    /// The requests with upstream's defaults for containers asking none:
    /// what spreading by load counts.
    pub non_zero_requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub node_selector: Labels,
    pub required_node_affinity: Option<NodeSelector>,
    pub preferred_node_affinity: Vec<PreferredSchedulingTerm>,
    pub tolerations: Vec<Toleration>,
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    /// The uid of the controller that owns it (a ReplicaSet, a StatefulSet):
    /// pods of one owner are spread across nodes.
    pub owner: Option<String>,
    /// The PersistentVolumeClaims its volumes name, in its namespace.
    pub claims: Vec<String>,
}

impl PodInfo {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Requests of one container: cpu in millicores, memory in bytes; with
/// `non_zero`, upstream's defaults for what it leaves unset.
fn container_requests(container: &Container, non_zero: bool) -> Resources {
    let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
    let get = |name: &str| requests.and_then(|r| r.get(name));
    let milli_cpu = get("cpu").and_then(|q| quantity::milli_value(&q.0));
    let memory = get("memory").and_then(|q| quantity::value(&q.0));
    if non_zero {
        Resources { milli_cpu: milli_cpu.unwrap_or(DEFAULT_MILLI_CPU), memory: memory.unwrap_or(DEFAULT_MEMORY) }
    } else {
        Resources { milli_cpu: milli_cpu.unwrap_or(0), memory: memory.unwrap_or(0) }
    }
}

/// A pod's requests as upstream's `resource.PodRequests` counts them: the
/// containers' sum (with restartable init containers, the sidecars, which
/// run beside them) or, when larger, the most any one init container
/// needs while it runs (with the sidecars started before it); plus the
/// pod's overhead.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = &pod.spec else { return Resources::default() };
    let mut containers = Resources::default();
    for c in &spec.containers {
        containers.add(container_requests(c, non_zero));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let requests = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(requests);
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(sidecars.plus(requests));
        }
    }
    let mut total = containers.plus(sidecars).max(init_peak);
    if let Some(overhead) = &spec.overhead {
        total.milli_cpu += overhead.get("cpu").and_then(|q| quantity::milli_value(&q.0)).unwrap_or(0);
        total.memory += overhead.get("memory").and_then(|q| quantity::value(&q.0)).unwrap_or(0);
    }
    total
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> PodInfo {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| HostPort {
                ip: p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p.protocol.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "TCP".into()),
                port: p.host_port.unwrap_or(0),
            })
            .collect();
        let affinity = spec.affinity.unwrap_or_default();
        let node_affinity = affinity.node_affinity.unwrap_or_default();
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            scheduler_name: spec.scheduler_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| DEFAULT_SCHEDULER.into()),
            deleting: meta.deletion_timestamp.is_some(),
            gated: spec.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty()),
            priority: spec.priority.unwrap_or(0),
            preempt_never: spec.preemption_policy.as_deref() == Some("Never"),
            requests: pod_requests(pod, false),
            non_zero_requests: pod_requests(pod, true),
            host_ports,
            node_selector: spec.node_selector.unwrap_or_default(),
            required_node_affinity: node_affinity.required_during_scheduling_ignored_during_execution,
            preferred_node_affinity: node_affinity.preferred_during_scheduling_ignored_during_execution.unwrap_or_default(),
            tolerations: spec.tolerations.unwrap_or_default(),
            required_anti_affinity: affinity.pod_anti_affinity.and_then(|a| a.required_during_scheduling_ignored_during_execution).unwrap_or_default(),
            owner: meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.uid.clone()),
            claims: crate::volumes::claims_of(pod),
        }
    }

    /// Whether this scheduler is to place it: not bound, not being
    /// deleted, not gated, and naming this scheduler.
    pub fn wants_scheduling(&self, scheduler_name: &str) -> bool {
        self.node_name.is_none() && !self.deleting && !self.gated && self.scheduler_name == scheduler_name
    }

    /// Whether a pod on `node` with `node_labels` matches this pod's
    /// anti-affinity `term` (the namespaces it names, or the pod's own).
    pub fn term_selects(term: &PodAffinityTerm, term_owner_namespace: &str, other: &PodInfo) -> bool {
        let in_namespace = match (&term.namespaces, &term.namespace_selector) {
            (Some(names), _) if !names.is_empty() => names.contains(&other.namespace),
            // An empty namespaceSelector selects every namespace; others
            // would need the Namespaces' labels, which this scheduler does
            // not watch: only the pod's own namespace is taken.
            (_, Some(selector))
                if selector.match_labels.as_ref().is_none_or(|l| l.is_empty()) && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty()) =>
            {
                true
            }
            _ => other.namespace == term_owner_namespace,
        };
        in_namespace && term.label_selector.as_ref().is_some_and(|s| crate::labels::selector_matches(s, &other.labels))
    }
}

/// What the scheduler knows of a node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Labels,
    /// `spec.taints`, and the taints its conditions imply when the node
    /// lifecycle controller has not put them there yet.
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> NodeInfo {
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        let allocatable = status.allocatable.as_ref().or(status.capacity.as_ref());
        let get = |name: &str| allocatable.and_then(|a| a.get(name));
        let mut taints = spec.taints.unwrap_or_default();
        let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready").map(|c| c.status.as_str());
        let implied = match ready {
            Some("True") => None,
            Some("False") => Some(TAINT_NOT_READY),
            // Unknown, or no report from a kubelet yet.
            _ => Some(TAINT_UNREACHABLE),
        };
        if let Some(key) = implied {
            if !taints.iter().any(|t| t.key == key) {
                taints.push(Taint { key: key.into(), effect: "NoSchedule".into(), ..Default::default() });
            }
        }
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints,
            unschedulable: spec.unschedulable.unwrap_or(false),
            allocatable: Resources {
                milli_cpu: get("cpu").and_then(|q| quantity::milli_value(&q.0)).unwrap_or(0),
                memory: get("memory").and_then(|q| quantity::value(&q.0)).unwrap_or(0),
            },
            allowed_pods: get("pods").and_then(|q| quantity::value(&q.0)).unwrap_or(0),
        }
    }

    /// Whether what scheduling reads of the node differs: a change that
    /// may let a waiting pod fit.
    pub fn differs_for_scheduling(&self, other: &NodeInfo) -> bool {
        self.labels != other.labels
            || self.taints != other.taints
            || self.unschedulable != other.unschedulable
            || self.allocatable != other.allocatable
            || self.allowed_pods != other.allowed_pods
    }
}

/// Whether `toleration` tolerates `taint` (shared with the taint eviction
/// controller).
pub use component_base::taints::tolerates;

/// Shared, so that a node's pod list and the pod map hold one copy.
pub type SharedPod = Arc<PodInfo>;

/// Nodes and pods for unit tests.
#[cfg(test)]
pub mod tests_support {
    use k8s_openapi::api::core::v1::{Node, Pod};

    /// A Ready node with `cpu` cores, 8 GiB, 110 pods and `labels` (and
    /// its hostname label).
    pub fn node(name: &str, cpu: &str, labels: &[(&str, &str)]) -> Node {
        let mut all: serde_json::Map<String, serde_json::Value> = labels.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
        all.insert(super::HOSTNAME_LABEL.into(), serde_json::json!(name));
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": all},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    /// A pending pod in `default` asking `cpu`.
    pub fn pod(name: &str, cpu: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu}}}]}
        }))
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn container(cpu: Option<&str>, memory: Option<&str>, restart: Option<&str>) -> Container {
        let mut requests = std::collections::BTreeMap::new();
        if let Some(cpu) = cpu {
            requests.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if let Some(memory) = memory {
            requests.insert("memory".to_string(), Quantity(memory.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements { requests: Some(requests), ..Default::default() }),
            restart_policy: restart.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn requests_count_init_containers_as_upstream() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container(Some("100m"), Some("1Mi"), None), container(Some("200m"), None, None)],
                init_containers: Some(vec![
                    container(Some("50m"), None, Some("Always")),
                    container(Some("500m"), Some("4Mi"), None),
                    container(Some("100m"), None, None),
                ]),
                overhead: Some([("cpu".to_string(), Quantity("10m".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        // containers 300m + sidecar 50m = 350m; the second init container
        // runs beside the sidecar: 550m, the larger; plus 10m overhead.
        assert_eq!(pod_requests(&pod, false), Resources { milli_cpu: 560, memory: 4 * 1024 * 1024 });
        // The second container asks no memory: 200 MiB is assumed for it.
        assert_eq!(pod_requests(&pod, true).memory, 1024 * 1024 + DEFAULT_MEMORY + DEFAULT_MEMORY);
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let taint = Taint { key: "dedicated".into(), value: Some("gpu".into()), effect: "NoSchedule".into(), ..Default::default() };
        let toleration = |key: Option<&str>, op: Option<&str>, value: Option<&str>, effect: Option<&str>| Toleration {
            key: key.map(Into::into),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            ..Default::default()
        };
        assert!(tolerates(&toleration(Some("dedicated"), None, Some("gpu"), None), &taint));
        assert!(!tolerates(&toleration(Some("dedicated"), None, Some("cpu"), None), &taint));
        assert!(tolerates(&toleration(Some("dedicated"), Some("Exists"), None, Some("NoSchedule")), &taint));
        assert!(!tolerates(&toleration(Some("dedicated"), Some("Exists"), None, Some("NoExecute")), &taint));
        assert!(tolerates(&toleration(None, Some("Exists"), None, None), &taint));
        assert!(!tolerates(&toleration(None, Some("Equal"), None, None), &taint));
    }

    #[test]
    fn conditions_imply_taints() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}, "conditions": [{"type": "Ready", "status": "False"}]}
        }))
        .unwrap();
        let info = NodeInfo::from_node(&node);
        assert_eq!(info.allocatable, Resources { milli_cpu: 2000, memory: 4 << 30 });
        assert_eq!(info.allowed_pods, 110);
        assert_eq!(info.taints.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), [TAINT_NOT_READY]);
    }
}
