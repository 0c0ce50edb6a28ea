//! Property tests of request decoding, seeded from `tests/corpus/` (kept
//! in the repo; proptest writes any failing case it finds to
//! `proptest-regressions/`, which is kept too). Whatever the bytes, the
//! path from body to checked object answers Ok or an `ApiError` with a
//! 4xx code, and never panics.

use std::path::PathBuf;

use apiserver::fields::{self, Mode};
use apiserver::handlers::decode_object;
use apiserver::resources::{self, RESOURCES};
use apiserver::{patch, protobuf, route, selectors};
use proptest::prelude::*;
use serde_json::Value;

fn corpus(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn seeds() -> Vec<(Vec<u8>, &'static str)> {
    vec![(corpus("pod.json"), "application/json"), (corpus("service.json"), "application/json"), (corpus("deployment.yaml"), "application/yaml")]
}

/// What the apiserver does with a body before it touches etcd: decode it,
/// check its fields against every kind, default and validate it.
fn pipeline(body: &[u8], content_type: &str) {
    match decode_object(body, content_type) {
        Err(e) => assert!((400..500).contains(&e.code), "{e}"),
        Ok(obj) => {
            for res in RESOURCES.iter().filter(|r| !r.probed) {
                let mut candidate = obj.clone();
                candidate["apiVersion"] = Value::String(res.api_version());
                candidate["kind"] = Value::String(res.kind.into());
                match fields::check(res, &mut candidate, Mode::Strict) {
                    Err(e) => assert!((400..500).contains(&e.code), "{e}"),
                    Ok(_) => {
                        res.strategy.default(&mut candidate);
                        let _ = res.strategy.validate(&candidate);
                    }
                }
            }
        }
    }
}

/// A seed with a few bytes changed, cut short, or grown.
fn mutated() -> impl Strategy<Value = (Vec<u8>, &'static str)> {
    let seeds = seeds();
    (0..seeds.len(), prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8), any::<prop::sample::Index>(), any::<bool>()).prop_map(
        move |(i, flips, cut, shorten)| {
            let (mut bytes, ct) = seeds[i].clone();
            for (at, b) in flips {
                let at = at.index(bytes.len());
                bytes[at] = b;
            }
            if shorten {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            (bytes, ct)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_bodies_never_panic((body, ct) in mutated()) {
        pipeline(&body, ct);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), yaml in any::<bool>()) {
        pipeline(&body, if yaml { "application/yaml" } else { "application/json" });
        let _ = protobuf::decode(&body);
        let mut framed = b"k8s\0".to_vec();
        framed.extend_from_slice(&body);
        let _ = protobuf::decode(&framed);
    }

    #[test]
    fn json_shaped_values_never_panic(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        pipeline(&body, "application/json");
    }

    #[test]
    fn patches_never_panic(doc in json_value(), p in json_value()) {
        let target: Value = serde_json::from_slice(&corpus("pod.json")).unwrap();
        let mut a = target.clone();
        patch::merge(&mut a, &p);
        let mut b = target.clone();
        let _ = patch::strategic(&mut b, &p);
        let mut c = doc.clone();
        let _ = patch::strategic(&mut c, &p);
        let mut d = target;
        let _ = patch::json_patch(&mut d, &p);
    }

    #[test]
    fn selectors_and_paths_never_panic(text in "[a-z=!,() .\\-/0-9]{0,60}") {
        let _ = selectors::parse_labels(&text);
        let _ = selectors::parse_fields(&text);
        let _ = route::parse(&format!("/api/v1/{text}"));
        let _ = route::parse(&format!("/apis/{text}"));
    }
}

/// JSON values shaped like Kubernetes objects: the keys they use, nested.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "apiVersion",
        "kind",
        "metadata",
        "name",
        "namespace",
        "labels",
        "spec",
        "containers",
        "image",
        "ports",
        "containerPort",
        "selector",
        "matchLabels",
        "template",
        "replicas",
        "status",
        "$patch",
        "$setElementOrder/containers",
        "$retainKeys",
        "$deleteFromPrimitiveList/finalizers",
        "finalizers",
        "env",
        "op",
        "path",
        "value",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        "[a-z0-9:/.-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["v1", "apps/v1", "Pod", "Deployment", "replace", "delete", "merge", "/spec/replicas"]).prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

#[test]
fn corpus_seeds_pass_the_pipeline() {
    for (body, ct) in seeds() {
        let obj = decode_object(&body, ct).unwrap();
        let kind = obj["kind"].as_str().unwrap();
        let res = RESOURCES.iter().find(|r| r.kind == kind).unwrap();
        let mut obj = obj.clone();
        assert_eq!(fields::check(res, &mut obj, Mode::Strict).unwrap(), Vec::<String>::new());
        res.strategy.default(&mut obj);
        assert_eq!(res.strategy.validate(&obj), vec![], "{kind} seed is valid");
    }
    let patch_seed: Value = serde_json::from_slice(&corpus("strategic-patch.json")).unwrap();
    let mut d: Value = serde_yaml::from_slice(&corpus("deployment.yaml")).unwrap();
    patch::strategic(&mut d, &patch_seed).unwrap();
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2");
    let ops: Value = serde_json::from_slice(&corpus("json-patch.json")).unwrap();
    patch::json_patch(&mut d, &ops).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    for line in String::from_utf8(corpus("selectors.txt")).unwrap().lines() {
        assert!(selectors::parse_labels(line).is_ok() || selectors::parse_fields(line).is_ok(), "{line}");
    }
    for path in String::from_utf8(corpus("paths.txt")).unwrap().lines() {
        assert!(route::parse(path).is_ok(), "{path}");
    }
    assert!(resources::find("", "v1", "pods").is_some());
}
