//! The endpoints and endpointslice controllers against the real
//! apiserver: a Service's pods become its Endpoints (ready and not-ready
//! addresses apart, named target ports resolved per pod) and its
//! EndpointSlices; changes follow pods; the `kubernetes` Service is left
//! to the apiserver. Pod addresses and readiness are set by the test, as
//! their kubelet would.

use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kubelab_scenarios::apiserver::TestApi;
use kubelab_scenarios::wait::until;

const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, labels: {tier: front}}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
---
apiVersion: v1
kind: Pod
metadata: {name: web-a, labels: {app: web}}
spec:
  nodeName: worker-1
  containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-b, labels: {app: web}}
spec:
  nodeName: worker-2
  containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 8081}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-c, labels: {app: web}}
spec:
  nodeName: worker-3
  containers: [{name: c, image: nginx}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-pending, labels: {app: web}}
spec:
  containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  nodeName: worker-1
  containers: [{name: c, image: postgres}]
"#;

/// Sets what a kubelet reports: the pod's address and readiness.
async fn report(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let ready = if ready { "True" } else { "False" };
    let patch = serde_json::json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

/// The subsets, with pod uids (new every run) replaced.
fn subsets(endpoints: &Endpoints) -> serde_json::Value {
    let text = serde_json::to_string(&endpoints.subsets).unwrap();
    let uid = regex::Regex::new(r#""uid":"[0-9a-f-]{36}""#).unwrap();
    serde_json::from_str(&uid.replace_all(&text, r#""uid":"<uid>""#)).unwrap()
}

fn slices_view(slices: &[EndpointSlice]) -> serde_json::Value {
    let mut rows: Vec<serde_json::Value> = slices
        .iter()
        .map(|s| {
            let labels = s.metadata.labels.clone().unwrap_or_default();
            serde_json::json!({
                "labels": labels,
                "owner": s.metadata.owner_references.as_ref().map(|o| format!("{}/{}", o[0].kind, o[0].name)),
                "ports": s.ports,
                "endpoints": s.endpoints.iter().map(|e| serde_json::json!({
                    "addresses": e.addresses, "conditions": e.conditions, "nodeName": e.node_name, "hostname": e.hostname,
                    "pod": e.target_ref.as_ref().and_then(|r| r.name.clone()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    rows.sort_by_key(|r| r["ports"].to_string());
    serde_json::Value::Array(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_endpoints_and_slices_from_their_pods() {
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(&["endpoint", "endpointslice", "garbagecollector"], Default::default());
    api.kubectl_stdin(&["apply", "-f", "-"], OBJECTS).succeeded();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    report(&pods, "web-a", "10.244.1.5", true).await;
    report(&pods, "web-b", "10.244.2.6", false).await;
    report(&pods, "web-c", "10.244.3.7", true).await;
    report(&pods, "db-0", "10.244.1.9", true).await;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");

    // web-c has no port named http: it serves only metrics, in a subset
    // of its own. web-pending has no address yet: not listed.
    let web = until("web's endpoints", || async {
        let e = endpoints.get_opt("web").await.unwrap().ok_or("no Endpoints")?;
        let addresses =
            e.subsets.iter().flatten().map(|s| s.addresses.iter().flatten().count() + s.not_ready_addresses.iter().flatten().count()).sum::<usize>();
        (addresses == 3).then_some(e).ok_or(format!("{addresses} addresses of 3"))
    })
    .await;
    insta::assert_yaml_snapshot!("web_endpoints", subsets(&web));
    assert_eq!(web.metadata.labels.as_ref().unwrap()["tier"], "front", "the Service's labels are copied");
    // The Endpoints may be written before db-0's address is: wait for it.
    let db = until("db's endpoints with db-0's address", || async {
        let e = endpoints.get_opt("db").await.unwrap().ok_or("no Endpoints")?;
        let addresses = e.subsets.iter().flatten().map(|s| s.addresses.iter().flatten().count()).sum::<usize>();
        (addresses == 1).then_some(e).ok_or(format!("{addresses} addresses of 1"))
    })
    .await;
    insta::assert_yaml_snapshot!("headless_endpoints", subsets(&db));
    assert_eq!(db.metadata.labels.as_ref().unwrap().get("service.kubernetes.io/headless").map(String::as_str), Some(""));

    let web_slices = until("web's slices", || async {
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap().items;
        let count: usize = list.iter().map(|s| s.endpoints.len()).sum();
        (count == 3).then_some(list).ok_or(format!("{count} endpoints of 3"))
    })
    .await;
    insta::assert_yaml_snapshot!("web_slices", slices_view(&web_slices));
    let printed = api.kubectl(&["get", "endpoints", "web", "db"]).succeeded();
    let columns = regex::Regex::new(r" {2,}").unwrap();
    let age = regex::Regex::new(r"\s+\S+$").unwrap();
    let printed: Vec<String> = printed.lines().map(|l| columns.replace_all(&age.replace(l, ""), "  ").into_owned()).collect();
    insta::assert_snapshot!("kubectl_get_endpoints", printed.join("\n"));

    // Readiness moves an address; a pod that stops matching leaves.
    report(&pods, "web-b", "10.244.2.6", true).await;
    pods.patch("web-a", &PatchParams::default(), &Patch::Merge(&serde_json::json!({"metadata": {"labels": {"app": "other"}}}))).await.unwrap();
    until("web-b ready and web-a gone", || async {
        let e = endpoints.get("web").await.unwrap();
        let ready: Vec<String> = e.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten().map(|a| a.ip.clone())).collect();
        let not_ready = e.subsets.iter().flatten().flat_map(|s| s.not_ready_addresses.iter().flatten()).count();
        let mut sorted = ready.clone();
        sorted.sort();
        sorted.dedup();
        (sorted == ["10.244.2.6", "10.244.3.7"] && not_ready == 0).then_some(()).ok_or(format!("ready {ready:?}, {not_ready} not ready"))
    })
    .await;
    until("web's slices follow", || async {
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap().items;
        let pods: Vec<String> = list.iter().flat_map(|s| s.endpoints.iter().filter_map(|e| e.target_ref.as_ref()?.name.clone())).collect();
        (!pods.contains(&"web-a".to_string()) && pods.len() == 2).then_some(()).ok_or(format!("{pods:?}"))
    })
    .await;

    // The apiserver's own Service (no selector) is not the controller's:
    // it writes no Endpoints for it (the apiserver's reconciler does, when
    // it advertises an address).
    if let Some(kubernetes) = endpoints.get_opt("kubernetes").await.unwrap() {
        assert_eq!(kubernetes.subsets.as_ref().unwrap()[0].ports.as_ref().unwrap()[0].name.as_deref(), Some("https"));
    }

    // Deleting the Service removes its Endpoints and (through the garbage
    // collector, following their owner reference) its slices.
    api.kubectl(&["delete", "service", "web"]).succeeded();
    until("web's endpoints and slices removed", || async {
        let e = endpoints.get_opt("web").await.unwrap();
        let s = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap().items.len();
        (e.is_none() && s == 0).then_some(()).ok_or(format!("endpoints present: {}, {s} slices", e.is_some()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_pods_has_empty_endpoints_and_a_placeholder_slice() {
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(&["endpoint", "endpointslice"], Default::default());
    api.kubectl(&["create", "service", "clusterip", "lonely", "--tcp=80:8080"]).succeeded();
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let e = until("lonely's endpoints", || async { endpoints.get_opt("lonely").await.unwrap().ok_or("no Endpoints".to_string()) }).await;
    assert!(e.subsets.is_none(), "{:?}", e.subsets);
    let list = until("lonely's slice", || async {
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=lonely")).await.unwrap().items;
        (list.len() == 1).then_some(list).ok_or("no slice".to_string())
    })
    .await;
    assert!(list[0].endpoints.is_empty() && list[0].ports.is_none());
}
