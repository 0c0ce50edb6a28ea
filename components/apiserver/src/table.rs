//! `Table` responses (what `kubectl get` prints): the strategy's columns and
//! one row per object, each carrying the object's metadata or the object.

use chrono::Utc;
use serde_json::{json, Value};

use crate::resources::Resource;

/// What each row carries, from the `includeObject` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(s: Option<&str>) -> Include {
        match s {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// Whether an Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

/// The `meta.k8s.io` version of Table the client asked for.
pub fn table_version(accept: &str) -> &'static str {
    let first = accept.split(',').next().unwrap_or("");
    if first.contains("v=v1beta1") {
        "meta.k8s.io/v1beta1"
    } else {
        "meta.k8s.io/v1"
    }
}

fn row(res: &Resource, obj: &Value, include: Include, now: chrono::DateTime<Utc>) -> Value {
    let mut row = json!({"cells": res.strategy.cells(&crate::conversion::as_stored(res, obj), now)});
    match include {
        Include::None => {}
        Include::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            })
        }
        Include::Object => row["object"] = obj.clone(),
    }
    row
}

pub fn columns(res: &Resource) -> Vec<Value> {
    res.strategy
        .columns()
        .iter()
        .map(|c| json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect()
}

pub fn table(res: &Resource, objects: &[Value], list_meta: Value, include: Include, api_version: &str, headers: bool) -> Value {
    let now = Utc::now();
    let rows: Vec<Value> = objects.iter().map(|o| row(res, o, include, now)).collect();
    let mut t = json!({"kind": "Table", "apiVersion": api_version, "metadata": list_meta, "rows": rows});
    t["columnDefinitions"] = if headers { Value::Array(columns(res)) } else { Value::Null };
    t
}
