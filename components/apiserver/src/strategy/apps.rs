//! apps/v1 workloads: their pod templates take the pod defaults and checks.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::core::{default_pod_spec, validate_pod_spec};
use super::{age, array_at, col, default_at, int_at, name, updates, wide, Column, Strategy, AGE, NAME};
use crate::selectors::{Op, Requirement, Selector};
use crate::status::Cause;

fn default_template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        default_pod_spec(spec);
    }
}

/// A `LabelSelector` (matchLabels + matchExpressions) as a selector.
pub fn label_selector(sel: &Value) -> Result<Selector, String> {
    let mut reqs = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push(Requirement { key: k.clone(), op: Op::Equals(v.as_str().unwrap_or("").to_string()) });
        }
    }
    for e in array_at(sel, "/matchExpressions") {
        let key = e["key"].as_str().unwrap_or("").to_string();
        let values = array_at(e, "/values").iter().filter_map(Value::as_str).map(String::from).collect();
        let op = match e["operator"].as_str() {
            Some("In") => Op::In(values),
            Some("NotIn") => Op::NotIn(values),
            Some("Exists") => Op::Exists,
            Some("DoesNotExist") => Op::DoesNotExist,
            other => return Err(format!("{other:?} is not a valid label selector operator")),
        };
        reqs.push(Requirement { key, op });
    }
    Ok(Selector(reqs))
}

/// In apps/v1 a workload's selector never changes.
fn validate_workload_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    updates::immutable(new, old, "/spec/selector", "spec.selector", &mut causes);
    causes
}

/// A pod template's labels (`<path>.template.metadata.labels` of `spec`)
/// must match its owner's selector.
pub(super) fn check_template_labels(selector: &Selector, spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let labels = spec.pointer("/template/metadata/labels");
    if !selector.matches_labels(labels.and_then(Value::as_object)) {
        let shown = labels.cloned().unwrap_or(json!({}));
        causes.push(Cause::invalid(format!("{path}.template.metadata.labels"), &json!(shown.to_string()), "`selector` does not match template `labels`"));
    }
}

/// The selector is required, non-empty, and must match the template's labels.
pub(super) fn validate_workload(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match obj.pointer("/spec/selector") {
        None | Some(Value::Null) => causes.push(Cause::required("spec.selector")),
        Some(sel) => match label_selector(sel) {
            Err(why) => causes.push(Cause::invalid("spec.selector", sel, why)),
            Ok(s) if s.is_empty() => causes.push(Cause::invalid("spec.selector", sel, "empty selector is invalid for deployment")),
            Ok(s) => check_template_labels(&s, &obj["spec"], "spec", &mut causes),
        },
    }
    if let Some(r) = obj.pointer("/spec/replicas") {
        if r.as_i64().is_none_or(|n| n < 0) {
            causes.push(Cause::invalid("spec.replicas", r, "must be greater than or equal to 0"));
        }
    }
    validate_pod_spec(obj.pointer("/spec/template/spec"), "spec.template.spec", &mut causes);
    causes
}

pub(super) fn containers_images(obj: &Value) -> (String, String) {
    let cs = array_at(obj, "/spec/template/spec/containers");
    let names: Vec<&str> = cs.iter().filter_map(|c| c["name"].as_str()).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| c["image"].as_str()).collect();
    (names.join(","), images.join(","))
}

/// The workload's selector as kubectl's SELECTOR column shows it.
pub(super) fn selector_string(obj: &Value) -> String {
    match obj.pointer("/spec/selector").map(label_selector) {
        Some(Ok(s)) if !s.is_empty() => s.to_string(),
        _ => "<none>".into(),
    }
}

pub(super) const CONTAINERS: super::Column = wide("Containers", "string", "Names of each container in the template.");
pub(super) const IMAGES: super::Column = wide("Images", "string", "Images referenced by each container in the template.");
const SELECTOR: super::Column =
    wide("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.");

pub struct Deployments;
impl Strategy for Deployments {
    fn default(&self, obj: &mut Value) {
        default_at(obj, &["spec", "replicas"], json!(1));
        default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
        default_at(obj, &["spec", "progressDeadlineSeconds"], json!(600));
        default_at(obj, &["spec", "strategy", "type"], json!("RollingUpdate"));
        if obj.pointer("/spec/strategy/type") == Some(&json!("RollingUpdate")) {
            default_at(obj, &["spec", "strategy", "rollingUpdate", "maxUnavailable"], json!("25%"));
            default_at(obj, &["spec", "strategy", "rollingUpdate", "maxSurge"], json!("25%"));
        }
        default_template(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_workload(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        validate_workload_update(new, old)
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Ready", "string", "Number of the pod with ready state"),
                col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let (containers, images) = containers_images(obj);
        vec![
            json!(name(obj)),
            json!(format!("{}/{}", int_at(obj, "/status/readyReplicas"), int_at(obj, "/spec/replicas"))),
            json!(int_at(obj, "/status/updatedReplicas")),
            json!(int_at(obj, "/status/availableReplicas")),
            json!(age(obj, now)),
            json!(containers),
            json!(images),
            json!(selector_string(obj)),
        ]
    }
}

pub struct ReplicaSets;
impl Strategy for ReplicaSets {
    fn default(&self, obj: &mut Value) {
        default_at(obj, &["spec", "replicas"], json!(1));
        default_template(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_workload(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        validate_workload_update(new, old)
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Desired", "integer", "Replicas is the number of desired replicas."),
                col("Current", "integer", "Replicas is the most recently observed number of replicas."),
                col("Ready", "integer", "The number of ready replicas for this replica set."),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
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
            json!(selector_string(obj)),
        ]
    }
}

pub struct DaemonSets;
impl Strategy for DaemonSets {
    fn default(&self, obj: &mut Value) {
        default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
        default_at(obj, &["spec", "updateStrategy", "type"], json!("RollingUpdate"));
        default_template(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_workload(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        validate_workload_update(new, old)
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
            NAME,
            col("Desired", "integer", "The total number of nodes that should be running the daemon pod."),
            col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
            col("Ready", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
            col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
            col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let (containers, images) = containers_images(obj);
        vec![
            json!(name(obj)),
            json!(int_at(obj, "/status/desiredNumberScheduled")),
            json!(int_at(obj, "/status/currentNumberScheduled")),
            json!(int_at(obj, "/status/numberReady")),
            json!(int_at(obj, "/status/updatedNumberScheduled")),
            json!(int_at(obj, "/status/numberAvailable")),
            json!(super::map_string(obj, "/spec/template/spec/nodeSelector")),
            json!(age(obj, now)),
            json!(containers),
            json!(images),
            json!(selector_string(obj)),
        ]
    }
}

/// What an update of a StatefulSet's spec may change (upstream's list).
const STATEFULSET_MUTABLE: &[&str] = &["replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds"];

pub struct StatefulSets;
impl Strategy for StatefulSets {
    fn default(&self, obj: &mut Value) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            return;
        }
        default_at(obj, &["spec", "replicas"], json!(1));
        default_at(obj, &["spec", "podManagementPolicy"], json!("OrderedReady"));
        default_at(obj, &["spec", "updateStrategy", "type"], json!("RollingUpdate"));
        if obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
            default_at(obj, &["spec", "updateStrategy", "rollingUpdate", "partition"], json!(0));
        }
        default_at(obj, &["spec", "revisionHistoryLimit"], json!(10));
        default_at(obj, &["spec", "persistentVolumeClaimRetentionPolicy", "whenDeleted"], json!("Retain"));
        default_at(obj, &["spec", "persistentVolumeClaimRetentionPolicy", "whenScaled"], json!("Retain"));
        default_template(obj);
        if let Some(claims) = obj.pointer_mut("/spec/volumeClaimTemplates").and_then(Value::as_array_mut) {
            for claim in claims.iter_mut().filter(|c| c.is_object()) {
                default_at(claim, &["apiVersion"], json!("v1"));
                default_at(claim, &["kind"], json!("PersistentVolumeClaim"));
                super::storage::default_claim(claim);
            }
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = validate_workload(obj);
        if let Some(policy) = obj.pointer("/spec/template/spec/restartPolicy") {
            if policy != "Always" {
                causes.push(Cause::not_supported("spec.template.spec.restartPolicy", policy, &["Always"]));
            }
        }
        if let Some(p) = obj.pointer("/spec/podManagementPolicy") {
            if !matches!(p.as_str(), Some("OrderedReady" | "Parallel")) {
                causes.push(Cause::not_supported("spec.podManagementPolicy", p, &["OrderedReady", "Parallel"]));
            }
        }
        if let Some(t) = obj.pointer("/spec/updateStrategy/type") {
            if !matches!(t.as_str(), Some("RollingUpdate" | "OnDelete")) {
                causes.push(Cause::not_supported("spec.updateStrategy.type", t, &["OnDelete", "RollingUpdate"]));
            }
        }
        if let Some(p) = obj.pointer("/spec/updateStrategy/rollingUpdate/partition") {
            if p.as_i64().is_none_or(|n| n < 0) {
                causes.push(Cause::invalid("spec.updateStrategy.rollingUpdate.partition", p, "must be greater than or equal to 0"));
            }
        }
        for (i, claim) in array_at(obj, "/spec/volumeClaimTemplates").iter().enumerate() {
            if claim.pointer("/metadata/name").and_then(Value::as_str).is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("spec.volumeClaimTemplates[{i}].metadata.name")));
            }
            super::storage::validate_claim_spec(claim.get("spec"), &format!("spec.volumeClaimTemplates[{i}].spec"), &mut causes);
        }
        causes
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let fixed = |o: &Value| {
            let mut spec = o.get("spec").cloned().unwrap_or(json!({}));
            if let Some(m) = spec.as_object_mut() {
                for k in STATEFULSET_MUTABLE {
                    m.remove(*k);
                }
            }
            spec
        };
        if fixed(new) != fixed(old) {
            return vec![Cause::forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )];
        }
        Vec::new()
    }
    fn columns(&self) -> &'static [Column] {
        const { &[NAME, col("Ready", "string", "Number of the pod with ready state"), AGE, CONTAINERS, IMAGES] }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let (containers, images) = containers_images(obj);
        vec![
            json!(name(obj)),
            json!(format!("{}/{}", int_at(obj, "/status/readyReplicas"), int_at(obj, "/spec/replicas"))),
            json!(age(obj, now)),
            json!(containers),
            json!(images),
        ]
    }
}

/// `kind.group/name` of an object's controller, as kubectl names resources.
pub(super) fn controller_name(obj: &Value) -> String {
    let owner = array_at(obj, "/metadata/ownerReferences").iter().find(|r| r["controller"] == true);
    match owner {
        None => "<none>".into(),
        Some(r) => {
            let kind = r["kind"].as_str().unwrap_or("").to_lowercase();
            let group = r["apiVersion"].as_str().and_then(|v| v.split_once('/')).map(|(g, _)| g).unwrap_or("");
            let name = r["name"].as_str().unwrap_or("");
            if group.is_empty() {
                format!("{kind}/{name}")
            } else {
                format!("{kind}.{group}/{name}")
            }
        }
    }
}

pub struct ControllerRevisions;
impl Strategy for ControllerRevisions {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        match obj.get("revision") {
            Some(r) if r.as_i64().is_some_and(|n| n >= 0) => Vec::new(),
            Some(r) => vec![Cause::invalid("revision", r, "must be greater than or equal to 0")],
            None => vec![Cause::required("revision")],
        }
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        updates::immutable(new, old, "/data", "data", &mut causes);
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Controller", "string", "Controller of the object"),
                col("Revision", "string", "Revision indicates the revision of the state represented by Data."),
                AGE,
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![json!(name(obj)), json!(controller_name(obj)), json!(int_at(obj, "/revision")), json!(age(obj, now))]
    }
}
