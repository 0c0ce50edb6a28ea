//! Which volume a claim gets, as upstream's `findMatchingVolume`: one that
//! is free or reserved for this claim, of the claim's class and volume
//! mode, offering every access mode it asks and at least the storage it
//! requests, whose labels its selector selects; the smallest such, so
//! that a large volume is not spent on a small claim. A claim waiting for
//! its first consumer takes only a volume reserved for it, or one its
//! selected node can reach.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;

use component_base::label_selector;
use component_base::quantity;

use super::class_of_volume;

/// The storage a claim requests, in bytes (0 when it names none).
pub fn requested_bytes(claim: &PersistentVolumeClaim) -> i64 {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| quantity::value(&q.0))
        .unwrap_or(0)
}

/// The storage a volume offers, in bytes.
pub fn capacity_bytes(volume: &PersistentVolume) -> i64 {
    volume.spec.as_ref().and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")).and_then(|q| quantity::value(&q.0)).unwrap_or(0)
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

/// Whether `volume`'s claimRef names `claim` (by uid when it gives one).
pub fn reserved_for(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return false };
    r.name.as_deref() == Some(claim.name_any().as_str())
        && r.namespace.as_deref() == claim.namespace().as_deref()
        && r.uid.as_deref().is_none_or(|u| u.is_empty() || Some(u) == claim.uid().as_deref())
}

/// The nodes a volume can be used from, when its node affinity names them
/// by host name (as local volumes do); None when it says nothing of nodes.
pub fn volume_nodes(volume: &PersistentVolume) -> Option<Vec<String>> {
    let terms = &volume.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?.node_selector_terms;
    let mut nodes = Vec::new();
    for term in terms {
        for e in term.match_expressions.iter().flatten() {
            if e.key == "kubernetes.io/hostname" && e.operator == "In" {
                nodes.extend(e.values.iter().flatten().cloned());
            }
        }
    }
    Some(nodes)
}

/// Why `volume` cannot serve `claim`, or None when it can.
pub fn mismatch(volume: &PersistentVolume, claim: &PersistentVolumeClaim, selected_node: Option<&str>, delay_binding: bool) -> Option<&'static str> {
    let spec = volume.spec.as_ref()?;
    let claim_spec = claim.spec.clone().unwrap_or_default();
    if volume.metadata.deletion_timestamp.is_some() {
        return Some("being deleted");
    }
    let reserved = reserved_for(volume, claim);
    if spec.claim_ref.is_some() && !reserved {
        return Some("bound to another claim");
    }
    if volume.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Released" || p == "Failed") && !reserved {
        return Some("released");
    }
    if class_of_volume(volume) != claim_spec.storage_class_name.as_deref().unwrap_or("") {
        return Some("another storage class");
    }
    if volume_mode(spec.volume_mode.as_ref()) != volume_mode(claim_spec.volume_mode.as_ref()) {
        return Some("another volume mode");
    }
    let offered = spec.access_modes.clone().unwrap_or_default();
    if !claim_spec.access_modes.iter().flatten().all(|m| offered.contains(m)) {
        return Some("lacks an access mode");
    }
    if capacity_bytes(volume) < requested_bytes(claim) {
        return Some("too small");
    }
    if let Some(selector) = &claim_spec.selector {
        let selected = label_selector::Selector::parse(Some(selector)).is_ok_and(|s| s.matches(Some(volume.labels())));
        if !selected {
            return Some("not selected");
        }
    }
    if delay_binding && !reserved {
        match (selected_node, volume_nodes(volume)) {
            (None, _) => return Some("waiting for the first consumer"),
            (Some(node), Some(nodes)) if !nodes.iter().any(|n| n == node) => return Some("not reachable from the selected node"),
            _ => {}
        }
    }
    None
}

/// The volume `claim` is to be bound to: one reserved for it first, else
/// the smallest that fits (ties by name).
pub fn best_match<'a>(
    volumes: &'a [std::sync::Arc<PersistentVolume>],
    claim: &PersistentVolumeClaim,
    selected_node: Option<&str>,
    delay_binding: bool,
) -> Option<&'a PersistentVolume> {
    let fitting: Vec<&PersistentVolume> = volumes.iter().map(|v| v.as_ref()).filter(|v| mismatch(v, claim, selected_node, delay_binding).is_none()).collect();
    if let Some(reserved) = fitting.iter().find(|v| reserved_for(v, claim)) {
        return Some(reserved);
    }
    fitting.into_iter().min_by(|a, b| capacity_bytes(a).cmp(&capacity_bytes(b)).then_with(|| a.name_any().cmp(&b.name_any())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn volume(name: &str, size: &str, class: &str, modes: &[&str], extra: serde_json::Value) -> Arc<PersistentVolume> {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"size": size}},
            "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": class, "hostPath": {"path": format!("/data/{name}")}},
        });
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn claim(size: &str, class: &str, modes: &[&str], selector: Option<serde_json::Value>) -> PersistentVolumeClaim {
        let mut c = json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "u-1"},
            "spec": {"accessModes": modes, "storageClassName": class, "resources": {"requests": {"storage": size}}},
        });
        if let Some(s) = selector {
            c["spec"]["selector"] = s;
        }
        serde_json::from_value(c).unwrap()
    }

    fn name(v: Option<&PersistentVolume>) -> Option<String> {
        v.map(|v| v.name_any())
    }

    #[test]
    fn the_smallest_fitting_volume_of_the_class_wins() {
        let volumes = vec![
            volume("big", "10Gi", "", &["ReadWriteOnce"], json!({})),
            volume("small", "1Gi", "", &["ReadWriteOnce"], json!({})),
            volume("tiny", "100Mi", "", &["ReadWriteOnce"], json!({})),
            volume("other-class", "1Gi", "fast", &["ReadWriteOnce"], json!({})),
            volume("read-only", "1Gi", "", &["ReadOnlyMany"], json!({})),
        ];
        assert_eq!(name(best_match(&volumes, &claim("500Mi", "", &["ReadWriteOnce"], None), None, false)).as_deref(), Some("small"));
        assert_eq!(name(best_match(&volumes, &claim("500Mi", "fast", &["ReadWriteOnce"], None), None, false)).as_deref(), Some("other-class"));
        assert_eq!(name(best_match(&volumes, &claim("20Gi", "", &["ReadWriteOnce"], None), None, false)), None);
        assert_eq!(name(best_match(&volumes, &claim("1Gi", "", &["ReadWriteMany"], None), None, false)), None);
        let selecting = claim("1Mi", "", &["ReadWriteOnce"], Some(json!({"matchLabels": {"size": "10Gi"}})));
        assert_eq!(name(best_match(&volumes, &selecting, None, false)).as_deref(), Some("big"));
    }

    #[test]
    fn reserved_volumes_come_first_and_others_claims_are_left_alone() {
        let mine = json!({"claimRef": {"name": "data", "namespace": "default"}});
        let theirs = json!({"claimRef": {"name": "data", "namespace": "default", "uid": "u-2"}});
        let volumes = vec![
            volume("free", "1Gi", "", &["ReadWriteOnce"], json!({})),
            volume("mine", "5Gi", "", &["ReadWriteOnce"], mine),
            volume("theirs", "1Gi", "", &["ReadWriteOnce"], theirs),
        ];
        assert_eq!(name(best_match(&volumes, &claim("1Gi", "", &["ReadWriteOnce"], None), None, false)).as_deref(), Some("mine"));
        assert_eq!(mismatch(&volumes[2], &claim("1Gi", "", &["ReadWriteOnce"], None), None, false), Some("bound to another claim"));
    }

    #[test]
    fn a_waiting_claim_takes_volumes_its_node_reaches() {
        let on = |node: &str| json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}});
        let volumes = vec![volume("on-a", "1Gi", "local", &["ReadWriteOnce"], on("a")), volume("on-b", "2Gi", "local", &["ReadWriteOnce"], on("b"))];
        let c = claim("1Gi", "local", &["ReadWriteOnce"], None);
        assert_eq!(name(best_match(&volumes, &c, None, true)), None, "no node chosen yet");
        assert_eq!(name(best_match(&volumes, &c, Some("b"), true)).as_deref(), Some("on-b"));
        assert_eq!(volume_nodes(&volumes[0]), Some(vec!["a".to_string()]));
    }
}
