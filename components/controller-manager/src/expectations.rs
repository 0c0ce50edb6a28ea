//! Expectations, as upstream's `UIDTrackingControllerExpectations`: what a
//! controller has asked the API to create and delete and not yet seen in
//! its watch. Until its own writes are seen, the controller's cache is
//! behind, and acting on it would create (or delete) twice.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use kube::ResourceExt;

/// After this long, expectations are given up on and the cache trusted
/// again (upstream's ExpectationsTimeout), so a lost watch event cannot
/// stall a controller for ever.
pub const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Pending {
    creations: i64,
    deletions: HashSet<String>,
    since: Instant,
}

/// Per controller key (`namespace/name`), the writes not yet observed.
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// Whether the cache has caught up with `key`'s writes.
    pub fn satisfied(&self, key: &str) -> bool {
        let pending = self.pending.lock().expect("not poisoned");
        match pending.get(key) {
            None => true,
            Some(p) => (p.creations <= 0 && p.deletions.is_empty()) || p.since.elapsed() > TIMEOUT,
        }
    }

    /// Records that `count` creations are about to be asked for.
    pub fn expect_creations(&self, key: &str, count: usize) {
        let mut pending = self.pending.lock().expect("not poisoned");
        pending.insert(key.into(), Pending { creations: count as i64, deletions: HashSet::new(), since: Instant::now() });
    }

    /// Adds `count` creations to what is already expected.
    pub fn raise_creations(&self, key: &str, count: usize) {
        let mut pending = self.pending.lock().expect("not poisoned");
        let entry = pending.entry(key.into()).or_insert_with(|| Pending { creations: 0, deletions: HashSet::new(), since: Instant::now() });
        entry.creations = entry.creations.max(0) + count as i64;
        entry.since = Instant::now();
    }

    /// Records that the objects with these uids are about to be deleted.
    pub fn expect_deletions(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        let mut pending = self.pending.lock().expect("not poisoned");
        pending.insert(key.into(), Pending { creations: 0, deletions: uids.into_iter().collect(), since: Instant::now() });
    }

    /// One creation was seen in the watch, or will never happen (it failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(p) = self.pending.lock().expect("not poisoned").get_mut(key) {
            p.creations -= 1;
        }
    }

    /// The deletion of `uid` was seen, or will never happen.
    pub fn deletion_observed(&self, key: &str, uid: &str) {
        if let Some(p) = self.pending.lock().expect("not poisoned").get_mut(key) {
            p.deletions.remove(uid);
        }
    }

    /// Forgets `key` (its controller object is gone).
    pub fn forget(&self, key: &str) {
        self.pending.lock().expect("not poisoned").remove(key);
    }
}

/// Counts what a pod watch shows of a controller's own writes: a pod seen
/// for the first time is an observed creation, a pod deleted (or newly
/// marked for deletion) an observed deletion. `owner_key` gives the
/// expectations key of the pod's controller when it is this controller's
/// kind; `seen` is the cache as it was before the event.
pub fn observe_pod(expectations: &Expectations, seen: &Store<Pod>, event: &Event<Pod>, owner_key: impl Fn(&Pod) -> Option<String>) {
    let (pod, deleted) = match event {
        Event::Apply(pod) | Event::InitApply(pod) => (pod, false),
        Event::Delete(pod) => (pod, true),
        Event::Init | Event::InitDone => return,
    };
    let Some(key) = owner_key(pod) else { return };
    let uid = pod.uid().unwrap_or_default();
    let before = seen.get(&ObjectRef::from_obj(pod));
    if deleted || (pod.metadata.deletion_timestamp.is_some() && before.as_ref().is_some_and(|b| b.metadata.deletion_timestamp.is_none())) {
        expectations.deletion_observed(&key, &uid);
    } else if before.is_none() {
        expectations.creation_observed(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_every_write_is_seen() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        e.expect_deletions("ns/rs", ["a".to_string(), "b".to_string()]);
        e.deletion_observed("ns/rs", "a");
        e.deletion_observed("ns/rs", "unrelated");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "b");
        assert!(e.satisfied("ns/rs"));
    }
}
