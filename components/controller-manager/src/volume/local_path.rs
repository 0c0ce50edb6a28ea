//! A local-path provisioner, as kind ships one (Rancher's local-path
//! provisioner, under its provisioner name, so kind's manifests and
//! StorageClass work unchanged): a claim of a class it provisions gets a
//! volume that is a directory on the node its first pod was scheduled to,
//! `/var/local-path-provisioner/pvc-<uid>_<namespace>_<name>`, a hostPath
//! the kubelet creates on first use, pinned to that node by node affinity.
//! When such a volume is released and its reclaim policy is Delete, a
//! helper pod on that node removes the directory, then the volume goes.

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;

use component_base::events::{self, Recorder};

use super::matching::volume_nodes;
use super::{annotation, class_of_claim, volume_name, waits_for_consumer, PROVISIONED_BY, SELECTED_NODE, STORAGE_PROVISIONER};
use crate::retries::Retries;

/// The provisioner name kind's `standard` StorageClass names.
pub const PROVISIONER: &str = "rancher.io/local-path";
/// Where volumes live on a node.
pub const ROOT: &str = "/var/local-path-provisioner";
/// Where helper pods run.
pub const HELPER_NAMESPACE: &str = "kube-system";
/// The label helper pods carry: the volume they work for.
const HELPER_LABEL: &str = "local-path-provisioner/volume";
/// The access modes a directory on one node can give.
const ACCESS_MODES: &[&str] = &["ReadWriteOnce", "ReadWriteOncePod"];

/// The provisioner's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The image helper pods run (a shell with `rm`).
    pub helper_image: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { helper_image: "busybox".into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
    settings: Settings,
    recorder: Recorder,
    retries: Retries,
}

/// The directory a claim's volume is, as Rancher's provisioner names it.
pub fn directory(claim: &PersistentVolumeClaim) -> String {
    format!("{ROOT}/pvc-{}_{}_{}", claim.uid().unwrap_or_default(), claim.namespace().unwrap_or_default(), claim.name_any())
}

/// The volume made for `claim` on `node`, reclaimed by `policy`.
pub fn volume_for(claim: &PersistentVolumeClaim, node: &str, policy: &str) -> PersistentVolume {
    let spec = claim.spec.clone().unwrap_or_default();
    let storage = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": format!("pvc-{}", claim.uid().unwrap_or_default()),
            "annotations": {PROVISIONED_BY: PROVISIONER, "local.path.provisioner/selected-node": node},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.access_modes,
            "persistentVolumeReclaimPolicy": policy,
            "storageClassName": spec.storage_class_name,
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
            "hostPath": {"path": directory(claim), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": claim.namespace(), "name": claim.name_any(),
                "uid": claim.uid(), "resourceVersion": claim.resource_version(),
            },
        },
    }))
    .expect("a well-formed PersistentVolume")
}

/// The helper pod that removes `volume`'s directory on `node`.
pub fn deleting_helper(volume: &PersistentVolume, node: &str, path: &str, image: &str) -> Pod {
    let (parent, dir) = path.rsplit_once('/').unwrap_or((ROOT, path));
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("helper-pod-delete-{}", volume.name_any()), "namespace": HELPER_NAMESPACE, "labels": {HELPER_LABEL: volume.name_any()}},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "helper-pod",
                "image": image,
                "command": ["rm", "-rf", format!("/data/{dir}")],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }],
            "volumes": [{"name": "data", "hostPath": {"path": parent, "type": "DirectoryOrCreate"}}],
        },
    }))
    .expect("a well-formed Pod")
}

/// Runs the provisioner until its watches end.
pub async fn run(client: Client, settings: Settings) {
    let context =
        Arc::new(Context { client: client.clone(), settings, recorder: Recorder::new(client.clone(), PROVISIONER, None), retries: Retries::default() });
    let provisioning = Controller::new(Api::<PersistentVolumeClaim>::all(client.clone()), watcher::Config::default())
        .with_config(Config::default().concurrency(4))
        .run(provision, claim_error, Arc::clone(&context))
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("local-path provisioner: {e}"),
            }
        });
    let helpers =
        watcher(Api::<Pod>::namespaced(client.clone(), HELPER_NAMESPACE), watcher::Config::default().labels(HELPER_LABEL)).default_backoff().touched_objects();
    let deleting = Controller::new(Api::<PersistentVolume>::all(client), watcher::Config::default())
        .with_config(Config::default().concurrency(4))
        .watches_stream(helpers, |pod: Pod| pod.labels().get(HELPER_LABEL).map(|v| ObjectRef::new(v)))
        .run(delete, volume_error, context)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("local-path provisioner: {e}"),
            }
        });
    futures_util::future::join(provisioning, deleting).await;
}

fn claim_error(claim: Arc<PersistentVolumeClaim>, error: &Error, context: Arc<Context>) -> Action {
    let key = format!("claim {}/{}", claim.namespace().unwrap_or_default(), claim.name_any());
    tracing::warn!("local-path provisioner: {key}: {error}");
    Action::requeue(context.retries.failed(&key))
}

fn volume_error(volume: Arc<PersistentVolume>, error: &Error, context: Arc<Context>) -> Action {
    let key = format!("volume {}", volume.name_any());
    tracing::warn!("local-path provisioner: {key}: {error}");
    Action::requeue(context.retries.failed(&key))
}

/// Makes the volume of a claim handed to this provisioner.
async fn provision(claim: Arc<PersistentVolumeClaim>, context: Arc<Context>) -> Result<Action, Error> {
    if claim.metadata.deletion_timestamp.is_some() || volume_name(&claim).is_some() || annotation(&claim.metadata, STORAGE_PROVISIONER) != Some(PROVISIONER) {
        return Ok(Action::await_change());
    }
    let classes: Api<StorageClass> = Api::all(context.client.clone());
    let Some(class) = classes.get_opt(class_of_claim(&claim)).await? else { return Ok(Action::await_change()) };
    if class.provisioner != PROVISIONER {
        return Ok(Action::await_change());
    }
    let reference = events::reference(claim.as_ref());
    let failed = |why: String| {
        context.recorder.warning(reference.clone(), "ProvisioningFailed", format!("failed to provision volume with StorageClass {:?}: {why}", class.name_any()))
    };
    let Some(node) = annotation(&claim.metadata, SELECTED_NODE) else {
        if !waits_for_consumer(&class) {
            failed("configuration error, no node was specified: use volumeBindingMode WaitForFirstConsumer".into());
        }
        return Ok(Action::await_change());
    };
    let modes = claim.spec.as_ref().and_then(|s| s.access_modes.clone()).unwrap_or_default();
    if let Some(mode) = modes.iter().find(|m| !ACCESS_MODES.contains(&m.as_str())) {
        failed(format!("access mode {mode} is not supported: a directory on one node gives only {}", ACCESS_MODES.join(" and ")));
        return Ok(Action::await_change());
    }
    let volumes: Api<PersistentVolume> = Api::all(context.client.clone());
    let policy = class.reclaim_policy.as_deref().unwrap_or("Delete");
    let volume = volume_for(&claim, node, policy);
    let name = volume.name_any();
    if volumes.get_opt(&name).await?.is_some() {
        return Ok(Action::await_change());
    }
    context.recorder.normal(
        reference.clone(),
        "Provisioning",
        format!("External provisioner is provisioning volume for claim \"{}/{}\"", claim.namespace().unwrap_or_default(), claim.name_any()),
    );
    match volumes.create(&PostParams::default(), &volume).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    }
    context.recorder.normal(reference, "ProvisioningSucceeded", format!("Successfully provisioned volume {name}"));
    context.retries.succeeded(&format!("claim {}/{}", claim.namespace().unwrap_or_default(), claim.name_any()));
    Ok(Action::await_change())
}

/// Deletes a released volume of this provisioner whose policy says so:
/// first its directory (by a helper pod on its node), then the volume.
async fn delete(volume: Arc<PersistentVolume>, context: Arc<Context>) -> Result<Action, Error> {
    let spec = volume.spec.clone().unwrap_or_default();
    let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    if annotation(&volume.metadata, PROVISIONED_BY) != Some(PROVISIONER)
        || !released
        || spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete")
        || volume.metadata.deletion_timestamp.is_some()
    {
        return Ok(Action::await_change());
    }
    let name = volume.name_any();
    let reference = events::reference(volume.as_ref());
    let (Some(node), Some(path)) = (volume_nodes(&volume).and_then(|n| n.into_iter().next()), spec.host_path.as_ref().map(|h| h.path.clone())) else {
        context.recorder.warning(reference, "VolumeFailedDelete", format!("failed to delete volume {name}: it names no node or no path"));
        return Ok(Action::await_change());
    };
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), HELPER_NAMESPACE);
    let helper = deleting_helper(&volume, &node, &path, &context.settings.helper_image);
    let helper_name = helper.name_any();
    let phase = match pods.get_opt(&helper_name).await? {
        None => {
            match pods.create(&PostParams::default(), &helper).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Action::await_change());
        }
        Some(pod) => pod.status.and_then(|s| s.phase).unwrap_or_default(),
    };
    match phase.as_str() {
        "Succeeded" => {
            let volumes: Api<PersistentVolume> = Api::all(context.client.clone());
            match volumes.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            let _ = pods.delete(&helper_name, &DeleteParams::background()).await;
            context.retries.succeeded(&format!("volume {name}"));
            Ok(Action::await_change())
        }
        "Failed" => {
            context.recorder.warning(
                reference,
                "VolumeFailedDelete",
                format!("failed to delete volume {name}: the helper pod that removes {path} on node {node} failed"),
            );
            let _ = pods.delete(&helper_name, &DeleteParams::background()).await;
            // Try again after a backoff that grows with each failure.
            Ok(Action::requeue(context.retries.failed(&format!("volume {name}"))))
        }
        _ => Ok(Action::await_change()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data-web-0", "namespace": "default", "uid": "u-1", "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}},
        }))
        .unwrap()
    }

    #[test]
    fn a_volume_is_a_directory_on_the_selected_node() {
        let v = volume_for(&claim(), "node-2", "Delete");
        assert_eq!(v.name_any(), "pvc-u-1");
        let spec = v.spec.clone().unwrap();
        assert_eq!(spec.host_path.unwrap().path, "/var/local-path-provisioner/pvc-u-1_default_data-web-0");
        assert_eq!(volume_nodes(&v), Some(vec!["node-2".to_string()]));
        assert_eq!(spec.claim_ref.unwrap().uid.as_deref(), Some("u-1"));
        assert_eq!(spec.capacity.unwrap()["storage"].0, "1Gi");
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(annotation(&v.metadata, PROVISIONED_BY), Some(PROVISIONER));
    }

    #[test]
    fn the_helper_removes_only_the_volumes_directory() {
        let v = volume_for(&claim(), "node-2", "Delete");
        let pod = deleting_helper(&v, "node-2", "/var/local-path-provisioner/pvc-u-1_default_data-web-0", "busybox");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-2"));
        assert_eq!(spec.containers[0].command.clone().unwrap(), ["rm", "-rf", "/data/pvc-u-1_default_data-web-0"]);
        assert_eq!(spec.volumes.unwrap()[0].host_path.as_ref().unwrap().path, ROOT);
    }
}
