//! The watches of Nodes, Pods, claims, volumes and classes (kube-rs watchers: list, then watch,
//! relisting when the watch expires), turned into the changes the
//! scheduling loop applies. Objects are parsed here, off the loop, and only
//! what scheduling reads is kept.

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use tokio::sync::mpsc;

use crate::model::{NodeInfo, PodInfo};
use crate::volumes::{ClaimInfo, ClassInfo, VolumeInfo};

/// A change the loop applies to its picture of the cluster.
#[derive(Debug)]
pub enum Change {
    Node(NodeInfo),
    NodeGone(String),
    /// Every node, after a (re)list.
    Nodes(Vec<NodeInfo>),
    Pod(Box<PodInfo>),
    /// A pod deleted or finished, by key.
    PodGone(String),
    /// Every pod that is not finished, after a (re)list.
    Pods(Vec<PodInfo>),
    Claim(ClaimInfo),
    ClaimGone(String),
    Claims(Vec<ClaimInfo>),
    Volume(VolumeInfo),
    VolumeGone(String),
    Volumes(Vec<VolumeInfo>),
    Class(ClassInfo),
    ClassGone(String),
    Classes(Vec<ClassInfo>),
}

/// Upstream's scheduler watches only pods that are not finished: those
/// hold no resources.
const UNFINISHED_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";

/// Forwards the watch of `api` as changes: `parse` reads an object (None:
/// it is to be treated as gone), `one`/`gone`/`all` make the changes.
async fn forward<K, T>(
    api: Api<K>,
    config: watcher::Config,
    changes: mpsc::Sender<Change>,
    parse: impl Fn(&K) -> Option<T>,
    one: impl Fn(T) -> Change,
    gone: impl Fn(&K) -> Change,
    all: impl Fn(Vec<T>) -> Change,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    let mut listed = Vec::new();
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(Event::Apply(object)) => Some(parse(&object).map(&one).unwrap_or_else(|| gone(&object))),
            Ok(Event::Delete(object)) => Some(gone(&object)),
            Ok(Event::Init) => {
                listed.clear();
                None
            }
            Ok(Event::InitApply(object)) => {
                listed.extend(parse(&object));
                None
            }
            Ok(Event::InitDone) => Some(all(std::mem::take(&mut listed))),
            Err(e) => {
                tracing::warn!("watch failed (retrying): {e}");
                None
            }
        };
        if let Some(change) = change {
            if changes.send(change).await.is_err() {
                return;
            }
        }
    }
}

/// Watches every Node.
pub async fn nodes(client: kube::Client, changes: mpsc::Sender<Change>) {
    let api: Api<Node> = Api::all(client);
    let name = |n: &Node| n.metadata.name.clone().unwrap_or_default();
    forward(api, watcher::Config::default(), changes, |n| Some(NodeInfo::from_node(n)), Change::Node, |n| Change::NodeGone(name(n)), Change::Nodes).await
}

/// Watches every unfinished Pod.
pub async fn pods(client: kube::Client, changes: mpsc::Sender<Change>) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(UNFINISHED_PODS);
    // A pod whose phase turns final may still come as an update (the field
    // selector's transition): it is gone as far as scheduling goes.
    let parse = |p: &Pod| {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        (!matches!(phase, Some("Succeeded" | "Failed"))).then(|| PodInfo::from_pod(p))
    };
    let key = |p: &Pod| format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or(""), p.metadata.name.as_deref().unwrap_or(""));
    forward(api, config, changes, parse, |p| Change::Pod(Box::new(p)), |p| Change::PodGone(key(p)), Change::Pods).await
}

fn name_of<K: kube::Resource>(object: &K) -> String {
    object.meta().name.clone().unwrap_or_default()
}

/// Watches every PersistentVolumeClaim.
pub async fn claims(client: kube::Client, changes: mpsc::Sender<Change>) {
    let api: Api<PersistentVolumeClaim> = Api::all(client);
    let key = |c: &PersistentVolumeClaim| format!("{}/{}", c.metadata.namespace.as_deref().unwrap_or(""), name_of(c));
    forward(api, watcher::Config::default(), changes, |c| Some(ClaimInfo::from_claim(c)), Change::Claim, |c| Change::ClaimGone(key(c)), Change::Claims).await
}

/// Watches every PersistentVolume.
pub async fn volumes(client: kube::Client, changes: mpsc::Sender<Change>) {
    let api: Api<PersistentVolume> = Api::all(client);
    forward(api, watcher::Config::default(), changes, |v| Some(VolumeInfo::from_volume(v)), Change::Volume, |v| Change::VolumeGone(name_of(v)), Change::Volumes)
        .await
}

/// Watches every StorageClass.
pub async fn classes(client: kube::Client, changes: mpsc::Sender<Change>) {
    let api: Api<StorageClass> = Api::all(client);
    forward(api, watcher::Config::default(), changes, |c| Some(ClassInfo::from_class(c)), Change::Class, |c| Change::ClassGone(name_of(c)), Change::Classes)
        .await
}
