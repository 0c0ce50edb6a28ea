//! Filters: whether a pod may go on a node, and if not, why, in upstream's
//! words. They run in upstream's plugin order (NodeUnschedulable,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//! VolumeBinding, InterPodAffinity) and the first that fails gives the node's reasons, as
//! upstream's framework stops at the first failing filter.

use std::borrow::Cow;
use std::collections::HashSet;

use k8s_openapi::api::core::v1::Taint;

use crate::cache::{Cache, NodeState};
use crate::labels::{self, NodeFields};
use crate::model::{tolerates, NodeInfo, PodInfo, TAINT_UNSCHEDULABLE};
use crate::volumes::{self, Needs};

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";
pub const REASON_CPU: &str = "Insufficient cpu";
pub const REASON_MEMORY: &str = "Insufficient memory";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// Why a node does not fit: upstream's reasons, and whether preemption
/// could not help (upstream's UnschedulableAndUnresolvable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reasons: Vec<Cow<'static, str>>,
    pub unresolvable: bool,
}

impl Failure {
    fn resolvable(reason: &'static str) -> Failure {
        Failure { reasons: vec![Cow::Borrowed(reason)], unresolvable: false }
    }

    fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Failure {
        Failure { reasons: vec![reason.into()], unresolvable: true }
    }
}

/// What the filters of one pod share across nodes, computed once per
/// attempt (upstream's PreFilter): the topology domains its anti-affinity
/// rules out, and those other pods' anti-affinity rules out for it.
#[derive(Debug)]
pub struct PreFilter {
    /// (topology key, value) pairs holding a pod this pod must avoid.
    own_anti_affinity: HashSet<(String, String)>,
    /// (topology key, value) pairs holding a pod that must avoid this pod.
    existing_anti_affinity: HashSet<(String, String)>,
    /// What its claims ask of a node, or why none can take it.
    volumes: Result<Needs, Cow<'static, str>>,
}

impl Default for PreFilter {
    fn default() -> Self {
        PreFilter { own_anti_affinity: HashSet::new(), existing_anti_affinity: HashSet::new(), volumes: Ok(Needs::default()) }
    }
}

impl PreFilter {
    pub fn new(pod: &PodInfo, cache: &Cache) -> PreFilter {
        let mut pre = PreFilter::default();
        if !pod.claims.is_empty() {
            pre.volumes = cache.volumes.needs(&pod.namespace, &pod.claims);
        }
        for state in cache.nodes() {
            let Some(node) = &state.info else { continue };
            if state.with_anti_affinity == 0 && pod.required_anti_affinity.is_empty() {
                continue;
            }
            for other in &state.pods {
                if other.namespace == pod.namespace && other.name == pod.name {
                    continue;
                }
                for term in &pod.required_anti_affinity {
                    if let Some(value) = node.labels.get(&term.topology_key) {
                        if PodInfo::term_selects(term, &pod.namespace, other) {
                            pre.own_anti_affinity.insert((term.topology_key.clone(), value.clone()));
                        }
                    }
                }
                for term in &other.required_anti_affinity {
                    if let Some(value) = node.labels.get(&term.topology_key) {
                        if PodInfo::term_selects(term, &other.namespace, pod) {
                            pre.existing_anti_affinity.insert((term.topology_key.clone(), value.clone()));
                        }
                    }
                }
            }
        }
        pre
    }
}

/// The first taint with a NoSchedule or NoExecute effect the pod does not
/// tolerate (PreferNoSchedule only lowers a node's score).
pub fn untolerated_taint<'a>(pod: &PodInfo, taints: &'a [Taint]) -> Option<&'a Taint> {
    taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute").find(|t| !pod.tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn node_unschedulable(pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
    let taint = Taint { key: TAINT_UNSCHEDULABLE.into(), effect: "NoSchedule".into(), ..Default::default() };
    if node.unschedulable && !pod.tolerations.iter().any(|t| tolerates(t, &taint)) {
        return Err(Failure::unresolvable(REASON_UNSCHEDULABLE));
    }
    Ok(())
}

fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
    match untolerated_taint(pod, &node.taints) {
        Some(taint) => Err(Failure::unresolvable(format!("node(s) had untolerated taint {{{}: {}}}", taint.key, taint.value.as_deref().unwrap_or("")))),
        None => Ok(()),
    }
}

fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> Result<(), Failure> {
    let by_selector = pod.node_selector.iter().all(|(k, v)| node.labels.get(k) == Some(v));
    let fields = NodeFields { name: &node.name, labels: &node.labels };
    let by_affinity = pod.required_node_affinity.as_ref().is_none_or(|s| labels::node_selector_matches(s, &fields));
    if by_selector && by_affinity {
        Ok(())
    } else {
        Err(Failure::unresolvable(REASON_NODE_AFFINITY))
    }
}

fn node_ports(pod: &PodInfo, state: &NodeState) -> Result<(), Failure> {
    if pod.host_ports.iter().any(|want| state.used_ports.iter().any(|used| used.conflicts(want))) {
        return Err(Failure::resolvable(REASON_PORTS));
    }
    Ok(())
}

/// Requests against allocatable minus what the node's pods request; every
/// shortage is a reason. A pod that asks more than the whole node has
/// cannot be helped by preemption.
fn resources_fit(pod: &PodInfo, node: &NodeInfo, state: &NodeState) -> Result<(), Failure> {
    let mut failure = Failure { reasons: Vec::new(), unresolvable: false };
    if state.pods.len() as i64 + 1 > node.allowed_pods {
        failure.reasons.push(Cow::Borrowed(REASON_TOO_MANY_PODS));
    }
    let (want, have, used) = (pod.requests, node.allocatable, state.requested);
    if want.milli_cpu > 0 && want.milli_cpu > have.milli_cpu - used.milli_cpu {
        failure.reasons.push(Cow::Borrowed(REASON_CPU));
        failure.unresolvable |= want.milli_cpu > have.milli_cpu;
    }
    if want.memory > 0 && want.memory > have.memory - used.memory {
        failure.reasons.push(Cow::Borrowed(REASON_MEMORY));
        failure.unresolvable |= want.memory > have.memory;
    }
    if failure.reasons.is_empty() {
        Ok(())
    } else {
        Err(failure)
    }
}

fn inter_pod_anti_affinity(pod: &PodInfo, pre: &PreFilter, node: &NodeInfo) -> Result<(), Failure> {
    let holds = |pairs: &HashSet<(String, String)>| !pairs.is_empty() && node.labels.iter().any(|(k, v)| pairs.contains(&(k.clone(), v.clone())));
    if !pod.required_anti_affinity.is_empty() && holds(&pre.own_anti_affinity) {
        return Err(Failure::resolvable(REASON_ANTI_AFFINITY));
    }
    if holds(&pre.existing_anti_affinity) {
        return Err(Failure::resolvable(REASON_EXISTING_ANTI_AFFINITY));
    }
    Ok(())
}

/// Runs every filter on one node, in upstream's order; the first failure
/// is the node's.
pub fn run(pod: &PodInfo, pre: &PreFilter, state: &NodeState) -> Result<(), Failure> {
    let Some(node) = &state.info else { return Err(Failure::unresolvable("node(s) not found")) };
    node_unschedulable(pod, node)?;
    taint_toleration(pod, node)?;
    node_affinity(pod, node)?;
    node_ports(pod, state)?;
    resources_fit(pod, node, state)?;
    volume_binding(pre, node)?;
    inter_pod_anti_affinity(pod, pre, node)
}

/// Upstream's VolumeBinding: the PreFilter's verdict on the pod's claims,
/// then whether this node can use the volumes they are bound to.
fn volume_binding(pre: &PreFilter, node: &NodeInfo) -> Result<(), Failure> {
    match &pre.volumes {
        Err(why) => Err(Failure::unresolvable(why.clone())),
        Ok(needs) => volumes::fits(needs, node).map_err(Failure::unresolvable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests_support::{node, pod};
    use crate::model::{HostPort, SharedPod};

    fn one_node(cache: &mut Cache, name: &str, cpu: &str, labels: &[(&str, &str)]) {
        cache.set_node(NodeInfo::from_node(&node(name, cpu, labels)));
    }

    fn check(cache: &Cache, p: &PodInfo, node: &str) -> Result<(), Failure> {
        run(p, &PreFilter::new(p, cache), cache.node(node).unwrap())
    }

    #[test]
    fn resources_count_bound_pods_and_name_each_shortage() {
        let mut cache = Cache::default();
        one_node(&mut cache, "n1", "1", &[]);
        let mut big = PodInfo::from_pod(&pod("big", "800m"));
        big.node_name = Some("n1".into());
        cache.set_bound_pod(SharedPod::new(big));
        let mut p = PodInfo::from_pod(&pod("p", "300m"));
        assert_eq!(check(&cache, &p, "n1"), Err(Failure { reasons: vec![REASON_CPU.into()], unresolvable: false }));
        p.requests.memory = 9 << 30;
        assert_eq!(check(&cache, &p, "n1"), Err(Failure { reasons: vec![REASON_CPU.into(), REASON_MEMORY.into()], unresolvable: true }));
        p.requests = crate::model::Resources { milli_cpu: 200, memory: 0 };
        assert_eq!(check(&cache, &p, "n1"), Ok(()));
    }

    #[test]
    fn taints_then_affinity_then_ports() {
        let mut cache = Cache::default();
        let mut tainted = node("n1", "1", &[("disk", "ssd")]);
        tainted.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(vec![
                Taint { key: "soft".into(), effect: "PreferNoSchedule".into(), ..Default::default() },
                Taint { key: "dedicated".into(), value: Some("gpu".into()), effect: "NoSchedule".into(), ..Default::default() },
            ]),
            ..Default::default()
        });
        cache.set_node(NodeInfo::from_node(&tainted));
        let mut p = PodInfo::from_pod(&pod("p", "100m"));
        p.node_selector.insert("disk".into(), "hdd".into());
        let err = check(&cache, &p, "n1").unwrap_err();
        assert_eq!(err.reasons, ["node(s) had untolerated taint {dedicated: gpu}"]);
        p.tolerations.push(k8s_openapi::api::core::v1::Toleration { key: Some("dedicated".into()), operator: Some("Exists".into()), ..Default::default() });
        assert_eq!(check(&cache, &p, "n1").unwrap_err().reasons, [REASON_NODE_AFFINITY]);
        p.node_selector.insert("disk".into(), "ssd".into());
        let port = HostPort { ip: "0.0.0.0".into(), protocol: "TCP".into(), port: 80 };
        let mut web = PodInfo::from_pod(&pod("web", "100m"));
        web.host_ports.push(HostPort { ip: "10.0.0.1".into(), ..port.clone() });
        web.node_name = Some("n1".into());
        cache.set_bound_pod(SharedPod::new(web));
        p.host_ports.push(HostPort { protocol: "UDP".into(), ..port.clone() });
        assert_eq!(check(&cache, &p, "n1"), Ok(()));
        p.host_ports.push(port);
        assert_eq!(check(&cache, &p, "n1"), Err(Failure::resolvable(REASON_PORTS)));
    }

    #[test]
    fn anti_affinity_both_ways() {
        let mut cache = Cache::default();
        one_node(&mut cache, "n1", "4", &[]);
        one_node(&mut cache, "n2", "4", &[]);
        let term: k8s_openapi::api::core::v1::PodAffinityTerm = serde_json::from_value(serde_json::json!({
            "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "db"}}
        }))
        .unwrap();
        let mut db = PodInfo::from_pod(&pod("db-0", "100m"));
        db.labels.insert("app".into(), "db".into());
        db.required_anti_affinity.push(term.clone());
        db.node_name = Some("n1".into());
        cache.set_bound_pod(SharedPod::new(db.clone()));
        let mut second = db.clone();
        second.name = "db-1".into();
        second.node_name = None;
        assert_eq!(check(&cache, &second, "n1"), Err(Failure::resolvable(REASON_ANTI_AFFINITY)));
        assert_eq!(check(&cache, &second, "n2"), Ok(()));
        // A pod without rules of its own that the db pod's rule selects.
        let mut other = PodInfo::from_pod(&pod("x", "100m"));
        other.labels.insert("app".into(), "db".into());
        assert_eq!(check(&cache, &other, "n1"), Err(Failure::resolvable(REASON_EXISTING_ANTI_AFFINITY)));
        other.labels.clear();
        assert_eq!(check(&cache, &other, "n1"), Ok(()));
    }

    #[test]
    fn unschedulable_nodes_and_not_ready_nodes() {
        let mut cache = Cache::default();
        let mut cordoned = node("n1", "1", &[]);
        cordoned.spec = Some(k8s_openapi::api::core::v1::NodeSpec { unschedulable: Some(true), ..Default::default() });
        cache.set_node(NodeInfo::from_node(&cordoned));
        let mut not_ready = node("n2", "1", &[]);
        not_ready.status.as_mut().unwrap().conditions =
            Some(vec![k8s_openapi::api::core::v1::NodeCondition { type_: "Ready".into(), status: "False".into(), ..Default::default() }]);
        cache.set_node(NodeInfo::from_node(&not_ready));
        let p = PodInfo::from_pod(&pod("p", "100m"));
        assert_eq!(check(&cache, &p, "n1"), Err(Failure::unresolvable(REASON_UNSCHEDULABLE)));
        assert_eq!(check(&cache, &p, "n2").unwrap_err().reasons, ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]);
    }
}
