//! One watch per resource the collector can act on, each turning what it
//! sees into graph changes. Watches ask for metadata only
//! (`as=PartialObjectMetadata`), so only metadata is decoded; an apiserver
//! that answers with whole objects works the same, at the cost of bytes.

use std::collections::HashSet;

use futures_util::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::sync::mpsc;

use super::graph::{Change, Identity, Seen};
use crate::discovery::ServedResource;

/// Resources the collector leaves alone, as upstream's default: events
/// are many, short-lived and never own anything.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// Whether the collector watches `resource`: it must be listed, watched
/// and deleted through the API, and not be one upstream ignores.
pub fn monitored(resource: &ServedResource) -> bool {
    ["list", "watch", "delete"].iter().all(|v| resource.supports(v)) && !IGNORED.contains(&(resource.api.group.as_str(), resource.api.plural.as_str()))
}

/// What a monitor reports: changes, and once, that its first list is in.
#[derive(Debug)]
pub enum Report {
    Change(Change),
    Synced(String),
}

/// Watches `resource` until the collector stops, sending what it sees.
pub async fn run(client: Client, resource: ServedResource, reports: mpsc::Sender<Report>) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource.api);
    let key = resource.group_resource();
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut listing: Option<HashSet<String>> = None;
    let mut synced = false;
    while let Some(event) = stream.next().await {
        let report = match event {
            Ok(Event::Apply(object)) => Report::Change(Change::Upsert(seen(&resource, object))),
            Ok(Event::Delete(object)) => Report::Change(Change::Delete(seen(&resource, object).identity)),
            Ok(Event::Init) => {
                listing = Some(HashSet::new());
                continue;
            }
            Ok(Event::InitApply(object)) => {
                let seen = seen(&resource, object);
                listing.get_or_insert_with(HashSet::new).insert(seen.identity.uid.clone());
                Report::Change(Change::Upsert(seen))
            }
            Ok(Event::InitDone) => {
                let listed = listing.take().unwrap_or_default();
                let relisted = Change::Relisted { api_version: resource.api.api_version.clone(), kind: resource.api.kind.clone(), listed };
                if reports.send(Report::Change(relisted)).await.is_err() {
                    return;
                }
                if synced {
                    continue;
                }
                synced = true;
                Report::Synced(key.clone())
            }
            Err(e) => {
                tracing::warn!(resource = %key, "garbage collector watch failed (retrying): {e}");
                continue;
            }
        };
        if reports.send(report).await.is_err() {
            return;
        }
    }
}

/// What the graph keeps of an object a monitor saw.
fn seen(resource: &ServedResource, object: PartialObjectMeta<DynamicObject>) -> Seen {
    let meta = object.metadata;
    let identity = Identity {
        api_version: resource.api.api_version.clone(),
        kind: resource.api.kind.clone(),
        namespace: if resource.namespaced { meta.namespace } else { None },
        name: meta.name.unwrap_or_default(),
        uid: meta.uid.unwrap_or_default(),
    };
    Seen {
        identity,
        owners: meta.owner_references.unwrap_or_default(),
        being_deleted: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.unwrap_or_default(),
    }
}
