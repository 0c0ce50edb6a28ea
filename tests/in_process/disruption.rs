//! PodDisruptionBudgets end to end: the disruption controller keeps a
//! budget's status, pods/eviction grants or refuses evictions from it with
//! upstream's answers, and the real `kubectl drain` empties a node within
//! the budget. Pods are made Running and Ready by the kubelet stand-in
//! (`pods_ready`); stopping it keeps replacements unready. The test
//! support's clients do not retry a 429 (kube's do by default, for
//! minutes): a refused eviction comes back to the test at once.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use kubelab_scenarios::apiserver::TestApi;
use kubelab_scenarios::fake_kubelet::Which;
use kubelab_scenarios::wait::{holds_for, until, until_within};
use serde_json::{json, Value};

const VIOLATES: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// POSTs a policy/v1 Eviction of `pod` in `default`: the code and body.
async fn evict(api: &TestApi, pod: &str) -> (u16, Value) {
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "default"}});
    api.raw("POST", &format!("/api/v1/namespaces/default/pods/{pod}/eviction"), "application/json", body.to_string().into_bytes()).await
}

async fn budget(client: &kube::Client, name: &str) -> PodDisruptionBudget {
    Api::<PodDisruptionBudget>::namespaced(client.clone(), "default").get(name).await.unwrap()
}

/// The budget's status numbers once the controller has read its latest
/// spec: (expected, desired healthy, current healthy, allowed).
async fn numbers(client: &kube::Client, name: &str) -> Result<(i32, i32, i32, i32), String> {
    let b = budget(client, name).await;
    let s = b.status.clone().unwrap_or_default();
    if s.observed_generation != b.metadata.generation {
        return Err(format!("generation {:?} not yet observed: {s:?}", b.metadata.generation));
    }
    Ok((s.expected_pods, s.desired_healthy, s.current_healthy, s.disruptions_allowed))
}

async fn pods_labelled(client: &kube::Client, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default").list(&ListParams::default().labels(selector)).await.unwrap().items
}

fn ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn ready_pods(client: &kube::Client, selector: &str, count: usize) -> Result<Vec<Pod>, String> {
    let pods = pods_labelled(client, selector).await;
    let ready: Vec<Pod> = pods.iter().filter(|p| ready(p) && p.metadata.deletion_timestamp.is_none()).cloned().collect();
    if ready.len() == count && pods.len() == count {
        return Ok(ready);
    }
    Err(format!("{} pods, {} ready, want {count}", pods.len(), ready.len()))
}

async fn gone(client: &kube::Client, pod: &str) -> Result<(), String> {
    match Api::<Pod>::namespaced(client.clone(), "default").get_opt(pod).await.unwrap() {
        None => Ok(()),
        Some(p) => Err(format!("pod {pod} is still there: {:?}", p.metadata.deletion_timestamp)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_grants_one_eviction_then_refuses_until_the_replacement_is_ready() {
    let api = TestApi::start();
    let controllers = api.controller_manager_with(&["deployment", "replicaset", "disruption"], Default::default());
    let kubelets = api.pods_ready(Which::All);
    let client = api.client().await;
    api.kubectl(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=3"]).succeeded();
    api.kubectl(&["create", "pdb", "web", "--selector=app=web", "--min-available=2"]).succeeded();

    until("the budget allows one disruption", || async {
        let n = numbers(&client, "web").await?;
        (n == (3, 2, 3, 1)).then_some(()).ok_or(format!("(expected, desired, current, allowed) = {n:?}"))
    })
    .await;
    let b = budget(&client, "web").await;
    let condition = b.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "DisruptionAllowed")).cloned().unwrap();
    assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("True", "SufficientPods"));
    let table = kubelab_scenarios::kubectl::table(&api.kubectl(&["get", "pdb", "web"]).succeeded());
    assert_eq!(table, "NAME  MIN AVAILABLE  MAX UNAVAILABLE  ALLOWED DISRUPTIONS  AGE\nweb  2  N/A  1  <age>");

    // From here replacements stay unready.
    drop(kubelets);
    let pods = ready_pods(&client, "app=web", 3).await.unwrap();
    let (first, second) = (pods[0].name_any(), pods[1].name_any());
    let (code, body) = evict(&api, &first).await;
    assert_eq!((code, &body["kind"], &body["status"]), (201, &json!("Status"), &json!("Success")), "{body}");
    until("the evicted pod is gone", || gone(&client, &first)).await;
    until("the budget counts the unready replacement", || async {
        let n = numbers(&client, "web").await?;
        (n == (3, 2, 2, 0)).then_some(()).ok_or(format!("(expected, desired, current, allowed) = {n:?}"))
    })
    .await;

    let (code, body) = evict(&api, &second).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!((&body["reason"], &body["message"]), (&json!("TooManyRequests"), &json!(VIOLATES)));
    assert_eq!(
        body["details"]["causes"],
        json!([{"reason": "DisruptionBudget", "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}])
    );
    holds_for("evictions are refused while the replacement is unready", Duration::from_secs(2), || async {
        let (code, body) = evict(&api, &second).await;
        (code == 429).then_some(()).ok_or(format!("{code}: {body}"))
    })
    .await;

    // The replacement turns ready: one disruption is allowed again.
    let _kubelets = api.pods_ready(Which::All);
    until("the second eviction is granted", || async {
        let (code, body) = evict(&api, &second).await;
        (code == 201).then_some(()).ok_or(format!("{code}: {}", body["message"]))
    })
    .await;
    until("the second evicted pod is gone", || gone(&client, &second)).await;
    drop(controllers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_without_a_budget_delete_and_two_budgets_are_refused() {
    let api = TestApi::start();
    let _kubelets = api.pods_ready(Which::All);
    let client = api.client().await;

    // Discovery names the subresource as upstream does.
    let (_, core) = api.raw("GET", "/api/v1", "application/json", vec![]).await;
    let entry = core["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/eviction").cloned().unwrap();
    assert_eq!((&entry["kind"], &entry["group"], &entry["version"], &entry["verbs"]), (&json!("Eviction"), &json!("policy"), &json!("v1"), &json!(["create"])));

    for (name, labels) in [("solo", "app=solo"), ("db", "app=db,tier=data")] {
        api.kubectl(&["run", name, "--image=nginx:1.27", &format!("--labels={labels}")]).succeeded();
    }
    until("both pods are ready", || async {
        let pods = Api::<Pod>::namespaced(client.clone(), "default").list(&ListParams::default()).await.unwrap().items;
        (pods.iter().filter(|p| ready(p)).count() == 2).then_some(()).ok_or(format!("{} of {} ready", pods.iter().filter(|p| ready(p)).count(), pods.len()))
    })
    .await;

    let (code, body) = evict(&api, "nope").await;
    assert_eq!((code, &body["message"]), (404, &json!("pods \"nope\" not found")));
    let wrong = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}});
    let (code, body) = api.raw("POST", "/api/v1/namespaces/default/pods/solo/eviction", "application/json", wrong.to_string().into_bytes()).await;
    assert_eq!((code, &body["message"]), (400, &json!("name in URL does not match name in Eviction object")));

    // No budget: deleted at once.
    let (code, body) = evict(&api, "solo").await;
    assert_eq!((code, &body["status"]), (201, &json!("Success")), "{body}");
    until("the pod with no budget is gone", || gone(&client, "solo")).await;

    // Two budgets select the pod: refused, the pod stays.
    api.kubectl(&["create", "pdb", "by-app", "--selector=app=db", "--min-available=0"]).succeeded();
    api.kubectl(&["create", "pdb", "by-tier", "--selector=tier=data", "--max-unavailable=1"]).succeeded();
    let (code, body) = evict(&api, "db").await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        (&body["status"], &body["message"]),
        (&json!("Failure"), &json!("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."))
    );
    assert!(Api::<Pod>::namespaced(client.clone(), "default").get_opt("db").await.unwrap().is_some());
}

/// A Ready node with room for pods, as its kubelet would report it.
async fn node(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let resources = json!({"cpu": "8", "memory": "8Gi", "pods": "110"});
    let status = json!({"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}],
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 0
      containers: [{name: web, image: "nginx:1.27", volumeMounts: [{name: scratch, mountPath: /scratch}]}]
      volumes: [{name: scratch, emptyDir: {}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_cordons_and_evicts_within_the_budget() {
    let api = TestApi::start();
    let controllers = api.controller_manager_with(&["deployment", "replicaset", "disruption"], Default::default());
    let scheduler = api.scheduler();
    let _kubelets = api.pods_ready(Which::Bound);
    let client = api.client().await;
    node(&client, "n1").await;
    api.kubectl_stdin(&["apply", "-f", "-"], WEB).succeeded();
    api.kubectl(&["create", "pdb", "web", "--selector=app=web", "--min-available=2"]).succeeded();
    until("three ready pods on n1 and one disruption allowed", || async {
        let pods = ready_pods(&client, "app=web", 3).await?;
        let nodes: Vec<String> = pods.iter().filter_map(|p| p.spec.as_ref()?.node_name.clone()).collect();
        if nodes != ["n1", "n1", "n1"] {
            return Err(format!("nodes {nodes:?}"));
        }
        let n = numbers(&client, "web").await?;
        (n.3 == 1).then_some(()).ok_or(format!("(expected, desired, current, allowed) = {n:?}"))
    })
    .await;
    node(&client, "n2").await;

    let kubeconfig = api.kubeconfig.clone();
    let home = api.dir.path().to_path_buf();
    let args = ["drain", "n1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s"];
    // Off the test's runtime: drain takes a while (5 s between refused evictions).
    let out = tokio::task::spawn_blocking(move || {
        kubelab_scenarios::kubectl::run(&kubeconfig, &args, kubelab_scenarios::kubectl::Run { home: Some(&home), ..Default::default() })
    })
    .await
    .unwrap();
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, 0, "{text}");
    assert!(text.contains("node/n1 cordoned"), "{text}");
    assert!(text.contains("node/n1 drained"), "{text}");
    assert_eq!(text.matches(" evicted").count(), 3, "{text}");
    // The budget held the second and third evictions back until replacements were ready.
    assert!(text.contains(&format!("(will retry after 5s): {VIOLATES}")), "{text}");

    let n1: Node = Api::all(client.clone()).get("n1").await.unwrap();
    assert_eq!(n1.spec.and_then(|s| s.unschedulable), Some(true));
    let pods = until_within("the pods run on n2", Duration::from_secs(60), || ready_pods(&client, "app=web", 3)).await;
    for pod in pods {
        assert_eq!(pod.spec.and_then(|s| s.node_name).as_deref(), Some("n2"));
    }
    drop(scheduler);
    drop(controllers);
}
