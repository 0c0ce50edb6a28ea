//! The node lifecycle and taint eviction controllers against the real
//! apiserver, with Node objects and Leases the test keeps (as kwok does):
//! a node whose Lease stops being renewed turns Unknown, is tainted
//! unreachable, its pods are marked not ready and evicted, and their
//! Deployment replaces them.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use kubelab_scenarios::apiserver::TestApi;
use kubelab_scenarios::wait::until;

fn node(name: &str) -> Node {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                                   "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    }))
    .unwrap()
}

/// Renews `name`'s Lease every half second, as its kubelet would, until
/// the task is aborted.
fn heartbeat(client: kube::Client, name: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            let renew = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}});
            let _ = leases.patch(name, &PatchParams::apply("kubelet").force(), &Patch::Apply(&renew)).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_tainted_and_its_pods_replaced() {
    let api = TestApi::start();
    let client = api.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    for name in ["node-a", "node-b"] {
        let created = nodes.create(&PostParams::default(), &node(name)).await.unwrap();
        nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&serde_json::json!({"status": node(name).status}))).await.unwrap();
        assert_eq!(created.name_any(), name);
    }
    let beat_a = heartbeat(client.clone(), "node-a");
    let beat_b = heartbeat(client.clone(), "node-b");
    let settings = controller_manager::Settings {
        node_timings: controller_manager::node_lifecycle::Timings {
            monitor_period: Duration::from_millis(200),
            grace_period: Duration::from_secs(2),
            startup_grace_period: Duration::from_secs(3),
        },
        ..Default::default()
    };
    let _controllers = api.controller_manager_with(&["node-lifecycle-controller", "taint-eviction-controller", "deployment", "replicaset"], settings);
    api.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]).succeeded();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let names = until("two pods", || async {
        let list: Vec<String> = pods.list(&ListParams::default()).await.unwrap().items.iter().map(|p| p.name_any()).collect();
        let shown = format!("{list:?}");
        (list.len() == 2).then_some(list).ok_or(shown)
    })
    .await;
    // Play the scheduler: one pod on each node, both ready.
    for (pod, node) in names.iter().zip(["node-a", "node-b"]) {
        let binding = format!(r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{pod}"}},"target":{{"kind":"Node","name":"{node}"}}}}"#);
        let (code, body) = api.raw("POST", &format!("/api/v1/namespaces/default/pods/{pod}/binding"), "application/json", binding.into_bytes()).await;
        assert_eq!(code, 201, "{body}");
        let ready = serde_json::json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    }
    // Healthy nodes stay untainted while their leases are renewed: checked
    // through a window longer than the grace period.
    let window = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < window {
        for name in ["node-a", "node-b"] {
            let n = nodes.get(name).await.unwrap();
            assert!(n.spec.and_then(|s| s.taints).unwrap_or_default().is_empty(), "{name} was tainted while renewing");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // node-b's kubelet goes silent.
    beat_b.abort();
    let node_b = until("node-b Unknown and tainted unreachable", || async {
        let n = nodes.get("node-b").await.unwrap();
        let ready = n.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready")).cloned().unwrap();
        let taints: Vec<String> =
            n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default().iter().map(|t| format!("{}:{}", t.key, t.effect)).collect();
        let want = ["node.kubernetes.io/unreachable:NoSchedule", "node.kubernetes.io/unreachable:NoExecute"];
        (ready.status == "Unknown" && want.iter().all(|w| taints.contains(&w.to_string())))
            .then_some(n.clone())
            .ok_or(format!("Ready {}, taints {taints:?}", ready.status))
    })
    .await;
    let ready = node_b.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.reason.as_deref(), ready.message.as_deref()), (Some("NodeStatusUnknown"), Some("Kubelet stopped posting node status.")));

    // Its pod (which tolerates nothing) is evicted and replaced.
    until("the pod on node-b evicted and replaced", || async {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        let on_b: Vec<&Pod> = list.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("node-b")).collect();
        let active = list.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).count();
        let evicted = on_b.iter().all(|p| p.metadata.deletion_timestamp.is_some());
        (evicted && active == 2).then_some(()).ok_or(format!("node-b pod evicted: {evicted}, {active} active pods"))
    })
    .await;
    let events = Api::<Event>::namespaced(client.clone(), "default").list(&ListParams::default()).await.unwrap().items;
    assert!(events.iter().any(|e| e.reason.as_deref() == Some("TaintManagerEviction")), "no TaintManagerEviction event");
    let a = nodes.get("node-a").await.unwrap();
    assert!(a.spec.and_then(|s| s.taints).unwrap_or_default().is_empty(), "node-a, still renewing, was tainted");
    beat_a.abort();
}
