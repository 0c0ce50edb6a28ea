//! Serialization as Go writes it (issue 13): one object of every served
//! kind, created with only what validation needs, is read back through
//! k8s-openapi's typed structs and the Python client's models. Every field
//! a typed struct always writes (its required ones) must be in what the
//! apiserver sent, and the Python models, which refuse a required field
//! that is missing, must read every object.

use apiserver::resources::{Resource, RESOURCES};
use kubelab_scenarios::apiserver::TestApi;
use serde_json::{json, Value};

/// A template every workload sample shares.
fn template() -> Value {
    json!({"metadata": {"labels": {"app": "zero"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

/// What validation needs of each kind, by "apiVersion kind"; a row without
/// one is created with a name alone. Samples of kinds not served yet wait
/// for their rows.
fn sample(api_version: &str, kind: &str) -> Value {
    let selector = json!({"matchLabels": {"app": "zero"}});
    let job_template = json!({"metadata": {"labels": {"app": "zero"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
    let rule = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
    let subjects = json!([{"kind": "User", "name": "zero", "apiGroup": "rbac.authorization.k8s.io"}]);
    let hpa = json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "zero"}, "maxReplicas": 3});
    match (api_version, kind) {
        ("v1", "Pod") => json!({"spec": template()["spec"]}),
        ("v1", "Service") => json!({"spec": {"ports": [{"port": 80}]}}),
        ("v1", "Endpoints") => json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
        ("v1", "Event") => json!({"involvedObject": {"kind": "Pod", "name": "zero", "namespace": "default"}, "reason": "Zero", "message": "zero"}),
        ("v1", "ReplicationController") => json!({"spec": {"selector": {"app": "zero"}, "template": template()}}),
        ("v1", "PersistentVolume") => {
            json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/zero"}}})
        }
        ("v1", "PersistentVolumeClaim") => json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
        ("v1", "ResourceQuota") => json!({"spec": {"hard": {"pods": "10"}}}),
        ("v1", "LimitRange") => json!({"spec": {"limits": [{"type": "Container", "default": {"cpu": "100m"}}]}}),
        ("v1", "PodTemplate") => json!({"template": template()}),
        ("apps/v1", "Deployment" | "ReplicaSet" | "DaemonSet") => json!({"spec": {"selector": selector, "template": template()}}),
        ("apps/v1", "StatefulSet") => json!({"spec": {"serviceName": "zero", "selector": selector, "template": template()}}),
        ("apps/v1", "ControllerRevision") => json!({"revision": 1, "data": {}}),
        ("batch/v1", "Job") => json!({"spec": {"template": job_template}}),
        ("batch/v1", "CronJob") => json!({"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": job_template}}}}),
        ("autoscaling/v1" | "autoscaling/v2", "HorizontalPodAutoscaler") => json!({"spec": hpa}),
        ("policy/v1", "PodDisruptionBudget") => json!({"spec": {"minAvailable": 1, "selector": selector}}),
        ("networking.k8s.io/v1", "Ingress") => json!({"spec": {"defaultBackend": {"service": {"name": "zero", "port": {"number": 80}}}}}),
        ("networking.k8s.io/v1", "IngressClass") => json!({"spec": {"controller": "kubelab.dev/zero"}}),
        ("networking.k8s.io/v1", "NetworkPolicy") => json!({"spec": {"podSelector": {}}}),
        ("rbac.authorization.k8s.io/v1", "Role" | "ClusterRole") => json!({"rules": rule}),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "zero"}, "subjects": subjects})
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "zero"}, "subjects": subjects})
        }
        ("storage.k8s.io/v1", "StorageClass") => json!({"provisioner": "kubelab.dev/zero"}),
        ("discovery.k8s.io/v1", "EndpointSlice") => json!({"addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]}),
        _ => json!({}),
    }
}

fn collection(res: &Resource) -> String {
    let base = if res.group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{}/{}", res.group, res.version) };
    if res.namespaced {
        format!("{base}/namespaces/default/{}", res.plural)
    } else {
        format!("{base}/{}", res.plural)
    }
}

/// The paths of `typed` that `sent` lacks (nulls in `sent` count as there).
fn missing(typed: &Value, sent: &Value, at: &str, out: &mut Vec<String>) {
    match (typed, sent) {
        (Value::Object(t), Value::Object(s)) => {
            for (k, tv) in t {
                let here = format!("{at}.{k}");
                match s.get(k) {
                    Some(sv) => missing(tv, sv, &here, out),
                    None => out.push(here),
                }
            }
        }
        (Value::Array(t), Value::Array(s)) => {
            for (i, (tv, sv)) in t.iter().zip(s).enumerate() {
                missing(tv, sv, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_served_kind_reads_back_through_typed_structs_and_python_models() {
    let api = TestApi::start();
    // One object per stored resource: other versions of one and computed
    // rows are read back below, not created.
    for res in RESOURCES.iter().filter(|r| r.stored()) {
        if res.plural == "namespaces" {
            continue; // Those the server bootstraps are read below.
        }
        let mut obj = sample(&res.api_version(), res.kind);
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        obj["metadata"] = json!({"name": "zero"});
        let (status, created) = api.raw("POST", &collection(res), "application/json", obj.to_string().into_bytes()).await;
        assert_eq!(status, 201, "creating {} {}: {created}", res.api_version(), res.kind);
    }
    let mut read = Vec::new();
    for res in RESOURCES {
        let (status, list) = api.raw("GET", &collection(res).replace("/namespaces/default", ""), "", Vec::new()).await;
        assert_eq!(status, 200, "listing {}: {list}", res.plural);
        let items = list["items"].as_array().cloned().unwrap_or_default();
        assert!(!items.is_empty(), "no {} to read back", res.plural);
        for item in items {
            // List items carry no apiVersion and kind of their own.
            let mut obj = item.clone();
            obj["apiVersion"] = json!(res.api_version());
            obj["kind"] = json!(res.kind);
            let typed = (res.decode_check)(&obj).unwrap_or_else(|e| panic!("{} as its k8s-openapi type: {e}", res.kind));
            let mut lacking = Vec::new();
            missing(&typed, &obj, "", &mut lacking);
            assert!(lacking.is_empty(), "{} {:?} lacks what its typed struct always writes: {lacking:?}\n{obj:#}", res.kind, obj["metadata"]["name"]);
        }
        read.push(res.kind);
    }
    assert!(read.contains(&"DaemonSet") && read.contains(&"ReplicaSet") && read.contains(&"Deployment"));
    insta::assert_snapshot!(crate::python_client::python(&api, "typed_read.py"));
}

/// The check above has teeth: a DaemonSet as k8s-openapi would send it
/// back without the counters is caught.
#[test]
fn a_missing_counter_is_what_the_typed_check_finds() {
    let ds = RESOURCES.iter().find(|r| r.kind == "DaemonSet").unwrap();
    let sent = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"}, "status": {"numberReady": 0}});
    let mut lacking = Vec::new();
    missing(&(ds.decode_check)(&sent).unwrap(), &sent, "", &mut lacking);
    lacking.sort();
    assert_eq!(lacking, [".status.currentNumberScheduled", ".status.desiredNumberScheduled", ".status.numberMisscheduled"]);
}

/// An object written before the server filled zero values in (straight
/// into etcd here) has them in a get, a list from etcd, a list from the
/// watch cache and a watch event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_stored_before_are_filled_on_every_read() {
    let api = TestApi::start();
    let etcd = apiserver::storage::Etcd::connect(std::slice::from_ref(&api.etcd_url)).await.unwrap();
    let key = "/registry/daemonsets/default/old";
    let stored = |image: &str| {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "old", "namespace": "default", "uid": "u", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"selector": {"matchLabels": {"app": "old"}}, "template": {"metadata": {"labels": {"app": "old"}}, "spec": {"containers": [{"name": "c", "image": image}]}}},
            "status": {}})
        .to_string()
        .into_bytes()
    };
    let revision = etcd.create(key, stored("busybox"), &[], None).await.unwrap();
    let filled = |obj: &Value, how: &str| {
        assert_eq!(obj["status"]["numberReady"], 0, "{how}: {obj:#}");
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["resources"], json!({}), "{how}: {obj:#}");
    };
    let path = "/apis/apps/v1/namespaces/default/daemonsets";
    let (_, got) = api.raw("GET", &format!("{path}/old"), "", Vec::new()).await;
    filled(&got, "get");
    let (_, paged) = api.raw("GET", &format!("{path}?limit=1"), "", Vec::new()).await;
    filled(&paged["items"][0], "list from etcd");
    let (_, cached) = api.raw("GET", path, "", Vec::new()).await;
    filled(&cached["items"][0], "list from the watch cache");
    let rv = cached["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let writer = tokio::spawn(async move { etcd.update(key, stored("nginx"), revision, &[], &[], None).await.unwrap() });
    let lines = api.watch_lines(&format!("{path}?watch=1&resourceVersion={rv}"), 1, std::time::Duration::from_secs(10)).await;
    writer.await.unwrap();
    assert_eq!(lines[0]["type"], "MODIFIED");
    filled(&lines[0]["object"], "watch event");
}
