//! The cluster roles every cluster starts with, as upstream's RBAC
//! bootstrap policy names them: `cluster-admin` (everything, bound to the
//! `system:masters` group) and the user-facing `admin`, `edit` and `view`.
//! Upstream aggregates the last three from labelled roles; ours list their
//! rules directly, written from the resource table, so a resource added to
//! the table is covered without a second list to keep.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::resources::{Resource, RESOURCES};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

/// What `view` leaves out: secrets (they hold credentials), RBAC objects
/// (who may do what), leases (components' locks).
fn hidden_from_view(r: &Resource) -> bool {
    matches!(r.plural, "secrets" | "roles" | "rolebindings" | "leases")
}

/// Only `admin` manages who may do what in a namespace.
fn admin_only(r: &Resource) -> bool {
    matches!(r.plural, "roles" | "rolebindings" | "leases")
}

/// The namespaced resources `pick` selects, and the subresources `subs`
/// of theirs, grouped by API group: one rule per group.
fn rules(pick: impl Fn(&Resource) -> bool, subs: &[&str], verbs: &[&str]) -> Vec<Value> {
    let mut by_group: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    // Each stored resource once (its other versions share its name).
    for r in RESOURCES.iter().filter(|r| r.namespaced && r.stored() && pick(r)) {
        let names = by_group.entry(r.group).or_default();
        names.push(r.plural.to_string());
        names.extend(r.subresources.iter().filter(|s| subs.contains(s)).map(|s| format!("{}/{s}", r.plural)));
    }
    by_group
        .into_iter()
        .map(|(group, mut resources)| {
            resources.sort();
            json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
        })
        .collect()
}

fn role(name: &str, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules,
    })
}

fn view_rules() -> Vec<Value> {
    let mut rules = rules(|r| !hidden_from_view(r), &["status", "scale", "log"], READ);
    rules.push(json!({"apiGroups": [""], "resources": ["namespaces", "namespaces/status"], "verbs": READ}));
    rules
}

fn edit_rules() -> Vec<Value> {
    let mut rules = view_rules();
    rules.extend(self::rules(|r| r.plural == "secrets", &[], READ));
    rules.extend(self::rules(|r| !admin_only(r), &["scale"], WRITE));
    rules.push(json!({"apiGroups": [""], "resources": ["pods/attach", "pods/exec", "pods/portforward"], "verbs": ["create", "get"]}));
    rules.push(json!({"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}));
    rules
}

/// The default cluster roles.
pub fn cluster_roles() -> Vec<Value> {
    let mut admin = edit_rules();
    admin.extend(rules(|r| matches!(r.plural, "roles" | "rolebindings"), &[], &[READ, WRITE].concat()));
    vec![
        role("cluster-admin", vec![json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}), json!({"nonResourceURLs": ["*"], "verbs": ["*"]})]),
        role("admin", admin),
        role("edit", edit_rules()),
        role("view", view_rules()),
    ]
}

/// The default cluster role bindings: `system:masters` are cluster admins.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": "cluster-admin",
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}],
    })]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::rbac::Roles;
    use crate::strategy::Strategy;

    fn allows(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
        role["rules"].as_array().unwrap().iter().any(|r| {
            let has = |key: &str, want: &str| r[key].as_array().is_some_and(|a| a.iter().any(|v| v == want || v == "*"));
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    }

    #[test]
    fn roles_grow_from_view_to_admin() {
        let roles = cluster_roles();
        let by_name = |n: &str| roles.iter().find(|r| r["metadata"]["name"] == n).unwrap().clone();
        let (view, edit, admin, root) = (by_name("view"), by_name("edit"), by_name("admin"), by_name("cluster-admin"));
        for role in &roles {
            assert!(Roles { cluster: true }.validate(role).is_empty(), "{role}");
        }
        assert!(allows(&view, "apps", "deployments", "list") && !allows(&view, "apps", "deployments", "update"));
        assert!(allows(&view, "batch", "jobs/status", "get") && allows(&view, "", "pods/log", "get"));
        assert!(!allows(&view, "", "secrets", "get"));
        assert!(allows(&edit, "", "secrets", "get") && allows(&edit, "apps", "deployments/scale", "patch"));
        assert!(allows(&edit, "", "pods/exec", "create") && !allows(&edit, "rbac.authorization.k8s.io", "roles", "create"));
        assert!(allows(&admin, "rbac.authorization.k8s.io", "rolebindings", "create"));
        assert!(allows(&root, "anything", "whatever", "escalate"));
    }
}
