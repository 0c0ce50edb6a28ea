//! What server-side apply needs to know of the served types beyond their
//! JSON: which lists are keyed and by what (upstream's `+listType=map` with
//! `+listMapKey`), which are sets, and which lists and objects are atomic
//! (replaced and owned whole). Read off upstream's API types for the kinds
//! this server serves; a list not named here is atomic, as upstream's
//! default for lists without a list type.

use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ListKind {
    Keyed(&'static [&'static str]),
    Set,
    Atomic,
}

/// The kind of the list at `path` (whose last element names its field),
/// told apart by where it is where one name serves two types (a
/// container's ports, a Service's, an EndpointSlice's).
pub fn list_kind(path: &[String], items: &[Value]) -> ListKind {
    let has = |k: &str| items.iter().any(|i| i.get(k).is_some());
    let field = last_field(path);
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str()).unwrap_or("");
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "imagePullSecrets" | "env" | "resourceClaims" | "schedulingGates" => {
            ListKind::Keyed(&["name"])
        }
        "ports" if parent.starts_with("k:") => ListKind::Keyed(&["containerPort", "protocol"]),
        // A Service's; an EndpointSlice's (at the top) are atomic.
        "ports" if path.len() == 2 && parent == "f:spec" => ListKind::Keyed(&["port", "protocol"]),
        "volumeMounts" => ListKind::Keyed(&["mountPath"]),
        "volumeDevices" => ListKind::Keyed(&["devicePath"]),
        "hostAliases" => ListKind::Keyed(&["ip"]),
        "topologySpreadConstraints" => ListKind::Keyed(&["topologyKey", "whenUnsatisfiable"]),
        "ownerReferences" => ListKind::Keyed(&["uid"]),
        "conditions" if has("type") => ListKind::Keyed(&["type"]),
        "finalizers" if items.iter().all(Value::is_string) => ListKind::Set,
        _ => ListKind::Atomic,
    }
}

/// The schema default of a key field an item may leave out.
pub fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| json!("TCP"))
}

/// Objects that upstream marks `+structType=atomic`: label selectors and
/// object references, owned and replaced whole.
pub fn atomic_map(path: &[String], m: &Map<String, Value>) -> bool {
    match last_field(path) {
        "selector" | "labelSelector" | "namespaceSelector" => m.contains_key("matchLabels") || m.contains_key("matchExpressions"),
        "involvedObject" | "related" | "targetRef" | "regarding" => true,
        _ => false,
    }
}

/// The field name of the last element of a path (`f:ports` → `ports`).
pub fn last_field(path: &[String]) -> &str {
    path.last().and_then(|e| e.strip_prefix("f:")).unwrap_or("")
}
