//! What a careless or hostile client cannot do to the apiserver: patches
//! whose result is no object, subresource bodies of the wrong type, and
//! updates of what upstream keeps immutable. Each refusal is upstream's
//! code and words, and nothing is written.

use kubelab_scenarios::apiserver::TestApi;
use serde_json::{json, Value};

const MERGE: &str = "application/merge-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

/// The first cause's `field: message` line of a refusal.
fn first_cause(status: &Value) -> String {
    let cause = &status["details"]["causes"][0];
    format!("{}: {}", cause["field"].as_str().unwrap_or(""), cause["message"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn patches_that_leave_no_object_are_refused_and_change_nothing() {
    let api = TestApi::start();
    let path = "/api/v1/namespaces/default/configmaps/cm";
    let (status, _) = api
        .raw(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            body(json!({"metadata": {"name": "cm", "labels": {"keep": "me"}}, "data": {"k": "v"}})),
        )
        .await;
    assert_eq!(status, 201);

    // (content type, patch body, code, reason): every one used to panic the
    // request's task or, for {"metadata":5}, drop the labels and answer 200.
    let cases: &[(&str, &str, u16, &str)] = &[
        (MERGE, "1", 400, "BadRequest"),
        (MERGE, "[]", 422, "Invalid"),
        (MERGE, r#"{"metadata":5}"#, 422, "Invalid"),
        (MERGE, r#"{"data":{"k":5}}"#, 422, "Invalid"),
        (STRATEGIC, "[]", 400, "BadRequest"),
        (STRATEGIC, "1", 400, "BadRequest"),
        (STRATEGIC, r#"{"metadata":"x"}"#, 422, "Invalid"),
        (JSON_PATCH, r#"[{"op":"replace","path":"","value":1}]"#, 422, "Invalid"),
        (JSON_PATCH, r#"[{"op":"replace","path":"/metadata","value":[]}]"#, 422, "Invalid"),
    ];
    for (content_type, patch, code, reason) in cases {
        let (status, refusal) = api.raw("PATCH", path, content_type, patch.as_bytes().to_vec()).await;
        assert_eq!((status, refusal["reason"].as_str()), (*code, Some(*reason)), "{content_type} {patch}: {refusal}");
        assert_eq!(refusal["kind"], "Status", "{refusal}");
        if *code == 422 {
            assert!(first_cause(&refusal).starts_with("patch: Invalid value: "), "{refusal}");
        }
    }
    // The same goes for the status subresource of a pod.
    create(&api, "/api/v1/namespaces/default/pods", json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).await;
    let (status, refusal) = api.raw("PATCH", "/api/v1/namespaces/default/pods/p/status", MERGE, br#"{"status":5}"#.to_vec()).await;
    assert_eq!(status, 422, "{refusal}");

    let (status, cm) = api.raw("GET", path, "", vec![]).await;
    assert_eq!(status, 200);
    assert_eq!(cm["metadata"]["labels"], json!({"keep": "me"}));
    assert_eq!(cm["data"], json!({"k": "v"}));
}

#[tokio::test]
async fn subresource_bodies_get_the_type_checks_of_their_kind() {
    let api = TestApi::start();
    let (status, _) = api.raw("POST", "/api/v1/namespaces", "application/json", body(json!({"metadata": {"name": "doomed"}}))).await;
    assert_eq!(status, 201);
    let (status, _) = api.raw("DELETE", "/api/v1/namespaces/doomed", "", vec![]).await;
    assert_eq!(status, 200);

    // A finalizers value that is no list used to delete the namespace.
    let finalize = "/api/v1/namespaces/doomed/finalize";
    let (status, refusal) =
        api.raw("PUT", finalize, "application/json", body(json!({"metadata": {"name": "doomed"}, "spec": {"finalizers": "kubernetes"}}))).await;
    assert_eq!(status, 400, "{refusal}");
    assert!(refusal["message"].as_str().unwrap().contains("spec.finalizers"), "{refusal}");
    let (status, refusal) =
        api.raw("PUT", finalize, "application/json", body(json!({"metadata": {"name": "doomed"}, "spec": {"finalizers": ["cleanup"]}}))).await;
    assert_eq!(status, 422, "{refusal}");
    assert_eq!(first_cause(&refusal), r#"spec.finalizers[0]: Invalid value: "cleanup": name is neither a standard finalizer name nor is it fully qualified"#);
    let (status, ns) = api.raw("GET", "/api/v1/namespaces/doomed", "", vec![]).await;
    assert_eq!((status, &ns["spec"]["finalizers"]), (200, &json!(["kubernetes"])), "{ns}");
    // A main-resource update does not touch spec.finalizers either.
    let (status, ns) =
        api.raw("PUT", "/api/v1/namespaces/doomed", "application/json", body(json!({"metadata": {"name": "doomed"}, "spec": {"finalizers": []}}))).await;
    assert_eq!((status, &ns["spec"]["finalizers"]), (200, &json!(["kubernetes"])), "{ns}");
    let (status, _) = api.raw("PUT", finalize, "application/json", body(json!({"metadata": {"name": "doomed"}, "spec": {"finalizers": []}}))).await;
    assert_eq!(status, 200);
    let (status, _) = api.raw("GET", "/api/v1/namespaces/doomed", "", vec![]).await;
    assert_eq!(status, 404);

    // Scale and Binding bodies decode as their own kinds.
    let deployment = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let (status, _) = api.raw("POST", "/apis/apps/v1/namespaces/default/deployments", "application/json", body(deployment)).await;
    assert_eq!(status, 201);
    let scale = "/apis/apps/v1/namespaces/default/deployments/d/scale";
    let (status, refusal) = api
        .raw(
            "PUT",
            scale,
            "application/json",
            body(json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "d"}, "spec": {"replicas": "3"}})),
        )
        .await;
    assert_eq!(status, 400, "{refusal}");
    let (status, refusal) = api.raw("PATCH", scale, MERGE, br#"{"spec":{"replicas":[]}}"#.to_vec()).await;
    assert_eq!(status, 422, "{refusal}");
    create(&api, "/api/v1/namespaces/default/pods", json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).await;
    let binding = "/api/v1/namespaces/default/pods/p/binding";
    let (status, refusal) = api
        .raw("POST", binding, "application/json", body(json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"name": ["n1"]}})))
        .await;
    assert_eq!(status, 400, "{refusal}");
    let (status, pod) = api.raw("GET", "/api/v1/namespaces/default/pods/p", "", vec![]).await;
    assert_eq!((status, pod["spec"].get("nodeName")), (200, None));
}

/// PUTs `change(current)` to `path`: the status and the answer.
async fn update(api: &TestApi, path: &str, change: impl FnOnce(&mut Value)) -> (u16, Value) {
    let (status, mut current) = api.raw("GET", path, "", vec![]).await;
    assert_eq!(status, 200, "{path}: {current}");
    change(&mut current);
    api.raw("PUT", path, "application/json", body(current)).await
}

async fn create(api: &TestApi, collection: &str, obj: Value) {
    let (status, answer) = api.raw("POST", collection, "application/json", body(obj)).await;
    assert_eq!(status, 201, "{collection}: {answer}");
}

#[tokio::test]
async fn updates_keep_what_upstream_keeps_immutable() {
    let api = TestApi::start();

    // Pods: only images, deadlines and added tolerations change; the node
    // is set through binding alone.
    create(&api, "/api/v1/namespaces/default/pods", json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})).await;
    let pod = "/api/v1/namespaces/default/pods/p";
    let (status, refusal) = update(&api, pod, |p| p["spec"]["nodeName"] = json!("n2")).await;
    assert_eq!(status, 422, "{refusal}");
    let line = first_cause(&refusal);
    assert!(line.starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{line}");
    assert!(line.contains(r#"spec.nodeName: <unset> -> "n2""#), "{line}");
    let (status, refusal) = update(&api, pod, |p| p["spec"]["containers"][0]["command"] = json!(["sh"])).await;
    assert_eq!(status, 422, "{refusal}");
    let (status, refusal) = update(&api, pod, |p| p["metadata"]["uid"] = json!("another")).await;
    assert_eq!((status, first_cause(&refusal)), (422, r#"metadata.uid: Invalid value: "another": field is immutable"#.to_string()));
    let (status, changed) = update(&api, pod, |p| {
        p["spec"]["containers"][0]["image"] = json!("busybox:2");
        p["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        p["spec"]["activeDeadlineSeconds"] = json!(60);
        p["metadata"]["labels"] = json!({"tier": "web"});
    })
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["spec"]["containers"][0]["image"], "busybox:2");
    let (status, refusal) = update(&api, pod, |p| p["spec"]["tolerations"] = json!([])).await;
    assert_eq!(status, 422, "{refusal}");

    // apps/v1 workloads keep their selector.
    for plural in ["deployments", "replicasets", "daemonsets"] {
        let obj = json!({"metadata": {"name": "w"}, "spec": {"selector": {"matchLabels": {"app": "w"}},
            "template": {"metadata": {"labels": {"app": "w", "v": "1"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        create(&api, &format!("/apis/apps/v1/namespaces/default/{plural}"), obj).await;
        let path = format!("/apis/apps/v1/namespaces/default/{plural}/w");
        let (status, refusal) = update(&api, &path, |w| w["spec"]["selector"] = json!({"matchLabels": {"app": "w", "v": "1"}})).await;
        assert_eq!(status, 422, "{plural}: {refusal}");
        assert_eq!(first_cause(&refusal), r#"spec.selector: Invalid value: {"matchLabels":{"app":"w","v":"1"}}: field is immutable"#, "{plural}");
        let (status, _) = update(&api, &path, |w| w["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j")).await;
        assert_eq!(status, 200, "{plural}: the template still changes");
    }

    // Immutable ConfigMaps and Secrets keep their data; a Secret its type.
    create(&api, "/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "frozen"}, "immutable": true, "data": {"k": "v"}})).await;
    let cm = "/api/v1/namespaces/default/configmaps/frozen";
    let (status, refusal) = update(&api, cm, |c| c["data"]["k"] = json!("changed")).await;
    assert_eq!((status, first_cause(&refusal)), (422, "data: Forbidden: field is immutable when `immutable` is set".to_string()));
    let (status, refusal) = update(&api, cm, |c| c["immutable"] = json!(false)).await;
    assert_eq!((status, first_cause(&refusal)), (422, "immutable: Forbidden: field is immutable when `immutable` is set".to_string()));
    let (status, _) = update(&api, cm, |c| c["metadata"]["labels"] = json!({"still": "labelled"})).await;
    assert_eq!(status, 200, "metadata of an immutable ConfigMap changes");
    create(&api, "/api/v1/namespaces/default/secrets", json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}})).await;
    let secret = "/api/v1/namespaces/default/secrets/s";
    let (_, stored) = api.raw("GET", secret, "", vec![]).await;
    assert_eq!(stored["data"], json!({"password": "aHVudGVyMg=="}), "stringData is stored as data");
    assert_eq!(stored.get("stringData"), None);
    let (status, refusal) = update(&api, secret, |s| s["type"] = json!("kubernetes.io/tls")).await;
    assert_eq!((status, first_cause(&refusal)), (422, r#"type: Invalid value: "kubernetes.io/tls": field is immutable"#.to_string()));

    // A Node's podCIDR is set once.
    create(&api, "/api/v1/nodes", json!({"metadata": {"name": "n1"}})).await;
    let node = "/api/v1/nodes/n1";
    let (status, _) = update(&api, node, |n| n["spec"] = json!({"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]})).await;
    assert_eq!(status, 200);
    let (status, refusal) = update(&api, node, |n| n["spec"] = json!({"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]})).await;
    assert_eq!(
        (status, first_cause(&refusal)),
        (422, r#"spec.podCIDRs[0]: Forbidden: node updates may not change podCIDR except from "" to valid"#.to_string())
    );

    // A Service keeps its ClusterIP; leaving NodePort frees its node port.
    create(&api, "/api/v1/namespaces/default/services", json!({"metadata": {"name": "svc"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})).await;
    let svc = "/api/v1/namespaces/default/services/svc";
    let (status, refusal) = update(&api, svc, |s| {
        s["spec"]["clusterIP"] = json!("10.96.200.200");
        s["spec"]["clusterIPs"] = json!(["10.96.200.200"]);
    })
    .await;
    assert_eq!(status, 422, "{refusal}");
    let (status, changed) = update(&api, svc, |s| s["spec"]["type"] = json!("ClusterIP")).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["spec"]["ports"][0].get("nodePort"), None, "{changed}");
}
