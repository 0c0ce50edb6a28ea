//! The fields Go's encoding/json writes even when they hold their zero
//! value: numbers, bools and strings without `omitempty` (a DaemonSet's
//! `status.numberReady: 0`, a ReplicaSet's `status.replicas: 0`), structs
//! that are no pointer (a container's `resources: {}`, always written) and
//! metav1.Time in them (`creationTimestamp: null` in a pod template).
//! Clients built from upstream's types (the Python client's models) require
//! them; k8s-openapi's Options drop them.
//!
//! Which fields those are is decided from upstream's Go types once, by
//! `zero_values/generate.py`, into `zero_values/table.json` (per apiVersion
//! and kind, for every kind of the groups served). The store fills them in
//! on every write, after defaulting, so stored objects have them; objects
//! read from etcd (written before, or by another apiserver) are filled
//! again as they are read (`registry::decode`, the watch cache), where the
//! walk costs little and an object that already has them is left as read.
//! Only what exists is filled in: a pointer, list or map that is absent
//! stays absent, as does any kind the table does not know.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

enum How {
    /// Set to this when absent (or null).
    Zero(Value),
    /// Set to {} when absent (or null), then the struct's rules apply in it.
    Fill(Option<usize>),
    /// The struct's rules apply in it when it is an object.
    In(usize),
    /// The struct's rules apply in every object of the list.
    Each(usize),
    /// The struct's rules apply in every object value of the map.
    Values(usize),
}

struct Rule {
    field: String,
    how: How,
}

struct Table {
    /// "apiVersion kind" → its struct.
    kinds: HashMap<String, usize>,
    structs: Vec<Vec<Rule>>,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| parse(include_str!("../zero_values/table.json")));

fn parse(text: &str) -> Table {
    let doc: Value = serde_json::from_str(text).expect("zero_values/table.json is JSON");
    let types = doc["types"].as_object().expect("the table has types");
    let index: HashMap<&str, usize> = types.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let structs = types
        .values()
        .map(|rules| {
            rules
                .as_array()
                .expect("a struct's rules are a list")
                .iter()
                .map(|r| {
                    let field = r[0].as_str().expect("a rule names its field").to_string();
                    let target = || r[2].as_str().and_then(|t| index.get(t).copied());
                    let known = || target().unwrap_or_else(|| panic!("the table names a struct it lacks: {r}"));
                    let how = match r[1].as_str() {
                        Some("zero") => How::Zero(r[2].clone()),
                        // A struct without rules of its own is left out of the table.
                        Some("fill") => How::Fill(target()),
                        Some("in") => How::In(known()),
                        Some("each") => How::Each(known()),
                        Some("values") => How::Values(known()),
                        other => panic!("unknown rule {other:?} in zero_values/table.json"),
                    };
                    Rule { field, how }
                })
                .collect()
        })
        .collect();
    let kinds =
        doc["kinds"].as_object().expect("the table has kinds").iter().map(|(k, t)| (k.clone(), index[t.as_str().expect("a kind names its struct")])).collect();
    Table { kinds, structs }
}

/// Whether the table knows the kind (`apiVersion` as in objects: "v1",
/// "apps/v1").
pub fn knows(api_version: &str, kind: &str) -> bool {
    TABLE.kinds.contains_key(&format!("{api_version} {kind}"))
}

/// Fills in the zero values Go would write into `obj`, by its own
/// apiVersion and kind; returns whether anything changed.
pub fn fill(obj: &mut Value) -> bool {
    let (Some(api_version), Some(kind)) = (obj.get("apiVersion").and_then(Value::as_str), obj.get("kind").and_then(Value::as_str)) else {
        return false;
    };
    let Some(&root) = TABLE.kinds.get(&format!("{api_version} {kind}")) else {
        return false;
    };
    match obj.as_object_mut() {
        Some(map) => fill_struct(&TABLE, root, map),
        None => false,
    }
}

fn fill_struct(table: &Table, id: usize, obj: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    for rule in &table.structs[id] {
        match &rule.how {
            How::Zero(zero) => match obj.get_mut(&rule.field) {
                None => {
                    obj.insert(rule.field.clone(), zero.clone());
                    changed = true;
                }
                // Go decodes null as the zero value, and writes that.
                Some(slot) if slot.is_null() && !zero.is_null() => {
                    *slot = zero.clone();
                    changed = true;
                }
                Some(_) => {}
            },
            How::Fill(inner) => {
                if !obj.contains_key(&rule.field) {
                    obj.insert(rule.field.clone(), Value::Null);
                }
                let slot = obj.get_mut(&rule.field).expect("set above");
                if slot.is_null() {
                    *slot = Value::Object(Map::new());
                    changed = true;
                }
                if let (Some(inner), Some(map)) = (inner, slot.as_object_mut()) {
                    changed |= fill_struct(table, *inner, map);
                }
            }
            How::In(inner) => {
                if let Some(map) = obj.get_mut(&rule.field).and_then(Value::as_object_mut) {
                    changed |= fill_struct(table, *inner, map);
                }
            }
            How::Each(inner) => {
                if let Some(items) = obj.get_mut(&rule.field).and_then(Value::as_array_mut) {
                    for map in items.iter_mut().filter_map(Value::as_object_mut) {
                        changed |= fill_struct(table, *inner, map);
                    }
                }
            }
            How::Values(inner) => {
                if let Some(values) = obj.get_mut(&rule.field).and_then(Value::as_object_mut) {
                    for map in values.values_mut().filter_map(Value::as_object_mut) {
                        changed |= fill_struct(table, *inner, map);
                    }
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filled(mut obj: Value) -> Value {
        fill(&mut obj);
        obj
    }

    #[test]
    fn every_served_kind_is_in_the_table() {
        // Computed objects (apiservices) are made whole by the server.
        for r in crate::resources::RESOURCES.iter().filter(|r| r.computed.is_none()) {
            assert!(knows(&r.api_version(), r.kind), "{} {} is not in zero_values/table.json: add its package to generate.py", r.api_version(), r.kind);
        }
    }

    #[test]
    fn a_fresh_daemonset_has_its_counters_and_template_as_go_writes_them() {
        let ds = filled(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}},
            "status": {}}));
        assert_eq!(ds["status"], json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0}));
        assert_eq!(ds["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(ds["spec"]["template"]["metadata"], json!({"labels": {"a": "b"}, "creationTimestamp": null}));
        assert_eq!(ds["spec"]["updateStrategy"], json!({}));
        let c = &ds["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["resources"], json!({}));
        // Pointers and lists that are absent stay so: no probe, no env.
        assert!(c.get("livenessProbe").is_none() && c.get("env").is_none());
        assert_eq!(c["ports"], json!([{"containerPort": 80}]));
    }

    #[test]
    fn replicaset_and_deployment_status_as_go_writes_them() {
        let rs = filled(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}}));
        assert_eq!(rs["status"], json!({"replicas": 0}));
        assert_eq!(rs["spec"]["template"], json!({"metadata": {"creationTimestamp": null}, "spec": {}}));
        // Every counter of a Deployment's status is omitempty.
        let d = filled(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "t"}]}}));
        assert_eq!(
            d["status"],
            json!({"replicas": 2, "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "t", "lastTransitionTime": null}]})
        );
        assert_eq!(d["spec"]["strategy"], json!({}));
    }

    #[test]
    fn pods_get_what_the_kubelet_would_not_send() {
        let pod = filled(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "state": {"running": {}}}],
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "t"}]}}));
        let s = &pod["status"]["containerStatuses"][0];
        assert_eq!(s["ready"], false);
        assert_eq!(s["restartCount"], 0);
        assert_eq!((s["image"].as_str(), s["imageID"].as_str()), (Some(""), Some("")));
        assert_eq!(s["state"], json!({"running": {"startedAt": null}}));
        assert_eq!(s["lastState"], json!({}));
        assert_eq!(pod["status"]["conditions"][0]["lastProbeTime"], Value::Null);
        assert_eq!(pod["status"]["conditions"][0]["lastTransitionTime"], "t");
    }

    #[test]
    fn nulls_are_the_zero_value_and_a_second_fill_changes_nothing() {
        let mut rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}, "spec": null, "status": {"replicas": null}});
        assert!(fill(&mut rs));
        assert_eq!(rs["status"]["replicas"], 0);
        assert_eq!(rs["spec"]["template"]["spec"], json!({}));
        let once = rs.clone();
        assert!(!fill(&mut rs));
        assert_eq!(rs, once);
    }

    #[test]
    fn unknown_kinds_and_non_objects_are_left_alone() {
        for obj in [json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {}}), json!({"kind": "Pod"}), json!([1])] {
            assert_eq!(filled(obj.clone()), obj);
        }
        // What is not the kind's own shape is kept as given.
        let odd = filled(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": "nope"}, "status": 3}));
        assert_eq!(odd["spec"]["ports"], "nope");
        assert_eq!(odd["status"], 3);
    }
}
