//! autoscaling/v1 beside the stored autoscaling/v2 HorizontalPodAutoscalers
//! (one object, converted on every read, write, list and watch), the
//! horizontal-pod-autoscaler controller with no metrics pipeline, and the
//! computed apiregistration.k8s.io APIServices, through raw requests, the
//! kube-rs client and the real kubectl.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kubelab_scenarios::apiserver::TestApi;
use kubelab_scenarios::kubectl::table as normalize;
use kubelab_scenarios::wait::until;
use serde_json::{json, Value};

const V1: &str = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";
const V2: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

async fn get(api: &TestApi, path: &str) -> Value {
    let (code, obj) = api.raw("GET", path, "application/json", vec![]).await;
    assert_eq!(code, 200, "GET {path}: {obj}");
    obj
}

fn v1_hpa(name: &str, target: &str, min: i64, cpu: i64) -> Value {
    json!({
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}, "minReplicas": min, "maxReplicas": 5,
            "targetCPUUtilizationPercentage": cpu},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_autoscaler_read_and_written_through_both_versions() {
    let api = TestApi::start();

    // Created through v1 with a CPU target: stored as v2's CPU metric.
    let (code, created) = api.raw("POST", V1, "application/json", body(&v1_hpa("cpu", "web", 1, 50))).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["apiVersion"], "autoscaling/v1");
    assert_eq!(created["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(created["status"], json!({"currentReplicas": 0, "desiredReplicas": 0}), "v1's status fields Go always writes");
    let as_v2 = get(&api, &format!("{V2}/cpu")).await;
    assert_eq!(as_v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        as_v2["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}])
    );
    assert_eq!(as_v2["metadata"]["uid"], created["metadata"]["uid"], "one object");
    let back = get(&api, &format!("{V1}/cpu")).await;
    assert_eq!(back["spec"], created["spec"]);
    assert!(back["metadata"].get("annotations").is_none(), "a CPU target needs no annotation: {back}");

    // A v2 memory metric v1 has no field for: read through v1 it rides in
    // upstream's annotation, and written back through v1 it is unchanged.
    let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}});
    let v2 = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "memory"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 4,
            "metrics": [memory],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}}},
    });
    let (code, stored) = api.raw("POST", V2, "application/json", body(&v2)).await;
    assert_eq!(code, 201, "{stored}");
    let mut through_v1 = get(&api, &format!("{V1}/memory")).await;
    assert!(through_v1["spec"].get("targetCPUUtilizationPercentage").is_none(), "{through_v1}");
    let annotation: Value = serde_json::from_str(through_v1["metadata"]["annotations"][METRICS_ANNOTATION].as_str().unwrap()).unwrap();
    assert_eq!(annotation, json!([{"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}]));
    through_v1["metadata"]["labels"] = json!({"touched": "through-v1"});
    let (code, replaced) = api.raw("PUT", &format!("{V1}/memory"), "application/json", body(&through_v1)).await;
    assert_eq!(code, 200, "{replaced}");
    let after = get(&api, &format!("{V2}/memory")).await;
    assert_eq!(after["spec"], stored["spec"], "nothing lost through v1");
    assert_eq!(after["metadata"]["labels"], json!({"touched": "through-v1"}));
    assert!(after["metadata"].get("annotations").is_none(), "the round-trip annotation is not stored: {after}");

    // A merge patch through v1 lands on the stored object.
    let (code, patched) =
        api.raw("PATCH", &format!("{V1}/cpu"), "application/merge-patch+json", body(&json!({"spec": {"targetCPUUtilizationPercentage": 70}}))).await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(get(&api, &format!("{V2}/cpu")).await["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 70);

    // Lists through either version show every object in that version.
    let list = get(&api, V1).await;
    assert_eq!(list["kind"], "HorizontalPodAutoscalerList");
    assert_eq!(list["apiVersion"], "autoscaling/v1");
    let versions: Vec<&str> = list["items"].as_array().unwrap().iter().map(|i| i["apiVersion"].as_str().unwrap()).collect();
    assert_eq!(versions, ["autoscaling/v1", "autoscaling/v1"]);
    let uncached = get(&api, &format!("{V1}?limit=1")).await;
    assert_eq!(uncached["items"][0]["apiVersion"], "autoscaling/v1");
    assert!(uncached["items"][0]["spec"].get("targetCPUUtilizationPercentage").is_some());

    // A watch through v1 from that list's version sees the next change
    // (made through v2) as a v1 object.
    let from = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let (code, _) = api.raw("PATCH", &format!("{V2}/cpu"), "application/merge-patch+json", body(&json!({"spec": {"maxReplicas": 9}}))).await;
    assert_eq!(code, 200);
    let lines = api.watch_lines(&format!("{V1}?watch=true&resourceVersion={from}"), 1, Duration::from_secs(10)).await;
    assert_eq!(lines.len(), 1, "one event: {lines:?}");
    assert_eq!(lines[0]["type"], "MODIFIED");
    assert_eq!(lines[0]["object"]["apiVersion"], "autoscaling/v1");
    assert_eq!(lines[0]["object"]["spec"]["maxReplicas"], 9);
    assert_eq!(lines[0]["object"]["spec"]["targetCPUUtilizationPercentage"], 70);
    // And a watch from the start lists both, converted.
    let initial = api.watch_lines(&format!("{V1}?watch=true"), 2, Duration::from_secs(10)).await;
    assert!(initial.iter().all(|l| l["type"] == "ADDED" && l["object"]["apiVersion"] == "autoscaling/v1"), "{initial:?}");
    assert_eq!(initial.len(), 2);

    // A v1 manifest through the real kubectl, and its table.
    let manifest = "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: from-kubectl\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: web\n  maxReplicas: 3\n  targetCPUUtilizationPercentage: 40\n";
    api.kubectl_stdin(&["apply", "-f", "-"], manifest).succeeded();
    let shown = normalize(&api.kubectl(&["get", "hpa", "from-kubectl", "memory"]).succeeded());
    assert_eq!(
        shown,
        "NAME  REFERENCE  TARGETS  MINPODS  MAXPODS  REPLICAS  AGE\n\
         from-kubectl  Deployment/web  cpu: <unknown>/40%  1  3  0  <age>\n\
         memory  Deployment/web  memory: <unknown>/100Mi  2  4  0  <age>"
    );
    let v1_view = api
        .kubectl(&["get", "horizontalpodautoscalers.v1.autoscaling", "from-kubectl", "-o", "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage}"])
        .succeeded();
    assert_eq!(v1_view, "autoscaling/v1 40");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_openapi_and_apiservices_list_both_versions() {
    let api = TestApi::start();
    let versions = api.kubectl(&["api-versions"]).succeeded();
    for wanted in ["autoscaling/v1", "autoscaling/v2", "apiregistration.k8s.io/v1"] {
        assert!(versions.lines().any(|l| l == wanted), "{wanted} in api-versions: {versions}");
    }
    let group = get(&api, "/apis/autoscaling").await;
    assert_eq!(group["preferredVersion"]["version"], "v2");
    let index = get(&api, "/openapi/v3").await;
    for path in ["apis/autoscaling/v1", "apis/autoscaling/v2", "apis/apiregistration.k8s.io/v1"] {
        assert!(index["paths"].get(path).is_some(), "{path} in /openapi/v3");
    }

    // One APIService per served group-version, Local and Available.
    let shown = normalize(&api.kubectl(&["get", "apiservices"]).succeeded());
    let mut lines = shown.lines();
    assert_eq!(lines.next(), Some("NAME  SERVICE  AVAILABLE  AGE"));
    let rows: Vec<&str> = lines.collect();
    for name in ["v1.", "v1.apps", "v1.autoscaling", "v2.autoscaling", "v1.rbac.authorization.k8s.io"] {
        assert!(rows.contains(&format!("{name}  Local  True  <age>").as_str()), "{name} in {shown}");
    }
    let v2 = get(&api, "/apis/apiregistration.k8s.io/v1/apiservices/v2.autoscaling").await;
    assert_eq!(v2["spec"], json!({"group": "autoscaling", "version": "v2", "groupPriorityMinimum": 17500, "versionPriority": 30}));
    assert_eq!(v2["status"]["conditions"][0]["message"], "Local APIServices are always available");
    let (code, missing) = api.raw("GET", "/apis/apiregistration.k8s.io/v1/apiservices/v1.nothing", "application/json", vec![]).await;
    assert_eq!((code, missing["reason"].as_str()), (404, Some("NotFound")));
    let watched = api.watch_lines("/apis/apiregistration.k8s.io/v1/apiservices?watch=true", 2, Duration::from_secs(10)).await;
    assert_eq!(watched.len(), 2, "{watched:?}");
    assert!(watched.iter().all(|l| l["type"] == "ADDED" && l["object"]["kind"] == "APIService"));

    // Written, they are refused: there is no aggregation layer.
    let refused = api.kubectl(&["delete", "apiservice", "v1.apps"]).failed();
    assert!(refused.contains("kubelab has no aggregation layer"), "{refused}");
    let (code, status) =
        api.raw("POST", "/apis/apiregistration.k8s.io/v1/apiservices", "application/json", body(&json!({"metadata": {"name": "v1.x.io"}}))).await;
    assert_eq!((code, status["reason"].as_str()), (405, Some("MethodNotAllowed")), "{status}");
}

/// The conditions of the HPA as `type=status/reason` strings.
fn conditions(hpa: &HorizontalPodAutoscaler) -> Vec<String> {
    let conditions = hpa.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conditions.iter().map(|c| format!("{}={}/{}", c.type_, c.status, c.reason.clone().unwrap_or_default())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_below_min_replicas_is_scaled_up_and_metrics_are_said_missing() {
    let api = TestApi::start();
    let client = api.client().await;
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
    }))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&Default::default(), &deployment).await.unwrap();
    let (code, created) = api.raw("POST", V1, "application/json", body(&v1_hpa("web", "web", 3, 50))).await;
    assert_eq!(code, 201, "{created}");
    let _controller = api.controller_manager_with(&["horizontalpodautoscaling"], controller_manager::Settings::default());

    until("the Deployment scaled to minReplicas", || async {
        let replicas = deployments.get("web").await.unwrap().spec.and_then(|s| s.replicas);
        (replicas == Some(3)).then_some(()).ok_or(format!("spec.replicas is {replicas:?}"))
    })
    .await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let hpa = until("the HPA saying no metric could be had", || async {
        let hpa = hpas.get("web").await.unwrap();
        let shown = conditions(&hpa);
        let wanted = ["AbleToScale=True/SucceededGetScale", "ScalingActive=False/FailedGetResourceMetric"];
        (shown == wanted).then_some(hpa).ok_or(format!("conditions: {shown:?}"))
    })
    .await;
    let status = hpa.status.unwrap();
    assert_eq!((status.current_replicas, status.desired_replicas), (Some(3), 3));
    let no_metrics = "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)";
    let active = status.conditions.unwrap().into_iter().find(|c| c.type_ == "ScalingActive").unwrap();
    assert_eq!(active.message.unwrap(), format!("the HPA was unable to compute the replica count: {no_metrics}"));
    assert!(status.last_scale_time.is_some());

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let wanted = [
        ("Normal", "SuccessfulRescale", "New size: 3; reason: Current number of replicas below Spec.MinReplicas".to_string()),
        ("Warning", "FailedGetResourceMetric", no_metrics.to_string()),
        (
            "Warning",
            "FailedComputeMetricsReplicas",
            format!("invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: {no_metrics}"),
        ),
    ];
    until("the HPA's events", || async {
        let listed = events.list(&ListParams::default().fields("involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name=web")).await.unwrap().items;
        let seen: Vec<(String, String, String)> =
            listed.iter().map(|e| (e.type_.clone().unwrap_or_default(), e.reason.clone().unwrap_or_default(), e.message.clone().unwrap_or_default())).collect();
        let missing: Vec<_> = wanted.iter().filter(|(t, r, m)| !seen.iter().any(|s| s.0 == *t && s.1 == *r && s.2 == *m)).collect();
        missing.is_empty().then_some(()).ok_or(format!("missing {missing:?} among {seen:?}"))
    })
    .await;

    // Through v1 the conditions ride in upstream's annotation.
    let v1 = get(&api, &format!("{V1}/web")).await;
    let annotation = v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/conditions"].as_str().unwrap_or("");
    assert!(annotation.contains("FailedGetResourceMetric"), "{v1}");
    assert_eq!(v1["status"]["currentReplicas"], 3);
    let shown = normalize(&api.kubectl(&["get", "hpa", "web"]).succeeded());
    assert_eq!(shown, "NAME  REFERENCE  TARGETS  MINPODS  MAXPODS  REPLICAS  AGE\nweb  Deployment/web  cpu: <unknown>/50%  3  5  3  <age>");
}
