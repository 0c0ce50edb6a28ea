//! The words of an unschedulable pod's condition and event, in upstream's
//! form (its `FitError`): "0/3 nodes are available: 1 Insufficient cpu, 2
//! node(s) had untolerated taint {k: v}. preemption: 0/3 nodes are
//! available: 3 Preemption is not helpful for scheduling." Each reason is
//! counted over the nodes that gave it, and the "count reason" strings are
//! sorted as strings, as upstream sorts them.

use std::collections::HashMap;

/// The message when the cluster has no nodes at all (upstream's
/// `ErrNoNodesAvailable`).
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// The preemption reason of a node that failed for a reason removing pods
/// cannot cure.
pub const PREEMPTION_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// The preemption reason of a node with no pod of lower priority to evict.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// The preemption message of a pod that may not preempt.
pub const NOT_ELIGIBLE: &str = "not eligible due to preemptionPolicy=Never.";

/// "1 a, 2 b": each reason with how many nodes gave it, sorted as strings.
fn histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for reason in reasons {
        *counts.entry(reason).or_default() += 1;
    }
    let mut lines: Vec<String> = counts.into_iter().map(|(reason, count)| format!("{count} {reason}")).collect();
    lines.sort();
    lines.join(", ")
}

/// "0/N nodes are available: <reasons>." — `reasons` holds every reason
/// of every node (a node may give several).
pub fn nodes_unavailable<'a>(num_nodes: usize, reasons: impl Iterator<Item = &'a str>) -> String {
    let histogram = histogram(reasons);
    if histogram.is_empty() {
        format!("0/{num_nodes} nodes are available.")
    } else {
        format!("0/{num_nodes} nodes are available: {histogram}.")
    }
}

/// The whole message: the filters' part, then what preemption found
/// (None when it found a node it could free, as upstream adds nothing then).
pub fn fit_error<'a>(num_nodes: usize, reasons: impl Iterator<Item = &'a str>, preemption: Option<&str>) -> String {
    let mut message = nodes_unavailable(num_nodes, reasons);
    if let Some(preemption) = preemption {
        message.push_str(" preemption: ");
        message.push_str(preemption);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_and_sorted_as_strings() {
        let reasons = ["Insufficient cpu", "node(s) had untolerated taint {k: v}", "node(s) had untolerated taint {k: v}"];
        let preemption = nodes_unavailable(3, [NO_VICTIMS, PREEMPTION_NOT_HELPFUL, PREEMPTION_NOT_HELPFUL].into_iter());
        assert_eq!(
            fit_error(3, reasons.into_iter(), Some(&preemption)),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {k: v}. \
             preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
        );
        // As strings: "10 …" sorts before "2 …".
        let many: Vec<&str> = std::iter::repeat_n("b", 10).chain(std::iter::repeat_n("a", 2)).collect();
        assert_eq!(nodes_unavailable(12, many.into_iter()), "0/12 nodes are available: 10 b, 2 a.");
        assert_eq!(
            fit_error(1, ["Insufficient cpu"].into_iter(), Some(NOT_ELIGIBLE)),
            "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        );
    }
}
