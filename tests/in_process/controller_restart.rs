//! A controller-manager that restarts decides on whole caches: as
//! upstream's controllers wait for their informers to sync before their
//! workers start, ours wait for their first lists, so a restarted
//! deployment or replicaset controller neither creates pods that already
//! exist nor deletes any.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::ResourceExt;
use kubelab_scenarios::apiserver::TestApi;
use kubelab_scenarios::fake_kubelet::Which;
use kubelab_scenarios::wait::until;

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  \
                          template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n";

/// Waits until the Deployment has `want` live pods and its status counts
/// them as available at its current generation.
async fn settled(deployments: &Api<Deployment>, pods: &Api<Pod>, want: usize) {
    until(&format!("{want} pods of the Deployment, all counted available"), || async {
        let live: Vec<String> = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        let d = deployments.get("web").await.unwrap();
        let status = d.status.clone().unwrap_or_default();
        let counted = status.available_replicas == Some(want as i32) && status.observed_generation == d.metadata.generation;
        (live.len() == want && counted).then_some(()).ok_or(format!("live pods {live:?}, status {status:?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_manager_keeps_the_pods_it_finds() {
    let api = TestApi::start();
    let controllers = api.controller_manager_with(&["deployment", "replicaset"], Default::default());
    let _kubelets = api.pods_ready(Which::All);
    let client = api.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    api.kubectl_stdin(&["create", "-f", "-"], DEPLOYMENT).succeeded();
    settled(&deployments, &pods, 3).await;

    // Every pod event from here on.
    let from = pods.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = {
        let seen = seen.clone();
        let mut stream = pods.watch(&WatchParams::default().timeout(290), &from).await.unwrap().boxed();
        tokio::spawn(async move {
            while let Some(Ok(event)) = stream.next().await {
                let line = match event {
                    WatchEvent::Added(p) => format!("ADDED {}", p.name_any()),
                    WatchEvent::Deleted(p) => format!("DELETED {}", p.name_any()),
                    WatchEvent::Modified(p) if p.metadata.deletion_timestamp.is_some() => format!("DELETING {}", p.name_any()),
                    _ => continue,
                };
                seen.lock().unwrap().push(line);
            }
        })
    };

    drop(controllers);
    let _controllers = api.controller_manager_with(&["deployment", "replicaset"], Default::default());
    // The restarted controllers act on a change: one pod more.
    api.kubectl(&["scale", "deployment", "web", "--replicas=4"]).succeeded();
    settled(&deployments, &pods, 4).await;
    recorder.abort();

    let seen = seen.lock().unwrap().clone();
    let added = seen.iter().filter(|l| l.starts_with("ADDED")).count();
    let removed: Vec<&String> = seen.iter().filter(|l| !l.starts_with("ADDED")).collect();
    assert_eq!((added, removed.len()), (1, 0), "after the restart, only the one pod the scale asked for is created and none deleted: {seen:?}");
}
