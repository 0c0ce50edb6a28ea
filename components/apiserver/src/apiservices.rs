//! apiregistration.k8s.io APIServices: one per group-version this server
//! serves, as kube-apiserver's automatic registration writes them, made
//! from the resource table at read time (kubelab has no aggregation layer,
//! so there is nothing else to register and nothing to store). All are
//! `Local` and always Available.

use std::sync::OnceLock;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::resources::RESOURCES;

/// Why writes are refused: upstream would accept an APIService for an
/// aggregated API, which kubelab cannot serve.
pub const READ_ONLY: &str =
    "apiservices are computed from the API groups this server serves: kubelab has no aggregation layer, so they cannot be created, updated or deleted";

/// kube-apiserver's group and version priorities of the built-in groups
/// (`groupPriorityMinimum`, `versionPriority`). A group-version missing
/// here gets no APIService, as upstream skips one it has no priority for;
/// apiregistration.k8s.io itself is served by the aggregator, not
/// registered.
fn priority(group: &str, version: &str) -> Option<(i32, i32)> {
    Some(match (group, version) {
        ("", "v1") => (18000, 1),
        ("apps", "v1") => (17800, 15),
        ("events.k8s.io", "v1") => (17750, 15),
        ("authentication.k8s.io", "v1") => (17700, 15),
        ("authorization.k8s.io", "v1") => (17600, 15),
        ("autoscaling", "v1") => (17500, 15),
        ("autoscaling", "v2") => (17500, 30),
        ("batch", "v1") => (17400, 15),
        ("certificates.k8s.io", "v1") => (17300, 15),
        ("networking.k8s.io", "v1") => (17200, 15),
        ("policy", "v1") => (17100, 15),
        ("rbac.authorization.k8s.io", "v1") => (17000, 15),
        ("storage.k8s.io", "v1") => (16800, 15),
        ("apiextensions.k8s.io", "v1") => (16700, 15),
        ("admissionregistration.k8s.io", "v1") => (16700, 15),
        ("scheduling.k8s.io", "v1") => (16600, 15),
        ("coordination.k8s.io", "v1") => (16500, 15),
        ("node.k8s.io", "v1") => (16300, 15),
        ("discovery.k8s.io", "v1") => (16200, 15),
        ("resource.k8s.io", "v1beta2") => (16200, 15),
        ("flowcontrol.apiserver.k8s.io", "v1") => (16100, 21),
        _ => return None,
    })
}

/// When this server began serving: the objects' creation time.
fn started() -> &'static str {
    static STARTED: OnceLock<String> = OnceLock::new();
    STARTED.get_or_init(crate::meta::now_rfc3339)
}

/// A uid that stays the same for a name across restarts, in UUID form.
fn uid_of(name: &str) -> String {
    let h = Sha256::digest(format!("apiservice/{name}").as_bytes());
    let hex: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Upstream's name: `<version>.<group>` (`v1.` for the core group).
pub fn name_of(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

fn apiservice(group: &str, version: &str, (group_priority, version_priority): (i32, i32)) -> Value {
    let name = name_of(group, version);
    json!({
        "kind": "APIService",
        "apiVersion": "apiregistration.k8s.io/v1",
        "metadata": {
            "name": name,
            "uid": uid_of(&name),
            "creationTimestamp": started(),
            "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"},
        },
        "spec": {"group": group, "version": version, "groupPriorityMinimum": group_priority, "versionPriority": version_priority},
        "status": {"conditions": [{
            "type": "Available",
            "status": "True",
            "lastTransitionTime": started(),
            "reason": "Local",
            "message": "Local APIServices are always available",
        }]},
    })
}

/// Every APIService, sorted by name as a list from etcd would be.
pub fn all() -> Vec<Value> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !seen.contains(&(r.group, r.version)) {
            seen.push((r.group, r.version));
        }
    }
    let mut objects: Vec<Value> = seen.into_iter().filter_map(|(g, v)| priority(g, v).map(|p| apiservice(g, v, p))).collect();
    objects.sort_by(|a, b| a["metadata"]["name"].as_str().cmp(&b["metadata"]["name"].as_str()));
    objects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_group_version_but_the_aggregators_own_has_one() {
        let objects = all();
        let names: Vec<&str> = objects.iter().filter_map(|o| o["metadata"]["name"].as_str()).collect();
        for r in RESOURCES.iter().filter(|r| r.group != "apiregistration.k8s.io") {
            assert!(names.contains(&name_of(r.group, r.version).as_str()), "{} has no APIService", r.api_version());
        }
        assert!(!names.iter().any(|n| n.ends_with(".apiregistration.k8s.io")));
        let v2 = objects.iter().find(|o| o["metadata"]["name"] == "v2.autoscaling").unwrap();
        assert_eq!(v2["spec"], json!({"group": "autoscaling", "version": "v2", "groupPriorityMinimum": 17500, "versionPriority": 30}));
        let core = objects.iter().find(|o| o["metadata"]["name"] == "v1.").unwrap();
        assert_eq!(core["spec"]["group"], "");
        assert_eq!(core["status"]["conditions"][0]["reason"], "Local");
        assert_eq!(uid_of("v1.apps"), uid_of("v1.apps"));
    }
}
