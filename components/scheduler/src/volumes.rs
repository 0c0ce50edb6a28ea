//! What the scheduler knows of PersistentVolumeClaims, PersistentVolumes
//! and StorageClasses, and upstream's VolumeBinding plugin on it:
//!
//! - PreFilter: every claim the pod names must exist and not be going; a
//!   claim that is not bound must be of a class that waits for its first
//!   consumer (an unbound claim of another class is the binder's to bind
//!   first);
//! - Filter: a node must be one every bound volume's node affinity allows;
//! - PreBind (in `bind`): claims that wait for their first consumer are
//!   told the chosen node, and the pod is bound once they are.

use std::borrow::Cow;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::{NodeSelector, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::labels::{self, NodeFields};
use crate::model::NodeInfo;

pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_MISSING_VOLUME: &str = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// What scheduling reads of a claim.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimInfo {
    /// `namespace/name`.
    pub key: String,
    pub volume: Option<String>,
    pub class: String,
    pub deleting: bool,
}

impl ClaimInfo {
    pub fn from_claim(claim: &PersistentVolumeClaim) -> ClaimInfo {
        let meta = &claim.metadata;
        let spec = claim.spec.as_ref();
        ClaimInfo {
            key: format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or("")),
            volume: spec.and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty()),
            class: spec.and_then(|s| s.storage_class_name.clone()).unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }
}

/// What scheduling reads of a volume: the nodes it can be used from.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeInfo {
    pub name: String,
    pub node_affinity: Option<NodeSelector>,
}

impl VolumeInfo {
    pub fn from_volume(volume: &PersistentVolume) -> VolumeInfo {
        VolumeInfo {
            name: volume.metadata.name.clone().unwrap_or_default(),
            node_affinity: volume.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.clone()),
        }
    }
}

/// A class: whether it waits for the first consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassInfo {
    pub name: String,
    pub waits_for_consumer: bool,
}

impl ClassInfo {
    pub fn from_class(class: &StorageClass) -> ClassInfo {
        ClassInfo {
            name: class.metadata.name.clone().unwrap_or_default(),
            waits_for_consumer: class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"),
        }
    }
}

/// The claims a pod's volumes name (`persistentVolumeClaim` volumes, and
/// the `<pod>-<volume>` claims of generic ephemeral volumes).
pub fn claims_of(pod: &Pod) -> Vec<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(format!("{name}-{}", v.name)),
            _ => None,
        })
        .collect()
}

/// What a pod's claims ask of a node, once its PreFilter passed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    /// The node affinity of each bound volume.
    pub affinities: Vec<NodeSelector>,
    /// Bound to a volume the scheduler has not seen.
    pub missing_volume: bool,
    /// Unbound claims waiting for this pod's node (names, in its namespace).
    pub to_select: Vec<String>,
}

/// Claims, volumes and classes, as the watches last showed them.
#[derive(Debug, Default)]
pub struct Volumes {
    claims: HashMap<String, ClaimInfo>,
    volumes: HashMap<String, VolumeInfo>,
    classes: HashMap<String, ClassInfo>,
}

impl Volumes {
    pub fn set_claim(&mut self, claim: ClaimInfo) {
        self.claims.insert(claim.key.clone(), claim);
    }
    pub fn remove_claim(&mut self, key: &str) {
        self.claims.remove(key);
    }
    pub fn replace_claims(&mut self, claims: Vec<ClaimInfo>) {
        self.claims = claims.into_iter().map(|c| (c.key.clone(), c)).collect();
    }
    pub fn set_volume(&mut self, volume: VolumeInfo) {
        self.volumes.insert(volume.name.clone(), volume);
    }
    pub fn remove_volume(&mut self, name: &str) {
        self.volumes.remove(name);
    }
    pub fn replace_volumes(&mut self, volumes: Vec<VolumeInfo>) {
        self.volumes = volumes.into_iter().map(|v| (v.name.clone(), v)).collect();
    }
    pub fn set_class(&mut self, class: ClassInfo) {
        self.classes.insert(class.name.clone(), class);
    }
    pub fn remove_class(&mut self, name: &str) {
        self.classes.remove(name);
    }
    pub fn replace_classes(&mut self, classes: Vec<ClassInfo>) {
        self.classes = classes.into_iter().map(|c| (c.name.clone(), c)).collect();
    }

    /// The PreFilter: what the claims of a pod in `namespace` ask of
    /// nodes, or why no node can take it (upstream's words).
    pub fn needs(&self, namespace: &str, claims: &[String]) -> Result<Needs, Cow<'static, str>> {
        let mut needs = Needs::default();
        for name in claims {
            let Some(claim) = self.claims.get(&format!("{namespace}/{name}")) else {
                return Err(format!("persistentvolumeclaim {name:?} not found").into());
            };
            if claim.deleting {
                return Err(format!("persistentvolumeclaim {name:?} is being deleted").into());
            }
            match &claim.volume {
                Some(volume) => match self.volumes.get(volume) {
                    Some(v) => needs.affinities.extend(v.node_affinity.clone()),
                    None => needs.missing_volume = true,
                },
                None if self.classes.get(&claim.class).is_some_and(|c| c.waits_for_consumer) => needs.to_select.push(name.clone()),
                None => return Err(REASON_UNBOUND_IMMEDIATE.into()),
            }
        }
        Ok(needs)
    }
}

/// The Filter: whether `node` can use every volume the pod's claims are
/// bound to.
pub fn fits(needs: &Needs, node: &NodeInfo) -> Result<(), &'static str> {
    if needs.missing_volume {
        return Err(REASON_MISSING_VOLUME);
    }
    let fields = NodeFields { name: &node.name, labels: &node.labels };
    if needs.affinities.iter().all(|a| labels::node_selector_matches(a, &fields)) {
        Ok(())
    } else {
        Err(REASON_NODE_CONFLICT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(name: &str, volume: Option<&str>, class: &str) -> ClaimInfo {
        ClaimInfo { key: format!("default/{name}"), volume: volume.map(String::from), class: class.into(), deleting: false }
    }

    fn node(name: &str) -> NodeInfo {
        let n: k8s_openapi::api::core::v1::Node =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})).unwrap();
        NodeInfo::from_node(&n)
    }

    fn volumes() -> Volumes {
        let mut v = Volumes::default();
        v.set_class(ClassInfo { name: "standard".into(), waits_for_consumer: true });
        v.set_class(ClassInfo { name: "now".into(), waits_for_consumer: false });
        let on_b: PersistentVolume = serde_json::from_value(json!({"metadata": {"name": "pv-b"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["b"]}]}]}}}}))
        .unwrap();
        v.set_volume(VolumeInfo::from_volume(&on_b));
        v.set_claim(claim("bound", Some("pv-b"), "standard"));
        v.set_claim(claim("waiting", None, "standard"));
        v.set_claim(claim("immediate", None, "now"));
        v.set_claim(claim("lost", Some("pv-gone"), "standard"));
        v
    }

    #[test]
    fn prefilter_names_the_claim_that_stops_a_pod() {
        let v = volumes();
        assert_eq!(v.needs("default", &["nope".into()]).unwrap_err(), "persistentvolumeclaim \"nope\" not found");
        assert_eq!(v.needs("default", &["immediate".into()]).unwrap_err(), REASON_UNBOUND_IMMEDIATE);
        let needs = v.needs("default", &["waiting".into(), "bound".into()]).unwrap();
        assert_eq!(needs.to_select, ["waiting"]);
        assert_eq!(needs.affinities.len(), 1);
    }

    #[test]
    fn bound_volumes_keep_pods_on_their_node() {
        let v = volumes();
        let needs = v.needs("default", &["bound".into()]).unwrap();
        assert_eq!(fits(&needs, &node("a")), Err(REASON_NODE_CONFLICT));
        assert_eq!(fits(&needs, &node("b")), Ok(()));
        let waiting = v.needs("default", &["waiting".into()]).unwrap();
        assert_eq!(fits(&waiting, &node("a")), Ok(()));
        let lost = v.needs("default", &["lost".into()]).unwrap();
        assert_eq!(fits(&lost, &node("b")), Err(REASON_MISSING_VOLUME));
    }
}
