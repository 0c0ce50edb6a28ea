//! Per-resource behaviour of the generic store: defaulting, validation,
//! field selectors and table columns. The store calls these; a resource
//! without special needs uses the trait's defaults.

pub mod apiregistration;
pub mod apps;
pub mod autoscaling;
pub mod batch;
pub mod core;
pub mod networking;
pub mod other;
pub mod pod_failure_policy;
pub mod policy;
pub mod rbac;
pub mod replication;
pub mod storage;
pub mod updates;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::status::Cause;

/// One column of a `Table` response; `priority` 1 columns show with `-o wide`.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: u8,
}

pub const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    priority: 0,
};
pub const AGE: Column = Column {
    name: "Age",
    kind: "string",
    format: "",
    description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
    priority: 0,
};

/// The second column of upstream's default table, for kinds kubectl has no
/// printer for (Roles, LimitRanges): the creation time itself.
pub const CREATED_AT: Column = Column { name: "Created At", kind: "date", ..AGE };

/// Name and Created At, upstream's default table.
pub const DEFAULT_COLUMNS: &[Column] = &[NAME, CREATED_AT];

pub fn default_cells(obj: &Value) -> Vec<Value> {
    vec![json!(name(obj)), json!(str_at(obj, "/metadata/creationTimestamp").unwrap_or(""))]
}

pub const fn col(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 0 }
}
pub const fn wide(name: &'static str, kind: &'static str, description: &'static str) -> Column {
    Column { name, kind, format: "", description, priority: 1 }
}

pub trait Strategy: Sync {
    /// Fills defaults on create and update (upstream defaults both).
    fn default(&self, _obj: &mut Value) {}

    /// Checks the whole object (its metadata was checked already).
    fn validate(&self, _obj: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// Carries over from the stored object what an update of the main
    /// resource may not set (upstream's PrepareForUpdate), before defaults.
    fn prepare_update(&self, _new: &mut Value, _old: &Value) {}

    /// Checks an update against the stored object: what may not change
    /// (upstream's ValidateUpdate). `new` has passed `validate` already.
    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// Checks a write through pods/ephemeralcontainers (only pods have it).
    fn validate_ephemeral_containers_update(&self, _new: &Value, _old: &Value) -> Vec<Cause> {
        vec![Cause::forbidden("spec.ephemeralContainers", "only pods have ephemeral containers")]
    }

    /// Whether `metadata.generation` counts spec changes (of resources
    /// with a status subresource).
    fn tracks_generation(&self) -> bool {
        true
    }

    /// Whether objects expire after the event TTL (`--event-ttl`).
    fn expires(&self) -> bool {
        false
    }

    /// Whether objects hold Service addresses (ClusterIPs, NodePorts) from
    /// the allocator, claimed in their own etcd transaction.
    fn allocates_service_addresses(&self) -> bool {
        false
    }

    /// Seconds a delete waits before the object may be removed, for an
    /// agent to finish it (a bound pod's kubelet); 0 removes it at once
    /// unless finalizers hold it. `requested` is the client's
    /// gracePeriodSeconds.
    fn deletion_grace(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Marks an object whose deletion begins; true when it must then wait
    /// even with no finalizer and no grace period (a namespace turns
    /// Terminating and waits for its spec.finalizers).
    fn begin_deletion(&self, _obj: &mut Value) -> bool {
        false
    }

    /// Whether an object being deleted that no metadata finalizer holds
    /// any more must stay all the same (`old` is the stored version).
    fn still_held(&self, _obj: &Value, _old: &Value) -> bool {
        false
    }

    /// Field selector keys beyond metadata.name and metadata.namespace, with
    /// the JSON pointer of their value.
    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn columns(&self) -> &'static [Column] {
        &[NAME, AGE]
    }

    /// The row cells, one per column.
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![json!(name(obj)), json!(age(obj, now))]
    }
}

pub use crate::meta::name;

pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// A string at `pointer`, or `<none>` as kubectl prints absent values.
pub fn or_none(obj: &Value, pointer: &str) -> String {
    str_at(obj, pointer).filter(|s| !s.is_empty()).unwrap_or("<none>").to_string()
}

pub fn int_at(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

pub fn age(obj: &Value, now: DateTime<Utc>) -> String {
    match str_at(obj, "/metadata/creationTimestamp").and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => human_duration(now.signed_duration_since(t.with_timezone(&Utc)).num_seconds()),
        None => "<unknown>".into(),
    }
}

/// Upstream's `duration.HumanDuration`, which kubectl's AGE column shows.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    let (s, m, h) = (seconds, seconds / 60, seconds / 3600);
    let d = h / 24;
    let y = d / 365;
    let pair = |a: i64, ua: &str, b: i64, ub: &str| if b == 0 { format!("{a}{ua}") } else { format!("{a}{ua}{b}{ub}") };
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        pair(m, "m", s % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        pair(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        pair(d, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        pair(y, "y", d % 365, "d")
    } else {
        format!("{y}y")
    }
}

/// `a=b,c=d` of a string map, sorted by key as Go prints maps; `<none>` if empty.
pub fn map_string(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer).and_then(Value::as_object) {
        Some(m) if !m.is_empty() => {
            let mut pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect();
            pairs.sort();
            pairs.join(",")
        }
        _ => "<none>".into(),
    }
}

/// Sets `obj[pointer]` to `value` unless something is already there.
pub fn default_at(obj: &mut Value, path: &[&str], value: Value) {
    let mut cur = obj;
    for (i, key) in path.iter().enumerate() {
        if !cur.is_object() {
            return;
        }
        let last = i == path.len() - 1;
        let map = cur.as_object_mut().expect("checked above");
        if last {
            if map.get(*key).is_none_or(Value::is_null) {
                map.insert(key.to_string(), value);
            }
            return;
        }
        cur = map.entry(key.to_string()).or_insert_with(|| json!({}));
    }
}

pub fn array_at<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    obj.pointer(pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400), "3d");
        assert_eq!(human_duration(20 * 86400), "20d");
    }

    #[test]
    fn defaults_fill_only_gaps() {
        let mut v = json!({"spec": {"a": 1}});
        default_at(&mut v, &["spec", "a"], json!(2));
        default_at(&mut v, &["spec", "b"], json!(3));
        default_at(&mut v, &["status", "phase"], json!("Pending"));
        assert_eq!(v, json!({"spec": {"a": 1, "b": 3}, "status": {"phase": "Pending"}}));
    }
}
