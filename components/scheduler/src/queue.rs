//! The queue of pods waiting for a node, as upstream's scheduling queue
//! orders it (PrioritySort): higher priority first, then the pod that
//! joined first. A pod no node fits waits out a backoff (1 s, doubling per
//! attempt up to 10 s, upstream's podInitialBackoff and podMaxBackoff) and
//! is tried again; a change in the cluster that could help (a node added
//! or changed, a bound pod gone) sends every waiting pod back at once.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::model::PodInfo;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Upstream's backoff after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let mut duration = INITIAL_BACKOFF;
    for _ in 1..attempts {
        duration = (duration * 2).min(MAX_BACKOFF);
    }
    duration
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Ready to be tried, at this position.
    Active(u64),
    /// Taken by the scheduler, being decided or bound.
    InFlight,
    /// Unschedulable until then (or a helpful change).
    Waiting(Instant),
}

#[derive(Debug)]
struct Entry {
    pod: PodInfo,
    attempts: u32,
    place: Place,
    /// The message of the last failure written to the pod, so the same
    /// one is not written again.
    last_message: Option<String>,
}

/// Ordering key of the active queue.
type Position = (Reverse<i32>, u64, String);

#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: BTreeSet<Position>,
    waiting: BTreeSet<(Instant, String)>,
    next: u64,
}

impl Queue {
    /// Puts a pod at the end of the active queue (of its priority).
    fn push_active(&mut self, key: &str) {
        self.next += 1;
        let entry = self.entries.get_mut(key).expect("queued pods have entries");
        entry.place = Place::Active(self.next);
        self.active.insert((Reverse(entry.pod.priority), self.next, key.to_string()));
    }

    /// Moves a waiting pod to the active queue.
    fn activate(&mut self, key: &str) {
        let Some(entry) = self.entries.get(key) else { return };
        if let Place::Waiting(at) = entry.place {
            self.waiting.remove(&(at, key.to_string()));
            self.push_active(key);
        }
    }

    fn unplace(&mut self, key: &str, place: Place, priority: i32) {
        match place {
            Place::Active(position) => {
                self.active.remove(&(Reverse(priority), position, key.to_string()));
            }
            Place::Waiting(at) => {
                self.waiting.remove(&(at, key.to_string()));
            }
            Place::InFlight => {}
        }
    }

    /// A pending pod appeared or changed. A new pod is tried at once; a
    /// waiting one whose spec changed is tried again at once (the change
    /// may let it fit); one being decided keeps its place.
    pub fn add_or_update(&mut self, pod: PodInfo) {
        let key = pod.key();
        match self.entries.get_mut(&key) {
            None => {
                self.entries.insert(key.clone(), Entry { pod, attempts: 0, place: Place::InFlight, last_message: None });
                self.push_active(&key);
            }
            Some(entry) if entry.pod == pod => {}
            Some(entry) => {
                let (place, old_priority) = (entry.place, entry.pod.priority);
                entry.pod = pod;
                if place != Place::InFlight {
                    self.unplace(&key, place, old_priority);
                    self.push_active(&key);
                }
            }
        }
    }

    /// The pod was bound, deleted or handed to another scheduler.
    pub fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.unplace(key, entry.place, entry.pod.priority);
        }
    }

    /// Moves pods whose backoff is over to the active queue.
    pub fn release_due(&mut self, now: Instant) {
        while let Some((at, key)) = self.waiting.first().cloned() {
            if at > now {
                break;
            }
            self.activate(&key);
        }
    }

    /// When the next waiting pod's backoff ends.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting.first().map(|(at, _)| *at)
    }

    /// The next pod to decide, now in flight.
    pub fn pop(&mut self) -> Option<PodInfo> {
        let (_, _, key) = self.active.pop_first()?;
        let entry = self.entries.get_mut(&key).expect("active pods have entries");
        entry.place = Place::InFlight;
        entry.attempts += 1;
        Some(entry.pod.clone())
    }

    /// The pod in flight is bound (or its binding is in flight): it leaves
    /// the queue; a failed binding brings it back with `failed`.
    pub fn done(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// The pod in flight fits no node (or its binding failed): it waits out
    /// its backoff. Returns whether `message` differs from the last one
    /// written for it (when it does, it is to be written).
    pub fn failed(&mut self, pod: PodInfo, message: &str, now: Instant) -> bool {
        let key = pod.key();
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry { pod, attempts: 1, place: Place::InFlight, last_message: None });
        let at = now + backoff(entry.attempts);
        if entry.place == Place::InFlight {
            entry.place = Place::Waiting(at);
            self.waiting.insert((at, key));
        }
        let new = entry.last_message.as_deref() != Some(message);
        entry.last_message = Some(message.to_string());
        new
    }

    /// Something changed that could let waiting pods fit: try them all now.
    pub fn retry_waiting(&mut self) {
        let keys: Vec<String> = self.waiting.iter().map(|(_, k)| k.clone()).collect();
        for key in keys {
            self.activate(&key);
        }
    }

    /// Every pod key in the queue (to drop those a relist no longer shows).
    pub fn keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests_support::pod;

    fn info(name: &str, priority: i32) -> PodInfo {
        let mut p = PodInfo::from_pod(&pod(name, "100m"));
        p.priority = priority;
        p
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn priority_then_arrival() {
        let mut queue = Queue::default();
        queue.add_or_update(info("a", 0));
        queue.add_or_update(info("b", 10));
        queue.add_or_update(info("c", 0));
        let order: Vec<String> = std::iter::from_fn(|| queue.pop()).map(|p| p.name).collect();
        assert_eq!(order, ["b", "a", "c"]);
    }

    #[test]
    fn failed_pods_wait_their_backoff_or_a_helpful_change() {
        let mut queue = Queue::default();
        queue.add_or_update(info("a", 0));
        let a = queue.pop().unwrap();
        let now = Instant::now();
        assert!(queue.failed(a.clone(), "no", now));
        assert!(queue.pop().is_none());
        assert_eq!(queue.next_due(), Some(now + Duration::from_secs(1)));
        queue.release_due(now + Duration::from_millis(999));
        assert!(queue.pop().is_none());
        queue.release_due(now + Duration::from_secs(1));
        let a = queue.pop().unwrap();
        // Same message: not written again; second attempt waits 2 s.
        assert!(!queue.failed(a, "no", now));
        assert_eq!(queue.next_due(), Some(now + Duration::from_secs(2)));
        queue.retry_waiting();
        assert_eq!(queue.pop().map(|p| p.name), Some("a".to_string()));
        queue.done("default/a");
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn a_changed_pod_is_tried_again_and_removal_forgets() {
        let mut queue = Queue::default();
        queue.add_or_update(info("a", 0));
        let a = queue.pop().unwrap();
        queue.failed(a.clone(), "no", Instant::now());
        queue.add_or_update(a.clone());
        assert!(queue.is_empty(), "an unchanged pod keeps waiting");
        let mut changed = a;
        changed.node_selector.insert("disk".into(), "ssd".into());
        queue.add_or_update(changed);
        assert!(!queue.is_empty());
        queue.remove("default/a");
        assert!(queue.pop().is_none());
        assert_eq!(queue.len(), 0);
    }
}
