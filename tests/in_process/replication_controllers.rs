//! The replicationcontroller controller against the real apiserver: an RC
//! keeps as many pods as it asks for (its equality selector, controller
//! references to it), scales with `kubectl scale rc`, replaces a deleted
//! pod, writes its status, and `kubectl delete rc` takes its pods with it
//! (the garbage collector). Pods are made Ready by the stand-in kubelet.

use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{Api, DeleteParams, ListParams};
use kube::ResourceExt;
use kubelab_scenarios::apiserver::TestApi;
use kubelab_scenarios::fake_kubelet::Which;
use kubelab_scenarios::wait::until;

const RC: &str = "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector: {app: web}\n  template:\n    \
                  metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n";

/// The names of the live pods labelled app=web that `uid` controls, and
/// of those it does not.
async fn pods(pods: &Api<Pod>, uid: &str) -> (Vec<String>, Vec<String>) {
    let all = pods.list(&ListParams::default().labels("app=web")).await.unwrap().items;
    let live = all.iter().filter(|p| p.metadata.deletion_timestamp.is_none());
    let (owned, other): (Vec<&Pod>, Vec<&Pod>) = live.partition(|p| {
        p.owner_references().iter().any(|r| r.controller == Some(true) && r.uid == uid && r.kind == "ReplicationController" && r.api_version == "v1")
    });
    (owned.iter().map(|p| p.name_any()).collect(), other.iter().map(|p| p.name_any()).collect())
}

/// Waits until the RC has `want` pods of its own and its status counts
/// them all (replicas, ready, available, observedGeneration current).
async fn settles(rcs: &Api<ReplicationController>, pod_api: &Api<Pod>, uid: &str, want: usize) -> Vec<String> {
    until(&format!("{want} pods owned by the RC and counted in its status"), || async {
        let (owned, other) = pods(pod_api, uid).await;
        let rc = rcs.get("web").await.unwrap();
        let status = rc.status.clone().unwrap_or_default();
        let counted = status.replicas == want as i32
            && status.ready_replicas == Some(want as i32)
            && status.available_replicas == Some(want as i32)
            && status.fully_labeled_replicas == Some(want as i32)
            && status.observed_generation == rc.metadata.generation;
        (owned.len() == want && other.is_empty() && counted).then_some(owned.clone()).ok_or(format!("owned {owned:?}, not owned {other:?}, status {status:?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_keeps_scales_and_cascades() {
    let api = TestApi::start();
    let _controllers = api.controller_manager_with(&["replicationcontroller", "garbagecollector"], Default::default());
    let _kubelets = api.pods_ready(Which::All);
    let client = api.client().await;
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");

    api.kubectl_stdin(&["create", "-f", "-"], RC).succeeded();
    let uid = rcs.get("web").await.unwrap().uid().unwrap();
    let three = settles(&rcs, &pod_api, &uid, 3).await;
    assert!(three.iter().all(|name| name.starts_with("web-")), "{three:?}");

    let scaled = api.kubectl(&["scale", "rc", "web", "--replicas=1"]).succeeded();
    assert!(scaled.contains("replicationcontroller/web scaled"), "{scaled}");
    let one = settles(&rcs, &pod_api, &uid, 1).await;

    // A deleted pod is replaced by a new one.
    pod_api.delete(&one[0], &DeleteParams::default()).await.unwrap();
    until("the deleted pod replaced", || async {
        let (owned, _) = pods(&pod_api, &uid).await;
        (owned.len() == 1 && owned[0] != one[0]).then_some(()).ok_or(format!("owned {owned:?}, deleted {}", one[0]))
    })
    .await;
    settles(&rcs, &pod_api, &uid, 1).await;

    // The controller's events name the RC.
    let described = api.kubectl(&["describe", "rc", "web"]).succeeded();
    assert!(described.contains("SuccessfulCreate") && described.contains("SuccessfulDelete"), "{described}");
    assert!(described.lines().any(|l| l.starts_with("Selector:") && l.ends_with("app=web")), "{described}");

    api.kubectl(&["delete", "rc", "web"]).succeeded();
    until("the RC's pods collected with it", || async {
        let left: Vec<String> = pod_api
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        left.is_empty().then_some(()).ok_or(format!("pods left: {left:?}"))
    })
    .await;
}
