//! Storage: PersistentVolumes, PersistentVolumeClaims (core/v1) and
//! StorageClasses (storage.k8s.io/v1).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{age, array_at, col, default_at, name, str_at, updates, wide, Column, Strategy, AGE, NAME};
use crate::status::Cause;

const ACCESS_MODES: &[(&str, &str)] = &[("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")];

/// `RWO,RWX` as kubectl shows access modes: abbreviated, in a fixed order.
fn access_modes(obj: &Value, pointer: &str) -> String {
    let given: Vec<&str> = array_at(obj, pointer).iter().filter_map(Value::as_str).collect();
    ACCESS_MODES.iter().filter(|(mode, _)| given.contains(mode)).map(|(_, short)| *short).collect::<Vec<_>>().join(",")
}

fn validate_access_modes(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    let modes = array_at(spec, "/accessModes");
    if modes.is_empty() {
        causes.push(Cause::required(format!("{path}.accessModes")));
    }
    let names: Vec<&str> = ACCESS_MODES.iter().map(|(m, _)| *m).collect();
    for m in modes {
        if !m.as_str().is_some_and(|s| names.contains(&s)) {
            causes.push(Cause::not_supported(format!("{path}.accessModes"), m, &names));
        }
    }
}

fn validate_volume_mode(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Some(m) = spec.get("volumeMode").filter(|m| !m.is_null()) {
        if !matches!(m.as_str(), Some("Filesystem" | "Block")) {
            causes.push(Cause::not_supported(format!("{path}.volumeMode"), m, &["Block", "Filesystem"]));
        }
    }
}

/// The storage class of a claim or volume: the old annotation wins, as
/// upstream's helpers read it.
fn class_of(obj: &Value) -> String {
    obj.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .or_else(|| obj.pointer("/spec/storageClassName"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn phase_or_terminating(obj: &Value) -> String {
    if obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        "Terminating".into()
    } else {
        str_at(obj, "/status/phase").unwrap_or("").into()
    }
}

fn or_unset(obj: &Value, pointer: &str) -> String {
    str_at(obj, pointer).unwrap_or("<unset>").to_string()
}

/// Claim defaults, shared with a StatefulSet's volumeClaimTemplates.
pub fn default_claim(claim: &mut Value) {
    if claim.get("spec").is_some_and(Value::is_object) {
        default_at(claim, &["spec", "volumeMode"], json!("Filesystem"));
    }
    default_at(claim, &["status", "phase"], json!("Pending"));
}

/// Checks a claim's spec at `path`.
pub fn validate_claim_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        causes.push(Cause::required(path));
        return;
    };
    validate_access_modes(spec, path, causes);
    if spec.pointer("/resources/requests/storage").is_none() {
        causes.push(Cause::required(format!("{path}.resources[storage]")));
    }
    validate_volume_mode(spec, path, causes);
}

pub struct PersistentVolumeClaims;
impl Strategy for PersistentVolumeClaims {
    fn default(&self, obj: &mut Value) {
        default_claim(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_claim_spec(obj.get("spec"), "spec", &mut causes);
        causes
    }
    /// A claim's spec is fixed but for a larger request and the volume a
    /// pending claim is bound to.
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let fixed = |o: &Value, binding: bool| {
            let mut spec = o.get("spec").cloned().unwrap_or(json!({}));
            if let Some(requests) = spec.pointer_mut("/resources/requests").and_then(Value::as_object_mut) {
                requests.remove("storage");
            }
            if binding {
                if let Some(m) = spec.as_object_mut() {
                    m.remove("volumeName");
                }
            }
            spec
        };
        let binding = str_at(old, "/spec/volumeName").is_none_or(str::is_empty);
        if fixed(new, binding) != fixed(old, binding) {
            return vec![Cause::forbidden("spec", "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims")];
        }
        Vec::new()
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Status", "string", "phase represents the current phase of PersistentVolumeClaim."),
                col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim."),
                col("Capacity", "string", "capacity represents the actual resources of the underlying volume."),
                col("Access Modes", "string", "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
                col("StorageClass", "string", "StorageClass of the pvc"),
                col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
                AGE,
                wide("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec."),
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let volume = str_at(obj, "/spec/volumeName").unwrap_or("");
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (str_at(obj, "/status/capacity/storage").unwrap_or("0").to_string(), access_modes(obj, "/status/accessModes"))
        };
        vec![
            json!(name(obj)),
            json!(phase_or_terminating(obj)),
            json!(volume),
            json!(capacity),
            json!(modes),
            json!(class_of(obj)),
            json!(or_unset(obj, "/spec/volumeAttributesClassName")),
            json!(age(obj, now)),
            json!(or_unset(obj, "/spec/volumeMode")),
        ]
    }
}

/// The volume sources a PersistentVolume may name (one of them).
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "local",
    "nfs",
    "csi",
    "iscsi",
    "fc",
    "rbd",
    "cephfs",
    "cinder",
    "flexVolume",
    "glusterfs",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "flocker",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "photonPersistentDisk",
];

pub struct PersistentVolumes;
impl Strategy for PersistentVolumes {
    fn default(&self, obj: &mut Value) {
        if obj.get("spec").is_some_and(Value::is_object) {
            default_at(obj, &["spec", "persistentVolumeReclaimPolicy"], json!("Retain"));
            default_at(obj, &["spec", "volumeMode"], json!("Filesystem"));
        }
        default_at(obj, &["status", "phase"], json!("Pending"));
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let Some(spec) = obj.get("spec").filter(|s| s.is_object()) else {
            return vec![Cause::required("spec")];
        };
        validate_access_modes(spec, "spec", &mut causes);
        if spec.pointer("/capacity/storage").is_none() {
            causes.push(Cause::required("spec.capacity"));
        }
        match VOLUME_SOURCES.iter().filter(|s| spec.get(**s).is_some_and(|v| !v.is_null())).count() {
            0 => causes.push(Cause { message: "Required value: must specify a volume type".into(), ..Cause::required("spec") }),
            1 => {}
            _ => causes.push(Cause::forbidden("spec", "may not specify more than 1 volume type")),
        }
        if let Some(p) = spec.get("persistentVolumeReclaimPolicy") {
            if !matches!(p.as_str(), Some("Retain" | "Delete" | "Recycle")) {
                causes.push(Cause::not_supported("spec.persistentVolumeReclaimPolicy", p, &["Delete", "Recycle", "Retain"]));
            }
        }
        validate_volume_mode(spec, "spec", &mut causes);
        causes
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        updates::immutable(new, old, "/spec/volumeMode", "spec.volumeMode", &mut causes);
        for source in VOLUME_SOURCES {
            updates::immutable(new, old, &format!("/spec/{source}"), "spec.persistentvolumesource", &mut causes);
        }
        causes.dedup();
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
                col("Access Modes", "string", "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"),
                col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
                col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
                col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
                col("StorageClass", "string", "StorageClass of the pv"),
                col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
                col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
                AGE,
                wide("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec."),
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let claim = match obj.pointer("/spec/claimRef").filter(|c| c.is_object()) {
            Some(c) => format!("{}/{}", c["namespace"].as_str().unwrap_or(""), c["name"].as_str().unwrap_or("")),
            None => String::new(),
        };
        vec![
            json!(name(obj)),
            json!(str_at(obj, "/spec/capacity/storage").unwrap_or("0")),
            json!(access_modes(obj, "/spec/accessModes")),
            json!(str_at(obj, "/spec/persistentVolumeReclaimPolicy").unwrap_or("")),
            json!(phase_or_terminating(obj)),
            json!(claim),
            json!(class_of(obj)),
            json!(or_unset(obj, "/spec/volumeAttributesClassName")),
            json!(str_at(obj, "/status/reason").unwrap_or("")),
            json!(age(obj, now)),
            json!(or_unset(obj, "/spec/volumeMode")),
        ]
    }
}

/// The annotation that makes a StorageClass the default one (and its
/// beta name, which upstream still honours).
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";

pub fn is_default_class(obj: &Value) -> bool {
    [DEFAULT_CLASS, DEFAULT_CLASS_BETA].iter().any(|a| obj.pointer(&format!("/metadata/annotations/{}", a.replace('/', "~1"))) == Some(&json!("true")))
}

pub struct StorageClasses;
impl Strategy for StorageClasses {
    fn default(&self, obj: &mut Value) {
        default_at(obj, &["reclaimPolicy"], json!("Delete"));
        default_at(obj, &["volumeBindingMode"], json!("Immediate"));
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if obj.get("provisioner").and_then(Value::as_str).is_none_or(str::is_empty) {
            causes.push(Cause::required("provisioner"));
        }
        if let Some(p) = obj.get("reclaimPolicy") {
            if !matches!(p.as_str(), Some("Delete" | "Retain")) {
                causes.push(Cause::not_supported("reclaimPolicy", p, &["Delete", "Retain"]));
            }
        }
        if let Some(m) = obj.get("volumeBindingMode") {
            if !matches!(m.as_str(), Some("Immediate" | "WaitForFirstConsumer")) {
                causes.push(Cause::not_supported("volumeBindingMode", m, &["Immediate", "WaitForFirstConsumer"]));
            }
        }
        causes
    }
    fn tracks_generation(&self) -> bool {
        false
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for field in ["parameters", "provisioner", "reclaimPolicy", "volumeBindingMode"] {
            if new.get(field) != old.get(field) {
                causes.push(Cause::forbidden(field, format!("updates to {field} are forbidden.")));
            }
        }
        causes
    }
    fn columns(&self) -> &'static [Column] {
        const {
            &[
                NAME,
                col("Provisioner", "string", "provisioner indicates the type of the provisioner."),
                col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
                col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
                col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand."),
                AGE,
            ]
        }
    }
    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let shown = if is_default_class(obj) { format!("{} (default)", name(obj)) } else { name(obj).to_string() };
        vec![
            json!(shown),
            json!(str_at(obj, "/provisioner").unwrap_or("")),
            json!(str_at(obj, "/reclaimPolicy").unwrap_or("Delete")),
            json!(str_at(obj, "/volumeBindingMode").unwrap_or("Immediate")),
            json!(obj.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false)),
            json!(age(obj, now)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_need_modes_and_a_size() {
        let mut c = json!({"metadata": {"name": "data"}, "spec": {}});
        PersistentVolumeClaims.default(&mut c);
        assert_eq!(c["status"]["phase"], "Pending");
        let lines: Vec<String> = PersistentVolumeClaims.validate(&c).iter().map(Cause::line).collect();
        assert_eq!(lines, ["spec.accessModes: Required value", "spec.resources[storage]: Required value"]);
    }

    #[test]
    fn bound_claims_keep_their_spec() {
        let old = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        let mut bound = old.clone();
        bound["spec"]["volumeName"] = json!("pv-1");
        assert!(PersistentVolumeClaims.validate_update(&bound, &old).is_empty());
        let mut grown = bound.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(PersistentVolumeClaims.validate_update(&grown, &bound).is_empty());
        let mut other = bound.clone();
        other["spec"]["volumeName"] = json!("pv-2");
        assert_eq!(PersistentVolumeClaims.validate_update(&other, &bound).len(), 1);
    }

    #[test]
    fn volume_rows_read_as_kubectl_prints_them() {
        let pv = json!({"metadata": {"name": "pv-1"}, "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete", "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "standard", "hostPath": {"path": "/x"}},
            "status": {"phase": "Bound"}});
        assert!(PersistentVolumes.validate(&pv).is_empty());
        let cells = PersistentVolumes.cells(&pv, Utc::now());
        assert_eq!(cells[1..7], [json!("1Gi"), json!("RWO,RWX"), json!("Delete"), json!("Bound"), json!("default/data"), json!("standard")]);
    }

    #[test]
    fn the_default_class_says_so() {
        let sc = json!({"metadata": {"name": "standard", "annotations": {DEFAULT_CLASS: "true"}}, "provisioner": "rancher.io/local-path"});
        assert_eq!(StorageClasses.cells(&sc, Utc::now())[0], "standard (default)");
    }
}
