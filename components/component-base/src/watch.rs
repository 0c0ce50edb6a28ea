//! A reflector of every object of one kind, for components that act on the
//! whole picture (kube-proxy's rules, cluster DNS's zone) rather than per
//! object: the store is read whole, and `changed` runs on each event.

use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

/// Lists and watches every `K` into a store until the process ends
/// (backing off and relisting on errors); `changed` is called on each change
/// the store shows (an object applied or deleted, a list swapped in).
pub fn all<K>(client: kube::Client, changed: impl Fn() + Send + 'static) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::all(client);
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default())).backoff(Retries::default());
    tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                // A (re)list is buffered and swapped into the store whole at
                // InitDone; the objects of a list are no change until then,
                // and a relist that dropped objects is one only then.
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => changed(),
                Err(e) => tracing::warn!("watch of {}: {e}", K::kind(&())),
            }
        }
    });
    reader
}

/// When a failed list or watch is tried again: from 100 ms, doubling to
/// 5 s, and from 100 ms again once one succeeds. kube's default (0.8 s to
/// 30 s, as client-go's reflector) spares a large cluster's apiserver; a
/// lab's few watchers would rather recover at once, as when cluster DNS
/// starts before kube-proxy has made the `kubernetes` Service reachable.
#[derive(Debug, Clone, Copy)]
struct Retries {
    next: Duration,
}

impl Retries {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(5);
}

impl Default for Retries {
    fn default() -> Retries {
        Retries { next: Retries::FIRST }
    }
}

impl Iterator for Retries {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Retries::MOST);
        Some(now)
    }
}

impl Backoff for Retries {
    fn reset(&mut self) {
        *self = Retries::default();
    }
}

/// The store's objects, cloned out of it.
pub fn cloned<K: Clone + kube::Resource<DynamicType = ()>>(store: &Store<K>) -> Vec<K> {
    store.state().iter().map(|o| (**o).clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_to_five_seconds_and_start_over_after_a_success() {
        let mut r = Retries::default();
        let first: Vec<u64> = r.by_ref().take(8).map(|d| d.as_millis() as u64).collect();
        assert_eq!(first, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        r.reset();
        assert_eq!(r.next(), Some(Duration::from_millis(100)));
    }
}
