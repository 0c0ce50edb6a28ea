//! Scores: how good each feasible node is for a pod, as upstream's score
//! plugins with their default weights: TaintToleration (3, fewer
//! untolerated PreferNoSchedule taints), NodeAffinity (2, preferred
//! terms), PodTopologySpread (2, its system default constraints: pods of
//! one owner spread over hosts and zones), NodeResourcesFit (1, least
//! allocated) and NodeResourcesBalancedAllocation (1). Each plugin's
//! scores are normalized to 0..=100 before weighting, as upstream's.
//!
//! Upstream's InterPodAffinity and ImageLocality scores are left out: with
//! no preferred pod affinity and no image list on nodes they give every
//! node the same score, which changes no decision.

use std::collections::HashMap;

use crate::cache::{Cache, NodeState};
use crate::labels::NodeFields;
use crate::model::{tolerates, NodeInfo, PodInfo, Resources, HOSTNAME_LABEL, ZONE_LABEL};

pub const MAX_NODE_SCORE: i64 = 100;

const WEIGHT_TAINT_TOLERATION: i64 = 3;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_TOPOLOGY_SPREAD: i64 = 2;
const WEIGHT_LEAST_ALLOCATED: i64 = 1;
const WEIGHT_BALANCED_ALLOCATION: i64 = 1;

/// Upstream's system default spread constraints: (topology key, maxSkew).
const DEFAULT_SPREAD: [(&str, i64); 2] = [(HOSTNAME_LABEL, 3), (ZONE_LABEL, 5)];

/// Upstream's `DefaultNormalizeScore`: scales to 0..=100 by the largest
/// score; `reverse` makes the smallest the best.
fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - scaled } else { scaled };
    }
}

fn taint_toleration(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let tolerations: Vec<_> = pod.tolerations.iter().filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")).collect();
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| n.taints.iter().filter(|t| t.effect == "PreferNoSchedule" && !tolerations.iter().any(|tol| tolerates(tol, t))).count() as i64)
        .collect();
    normalize(&mut scores, true);
    scores
}

fn node_affinity(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    if pod.preferred_node_affinity.is_empty() {
        return vec![0; nodes.len()];
    }
    let mut scores: Vec<i64> = nodes
        .iter()
        .map(|n| {
            let fields = NodeFields { name: &n.name, labels: &n.labels };
            pod.preferred_node_affinity
                .iter()
                .filter(|t| t.weight != 0 && crate::labels::term_matches(&t.preference, &fields))
                .map(|t| i64::from(t.weight))
                .sum()
        })
        .collect();
    normalize(&mut scores, false);
    scores
}

/// Whether `other` counts for spreading `pod`: same namespace, same
/// controller, not on its way out.
fn same_owner(pod: &PodInfo, other: &PodInfo) -> bool {
    other.owner.is_some() && other.owner == pod.owner && other.namespace == pod.namespace && !other.deleting
}

/// PodTopologySpread with the system default constraints (upstream's
/// `scoreForCount` and `NormalizeScore`): more pods of the owner in the
/// node's host or zone, a lower score. Upstream takes the selector from the
/// Services and controllers selecting the pod; this scheduler takes the
/// pod's controller, which selects the same pods.
fn topology_spread(pod: &PodInfo, states: &[&NodeState], cache: &Cache) -> Vec<i64> {
    if pod.owner.is_none() {
        return vec![0; states.len()];
    }
    let infos: Vec<&NodeInfo> = states.iter().filter_map(|s| s.info.as_ref()).collect();
    let mut weights = [0f64; 2];
    let mut zone_counts: HashMap<&str, i64> = HashMap::new();
    for (i, (key, _)) in DEFAULT_SPREAD.iter().enumerate() {
        let domains = if *key == HOSTNAME_LABEL {
            infos.len()
        } else {
            // Every feasible node is a domain of its zone (a missing label
            // is the empty zone, as upstream counts it).
            let zones: std::collections::HashSet<&str> = infos.iter().map(|n| n.labels.get(*key).map(String::as_str).unwrap_or("")).collect();
            zones.len()
        };
        weights[i] = ((domains + 2) as f64).ln();
    }
    let any_zone = infos.iter().any(|n| n.labels.contains_key(ZONE_LABEL));
    if any_zone {
        for state in cache.nodes() {
            let Some(zone) = state.info.as_ref().and_then(|n| n.labels.get(ZONE_LABEL)) else { continue };
            let count = state.pods.iter().filter(|p| same_owner(pod, p)).count() as i64;
            *zone_counts.entry(zone.as_str()).or_default() += count;
        }
    }
    let raw: Vec<i64> = states
        .iter()
        .map(|state| {
            let Some(node) = &state.info else { return 0 };
            let mut score = 0f64;
            for (i, (key, max_skew)) in DEFAULT_SPREAD.iter().enumerate() {
                let Some(value) = node.labels.get(*key) else { continue };
                let count = if *key == HOSTNAME_LABEL {
                    state.pods.iter().filter(|p| same_owner(pod, p)).count() as i64
                } else {
                    zone_counts.get(value.as_str()).copied().unwrap_or(0)
                };
                score += count as f64 * weights[i] + (max_skew - 1) as f64;
            }
            score.round() as i64
        })
        .collect();
    let (min, max) = (raw.iter().copied().min().unwrap_or(0), raw.iter().copied().max().unwrap_or(0));
    raw.iter().map(|s| if max == 0 { MAX_NODE_SCORE } else { MAX_NODE_SCORE * (max + min - s) / max }).collect()
}

/// NodeResourcesFit's LeastAllocated: the share of cpu and memory left
/// free with the pod on the node, counting upstream's default requests for
/// containers that ask none.
fn least_allocated(pod: &PodInfo, state: &NodeState, node: &NodeInfo) -> i64 {
    let free_share = |requested: i64, allocatable: i64| {
        if allocatable == 0 || requested > allocatable {
            0
        } else {
            (allocatable - requested) * MAX_NODE_SCORE / allocatable
        }
    };
    let requested = state.non_zero_requested.plus(pod.non_zero_requests);
    (free_share(requested.milli_cpu, node.allocatable.milli_cpu) + free_share(requested.memory, node.allocatable.memory)) / 2
}

/// NodeResourcesBalancedAllocation: nodes whose cpu and memory would be
/// used in like shares score higher. Pods asking for nothing are not
/// scored by it, as upstream skips best-effort pods.
fn balanced_allocation(pod: &PodInfo, state: &NodeState, node: &NodeInfo) -> i64 {
    if pod.requests == Resources::default() {
        return 0;
    }
    let requested = state.requested.plus(pod.requests);
    let fractions: Vec<f64> = [(requested.milli_cpu, node.allocatable.milli_cpu), (requested.memory, node.allocatable.memory)]
        .iter()
        .filter(|(_, allocatable)| *allocatable != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let deviation = if fractions.len() == 2 { ((fractions[0] - fractions[1]) / 2.0).abs() } else { 0.0 };
    ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
}

/// The weighted total of every score plugin for each of `states`.
pub fn score(pod: &PodInfo, states: &[&NodeState], cache: &Cache) -> Vec<i64> {
    let infos: Vec<&NodeInfo> = states.iter().map(|s| s.info.as_ref().expect("feasible nodes exist")).collect();
    let taints = taint_toleration(pod, &infos);
    let affinity = node_affinity(pod, &infos);
    let spread = topology_spread(pod, states, cache);
    states
        .iter()
        .zip(&infos)
        .enumerate()
        .map(|(i, (state, node))| {
            WEIGHT_TAINT_TOLERATION * taints[i]
                + WEIGHT_NODE_AFFINITY * affinity[i]
                + WEIGHT_TOPOLOGY_SPREAD * spread[i]
                + WEIGHT_LEAST_ALLOCATED * least_allocated(pod, state, node)
                + WEIGHT_BALANCED_ALLOCATION * balanced_allocation(pod, state, node)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests_support::{node, pod};
    use crate::model::SharedPod;

    #[test]
    fn normalization_as_upstream() {
        let mut scores = vec![0, 2, 4];
        normalize(&mut scores, false);
        assert_eq!(scores, [0, 50, 100]);
        let mut scores = vec![0, 2, 4];
        normalize(&mut scores, true);
        assert_eq!(scores, [100, 50, 0]);
        let mut zeros = vec![0, 0];
        normalize(&mut zeros, true);
        assert_eq!(zeros, [100, 100]);
    }

    #[test]
    fn emptier_nodes_and_fewer_siblings_score_higher() {
        let mut cache = Cache::default();
        for name in ["n1", "n2"] {
            cache.set_node(NodeInfo::from_node(&node(name, "4", &[])));
        }
        let mut p = PodInfo::from_pod(&pod("p", "500m"));
        p.owner = Some("rs-1".into());
        let mut sibling = p.clone();
        sibling.name = "sibling".into();
        sibling.node_name = Some("n1".into());
        cache.set_bound_pod(SharedPod::new(sibling));
        let states: Vec<&NodeState> = ["n1", "n2"].iter().map(|n| cache.node(n).unwrap()).collect();
        let spread = topology_spread(&p, &states, &cache);
        assert_eq!(spread[1], MAX_NODE_SCORE);
        assert!(spread[0] < spread[1], "{spread:?}");
        let total = score(&p, &states, &cache);
        assert!(total[0] < total[1], "{total:?}");
        assert!(least_allocated(&p, states[0], states[0].info.as_ref().unwrap()) < least_allocated(&p, states[1], states[1].info.as_ref().unwrap()));
    }
}
