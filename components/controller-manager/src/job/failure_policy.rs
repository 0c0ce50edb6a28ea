//! `podFailurePolicy`: what a failed pod means for its Job, decided by the
//! first rule that matches it, as upstream's job controller reads the
//! rules. A rule matches on a container's exit code (`In` or `NotIn` its
//! values; a container that exited 0 matches nothing) or on a condition
//! of the pod; its action fails the Job (`FailJob`), fails the pod's index
//! (`FailIndex`), leaves the failure uncounted (`Ignore`) or counts it as
//! any failure (`Count`). A pod no rule matches is counted. Pure.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

/// What a failed pod's matching rule says.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The Job fails at once; the message says which pod and rule.
    FailJob(String),
    /// The pod's index fails for good (with `backoffLimitPerIndex`).
    FailIndex,
    /// Not counted towards any limit.
    Ignore,
    /// Counted as a failure, as if no rule had matched.
    Count,
}

/// The verdict of the first rule of `policy` that matches the failed
/// `pod`; None when no rule matches.
pub fn judge(policy: &PodFailurePolicy, pod: &Pod) -> Option<Verdict> {
    let status = pod.status.as_ref();
    let namespace = pod.namespace().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let message = if let Some(requirement) = &rule.on_exit_codes {
            let containers = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten();
            let init = status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten();
            containers.chain(init).find(|c| exit_code_matches(c, requirement)).map(|c| {
                let code = c.state.as_ref().and_then(|s| s.terminated.as_ref()).map_or(0, |t| t.exit_code);
                format!(
                    "Container {} for pod {namespace}/{} failed with exit code {code} matching {} rule at index {index}",
                    c.name,
                    pod.name_any(),
                    rule.action
                )
            })
        } else {
            let conditions = status.and_then(|s| s.conditions.as_ref());
            rule.on_pod_conditions.iter().flatten().find_map(|pattern| {
                let status = pattern.status.as_str();
                let held = conditions.into_iter().flatten().any(|c| c.type_ == pattern.type_ && c.status == status);
                held.then(|| format!("Pod {namespace}/{} has condition {} matching {} rule at index {index}", pod.name_any(), pattern.type_, rule.action))
            })
        };
        let Some(message) = message else { continue };
        return Some(match rule.action.as_str() {
            "FailJob" => Verdict::FailJob(message),
            "FailIndex" => Verdict::FailIndex,
            "Ignore" => Verdict::Ignore,
            _ => Verdict::Count,
        });
    }
    None
}

/// Whether a container that has ended, with a code other than 0, is one
/// `requirement` names.
fn exit_code_matches(container: &ContainerStatus, requirement: &PodFailurePolicyOnExitCodesRequirement) -> bool {
    let Some(code) = container.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code) else { return false };
    if code == 0 || requirement.container_name.as_ref().is_some_and(|name| *name != container.name) {
        return false;
    }
    let listed = requirement.values.contains(&code);
    match requirement.operator.as_str() {
        "In" => listed,
        "NotIn" => !listed,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    fn failed_pod(exit_codes: &[(&str, i32)], conditions: &[(&str, &str)]) -> Pod {
        let containers: Vec<serde_json::Value> = exit_codes
            .iter()
            .map(|(name, code)| json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": code}}}))
            .collect();
        let conditions: Vec<serde_json::Value> = conditions.iter().map(|(t, s)| json!({"type": t, "status": s})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": containers, "conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
        ]));
        assert_eq!(judge(&p, &failed_pod(&[("main", 1)], &[("DisruptionTarget", "True")])), Some(Verdict::Ignore));
        assert_eq!(
            judge(&p, &failed_pod(&[("main", 42)], &[])),
            Some(Verdict::FailJob("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()))
        );
        // Another container's 42 is not the rule's; NotIn [1, 2] takes it.
        assert_eq!(judge(&p, &failed_pod(&[("side", 42)], &[])), Some(Verdict::Count));
        assert_eq!(judge(&p, &failed_pod(&[("main", 2)], &[])), None);
        // Exit code 0 matches no rule, NotIn included.
        assert_eq!(judge(&p, &failed_pod(&[("main", 0)], &[])), None);
    }

    #[test]
    fn conditions_match_on_type_and_status() {
        let p = policy(json!([{"action": "FailJob", "onPodConditions": [{"type": "ConfigIssue", "status": "True"}]}]));
        assert_eq!(judge(&p, &failed_pod(&[], &[("ConfigIssue", "False")])), None);
        assert_eq!(
            judge(&p, &failed_pod(&[], &[("ConfigIssue", "True")])),
            Some(Verdict::FailJob("Pod ns/p has condition ConfigIssue matching FailJob rule at index 0".into()))
        );
        let p = policy(json!([{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3]}}]));
        assert_eq!(judge(&p, &failed_pod(&[("main", 3)], &[])), Some(Verdict::FailIndex));
    }
}
