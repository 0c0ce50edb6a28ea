//! The `persistentvolume-binder` controller, as upstream's PV controller:
//!
//! - a claim is bound to the volume `matching` picks (a volume reserved for
//!   it first): the volume's claimRef, then the claim's volumeName, then
//!   both phases Bound;
//! - a claim nothing fits is handed to its class's provisioner (the
//!   `volume.kubernetes.io/storage-provisioner` annotation), once a class
//!   that waits for its first consumer has a selected node;
//! - a volume is Available without a claim, Bound with one, Released when
//!   its claim is gone; a released volume is then the reclaim policy's:
//!   Retain keeps it, Delete is its provisioner's to carry out.
//!
//! Writes that reserve a volume name the version they read, so two claims
//! never take one volume: the loser's sync fails and runs again.

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;

use component_base::events::{self, Recorder};

use super::matching::{best_match, reserved_for};
use super::{
    annotation, class_of_claim, volume_name, waits_for_consumer, BIND_COMPLETED, BOUND_BY_CONTROLLER, PROVISIONED_BY, SELECTED_NODE, STORAGE_PROVISIONER,
    STORAGE_PROVISIONER_BETA,
};
use crate::retries::Retries;

/// Upstream's controller name, under which it records events.
pub const COMPONENT: &str = "persistentvolume-controller";
/// Claims and volumes synced at once (upstream's PV controller has one
/// worker per queue; more keep many claims of a StatefulSet moving).
pub const DEFAULT_CONCURRENCY: u16 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
    volumes: Store<PersistentVolume>,
    claims: Store<PersistentVolumeClaim>,
    classes: Store<StorageClass>,
    recorder: Recorder,
    retries: Retries,
}

impl Context {
    /// Once the three caches hold their first lists.
    async fn synced(&self) {
        let _ = tokio::join!(self.volumes.wait_until_ready(), self.claims.wait_until_ready(), self.classes.wait_until_ready());
    }
}

fn claim_of_volume(volume: &PersistentVolume) -> Option<ObjectRef<PersistentVolumeClaim>> {
    let r = volume.spec.as_ref()?.claim_ref.as_ref()?;
    Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
}

fn volume_of_claim(claim: &PersistentVolumeClaim) -> Option<ObjectRef<PersistentVolume>> {
    volume_name(claim).map(ObjectRef::new)
}

/// Runs the binder until its watches end.
pub async fn run(client: Client, concurrency: u16) {
    let (volumes, volume_writer) = reflector::store::<PersistentVolume>();
    let (claims, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let (classes, class_writer) = reflector::store::<StorageClass>();
    let volume_events =
        watcher(Api::<PersistentVolume>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(volume_writer).touched_objects();
    let claim_events =
        watcher(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(claim_writer).touched_objects();
    let class_events = watcher(Api::<StorageClass>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(class_writer).touched_objects();
    let context = Arc::new(Context {
        client: client.clone(),
        volumes,
        claims,
        classes,
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        retries: Retries::default(),
    });

    // Claims: woken by their own changes, their volume's and their class's.
    let for_claims = {
        let context = Arc::clone(&context);
        let claims_of_class = {
            let context = Arc::clone(&context);
            move |class: StorageClass| {
                let name = class.name_any();
                context
                    .claims
                    .state()
                    .iter()
                    .filter(|c| volume_name(c).is_none() && class_of_claim(c) == name)
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect::<Vec<_>>()
            }
        };
        Controller::for_stream(claim_events, context.claims.clone())
            .with_config(Config::default().concurrency(concurrency))
            .watches_stream(volume_events, |v: PersistentVolume| claim_of_volume(&v))
            .watches_stream(class_events, claims_of_class)
            .run(reconcile_claim, claim_error, context)
            .for_each(|result| async move {
                match result {
                    Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                    Err(e) => tracing::warn!("persistentvolume-binder (claims): {e}"),
                }
            })
    };
    // Volumes: woken by their own changes and their claim's.
    let for_volumes = {
        let context = Arc::clone(&context);
        let claim_changes = watcher(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default()).default_backoff().touched_objects();
        Controller::new(Api::<PersistentVolume>::all(client), watcher::Config::default())
            .with_config(Config::default().concurrency(concurrency))
            .watches_stream(claim_changes, |c: PersistentVolumeClaim| volume_of_claim(&c))
            .run(reconcile_volume, volume_error, context)
            .for_each(|result| async move {
                match result {
                    Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                    Err(e) => tracing::warn!("persistentvolume-binder (volumes): {e}"),
                }
            })
    };
    futures_util::future::join(for_claims, for_volumes).await;
}

fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!("claim {}/{}", claim.namespace().unwrap_or_default(), claim.name_any())
}

async fn reconcile_claim(claim: Arc<PersistentVolumeClaim>, context: Arc<Context>) -> Result<Action, Error> {
    // As upstream's controllers start their workers only once their
    // informers have synced: a decision made on a half-listed cache (no
    // pods yet, after a restart) would create or drop what already exists.
    context.synced().await;
    sync_claim(&claim, &context).await?;
    context.retries.succeeded(&claim_key(&claim));
    Ok(Action::await_change())
}

fn claim_error(claim: Arc<PersistentVolumeClaim>, error: &Error, context: Arc<Context>) -> Action {
    let key = claim_key(&claim);
    tracing::debug!("{key}: sync failed: {error}");
    Action::requeue(context.retries.failed(&key))
}

async fn reconcile_volume(volume: Arc<PersistentVolume>, context: Arc<Context>) -> Result<Action, Error> {
    context.synced().await;
    sync_volume(&volume, &context).await?;
    context.retries.succeeded(&format!("volume {}", volume.name_any()));
    Ok(Action::await_change())
}

fn volume_error(volume: Arc<PersistentVolume>, error: &Error, context: Arc<Context>) -> Action {
    let key = format!("volume {}", volume.name_any());
    tracing::debug!("{key}: sync failed: {error}");
    Action::requeue(context.retries.failed(&key))
}

fn phase_of_claim(claim: &PersistentVolumeClaim) -> &str {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn phase_of_volume(volume: &PersistentVolume) -> &str {
    volume.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// One look at a claim, as upstream's syncClaim.
async fn sync_claim(claim: &PersistentVolumeClaim, context: &Context) -> Result<(), Error> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let reference = events::reference(claim);
    let namespace = claim.namespace().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(context.client.clone(), &namespace);
    let volumes = context.volumes.state();
    match volume_name(claim) {
        None => {
            let class_name = class_of_claim(claim);
            let class = (!class_name.is_empty()).then(|| context.classes.get(&ObjectRef::new(class_name))).flatten();
            let waits = class.as_deref().is_some_and(waits_for_consumer);
            let selected = annotation(&claim.metadata, SELECTED_NODE);
            if let Some(volume) = best_match(&volumes, claim, selected, waits) {
                return bind(volume, claim, context).await;
            }
            if waits && selected.is_none() {
                context.recorder.normal(reference, "WaitForFirstConsumer", "waiting for first consumer to be created before binding");
                return set_claim_pending(&claims, claim).await;
            }
            match (class_name, class) {
                ("", _) => {
                    context.recorder.normal(reference, "FailedBinding", "no persistent volumes available for this claim and no storage class is set");
                }
                (name, None) => {
                    context.recorder.warning(reference, "ProvisioningFailed", format!("storageclass.storage.k8s.io {name:?} not found"));
                }
                (_, Some(class)) => {
                    if annotation(&claim.metadata, STORAGE_PROVISIONER) != Some(class.provisioner.as_str()) {
                        let patch = json!({"metadata": {"annotations": {STORAGE_PROVISIONER: class.provisioner, STORAGE_PROVISIONER_BETA: class.provisioner}}});
                        claims.patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
                        context.recorder.normal(
                            reference,
                            "ExternalProvisioning",
                            format!(
                                "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                                class.provisioner
                            ),
                        );
                    }
                }
            }
            set_claim_pending(&claims, claim).await
        }
        Some(wanted) => {
            let Some(volume) = volumes.iter().find(|v| v.name_any() == wanted) else {
                if annotation(&claim.metadata, BIND_COMPLETED).is_some() {
                    if phase_of_claim(claim) != "Lost" {
                        context.recorder.warning(reference, "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!");
                        let patch = json!({"status": {"phase": "Lost"}});
                        claims.patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
                    }
                    return Ok(());
                }
                context.recorder.normal(reference, "FailedBinding", format!("volume {wanted:?} not found"));
                return set_claim_pending(&claims, claim).await;
            };
            let claimed = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some();
            if !claimed || reserved_for(volume, claim) {
                return bind(volume, claim, context).await;
            }
            context.recorder.warning(reference, "FailedBinding", format!("volume {wanted:?} already bound to a different claim."));
            set_claim_pending(&claims, claim).await
        }
    }
}

async fn set_claim_pending(claims: &Api<PersistentVolumeClaim>, claim: &PersistentVolumeClaim) -> Result<(), Error> {
    if phase_of_claim(claim) == "Pending" {
        return Ok(());
    }
    let patch = json!({"status": {"phase": "Pending"}});
    claims.patch_status(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Binds `volume` and `claim` to each other, each step written only when
/// missing, in upstream's order: the volume's claimRef (on the version
/// read, so no other claim took it meanwhile), its phase, the claim's
/// volumeName, its status.
async fn bind(volume: &PersistentVolume, claim: &PersistentVolumeClaim, context: &Context) -> Result<(), Error> {
    let volumes: Api<PersistentVolume> = Api::all(context.client.clone());
    let namespace = claim.namespace().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(context.client.clone(), &namespace);
    let volume_name = volume.name_any();
    let claim_name = claim.name_any();

    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let complete = claim_ref.is_some_and(|r| r.uid.as_deref().is_some_and(|u| !u.is_empty()));
    if !complete {
        let mut patch = json!({
            "metadata": {"resourceVersion": volume.resource_version()},
            "spec": {"claimRef": {
                "kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": namespace, "name": claim_name,
                "uid": claim.uid(), "resourceVersion": claim.resource_version(),
            }},
        });
        if claim_ref.is_none() {
            patch["metadata"]["annotations"] = json!({BOUND_BY_CONTROLLER: "yes"});
        }
        volumes.patch(&volume_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    if phase_of_volume(volume) != "Bound" {
        let patch = json!({"status": {"phase": "Bound", "lastPhaseTransitionTime": now()}});
        volumes.patch_status(&volume_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    if super::volume_name(claim).is_none() || annotation(&claim.metadata, BIND_COMPLETED).is_none() {
        let mut annotations = json!({BIND_COMPLETED: "yes"});
        if super::volume_name(claim).is_none() {
            annotations[BOUND_BY_CONTROLLER] = json!("yes");
        }
        let patch = json!({"metadata": {"resourceVersion": claim.resource_version(), "annotations": annotations}, "spec": {"volumeName": volume_name}});
        claims.patch(&claim_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    let spec = volume.spec.clone().unwrap_or_default();
    let status = claim.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Bound") || status.capacity != spec.capacity || status.access_modes != spec.access_modes {
        let patch = json!({"status": {"phase": "Bound", "capacity": spec.capacity, "accessModes": spec.access_modes}});
        claims.patch_status(&claim_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(())
}

/// One look at a volume, as upstream's syncVolume.
async fn sync_volume(volume: &PersistentVolume, context: &Context) -> Result<(), Error> {
    if volume.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let volumes: Api<PersistentVolume> = Api::all(context.client.clone());
    let name = volume.name_any();
    let set_phase = |phase: &'static str, message: Option<String>| {
        let volumes = volumes.clone();
        let name = name.clone();
        async move {
            let patch = json!({"status": {"phase": phase, "message": message, "lastPhaseTransitionTime": now()}});
            volumes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
        }
    };
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.clone());
    let Some(claim_ref) = claim_ref.filter(|r| r.uid.as_deref().is_some_and(|u| !u.is_empty())) else {
        // Free, or reserved by name for a claim that binds it later.
        if phase_of_volume(volume) != "Available" {
            set_phase("Available", None).await?;
        }
        return Ok(());
    };
    let (namespace, claim_name) = (claim_ref.namespace.clone().unwrap_or_default(), claim_ref.name.clone().unwrap_or_default());
    // The store may lag behind a claim just made: ask the API.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(context.client.clone(), &namespace);
    let claim = claims.get_opt(&claim_name).await?.filter(|c| c.uid() == claim_ref.uid);
    match claim {
        Some(claim) => {
            // A claim without a volume yet is being bound: its sync finishes it.
            let claimed = super::volume_name(&claim);
            if claimed == Some(name.as_str()) {
                if phase_of_volume(volume) != "Bound" {
                    set_phase("Bound", None).await?;
                }
            } else if claimed.is_some() && annotation(&volume.metadata, BOUND_BY_CONTROLLER).is_some() {
                // The claim went to another volume: a reservation this
                // binder made is taken back.
                let patch = json!({"metadata": {"resourceVersion": volume.resource_version()}, "spec": {"claimRef": null}});
                volumes.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
        }
        None => {
            let phase = phase_of_volume(volume);
            if phase == "Released" || phase == "Failed" {
                return Ok(());
            }
            let policy = volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Retain");
            let reference = events::reference(volume);
            match policy {
                "Recycle" => {
                    let message = "No recycler plugin found for the volume!".to_string();
                    context.recorder.warning(reference, "VolumeFailedRecycle", message.clone());
                    set_phase("Failed", Some(message)).await?;
                }
                "Delete" if annotation(&volume.metadata, PROVISIONED_BY).is_none() => {
                    // Only a provisioner knows how to delete what it made.
                    let message = "error getting deleter volume plugin for volume: no deletable volume plugin matched".to_string();
                    context.recorder.warning(reference, "VolumeFailedDelete", message.clone());
                    set_phase("Failed", Some(message)).await?;
                }
                _ => set_phase("Released", None).await?,
            }
        }
    }
    Ok(())
}
