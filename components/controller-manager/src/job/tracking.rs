//! Counting finished pods exactly once, as upstream's job controller does
//! with the `batch.kubernetes.io/job-tracking` finalizer: every pod of a
//! Job carries it until the Job's status has counted the pod. A finished
//! pod's uid goes first into `status.uncountedTerminatedPods`, then its
//! finalizer is removed, then it moves into `succeeded` or `failed`; a
//! controller that stops between two steps resumes from the status, and a
//! pod cannot vanish before it is counted.

use std::collections::HashSet;

use k8s_openapi::api::batch::v1::UncountedTerminatedPods;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;

use crate::pods::phase;

pub const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

pub fn is_tracked(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == FINALIZER)
}

/// Will not run again: it ended, or it is being deleted (upstream counts a
/// deleted pod as failed unless it succeeded, since it may never reach a
/// terminal phase).
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed") || pod.metadata.deletion_timestamp.is_some()
}

pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

/// Uids in `status.uncountedTerminatedPods`, by outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Uncounted {
    pub succeeded: Vec<String>,
    pub failed: Vec<String>,
}

impl Uncounted {
    pub fn from_status(u: Option<&UncountedTerminatedPods>) -> Uncounted {
        Uncounted { succeeded: u.and_then(|u| u.succeeded.clone()).unwrap_or_default(), failed: u.and_then(|u| u.failed.clone()).unwrap_or_default() }
    }

    pub fn to_status(&self) -> UncountedTerminatedPods {
        let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        UncountedTerminatedPods { succeeded: some(&self.succeeded), failed: some(&self.failed) }
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.succeeded.iter().chain(&self.failed).any(|u| u == uid)
    }

    pub fn is_empty(&self) -> bool {
        self.succeeded.is_empty() && self.failed.is_empty()
    }

    /// Adds the finished, still tracked pods not yet listed; false if none.
    /// `removed` holds uids whose finalizer this controller removed and its
    /// cache does not show yet: they were counted already.
    pub fn add_finished(&mut self, pods: &[Pod], removed: &HashSet<String>) -> bool {
        let mut added = false;
        for pod in pods.iter().filter(|p| is_tracked(p) && is_finished(p)) {
            let uid = pod.uid().unwrap_or_default();
            if uid.is_empty() || self.contains(&uid) || removed.contains(&uid) {
                continue;
            }
            if is_succeeded(pod) {
                self.succeeded.push(uid);
            } else {
                self.failed.push(uid);
            }
            added = true;
        }
        added
    }
}

/// Removes the tracking finalizer from `pod`; a pod already gone is fine.
pub async fn release(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let kept: Vec<&String> = pod.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    // The resourceVersion makes a concurrent change of the list a conflict
    // (retried on the next sync) instead of a lost finalizer of another.
    let patch = serde_json::json!({"metadata": {"finalizers": kept, "resourceVersion": pod.resource_version()}});
    match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(uid: &str, phase: &str, tracked: bool, deleted: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                finalizers: tracked.then(|| vec![FINALIZER.to_string()]),
                deletion_timestamp: deleted.then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
                ..Default::default()
            },
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn finished_pods_are_listed_once() {
        let pods = [
            pod("a", "Succeeded", true, false),
            pod("b", "Failed", true, false),
            pod("c", "Running", true, true),
            pod("d", "Running", true, false),
            pod("e", "Succeeded", false, false),
            pod("f", "Succeeded", true, false),
        ];
        let mut u = Uncounted::default();
        let removed: HashSet<String> = ["f".to_string()].into();
        assert!(u.add_finished(&pods, &removed));
        assert_eq!(u, Uncounted { succeeded: vec!["a".into()], failed: vec!["b".into(), "c".into()] });
        assert!(!u.add_finished(&pods, &removed));
        assert_eq!(Uncounted::from_status(Some(&u.to_status())), u);
    }
}
