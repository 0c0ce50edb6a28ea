//! The node IPAM controller with upstream's range allocator: every Node
//! gets pod CIDRs (`spec.podCIDR`, `spec.podCIDRs`) cut from the cluster
//! CIDR, never two nodes the same, given back when the Node goes.
//!
//! One task watches Nodes and does all allocation in the order events
//! come, so no two decisions race. Each (re)list rebuilds what is taken
//! from the CIDRs the listed Nodes already have before anything is handed
//! out, so a restart keeps every assignment. A Node the range has no room
//! for gets upstream's `CIDRNotAvailable` event and waits for a release.

mod cidr_set;
mod range_allocator;

use std::collections::BTreeSet;

use component_base::events::Recorder;
use futures_util::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};

pub use cidr_set::CidrSet;
use range_allocator::RangeAllocator;

/// Upstream's default node CIDR sizes.
pub const DEFAULT_NODE_CIDR_MASK_SIZE_IPV4: u8 = 24;
pub const DEFAULT_NODE_CIDR_MASK_SIZE_IPV6: u8 = 64;

/// The name events are recorded under, as upstream's range allocator's.
const COMPONENT: &str = "cidrAllocator";

/// Upstream's attempts at writing a Node's CIDRs before giving up.
const UPDATE_RETRIES: usize = 3;

/// The node IPAM flags, as upstream's.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `--allocate-node-cidrs`: without it the controller does nothing.
    pub allocate_node_cidrs: bool,
    /// `--cluster-cidr`: one CIDR, or one per IP family (dual-stack).
    pub cluster_cidrs: Vec<IpNet>,
    /// `--node-cidr-mask-size` (single-stack clusters only).
    pub node_cidr_mask_size: Option<u8>,
    /// `--node-cidr-mask-size-ipv4`, `--node-cidr-mask-size-ipv6`.
    pub node_cidr_mask_size_ipv4: Option<u8>,
    pub node_cidr_mask_size_ipv6: Option<u8>,
}

impl Settings {
    /// One CIDR set per cluster CIDR, each cut at its family's node size.
    pub fn cidr_sets(&self) -> Result<Vec<CidrSet>, String> {
        let cidrs = &self.cluster_cidrs;
        if cidrs.is_empty() {
            return Err("--cluster-cidr is required when --allocate-node-cidrs is on".into());
        }
        let dual_stack = cidrs.len() > 1;
        let v4 = cidrs.iter().filter(|c| matches!(c, IpNet::V4(_))).count();
        if cidrs.len() > 2 || (dual_stack && v4 != 1) {
            return Err(format!("--cluster-cidr: at most one CIDR of each IP family is allowed, got {}", join(cidrs)));
        }
        if dual_stack && self.node_cidr_mask_size.is_some() {
            return Err("usage of --node-cidr-mask-size is not allowed with dual-stack clusters".into());
        }
        cidrs
            .iter()
            .map(|cidr| {
                let (per_family, default) = match cidr {
                    IpNet::V4(_) => (self.node_cidr_mask_size_ipv4, DEFAULT_NODE_CIDR_MASK_SIZE_IPV4),
                    IpNet::V6(_) => (self.node_cidr_mask_size_ipv6, DEFAULT_NODE_CIDR_MASK_SIZE_IPV6),
                };
                let size = self.node_cidr_mask_size.or(per_family).unwrap_or(default);
                CidrSet::new(*cidr, size).map_err(|e| format!("--cluster-cidr {cidr} with node CIDR mask size {size}: {e}"))
            })
            .collect()
    }
}

fn join(cidrs: &[IpNet]) -> String {
    cidrs.iter().map(IpNet::to_string).collect::<Vec<_>>().join(",")
}

/// Runs the controller until the Node watch ends.
pub async fn run(client: Client, settings: Settings) {
    if !settings.allocate_node_cidrs {
        tracing::info!("node IPAM: --allocate-node-cidrs is off; Nodes get no pod CIDRs");
        return;
    }
    let sets = match settings.cidr_sets() {
        Ok(sets) => sets,
        Err(e) => {
            tracing::error!("node IPAM cannot start: {e}");
            return;
        }
    };
    tracing::info!("node IPAM: allocating node CIDRs from {}", join(&sets.iter().map(CidrSet::cluster).collect::<Vec<_>>()));
    let nodes: Api<Node> = Api::all(client.clone());
    let mut allocator = Allocator {
        nodes: nodes.clone(),
        recorder: Recorder::new(client, COMPONENT, None),
        empty: sets.clone(),
        ranges: RangeAllocator::new(sets),
        waiting: BTreeSet::new(),
    };
    let mut stream = watcher::watcher(nodes, watcher::Config::default()).default_backoff().boxed();
    let mut listing = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(node)) => listing.push(node),
            Ok(Event::InitDone) => allocator.rebuild(std::mem::take(&mut listing)).await,
            Ok(Event::Apply(node)) => allocator.changed(&node).await,
            Ok(Event::Delete(node)) => allocator.deleted(&node).await,
            Err(e) => tracing::warn!("node IPAM: watching Nodes failed (retrying): {e}"),
        }
    }
}

/// The CIDRs a Node's spec names (podCIDRs, else the older podCIDR).
fn cidrs_of(node: &Node) -> Result<Vec<IpNet>, String> {
    let spec = node.spec.as_ref();
    let listed = spec.and_then(|s| s.pod_cidrs.clone()).filter(|l| !l.is_empty());
    let named = listed.or_else(|| spec.and_then(|s| s.pod_cidr.clone()).filter(|c| !c.is_empty()).map(|c| vec![c])).unwrap_or_default();
    named.iter().map(|c| c.parse::<IpNet>().map_err(|e| format!("failed to parse CIDR {c} on Node {}: {e}", node.name_any()))).collect()
}

struct Allocator {
    nodes: Api<Node>,
    recorder: Recorder,
    /// The CIDR sets with nothing taken, to start again from.
    empty: Vec<CidrSet>,
    ranges: RangeAllocator,
    /// Nodes the range had no room for, in name order.
    waiting: BTreeSet<String>,
}

impl Allocator {
    /// Starts again from the Nodes as listed: first everything they hold,
    /// then CIDRs for those that hold none.
    async fn rebuild(&mut self, nodes: Vec<Node>) {
        self.ranges = RangeAllocator::new(self.empty.clone());
        self.waiting.clear();
        let mut without = Vec::new();
        for node in &nodes {
            match cidrs_of(node) {
                Ok(cidrs) if cidrs.is_empty() => without.push(node),
                Ok(cidrs) => self.occupy(node, cidrs),
                Err(e) => tracing::warn!("node IPAM: {e}"),
            }
        }
        for node in without {
            self.allocate(node).await;
        }
    }

    async fn changed(&mut self, node: &Node) {
        match cidrs_of(node) {
            Ok(cidrs) if cidrs.is_empty() => {
                // Held already: this allocator's write is on its way.
                if self.ranges.holds(&node.name_any()).is_none() {
                    self.allocate(node).await;
                }
            }
            Ok(cidrs) => {
                if self.ranges.holds(&node.name_any()) != Some(cidrs.as_slice()) {
                    self.ranges.release(&node.name_any());
                    self.occupy(node, cidrs);
                }
            }
            Err(e) => tracing::warn!("node IPAM: {e}"),
        }
    }

    async fn deleted(&mut self, node: &Node) {
        let name = node.name_any();
        self.waiting.remove(&name);
        if self.ranges.holds(&name).is_none() {
            return;
        }
        self.ranges.release(&name);
        tracing::info!(node = %name, "node IPAM: released the Node's pod CIDRs");
        // Room again: the Nodes that waited, in name order.
        for waiting in std::mem::take(&mut self.waiting) {
            match self.nodes.get_opt(&waiting).await {
                Ok(Some(node)) if cidrs_of(&node).is_ok_and(|c| c.is_empty()) => self.allocate(&node).await,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(node = %waiting, "node IPAM: reading the Node failed: {e}");
                    self.waiting.insert(waiting);
                }
            }
        }
    }

    fn occupy(&mut self, node: &Node, cidrs: Vec<IpNet>) {
        if let Err(e) = self.ranges.occupy(&node.name_any(), cidrs) {
            tracing::warn!(node = %node.name_any(), "node IPAM: failed to mark cidr as occupied: {e}");
        }
    }

    /// Cuts CIDRs for a Node that has none and writes them to it.
    async fn allocate(&mut self, node: &Node) {
        let name = node.name_any();
        let cidrs = match self.ranges.allocate(&name) {
            Ok(cidrs) => cidrs,
            Err(e) => {
                tracing::warn!(node = %name, "node IPAM: failed to allocate a pod CIDR: {e}");
                self.record(node, "CIDRNotAvailable");
                self.waiting.insert(name);
                return;
            }
        };
        let strings: Vec<String> = cidrs.iter().map(IpNet::to_string).collect();
        let patch = serde_json::json!({"spec": {"podCIDR": strings[0], "podCIDRs": strings}});
        let mut last_error = None;
        for _ in 0..UPDATE_RETRIES {
            match self.nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    tracing::info!(node = %name, "node IPAM: set the Node's pod CIDRs to {}", strings.join(","));
                    return;
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => {
                    self.ranges.release(&name);
                    return;
                }
                Err(e) => last_error = Some(e),
            }
        }
        tracing::warn!(node = %name, "node IPAM: failed to update the Node's pod CIDRs after {UPDATE_RETRIES} attempts: {}", last_error.map(|e| e.to_string()).unwrap_or_default());
        self.record(node, "CIDRAssignmentFailed");
        self.ranges.release(&name);
    }

    /// Upstream's node status change event.
    fn record(&self, node: &Node, status: &str) {
        let object = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.name_any()),
            uid: node.metadata.uid.clone(),
            ..Default::default()
        };
        self.recorder.normal(object, status, format!("Node {} status is now: {status}", node.name_any()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cidrs: &str) -> Settings {
        Settings { allocate_node_cidrs: true, cluster_cidrs: cidrs.split(',').map(|c| c.parse().unwrap()).collect(), ..Default::default() }
    }

    #[test]
    fn node_sizes_default_per_family_as_upstream() {
        let sets = settings("10.244.0.0/16,fd00:10::/48").cidr_sets().unwrap();
        let mut v4 = sets[0].clone();
        let mut v6 = sets[1].clone();
        assert_eq!(v4.allocate_next().unwrap().to_string(), "10.244.0.0/24");
        assert_eq!(v6.allocate_next().unwrap().to_string(), "fd00:10::/64");
        let sized = Settings { node_cidr_mask_size: Some(26), ..settings("10.244.0.0/16") };
        assert_eq!(sized.cidr_sets().unwrap()[0].allocate_next().unwrap().to_string(), "10.244.0.0/26");
    }

    #[test]
    fn bad_flag_combinations_are_refused() {
        assert!(Settings { allocate_node_cidrs: true, ..Default::default() }.cidr_sets().is_err());
        assert!(settings("10.0.0.0/16,10.1.0.0/16").cidr_sets().is_err());
        let err = Settings { node_cidr_mask_size: Some(24), ..settings("10.0.0.0/16,fd00::/48") }.cidr_sets().unwrap_err();
        assert_eq!(err, "usage of --node-cidr-mask-size is not allowed with dual-stack clusters");
    }
}
