//! rbac.authorization.k8s.io/v1: Roles, ClusterRoles and their bindings,
//! stored and checked as upstream checks them. Nothing enforces them yet:
//! every authenticated client may do everything (README).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{age, array_at, col, default_cells, name, str_at, wide, Column, Strategy, AGE, DEFAULT_COLUMNS, NAME};
use crate::status::Cause;

pub const GROUP: &str = "rbac.authorization.k8s.io";

fn strings(rule: &Value, key: &str) -> Vec<String> {
    array_at(rule, &format!("/{key}")).iter().filter_map(Value::as_str).map(String::from).collect()
}

/// Upstream's ValidatePolicyRule: a rule names verbs, and either resources
/// (with their API groups) or non-resource URLs (cluster roles only).
fn validate_rules(obj: &Value, namespaced: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, rule) in array_at(obj, "/rules").iter().enumerate() {
        let at = format!("rules[{i}]");
        if strings(rule, "verbs").is_empty() {
            causes.push(Cause { message: "Required value: verbs must contain at least one value".into(), ..Cause::required(format!("{at}.verbs")) });
        }
        let urls = rule.get("nonResourceURLs").filter(|u| !u.is_null());
        let has_urls = urls.is_some_and(|u| u.as_array().is_some_and(|a| !a.is_empty()));
        if has_urls {
            let urls = urls.expect("checked above");
            if namespaced {
                causes.push(Cause::invalid(format!("{at}.nonResourceURLs"), urls, "namespaced rules cannot apply to non-resource URLs"));
            }
            if !strings(rule, "apiGroups").is_empty() || !strings(rule, "resources").is_empty() {
                causes.push(Cause::invalid(format!("{at}.nonResourceURLs"), urls, "rules cannot apply to both regular resources and non-resource URLs"));
            }
            continue;
        }
        if strings(rule, "apiGroups").is_empty() {
            causes.push(Cause {
                message: "Required value: resource rules must supply at least one api group".into(),
                ..Cause::required(format!("{at}.apiGroups"))
            });
        }
        if strings(rule, "resources").is_empty() {
            causes.push(Cause {
                message: "Required value: resource rules must supply at least one resource".into(),
                ..Cause::required(format!("{at}.resources"))
            });
        }
    }
    causes
}

/// Roles and ClusterRoles: only the latter may name non-resource URLs.
pub struct Roles {
    pub cluster: bool,
}
impl Strategy for Roles {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_rules(obj, !self.cluster)
    }
    fn tracks_generation(&self) -> bool {
        false
    }
    fn columns(&self) -> &'static [Column] {
        DEFAULT_COLUMNS
    }
    fn cells(&self, obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        default_cells(obj)
    }
}

/// Upstream's defaults: a roleRef's group, and each subject's group by kind.
fn default_binding(obj: &mut Value) {
    if let Some(r) = obj.get_mut("roleRef").filter(|r| r.is_object()) {
        if r.get("apiGroup").and_then(Value::as_str).is_none_or(str::is_empty) {
            r["apiGroup"] = json!(GROUP);
        }
    }
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects.iter_mut().filter(|s| s.is_object()) {
            // A ServiceAccount's group is the core one, "", which Go omits.
            let user_or_group = matches!(s["kind"].as_str(), Some("User" | "Group"));
            if user_or_group && s.get("apiGroup").and_then(Value::as_str).is_none_or(str::is_empty) {
                s["apiGroup"] = json!(GROUP);
            }
        }
    }
}

fn validate_binding(obj: &Value, cluster: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    match obj.get("roleRef").filter(|r| r.is_object()) {
        None => causes.push(Cause::required("roleRef")),
        Some(r) => {
            let group = &r["apiGroup"];
            if group != GROUP {
                causes.push(Cause::not_supported("roleRef.apiGroup", group, &[GROUP]));
            }
            let kinds: &[&str] = if cluster { &["ClusterRole"] } else { &["ClusterRole", "Role"] };
            if !r["kind"].as_str().is_some_and(|k| kinds.contains(&k)) {
                causes.push(Cause::not_supported("roleRef.kind", &r["kind"], kinds));
            }
            if r["name"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required("roleRef.name"));
            }
        }
    }
    for (i, s) in array_at(obj, "/subjects").iter().enumerate() {
        let at = format!("subjects[{i}]");
        if s["name"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("{at}.name")));
        }
        match s["kind"].as_str() {
            Some("ServiceAccount") => {
                if s.get("apiGroup").is_some_and(|g| !g.is_null() && g != "") {
                    causes.push(Cause::not_supported(format!("{at}.apiGroup"), &s["apiGroup"], &[""]));
                }
                if cluster && s["namespace"].as_str().is_none_or(str::is_empty) {
                    causes.push(Cause::required(format!("{at}.namespace")));
                }
            }
            Some("User" | "Group") => {
                if s["apiGroup"] != GROUP {
                    causes.push(Cause::not_supported(format!("{at}.apiGroup"), &s["apiGroup"], &[GROUP]));
                }
            }
            _ => causes.push(Cause::not_supported(format!("{at}.kind"), &s["kind"], &["ServiceAccount", "User", "Group"])),
        }
    }
    causes
}

fn validate_binding_update(new: &Value, old: &Value) -> Vec<Cause> {
    if new.get("roleRef") != old.get("roleRef") {
        return vec![Cause::invalid("roleRef", new.get("roleRef").unwrap_or(&Value::Null), "cannot change roleRef")];
    }
    Vec::new()
}

/// The binding's subjects as kubectl's wide columns list them.
fn subjects_of(obj: &Value) -> (String, String, String) {
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for s in array_at(obj, "/subjects") {
        let name = s["name"].as_str().unwrap_or("");
        match s["kind"].as_str() {
            Some("User") => users.push(name.to_string()),
            Some("Group") => groups.push(name.to_string()),
            Some("ServiceAccount") => accounts.push(format!("{}/{name}", s["namespace"].as_str().unwrap_or(""))),
            _ => {}
        }
    }
    (users.join(", "), groups.join(", "), accounts.join(", "))
}

fn binding_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (users, groups, accounts) = subjects_of(obj);
    let role = format!("{}/{}", str_at(obj, "/roleRef/kind").unwrap_or(""), str_at(obj, "/roleRef/name").unwrap_or(""));
    vec![json!(name(obj)), json!(role), json!(age(obj, now)), json!(users), json!(groups), json!(accounts)]
}

const ROLE_REF: Column = col("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.");

/// RoleBindings and ClusterRoleBindings: the latter name ClusterRoles only,
/// and their service accounts with a namespace.
pub struct Bindings {
    pub cluster: bool,
}
impl Strategy for Bindings {
    fn default(&self, obj: &mut Value) {
        default_binding(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_binding(obj, self.cluster)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        validate_binding_update(new, old)
    }
    fn tracks_generation(&self) -> bool {
        false
    }
    fn columns(&self) -> &'static [Column] {
        const NAMESPACED: &[Column] = &[
            NAME,
            ROLE_REF,
            AGE,
            wide("Users", "string", "Users in the roleBinding"),
            wide("Groups", "string", "Groups in the roleBinding"),
            wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
        ];
        const CLUSTER: &[Column] = &[
            NAME,
            ROLE_REF,
            AGE,
            wide("Users", "string", "Users in the clusterRoleBinding"),
            wide("Groups", "string", "Groups in the clusterRoleBinding"),
            wide("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding"),
        ];
        if self.cluster {
            CLUSTER
        } else {
            NAMESPACED
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        binding_cells(obj, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE_BINDINGS: Bindings = Bindings { cluster: false };
    const CLUSTER_ROLE_BINDINGS: Bindings = Bindings { cluster: true };

    fn lines(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::line).collect()
    }

    #[test]
    fn rules_name_verbs_and_what_they_apply_to() {
        let role = json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}, {"verbs": []}, {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]});
        assert_eq!(
            lines(Roles { cluster: false }.validate(&role)),
            [
                "rules[1].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].resources: Required value: resource rules must supply at least one resource",
                "rules[2].nonResourceURLs: Invalid value: [\"/healthz\"]: namespaced rules cannot apply to non-resource URLs",
            ]
        );
        assert_eq!(lines(Roles { cluster: true }.validate(&role)).len(), 3);
    }

    #[test]
    fn bindings_default_groups_and_keep_their_role() {
        let mut b = json!({"metadata": {"name": "read"}, "roleRef": {"kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "default", "namespace": "dev"}]});
        ROLE_BINDINGS.default(&mut b);
        assert_eq!(b["roleRef"]["apiGroup"], GROUP);
        assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
        assert!(b["subjects"][1].get("apiGroup").is_none(), "a ServiceAccount's group is left out, as Go omits it");
        assert!(ROLE_BINDINGS.validate(&b).is_empty());
        assert_eq!(lines(CLUSTER_ROLE_BINDINGS.validate(&b)), ["roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\""]);
        let cells = ROLE_BINDINGS.cells(&b, Utc::now());
        assert_eq!((cells[1].clone(), cells[3].clone(), cells[5].clone()), (json!("Role/reader"), json!("jane"), json!("dev/default")));
        let mut changed = b.clone();
        changed["roleRef"]["name"] = json!("writer");
        assert_eq!(ROLE_BINDINGS.validate_update(&changed, &b).len(), 1);
    }
}
