//! Whole requests through the apiserver's router against a real etcd:
//! every verb and subresource, every patch type, JSON, YAML, protobuf and
//! random bodies, odd headers. Whatever comes, the server does not panic,
//! every refusal is an upstream-shaped `Status`, and etcd afterwards holds
//! only objects that the typed k8s-openapi structs read.
//!
//! The requests go to the router in this process (no TLS, no sockets), so
//! thousands of them take seconds. Subresources that dial out (log, exec,
//! attach) and componentstatuses are left out: a fuzzed Node's address
//! must never be dialled.

use axum::body::Body;
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};
use tower::ServiceExt;

use apiserver::auth::User;
use apiserver::resources::RESOURCES;
use kubelab_scenarios::apiserver::TestApi;

/// Named objects the requests aim at, so that updates, patches and
/// deletes meet objects that exist.
const NAMES: &[&str] = &["a", "b", "web"];
const NAMESPACES: &[&str] = &["default", "fuzz", "gone"];

fn seed(file: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../components/apiserver/tests/corpus").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One request: method, path, query, headers, body.
#[derive(Debug, Clone)]
struct Fuzzed {
    method: &'static str,
    path: String,
    content_type: &'static str,
    accept: &'static str,
    body: Vec<u8>,
}

fn paths() -> impl Strategy<Value = String> {
    let stored: Vec<&'static apiserver::resources::Resource> = RESOURCES.iter().filter(|r| !r.probed).collect();
    // Mostly the object itself, so that requests reach the store.
    let subs = prop::sample::select(vec!["", "", "", "", "", "", "/status", "/status", "/scale", "/binding", "/finalize", "/eviction", "/x"]);
    let queries = prop::sample::select(vec![
        "",
        "?dryRun=All",
        "?fieldManager=fuzz&force=true",
        "?fieldManager=fuzz",
        "?labelSelector=a%3Db,c+in+(d)",
        "?fieldSelector=metadata.name%3Da",
        "?fieldSelector=spec.nodeName%3Dn1",
        "?limit=1",
        "?limit=1&continue=bogus",
        "?resourceVersion=1&resourceVersionMatch=Exact",
        "?resourceVersion=999999999",
        "?watch=true&timeoutSeconds=1",
        "?fieldValidation=Strict",
        "?fieldValidation=Bogus",
        "?gracePeriodSeconds=0",
        "?propagationPolicy=Foreground",
        "?propagationPolicy=Sideways",
        "?includeObject=Object",
    ]);
    // A name two times in three: the verbs on one object are more.
    let names = prop::option::weighted(0.67, prop::sample::select(NAMES));
    (0..stored.len(), prop::sample::select(NAMESPACES), names, subs, queries).prop_map(move |(i, ns, name, sub, query)| {
        let res = stored[i];
        let base = if res.group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{}/{}", res.group, res.version) };
        let scope = if res.namespaced { format!("/namespaces/{ns}") } else { String::new() };
        match name {
            Some(n) => format!("{base}{scope}/{}/{n}{sub}{query}", res.plural),
            None => format!("{base}{scope}/{}{query}", res.plural),
        }
    })
}

/// JSON shaped like Kubernetes objects: the keys they use, nested.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "apiVersion",
        "kind",
        "metadata",
        "name",
        "namespace",
        "labels",
        "annotations",
        "finalizers",
        "uid",
        "resourceVersion",
        "ownerReferences",
        "spec",
        "containers",
        "image",
        "ports",
        "containerPort",
        "port",
        "nodePort",
        "clusterIP",
        "type",
        "selector",
        "matchLabels",
        "template",
        "replicas",
        "status",
        "phase",
        "nodeName",
        "data",
        "immutable",
        "target",
        "podCIDR",
        "podCIDRs",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "op",
        "path",
        "value",
        "from",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        (-1e20f64..1e20).prop_map(|f| json!(f)),
        "[a-z0-9:/.-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "v1",
            "apps/v1",
            "Pod",
            "ConfigMap",
            "Deployment",
            "a",
            "web",
            "",
            "replace",
            "add",
            "remove",
            "/metadata",
            "",
            "/spec/replicas",
            "10.96.0.10",
            "NodePort"
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn bodies() -> impl Strategy<Value = Vec<u8>> {
    let seeds = vec![seed("pod.json"), seed("service.json"), seed("deployment.yaml"), seed("strategic-patch.json"), seed("json-patch.json")];
    let mutated = (prop::sample::select(seeds), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6)).prop_map(|(mut bytes, flips)| {
        for (at, b) in flips {
            let at = at.index(bytes.len());
            bytes[at] = b;
        }
        bytes
    });
    // Bodies that fit some resource and verb, so that writes go through
    // too, each maybe with one fuzzed field put in.
    let fitting = vec![
        json!({"metadata": {"name": "a", "labels": {"x": "y"}}}),
        json!({"metadata": {"name": "b"}, "data": {"k": "v"}}),
        json!({"metadata": {"labels": {"x": null}}}),
        json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
        json!({"spec": {"replicas": 2}}),
        json!({"status": {"phase": "Running"}}),
        json!([{"op": "add", "path": "/metadata/labels", "value": {"z": "1"}}]),
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"}, "target": {"name": "a"}}),
    ];
    let fitting =
        (prop::sample::select(fitting), prop::option::of((prop::sample::select(vec!["metadata", "spec", "data", "status", "immutable"]), json_value())))
            .prop_map(|(mut body, extra)| {
                if let (Some((key, value)), Some(map)) = (extra, body.as_object_mut()) {
                    map.insert(key.to_string(), value);
                }
                serde_json::to_vec(&body).unwrap()
            });
    let apply = Just(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n".to_vec());
    prop_oneof![
        4 => fitting,
        1 => apply,
        3 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => mutated,
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|tail| [b"k8s\0".as_slice(), &tail].concat()),
        1 => Just(Vec::new()),
    ]
}

fn requests() -> impl Strategy<Value = Fuzzed> {
    let methods = prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
    let content_types = prop::sample::select(vec![
        "application/json",
        "application/json",
        "application/json",
        "application/merge-patch+json",
        "application/merge-patch+json",
        "application/yaml",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/json-patch+json",
        "application/apply-patch+yaml",
        "application/vnd.kubernetes.protobuf",
        "text/plain",
        "",
    ]);
    // Mostly what clients send, so that requests get past negotiation.
    let accepts = prop::sample::select(vec![
        "application/json",
        "application/json",
        "application/json",
        "application/json",
        "",
        "",
        "",
        "*/*",
        "application/json;as=Table;v=v1;g=meta.k8s.io",
        "application/vnd.kubernetes.protobuf",
        "application/yaml",
    ]);
    // The method fits the path (named or collection) three times in four.
    (methods, any::<prop::sample::Index>(), any::<u8>(), paths(), content_types, accepts, bodies()).prop_map(
        |(method, pick, dice, path, content_type, accept, body)| {
            let named = path.split('?').next().unwrap_or("").trim_end_matches('/').rsplit('/').nth(1).is_some_and(|parent| !parent.is_empty())
                && NAMES.iter().any(|n| path.split('?').next().unwrap_or("").split('/').any(|part| part == *n));
            let fitting: &[&'static str] = if named { &["GET", "PUT", "PATCH", "DELETE"] } else { &["GET", "POST", "DELETE"] };
            let method = if dice % 4 == 0 { method } else { fitting[pick.index(fitting.len())] };
            Fuzzed { method, path, content_type, accept, body }
        },
    )
}

/// Sends one request to the router; returns the status and, for a
/// refusal, the body.
async fn send(router: &axum::Router, r: &Fuzzed) -> (u16, Option<Value>) {
    let mut builder = axum::http::Request::builder().method(r.method).uri(&r.path);
    if !r.content_type.is_empty() {
        builder = builder.header("content-type", r.content_type);
    }
    if !r.accept.is_empty() {
        builder = builder.header("accept", r.accept);
    }
    let mut request = builder.header("user-agent", "fuzz/1.0").body(Body::from(r.body.clone())).expect("a request builds");
    let admin = User { name: "kubernetes-admin".into(), groups: vec!["system:masters".into()] };
    request.extensions_mut().insert(Some(admin));
    let response = router.clone().oneshot(request).await.expect("the router answers");
    let status = response.status().as_u16();
    if status < 400 {
        // A watch streams until its timeout: do not wait for it.
        return (status, None);
    }
    let bytes = response.into_body().collect().await.expect("a refusal's body reads").to_bytes();
    (status, Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))))
}

/// A refusal as upstream sends it: a v1 Status with the response's code.
fn assert_status_shaped(r: &Fuzzed, code: u16, body: &Value) {
    assert!(code < 500 || code == 503 || code == 504, "{} {} answered {code}: {body}", r.method, r.path);
    assert_eq!(body["kind"], "Status", "{} {}: {body}", r.method, r.path);
    assert_eq!(body["apiVersion"], "v1", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], json!(code), "{body}");
    assert!(body["reason"].as_str().is_some_and(|s| !s.is_empty()), "{body}");
    assert!(body["message"].as_str().is_some(), "{body}");
}

#[test]
fn fuzzed_requests_never_panic_and_store_only_typed_objects() {
    let api = TestApi::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let router = apiserver::router(runtime.block_on(api.second_app()));
    let etcd_url = api.etcd_url.clone();
    // Objects for the requests to meet: a namespace being deleted, a pod,
    // a workload, a Service, a Node.
    runtime.block_on(async {
        for (path, body) in [
            ("/api/v1/namespaces", json!({"metadata": {"name": "fuzz"}})),
            ("/api/v1/namespaces", json!({"metadata": {"name": "gone"}})),
            ("/api/v1/namespaces/default/pods", json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})),
            ("/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "a", "labels": {"a": "b"}}, "data": {"k": "v"}})),
            ("/api/v1/namespaces/default/services", json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})),
            ("/api/v1/nodes", json!({"metadata": {"name": "a"}})),
        ] {
            let r = Fuzzed { method: "POST", path: path.into(), content_type: "application/json", accept: "", body: serde_json::to_vec(&body).unwrap() };
            assert_eq!(send(&router, &r).await.0, 201, "{path}");
        }
        let r = Fuzzed { method: "DELETE", path: "/api/v1/namespaces/gone".into(), content_type: "", accept: "", body: vec![] };
        assert_eq!(send(&router, &r).await.0, 200);
    });

    let cases = std::env::var("REQUEST_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1500);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let (written, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&requests(), |r| {
            let (code, body) = runtime.block_on(send(&router, &r));
            match body {
                Some(body) => {
                    assert_status_shaped(&r, code, &body);
                    refused.set(refused.get() + 1);
                }
                None if r.method != "GET" => written.set(written.get() + 1),
                None => {}
            }
            Ok(())
        })
        .unwrap();
    // Not a fuzz that only ever met refusals: some writes went through.
    assert!(written.get() > 0 && refused.get() > 0, "{} writes went through, {} were refused", written.get(), refused.get());
    eprintln!("{} writes went through, {} requests were refused", written.get(), refused.get());

    // What etcd holds reads as the typed object of its resource.
    runtime.block_on(async {
        let mut etcd = etcd_client::Client::connect([etcd_url.as_str()], None).await.unwrap();
        let all = etcd.get("/registry/", Some(etcd_client::GetOptions::new().with_prefix())).await.unwrap();
        let mut checked = 0;
        for kv in all.kvs() {
            let key = kv.key_str().unwrap();
            // The longest prefix wins: services/specs before services.
            let Some(res) = RESOURCES.iter().filter(|r| !r.probed && key.starts_with(&r.prefix(None))).max_by_key(|r| r.storage.len()) else {
                continue;
            };
            let value: Value = serde_json::from_slice(kv.value()).unwrap_or_else(|e| panic!("{key} is not JSON: {e}"));
            if let Err(why) = (res.decode_check)(&value) {
                panic!("{key} does not read as a {}: {why}\n{value}", res.kind);
            }
            checked += 1;
        }
        assert!(checked >= 6, "only {checked} objects were checked");
    });
}
