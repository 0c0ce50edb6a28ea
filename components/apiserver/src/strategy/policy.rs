//! Limits on what a namespace may use: PodDisruptionBudgets (policy/v1),
//! ResourceQuotas and LimitRanges (core/v1). Stored and checked; no
//! admission enforces quotas or limit ranges yet (README).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::apps::label_selector;
use super::{age, array_at, col, default_cells, int_at, name, Column, Strategy, AGE, DEFAULT_COLUMNS, NAME};
use crate::status::Cause;

/// An int-or-percent field: a count ≥ 0, or `N%` with 0 ≤ N ≤ 100.
fn check_int_or_percent(v: &Value, field: &str, causes: &mut Vec<Cause>) {
    match v {
        Value::Number(n) if n.as_i64().is_some_and(|n| n >= 0) => {}
        Value::Number(_) => causes.push(Cause::invalid(field, v, "must be greater than or equal to 0")),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) if (0..=100).contains(&p) => {}
            Some(_) => causes.push(Cause::invalid(field, v, "must not be greater than 100%")),
            None => causes.push(Cause::invalid(
                field,
                v,
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
        },
        _ => causes.push(Cause::invalid(field, v, "must be an integer or a percentage")),
    }
}

pub struct PodDisruptionBudgets;
impl Strategy for PodDisruptionBudgets {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let min = obj.pointer("/spec/minAvailable").filter(|v| !v.is_null());
        let max = obj.pointer("/spec/maxUnavailable").filter(|v| !v.is_null());
        if min.is_some() && max.is_some() {
            causes.push(Cause::invalid("spec", obj.get("spec").unwrap_or(&Value::Null), "minAvailable and maxUnavailable cannot be both set"));
        }
        if let Some(v) = min {
            check_int_or_percent(v, "spec.minAvailable", &mut causes);
        }
        if let Some(v) = max {
            check_int_or_percent(v, "spec.maxUnavailable", &mut causes);
        }
        if let Some(sel) = obj.pointer("/spec/selector").filter(|s| !s.is_null()) {
            if let Err(why) = label_selector(sel) {
                causes.push(Cause::invalid("spec.selector", sel, why));
            }
        }
        if let Some(p) = obj.pointer("/spec/unhealthyPodEvictionPolicy").filter(|v| !v.is_null()) {
            if !matches!(p.as_str(), Some("IfHealthyBudget" | "AlwaysAllow")) {
                causes.push(Cause::not_supported("spec.unhealthyPodEvictionPolicy", p, &["AlwaysAllow", "IfHealthyBudget"]));
            }
        }
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Min Available", "string", "The minimum number of pods that must be available."),
                col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
                col("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
                AGE,
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let shown = |p: &str| match obj.pointer(p) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "N/A".into(),
        };
        vec![
            json!(name(obj)),
            json!(shown("/spec/minAvailable")),
            json!(shown("/spec/maxUnavailable")),
            json!(int_at(obj, "/status/disruptionsAllowed")),
            json!(age(obj, now)),
        ]
    }
}

pub struct ResourceQuotas;
impl Strategy for ResourceQuotas {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        const SCOPES: &[&str] = &["Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity"];
        for (i, s) in array_at(obj, "/spec/scopes").iter().enumerate() {
            if !s.as_str().is_some_and(|s| SCOPES.contains(&s)) {
                causes.push(Cause::not_supported(format!("spec.scopes[{i}]"), s, SCOPES));
            }
        }
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                AGE,
                col("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
                col("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
            ]
        }
    }
    /// `resource: used/hard` for each resource of spec.hard, sorted, the
    /// `limits.*` ones in their own column.
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let mut names: Vec<&String> = obj.pointer("/spec/hard").and_then(Value::as_object).map(|m| m.keys().collect()).unwrap_or_default();
        names.sort();
        let quantity =
            |section: &str, r: &str| obj.pointer(&format!("/status/{section}")).and_then(|m| m.get(r)).and_then(Value::as_str).unwrap_or("0").to_string();
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        for r in names {
            let shown = format!("{r}: {}/{}", quantity("used", r), quantity("hard", r));
            if r.split('.').next() == Some("limits") && r.contains('.') {
                limits.push(shown);
            } else {
                requests.push(shown);
            }
        }
        vec![json!(name(obj)), json!(age(obj, now)), json!(requests.join(", ")), json!(limits.join(", "))]
    }
}

pub struct LimitRanges;
impl Strategy for LimitRanges {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for (i, limit) in array_at(obj, "/spec/limits").iter().enumerate() {
            let t = &limit["type"];
            if !matches!(t.as_str(), Some("Pod" | "Container" | "PersistentVolumeClaim")) {
                causes.push(Cause::not_supported(format!("spec.limits[{i}].type"), t, &["Container", "PersistentVolumeClaim", "Pod"]));
            }
        }
        causes
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_take_one_bound() {
        let both = json!({"spec": {"minAvailable": 1, "maxUnavailable": "50%"}});
        let lines: Vec<String> = PodDisruptionBudgets.validate(&both).iter().map(Cause::line).collect();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with("minAvailable and maxUnavailable cannot be both set"), "{lines:?}");
        let pct = json!({"metadata": {"name": "b"}, "spec": {"maxUnavailable": "150%"}});
        assert_eq!(PodDisruptionBudgets.validate(&pct).len(), 1);
        assert_eq!(PodDisruptionBudgets.cells(&pct, Utc::now())[1..3], [json!("N/A"), json!("150%")]);
    }

    #[test]
    fn quota_rows_split_requests_and_limits() {
        let q = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"}},
            "status": {"hard": {"pods": "10", "limits.cpu": "2", "requests.cpu": "1"}, "used": {"pods": "3"}}});
        let cells = ResourceQuotas.cells(&q, Utc::now());
        assert_eq!(cells[2], "pods: 3/10, requests.cpu: 0/1");
        assert_eq!(cells[3], "limits.cpu: 0/2");
    }
}
