//! Persistent volumes: the `persistentvolume-binder` controller, as
//! upstream's PV controller (claims bound to volumes, volume phases, the
//! hand-over to a provisioner), and a local-path provisioner as kind ships
//! (a directory on the node a claim's first pod was scheduled to).
//!
//! `matching` decides which volume a claim gets and is pure; `binder` and
//! `local_path` read and write the API; `protection` keeps claims in use
//! and bound volumes from going.

pub mod binder;
pub mod local_path;
pub mod matching;
pub mod protection;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

/// Set on a claim by the binder: which provisioner is to make its volume
/// (and the beta form that older provisioners read).
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const STORAGE_PROVISIONER_BETA: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Set on a claim by the scheduler for a class that waits for its first
/// consumer: the node that consumer goes to.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set on a claim once bound, and on either side the binder bound.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Set on a volume by the provisioner that made it.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// The class's `volumeBindingMode` waits for a pod.
pub fn waits_for_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")
}

/// The claim's class name ("" for none).
pub fn class_of_claim(claim: &PersistentVolumeClaim) -> &str {
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// The volume's class name ("" for none).
pub fn class_of_volume(volume: &PersistentVolume) -> &str {
    volume.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// The volume a claim is bound to, if any.
pub fn volume_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty())
}

pub fn annotation<'a>(meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}
