//! apiregistration.k8s.io APIServices: computed (see `apiservices`), so
//! only their table is needed, as kube-aggregator prints it.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{age, array_at, col, name, str_at, Column, Strategy, AGE, NAME};

pub struct APIServices;
impl Strategy for APIServices {
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Service", "string", "The reference to the service that hosts this API endpoint."),
                col("Available", "string", "Whether this service is available."),
                AGE,
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![json!(name(obj)), json!(service(obj)), json!(available(obj)), json!(age(obj, now))]
    }
}

/// `Local` for a group this server serves itself, else `namespace/name`.
fn service(obj: &Value) -> String {
    match obj.pointer("/spec/service").filter(|s| s.is_object()) {
        Some(s) => format!("{}/{}", s["namespace"].as_str().unwrap_or(""), s["name"].as_str().unwrap_or("")),
        None => "Local".into(),
    }
}

/// The Available condition's status, with its reason when not True.
fn available(obj: &Value) -> String {
    let condition = array_at(obj, "/status/conditions").iter().find(|c| c["type"] == "Available");
    match condition {
        None => "Unknown".into(),
        Some(c) if c["status"] == "True" => "True".into(),
        Some(c) => format!("{} ({})", str_at(c, "/status").unwrap_or(""), str_at(c, "/reason").unwrap_or("")),
    }
}
