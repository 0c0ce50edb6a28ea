//! The real kubectl against our apiserver (over a real etcd): what it
//! prints is snapshotted, with ages, uids, versions and times normalised.

use std::time::{Duration, Instant};

use kubelab_scenarios::apiserver::{Output, TestApi};
use kubelab_scenarios::kubectl::table as normalize;

fn ok(out: Output) -> String {
    normalize(&out.succeeded())
}

fn failed(out: Output) -> String {
    normalize(&out.failed())
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
        env:
        - name: COLOR
          value: blue
      - name: sidecar
        image: busybox:1.36
        command: ["sleep", "infinity"]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  clusterIP: 10.96.0.10
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
"#;

#[test]
fn discovery_and_explain() {
    let api = TestApi::start();
    insta::assert_snapshot!("api_resources", ok(api.kubectl(&["api-resources"])));
    // kubectl read aggregated discovery: /api and /apis, and no per-group
    // documents (a cache directory of its own, so nothing is remembered).
    let cache = api.dir.path().join("discovery-cache");
    let traced = api.kubectl(&["api-resources", "-v=6", "--cache-dir", cache.to_str().unwrap()]);
    assert_eq!(traced.code, 0, "{}", traced.stderr);
    assert!(traced.stderr.contains("/apis?timeout") || traced.stderr.contains("/apis 200"), "{}", traced.stderr);
    assert!(!traced.stderr.contains("/apis/apps/v1"), "kubectl fell back to per-group discovery:\n{}", traced.stderr);
    insta::assert_snapshot!("api_versions", ok(api.kubectl(&["api-versions"])));
    insta::assert_snapshot!("get_namespaces", ok(api.kubectl(&["get", "namespaces"])));
    // A new cluster holds the `kubernetes` Service, as upstream's does.
    insta::assert_snapshot!("get_all_new_cluster", ok(api.kubectl(&["get", "all"])));
    insta::assert_snapshot!("explain_replicas", ok(api.kubectl(&["explain", "deployment.spec.replicas"])));
    let fields = ok(api.kubectl(&["explain", "pods.spec.containers.ports"]));
    assert!(fields.contains("containerPort\t<integer> -required-") || fields.contains("containerPort\t<integer>"), "{fields}");
}

#[test]
fn apply_get_change_and_delete() {
    let api = TestApi::start();
    let dir = api.dir.path().to_path_buf();
    let file = dir.join("app.yaml");
    std::fs::write(&file, MANIFEST).unwrap();
    let file = file.to_str().unwrap();
    insta::assert_snapshot!("apply_created", ok(api.kubectl(&["apply", "-f", file])));
    insta::assert_snapshot!("apply_unchanged", ok(api.kubectl(&["apply", "-f", file])));
    insta::assert_snapshot!("get_all", ok(api.kubectl(&["get", "all", "-n", "demo"])));
    insta::assert_snapshot!("get_wide", ok(api.kubectl(&["get", "deploy,svc", "-n", "demo", "-o", "wide"])));
    insta::assert_snapshot!("get_yaml", ok(api.kubectl(&["get", "cm", "settings", "-n", "demo", "-o", "yaml"])));
    let json: serde_json::Value = serde_json::from_str(&api.kubectl(&["get", "deploy", "web", "-n", "demo", "-o", "json"]).stdout).unwrap();
    assert_eq!(json["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"], "blue");
    assert_eq!(json["metadata"]["generation"], 1);

    let ns = ["-n", "demo"];
    let run = |args: &[&str]| ok(api.kubectl(&[args, &ns[..]].concat()));
    insta::assert_snapshot!("label", run(&["label", "deploy/web", "tier=front"]));
    insta::assert_snapshot!("annotate", run(&["annotate", "deploy/web", "owner=team-a"]));
    insta::assert_snapshot!("scale", run(&["scale", "deploy/web", "--replicas=3"]));
    run(&["patch", "deploy/web", "--type=merge", "-p", r#"{"spec":{"replicas":4}}"#]);
    run(&["patch", "deploy/web", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/template/spec/containers/1/image","value":"busybox:1.37"}]"#]);
    run(&["patch", "deploy/web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}"#]);
    // kubectl edit, with an editor that changes the replica count.
    let editor = dir.join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/replicas: 4/replicas: 5/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edited = api.kubectl_with(&["edit", "deploy/web", "-n", "demo"], None, &[("KUBE_EDITOR", editor.to_str().unwrap())]);
    insta::assert_snapshot!("edit", ok(edited));
    let d: serde_json::Value = serde_json::from_str(&api.kubectl(&["get", "deploy", "web", "-n", "demo", "-o", "json"]).stdout).unwrap();
    assert_eq!(d["spec"]["replicas"], 5);
    assert_eq!(d["metadata"]["labels"]["tier"], "front");
    assert_eq!(d["metadata"]["annotations"]["owner"], "team-a");
    let images: Vec<&str> = d["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().map(|c| c["image"].as_str().unwrap()).collect();
    assert_eq!(images, ["nginx:1.28", "busybox:1.37"]);
    // The strategic merge patch kept the container's env and ports.
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 80);
    assert_eq!(d["metadata"]["generation"], 6);
    insta::assert_snapshot!("describe", ok(api.kubectl(&["describe", "deploy", "web", "-n", "demo"])));

    // Applying a manifest without the sidecar removes it (three-way merge).
    std::fs::write(
        dir.join("app.yaml"),
        MANIFEST.replace("      - name: sidecar\n        image: busybox:1.36\n        command: [\"sleep\", \"infinity\"]\n", ""),
    )
    .unwrap();
    insta::assert_snapshot!("apply_configured", ok(api.kubectl(&["apply", "-f", file])));
    let d: serde_json::Value = serde_json::from_str(&api.kubectl(&["get", "deploy", "web", "-n", "demo", "-o", "json"]).stdout).unwrap();
    assert_eq!(d["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 1);

    insta::assert_snapshot!("delete", ok(api.kubectl(&["delete", "deploy/web", "svc/web", "cm/settings", "-n", "demo"])));
    insta::assert_snapshot!("get_after_delete", normalize(&api.kubectl(&["get", "all", "-n", "demo"]).stderr));
}

fn managers(api: &TestApi, what: &[&str]) -> Vec<String> {
    let obj: serde_json::Value = serde_json::from_str(&api.kubectl(&[&["get", "-o", "json", "--show-managed-fields"], what].concat()).stdout).unwrap();
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!("{} {} {}", e["manager"].as_str().unwrap(), e["operation"].as_str().unwrap(), e["subresource"].as_str().unwrap_or("")).trim().to_string()
        })
        .collect()
}

/// Server-side apply as kubectl drives it: a multi-document apply, a
/// conflict with the manager that scaled, `--force-conflicts`, a re-apply
/// that removes what the manifest stopped setting, and the move of an
/// object from client-side to server-side apply.
#[test]
fn server_side_apply() {
    let api = TestApi::start();
    let dir = api.dir.path().to_path_buf();
    let path = dir.join("app.yaml");
    std::fs::write(&path, MANIFEST).unwrap();
    let file = path.to_str().unwrap();
    let ssa = |extra: &[&str]| api.kubectl(&[&["apply", "--server-side", "-f", file], extra].concat());
    insta::assert_snapshot!("ssa_created", ok(ssa(&[])));
    insta::assert_snapshot!("ssa_unchanged", ok(ssa(&[])));
    let web = ["deploy", "web", "-n", "demo"];
    assert_eq!(managers(&api, &web), ["kubectl Apply"]);

    // kubectl scale writes replicas as another manager: applying the
    // manifest's replicas again is a conflict, until forced.
    ok(api.kubectl(&["scale", "deploy/web", "--replicas=5", "-n", "demo"]));
    assert_eq!(managers(&api, &web), ["kubectl Apply", "kubectl Update scale"]);
    insta::assert_snapshot!("ssa_conflict", failed(ssa(&[])));
    insta::assert_snapshot!("ssa_dry_run", ok(ssa(&["--force-conflicts", "--dry-run=server"])));
    let replicas = |api: &TestApi| api.kubectl(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.replicas}"]).stdout;
    assert_eq!(replicas(&api), "5");
    insta::assert_snapshot!("ssa_forced", ok(ssa(&["--force-conflicts"])));
    assert_eq!(replicas(&api), "2");
    assert_eq!(managers(&api, &web), ["kubectl Apply"]);

    // Another manager applying the same values shares the fields.
    ok(ssa(&["--field-manager=ops"]));
    assert_eq!(managers(&api, &web), ["kubectl Apply", "ops Apply"]);

    // The manifest without the sidecar: kubectl's fields go, but ops still
    // holds the sidecar, so it stays until ops lets go of it too.
    let slim = MANIFEST.replace("      - name: sidecar\n        image: busybox:1.36\n        command: [\"sleep\", \"infinity\"]\n", "");
    std::fs::write(&path, &slim).unwrap();
    ok(ssa(&[]));
    let containers = |api: &TestApi| api.kubectl(&["get", "deploy", "web", "-n", "demo", "-o", "jsonpath={.spec.template.spec.containers[*].name}"]).stdout;
    assert_eq!(containers(&api), "web sidecar");
    ok(ssa(&["--field-manager=ops"]));
    assert_eq!(containers(&api), "web");
    insta::assert_snapshot!("ssa_managed_fields", ok(api.kubectl(&["get", "cm", "settings", "-n", "demo", "-o", "yaml", "--show-managed-fields"])));

    // An object made by client-side apply moves to server-side apply: the
    // fields still as client-side apply left them are taken without a
    // conflict, then kubectl rewrites the managedFields.
    let csa = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\n  namespace: demo\ndata:\n  a: \"1\"\n";
    ok(api.kubectl_stdin(&["apply", "-f", "-"], csa));
    assert_eq!(managers(&api, &["cm", "legacy", "-n", "demo"]), ["kubectl-client-side-apply Update"]);
    ok(api.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &csa.replace("\"1\"", "\"2\"")));
    // kubectl keeps the last-applied annotation current as its own manager.
    assert_eq!(managers(&api, &["cm", "legacy", "-n", "demo"]), ["kubectl Apply", "kubectl-last-applied Apply"]);
    assert_eq!(api.kubectl(&["get", "cm", "legacy", "-n", "demo", "-o", "jsonpath={.data.a}"]).stdout, "2");
}

#[test]
fn errors_read_as_upstream() {
    let api = TestApi::start();
    insta::assert_snapshot!("not_found", failed(api.kubectl(&["get", "pod", "nope"])));
    let invalid = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n";
    insta::assert_snapshot!("invalid", failed(api.kubectl_stdin(&["apply", "-f", "-"], invalid)));
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: x\n  - name: a\n    image: x\n    ports:\n    - containerPort: 70000\n";
    insta::assert_snapshot!("invalid_pod", failed(api.kubectl_stdin(&["apply", "-f", "-"], pod)));
    // YAML 1.1 reads `y` as true: a value of the wrong type, named by its path.
    let typed = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: a\n    image: y\n";
    insta::assert_snapshot!("wrong_type", failed(api.kubectl_stdin(&["apply", "-f", "-"], typed)));
    let elsewhere = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nowhere\n";
    insta::assert_snapshot!("missing_namespace", failed(api.kubectl_stdin(&["apply", "-f", "-"], elsewhere)));
    insta::assert_snapshot!("unknown_type", failed(api.kubectl(&["get", "widgets"])));
}

#[test]
fn get_watch_prints_changes() {
    let api = TestApi::start();
    // kubectl lists before it watches from the list's version: once the
    // listed sentinel is printed, every later change reaches the watch.
    ok(api.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sentinel\n"));
    let watch = api.kubectl_streaming(&["get", "configmaps", "--watch", "--output-watch-events"]);
    // Its header, then the sentinel's row.
    let listed = watch.lines(2, Duration::from_secs(30));
    assert!(listed.get(1).is_some_and(|l| l.contains("sentinel")), "kubectl get --watch listed {listed:?}, not the sentinel");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  a: b\n";
    ok(api.kubectl_stdin(&["apply", "-f", "-"], cm));
    ok(api.kubectl(&["label", "cm/watched", "x=y"]));
    ok(api.kubectl(&["delete", "cm/watched"]));
    let lines: Vec<String> = listed[..1].iter().cloned().chain(watch.lines(3, Duration::from_secs(10))).collect();
    drop(watch);
    insta::assert_snapshot!("get_watch", normalize(&lines.join("\n")));
}

#[test]
fn namespaces_are_deleted_through_terminating() {
    let api = TestApi::start();
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: scratch\n";
    ok(api.kubectl_stdin(&["apply", "-f", "-"], ns));
    // Without the namespace controller (controller-manager's), a deleted
    // namespace stays Terminating and refuses new content, as upstream's.
    insta::assert_snapshot!("delete_ns", ok(api.kubectl(&["delete", "namespace", "scratch", "--wait=false"])));
    insta::assert_snapshot!("ns_terminating", ok(api.kubectl(&["get", "namespace", "scratch"])));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n  namespace: scratch\n";
    insta::assert_snapshot!("create_in_terminating", failed(api.kubectl_stdin(&["apply", "-f", "-"], cm)));

    // With it, kubectl's default wait returns once the namespace's content
    // and then the namespace are gone. (--timeout only bounds a failure.)
    let _controllers = api.controller_manager();
    let file = api.dir.path().join("app.yaml");
    std::fs::write(&file, MANIFEST).unwrap();
    ok(api.kubectl(&["apply", "-f", file.to_str().unwrap()]));
    let started = Instant::now();
    insta::assert_snapshot!("delete_ns_waited", ok(api.kubectl(&["delete", "namespace", "demo", "--timeout=60s"])));
    // Upstream's namespace controller first waits 5 s after the deletion.
    assert!(started.elapsed() >= Duration::from_secs(4), "returned after {:?}, before the namespace could be emptied", started.elapsed());
    insta::assert_snapshot!("get_ns_deleted", failed(api.kubectl(&["get", "namespace", "demo"])));
    let left = ok(api.kubectl(&["get", "configmaps,deployments,services", "-n", "demo", "-o", "name"]));
    assert_eq!(left, "", "content of the deleted namespace is left");
    // The namespace deleted before the controller ran is gone too.
    let gone = api.kubectl(&["wait", "--for=delete", "namespace/scratch", "--timeout=30s"]);
    assert_eq!(gone.code, 0, "{}", gone.stderr);
}

#[test]
fn namespace_deletion_waits_for_finalizers_and_kubelets() {
    let api = TestApi::start();
    let _controllers = api.controller_manager();
    // A configmap held by a finalizer, and a pod bound to a node (which
    // gets a graceful deletion that its kubelet would finish).
    let held = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: held\n---\n\
                apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  namespace: held\n  finalizers: [example.com/hold]\n---\n\
                apiVersion: v1\nkind: Pod\nmetadata:\n  name: bound\n  namespace: held\nspec:\n  nodeName: worker-1\n  containers:\n  - name: c\n    image: busybox\n";
    ok(api.kubectl_stdin(&["apply", "-f", "-"], held));
    ok(api.kubectl(&["delete", "namespace", "held", "--wait=false"]));
    let waited = api.kubectl(&["wait", "--for=condition=NamespaceFinalizersRemaining", "namespace/held", "--timeout=30s"]);
    let state = || {
        api.kubectl(&["get", "namespace/held", "-o", "yaml"]).stdout + &api.kubectl(&["get", "configmap/kept", "pod/bound", "-n", "held", "-o", "yaml"]).stdout
    };
    assert_eq!(waited.code, 0, "{}\n{}", waited.stderr, state());
    let conditions = r#"jsonpath={range .status.conditions[*]}{.type} {.status} {.reason}: {.message}{"\n"}{end}"#;
    insta::assert_snapshot!("ns_conditions_remaining", ok(api.kubectl(&["get", "namespace", "held", "-o", conditions])));
    // The pod was deleted gracefully, not forced: it waits for its kubelet.
    let pod: serde_json::Value = serde_json::from_str(&api.kubectl(&["get", "pod", "bound", "-n", "held", "-o", "json"]).stdout).unwrap();
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);

    // Play the garbage collector and the kubelet: release both.
    ok(api.kubectl(&["patch", "configmap", "kept", "-n", "held", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]));
    ok(api.kubectl(&["delete", "pod", "bound", "-n", "held", "--grace-period=0", "--force"]));
    let gone = api.kubectl(&["wait", "--for=delete", "namespace/held", "--timeout=60s"]);
    assert_eq!(gone.code, 0, "{}", gone.stderr);
}

#[test]
fn componentstatus_and_field_validation() {
    let api = TestApi::start();
    // etcd answers; the scheduler and controller-manager are not running
    // in this test, and say so.
    let out = api.kubectl(&["get", "componentstatus"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("Warning: v1 ComponentStatus is deprecated in v1.19+"), "{}", out.stderr);
    let rows: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split_whitespace().take(2).collect()).collect();
    assert_eq!(rows, [vec!["NAME", "STATUS"], vec!["controller-manager", "Unhealthy"], vec!["etcd-0", "Healthy"], vec!["scheduler", "Unhealthy"]]);

    // kubectl asks for strict field validation: unknown fields are refused,
    // named by their path; with --validate=warn they are dropped with a warning.
    let typo = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\n  lables: {a: b}\ndata:\n  k: v\n";
    insta::assert_snapshot!("unknown_field_strict", failed(api.kubectl_stdin(&["apply", "-f", "-"], typo)));
    let warned = api.kubectl_stdin(&["apply", "--validate=warn", "-f", "-"], typo);
    assert_eq!(warned.code, 0, "{}", warned.stderr);
    assert!(warned.stderr.contains(r#"unknown field "metadata.lables""#), "{}", warned.stderr);
    let stored: serde_json::Value = serde_json::from_str(&api.kubectl(&["get", "cm", "typo", "-o", "json"]).stdout).unwrap();
    assert!(stored["metadata"].get("lables").is_none(), "unknown fields are not stored");
}
