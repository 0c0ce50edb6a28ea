//! pods/log and pods/exec through the apiserver to a kubelet (the test
//! double of `support/kubelet.rs`), driven by the real kubectl: what it
//! prints is snapshotted, with ports normalised.

use std::time::Duration;

use kubelab_scenarios::apiserver::{Options, Output, TestApi};
use kubelab_scenarios::kubelet::{log_lines, FakeKubelet, ServingCerts};
use regex::Regex;

/// The apiserver's identity towards kubelets (the lab PKI's apiserver-kubelet-client).
const APISERVER_KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";

fn normalize(text: &str) -> String {
    Regex::new(r"127\.0\.0\.1:\d+").unwrap().replace_all(text.trim_end(), "127.0.0.1:<port>").into_owned()
}

fn ok(out: Output) -> String {
    normalize(&out.succeeded())
}

fn failed(out: Output) -> String {
    normalize(&out.failed())
}

/// A Node whose status says where its kubelet listens.
fn node(api: &TestApi, name: &str, addresses: &[(&str, &str)], port: u16) {
    ok(api.kubectl_stdin(&["apply", "-f", "-"], &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n")));
    let addresses: Vec<serde_json::Value> = addresses.iter().map(|(t, a)| serde_json::json!({"type": t, "address": a})).collect();
    let status = serde_json::json!({"status": {"addresses": addresses, "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    ok(api.kubectl(&["patch", "node", name, "--subresource=status", "--type=merge", "-p", &status.to_string()]));
}

/// A pod of `containers`, bound to `node` when there is one.
fn pod(api: &TestApi, name: &str, containers: &[&str], node: Option<&str>) {
    let mut yaml = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n");
    if let Some(n) = node {
        yaml.push_str(&format!("  nodeName: {n}\n"));
    }
    yaml.push_str("  containers:\n");
    for c in containers {
        yaml.push_str(&format!("  - name: {c}\n    image: busybox:1.36\n"));
    }
    ok(api.kubectl_stdin(&["apply", "-f", "-"], &yaml));
}

fn lines(container: &str, last: usize) -> String {
    let all = log_lines(container);
    all[all.len() - last..].join("\n")
}

#[test]
fn logs_and_exec_reach_the_kubelet_with_the_apiserver_identity() {
    let dir = tempfile::tempdir().unwrap();
    let serving = ServingCerts::new(dir.path(), "kubelet");
    let api = TestApi::start_with(Options { kubelet_certificate_authority: Some(serving.ca_path.clone()), ..Default::default() });
    let lab_ca = std::fs::read_to_string(api.pki_dir().join("ca.crt")).unwrap();
    let kubelet = FakeKubelet::start(&serving, &lab_ca);
    // Its serving certificate is not from the CA the apiserver checks against.
    let impostor = FakeKubelet::start(&ServingCerts::new(dir.path(), "impostor"), &lab_ca);
    // InternalIP is preferred to ExternalIP wherever it is listed; nothing
    // listens on 127.0.0.2.
    node(&api, "node-1", &[("ExternalIP", "127.0.0.2"), ("InternalIP", "127.0.0.1")], kubelet.port);
    node(&api, "node-2", &[("InternalIP", "127.0.0.1")], impostor.port);
    pod(&api, "solo", &["app"], Some("node-1"));
    pod(&api, "web", &["web", "sidecar"], Some("node-1"));
    pod(&api, "pending", &["app"], None);
    pod(&api, "elsewhere", &["app"], Some("node-2"));

    assert_eq!(ok(api.kubectl(&["logs", "solo"])), lines("app", 5));
    assert_eq!(ok(api.kubectl(&["logs", "web", "-c", "web", "--tail=2"])), lines("web", 2));
    // The kubelet's own 400 is passed on with its text.
    insta::assert_snapshot!("logs_container_not_started", failed(api.kubectl(&["logs", "web", "-c", "sidecar"])));
    // A pod on no node has no log yet: an empty one.
    assert_eq!(ok(api.kubectl(&["logs", "pending"])), "");
    insta::assert_snapshot!("logs_kubelet_certificate_unknown", failed(api.kubectl(&["logs", "elsewhere"])));
    assert_eq!(ok(api.kubectl(&["logs", "elsewhere", "--insecure-skip-tls-verify-backend"])), lines("app", 5));

    // kubectl picks a container itself; the API names the choices.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (code, status) = runtime.block_on(api.raw("GET", "/api/v1/namespaces/default/pods/web/log", "application/json", vec![]));
    assert_eq!((code, status["message"].as_str().unwrap()), (400, "a container name must be specified for pod web, choose one of: [web sidecar]"));
    // (kubectl checks a named container itself before it asks for logs.)
    let (code, status) = runtime.block_on(api.raw("GET", "/api/v1/namespaces/default/pods/web/log?container=nope", "application/json", vec![]));
    assert_eq!((code, status["message"].as_str().unwrap()), (400, "container nope is not valid for pod web"));

    // follow: lines arrive while the kubelet is still writing.
    let follow = api.kubectl_streaming(&["logs", "-f", "solo"]);
    let followed = follow.lines(8, Duration::from_secs(20));
    assert_eq!(kubelet.following(), 1, "the kubelet is still writing the followed log");
    drop(follow);
    let expected: Vec<String> = log_lines("app").into_iter().chain((1..=3).map(|i| format!("app followed {i}"))).collect();
    assert_eq!(followed, expected);
    // Once kubectl is gone, the apiserver lets go of the kubelet's stream.
    kubelab_scenarios::wait::until_blocking("the apiserver letting go of the followed stream once kubectl is gone", Duration::from_secs(10), || match kubelet
        .following()
    {
        0 => Ok(()),
        n => Err(format!("{n} streams still followed")),
    });

    assert_eq!(ok(api.kubectl(&["exec", "solo", "--", "echo", "hi"])), "hi");
    assert_eq!(ok(api.kubectl(&["exec", "web", "-c", "web", "--", "echo", "hello", "world"])), "hello world");
    let exit = api.kubectl(&["exec", "solo", "--", "false"]);
    assert_eq!((exit.code, exit.stderr.trim()), (1, "command terminated with exit code 1"));
    insta::assert_snapshot!("exec_unscheduled", failed(api.kubectl(&["exec", "pending", "--", "echo", "hi"])));
    insta::assert_snapshot!("exec_unknown_container", failed(api.kubectl(&["exec", "web", "-c", "nope", "--", "echo", "hi"])));

    // What reached the kubelet, as upstream words it.
    let requests = kubelet.requests();
    for wanted in [
        "/containerLogs/default/solo/app",
        "/containerLogs/default/web/web?tailLines=2",
        "/containerLogs/default/solo/app?follow=true",
        "/exec/default/solo/app?command=echo&command=hi&stderr=1&stdout=1",
        "/exec/default/web/web?command=echo&command=hello&command=world&stderr=1&stdout=1",
    ] {
        assert!(requests.iter().any(|r| r == wanted), "{wanted} not among {requests:#?}");
    }
    // Every connection presented the apiserver's kubelet-client certificate,
    // which the double checked against the lab's CA.
    let clients = kubelet.clients();
    assert!(!clients.is_empty() && clients.iter().all(|c| c == APISERVER_KUBELET_CLIENT), "{clients:?}");
    assert_eq!(kubelet.refused(), 0);
}

#[test]
fn kubelet_failures_read_as_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApi::start();
    // A kubelet that trusts another CA than the lab's: it refuses the apiserver.
    let other_ca = ServingCerts::new(dir.path(), "other");
    let strict = FakeKubelet::start(&ServingCerts::new(dir.path(), "strict"), &other_ca.ca_pem);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    node(&api, "down", &[("InternalIP", "127.0.0.1")], closed);
    node(&api, "strict", &[("InternalIP", "127.0.0.1")], strict.port);
    node(&api, "nowhere", &[], 10250);
    pod(&api, "on-down", &["app"], Some("down"));
    pod(&api, "on-strict", &["app"], Some("strict"));
    pod(&api, "on-ghost", &["app"], Some("ghost"));
    pod(&api, "on-nowhere", &["app"], Some("nowhere"));

    insta::assert_snapshot!("logs_kubelet_down", failed(api.kubectl(&["logs", "on-down"])));
    insta::assert_snapshot!("exec_kubelet_down", failed(api.kubectl(&["exec", "on-down", "--", "echo", "hi"])));
    insta::assert_snapshot!("logs_client_certificate_refused", failed(api.kubectl(&["logs", "on-strict"])));
    assert!(strict.refused() >= 1 && strict.clients().is_empty(), "the strict kubelet let the apiserver in");
    insta::assert_snapshot!("logs_node_missing", failed(api.kubectl(&["logs", "on-ghost"])));
    insta::assert_snapshot!("logs_node_without_address", failed(api.kubectl(&["logs", "on-nowhere"])));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let raw = |method: &str, path: &str| {
        let (code, status) = runtime.block_on(api.raw(method, path, "application/json", vec![]));
        (code, status["reason"].as_str().unwrap_or("").to_string(), status["message"].as_str().unwrap_or("").to_string())
    };
    let pods = "/api/v1/namespaces/default/pods";
    assert_eq!(raw("GET", &format!("{pods}/nope/log")), (404, "NotFound".into(), r#"pods "nope" not found"#.into()));
    assert_eq!(
        raw("GET", &format!("{pods}/on-down/log?tailLines=-1")),
        (422, "Invalid".into(), r#"PodLogOptions "on-down" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"#.into())
    );
    assert_eq!(raw("PUT", &format!("{pods}/on-down/log")).0, 405);
    assert_eq!(raw("GET", &format!("{pods}/on-down/exec?command=ls")), (400, "BadRequest".into(), "Upgrade request required".into()));
    assert_eq!(raw("POST", &format!("{pods}/on-down/attach?stdout=1")), (400, "BadRequest".into(), "Upgrade request required".into()));
    assert_eq!(raw("GET", &format!("{pods}/pending/attach")).0, 404);
    // Connection refused is no Status of its own: 500 without a reason.
    let (code, reason, message) = raw("GET", &format!("{pods}/on-down/log"));
    assert_eq!((code, reason.as_str()), (500, ""), "{message}");
}
