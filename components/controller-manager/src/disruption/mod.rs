//! The disruption controller, as upstream's: keeps each
//! PodDisruptionBudget's status (expected pods, healthy pods, disruptions
//! allowed, the DisruptionAllowed condition) true to its pods, so that
//! the apiserver's pods/eviction can grant or refuse evictions from it.
//! `budget` computes; this module watches, gathers and writes.
//!
//! A budget is synced when it changes and when one of its pods does;
//! entries of `status.disruptedPods` are looked at again when they lapse.

pub mod budget;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use component_base::events::{self, Recorder};
use component_base::label_selector::Selector;

use crate::pods::controller_of;
use budget::Scale;

/// Upstream's disruption controller runs its budgets on one worker.
const CONCURRENCY: u16 = 1;

/// How long a sync waits for the first list of pods before it tries
/// again later (it never waits without a bound).
const POD_LIST_WAIT: Duration = Duration::from_secs(10);

struct Context {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("the pods are not listed yet")]
    PodsNotListed,
}

pub async fn run(client: Client) {
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(pod_writer).touched_objects();
    let controller = Controller::new(Api::<PodDisruptionBudget>::all(client.clone()), watcher::Config::default());
    let budgets = controller.store();
    let context = Arc::new(Context { client: client.clone(), pods, recorder: Recorder::new(client, "controllermanager", None) });
    controller
        .with_config(Config::default().concurrency(CONCURRENCY))
        // A pod added, changed or deleted changes the budgets that select it.
        .watches_stream(pod_events, move |pod: Pod| budgets_of(&budgets, &pod))
        .run(reconcile, |_, error, _| error_policy(error), context)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("disruption controller: {e}"),
            }
        })
        .await;
}

fn error_policy(error: &Error) -> Action {
    tracing::warn!("disruption sync failed: {error}");
    Action::requeue(Duration::from_secs(1))
}

fn selector_of(pdb: &PodDisruptionBudget) -> Result<Selector, String> {
    Selector::parse(pdb.spec.as_ref().and_then(|s| s.selector.as_ref())).map_err(|e| e.to_string())
}

/// The budgets in the pod's namespace whose selector matches it.
fn budgets_of(budgets: &Store<PodDisruptionBudget>, pod: &Pod) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let namespace = pod.namespace();
    budgets
        .state()
        .iter()
        .filter(|b| b.namespace() == namespace)
        .filter(|b| selector_of(b).is_ok_and(|s| s.matches(pod.metadata.labels.as_ref())))
        .map(|b| ObjectRef::from_obj(b.as_ref()))
        .collect()
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, context: Arc<Context>) -> Result<Action, Error> {
    if tokio::time::timeout(POD_LIST_WAIT, context.pods.wait_until_ready()).await.is_err() {
        return Err(Error::PodsNotListed);
    }
    let now = Timestamp::now();
    let (status, recheck) = match compute(&pdb, &context, now).await {
        Ok(found) => found,
        // A failure to read is tried again; what cannot be computed
        // leaves no disruption allowed meanwhile (upstream's failSafe).
        Err(Failure::Api(e)) => return Err(e.into()),
        Err(Failure::Budget(why)) => {
            context.recorder.warning(
                events::reference(pdb.as_ref()),
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {why}"),
            );
            (budget::failed(&pdb, &why, now), None)
        }
    };
    if !budget::unchanged(&pdb, &status) {
        write_status(&context.client, &pdb, status).await?;
    }
    Ok(match recheck {
        Some(at) => Action::requeue(Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_millis(100)),
        None => Action::await_change(),
    })
}

enum Failure {
    Api(kube::Error),
    Budget(String),
}

/// The budget's new status and when to look again (an entry of
/// `disruptedPods` lapsing).
async fn compute(pdb: &PodDisruptionBudget, context: &Context, now: Timestamp) -> Result<(PodDisruptionBudgetStatus, Option<Timestamp>), Failure> {
    let selector = selector_of(pdb).map_err(Failure::Budget)?;
    let namespace = pdb.namespace();
    let all = context.pods.state();
    let pods: Vec<&Pod> = all.iter().filter(|p| p.namespace() == namespace && selector.matches(p.metadata.labels.as_ref())).map(|p| p.as_ref()).collect();
    if pods.is_empty() {
        context.recorder.normal(events::reference(pdb), "NoPods", "No matching pods found");
    }
    let spec = pdb.spec.clone().unwrap_or_default();
    let scale = if budget::needs_scale(&spec) {
        let found = scales(&context.client, &namespace.unwrap_or_default(), &pods).await.map_err(Failure::Api)?;
        let (scale, unmanaged) = budget::expected_scale(&pods, &found).map_err(Failure::Budget)?;
        if !unmanaged.is_empty() {
            context.recorder.warning(
                events::reference(pdb),
                "UnmanagedPods",
                "Pods selected by this PodDisruptionBudget were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
            );
        }
        Some(scale)
    } else {
        None
    };
    let needs = budget::needs(&spec, pods.len(), scale).map_err(Failure::Budget)?;
    let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
    let (disrupted, recheck, expired) = budget::still_disrupted(&pods, recorded, now);
    for name in expired {
        if let Some(pod) = pods.iter().find(|p| p.metadata.name.as_deref() == Some(name.as_str())) {
            let namespace = pdb.namespace().unwrap_or_default();
            context.recorder.warning(
                events::reference(*pod),
                "NotDeleted",
                format!("Pod was expected by PDB {namespace}/{} to be deleted but it wasn't", pdb.name_any()),
            );
        }
    }
    let healthy = budget::current_healthy(&pods, &disrupted, now);
    Ok((budget::status(pdb, healthy, needs, disrupted, now), recheck))
}

/// Writes the status on the version read: a conflict means someone (an
/// eviction) wrote since, and the change that brings will sync again.
async fn write_status(client: &Client, pdb: &PodDisruptionBudget, status: PodDisruptionBudgetStatus) -> Result<(), kube::Error> {
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &pdb.namespace().unwrap_or_default());
    let mut updated = pdb.clone();
    updated.status = Some(status);
    match api.replace_status(&pdb.name_any(), &PostParams::default(), &updated).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// What each distinct controller reference of `pods` resolves to.
async fn scales(client: &Client, namespace: &str, pods: &[&Pod]) -> Result<HashMap<String, Scale>, kube::Error> {
    let mut found = HashMap::new();
    for pod in pods {
        let Some(reference) = controller_of(&pod.metadata) else { continue };
        if found.contains_key(&reference.uid) {
            continue;
        }
        if let Some(scale) = scale_of(client, namespace, reference).await? {
            found.insert(reference.uid.clone(), scale);
        }
    }
    Ok(found)
}

fn group_of(reference: &OwnerReference) -> &str {
    reference.api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// The scale a pod's controller reference resolves to (a missing object
/// is no controller; a read that fails is an error), as upstream's
/// finders: a ReplicaSet's Deployment if it has one, else the
/// ReplicaSet; a StatefulSet; a ReplicationController. Each object must
/// still be the one referenced (same uid).
async fn scale_of(client: &Client, namespace: &str, reference: &OwnerReference) -> Result<Option<Scale>, kube::Error> {
    let apps = matches!(group_of(reference), "apps" | "extensions");
    let scale = |uid: Option<String>, replicas: Option<i32>| uid.map(|uid| Scale { uid, replicas: replicas.unwrap_or(1) });
    match reference.kind.as_str() {
        "ReplicaSet" if apps => {
            let Some(set) = Api::<ReplicaSet>::namespaced(client.clone(), namespace).get_opt(&reference.name).await? else { return Ok(None) };
            if set.metadata.uid.as_deref() != Some(reference.uid.as_str()) {
                return Ok(None);
            }
            match controller_of(&set.metadata).filter(|r| r.kind == "Deployment") {
                Some(owner) => {
                    let Some(deployment) = Api::<Deployment>::namespaced(client.clone(), namespace).get_opt(&owner.name).await? else { return Ok(None) };
                    if deployment.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
                        return Ok(None);
                    }
                    Ok(scale(deployment.metadata.uid, deployment.spec.and_then(|s| s.replicas)))
                }
                None => Ok(scale(set.metadata.uid, set.spec.and_then(|s| s.replicas))),
            }
        }
        "StatefulSet" if apps => {
            let Some(set) = Api::<StatefulSet>::namespaced(client.clone(), namespace).get_opt(&reference.name).await? else { return Ok(None) };
            if set.metadata.uid.as_deref() != Some(reference.uid.as_str()) {
                return Ok(None);
            }
            Ok(scale(set.metadata.uid, set.spec.and_then(|s| s.replicas)))
        }
        "ReplicationController" if group_of(reference).is_empty() => {
            let Some(rc) = Api::<ReplicationController>::namespaced(client.clone(), namespace).get_opt(&reference.name).await? else { return Ok(None) };
            if rc.metadata.uid.as_deref() != Some(reference.uid.as_str()) {
                return Ok(None);
            }
            Ok(scale(rc.metadata.uid, rc.spec.and_then(|s| s.replicas)))
        }
        _ => Ok(None),
    }
}
