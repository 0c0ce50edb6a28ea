//! Mutating admission that needs other objects than the one written, as
//! upstream's admission plugins: DefaultStorageClass, which gives a
//! PersistentVolumeClaim that names no class the cluster's default one,
//! and StorageObjectInUseProtection, which gives claims and volumes the
//! finalizers that keep them while in use.
//! Runs on create only, after the strategy's defaults and before validation.

use serde_json::{json, Value};

use crate::registry::Registry;
use crate::resources::{self, Resource};
use crate::selectors::Selector;
use crate::status::ApiResult;

/// The annotation that makes a StorageClass the default, and its beta form
/// (upstream still honours both).
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The class a claim asked for before `spec.storageClassName` existed.
const CLASS_BETA: &str = "volume.beta.kubernetes.io/storage-class";

/// Applies the admission steps for a create of `obj` as `res`.
pub async fn on_create(registry: &Registry, res: &Resource, obj: &mut Value) -> ApiResult<()> {
    if res.group.is_empty() && res.plural == "persistentvolumeclaims" {
        default_storage_class(registry, obj).await?;
        protect(obj, CLAIM_PROTECTION);
    }
    if res.group.is_empty() && res.plural == "persistentvolumes" {
        protect(obj, VOLUME_PROTECTION);
    }
    Ok(())
}

/// StorageObjectInUseProtection: a claim in use and a bound volume are
/// held by these finalizers until the controller-manager lets them go.
const CLAIM_PROTECTION: &str = "kubernetes.io/pvc-protection";
const VOLUME_PROTECTION: &str = "kubernetes.io/pv-protection";

fn protect(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = finalizers.as_array_mut() {
        if !list.iter().any(|f| f == finalizer) {
            list.push(json!(finalizer));
        }
    }
}

/// A claim without `spec.storageClassName` (absent, not empty: "" asks for
/// no class) gets the default class, if there is one.
async fn default_storage_class(registry: &Registry, claim: &mut Value) -> ApiResult<()> {
    if claim.pointer("/spec/storageClassName").is_some_and(|c| !c.is_null())
        || claim.pointer(&format!("/metadata/annotations/{}", CLASS_BETA.replace('/', "~1"))).is_some()
    {
        return Ok(());
    }
    let classes = resources::find("storage.k8s.io", "v1", "storageclasses").expect("storageclasses are in the table");
    let (listed, _) = registry.cache(classes).await?.snapshot(&classes.prefix(None), &Selector::default(), &Selector::default());
    let listed: Vec<Value> = listed.iter().filter_map(|b| serde_json::from_slice(b).ok()).collect();
    if let Some(name) = default_class(&listed) {
        if let Some(spec) = claim.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("storageClassName".into(), json!(name));
        }
    }
    Ok(())
}

/// The default among `classes`: the newest one marked default, as upstream
/// picks when several are (ties by name).
pub fn default_class(classes: &[Value]) -> Option<String> {
    let marked = |c: &&Value| {
        let annotations = c.pointer("/metadata/annotations");
        [DEFAULT_CLASS, DEFAULT_CLASS_BETA].iter().any(|a| annotations.and_then(|m| m.get(*a)).and_then(Value::as_str) == Some("true"))
    };
    let field = |c: &Value, f: &str| c.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).unwrap_or("").to_string();
    classes
        .iter()
        .filter(marked)
        .max_by(|a, b| field(a, "creationTimestamp").cmp(&field(b, "creationTimestamp")).then_with(|| field(b, "name").cmp(&field(a, "name"))))
        .map(|c| field(c, "name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, created: &str, default: Option<&str>) -> Value {
        let mut c = json!({"metadata": {"name": name, "creationTimestamp": created}});
        if let Some(d) = default {
            c["metadata"]["annotations"] = json!({DEFAULT_CLASS: d});
        }
        c
    }

    #[test]
    fn the_newest_marked_class_is_the_default() {
        assert_eq!(default_class(&[]), None);
        assert_eq!(default_class(&[class("fast", "2026-01-01T00:00:00Z", Some("false"))]), None);
        let classes = [
            class("standard", "2026-01-01T00:00:00Z", Some("true")),
            class("newer", "2026-02-01T00:00:00Z", Some("true")),
            class("plain", "2026-03-01T00:00:00Z", None),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("newer"));
        let beta = json!({"metadata": {"name": "old", "annotations": {DEFAULT_CLASS_BETA: "true"}}});
        assert_eq!(default_class(&[beta]).as_deref(), Some("old"));
    }
}
