//! Until the kubelet runs pods, tests play its status part as kwok does:
//! every pod that is not being deleted is reported Running and Ready as
//! soon as it appears. Runs on a thread and runtime of its own, so sync
//! and async tests alike can use it; stops when dropped.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;

use crate::apiserver::TestApi;

pub struct PodsReady {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Which pods are made ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Every pod, bound to a node or not.
    All,
    /// Only pods bound to a node (once a scheduler runs).
    Bound,
}

impl TestApi {
    /// Reports pods Running and Ready, as their kubelets would.
    pub fn pods_ready(&self, which: Which) -> PodsReady {
        let kubeconfig = self.kubeconfig.clone();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            runtime.block_on(async move {
                let config = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
                let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.unwrap();
                let client = crate::deadline::client(config);
                tokio::select! {
                    _ = mark_ready(client, which) => {}
                    _ = shutdown_rx => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        PodsReady { shutdown: Some(shutdown), thread: Some(thread) }
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn mark_ready(client: kube::Client, which: Which) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut events = watcher(pods, watcher::Config::default()).applied_objects().boxed();
    while let Some(event) = events.next().await {
        let Ok(pod) = event else { continue };
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        if is_ready(&pod) || pod.metadata.deletion_timestamp.is_some() || (which == Which::Bound && !bound) {
            continue;
        }
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let containers: Vec<serde_json::Value> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| {
                serde_json::json!({
                    "name": c.name, "image": c.image, "imageID": "", "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                })
            })
            .collect();
        let condition = |type_: &str| serde_json::json!({"type": type_, "status": "True", "lastTransitionTime": now});
        let patch = serde_json::json!({"status": {
            "phase": "Running",
            "startTime": now,
            "conditions": [condition("PodScheduled"), condition("Initialized"), condition("ContainersReady"), condition("Ready")],
            "containerStatuses": containers,
        }});
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        // A pod deleted meanwhile is no matter.
        let _ = api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await;
    }
}

impl Drop for PodsReady {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Labels as a map, for building objects in tests.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
