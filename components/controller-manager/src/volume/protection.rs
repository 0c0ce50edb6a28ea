//! Storage object in-use protection, as upstream's two controllers: the
//! apiserver gives every claim the `kubernetes.io/pvc-protection`
//! finalizer and every volume `kubernetes.io/pv-protection` when they are
//! created; a claim being deleted keeps its finalizer while a pod that is
//! not finished uses it, and a volume being deleted keeps its own while it
//! is Bound. So deleting a claim under a running pod loses no data: the
//! claim goes when the pod does.

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::retries::Retries;

pub const CLAIM_FINALIZER: &str = "kubernetes.io/pvc-protection";
pub const VOLUME_FINALIZER: &str = "kubernetes.io/pv-protection";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// Whether `pod` uses the claim `name` and is not finished.
pub fn pod_uses(pod: &Pod, name: &str) -> bool {
    let finished = matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"));
    let pod_name = pod.name_any();
    !finished
        && pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).any(|v| {
            v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == name) || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == name)
        })
}

fn without(finalizers: &[String], finalizer: &str) -> Vec<String> {
    finalizers.iter().filter(|f| f.as_str() != finalizer).cloned().collect()
}

/// Runs both protection controllers until their watches end.
pub async fn run(client: Client) {
    let retries = Arc::new(Retries::default());
    // A claim waits for the pods that use it: a pod's change wakes its claims.
    let pod_claims = |pod: Pod| {
        let namespace = pod.namespace().unwrap_or_default();
        pod.spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| ObjectRef::new(&c.claim_name).within(&namespace))
            .collect::<Vec<_>>()
    };
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().touched_objects();
    let claims = Controller::new(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default())
        .watches_stream(pods, pod_claims)
        .run(
            release_claim,
            |c: Arc<PersistentVolumeClaim>, e: &Error, r: Arc<(Client, Arc<Retries>)>| {
                failed(&format!("claim {}/{}", c.namespace().unwrap_or_default(), c.name_any()), e, &r.1)
            },
            Arc::new((client.clone(), Arc::clone(&retries))),
        )
        .for_each(|_| async {});
    let volumes = Controller::new(Api::<PersistentVolume>::all(client.clone()), watcher::Config::default())
        .run(
            release_volume,
            |v: Arc<PersistentVolume>, e: &Error, r: Arc<(Client, Arc<Retries>)>| failed(&format!("volume {}", v.name_any()), e, &r.1),
            Arc::new((client, retries)),
        )
        .for_each(|_| async {});
    futures_util::future::join(claims, volumes).await;
}

fn failed(key: &str, error: &Error, retries: &Retries) -> Action {
    tracing::warn!("storage protection: {key}: {error}");
    Action::requeue(retries.failed(key))
}

async fn release_claim(claim: Arc<PersistentVolumeClaim>, context: Arc<(Client, Arc<Retries>)>) -> Result<Action, Error> {
    let finalizers = claim.finalizers().to_vec();
    if claim.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == CLAIM_FINALIZER) {
        return Ok(Action::await_change());
    }
    let namespace = claim.namespace().unwrap_or_default();
    let name = claim.name_any();
    // Read live: a pod made a moment ago must count.
    let pods: Api<Pod> = Api::namespaced(context.0.clone(), &namespace);
    if pods.list(&ListParams::default()).await?.items.iter().any(|p| pod_uses(p, &name)) {
        return Ok(Action::await_change());
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(context.0.clone(), &namespace);
    let patch = json!({"metadata": {"resourceVersion": claim.resource_version(), "finalizers": without(&finalizers, CLAIM_FINALIZER)}});
    match claims.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    context.1.succeeded(&format!("claim {namespace}/{name}"));
    Ok(Action::await_change())
}

async fn release_volume(volume: Arc<PersistentVolume>, context: Arc<(Client, Arc<Retries>)>) -> Result<Action, Error> {
    let finalizers = volume.finalizers().to_vec();
    if volume.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == VOLUME_FINALIZER) {
        return Ok(Action::await_change());
    }
    if volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
        return Ok(Action::await_change());
    }
    let volumes: Api<PersistentVolume> = Api::all(context.0.clone());
    let patch = json!({"metadata": {"resourceVersion": volume.resource_version(), "finalizers": without(&finalizers, VOLUME_FINALIZER)}});
    match volumes.patch(&volume.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    context.1.succeeded(&format!("volume {}", volume.name_any()));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, claim: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [], "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}, {"name": "scratch", "ephemeral": {}}]},
            "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn only_unfinished_pods_hold_their_claims() {
        assert!(pod_uses(&pod("Running", "data"), "data"));
        assert!(pod_uses(&pod("Pending", "data"), "data"));
        assert!(pod_uses(&pod("Running", "data"), "web-scratch"), "a generic ephemeral volume's claim");
        assert!(!pod_uses(&pod("Succeeded", "data"), "data"));
        assert!(!pod_uses(&pod("Running", "other"), "data"));
    }
}
