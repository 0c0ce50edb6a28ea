//! The scheduler against a real apiserver and etcd: Node objects the test
//! creates (Ready, with allocatable), pods created through the API, and the
//! scheduler's library running in-process as the kube-scheduler identity.
//! What it decides is read back from the API: `spec.nodeName`, the
//! PodScheduled condition and the events.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kubelab_scenarios::apiserver::{Scheduler, TestApi};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// Waits until `check` gives a value; on timeout, fails with what it last
/// said was missing.
async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    kubelab_scenarios::wait::until_within(what, WAIT, check).await
}

/// A test apiserver and a kube client; the scheduler is started apart so
/// tests can create nodes first.
struct Cluster {
    // Dropped before the apiserver it talks to.
    scheduler: Option<Scheduler>,
    client: kube::Client,
    api: TestApi,
}

impl Cluster {
    async fn start() -> Cluster {
        let api = TestApi::start();
        let client = api.client().await;
        Cluster { scheduler: None, client, api }
    }

    fn start_scheduler(&mut self) {
        self.scheduler = Some(self.api.scheduler());
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// A Ready node as a kubelet would register it (kwok-like): `cpu`
    /// cores, 8 GiB, 110 pods, its hostname label and `labels`, `taints`.
    async fn node(&self, name: &str, cpu: &str, labels: Value, taints: Value) {
        let mut all_labels = labels.as_object().cloned().unwrap_or_default();
        all_labels.insert("kubernetes.io/hostname".into(), json!(name));
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": all_labels},
            "spec": {"taints": taints},
        }))
        .unwrap();
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes.create(&PostParams::default(), &node).await.unwrap();
        let resources = json!({"cpu": cpu, "memory": "8Gi", "pods": "110"});
        let status = json!({"status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
        }});
        nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
    }

    /// Creates a pod in `default` with one container asking `cpu`, and
    /// `spec` merged over that.
    async fn pod(&self, name: &str, cpu: &str, spec: Value) {
        self.pod_with(name, cpu, json!({}), spec).await
    }

    /// As `pod`, with `metadata` merged over its name and namespace.
    async fn pod_with(&self, name: &str, cpu: &str, metadata: Value, spec: Value) {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": cpu}}}]},
        });
        merge(&mut pod, json!({ "metadata": metadata, "spec": spec }));
        let pod: Pod = serde_json::from_value(pod).unwrap();
        self.pods().create(&PostParams::default(), &pod).await.unwrap();
    }

    /// The node `name` is bound to, once it is.
    async fn bound(&self, name: &str) -> String {
        let pods = self.pods();
        wait_until(&format!("pod {name} bound"), || async {
            let pod = pods.get(name).await.map_err(|e| e.to_string())?;
            pod.spec.and_then(|s| s.node_name).ok_or_else(|| "spec.nodeName is empty".to_string())
        })
        .await
    }

    /// The message of `name`'s PodScheduled=False condition (reason
    /// Unschedulable) and of its FailedScheduling event, once both exist
    /// and say `expected`.
    async fn unschedulable(&self, name: &str, expected: &str) {
        let pods = self.pods();
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        wait_until(&format!("pod {name} unschedulable with {expected:?}"), || async {
            let pod = pods.get(name).await.map_err(|e| e.to_string())?;
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) {
                panic!("pod {name} was bound to {node}");
            }
            let conditions = pod.status.and_then(|s| s.conditions).unwrap_or_default();
            let condition = conditions.iter().find(|c| c.type_ == "PodScheduled").ok_or("no PodScheduled condition")?;
            let said = (condition.status.as_str(), condition.reason.as_deref(), condition.message.as_deref());
            if said != ("False", Some("Unschedulable"), Some(expected)) {
                return Err(format!("the condition says {said:?}"));
            }
            let listed = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            let failed: Vec<_> =
                listed.items.iter().filter(|e| e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some("FailedScheduling")).collect();
            let event = failed
                .iter()
                .find(|e| e.message.as_deref() == Some(expected))
                .ok_or_else(|| format!("no FailedScheduling event says it; they say {:?}", failed.iter().map(|e| e.message.clone()).collect::<Vec<_>>()))?;
            assert_eq!(event.type_.as_deref(), Some("Warning"));
            assert_eq!(event.source.as_ref().and_then(|s| s.component.as_deref()), Some("default-scheduler"));
            Ok(())
        })
        .await
    }
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

/// An owner for pods, as a ReplicaSet would own them (no controller runs
/// here: the pods are created by the test).
async fn replica_set(cluster: &Cluster, name: &str) -> Value {
    let rs: k8s_openapi::api::apps::v1::ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }))
    .unwrap();
    let api: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(cluster.client.clone(), "default");
    let created = api.create(&PostParams::default(), &rs).await.unwrap();
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": created.metadata.uid, "controller": true})
}

#[tokio::test]
async fn six_pods_of_one_owner_spread_two_per_node_with_scheduled_events() {
    let mut cluster = Cluster::start().await;
    for name in ["node-1", "node-2", "node-3"] {
        cluster.node(name, "4", json!({}), json!([])).await;
    }
    cluster.start_scheduler();
    let owner = replica_set(&cluster, "web").await;
    for i in 0..6 {
        cluster.pod_with(&format!("web-{i}"), "100m", json!({"labels": {"app": "web"}, "ownerReferences": [owner]}), json!({})).await;
    }
    let mut per_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..6 {
        let name = format!("web-{i}");
        per_node.entry(cluster.bound(&name).await).or_default().push(name);
    }
    let counts: BTreeMap<&str, usize> = per_node.iter().map(|(n, p)| (n.as_str(), p.len())).collect();
    assert_eq!(counts, BTreeMap::from([("node-1", 2), ("node-2", 2), ("node-3", 2)]), "{per_node:?}");

    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let pods = cluster.pods();
    wait_until("a Scheduled event for each pod", || async {
        let listed = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let mut missing = Vec::new();
        for i in 0..6 {
            let name = format!("web-{i}");
            let node = pods.get(&name).await.unwrap().spec.unwrap().node_name.unwrap();
            let expected = format!("Successfully assigned default/{name} to {node}");
            let found = listed.items.iter().any(|e| {
                e.involved_object.name.as_deref() == Some(name.as_str())
                    && e.reason.as_deref() == Some("Scheduled")
                    && e.message.as_deref() == Some(expected.as_str())
                    && e.type_.as_deref() == Some("Normal")
            });
            if !found {
                missing.push(expected);
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("{missing:?}"))
        }
    })
    .await;
    // The binding wrote PodScheduled=True.
    let pod = cluster.pods().get("web-0").await.unwrap();
    let conditions = pod.status.unwrap().conditions.unwrap_or_default();
    assert!(conditions.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"), "{conditions:?}");
}

#[tokio::test]
async fn each_unschedulable_case_says_why_as_upstream() {
    let mut cluster = Cluster::start().await;
    cluster.node("node-1", "1", json!({}), json!([])).await;
    for name in ["node-2", "node-3"] {
        cluster.node(name, "1", json!({}), json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])).await;
    }
    // node-1 already runs a pod asking 800m (bound by its spec, as the
    // kubelet would be told).
    cluster.pod("busy", "800m", json!({"nodeName": "node-1"})).await;
    cluster.start_scheduler();

    // Too little cpu: node-1 could fit it if pods went, but none has a
    // lower priority; the tainted nodes cannot be helped by preemption.
    cluster.pod("needs-cpu", "500m", json!({})).await;
    cluster
        .unschedulable(
            "needs-cpu",
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}. \
             preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
        )
        .await;
    // More than any node has: preemption cannot help anywhere.
    cluster.pod("too-big", "2", json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]})).await;
    cluster
        .unschedulable(
            "too-big",
            "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
        )
        .await;
    // An untolerated taint: taints are filtered before the selector (as
    // upstream's plugin order), so the tainted nodes give their taint and
    // only node-1 the selector.
    cluster.node("node-4", "4", json!({}), json!([{"key": "team", "value": "", "effect": "NoExecute"}])).await;
    cluster.pod("no-toleration", "100m", json!({"nodeSelector": {"kubernetes.io/hostname": "node-4"}})).await;
    cluster
        .unschedulable(
            "no-toleration",
            "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {team: }, \
             2 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.",
        )
        .await;
    // No node matching the selector (the taints are tolerated).
    cluster.pod("wants-ssd", "100m", json!({"nodeSelector": {"disk": "ssd"}, "tolerations": [{"operator": "Exists"}]})).await;
    cluster
        .unschedulable(
            "wants-ssd",
            "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling.",
        )
        .await;

    // Freeing cpu on node-1 lets the pod that needed it in.
    cluster.pods().delete("busy", &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    assert_eq!(cluster.bound("needs-cpu").await, "node-1");
    // A node that fits appears: the waiting pod is bound to it (and the
    // pod too big for every node was tried again, and says so).
    cluster.node("node-ssd", "1", json!({"disk": "ssd"}), json!([])).await;
    assert_eq!(cluster.bound("wants-ssd").await, "node-ssd");
    cluster
        .unschedulable(
            "too-big",
            "0/5 nodes are available: 1 node(s) had untolerated taint {team: }, 4 Insufficient cpu. \
             preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling.",
        )
        .await;
}

#[tokio::test]
async fn affinity_taints_ports_and_anti_affinity_each_decide() {
    let mut cluster = Cluster::start().await;
    cluster.node("node-a", "8", json!({"zone": "a", "cores": "8"}), json!([])).await;
    cluster.node("node-b", "8", json!({"zone": "b", "cores": "16"}), json!([])).await;
    cluster.node("node-c", "8", json!({"zone": "c", "cores": "2"}), json!([{"key": "special", "value": "true", "effect": "NoExecute"}])).await;
    cluster.start_scheduler();

    // Required node affinity: In and Gt in one term, and a term by name.
    let affinity = |terms: Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}});
    cluster
        .pod(
            "by-expression",
            "100m",
            affinity(json!([{"matchExpressions": [
        {"key": "zone", "operator": "NotIn", "values": ["c"]}, {"key": "cores", "operator": "Gt", "values": ["8"]}]}])),
        )
        .await;
    assert_eq!(cluster.bound("by-expression").await, "node-b");
    cluster.pod("by-name", "100m", affinity(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]))).await;
    assert_eq!(cluster.bound("by-name").await, "node-a");
    cluster
        .pod(
            "lt-and-exists",
            "100m",
            affinity(json!([{"matchExpressions": [
        {"key": "cores", "operator": "Lt", "values": ["4"]}, {"key": "zone", "operator": "Exists"}]}])),
        )
        .await;
    cluster
        .unschedulable(
            "lt-and-exists",
            "0/3 nodes are available: 1 node(s) had untolerated taint {special: true}, 2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
        )
        .await;

    // A toleration of the NoExecute taint lets a pod onto node-c.
    cluster
        .pod(
            "tolerates",
            "100m",
            json!({"nodeSelector": {"zone": "c"}, "tolerations": [{"key": "special", "operator": "Equal", "value": "true", "effect": "NoExecute"}]}),
        )
        .await;
    assert_eq!(cluster.bound("tolerates").await, "node-c");

    // Host ports: one pod per node (the taint tolerated), then none fits.
    let port = json!({"tolerations": [{"operator": "Exists"}],
        "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..3 {
        cluster.pod(&format!("port-{i}"), "100m", port.clone()).await;
        nodes.insert(cluster.bound(&format!("port-{i}")).await);
    }
    assert_eq!(nodes.len(), 3, "each pod with host port 8080 on its own node: {nodes:?}");
    cluster.pod("port-3", "100m", port.clone()).await;
    cluster
        .unschedulable(
            "port-3",
            "0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports. \
             preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
        )
        .await;

    // Required anti-affinity on the hostname: one db pod per node.
    let db = json!({"tolerations": [{"operator": "Exists"}], "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "db"}}}]}}});
    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..4 {
        cluster.pod_with(&format!("db-{i}"), "100m", json!({"labels": {"app": "db"}}), db.clone()).await;
        if i < 3 {
            nodes.insert(cluster.bound(&format!("db-{i}")).await);
        }
    }
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    cluster
        .unschedulable(
            "db-3",
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
             preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
        )
        .await;
}

/// Places the same pods on the same nodes in a fresh cluster; returns
/// where each went.
async fn placement() -> BTreeMap<String, String> {
    let mut cluster = Cluster::start().await;
    for (name, cpu) in [("node-1", "2"), ("node-2", "4"), ("node-3", "8")] {
        cluster.node(name, cpu, json!({}), json!([])).await;
    }
    cluster.start_scheduler();
    let requests = ["100m", "1", "500m", "2", "250m", "1500m", "100m", "3", "700m", "1"];
    for (i, cpu) in requests.iter().enumerate() {
        cluster.pod(&format!("p-{i}"), cpu, json!({})).await;
        // One at a time, so both clusters see the same state at each decision.
        cluster.bound(&format!("p-{i}")).await;
    }
    let mut placed = BTreeMap::new();
    for i in 0..requests.len() {
        placed.insert(format!("p-{i}"), cluster.bound(&format!("p-{i}")).await);
    }
    placed
}

#[tokio::test]
async fn the_same_state_gives_the_same_placement() {
    let first = placement().await;
    let second = placement().await;
    assert_eq!(first, second);
    // Not all on one node: the scores weigh what is free.
    let used: std::collections::BTreeSet<&String> = first.values().collect();
    assert!(used.len() > 1, "{first:?}");
}
