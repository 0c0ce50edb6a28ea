//! What the workload controllers read off a Pod, as upstream's
//! `pkg/controller` and `podutil` read it: active, ready, available, who
//! controls it, and which pods go first when there are too many.

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

/// The owner reference that marks `meta`'s controller, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// The pod's phase, "" before its kubelet reported one.
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Neither finished nor being deleted: a pod that counts towards replicas
/// (upstream's `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's Ready condition turned true, if it is true.
pub fn ready_since(pod: &Pod) -> Option<&Time> {
    let ready = pod.status.as_ref()?.conditions.iter().flatten().find(|c| c.type_ == "Ready" && c.status == "True")?;
    // A Ready condition without a time counts as ready since forever.
    Some(ready.last_transition_time.as_ref().unwrap_or(&EPOCH))
}

static EPOCH: Time = Time(Timestamp::UNIX_EPOCH);

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's
/// `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since.0.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
    }
}

/// Seconds until a ready pod becomes available, if it is ready but not yet
/// available: when to look again.
pub fn seconds_until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<i64> {
    let since = ready_since(pod)?;
    let left = since.0.as_second() + i64::from(min_ready_seconds) - now.as_second();
    (min_ready_seconds > 0 && left > 0).then_some(left)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status.as_ref().map(|s| s.container_statuses.iter().flatten().map(|c| c.restart_count).sum()).unwrap_or(0)
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn node(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// Orders `pods` so the ones to delete first come first, as upstream's
/// `ActivePodsWithRanks` does on scale-down: unscheduled before
/// scheduled; pending before unknown before running; not ready before
/// ready; pods sharing their node with more pods of `related` before
/// others; ready for a shorter time before longer; more restarts before
/// fewer; newer before older.
pub fn sort_for_deletion(pods: &mut [&Pod], related: &[&Pod]) {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|p| is_active(p)) {
        *per_node.entry(node(pod)).or_default() += 1;
    }
    let rank = |pod: &Pod| if node(pod).is_empty() { 0 } else { per_node.get(node(pod)).copied().unwrap_or(0) };
    pods.sort_by(|a, b| {
        let scheduled = |p: &Pod| !node(p).is_empty();
        scheduled(a)
            .cmp(&scheduled(b))
            .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
            .then_with(|| is_ready(a).cmp(&is_ready(b)))
            .then_with(|| rank(b).cmp(&rank(a)))
            .then_with(|| match (ready_since(a), ready_since(b)) {
                // More recently ready goes first.
                (Some(x), Some(y)) => y.0.cmp(&x.0),
                _ => Ordering::Equal,
            })
            .then_with(|| restarts(b).cmp(&restarts(a)))
            .then_with(|| created(b).cmp(&created(a)))
    });
}

fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<i64>, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some(name.into()), creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())), ..Default::default() },
            spec: Some(PodSpec { node_name: (!node.is_empty()).then(|| node.into()), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(t).unwrap())),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn scale_down_takes_unscheduled_then_not_ready_then_newest() {
        let pods = [
            pod("old-ready", "n1", "Running", Some(100), 10),
            pod("new-ready", "n2", "Running", Some(100), 20),
            pod("not-ready", "n3", "Running", None, 5),
            pod("pending", "n1", "Pending", None, 1),
            pod("unscheduled", "", "Pending", None, 0),
        ];
        let mut order: Vec<&Pod> = pods.iter().collect();
        let related: Vec<&Pod> = pods.iter().collect();
        sort_for_deletion(&mut order, &related);
        let names: Vec<&str> = order.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect();
        // old-ready shares n1 with pending, so it goes before new-ready.
        assert_eq!(names, ["unscheduled", "pending", "not-ready", "old-ready", "new-ready"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("p", "n", "Running", Some(100), 0);
        let at = |s| Timestamp::from_second(s).unwrap();
        assert!(is_available(&p, 0, at(100)));
        assert!(!is_available(&p, 10, at(105)));
        assert_eq!(seconds_until_available(&p, 10, at(105)), Some(5));
        assert!(is_available(&p, 10, at(110)));
        assert!(!is_active(&Pod { metadata: ObjectMeta { deletion_timestamp: Some(Time(at(1))), ..Default::default() }, ..Default::default() }));
    }
}
