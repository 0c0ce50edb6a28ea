//! The replicaset controller, as upstream's: keeps as many active pods as
//! a ReplicaSet's `spec.replicas`, each with a controller reference to it,
//! and writes how many exist, are ready and are available to its status.
//!
//! One watch of all pods feeds both the cache the controller reads and its
//! expectations: a ReplicaSet whose own creations or deletions are not yet
//! seen in the watch is not scaled again until they are (its status is
//! still written), so it never creates twice for one missing pod.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use component_base::events::{self, Recorder};
use component_base::label_selector::Selector;

use crate::expectations::{observe_pod, Expectations};
use crate::ownership::{claim, controller_reference};
use crate::pods::{self, controller_of};
use crate::retries::Retries;

/// Upstream's `--concurrent-replicaset-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 5;

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

struct Context {
    client: Client,
    pods: Store<Pod>,
    sets: Store<ReplicaSet>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
    retries: Retries,
}

/// `namespace/name`, the key of expectations.
fn key_of(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The ReplicaSet that controls `pod`, if one does.
fn owning_set(pod: &Pod) -> Option<(String, &OwnerReference)> {
    let reference = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet" && r.api_version.starts_with("apps/"))?;
    Some((key_of(&pod.namespace().unwrap_or_default(), &reference.name), reference))
}

/// Runs the replicaset controller until its watches end.
pub async fn run(client: Client, concurrency: u16) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let expectations = Arc::new(Expectations::default());
    let observed = expectations.clone();
    let seen = pods.clone();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map_ok(move |event| {
            observe_pod(&observed, &seen, &event, |pod| owning_set(pod).map(|(key, _)| key));
            event
        })
        .reflect(pod_writer)
        .touched_objects();
    let controller = Controller::new(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    let sets_for_pods = sets.clone();
    let context = Arc::new(Context {
        client: client.clone(),
        pods,
        sets,
        expectations,
        recorder: Recorder::new(client, "replicaset-controller", None),
        retries: Retries::default(),
    });
    controller
        .with_config(Config::default().concurrency(concurrency))
        .watches_stream(pod_events, move |pod: Pod| sets_for(&sets_for_pods, &pod))
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("replicaset controller: {e}"),
            }
        })
        .await;
}

/// The ReplicaSets a pod's change concerns: its controller, or (for an
/// orphan) every ReplicaSet of its namespace whose selector matches it.
fn sets_for(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(reference) = controller_of(&pod.metadata) {
        if reference.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&reference.name).within(&namespace)];
        }
        return vec![];
    }
    sets.state()
        .iter()
        .filter(|set| set.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|set| Selector::parse(set.spec.as_ref().map(|s| &s.selector)).is_ok_and(|s| s.matches(pod.metadata.labels.as_ref())))
        .map(|set| ObjectRef::from_obj(set.as_ref()))
        .collect()
}

async fn reconcile(set: Arc<ReplicaSet>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let key = key_of(&namespace, &set.name_any());
    let action = sync(&set, &context).await?;
    context.retries.succeeded(&key);
    Ok(action)
}

fn error_policy(set: Arc<ReplicaSet>, error: &Error, context: Arc<Context>) -> Action {
    let key = key_of(&set.namespace().unwrap_or_default(), &set.name_any());
    tracing::warn!(replicaset = %key, "sync failed: {error}");
    Action::requeue(context.retries.failed(&key))
}

async fn sync(set: &ReplicaSet, context: &Context) -> Result<Action, Error> {
    let namespace = set.namespace().unwrap_or_default();
    let key = key_of(&namespace, &set.name_any());
    let spec = set.spec.clone().unwrap_or_default();
    let selector = match Selector::parse(Some(&spec.selector)) {
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
    let deleting = set.metadata.deletion_timestamp.is_some();
    let claimed = claim(&pods_api, &owner, deleting, &selector, candidates).await?;

    let mut failure = None;
    if context.expectations.satisfied(&key) && !deleting {
        let wanted = spec.replicas.unwrap_or(1).max(0) as usize;
        if let Err(e) = manage(set, &claimed, wanted, context, &pods_api).await {
            failure = Some(e);
        }
    }

    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
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
async fn manage(set: &ReplicaSet, claimed: &[Pod], wanted: usize, context: &Context, pods_api: &Api<Pod>) -> Result<(), (&'static str, String)> {
    let key = key_of(&set.namespace().unwrap_or_default(), &set.name_any());
    let reference = events::reference(set);
    if claimed.len() < wanted {
        let missing = (wanted - claimed.len()).min(BURST);
        context.expectations.expect_creations(&key, missing);
        let template = set.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
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

/// The active pods of every ReplicaSet that shares this one's controller
/// (the Deployment's other revisions), or this one's alone: how crowded
/// each node is, for choosing which pods go on scale-down.
fn related_pods(set: &ReplicaSet, context: &Context) -> Vec<Pod> {
    let namespace = set.namespace();
    let uids: Vec<String> = match controller_of(&set.metadata) {
        Some(owner) => context
            .sets
            .state()
            .iter()
            .filter(|s| s.namespace() == namespace && controller_of(&s.metadata).is_some_and(|o| o.uid == owner.uid))
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

/// The status `claimed` gives the ReplicaSet (upstream's calculateStatus).
fn status_of(set: &ReplicaSet, claimed: &[Pod], min_ready: i32, now: Timestamp, failure: Option<&(&'static str, String)>) -> ReplicaSetStatus {
    let template_labels =
        set.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    let fully_labeled = claimed.iter().filter(|p| template_labels.iter().all(|(k, v)| p.labels().get(k) == Some(v))).count();
    let old = set.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old.conditions.unwrap_or_default().into_iter().filter(|c| c.type_ != "ReplicaFailure").collect();
    if let Some((reason, message)) = failure {
        let previous = set.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "ReplicaFailure"));
        conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some((*reason).into()),
            message: Some(message.clone()),
            last_transition_time: previous.and_then(|p| p.last_transition_time.clone()).or(Some(Time(now))),
        });
    }
    ReplicaSetStatus {
        replicas: claimed.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(claimed.iter().filter(|p| pods::is_ready(p)).count() as i32),
        available_replicas: Some(claimed.iter().filter(|p| pods::is_available(p, min_ready, now)).count() as i32),
        observed_generation: set.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old.terminating_replicas,
    }
}

/// Writes `status` if it differs from what the ReplicaSet has.
async fn write_status(set: &ReplicaSet, status: ReplicaSetStatus, client: &Client) -> Result<(), kube::Error> {
    if set.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &set.namespace().unwrap_or_default());
    let mut status_json = serde_json::to_value(&status).expect("a status serializes");
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
