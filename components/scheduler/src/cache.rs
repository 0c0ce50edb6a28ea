//! The scheduler's picture of the cluster: each node with the pods bound
//! to it and what they take, as upstream's scheduler cache. A pod the
//! scheduler has decided on is *assumed* on its node at once, before the
//! binding is written and long before the watch reports it, so the next
//! decisions already count it and a burst never over-commits a node; the
//! watch event confirms it, a failed binding forgets it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::{HostPort, NodeInfo, PodInfo, Resources, SharedPod};
use crate::volumes::Volumes;

/// A node and the pods on it.
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    /// None while pods name a node the watch has not (or no longer) shown.
    pub info: Option<NodeInfo>,
    pub pods: Vec<SharedPod>,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub used_ports: Vec<HostPort>,
    /// How many of its pods have required anti-affinity terms.
    pub with_anti_affinity: usize,
}

impl NodeState {
    fn add(&mut self, pod: SharedPod) {
        self.requested = self.requested.plus(pod.requests);
        self.non_zero_requested = self.non_zero_requested.plus(pod.non_zero_requests);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.with_anti_affinity += usize::from(!pod.required_anti_affinity.is_empty());
        self.pods.push(pod);
    }

    fn remove(&mut self, key_namespace: &str, key_name: &str) -> Option<SharedPod> {
        let index = self.pods.iter().position(|p| p.namespace == key_namespace && p.name == key_name)?;
        let pod = self.pods.swap_remove(index);
        self.requested = self.requested.minus(pod.requests);
        self.non_zero_requested = self.non_zero_requested.minus(pod.non_zero_requests);
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        self.with_anti_affinity -= usize::from(!pod.required_anti_affinity.is_empty());
        Some(pod)
    }

    /// This node as it would be with only the pods `keep` keeps (what
    /// preemption asks: would the pod fit without the lower-priority ones?).
    pub fn keeping(&self, keep: impl Fn(&PodInfo) -> bool) -> NodeState {
        let mut state = NodeState { info: self.info.clone(), ..Default::default() };
        for pod in self.pods.iter().filter(|p| keep(p)) {
            state.add(pod.clone());
        }
        state
    }

    pub fn name(&self) -> &str {
        self.info.as_ref().map(|i| i.name.as_str()).unwrap_or("")
    }
}

/// Every node and every bound (or assumed) pod.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: HashMap<String, NodeState>,
    /// The names of the nodes the watch shows, sorted: the order nodes are
    /// visited in, which keeps decisions deterministic.
    order: Vec<String>,
    order_stale: bool,
    /// Bound or assumed pods by key, with the node they are on.
    placed: HashMap<String, (String, SharedPod)>,
    assumed: HashSet<String>,
    /// Claims, volumes and classes, for the VolumeBinding filter.
    pub volumes: Volumes,
}

impl Cache {
    /// Adds or replaces a node; whether what scheduling reads of it changed.
    pub fn set_node(&mut self, info: NodeInfo) -> bool {
        let state = self.nodes.entry(info.name.clone()).or_default();
        let changed = state.info.as_ref().is_none_or(|old| old.differs_for_scheduling(&info));
        if state.info.is_none() {
            self.order_stale = true;
        }
        state.info = Some(info);
        changed
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(state) = self.nodes.get_mut(name) {
            state.info = None;
            if state.pods.is_empty() {
                self.nodes.remove(name);
            }
            self.order_stale = true;
        }
    }

    /// Sorts the node names again if nodes came or went.
    pub fn refresh_order(&mut self) {
        if self.order_stale {
            self.order = self.nodes.iter().filter(|(_, s)| s.info.is_some()).map(|(n, _)| n.clone()).collect();
            self.order.sort();
            self.order_stale = false;
        }
    }

    /// The nodes the watch shows, by name (as of the last `refresh_order`).
    pub fn node_names(&self) -> &[String] {
        &self.order
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.get(name).filter(|s| s.info.is_some())
    }

    /// Every node with pods, also those the watch does not show.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeState> {
        self.nodes.values()
    }

    /// Places a bound pod on its node (the watch saw it bound); confirms
    /// it when it was assumed. Returns the pod it replaced, if any.
    pub fn set_bound_pod(&mut self, pod: SharedPod) -> Option<SharedPod> {
        let key = pod.key();
        let node = pod.node_name.clone().expect("only bound pods are placed");
        self.assumed.remove(&key);
        let old = self.remove_pod(&key);
        self.nodes.entry(node.clone()).or_default().add(pod.clone());
        self.placed.insert(key, (node, pod));
        old
    }

    /// Takes a pod off its node (deleted, finished, or a binding that failed).
    pub fn remove_pod(&mut self, key: &str) -> Option<SharedPod> {
        let (node, pod) = self.placed.remove(key)?;
        self.assumed.remove(key);
        if let Some(state) = self.nodes.get_mut(&node) {
            state.remove(&pod.namespace, &pod.name);
            if state.info.is_none() && state.pods.is_empty() {
                self.nodes.remove(&node);
            }
        }
        Some(pod)
    }

    /// Counts `pod` on `node` until the watch confirms the binding or the
    /// binding fails.
    pub fn assume(&mut self, pod: &PodInfo, node: &str) {
        let mut placed = pod.clone();
        placed.node_name = Some(node.to_string());
        let key = pod.key();
        self.remove_pod(&key);
        let placed = SharedPod::new(placed);
        self.nodes.entry(node.to_string()).or_default().add(placed.clone());
        self.placed.insert(key.clone(), (node.to_string(), placed));
        self.assumed.insert(key);
    }

    /// Forgets an assumed pod whose binding failed.
    pub fn forget(&mut self, key: &str) {
        if self.assumed.contains(key) {
            self.remove_pod(key);
        }
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.assumed.contains(key)
    }

    /// Replaces every bound pod with `pods` (after the watch relisted),
    /// keeping the assumed ones the list does not show bound yet.
    pub fn replace_pods(&mut self, pods: Vec<SharedPod>) {
        let listed: HashSet<String> = pods.iter().map(|p| p.key()).collect();
        let stale: Vec<String> = self.placed.keys().filter(|k| !listed.contains(*k) && !self.assumed.contains(*k)).cloned().collect();
        for key in stale {
            self.remove_pod(&key);
        }
        for pod in pods {
            self.set_bound_pod(pod);
        }
    }

    /// Replaces every node with `nodes` (after the watch relisted).
    pub fn replace_nodes(&mut self, nodes: Vec<NodeInfo>) {
        let listed: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let gone: Vec<String> = self.nodes.iter().filter(|(n, s)| s.info.is_some() && !listed.contains(n.as_str())).map(|(n, _)| n.clone()).collect();
        for name in gone {
            self.remove_node(&name);
        }
        for node in nodes {
            self.set_node(node);
        }
    }

    /// How many pods each node holds, by node name (for tests and logs).
    pub fn pod_counts(&self) -> BTreeMap<String, usize> {
        self.nodes.iter().map(|(n, s)| (n.clone(), s.pods.len())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests_support::{node, pod};

    #[test]
    fn assumed_pods_count_until_confirmed_or_forgotten() {
        let mut cache = Cache::default();
        cache.set_node(NodeInfo::from_node(&node("n1", "2", &[])));
        let p = PodInfo::from_pod(&pod("p1", "500m"));
        cache.assume(&p, "n1");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 500);
        assert!(cache.is_assumed("default/p1"));
        // The watch shows it bound: confirmed, still counted once.
        let mut bound = p.clone();
        bound.node_name = Some("n1".into());
        cache.set_bound_pod(SharedPod::new(bound));
        assert!(!cache.is_assumed("default/p1"));
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 500);
        // Forget only drops assumed pods.
        cache.forget("default/p1");
        assert_eq!(cache.node("n1").unwrap().pods.len(), 1);
        let p2 = PodInfo::from_pod(&pod("p2", "1"));
        cache.assume(&p2, "n1");
        cache.forget("default/p2");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 500);
        cache.remove_pod("default/p1");
        assert_eq!(cache.node("n1").unwrap().requested, Resources::default());
    }

    #[test]
    fn relists_keep_assumed_pods_and_drop_vanished_ones() {
        let mut cache = Cache::default();
        cache.replace_nodes(vec![NodeInfo::from_node(&node("b", "1", &[])), NodeInfo::from_node(&node("a", "1", &[]))]);
        cache.refresh_order();
        assert_eq!(cache.node_names(), ["a", "b"]);
        let mut gone = PodInfo::from_pod(&pod("gone", "100m"));
        gone.node_name = Some("a".into());
        cache.set_bound_pod(SharedPod::new(gone));
        cache.assume(&PodInfo::from_pod(&pod("flying", "100m")), "b");
        cache.replace_pods(vec![]);
        assert_eq!(cache.pod_counts(), BTreeMap::from([("a".to_string(), 0), ("b".to_string(), 1)]));
        cache.replace_nodes(vec![NodeInfo::from_node(&node("b", "1", &[]))]);
        cache.refresh_order();
        assert_eq!(cache.node_names(), ["b"]);
    }
}
