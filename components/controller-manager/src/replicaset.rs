//! The replicaset and replicationcontroller controllers, as upstream's
//! (whose replication controller is its ReplicaSet controller behind an
//! adapter): keeps as many active pods as a ReplicaSet's or a
//! ReplicationController's `spec.replicas`, each with a controller
//! reference to it, and writes how many exist, are ready and are available
//! to its status. One implementation serves both kinds through
//! [`Replicated`]: the kinds differ only in their selector (a
//! `LabelSelector`, an equality map) and their status type.
//!
//! One watch of all pods feeds both the cache the controller reads and its
//! expectations: a ReplicaSet whose own creations or deletions are not yet
//! seen in the watch is not scaled again until they are (its status is
//! still written), so it never creates twice for one missing pod.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController, ReplicationControllerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use component_base::events::{self, Recorder};
use component_base::label_selector::{Invalid, Selector};

use crate::expectations::{observe_pod, Expectations};
use crate::ownership::{claim, controller_reference};
use crate::pods::{self, controller_of};
use crate::retries::Retries;

/// Upstream's `--concurrent-replicaset-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 5;

/// Upstream's `--concurrent-rc-syncs` default.
pub const DEFAULT_RC_CONCURRENCY: u16 = 5;

/// What the controller needs of a kind it keeps replicas of. The status is
/// computed in the ReplicaSet's shape, which the ReplicationController's
/// has field for field (but `terminatingReplicas`), and converted back.
pub trait Replicated:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static
{
    /// The component its events are recorded as (upstream's).
    const EVENT_SOURCE: &'static str;
    /// The selector of its pods.
    fn selector(&self) -> Result<Selector, Invalid>;
    fn replicas(&self) -> Option<i32>;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// Its status, in the ReplicaSet's shape.
    fn replica_status(&self) -> Option<ReplicaSetStatus>;
    /// `status` as this kind writes it.
    fn status_json(status: &ReplicaSetStatus) -> serde_json::Value;
}

impl Replicated for ReplicaSet {
    const EVENT_SOURCE: &'static str = "replicaset-controller";
    fn selector(&self) -> Result<Selector, Invalid> {
        Selector::parse(self.spec.as_ref().map(|s| &s.selector))
    }
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn replica_status(&self) -> Option<ReplicaSetStatus> {
        self.status.clone()
    }
    fn status_json(status: &ReplicaSetStatus) -> serde_json::Value {
        serde_json::to_value(status).expect("a status serializes")
    }
}

impl Replicated for ReplicationController {
    const EVENT_SOURCE: &'static str = "replication-controller";
    fn selector(&self) -> Result<Selector, Invalid> {
        // The apiserver defaults an absent selector to the template's
        // labels and refuses an empty one.
        Ok(Selector::from_set(self.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s: &&BTreeMap<String, String>| !s.is_empty())))
    }
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn replica_status(&self) -> Option<ReplicaSetStatus> {
        self.status.as_ref().map(same_shape)
    }
    fn status_json(status: &ReplicaSetStatus) -> serde_json::Value {
        // The ReplicationController's status is the ReplicaSet's without
        // terminatingReplicas, which this controller never sets.
        serde_json::to_value(same_shape::<_, ReplicationControllerStatus>(status)).expect("a status serializes")
    }
}

/// One status as the other kind's: the two have the same fields (the
/// ReplicaSet's one more), so a serde round trip converts them.
fn same_shape<A: Serialize, B: DeserializeOwned>(from: &A) -> B {
    serde_json::from_value(serde_json::to_value(from).expect("a status serializes")).expect("the statuses of both kinds have the same shape")
}

/// Whether `reference` names an object of kind `K` (kind and API group).
fn refers_to<K: Replicated>(reference: &OwnerReference) -> bool {
    let group = reference.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    reference.kind == K::kind(&()) && group == K::group(&())
}

/// At most this many pods are created or deleted in one sync (upstream's
/// BurstReplicas).
const BURST: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Manage(String),
}

struct Context<K: Replicated> {
    client: Client,
    pods: Store<Pod>,
    sets: Store<K>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
    retries: Retries,
}

/// `namespace/name`, the key of expectations.
fn key_of(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The object of kind `K` that controls `pod`, if one does.
fn owning_set<K: Replicated>(pod: &Pod) -> Option<(String, &OwnerReference)> {
    let reference = controller_of(&pod.metadata).filter(|r| refers_to::<K>(r))?;
    Some((key_of(&pod.namespace().unwrap_or_default(), &reference.name), reference))
}

/// Runs the controller of kind `K` (the replicaset controller, the
/// replicationcontroller controller) until its watches end.
pub async fn run<K: Replicated>(client: Client, concurrency: u16) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let expectations = Arc::new(Expectations::default());
    let observed = expectations.clone();
    let seen = pods.clone();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map_ok(move |event| {
            observe_pod(&observed, &seen, &event, |pod| owning_set::<K>(pod).map(|(key, _)| key));
            event
        })
        .reflect(pod_writer)
        .touched_objects();
    let controller = Controller::new(Api::<K>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    let sets_for_pods = sets.clone();
    let context = Arc::new(Context {
        client: client.clone(),
        pods,
        sets,
        expectations,
        recorder: Recorder::new(client, K::EVENT_SOURCE, None),
        retries: Retries::default(),
    });
    controller
        .with_config(Config::default().concurrency(concurrency))
        .watches_stream(pod_events, move |pod: Pod| sets_for(&sets_for_pods, &pod))
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("{}: {e}", K::EVENT_SOURCE),
            }
        })
        .await;
}

/// The objects of kind `K` a pod's change concerns: its controller, or
/// (for an orphan) every one of its namespace whose selector matches it.
fn sets_for<K: Replicated>(sets: &Store<K>, pod: &Pod) -> Vec<ObjectRef<K>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(reference) = controller_of(&pod.metadata) {
        if refers_to::<K>(reference) {
            return vec![ObjectRef::new(&reference.name).within(&namespace)];
        }
        return vec![];
    }
    sets.state()
        .iter()
        .filter(|set| set.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|set| set.selector().is_ok_and(|s| s.matches(pod.metadata.labels.as_ref())))
        .map(|set| ObjectRef::from_obj(set.as_ref()))
        .collect()
}

async fn reconcile<K: Replicated>(set: Arc<K>, context: Arc<Context<K>>) -> Result<Action, Error> {
    // As upstream's controllers start their workers only once their
    // informers have synced: a decision made on a half-listed cache (no
    // pods yet, after a restart) would create or drop what already exists.
    let _ = context.pods.wait_until_ready().await;
    let namespace = set.namespace().unwrap_or_default();
    let key = key_of(&namespace, &set.name_any());
    let action = sync(set.as_ref(), &context).await?;
    context.retries.succeeded(&key);
    Ok(action)
}

fn error_policy<K: Replicated>(set: Arc<K>, error: &Error, context: Arc<Context<K>>) -> Action {
    let key = key_of(&set.namespace().unwrap_or_default(), &set.name_any());
    tracing::warn!(kind = %K::kind(&()), object = %key, "sync failed: {error}");
    Action::requeue(context.retries.failed(&key))
}

async fn sync<K: Replicated>(set: &K, context: &Context<K>) -> Result<Action, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let key = key_of(&namespace, &set.name_any());
    let selector = match set.selector() {
        Ok(selector) => selector,
        Err(e) => {
            context.recorder.warning(events::reference(set), "InvalidSelector", e.to_string());
            return Ok(Action::await_change());
        }
    };
    let pods_api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let candidates: Vec<Pod> =
        context.pods.state().iter().filter(|p| p.namespace().as_deref() == Some(namespace.as_str()) && pods::is_active(p)).map(|p| (**p).clone()).collect();
    let owner = controller_reference(set);
    let deleting = set.meta().deletion_timestamp.is_some();
    let claimed = claim(&pods_api, &owner, deleting, &selector, candidates).await?;

    let mut failure = None;
    if context.expectations.satisfied(&key) && !deleting {
        let wanted = set.replicas().unwrap_or(1).max(0) as usize;
        if let Err(e) = manage(set, &claimed, wanted, context, &pods_api).await {
            failure = Some(e);
        }
    }

    let now = Timestamp::now();
    let min_ready = set.min_ready_seconds();
    let status = status_of(set, &claimed, min_ready, now, failure.as_ref());
    write_status(set, status, &context.client).await?;
    if let Some((_, message)) = failure {
        return Err(Error::Manage(message));
    }
    // Look again when a ready pod becomes available.
    let wait = claimed.iter().filter_map(|p| pods::seconds_until_available(p, min_ready, now)).min();
    Ok(wait.map(|s| Action::requeue(Duration::from_secs(s as u64))).unwrap_or_else(Action::await_change))
}

/// Creates or deletes pods so `claimed` has `wanted` active pods. On
/// failure: the condition reason (FailedCreate, FailedDelete) and message.
async fn manage<K: Replicated>(set: &K, claimed: &[Pod], wanted: usize, context: &Context<K>, pods_api: &Api<Pod>) -> Result<(), (&'static str, String)> {
    let key = key_of(&set.namespace().unwrap_or_default(), &set.name_any());
    let reference = events::reference(set);
    if claimed.len() < wanted {
        let missing = (wanted - claimed.len()).min(BURST);
        context.expectations.expect_creations(&key, missing);
        let template = set.template().cloned().unwrap_or_default();
        let pod = pod_from_template(&template, &set.name_any(), controller_reference(set));
        // Slow start, as upstream: batches of 1, 2, 4, ... so a failing
        // template costs one request, not hundreds.
        let mut done = 0;
        let mut batch = 1;
        while done < missing {
            let size = batch.min(missing - done);
            let params = PostParams::default();
            let results = futures_util::future::join_all((0..size).map(|_| pods_api.create(&params, &pod))).await;
            let mut failed = None;
            for result in results {
                match result {
                    Ok(created) => context.recorder.normal(reference.clone(), "SuccessfulCreate", format!("Created pod: {}", created.name_any())),
                    Err(e) => {
                        context.expectations.creation_observed(&key);
                        // Creations into a terminating namespace are refused;
                        // the namespace controller is emptying it.
                        if !is_namespace_terminating(&e) {
                            context.recorder.warning(reference.clone(), "FailedCreate", format!("Error creating: {}", message_of(&e)));
                        }
                        failed = Some(message_of(&e));
                    }
                }
            }
            done += size;
            if let Some(message) = failed {
                // The creations never asked for will never be seen.
                for _ in done..missing {
                    context.expectations.creation_observed(&key);
                }
                return Err(("FailedCreate", message));
            }
            batch *= 2;
        }
    } else if claimed.len() > wanted {
        let excess = (claimed.len() - wanted).min(BURST);
        let related = related_pods(set, context);
        let related: Vec<&Pod> = related.iter().collect();
        let mut order: Vec<&Pod> = claimed.iter().collect();
        pods::sort_for_deletion(&mut order, &related);
        let doomed = &order[..excess];
        context.expectations.expect_deletions(&key, doomed.iter().map(|p| p.uid().unwrap_or_default()));
        let params = DeleteParams::default();
        let names: Vec<String> = doomed.iter().map(|p| p.name_any()).collect();
        let results = futures_util::future::join_all(names.iter().map(|name| pods_api.delete(name, &params))).await;
        let mut failed = None;
        for (pod, result) in doomed.iter().zip(results) {
            match result {
                Ok(_) => context.recorder.normal(reference.clone(), "SuccessfulDelete", format!("Deleted pod: {}", pod.name_any())),
                Err(e) => {
                    context.expectations.deletion_observed(&key, &pod.uid().unwrap_or_default());
                    if !matches!(&e, kube::Error::Api(s) if s.is_not_found()) {
                        context.recorder.warning(reference.clone(), "FailedDelete", format!("Error deleting: {}", message_of(&e)));
                        failed = Some(message_of(&e));
                    }
                }
            }
        }
        if let Some(message) = failed {
            return Err(("FailedDelete", message));
        }
    }
    Ok(())
}

/// The active pods of every object of its kind that shares this one's
/// controller (a Deployment's other revisions), or this one's alone: how
/// crowded each node is, for choosing which pods go on scale-down.
fn related_pods<K: Replicated>(set: &K, context: &Context<K>) -> Vec<Pod> {
    let namespace = set.namespace();
    let uids: Vec<String> = match controller_of(set.meta()) {
        Some(owner) => context
            .sets
            .state()
            .iter()
            .filter(|s| s.namespace() == namespace && controller_of(s.meta()).is_some_and(|o| o.uid == owner.uid))
            .filter_map(|s| s.uid())
            .collect(),
        None => set.uid().into_iter().collect(),
    };
    context
        .pods
        .state()
        .iter()
        .filter(|p| p.namespace() == namespace && pods::is_active(p) && controller_of(&p.metadata).is_some_and(|o| uids.contains(&o.uid)))
        .map(|p| (**p).clone())
        .collect()
}

fn is_namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 403 && s.message.contains("because it is being terminated"))
}

pub(crate) fn message_of(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// A pod as `template` describes it, controlled by `owner` and named after
/// `prefix` (upstream's GetPodFromTemplate).
pub fn pod_from_template(template: &PodTemplateSpec, prefix: &str, owner: OwnerReference) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The status `claimed` gives the object (upstream's calculateStatus).
fn status_of<K: Replicated>(set: &K, claimed: &[Pod], min_ready: i32, now: Timestamp, failure: Option<&(&'static str, String)>) -> ReplicaSetStatus {
    let template_labels = set.template().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let fully_labeled = claimed.iter().filter(|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))).count();
    let old = set.replica_status().unwrap_or_default();
    let previous = old.conditions.as_ref().and_then(|c| c.iter().find(|c| c.type_ == "ReplicaFailure")).cloned();
    let mut conditions: Vec<ReplicaSetCondition> = old.conditions.unwrap_or_default().into_iter().filter(|c| c.type_ != "ReplicaFailure").collect();
    if let Some((reason, message)) = failure {
        conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some((*reason).into()),
            message: Some(message.clone()),
            last_transition_time: previous.and_then(|p| p.last_transition_time).or(Some(Time(now))),
        });
    }
    ReplicaSetStatus {
        replicas: claimed.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(claimed.iter().filter(|p| pods::is_ready(p)).count() as i32),
        available_replicas: Some(claimed.iter().filter(|p| pods::is_available(p, min_ready, now)).count() as i32),
        observed_generation: set.meta().generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old.terminating_replicas,
    }
}

/// Writes `status` if it differs from what the object has.
async fn write_status<K: Replicated>(set: &K, status: ReplicaSetStatus, client: &Client) -> Result<(), kube::Error> {
    if set.replica_status().as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), &set.namespace().unwrap_or_default());
    let mut status_json = K::status_json(&status);
    // A merge patch leaves out what is absent; conditions that went must
    // be written as null to go.
    if status.conditions.is_none() {
        status_json["conditions"] = serde_json::Value::Null;
    }
    let patch = serde_json::json!({"status": status_json});
    match api.patch_status(&set.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(value: serde_json::Value) -> ReplicationController {
        serde_json::from_value(value).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn owner_references_are_told_apart_by_kind_and_group() {
        let reference = |api_version: &str, kind: &str| OwnerReference { api_version: api_version.into(), kind: kind.into(), ..Default::default() };
        assert!(refers_to::<ReplicaSet>(&reference("apps/v1", "ReplicaSet")));
        assert!(!refers_to::<ReplicaSet>(&reference("v1", "ReplicaSet")));
        assert!(!refers_to::<ReplicaSet>(&reference("apps/v1", "ReplicationController")));
        assert!(refers_to::<ReplicationController>(&reference("v1", "ReplicationController")));
        assert!(!refers_to::<ReplicationController>(&reference("example.com/v1", "ReplicationController")));
    }

    #[test]
    fn a_replication_controller_selects_by_equality() {
        let selector = rc(serde_json::json!({"metadata": {"name": "a"}, "spec": {"selector": {"app": "web"}}})).selector().unwrap();
        assert!(selector.matches(Some(&labels(&[("app", "web"), ("x", "y")]))));
        assert!(!selector.matches(Some(&labels(&[("app", "db")]))));
        // Neither absent nor empty selects every pod of the namespace.
        let empty = rc(serde_json::json!({"metadata": {"name": "a"}, "spec": {"selector": {}}})).selector().unwrap();
        assert!(!empty.matches(Some(&labels(&[("app", "web")]))));
        assert!(!rc(serde_json::json!({"metadata": {"name": "a"}})).selector().unwrap().matches(None));
    }

    #[test]
    fn a_replication_controller_status_converts_both_ways() {
        let status = ReplicaSetStatus {
            replicas: 3,
            fully_labeled_replicas: Some(3),
            ready_replicas: Some(2),
            available_replicas: Some(1),
            observed_generation: Some(4),
            conditions: Some(vec![ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some("FailedCreate".into()),
                message: Some("quota".into()),
                last_transition_time: None,
            }]),
            terminating_replicas: None,
        };
        let json = ReplicationController::status_json(&status);
        assert_eq!(json["readyReplicas"], 2);
        assert_eq!(json["conditions"][0]["reason"], "FailedCreate");
        let back = rc(serde_json::json!({"metadata": {"name": "a"}, "status": json}));
        assert_eq!(back.replica_status(), Some(status));
    }

    #[test]
    fn pods_are_made_from_the_template_and_owned() {
        let controller = rc(serde_json::json!({
            "metadata": {"name": "web", "uid": "u1"},
            "spec": {"replicas": 2, "selector": {"app": "web"}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}
        }));
        let pod = pod_from_template(controller.template().unwrap(), "web", controller_reference(&controller));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.api_version.as_str(), owner.kind.as_str(), owner.uid.as_str()), ("v1", "ReplicationController", "u1"));
        assert_eq!(controller.replicas(), Some(2));
    }
}
