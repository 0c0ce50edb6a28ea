//! A work queue as upstream's client-go workqueue: an item is queued at
//! most once, is never worked on by two workers at once (added again while
//! in work, it is queued once the work is done), and failed items come
//! back after an exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Upstream's default controller rate limiter: 5 ms doubling to 1000 s.
const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1000);

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    ready: Notify,
}

struct State<T> {
    order: VecDeque<T>,
    queued: HashSet<T>,
    in_work: HashSet<T>,
    /// Added while in work: queued again when the work is done.
    again: HashSet<T>,
    failures: HashMap<T, u32>,
}

impl<T: Clone + Eq + Hash + Send + 'static> WorkQueue<T> {
    pub fn new() -> Arc<WorkQueue<T>> {
        let state = State { order: VecDeque::new(), queued: HashSet::new(), in_work: HashSet::new(), again: HashSet::new(), failures: HashMap::new() };
        Arc::new(WorkQueue { state: Mutex::new(state), ready: Notify::new() })
    }

    pub fn add(&self, item: T) {
        let mut state = self.state.lock().expect("not poisoned");
        if state.in_work.contains(&item) {
            state.again.insert(item);
        } else if state.queued.insert(item.clone()) {
            state.order.push_back(item);
            drop(state);
            self.ready.notify_one();
        }
    }

    /// The next item to work on, waiting for one; call [`done`](Self::done)
    /// with it afterwards.
    pub async fn next(&self) -> T {
        loop {
            let ready = self.ready.notified();
            {
                let mut state = self.state.lock().expect("not poisoned");
                if let Some(item) = state.order.pop_front() {
                    state.queued.remove(&item);
                    state.in_work.insert(item.clone());
                    if !state.order.is_empty() {
                        // Wake another worker for what is left.
                        self.ready.notify_one();
                    }
                    return item;
                }
            }
            ready.await;
        }
    }

    /// The work on `item` is over: it succeeded (its failures are
    /// forgotten) or it is to be retried after the backoff.
    pub fn done(self: &Arc<Self>, item: T, retry: bool) {
        let mut state = self.state.lock().expect("not poisoned");
        state.in_work.remove(&item);
        let delay = if retry {
            let failures = state.failures.entry(item.clone()).or_insert(0);
            let delay = BACKOFF_BASE.saturating_mul(1u32 << (*failures).min(30)).min(BACKOFF_MAX);
            *failures += 1;
            Some(delay)
        } else {
            state.failures.remove(&item);
            None
        };
        let again = state.again.remove(&item);
        drop(state);
        if again {
            self.add(item);
        } else if let Some(delay) = delay {
            let queue = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                queue.add(item);
            });
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().expect("not poisoned").order.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_item_is_queued_once_and_again_after_its_work() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.len(), 2);
        let a = queue.next().await;
        assert_eq!(a, "a");
        // Added while in work: not handed to another worker now.
        queue.add("a");
        assert_eq!(queue.next().await, "b");
        assert!(queue.is_empty());
        queue.done(a, false);
        assert_eq!(queue.next().await, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_come_back_after_a_growing_backoff() {
        let queue = WorkQueue::new();
        queue.add(1);
        let item = queue.next().await;
        queue.done(item, true);
        assert!(queue.is_empty(), "not at once");
        let start = tokio::time::Instant::now();
        let item = queue.next().await;
        assert_eq!(start.elapsed(), BACKOFF_BASE);
        queue.done(item, true);
        let start = tokio::time::Instant::now();
        let item = queue.next().await;
        assert_eq!(start.elapsed(), BACKOFF_BASE * 2);
        queue.done(item, false);
    }
}
