//! A reflector of every object of one kind, for components that act on the
//! whole picture (kube-proxy's rules, cluster DNS's zone) rather than per
//! object: the store is read whole, and `changed` runs on each event.

use futures_util::StreamExt;
use kube::runtime::reflector::{self, Store};
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
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
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

/// The store's objects, cloned out of it.
pub fn cloned<K: Clone + kube::Resource<DynamicType = ()>>(store: &Store<K>) -> Vec<K> {
    store.state().iter().map(|o| (**o).clone()).collect()
}
