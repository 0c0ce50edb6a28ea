//! One scheduling decision (upstream's `schedulePod`): filter nodes until
//! enough feasible ones are found, score those, take the best, ties broken
//! by node name so the same cluster state gives the same placement. When
//! no node fits, the message says why per node and what preemption found.

use std::borrow::Cow;

use crate::cache::{Cache, NodeState};
use crate::filters::{self, Failure, PreFilter};
use crate::messages;
use crate::model::PodInfo;
use crate::scores;

/// Below this many nodes every node is filtered (upstream's
/// `minFeasibleNodesToFind`).
const MIN_FEASIBLE_NODES: usize = 100;
/// The least share of nodes searched (upstream's
/// `minFeasibleNodesPercentageToFind`).
const MIN_PERCENTAGE: usize = 5;

/// What becomes of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bind it to this node.
    Bind(String),
    /// No node fits; the message says why, in upstream's words.
    Unschedulable(String),
}

/// How many feasible nodes are enough to stop searching, with upstream's
/// adaptive `percentageOfNodesToScore`: 50% less 1% per 125 nodes, at least
/// 5% and at least 100 nodes. Scoring a sample keeps large clusters fast;
/// the search starts where the last one stopped, so every node gets its turn.
pub fn feasible_nodes_to_find(all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES {
        return all;
    }
    let percentage = 50usize.saturating_sub(all / 125).max(MIN_PERCENTAGE);
    (all * percentage / 100).max(MIN_FEASIBLE_NODES)
}

/// The scheduler's decision state across pods: where the next search starts.
#[derive(Debug, Default)]
pub struct Scheduler {
    next_start: usize,
}

impl Scheduler {
    /// Decides where `pod` goes in `cache` (whose node order is fresh).
    pub fn decide(&mut self, pod: &PodInfo, cache: &Cache) -> Decision {
        let names = cache.node_names();
        let all = names.len();
        if all == 0 {
            return Decision::Unschedulable(messages::NO_NODES.into());
        }
        let pre = PreFilter::new(pod, cache);
        let enough = feasible_nodes_to_find(all);
        let start = self.next_start % all;
        let mut feasible: Vec<&NodeState> = Vec::with_capacity(enough.min(all));
        let mut failures: Vec<(&NodeState, Failure)> = Vec::new();
        let mut processed = 0;
        for i in 0..all {
            let state = cache.node(&names[(start + i) % all]).expect("the order lists known nodes");
            processed += 1;
            match filters::run(pod, &pre, state) {
                Ok(()) => feasible.push(state),
                Err(failure) => failures.push((state, failure)),
            }
            if feasible.len() >= enough {
                break;
            }
        }
        self.next_start = (start + processed) % all;
        if feasible.is_empty() {
            let preemption = preemption(pod, &pre, &failures);
            let reasons = failures.iter().flat_map(|(_, f)| f.reasons.iter().map(|r| r.as_ref()));
            return Decision::Unschedulable(messages::fit_error(all, reasons, preemption.as_deref()));
        }
        let scores = scores::score(pod, &feasible, cache);
        let best = feasible.iter().zip(&scores).max_by(|(a, sa), (b, sb)| sa.cmp(sb).then_with(|| b.name().cmp(a.name()))).expect("feasible is not empty");
        Decision::Bind(best.0.name().to_string())
    }
}

/// What upstream's default preemption reports when no node fits: per node,
/// whether evicting lower-priority pods could help. None when it could on
/// some node: upstream would preempt there and add nothing to the message.
/// This scheduler does not evict (yet); it reports as upstream does.
fn preemption(pod: &PodInfo, pre: &PreFilter, failures: &[(&NodeState, Failure)]) -> Option<String> {
    if pod.preempt_never {
        return Some(messages::NOT_ELIGIBLE.into());
    }
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    for (state, failure) in failures {
        if failure.unresolvable {
            reasons.push(messages::PREEMPTION_NOT_HELPFUL.into());
        } else if !state.pods.iter().any(|p| p.priority < pod.priority) {
            reasons.push(messages::NO_VICTIMS.into());
        } else {
            match filters::run(pod, pre, &state.keeping(|p| p.priority >= pod.priority)) {
                Ok(()) => return None,
                Err(still) => reasons.extend(still.reasons),
            }
        }
    }
    Some(messages::nodes_unavailable(failures.len(), reasons.iter().map(|r| r.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests_support::{node, pod};
    use crate::model::{NodeInfo, SharedPod};

    #[test]
    fn sample_sizes_as_upstream() {
        assert_eq!(feasible_nodes_to_find(3), 3);
        assert_eq!(feasible_nodes_to_find(99), 99);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5000);
    }

    #[test]
    fn same_state_same_choice_and_ties_go_to_the_first_name() {
        let mut cache = Cache::default();
        for name in ["n3", "n1", "n2"] {
            cache.set_node(NodeInfo::from_node(&node(name, "2", &[])));
        }
        cache.refresh_order();
        let p = PodInfo::from_pod(&pod("p", "100m"));
        for _ in 0..3 {
            assert_eq!(Scheduler::default().decide(&p, &cache), Decision::Bind("n1".into()));
        }
    }

    #[test]
    fn unschedulable_messages_count_nodes_and_preemption() {
        let mut cache = Cache::default();
        cache.set_node(NodeInfo::from_node(&node("n1", "1", &[])));
        cache.set_node(NodeInfo::from_node(&node("n2", "4", &[("disk", "ssd")])));
        let mut low = PodInfo::from_pod(&pod("low", "3"));
        low.node_name = Some("n2".into());
        low.priority = -1;
        cache.set_bound_pod(SharedPod::new(low));
        cache.refresh_order();
        let mut p = PodInfo::from_pod(&pod("p", "2"));
        p.node_selector.insert("disk".into(), "ssd".into());
        // n1 fails on the selector; n2 on cpu, which evicting `low` would
        // free: upstream would preempt, so no preemption part.
        assert_eq!(
            Scheduler::default().decide(&p, &cache),
            Decision::Unschedulable("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector.".into())
        );
        p.priority = -1;
        assert_eq!(
            Scheduler::default().decide(&p, &cache),
            Decision::Unschedulable(
                "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector. \
                 preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
                    .into()
            )
        );
        assert_eq!(Scheduler::default().decide(&p, &Cache::default()), Decision::Unschedulable(messages::NO_NODES.into()));
    }
}
