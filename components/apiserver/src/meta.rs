//! Reading and setting the `metadata` of objects held as JSON.

use serde_json::{json, Map, Value};

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("set above")
}

pub fn get<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

pub fn name(obj: &Value) -> &str {
    get(obj, "name").unwrap_or("")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    get(obj, "namespace")
}

pub fn resource_version(obj: &Value) -> Option<&str> {
    get(obj, "resourceVersion").filter(|s| !s.is_empty())
}

pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    meta(obj).and_then(|m| m.get("labels")).and_then(Value::as_object)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
