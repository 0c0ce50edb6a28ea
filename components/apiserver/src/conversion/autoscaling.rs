//! autoscaling/v1 HorizontalPodAutoscalers over the stored autoscaling/v2
//! form, as upstream converts them: v1's one field,
//! `targetCPUUtilizationPercentage`, is the first CPU Utilization metric
//! (`currentCPUUtilizationPercentage` its current value); what v1 has no
//! field for travels in annotations (metrics, current metrics and
//! conditions in v1's older metric shapes, behavior as upstream's internal
//! Go struct marshals it), so an object read and written back through v1
//! loses nothing.

use serde_json::{json, Map, Value};

use super::Conversion;

pub static V1_HORIZONTAL_POD_AUTOSCALERS: Conversion = Conversion { stored_version: "v2", to_stored: v1_to_v2, from_stored: v2_to_v1 };

pub const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
pub const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
pub const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
pub const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// The annotations only conversions write: dropped from what a client
/// sends, so the ones a v1 object carries are always the ones made from it.
pub const ROUND_TRIP: [&str; 4] = [METRICS, CURRENT_METRICS, CONDITIONS, BEHAVIOR];

/// Upstream's CPU target when no metric is named.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// The fields of `from` named in `keys`, those present, copied as they are.
fn pick(from: &Value, keys: &[&str]) -> Map<String, Value> {
    keys.iter().filter_map(|k| from.get(*k).filter(|v| !v.is_null()).map(|v| (k.to_string(), v.clone()))).collect()
}

/// A Go Quantity that is not a pointer: "0" when unset.
fn quantity(v: Option<&Value>) -> Value {
    v.filter(|v| !v.is_null()).cloned().unwrap_or(json!("0"))
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric.pointer("/resource/name") == Some(&json!("cpu"))
        && metric.pointer("/resource/target/averageUtilization").is_some_and(|u| !u.is_null())
}

fn cpu_utilization(percent: &Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}}})
}

/// Takes the round-trip annotations off `metadata`, returning them; an
/// annotation map left empty goes (Go omits an empty map).
fn take_round_trip(obj: &mut Value) -> Map<String, Value> {
    let mut taken = Map::new();
    if let Some(annotations) = obj.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        for key in ROUND_TRIP {
            if let Some(v) = annotations.remove(key) {
                taken.insert(key.to_string(), v);
            }
        }
        if annotations.is_empty() {
            obj["metadata"].as_object_mut().expect("metadata is an object").remove("annotations");
        }
    }
    taken
}

fn decode_annotation(taken: &Map<String, Value>, key: &str) -> Result<Option<Value>, String> {
    match taken.get(key).and_then(Value::as_str) {
        None => Ok(None),
        Some(text) => serde_json::from_str(text).map(Some).map_err(|e| format!("annotation {key}: {e}")),
    }
}

// ---- v2 → v1 ----

fn metric_spec_to_v1(m: &Value) -> Value {
    let kind = m["type"].as_str().unwrap_or("");
    let mut out = json!({"type": kind});
    match kind {
        "Resource" | "ContainerResource" => {
            let key = if kind == "Resource" { "resource" } else { "containerResource" };
            let s = &m[key];
            let mut r = pick(s, &["name", "container"]);
            r.extend(pick(&s["target"], &["averageUtilization", "averageValue"]).into_iter().map(|(k, v)| (target_name(&k), v)));
            out[key] = Value::Object(r);
        }
        "Pods" => {
            let s = &m["pods"];
            let mut r = Map::new();
            r.insert("metricName".into(), s.pointer("/metric/name").cloned().unwrap_or(json!("")));
            r.insert("targetAverageValue".into(), quantity(s.pointer("/target/averageValue")));
            r.extend(pick(&s["metric"], &["selector"]));
            out["pods"] = Value::Object(r);
        }
        "Object" => {
            let s = &m["object"];
            let mut r = Map::new();
            r.insert("target".into(), Value::Object(pick(&s["describedObject"], &["kind", "name", "apiVersion"])));
            r.insert("metricName".into(), s.pointer("/metric/name").cloned().unwrap_or(json!("")));
            r.insert("targetValue".into(), quantity(s.pointer("/target/value")));
            r.extend(pick(&s["metric"], &["selector"]));
            r.extend(pick(&s["target"], &["averageValue"]));
            out["object"] = Value::Object(r);
        }
        "External" => {
            let s = &m["external"];
            let mut r = Map::new();
            r.insert("metricName".into(), s.pointer("/metric/name").cloned().unwrap_or(json!("")));
            if let Some(sel) = s.pointer("/metric/selector").filter(|v| !v.is_null()) {
                r.insert("metricSelector".into(), sel.clone());
            }
            if let Some(v) = s.pointer("/target/value").filter(|v| !v.is_null()) {
                r.insert("targetValue".into(), v.clone());
            }
            if let Some(v) = s.pointer("/target/averageValue").filter(|v| !v.is_null()) {
                r.insert("targetAverageValue".into(), v.clone());
            }
            out["external"] = Value::Object(r);
        }
        _ => {}
    }
    out
}

/// v2's target field → v1's name for it.
fn target_name(v2: &str) -> String {
    match v2 {
        "averageUtilization" => "targetAverageUtilization".into(),
        _ => "targetAverageValue".into(),
    }
}

fn metric_status_to_v1(m: &Value) -> Value {
    let kind = m["type"].as_str().unwrap_or("");
    let mut out = json!({"type": kind});
    match kind {
        "Resource" | "ContainerResource" => {
            let key = if kind == "Resource" { "resource" } else { "containerResource" };
            let s = &m[key];
            let mut r = pick(s, &["name", "container"]);
            if let Some(u) = s.pointer("/current/averageUtilization").filter(|v| !v.is_null()) {
                r.insert("currentAverageUtilization".into(), u.clone());
            }
            r.insert("currentAverageValue".into(), quantity(s.pointer("/current/averageValue")));
            out[key] = Value::Object(r);
        }
        "Pods" => {
            let s = &m["pods"];
            let mut r = Map::new();
            r.insert("metricName".into(), s.pointer("/metric/name").cloned().unwrap_or(json!("")));
            r.insert("currentAverageValue".into(), quantity(s.pointer("/current/averageValue")));
            r.extend(pick(&s["metric"], &["selector"]));
            out["pods"] = Value::Object(r);
        }
        "Object" => {
            let s = &m["object"];
            let mut r = Map::new();
            r.insert("target".into(), Value::Object(pick(&s["describedObject"], &["kind", "name", "apiVersion"])));
            r.insert("metricName".into(), s.pointer("/metric/name").cloned().unwrap_or(json!("")));
            r.insert("currentValue".into(), quantity(s.pointer("/current/value")));
            r.extend(pick(&s["metric"], &["selector"]));
            r.extend(pick(&s["current"], &["averageValue"]));
            out["object"] = Value::Object(r);
        }
        "External" => {
            let s = &m["external"];
            let mut r = Map::new();
            r.insert("metricName".into(), s.pointer("/metric/name").cloned().unwrap_or(json!("")));
            if let Some(sel) = s.pointer("/metric/selector").filter(|v| !v.is_null()) {
                r.insert("metricSelector".into(), sel.clone());
            }
            r.insert("currentValue".into(), quantity(s.pointer("/current/value")));
            if let Some(v) = s.pointer("/current/averageValue").filter(|v| !v.is_null()) {
                r.insert("currentAverageValue".into(), v.clone());
            }
            out["external"] = Value::Object(r);
        }
        _ => {}
    }
    out
}

/// Upstream marshals its internal behavior struct, which has no JSON
/// tags: Go's field names, nil pointers as null.
fn behavior_to_internal(b: &Value) -> Value {
    let rules = |r: &Value| -> Value {
        if r.is_null() {
            return Value::Null;
        }
        let policies: Vec<Value> = r["policies"]
            .as_array()
            .map(|ps| ps.iter().map(|p| json!({"Type": p["type"], "Value": p["value"], "PeriodSeconds": p["periodSeconds"]})).collect())
            .unwrap_or_default();
        json!({
            "StabilizationWindowSeconds": r["stabilizationWindowSeconds"],
            "SelectPolicy": r["selectPolicy"],
            "Policies": if policies.is_empty() { Value::Null } else { Value::Array(policies) },
            "Tolerance": r["tolerance"],
        })
    };
    json!({"ScaleUp": rules(&b["scaleUp"]), "ScaleDown": rules(&b["scaleDown"])})
}

fn behavior_from_internal(b: &Value) -> Value {
    let rules = |r: &Value| -> Option<Value> {
        if r.is_null() {
            return None;
        }
        let mut out = Map::new();
        for (go, ours) in [("StabilizationWindowSeconds", "stabilizationWindowSeconds"), ("SelectPolicy", "selectPolicy"), ("Tolerance", "tolerance")] {
            if let Some(v) = r.get(go).filter(|v| !v.is_null()) {
                out.insert(ours.into(), v.clone());
            }
        }
        if let Some(ps) = r["Policies"].as_array() {
            let ps: Vec<Value> = ps.iter().map(|p| json!({"type": p["Type"], "value": p["Value"], "periodSeconds": p["PeriodSeconds"]})).collect();
            out.insert("policies".into(), Value::Array(ps));
        }
        Some(Value::Object(out))
    };
    let mut out = Map::new();
    if let Some(up) = rules(&b["ScaleUp"]) {
        out.insert("scaleUp".into(), up);
    }
    if let Some(down) = rules(&b["ScaleDown"]) {
        out.insert("scaleDown".into(), down);
    }
    Value::Object(out)
}

fn annotate(obj: &mut Value, key: &str, value: &Value) {
    let meta = obj["metadata"].as_object_mut().expect("metadata is an object");
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    annotations[key] = json!(value.to_string());
}

/// A stored (autoscaling/v2) object as autoscaling/v1 shows it.
pub fn v2_to_v1(mut v2: Value) -> Value {
    if !v2["metadata"].is_object() {
        v2["metadata"] = json!({});
    }
    take_round_trip(&mut v2);
    let spec = v2.get("spec").cloned().unwrap_or(json!({}));
    let status = v2.get("status").cloned().unwrap_or(json!({}));
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let mut v1_spec = pick(&spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
    // The first CPU metric decides, Utilization or not.
    if let Some(cpu) = metrics.iter().find(|m| m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu"))) {
        if let Some(u) = cpu.pointer("/resource/target/averageUtilization").filter(|u| !u.is_null()) {
            v1_spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
        }
    }
    let others: Vec<Value> = metrics.iter().filter(|m| !is_cpu_utilization(m)).map(metric_spec_to_v1).collect();
    let current = status["currentMetrics"].as_array().cloned().unwrap_or_default();
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let mut v1_status = pick(&status, &["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"]);
    for m in &current {
        if m["type"] == "Resource" && m.pointer("/resource/name") == Some(&json!("cpu")) {
            if let Some(u) = m.pointer("/resource/current/averageUtilization").filter(|u| !u.is_null()) {
                v1_status.insert("currentCPUUtilizationPercentage".into(), u.clone());
            }
        }
    }
    let mut v1 = v2;
    v1["apiVersion"] = json!("autoscaling/v1");
    v1["spec"] = Value::Object(v1_spec);
    v1["status"] = Value::Object(v1_status);
    if !others.is_empty() {
        annotate(&mut v1, METRICS, &Value::Array(others));
    }
    if !current.is_empty() {
        annotate(&mut v1, CURRENT_METRICS, &Value::Array(current.iter().map(metric_status_to_v1).collect()));
    }
    if !conditions.is_empty() {
        annotate(&mut v1, CONDITIONS, &Value::Array(conditions));
    }
    if let Some(b) = spec.get("behavior").filter(|b| !b.is_null()) {
        annotate(&mut v1, BEHAVIOR, &behavior_to_internal(b));
    }
    v1
}

// ---- v1 → v2 ----

fn metric_spec_from_v1(m: &Value) -> Value {
    let kind = m["type"].as_str().unwrap_or("");
    let mut out = json!({"type": kind});
    match kind {
        "Resource" | "ContainerResource" => {
            let key = if kind == "Resource" { "resource" } else { "containerResource" };
            let s = &m[key];
            let mut r = pick(s, &["name", "container"]);
            let utilization = s.get("targetAverageUtilization").filter(|v| !v.is_null());
            let mut target = json!({"type": if utilization.is_some() { "Utilization" } else { "AverageValue" }});
            if let Some(u) = utilization {
                target["averageUtilization"] = u.clone();
            }
            if let Some(v) = s.get("targetAverageValue").filter(|v| !v.is_null()) {
                target["averageValue"] = v.clone();
            }
            r.insert("target".into(), target);
            out[key] = Value::Object(r);
        }
        "Pods" => {
            let s = &m["pods"];
            let mut metric = json!({"name": s["metricName"]});
            if let Some(sel) = s.get("selector").filter(|v| !v.is_null()) {
                metric["selector"] = sel.clone();
            }
            out["pods"] = json!({"metric": metric, "target": {"type": "AverageValue", "averageValue": quantity(s.get("targetAverageValue"))}});
        }
        "Object" => {
            let s = &m["object"];
            let average = s.get("averageValue").filter(|v| !v.is_null());
            let mut target = json!({"type": if average.is_some() { "AverageValue" } else { "Value" }, "value": quantity(s.get("targetValue"))});
            if let Some(a) = average {
                target["averageValue"] = a.clone();
            }
            let mut metric = json!({"name": s["metricName"]});
            if let Some(sel) = s.get("selector").filter(|v| !v.is_null()) {
                metric["selector"] = sel.clone();
            }
            out["object"] = json!({"describedObject": Value::Object(pick(&s["target"], &["kind", "name", "apiVersion"])), "metric": metric, "target": target});
        }
        "External" => {
            let s = &m["external"];
            let value = s.get("targetValue").filter(|v| !v.is_null());
            let mut target = json!({"type": if value.is_some() { "Value" } else { "AverageValue" }});
            if let Some(v) = value {
                target["value"] = v.clone();
            }
            if let Some(v) = s.get("targetAverageValue").filter(|v| !v.is_null()) {
                target["averageValue"] = v.clone();
            }
            let mut metric = json!({"name": s["metricName"]});
            if let Some(sel) = s.get("metricSelector").filter(|v| !v.is_null()) {
                metric["selector"] = sel.clone();
            }
            out["external"] = json!({"metric": metric, "target": target});
        }
        _ => {}
    }
    out
}

fn metric_status_from_v1(m: &Value) -> Value {
    let kind = m["type"].as_str().unwrap_or("");
    let mut out = json!({"type": kind});
    match kind {
        "Resource" | "ContainerResource" => {
            let key = if kind == "Resource" { "resource" } else { "containerResource" };
            let s = &m[key];
            let mut r = pick(s, &["name", "container"]);
            let mut current = json!({"averageValue": quantity(s.get("currentAverageValue"))});
            if let Some(u) = s.get("currentAverageUtilization").filter(|v| !v.is_null()) {
                current["averageUtilization"] = u.clone();
            }
            r.insert("current".into(), current);
            out[key] = Value::Object(r);
        }
        "Pods" => {
            let s = &m["pods"];
            let mut metric = json!({"name": s["metricName"]});
            if let Some(sel) = s.get("selector").filter(|v| !v.is_null()) {
                metric["selector"] = sel.clone();
            }
            out["pods"] = json!({"metric": metric, "current": {"averageValue": quantity(s.get("currentAverageValue"))}});
        }
        "Object" => {
            let s = &m["object"];
            let mut current = json!({"value": quantity(s.get("currentValue"))});
            if let Some(a) = s.get("averageValue").filter(|v| !v.is_null()) {
                current["averageValue"] = a.clone();
            }
            let mut metric = json!({"name": s["metricName"]});
            if let Some(sel) = s.get("selector").filter(|v| !v.is_null()) {
                metric["selector"] = sel.clone();
            }
            out["object"] =
                json!({"describedObject": Value::Object(pick(&s["target"], &["kind", "name", "apiVersion"])), "metric": metric, "current": current});
        }
        "External" => {
            let s = &m["external"];
            let mut current = json!({"value": quantity(s.get("currentValue"))});
            if let Some(a) = s.get("currentAverageValue").filter(|v| !v.is_null()) {
                current["averageValue"] = a.clone();
            }
            let mut metric = json!({"name": s["metricName"]});
            if let Some(sel) = s.get("metricSelector").filter(|v| !v.is_null()) {
                metric["selector"] = sel.clone();
            }
            out["external"] = json!({"metric": metric, "current": current});
        }
        _ => {}
    }
    out
}

/// A client's autoscaling/v1 object in the stored autoscaling/v2 form.
pub fn v1_to_v2(mut v1: Value) -> Result<Value, String> {
    if !v1["metadata"].is_object() {
        v1["metadata"] = json!({});
    }
    let taken = take_round_trip(&mut v1);
    let spec = v1.get("spec").cloned().unwrap_or(json!({}));
    let status = v1.get("status").cloned().unwrap_or(json!({}));
    let mut v2_spec = pick(&spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
    // Other metrics first, then the CPU target, as upstream orders them.
    let mut metrics: Vec<Value> = decode_annotation(&taken, METRICS)?
        .map(|a| a.as_array().map(|ms| ms.iter().map(metric_spec_from_v1).collect()).unwrap_or_default())
        .unwrap_or_default();
    if let Some(cpu) = spec.get("targetCPUUtilizationPercentage").filter(|v| !v.is_null()) {
        metrics.push(cpu_utilization(cpu));
    }
    if metrics.is_empty() {
        metrics.push(cpu_utilization(&json!(DEFAULT_CPU_UTILIZATION)));
    }
    v2_spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(b) = decode_annotation(&taken, BEHAVIOR)? {
        v2_spec.insert("behavior".into(), behavior_from_internal(&b));
    }
    let mut v2_status = pick(&status, &["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"]);
    if let Some(u) = status.get("currentCPUUtilizationPercentage").filter(|v| !v.is_null()) {
        v2_status.insert("currentMetrics".into(), json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}]));
    }
    // The annotation has more than the one CPU figure: it wins.
    if let Some(current) = decode_annotation(&taken, CURRENT_METRICS)? {
        let current: Vec<Value> = current.as_array().map(|ms| ms.iter().map(metric_status_from_v1).collect()).unwrap_or_default();
        v2_status.insert("currentMetrics".into(), Value::Array(current));
    }
    if let Some(conditions) = decode_annotation(&taken, CONDITIONS)? {
        v2_status.insert("conditions".into(), conditions);
    }
    let mut v2 = v1;
    v2["apiVersion"] = json!("autoscaling/v2");
    v2["spec"] = Value::Object(v2_spec);
    v2["status"] = Value::Object(v2_status);
    Ok(v2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(metrics: Value, status: Value) -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"keep": "me"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5, "metrics": metrics},
            "status": status,
        })
    }

    #[test]
    fn cpu_utilization_is_v1s_one_field_both_ways() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 30}});
        let stored = v1_to_v2(v1.clone()).unwrap();
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(stored["spec"]["metrics"], json!([cpu_utilization(&json!(50))]));
        assert_eq!(stored["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"], 30);
        let mut back = v2_to_v1(stored);
        // As upstream, the current metrics are kept whole besides the
        // one figure v1 has a field for.
        let current = back["metadata"]["annotations"].as_object_mut().unwrap().remove(CURRENT_METRICS).unwrap();
        assert_eq!(current, json!(r#"[{"resource":{"currentAverageUtilization":30,"currentAverageValue":"0","name":"cpu"},"type":"Resource"}]"#));
        back["metadata"].as_object_mut().unwrap().remove("annotations");
        assert_eq!(back, v1, "nothing else gained or lost");
    }

    #[test]
    fn a_v1_object_without_a_target_gets_upstreams_default() {
        let v1 = json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 4}});
        let stored = v1_to_v2(v1).unwrap();
        assert_eq!(stored["spec"]["metrics"], json!([cpu_utilization(&json!(80))]));
    }

    #[test]
    fn what_v1_cannot_say_rides_in_annotations_and_comes_back() {
        let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}});
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}});
        let external = json!({"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "a"}}}, "target": {"type": "Value", "value": "30"}}});
        let object = json!({"type": "Object", "object": {"describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"}, "metric": {"name": "rps"}, "target": {"type": "Value", "value": "2k"}}});
        let container = json!({"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60}}});
        let condition = json!({"type": "ScalingActive", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "FailedGetResourceMetric", "message": "m"});
        let mut original = v2(
            json!([memory, pods, external, object, container]),
            json!({"currentReplicas": 1, "desiredReplicas": 0, "currentMetrics": [{"type": ""},
                {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "50Mi"}}}], "conditions": [condition]}),
        );
        original["spec"]["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}});
        let v1 = v2_to_v1(original.clone());
        let annotations = &v1["metadata"]["annotations"];
        assert_eq!(annotations["keep"], "me");
        assert!(v1["spec"].get("targetCPUUtilizationPercentage").is_none());
        let metrics: Value = serde_json::from_str(annotations[METRICS].as_str().unwrap()).unwrap();
        assert_eq!(metrics[0], json!({"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}));
        assert_eq!(metrics[1], json!({"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}}));
        let behavior: Value = serde_json::from_str(annotations[BEHAVIOR].as_str().unwrap()).unwrap();
        assert_eq!(behavior["ScaleUp"], Value::Null);
        assert_eq!(behavior["ScaleDown"]["Policies"][0], json!({"Type": "Percent", "Value": 100, "PeriodSeconds": 15}));
        let conditions: Value = serde_json::from_str(annotations[CONDITIONS].as_str().unwrap()).unwrap();
        assert_eq!(conditions, json!([condition]));
        let mut back = v1_to_v2(v1).unwrap();
        // Memory's current value gains no utilization; the Value target of
        // an Object metric comes back as it went.
        back["status"]["currentMetrics"][1]["resource"]["current"].as_object_mut().unwrap().retain(|k, _| k == "averageValue");
        assert_eq!(back, original);
    }

    #[test]
    fn the_cpu_utilization_target_goes_after_the_other_metrics() {
        let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1Gi"}}});
        let stored = v2(json!([cpu_utilization(&json!(50)), memory]), json!({}));
        let v1 = v2_to_v1(stored);
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        let back = v1_to_v2(v1).unwrap();
        assert_eq!(back["spec"]["metrics"], json!([memory, cpu_utilization(&json!(50))]));
    }

    #[test]
    fn round_trip_annotations_a_client_sends_are_not_kept() {
        let mut v1 =
            json!({"metadata": {"name": "web", "annotations": {(CONDITIONS): "[]"}}, "spec": {"maxReplicas": 2, "targetCPUUtilizationPercentage": 70}});
        let stored = v1_to_v2(v1.clone()).unwrap();
        assert!(stored["metadata"].get("annotations").is_none());
        v1["metadata"]["annotations"] = json!({(METRICS): "not json"});
        assert!(v1_to_v2(v1).unwrap_err().contains(METRICS));
    }
}
