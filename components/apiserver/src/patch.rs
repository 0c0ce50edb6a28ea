//! The patch types kubectl sends: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and strategic merge patch, whose lists merge by a key
//! (containers by name, ports by containerPort, env by name, ...).

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    json_patch::patch(target, &ops).map_err(|e| e.to_string())
}

/// The merge key of a list field of the built-in kinds, by the field's name
/// and by what its items hold (`ports` of a container merge by
/// containerPort, of a Service by port; `addresses` of a node by type, of
/// endpoints not at all). None: the list is replaced whole.
pub fn merge_key_for(field: &str, items: &[Value]) -> Option<&'static str> {
    let has = |k: &str| items.iter().any(|i| i.get(k).is_some());
    let key = match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" if has("containerPort") => "containerPort",
        "ports" => "port",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "taints" => "key",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    };
    has(key).then_some(key)
}

/// Lists of scalars that merge as sets rather than being replaced.
pub fn merges_as_set(field: &str) -> bool {
    field == "finalizers"
}

pub fn strategic(target: &mut Value, patch: &Value) -> Result<(), String> {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => merge_map(t, p),
        _ => {
            *target = patch.clone();
            Ok(())
        }
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut p = patch.clone();
            p.remove("$patch");
            *target = p;
            return Ok(());
        }
        Some("delete") => {
            target.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other}")),
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if key == "$patch" || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(gone)) = (target.get_mut(field).and_then(Value::as_array_mut), value.as_array()) {
                list.retain(|v| !gone.contains(v));
            }
            continue;
        }
        if key.starts_with("$setElementOrder/") {
            continue;
        }
        if value.is_null() {
            target.remove(key);
            continue;
        }
        match (target.get_mut(key), value) {
            (Some(Value::Object(t)), Value::Object(p)) => merge_map(t, p)?,
            (Some(Value::Array(t)), Value::Array(p)) => merge_list(key, t, p)?,
            (_, Value::Object(p)) => {
                // A new map: directives inside it still apply to nothing.
                let mut fresh = Map::new();
                merge_map(&mut fresh, p)?;
                target.insert(key.clone(), Value::Object(fresh));
            }
            (_, Value::Array(p)) => {
                let mut fresh = Vec::new();
                merge_list(key, &mut fresh, p)?;
                target.insert(key.clone(), Value::Array(fresh));
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
    // Order after merging, as `$setElementOrder/<field>` lists it.
    for (key, order) in patch {
        let Some(field) = key.strip_prefix("$setElementOrder/") else { continue };
        let (Some(list), Some(order)) = (target.get_mut(field).and_then(Value::as_array_mut), order.as_array()) else {
            continue;
        };
        reorder(field, list, order);
    }
    Ok(())
}

fn reorder(field: &str, list: &mut [Value], order: &[Value]) {
    let key = merge_key_for(field, list);
    let position = |item: &Value| -> usize {
        order
            .iter()
            .position(|o| match key {
                Some(k) => o.get(k).is_some() && o.get(k) == item.get(k),
                None => o == item,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(|item| position(item));
}

fn merge_list(field: &str, target: &mut Vec<Value>, patch: &[Value]) -> Result<(), String> {
    if merges_as_set(field) {
        for v in patch {
            if !target.contains(v) {
                target.push(v.clone());
            }
        }
        return Ok(());
    }
    let Some(key) = merge_key_for(field, patch).or_else(|| merge_key_for(field, target)) else {
        // A list without a merge key is replaced whole, but a `$patch:
        // replace` marker item is dropped.
        *target = patch.iter().filter(|v| v.get("$patch").is_none()).cloned().collect();
        return Ok(());
    };
    if patch.iter().any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace")) {
        *target = patch.iter().filter(|v| v.get("$patch").is_none()).cloned().collect();
        return Ok(());
    }
    for item in patch {
        let Some(id) = item.get(key) else {
            return Err(format!("map: {item} does not contain declared merge key: {key}"));
        };
        let found = target.iter().position(|t| t.get(key) == Some(id));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = found {
                target.remove(i);
            }
            continue;
        }
        match (found, item.as_object()) {
            (Some(i), Some(p)) => {
                if let Some(t) = target[i].as_object_mut() {
                    merge_map(t, p)?;
                }
            }
            (None, Some(p)) => {
                let mut fresh = Map::new();
                merge_map(&mut fresh, p)?;
                target.push(Value::Object(fresh));
            }
            _ => return Err(format!("list item {item} of {field} is not an object")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        let patch = json!({"spec": {"containers": [
            {"name": "b", "image": "b:2"},
            {"name": "a", "env": [{"name": "Y", "value": "2"}]}
        ]}});
        strategic(&mut pod, &patch).unwrap();
        assert_eq!(pod["spec"]["containers"][0]["image"], "a:1");
        assert_eq!(pod["spec"]["containers"][0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(pod["spec"]["containers"][1]["image"], "b:2");
    }

    #[test]
    fn directives() {
        let mut obj = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "tolerations": [{"key": "x"}]},
                             "metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["f1"]}});
        let patch = json!({
            "metadata": {"labels": {"a": null}, "finalizers": ["f2"], "$deleteFromPrimitiveList/finalizers": ["f1"]},
            "spec": {"containers": [{"name": "a", "$patch": "delete"}, {"name": "c"}],
                     "$setElementOrder/containers": [{"name": "c"}, {"name": "b"}],
                     "tolerations": [{"key": "y"}]}
        });
        strategic(&mut obj, &patch).unwrap();
        assert_eq!(obj["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(obj["metadata"]["finalizers"], json!(["f2"]));
        assert_eq!(obj["spec"]["containers"], json!([{"name": "c"}, {"name": "b"}]));
        assert_eq!(obj["spec"]["tolerations"], json!([{"key": "y"}]));
    }

    #[test]
    fn replace_directive_in_a_map() {
        let mut obj = json!({"spec": {"selector": {"a": "1", "b": "2"}}});
        strategic(&mut obj, &json!({"spec": {"selector": {"$patch": "replace", "c": "3"}}})).unwrap();
        assert_eq!(obj, json!({"spec": {"selector": {"c": "3"}}}));
    }
}
