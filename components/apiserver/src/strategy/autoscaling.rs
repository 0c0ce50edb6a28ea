//! autoscaling/v2 HorizontalPodAutoscalers: stored and checked. There is
//! no metrics pipeline in a lab, so nothing scales on them (README).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{age, array_at, col, int_at, name, str_at, Column, Strategy, AGE, NAME};
use crate::status::Cause;

pub struct HorizontalPodAutoscalers;
impl Strategy for HorizontalPodAutoscalers {
    /// Upstream: at least one replica, and 80% CPU when no metric is named.
    fn default(&self, obj: &mut Value) {
        // Only conversion to autoscaling/v1 writes these; a client's copy
        // of them means nothing here (upstream drops them too).
        if let Some(annotations) = obj.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
            for key in crate::conversion::autoscaling::ROUND_TRIP {
                annotations.remove(key);
            }
        }
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else { return };
        if spec.get("minReplicas").is_none_or(Value::is_null) {
            spec["minReplicas"] = json!(1);
        }
        if array_at(spec, "/metrics").is_empty() {
            spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for field in ["kind", "name"] {
            if obj.pointer(&format!("/spec/scaleTargetRef/{field}")).and_then(Value::as_str).is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("spec.scaleTargetRef.{field}")));
            }
        }
        let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64).unwrap_or(1);
        if min < 1 {
            causes.push(Cause::invalid("spec.minReplicas", &json!(min), "must be greater than or equal to 1"));
        }
        let max = &obj.pointer("/spec/maxReplicas").cloned().unwrap_or(json!(0));
        if max.as_i64().is_none_or(|m| m < min.max(1)) {
            causes.push(Cause::invalid("spec.maxReplicas", max, "must be greater than or equal to `minReplicas`"));
        }
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Reference", "string", "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count."),
                col("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond. If not set, the default metric will be set to 80% average CPU utilization."),
                col("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available."),
                col("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas."),
                col("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."),
                AGE,
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let reference = format!("{}/{}", str_at(obj, "/spec/scaleTargetRef/kind").unwrap_or(""), str_at(obj, "/spec/scaleTargetRef/name").unwrap_or(""));
        let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64).map(|m| m.to_string()).unwrap_or("<unset>".into());
        vec![
            json!(name(obj)),
            json!(reference),
            json!(targets(obj)),
            json!(min),
            json!(int_at(obj, "/spec/maxReplicas")),
            json!(int_at(obj, "/status/currentReplicas")),
            json!(age(obj, now)),
        ]
    }
}

/// `cpu: <unknown>/80%` per metric; the current value is always unknown
/// here, as no metrics reach the lab.
fn targets(obj: &Value) -> String {
    let metrics = array_at(obj, "/spec/metrics");
    if metrics.is_empty() {
        return "<none>".into();
    }
    let shown: Vec<String> = metrics
        .iter()
        .map(|m| {
            let kind = m["type"].as_str().unwrap_or("");
            // The source sits under the type's name with a small first letter.
            let key: String = kind.chars().take(1).flat_map(char::to_lowercase).chain(kind.chars().skip(1)).collect();
            let source = &m[key.as_str()];
            let target = &source["target"];
            let goal = match (target["averageUtilization"].as_i64(), target["averageValue"].as_str(), target["value"].as_str()) {
                (Some(u), _, _) => format!("{u}%"),
                (None, Some(v), _) | (None, None, Some(v)) => v.to_string(),
                _ => "<unknown>".into(),
            };
            match source["name"].as_str().or_else(|| source.pointer("/metric/name").and_then(Value::as_str)) {
                Some(n) if kind == "Resource" || kind == "ContainerResource" => format!("{n}: <unknown>/{goal}"),
                _ => format!("<unknown>/{goal}"),
            }
        })
        .collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscalers_default_to_cpu() {
        let mut h =
            json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "maxReplicas": 5}});
        HorizontalPodAutoscalers.default(&mut h);
        assert!(HorizontalPodAutoscalers.validate(&h).is_empty());
        let cells = HorizontalPodAutoscalers.cells(&h, Utc::now());
        assert_eq!(cells[1..5], [json!("Deployment/web"), json!("cpu: <unknown>/80%"), json!("1"), json!(5)]);
        h["spec"]["maxReplicas"] = json!(0);
        assert_eq!(HorizontalPodAutoscalers.validate(&h).len(), 1);
    }
}
