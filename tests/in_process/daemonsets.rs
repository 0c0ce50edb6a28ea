//! The daemonset controller against the real apiserver, with Node objects
//! the test creates: one pod per eligible node, pinned to it; a node
//! added gets one; a template change rolls node by node.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use kubelab_scenarios::apiserver::TestApi;
use kubelab_scenarios::fake_kubelet::Which;
use kubelab_scenarios::wait::until;

fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
    serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
        .unwrap()
}

/// Each daemon pod's node (from its pinning affinity) and image, sorted.
async fn placement(pods: &Api<Pod>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let spec = p.spec.as_ref().unwrap();
            let terms = &spec
                .affinity
                .as_ref()
                .unwrap()
                .node_affinity
                .as_ref()
                .unwrap()
                .required_during_scheduling_ignored_during_execution
                .as_ref()
                .unwrap()
                .node_selector_terms;
            let node = terms[0].match_fields.as_ref().unwrap().iter().find(|f| f.key == "metadata.name").unwrap().values.as_ref().unwrap()[0].clone();
            (node, spec.containers[0].image.clone().unwrap_or_default())
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_eligible_node_and_rolling_updates() {
    let api = TestApi::start();
    let client = api.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.create(&PostParams::default(), &node("n1", serde_json::json!({"role": "worker"}), serde_json::json!([]))).await.unwrap();
    nodes.create(&PostParams::default(), &node("n2", serde_json::json!({"role": "worker"}), serde_json::json!([]))).await.unwrap();
    // Tainted: only pods that tolerate it run there.
    nodes
        .create(&PostParams::default(), &node("n3", serde_json::json!({"role": "worker"}), serde_json::json!([{"key": "dedicated", "effect": "NoSchedule"}])))
        .await
        .unwrap();
    // Not selected by the nodeSelector.
    nodes.create(&PostParams::default(), &node("n4", serde_json::json!({"role": "infra"}), serde_json::json!([]))).await.unwrap();
    let _controllers = api.controller_manager_with(&["daemonset"], Default::default());
    let _kubelets = api.pods_ready(Which::All);
    let manifest = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    \
                    metadata:\n      labels: {app: agent}\n    spec:\n      nodeSelector: {role: worker}\n      containers:\n      - name: agent\n        \
                    image: agent:1\n";
    api.kubectl_stdin(&["apply", "-f", "-"], manifest).succeeded();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let want = |image: &str, nodes: &[&str]| nodes.iter().map(|n| (n.to_string(), image.to_string())).collect::<Vec<_>>();
    until("a pod on n1 and n2", || async {
        let now = placement(&pods).await;
        (now == want("agent:1", &["n1", "n2"])).then_some(()).ok_or(format!("{now:?}"))
    })
    .await;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    until("the status counts", || async {
        let s = sets.get("agent").await.unwrap().status.unwrap_or_default();
        (s.desired_number_scheduled == 2 && s.number_misscheduled == 0).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;

    // A new eligible node gets its pod.
    nodes.create(&PostParams::default(), &node("n5", serde_json::json!({"role": "worker"}), serde_json::json!([]))).await.unwrap();
    until("a pod on n5 too", || async {
        let now = placement(&pods).await;
        (now == want("agent:1", &["n1", "n2", "n5"])).then_some(()).ok_or(format!("{now:?}"))
    })
    .await;

    // A new template replaces every pod, one node at a time (maxUnavailable 1).
    api.kubectl(&["set", "image", "daemonset/agent", "agent=agent:2"]).succeeded();
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    until("every pod on agent:2", || {
        let (pods, most) = (pods.clone(), most.clone());
        async move {
            let now = placement(&pods).await;
            most.fetch_max(now.len(), std::sync::atomic::Ordering::Relaxed);
            (now == want("agent:2", &["n1", "n2", "n5"])).then_some(()).ok_or(format!("{now:?}"))
        }
    })
    .await;
    assert!(most.load(std::sync::atomic::Ordering::Relaxed) <= 3, "more than one pod per node during the update");
    let names: Vec<String> = pods.list(&ListParams::default().labels("app=agent")).await.unwrap().items.iter().map(|p| p.name_any()).collect();
    assert!(names.iter().all(|n| n.starts_with("agent-")), "{names:?}");
}
