//! What an update may change, resource by resource, as upstream's
//! `ValidateXUpdate` functions decide it. Each function compares the new
//! object with the stored one and returns the causes of a 422.

use serde_json::{json, Map, Value};

use super::array_at;
use crate::status::Cause;

/// Upstream's message for a field that may never change.
pub const IMMUTABLE: &str = "field is immutable";

/// `field` at `pointer` must equal the stored value.
pub fn immutable(new: &Value, old: &Value, pointer: &str, field: &str, causes: &mut Vec<Cause>) {
    let (now, before) = (new.pointer(pointer), old.pointer(pointer));
    if now != before {
        causes.push(Cause::invalid(field, now.unwrap_or(&Value::Null), IMMUTABLE));
    }
}

/// The pod spec fields an update may change, in upstream's words.
const POD_UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// A pod's spec is fixed once created, but for container images,
/// activeDeadlineSeconds (set, or lowered), added tolerations, removed
/// scheduling gates and a negative terminationGracePeriodSeconds set to 1.
/// Everything else, spec.nodeName among it, changes only through
/// subresources (binding) or not at all.
pub fn pod(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let (Some(new_spec), Some(old_spec)) = (new.get("spec").and_then(Value::as_object), old.get("spec").and_then(Value::as_object)) else {
        return causes;
    };
    let mut munged = new_spec.clone();
    for list in ["containers", "initContainers"] {
        let (now, before) = (array_at(new, &format!("/spec/{list}")), array_at(old, &format!("/spec/{list}")));
        if now.len() != before.len() {
            causes.push(Cause::forbidden(format!("spec.{list}"), "pod updates may not add or remove containers"));
            return causes;
        }
        if let Some(Value::Array(items)) = munged.get_mut(list) {
            for (item, was) in items.iter_mut().zip(before) {
                if let (Some(item), Some(image)) = (item.as_object_mut(), was.get("image")) {
                    item.insert("image".into(), image.clone());
                }
            }
        }
    }
    active_deadline(new_spec, old_spec, &mut causes);
    if !causes.is_empty() {
        return causes;
    }
    keep(&mut munged, old_spec, "activeDeadlineSeconds");
    // Tolerations: every stored one stays; new ones may be added.
    let old_tolerations = array_at(old, "/spec/tolerations");
    let new_tolerations = array_at(new, "/spec/tolerations");
    if old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        keep(&mut munged, old_spec, "tolerations");
    }
    // Scheduling gates may only be removed.
    let old_gates = array_at(old, "/spec/schedulingGates");
    let new_gates = array_at(new, "/spec/schedulingGates");
    if new_gates.iter().all(|g| old_gates.contains(g)) {
        keep(&mut munged, old_spec, "schedulingGates");
    } else {
        causes.push(Cause::forbidden("spec.schedulingGates", "only deletion is allowed, but found new scheduling gate"));
        return causes;
    }
    let negative_before = old_spec.get("terminationGracePeriodSeconds").and_then(Value::as_i64).is_some_and(|g| g < 0);
    if negative_before && new_spec.get("terminationGracePeriodSeconds") == Some(&json!(1)) {
        keep(&mut munged, old_spec, "terminationGracePeriodSeconds");
    }
    if &munged != old_spec {
        causes.push(Cause::forbidden("spec", format!("pod updates may not change fields other than {POD_UPDATABLE}\n{}", spec_diff(old_spec, &munged))));
    }
    causes
}

/// Sets `munged[key]` to the stored value (or removes it), so that a change
/// already judged allowed does not count as one.
fn keep(munged: &mut Map<String, Value>, old: &Map<String, Value>, key: &str) {
    match old.get(key) {
        Some(v) => munged.insert(key.into(), v.clone()),
        None => munged.remove(key),
    };
}

/// activeDeadlineSeconds may be set, or lowered, never raised or unset.
fn active_deadline(new: &Map<String, Value>, old: &Map<String, Value>, causes: &mut Vec<Cause>) {
    let field = "spec.activeDeadlineSeconds";
    match (new.get("activeDeadlineSeconds").filter(|v| !v.is_null()), old.get("activeDeadlineSeconds").and_then(Value::as_i64)) {
        (Some(v), before) => match v.as_i64() {
            Some(n) if !(0..=i32::MAX as i64).contains(&n) => causes.push(Cause::invalid(field, v, format!("must be between 0 and {}, inclusive", i32::MAX))),
            Some(n) if before.is_some_and(|b| b < n) => causes.push(Cause::invalid(field, v, "must be less than or equal to previous value")),
            _ => {}
        },
        (None, Some(_)) => causes.push(Cause::invalid(field, &Value::Null, "must not update from a positive integer to nil value")),
        (None, None) => {}
    }
}

/// The changed top-level fields of a pod spec, one line each, so the
/// refusal says what differed (upstream prints a structural diff).
fn spec_diff(old: &Map<String, Value>, new: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_else(|| "<unset>".into());
            format!("  spec.{k}: {} -> {}", show(old.get(k)), show(new.get(k)))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A ConfigMap or Secret with `immutable: true` keeps its data (and stays
/// immutable).
pub fn immutable_data(new: &Value, old: &Value, data_fields: &[&str]) -> Vec<Cause> {
    let mut causes = Vec::new();
    if old.get("immutable") != Some(&json!(true)) {
        return causes;
    }
    const WHY: &str = "field is immutable when `immutable` is set";
    if new.get("immutable") != Some(&json!(true)) {
        causes.push(Cause::forbidden("immutable", WHY));
    }
    for field in data_fields {
        let empty = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty));
        let (now, before) = (new.get(*field), old.get(*field));
        if now != before && !(empty(now) && empty(before)) {
            causes.push(Cause::forbidden(*field, WHY));
        }
    }
    causes
}

/// A Node's podCIDRs (and providerID) may be set once, from nothing.
pub fn node(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    const WHY: &str = "node updates may not change podCIDR except from \"\" to valid";
    let old_cidrs = array_at(old, "/spec/podCIDRs");
    let new_cidrs = array_at(new, "/spec/podCIDRs");
    if !old_cidrs.is_empty() {
        if old_cidrs.len() != new_cidrs.len() {
            causes.push(Cause::forbidden("spec.podCIDRs", WHY));
        } else {
            for (i, (was, now)) in old_cidrs.iter().zip(new_cidrs).enumerate() {
                if was != now {
                    causes.push(Cause::forbidden(format!("spec.podCIDRs[{i}]"), WHY));
                }
            }
        }
    }
    let old_cidr = old.pointer("/spec/podCIDR").and_then(Value::as_str).unwrap_or("");
    if !old_cidr.is_empty() && new.pointer("/spec/podCIDR").and_then(Value::as_str).unwrap_or("") != old_cidr && causes.is_empty() {
        causes.push(Cause::forbidden("spec.podCIDR", WHY));
    }
    let old_provider = old.pointer("/spec/providerID").and_then(Value::as_str).unwrap_or("");
    if !old_provider.is_empty() && new.pointer("/spec/providerID").and_then(Value::as_str) != Some(old_provider) {
        causes.push(Cause::forbidden("spec.providerID", "node updates may not change providerID except from \"\" to valid"));
    }
    causes
}

/// When a Service stops being NodePort or LoadBalancer, the node ports it
/// held go with the type unless the client changed them (upstream's
/// dropTypeDependentFields), so `kubectl edit` of the type alone works.
pub fn drop_service_type_fields(new: &mut Value, old: &Value) {
    let kind = |v: &Value| v.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let (was, now) = (kind(old), kind(new));
    let had_ports = matches!(was.as_str(), "NodePort" | "LoadBalancer");
    if !had_ports || matches!(now.as_str(), "NodePort" | "LoadBalancer") {
        return;
    }
    let old_ports = array_at(old, "/spec/ports").to_vec();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut() {
            let held = old_ports.iter().any(|o| o["port"] == p["port"] && o.get("nodePort").is_some() && o.get("nodePort") == p.get("nodePort"));
            if let (true, Some(p)) = (held, p.as_object_mut()) {
                p.remove("nodePort");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with(spec: Value) -> Value {
        json!({"spec": spec})
    }

    #[test]
    fn pods_change_images_but_not_their_node_or_commands() {
        let old = pod_with(json!({"containers": [{"name": "a", "image": "x:1"}], "nodeName": "n1", "restartPolicy": "Always"}));
        assert!(pod(&pod_with(json!({"containers": [{"name": "a", "image": "x:2"}], "nodeName": "n1", "restartPolicy": "Always"})), &old).is_empty());
        let moved = pod(&pod_with(json!({"containers": [{"name": "a", "image": "x:1"}], "nodeName": "n2", "restartPolicy": "Always"})), &old);
        assert_eq!(moved.len(), 1);
        assert_eq!(moved[0].field, "spec");
        assert!(moved[0].message.starts_with("Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{}", moved[0].message);
        assert!(moved[0].message.contains(r#"spec.nodeName: "n1" -> "n2""#), "{}", moved[0].message);
        let command =
            pod(&pod_with(json!({"containers": [{"name": "a", "image": "x:1", "command": ["sh"]}], "nodeName": "n1", "restartPolicy": "Always"})), &old);
        assert_eq!(command.len(), 1);
        let added = pod(&pod_with(json!({"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y"}], "nodeName": "n1"})), &old);
        assert_eq!(added[0].line(), "spec.containers: Forbidden: pod updates may not add or remove containers");
    }

    #[test]
    fn pod_tolerations_deadlines_and_gates_follow_upstream() {
        let t1 = json!({"key": "a", "operator": "Exists"});
        let t2 = json!({"key": "b", "operator": "Exists"});
        let old = pod_with(json!({"containers": [], "tolerations": [t1], "activeDeadlineSeconds": 100, "schedulingGates": [{"name": "g"}]}));
        let ok = pod_with(json!({"containers": [], "tolerations": [t1, t2], "activeDeadlineSeconds": 50}));
        assert!(pod(&ok, &old).is_empty());
        let dropped = pod_with(json!({"containers": [], "tolerations": [t2], "activeDeadlineSeconds": 100, "schedulingGates": [{"name": "g"}]}));
        assert_eq!(pod(&dropped, &old).len(), 1);
        let raised = pod_with(json!({"containers": [], "tolerations": [t1], "activeDeadlineSeconds": 200, "schedulingGates": [{"name": "g"}]}));
        assert_eq!(pod(&raised, &old)[0].line(), "spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value");
        let unset = pod_with(json!({"containers": [], "tolerations": [t1], "schedulingGates": [{"name": "g"}]}));
        assert_eq!(pod(&unset, &old)[0].line(), "spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive integer to nil value");
        let gated = pod_with(json!({"containers": [], "tolerations": [t1], "activeDeadlineSeconds": 100, "schedulingGates": [{"name": "g"}, {"name": "h"}]}));
        assert_eq!(pod(&gated, &old)[0].field, "spec.schedulingGates");
    }

    #[test]
    fn immutable_configmaps_keep_their_data() {
        let old = json!({"immutable": true, "data": {"a": "1"}});
        assert!(immutable_data(&json!({"immutable": true, "data": {"a": "1"}}), &old, &["data", "binaryData"]).is_empty());
        let changed = immutable_data(&json!({"immutable": true, "data": {"a": "2"}}), &old, &["data", "binaryData"]);
        assert_eq!(changed[0].line(), "data: Forbidden: field is immutable when `immutable` is set");
        let unlocked = immutable_data(&json!({"immutable": false, "data": {"a": "1"}}), &old, &["data", "binaryData"]);
        assert_eq!(unlocked[0].line(), "immutable: Forbidden: field is immutable when `immutable` is set");
        assert!(immutable_data(&json!({"data": {"a": "2"}}), &json!({"data": {"a": "1"}}), &["data"]).is_empty());
    }

    #[test]
    fn node_pod_cidrs_are_set_once() {
        let unset = json!({"spec": {}});
        let set = json!({"spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}});
        assert!(node(&set, &unset).is_empty());
        assert!(node(&set, &set).is_empty());
        let moved = json!({"spec": {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]}});
        assert_eq!(node(&moved, &set)[0].line(), "spec.podCIDRs[0]: Forbidden: node updates may not change podCIDR except from \"\" to valid");
        assert_eq!(node(&unset, &set)[0].field, "spec.podCIDRs");
    }

    #[test]
    fn services_leaving_node_port_drop_their_ports() {
        let old = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}});
        let mut new = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30080}]}});
        drop_service_type_fields(&mut new, &old);
        assert_eq!(new["spec"]["ports"][0].get("nodePort"), None);
        let mut changed = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30081}]}});
        drop_service_type_fields(&mut changed, &old);
        assert_eq!(changed["spec"]["ports"][0]["nodePort"], 30081);
    }
}

/// A write through pods/ephemeralcontainers (upstream's
/// ValidatePodEphemeralContainersUpdate): ephemeral containers are only
/// added, never changed or removed; each new one is named uniquely among
/// all the pod's containers, has an image, sets none of the fields an
/// ephemeral container may not have, and targets one of the pod's
/// containers if it names one.
pub fn ephemeral_containers(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let now = array_at(new, "/spec/ephemeralContainers");
    let before = array_at(old, "/spec/ephemeralContainers");
    let name_of = |c: &Value| c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    for was in before {
        let name = name_of(was);
        match now.iter().position(|c| name_of(c) == name) {
            None => causes.push(Cause::forbidden("spec.ephemeralContainers", format!("existing ephemeral containers {name:?} may not be removed"))),
            Some(i) if &now[i] != was => {
                causes.push(Cause::forbidden(format!("spec.ephemeralContainers[{i}]"), format!("existing ephemeral containers {name:?} may not be changed")))
            }
            Some(_) => {}
        }
    }
    let regular: Vec<String> = ["containers", "initContainers"].iter().flat_map(|l| array_at(new, &format!("/spec/{l}")).iter().map(name_of)).collect();
    let mut seen: Vec<String> = regular.clone();
    for (i, c) in now.iter().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        let name = name_of(c);
        let existing = before.iter().any(|b| name_of(b) == name);
        if name.is_empty() {
            causes.push(Cause::required(format!("{path}.name")));
        } else if seen.contains(&name) {
            causes.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
        } else if !is_dns_label(&name) {
            causes.push(Cause::invalid(format!("{path}.name"), &json!(name), DNS_LABEL_MESSAGE));
        }
        seen.push(name);
        if existing {
            continue;
        }
        if c.get("image").and_then(Value::as_str).is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("{path}.image")));
        }
        for (field, json_name) in [
            ("ports", "ports"),
            ("livenessProbe", "livenessProbe"),
            ("readinessProbe", "readinessProbe"),
            ("startupProbe", "startupProbe"),
            ("lifecycle", "lifecycle"),
            ("resizePolicy", "resizePolicy"),
            ("restartPolicy", "restartPolicy"),
        ] {
            if c.get(json_name).is_some_and(|v| !v.is_null() && v != &json!([]) && v != &json!({})) {
                causes.push(Cause::forbidden(format!("{path}.{field}"), "cannot be set for an Ephemeral Container"));
            }
        }
        if c.get("resources").is_some_and(|r| r.as_object().is_some_and(|m| m.values().any(|v| v != &json!({}) && !v.is_null()))) {
            causes.push(Cause::forbidden(format!("{path}.resources"), "cannot be set for an Ephemeral Container"));
        }
        if let Some(target) = c.get("targetContainerName").and_then(Value::as_str) {
            if !regular.iter().any(|r| r == target) {
                causes.push(Cause { reason: "FieldValueNotFound", field: format!("{path}.targetContainerName"), message: format!("Not found: {target:?}") });
            }
        }
    }
    causes
}

const DNS_LABEL_MESSAGE: &str =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') && !s.starts_with('-') && !s.ends_with('-')
}

#[cfg(test)]
mod ephemeral_tests {
    use super::*;

    fn pod(ephemeral: Value) -> Value {
        json!({"spec": {"containers": [{"name": "app", "image": "x"}], "ephemeralContainers": ephemeral}})
    }

    #[test]
    fn ephemeral_containers_are_only_added() {
        let debugger = json!({"name": "debugger", "image": "busybox", "targetContainerName": "app", "stdin": true, "tty": true});
        let old = pod(json!([]));
        assert!(ephemeral_containers(&pod(json!([debugger.clone()])), &old).is_empty());
        let lines = |causes: Vec<Cause>| causes.iter().map(Cause::line).collect::<Vec<_>>();
        let with = pod(json!([debugger.clone()]));
        assert_eq!(
            lines(ephemeral_containers(&pod(json!([])), &with)),
            vec!["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debugger\" may not be removed"]
        );
        let changed = json!({"name": "debugger", "image": "other"});
        assert_eq!(
            lines(ephemeral_containers(&pod(json!([changed])), &with)),
            vec!["spec.ephemeralContainers[0]: Forbidden: existing ephemeral containers \"debugger\" may not be changed"]
        );
        let bad = json!([{"name": "app", "image": "busybox"}, {"name": "d2", "ports": [{"containerPort": 80}], "targetContainerName": "nope"}]);
        assert_eq!(
            lines(ephemeral_containers(&pod(bad), &old)),
            vec![
                "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
                "spec.ephemeralContainers[1].image: Required value",
                "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[1].targetContainerName: Not found: \"nope\"",
            ]
        );
    }
}
