//! The daemonset controller, as upstream's: one pod of a DaemonSet on
//! every node that its nodeSelector, required node affinity and taints
//! (against its tolerations) allow. Each pod is pinned to its node by a
//! required node affinity on `metadata.name`, and the scheduler binds it
//! there. A template change is rolled out node by node within
//! `maxUnavailable` (RollingUpdate) or waits for pods to be deleted
//! (OnDelete).
//!
//! Upstream records templates as ControllerRevisions; the apiserver does
//! not serve those yet, so the `controller-revision-hash` label carries
//! the template's hash alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use component_base::events::{self, Recorder};
use component_base::label_selector::Selector;
use component_base::taints::tolerates;

use crate::deployment::revisions::template_hash;
use crate::ownership::controller_reference;
use crate::pods::{self, controller_of};
use crate::replicaset::pod_from_template;

/// Upstream's `--concurrent-daemonset-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 2;
pub const REVISION_HASH: &str = "controller-revision-hash";

struct Context {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    recorder: Recorder,
}

pub async fn run(client: Client, concurrency: u16) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(pod_writer).touched_objects();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(node_writer).touched_objects();
    let controller = Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    let context = Arc::new(Context { client: client.clone(), pods, nodes, recorder: Recorder::new(client, "daemonset-controller", None) });
    controller
        .with_config(Config::default().concurrency(concurrency))
        .watches_stream(pod_events, |pod: Pod| {
            controller_of(&pod.metadata).filter(|r| r.kind == "DaemonSet").map(|r| ObjectRef::new(&r.name).within(&pod.namespace().unwrap_or_default()))
        })
        // A node added, relabelled or tainted may change where pods belong.
        .watches_stream(node_events, move |_node: Node| sets.state().iter().map(|s| ObjectRef::from_obj(s.as_ref())).collect::<Vec<_>>())
        .run(reconcile, |_, error, _| error_policy(error), context)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("daemonset controller: {e}"),
            }
        })
        .await;
}

fn error_policy(error: &kube::Error) -> Action {
    tracing::warn!("daemonset sync failed: {error}");
    Action::requeue(Duration::from_secs(1))
}

/// The tolerations every daemon pod gets, as upstream adds them: daemons
/// stay on nodes that are unreachable, not ready, under pressure or
/// cordoned.
fn default_tolerations(template: &PodTemplateSpec) -> Vec<Toleration> {
    let mut keys = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if template.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        keys.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    keys.into_iter()
        .map(|(key, effect)| Toleration { key: Some(key.into()), operator: Some("Exists".into()), effect: Some(effect.into()), ..Default::default() })
        .collect()
}

/// Whether a daemon pod of `template` belongs on `node`.
fn should_run(template: &PodTemplateSpec, node: &Node) -> bool {
    let spec = template.spec.clone().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if spec.node_selector.iter().flatten().any(|(k, v)| labels.get(k) != Some(v)) {
        return false;
    }
    let required = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()).and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    if let Some(selector) = required {
        if !selector.node_selector_terms.iter().any(|term| term_matches(term, node)) {
            return false;
        }
    }
    let mut tolerations = spec.tolerations.unwrap_or_default();
    tolerations.extend(default_tolerations(template));
    let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    taints.iter().filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute").all(|t| tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(|v| v.parse::<i64>().ok()), values.first().and_then(|b| b.parse::<i64>().ok())) else { return false };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.name_any();
    let expressions = term.match_expressions.iter().flatten();
    let fields = term.match_fields.iter().flatten();
    let any = term.match_expressions.as_ref().is_some_and(|e| !e.is_empty()) || term.match_fields.as_ref().is_some_and(|f| !f.is_empty());
    any && expressions.clone().all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.clone().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
}

/// The node a daemon pod is for: where it is bound, or the node its
/// `metadata.name` affinity pins it to.
fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = &spec.node_name {
        return Some(node.clone());
    }
    let terms = &spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?.node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// A daemon pod for `node`: the template, the revision hash, the default
/// tolerations, and a required affinity to the node by name (upstream
/// replaces any metadata.name term of the template's).
fn daemon_pod(set: &DaemonSet, template: &PodTemplateSpec, hash: &str, node: &str) -> Pod {
    let mut pod = pod_from_template(template, &set.name_any(), controller_reference(set));
    pod.metadata.labels.get_or_insert_with(BTreeMap::new).insert(REVISION_HASH.into(), hash.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for t in default_tolerations(template) {
        if !tolerations.iter().any(|have| have.key == t.key && have.effect == t.effect) {
            tolerations.push(t);
        }
    }
    let pin = NodeSelectorRequirement { key: "metadata.name".into(), operator: "In".into(), values: Some(vec![node.into()]) };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    let selector = node_affinity.required_during_scheduling_ignored_during_execution.get_or_insert_with(|| NodeSelector { node_selector_terms: vec![] });
    if selector.node_selector_terms.is_empty() {
        selector.node_selector_terms.push(NodeSelectorTerm::default());
    }
    for term in selector.node_selector_terms.iter_mut() {
        let mut fields: Vec<NodeSelectorRequirement> = term.match_fields.take().unwrap_or_default().into_iter().filter(|f| f.key != "metadata.name").collect();
        fields.push(pin.clone());
        term.match_fields = Some(fields);
    }
    pod
}

async fn reconcile(set: Arc<DaemonSet>, context: Arc<Context>) -> Result<Action, kube::Error> {
    // As upstream's controllers start their workers only once their
    // informers have synced: a decision made on a half-listed cache (no
    // pods yet, after a restart) would create or drop what already exists.
    let _ = tokio::join!(context.pods.wait_until_ready(), context.nodes.wait_until_ready());
    let namespace = set.namespace().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let Ok(selector) = Selector::parse(Some(&spec.selector)) else {
        return Ok(Action::await_change());
    };
    let template = spec.template.clone();
    let hash = template_hash(&template, set.status.as_ref().and_then(|s| s.collision_count));
    let pods_api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let reference = events::reference(set.as_ref());
    let own: Vec<Arc<Pod>> = context
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(namespace.as_str()) && controller_of(&p.metadata).is_some_and(|r| Some(&r.uid) == set.metadata.uid.as_ref())
        })
        .filter(|p| selector.matches(p.metadata.labels.as_ref()))
        .collect();
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in own.iter().filter(|p| pods::is_active(p)) {
        if let Some(node) = node_of(pod) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    let nodes = context.nodes.state();
    let mut desired = 0;
    let mut misscheduled = 0;
    let (mut to_create, mut to_delete): (Vec<String>, Vec<Arc<Pod>>) = (Vec::new(), Vec::new());
    for node in nodes.iter() {
        let name = node.name_any();
        let here = by_node.remove(&name).unwrap_or_default();
        if should_run(&template, node) {
            desired += 1;
            match here.len() {
                0 => to_create.push(name),
                1 => {}
                // Duplicates: keep the oldest.
                _ => {
                    let mut here = here;
                    here.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
                    to_delete.extend(here.into_iter().skip(1));
                }
            }
        } else if !here.is_empty() {
            misscheduled += 1;
            to_delete.extend(here);
        }
    }
    // Pods for nodes that are gone.
    to_delete.extend(by_node.into_values().flatten());

    if set.metadata.deletion_timestamp.is_none() {
        for node in &to_create {
            match pods_api.create(&PostParams::default(), &daemon_pod(&set, &template, &hash, node)).await {
                Ok(pod) => context.recorder.normal(reference.clone(), "SuccessfulCreate", format!("Created pod: {}", pod.name_any())),
                Err(e) => context.recorder.warning(reference.clone(), "FailedCreate", format!("Error creating: {e}")),
            }
        }
        // Rolling update: old-template pods go, within maxUnavailable.
        let rolling = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
        if rolling {
            let max_unavailable = match spec.update_strategy.as_ref().and_then(|s| s.rolling_update.as_ref()).and_then(|r| r.max_unavailable.clone()) {
                Some(IntOrString::Int(n)) => n.max(1),
                Some(IntOrString::String(p)) => ((p.trim_end_matches('%').parse::<i64>().unwrap_or(0) * desired as i64 + 99) / 100).max(1) as i32,
                None => 1,
            };
            let min_ready = spec.min_ready_seconds.unwrap_or(0);
            let now = Timestamp::now();
            let unavailable = desired - own.iter().filter(|p| pods::is_active(p) && pods::is_available(p, min_ready, now)).count() as i32;
            let mut budget = max_unavailable - unavailable.max(0);
            // Old pods that are not available go first: they cost nothing.
            let mut old: Vec<&Arc<Pod>> = own.iter().filter(|p| pods::is_active(p) && p.labels().get(REVISION_HASH) != Some(&hash)).collect();
            old.sort_by_key(|p| pods::is_available(p, min_ready, now));
            for pod in old {
                if !pods::is_available(pod, min_ready, now) {
                    to_delete.push(pod.clone());
                } else if budget > 0 {
                    budget -= 1;
                    to_delete.push(pod.clone());
                }
            }
        }
        for pod in &to_delete {
            match pods_api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => context.recorder.normal(reference.clone(), "SuccessfulDelete", format!("Deleted pod: {}", pod.name_any())),
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }

    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let scheduled: Vec<&Arc<Pod>> = own.iter().filter(|p| pods::is_active(p) && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()).collect();
    let status = DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: scheduled.len() as i32 - misscheduled,
        number_misscheduled: misscheduled,
        number_ready: scheduled.iter().filter(|p| pods::is_ready(p)).count() as i32,
        number_available: Some(scheduled.iter().filter(|p| pods::is_available(p, min_ready, now)).count() as i32),
        number_unavailable: Some((desired - scheduled.iter().filter(|p| pods::is_available(p, min_ready, now)).count() as i32).max(0)),
        updated_number_scheduled: Some(scheduled.iter().filter(|p| p.labels().get(REVISION_HASH) == Some(&hash)).count() as i32),
        observed_generation: set.metadata.generation,
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    if set.status.as_ref() != Some(&status) {
        let api: Api<DaemonSet> = Api::namespaced(context.client.clone(), &namespace);
        api.patch_status(&set.name_any(), &PatchParams::default(), &Patch::Merge(&serde_json::json!({"status": status}))).await?;
    }
    let waiting = own.iter().filter_map(|p| pods::seconds_until_available(p, min_ready, now)).min();
    Ok(waiting.map(|s| Action::requeue(Duration::from_secs(s as u64))).unwrap_or_else(Action::await_change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            spec: Some(NodeSpec { taints: Some(taints), ..Default::default() }),
            status: None,
        }
    }

    #[test]
    fn daemons_go_where_selectors_and_taints_allow() {
        let template = PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec { node_selector: Some([("disk".to_string(), "ssd".to_string())].into()), ..Default::default() }),
        };
        let tainted = Taint { key: "dedicated".into(), effect: "NoSchedule".into(), value: None, time_added: None };
        let unreachable = Taint { key: "node.kubernetes.io/unreachable".into(), effect: "NoExecute".into(), value: None, time_added: None };
        assert!(should_run(&template, &node("a", &[("disk", "ssd")], vec![])));
        assert!(!should_run(&template, &node("b", &[("disk", "hdd")], vec![])));
        assert!(!should_run(&template, &node("c", &[("disk", "ssd")], vec![tainted])));
        assert!(should_run(&template, &node("d", &[("disk", "ssd")], vec![unreachable])), "daemons tolerate unreachable nodes");
    }

    #[test]
    fn a_daemon_pod_is_pinned_to_its_node() {
        let set = DaemonSet { metadata: ObjectMeta { name: Some("agent".into()), uid: Some("u".into()), ..Default::default() }, ..Default::default() };
        let pod = daemon_pod(&set, &PodTemplateSpec::default(), "h", "worker-2");
        assert_eq!(node_of(&pod).as_deref(), Some("worker-2"));
        assert_eq!(pod.metadata.labels.unwrap()[REVISION_HASH], "h");
    }
}
