//! The status conditions the namespace controller keeps on a terminating
//! namespace, with upstream's types, reasons and messages, so that
//! `kubectl describe namespace` says why a deletion is stuck.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NamespaceCondition, NamespaceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub const GROUP_VERSION_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// Every type this controller owns, each with the reason and message it
/// carries (status False) when nothing is wrong.
const OWNED: [(&str, &str, &str); 5] = [
    (DISCOVERY_FAILURE, "ResourcesDiscovered", "All resources successfully discovered"),
    (GROUP_VERSION_PARSING_FAILURE, "ParsedGroupVersions", "All legacy kube types successfully parsed"),
    (CONTENT_FAILURE, "ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
    (CONTENT_REMAINING, "ContentRemoved", "All content successfully removed"),
    (FINALIZERS_REMAINING, "ContentRemoved", "All content successfully removed"),
];

/// What one pass over a namespace's content found wrong; what it does not
/// mention is reported as fine.
#[derive(Debug, Default)]
pub struct Findings {
    failing: Vec<NamespaceCondition>,
    content_errors: Vec<String>,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn failing(type_: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition { type_: type_.into(), status: "True".into(), reason: Some(reason.into()), message: Some(message), last_transition_time: Some(now()) }
}

impl Findings {
    pub fn discovery_failed(&mut self, message: String) {
        self.failing.push(failing(DISCOVERY_FAILURE, "DiscoveryFailed", message));
    }

    pub fn group_versions_unparsable(&mut self, message: String) {
        self.failing.push(failing(GROUP_VERSION_PARSING_FAILURE, "GroupVersionParsingFailed", message));
    }

    /// One resource whose content could not be deleted.
    pub fn content_error(&mut self, message: String) {
        self.content_errors.push(message);
    }

    /// What is left: instances per `resource.group`, and per finalizer.
    pub fn remaining(&mut self, by_resource: &BTreeMap<String, usize>, by_finalizer: &BTreeMap<String, usize>) {
        let resources: Vec<String> = by_resource.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r} has {n} resource instances")).collect();
        if !by_resource.is_empty() {
            let message = format!("Some resources are remaining: {}", resources.join(", "));
            self.failing.push(failing(CONTENT_REMAINING, "SomeResourcesRemain", message));
        }
        let finalizers: Vec<String> = by_finalizer.iter().filter(|(_, n)| **n > 0).map(|(f, n)| format!("{f} in {n} resource instances")).collect();
        if !by_finalizer.is_empty() {
            let message = format!("Some finalizers are remaining: {}", finalizers.join(", "));
            self.failing.push(failing(FINALIZERS_REMAINING, "SomeFinalizerRemain", message));
        }
    }

    /// Writes the findings into `status`: every owned type present, with a
    /// new transition time only when its status flips. Returns whether
    /// anything changed (and the status must be written back).
    pub fn apply(mut self, status: &mut NamespaceStatus) -> bool {
        if !self.content_errors.is_empty() {
            self.content_errors.sort();
            let message = format!("Failed to delete all resource types, {} remaining: {}", self.content_errors.len(), self.content_errors.join(", "));
            self.failing.push(failing(CONTENT_FAILURE, "ContentDeletionFailed", message));
        }
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let mut changed = false;
        for (type_, ok_reason, ok_message) in OWNED {
            let wanted = self.failing.iter().find(|c| c.type_ == type_).cloned().unwrap_or_else(|| NamespaceCondition {
                type_: type_.into(),
                status: "False".into(),
                reason: Some(ok_reason.into()),
                message: Some(ok_message.into()),
                last_transition_time: Some(now()),
            });
            match conditions.iter_mut().find(|c| c.type_ == type_) {
                None => {
                    conditions.push(wanted);
                    changed = true;
                }
                Some(old) if old.status != wanted.status || old.reason != wanted.reason || old.message != wanted.message => {
                    if old.status != wanted.status {
                        old.last_transition_time = Some(now());
                    }
                    old.status = wanted.status;
                    old.reason = wanted.reason;
                    old.message = wanted.message;
                    changed = true;
                }
                Some(_) => {}
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(status: &'a NamespaceStatus, type_: &str) -> &'a NamespaceCondition {
        status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn a_clean_pass_sets_every_owned_condition_false() {
        let mut status = NamespaceStatus::default();
        assert!(Findings::default().apply(&mut status));
        assert_eq!(status.conditions.as_ref().unwrap().len(), 5);
        let c = find(&status, CONTENT_REMAINING);
        assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("ContentRemoved")));
        // The same findings again change nothing.
        assert!(!Findings::default().apply(&mut status));
    }

    #[test]
    fn remaining_content_and_errors_read_as_upstream() {
        let mut findings = Findings::default();
        findings.remaining(
            &BTreeMap::from([("pods.".to_string(), 2), ("widgets.example.com".to_string(), 1)]),
            &BTreeMap::from([("example.com/hold".to_string(), 1)]),
        );
        findings.content_error("b failed".into());
        findings.content_error("a failed".into());
        let mut status = NamespaceStatus::default();
        assert!(findings.apply(&mut status));
        let c = find(&status, CONTENT_REMAINING);
        assert_eq!(c.status, "True");
        assert_eq!(c.message.as_deref(), Some("Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances"));
        let c = find(&status, FINALIZERS_REMAINING);
        assert_eq!(c.message.as_deref(), Some("Some finalizers are remaining: example.com/hold in 1 resource instances"));
        let c = find(&status, CONTENT_FAILURE);
        assert_eq!(c.message.as_deref(), Some("Failed to delete all resource types, 2 remaining: a failed, b failed"));
        assert_eq!(find(&status, DISCOVERY_FAILURE).status, "False");
        // Once the content is gone, the same conditions flip back to False.
        assert!(Findings::default().apply(&mut status));
        assert_eq!(find(&status, CONTENT_REMAINING).status, "False");
        assert_eq!(find(&status, CONTENT_FAILURE).reason.as_deref(), Some("ContentDeleted"));
    }
}
