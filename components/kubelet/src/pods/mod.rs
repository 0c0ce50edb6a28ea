//! The pods bound to this node: one watch (`spec.nodeName=<node>`, the
//! only pods this kubelet ever sees), one worker per pod. At start the
//! runtime's sandboxes and containers are read back and handed to the
//! workers of their pods, so a restarted kubelet adopts what still runs;
//! what belongs to no pod of the first full list is removed.

pub mod backoff;
pub mod config;
pub mod duration;
pub mod env;
pub mod events;
pub mod files;
pub mod ids;
pub mod lifecycle;
pub mod probe;
pub mod service_env;
pub mod status;
pub mod volumes;
pub mod worker;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Result;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::Kubelet;
use status::{Attempt, PodObserved};

/// A sidecar: an init container with restartPolicy Always, which starts
/// in the init sequence and then runs beside the app containers.
pub fn is_sidecar(c: &k8s_openapi::api::core::v1::Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// What a pod's worker shares with the server (logs, exec, /pods).
#[derive(Debug, Default)]
pub struct Shared {
    /// The pod with the status the worker last computed.
    pub pod: Pod,
    pub observed: PodObserved,
    /// Container name → (image name, image id) as resolved.
    pub image_ids: BTreeMap<String, (String, String)>,
}

struct Entry {
    pods: watch::Sender<Option<Pod>>,
    shared: Arc<Mutex<Shared>>,
}

pub struct Manager {
    kubelet: Arc<Kubelet>,
    workers: RwLock<HashMap<String, Entry>>,
    /// Attempts found on disk at start, by pod uid, until their worker takes them.
    adopted: Mutex<HashMap<String, Vec<Attempt>>>,
}

impl Manager {
    pub async fn start(kubelet: Arc<Kubelet>) -> Result<Arc<Manager>> {
        let k = kubelet.clone();
        let found = tokio::task::spawn_blocking(move || k.runtime.containers()).await??;
        let mut adopted: HashMap<String, Vec<Attempt>> = HashMap::new();
        for c in found {
            let restart = ids::restart_of(&c.config.id).unwrap_or(0);
            adopted.entry(c.config.sandbox_id.clone()).or_default().push(Attempt { id: c.config.id.clone(), restart, state: c.state });
        }
        if !adopted.is_empty() {
            tracing::info!("found {} containers of {} pods on disk", adopted.values().map(Vec::len).sum::<usize>(), adopted.len());
        }
        let manager = Arc::new(Manager { kubelet, workers: RwLock::new(HashMap::new()), adopted: Mutex::new(adopted) });
        tokio::spawn(manager.clone().watch());
        Ok(manager)
    }

    async fn watch(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.kubelet.client.clone());
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.kubelet.settings.node_name));
        let mut stream = watcher(api, config).boxed();
        let mut listing: Option<BTreeSet<String>> = None;
        let mut first_list = true;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => listing = Some(BTreeSet::new()),
                Ok(watcher::Event::InitApply(pod)) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(pod.metadata.uid.clone().unwrap_or_default());
                    }
                    self.apply(pod);
                }
                Ok(watcher::Event::InitDone) => {
                    let listed = listing.take().unwrap_or_default();
                    // Pods that went while the watch was away.
                    let gone: Vec<String> = self.workers.read().expect("not poisoned").keys().filter(|uid| !listed.contains(*uid)).cloned().collect();
                    for uid in gone {
                        self.gone(&uid);
                    }
                    if first_list {
                        first_list = false;
                        self.clean_orphans(&listed).await;
                    }
                }
                Ok(watcher::Event::Apply(pod)) => self.apply(pod),
                Ok(watcher::Event::Delete(pod)) => self.gone(&pod.metadata.uid.clone().unwrap_or_default()),
                Err(e) => {
                    tracing::warn!("watching pods: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }

    fn apply(&self, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut workers = self.workers.write().expect("not poisoned");
        if let Some(entry) = workers.get(&uid) {
            // A finished worker's channel is closed; nothing to tell it.
            let _ = entry.pods.send(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let shared = Arc::new(Mutex::new(Shared { pod, ..Default::default() }));
        let adopted = self.adopted.lock().expect("not poisoned").remove(&uid).unwrap_or_default();
        let worker = worker::Worker::new(self.kubelet.clone(), uid.clone(), rx, shared.clone(), adopted);
        tokio::spawn(worker.run());
        workers.insert(uid, Entry { pods: tx, shared });
    }

    fn gone(&self, uid: &str) {
        if let Some(entry) = self.workers.write().expect("not poisoned").remove(uid) {
            let _ = entry.pods.send(None);
        }
    }

    /// Sandboxes, containers and network attachments of pods this node
    /// no longer has (deleted while the kubelet was away).
    async fn clean_orphans(&self, listed: &BTreeSet<String>) {
        let orphans: BTreeMap<String, Vec<Attempt>> = self.adopted.lock().expect("not poisoned").drain().filter(|(uid, _)| !listed.contains(uid)).collect();
        let kubelet = self.kubelet.clone();
        let sandboxes = tokio::task::spawn_blocking(move || kubelet.runtime.sandboxes()).await.ok().and_then(|r| r.ok()).unwrap_or_default();
        let mut uids: BTreeSet<String> = orphans.keys().cloned().collect();
        uids.extend(sandboxes.iter().map(|s| s.config.id.clone()).filter(|id| !listed.contains(id)));
        uids.extend(self.kubelet.network.attached().into_iter().filter(|id| !listed.contains(id)));
        for uid in uids {
            tracing::info!("removing what is left of pod {uid}, which this node no longer has");
            let netns = sandboxes.iter().find(|s| s.config.id == uid).and_then(|s| s.netns());
            let ids: Vec<String> = orphans.get(&uid).into_iter().flatten().map(|a| a.id.clone()).collect();
            let kubelet = self.kubelet.clone();
            let u = uid.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for id in ids {
                    let _ = kubelet.runtime.remove_container(&id);
                }
            })
            .await;
            if let Err(e) = self.kubelet.network.del(&uid, netns.as_deref()).await {
                tracing::warn!("CNI DEL of pod {uid}: {e:#}");
            }
            let kubelet = self.kubelet.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let _ = kubelet.runtime.remove_sandbox(&u);
                let _ = kubelet.runtime.remove_pod_cgroup(&u);
                let _ = std::fs::remove_dir_all(crate::paths::pod_dir(&kubelet.settings.root_dir, &u));
            })
            .await;
        }
    }

    /// Every pod with the status its worker last computed.
    pub fn pods(&self) -> Vec<Pod> {
        self.workers.read().expect("not poisoned").values().map(|e| e.shared.lock().expect("not poisoned").pod.clone()).collect()
    }

    /// The shared state of the pod `namespace/name`.
    pub fn find(&self, namespace: &str, name: &str) -> Option<Arc<Mutex<Shared>>> {
        self.workers
            .read()
            .expect("not poisoned")
            .values()
            .find(|e| {
                let s = e.shared.lock().expect("not poisoned");
                s.pod.metadata.namespace.as_deref() == Some(namespace) && s.pod.metadata.name.as_deref() == Some(name)
            })
            .map(|e| e.shared.clone())
    }
}
