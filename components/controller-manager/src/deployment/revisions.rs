//! A Deployment's ReplicaSets as revisions: which one is the current pod
//! template's (the new one), which are old, their `pod-template-hash`, and
//! the annotations that number them (`kubectl rollout history` reads them).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label (and name suffix) that tells a Deployment's ReplicaSets apart.
pub const TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Annotations of the Deployment that are not copied to its ReplicaSets
/// (upstream's skipCopyAnnotation): the controller's own, and kubectl's
/// record of the last applied manifest.
const NOT_COPIED: &[&str] =
    &["kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, "deprecated.deployment.rollback.to"];

/// The hash of a pod template (and the Deployment's collision count), as
/// a short string of upstream's alphabet: FNV-32a, printed in decimal,
/// each digit mapped to a letter or digit that spells no words.
///
/// Upstream hashes Go's debug print of the template struct, which only
/// Go's type layout can reproduce; we hash the template's JSON with its
/// keys sorted. The hash is as stable (the same template always gives the
/// same hash, any change gives another) but differs from a real cluster's.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_value(template).expect("a pod template serializes");
    let mut hash = fnv32a(2166136261, sorted_json(&json).as_bytes());
    if let Some(count) = collision_count {
        hash = fnv32a(hash, &count.to_le_bytes());
    }
    safe_encode(&hash.to_string())
}

fn fnv32a(mut hash: u32, bytes: &[u8]) -> u32 {
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(16777619);
    }
    hash
}

/// JSON with object keys in sorted order, whatever map serde_json uses.
fn sorted_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, String> = map.iter().map(|(k, v)| (k, sorted_json(v))).collect();
            let fields: Vec<String> = sorted.iter().map(|(k, v)| format!("{}:{v}", serde_json::Value::String((*k).clone()))).collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(sorted_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// Upstream's rand.SafeEncodeString: no vowels, and no 0, 1 or 3, so a
/// hash never spells a word.
fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char).collect()
}

/// The template without its `pod-template-hash` label (an empty label set
/// counts as none).
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    if let Some(labels) = meta.labels.as_mut() {
        labels.remove(TEMPLATE_HASH);
        if labels.is_empty() {
            meta.labels = None;
        }
    }
    template
}

/// Whether two templates are the same but for the hash label.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

pub fn template_of(deployment: &Deployment) -> PodTemplateSpec {
    deployment.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

pub fn set_template(set: &ReplicaSet) -> PodTemplateSpec {
    set.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default()
}

/// A revision number annotation; 0 when absent or unreadable.
pub fn revision_of(meta: &ObjectMeta) -> i64 {
    meta.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// Oldest first, then by name: the order upstream's
/// ReplicaSetsByCreationTimestamp gives.
pub fn sort_by_age(sets: &mut [ReplicaSet]) {
    sets.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .cmp(&b.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The ReplicaSet of the Deployment's current template (the oldest one, if
/// several match), and the others.
pub fn split(deployment: &Deployment, mut sets: Vec<ReplicaSet>) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
    sort_by_age(&mut sets);
    let template = template_of(deployment);
    match sets.iter().position(|s| equal_ignoring_hash(&set_template(s), &template)) {
        Some(i) => {
            let new = sets.remove(i);
            (Some(new), sets)
        }
        None => (None, sets),
    }
}

fn annotations(meta: &mut ObjectMeta) -> &mut BTreeMap<String, String> {
    meta.annotations.get_or_insert_with(BTreeMap::new)
}

/// Copies the Deployment's annotations (but those not copied) onto the
/// ReplicaSet; whether anything changed.
fn copy_annotations(deployment: &Deployment, set: &mut ReplicaSet) -> bool {
    let mut changed = false;
    for (key, value) in deployment.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&key.as_str()) {
            continue;
        }
        if annotations(&mut set.metadata).insert(key.clone(), value.clone()).as_ref() != Some(value) {
            changed = true;
        }
    }
    changed
}

/// The annotations a new (or newly current) ReplicaSet gets: the
/// Deployment's, its revision (moving an earlier revision number into the
/// revision history, as a rollback does), and its sizes. Whether anything
/// changed.
pub fn annotate_new(deployment: &Deployment, set: &mut ReplicaSet, new_revision: i64, existed: bool, max_surge: i32) -> bool {
    let mut changed = copy_annotations(deployment, set);
    let old = revision_of(&set.metadata);
    if old < new_revision {
        let history_entry = (existed && old > 0).then(|| old.to_string());
        let annotations = annotations(&mut set.metadata);
        annotations.insert(REVISION.into(), new_revision.to_string());
        if let Some(entry) = history_entry {
            let history = match annotations.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{entry}"),
                _ => entry,
            };
            annotations.insert(REVISION_HISTORY.into(), history);
        }
        changed = true;
    }
    if !existed {
        let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        changed |= set_size_annotations(set, replicas, replicas + max_surge);
    }
    changed
}

/// The desired and maximum replicas of the Deployment, as recorded on a
/// ReplicaSet for proportional scaling; whether they changed.
pub fn set_size_annotations(set: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = annotations(&mut set.metadata);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired.to_string()), (MAX_REPLICAS, max.to_string())] {
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

pub fn size_annotation(set: &ReplicaSet, key: &str) -> Option<i32> {
    set.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("app".to_string(), "web".to_string())].into()), ..Default::default() }),
            spec: Some(PodSpec { containers: vec![Container { name: "web".into(), image: Some(image.into()), ..Default::default() }], ..Default::default() }),
        }
    }

    #[test]
    fn hashes_are_stable_safe_and_differ_by_template_and_collisions() {
        let a = template_hash(&template("nginx:1"), None);
        assert_eq!(a, template_hash(&template("nginx:1"), None));
        assert_ne!(a, template_hash(&template("nginx:2"), None));
        assert_ne!(a, template_hash(&template("nginx:1"), Some(1)));
        assert!(a.len() <= 10 && a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{a}");
    }

    #[test]
    fn fnv32a_is_the_published_function() {
        // Test vectors of the FNV reference: "" and "a".
        assert_eq!(fnv32a(2166136261, b""), 0x811c9dc5);
        assert_eq!(fnv32a(2166136261, b"a"), 0xe40c292c);
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let mut hashed = template("nginx:1");
        hashed.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(TEMPLATE_HASH.into(), "abc".into());
        assert!(equal_ignoring_hash(&hashed, &template("nginx:1")));
        assert!(!equal_ignoring_hash(&hashed, &template("nginx:2")));
    }

    #[test]
    fn an_earlier_revision_made_current_goes_into_the_history() {
        let deployment = Deployment::default();
        let mut set = ReplicaSet::default();
        annotations(&mut set.metadata).insert(REVISION.into(), "1".into());
        assert!(annotate_new(&deployment, &mut set, 3, true, 1));
        assert_eq!(revision_of(&set.metadata), 3);
        assert_eq!(set.metadata.annotations.as_ref().unwrap()[REVISION_HISTORY], "1");
        assert!(!annotate_new(&deployment, &mut set, 3, true, 1));
    }
}
