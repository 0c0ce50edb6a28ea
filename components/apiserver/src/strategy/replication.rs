//! core/v1 ReplicationControllers (the ReplicaSet's predecessor, selecting
//! by label equality only) and PodTemplates.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::apps::{containers_images, CONTAINERS, IMAGES};
use super::core::{default_pod_spec, validate_pod_spec};
use super::{age, col, default_at, int_at, map_string, name, wide, Column, Strategy, AGE, NAME};
use crate::status::Cause;

fn non_empty_map(obj: &Value, pointer: &str) -> Option<Value> {
    obj.pointer(pointer).filter(|m| m.as_object().is_some_and(|m| !m.is_empty())).cloned()
}

pub struct ReplicationControllers;
impl Strategy for ReplicationControllers {
    /// Upstream: an empty selector, or empty labels, are the template's labels.
    fn default(&self, obj: &mut Value) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            return;
        }
        default_at(obj, &["spec", "replicas"], json!(1));
        if let Some(labels) = non_empty_map(obj, "/spec/template/metadata/labels") {
            if non_empty_map(obj, "/spec/selector").is_none() {
                obj["spec"]["selector"] = labels.clone();
            }
            if non_empty_map(obj, "/metadata/labels").is_none() {
                obj["metadata"]["labels"] = labels;
            }
        }
        if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
            default_pod_spec(spec);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        match non_empty_map(obj, "/spec/selector") {
            None => causes.push(Cause::required("spec.selector")),
            Some(selector) => {
                let labels = obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
                let matches = selector.as_object().expect("a map").iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                if obj.pointer("/spec/template").is_some() && !matches {
                    let shown = map_string(obj, "/spec/template/metadata/labels");
                    causes.push(Cause::invalid("spec.template.metadata.labels", &json!(shown), "`selector` does not match template `labels`"));
                }
            }
        }
        if let Some(r) = obj.pointer("/spec/replicas") {
            if r.as_i64().is_none_or(|n| n < 0) {
                causes.push(Cause::invalid("spec.replicas", r, "must be greater than or equal to 0"));
            }
        }
        if obj.pointer("/spec/template").is_none_or(Value::is_null) {
            causes.push(Cause::required("spec.template"));
        } else {
            validate_pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec", &mut causes);
            if let Some(policy) = obj.pointer("/spec/template/spec/restartPolicy") {
                if policy != "Always" {
                    causes.push(Cause::not_supported("spec.template.spec.restartPolicy", policy, &["Always"]));
                }
            }
        }
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
                col("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
                col("Ready", "integer", "The number of ready replicas for this replication controller."),
                AGE,
                CONTAINERS,
                IMAGES,
                wide("Selector", "string", "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let (containers, images) = containers_images(obj);
        vec![
            json!(name(obj)),
            json!(int_at(obj, "/spec/replicas")),
            json!(int_at(obj, "/status/replicas")),
            json!(int_at(obj, "/status/readyReplicas")),
            json!(age(obj, now)),
            json!(containers),
            json!(images),
            json!(map_string(obj, "/spec/selector")),
        ]
    }
}

pub struct PodTemplates;
impl Strategy for PodTemplates {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.pointer_mut("/template/spec") {
            default_pod_spec(spec);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_pod_spec(obj.pointer("/template/spec"), "template.spec", &mut causes);
        causes
    }
    fn tracks_generation(&self) -> bool {
        false
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Containers", "string", "Names of each container in the template."),
                col("Images", "string", "Images referenced by each container in the template."),
                col("Pod Labels", "string", "The labels for the pod template."),
            ]
        }
    }
    fn cells(&self, obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        let as_workload = json!({"spec": {"template": obj.get("template").cloned().unwrap_or(json!({}))}});
        let (containers, images) = containers_images(&as_workload);
        vec![json!(name(obj)), json!(containers), json!(images), json!(map_string(obj, "/template/metadata/labels"))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_select_their_template_labels() {
        let mut rc = json!({"metadata": {"name": "web"}, "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        ReplicationControllers.default(&mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
        assert!(ReplicationControllers.validate(&rc).is_empty());
        rc["spec"]["selector"] = json!({"app": "db"});
        let lines: Vec<String> = ReplicationControllers.validate(&rc).iter().map(Cause::line).collect();
        assert_eq!(lines, ["spec.template.metadata.labels: Invalid value: \"app=web\": `selector` does not match template `labels`"]);
    }
}
