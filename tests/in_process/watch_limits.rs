//! The watch cache's limits, through the API: its history is bounded in
//! bytes, a watcher that does not read is closed rather than buffered for,
//! and selectors see objects enter and leave them (fields as well as
//! labels) as upstream reports it.

use std::time::Duration;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kubelab_scenarios::apiserver::{Options, TestApi};
use serde_json::{json, Value};

/// A ConfigMap of about `size` bytes; `n` makes each rewrite differ.
fn big_configmap(name: &str, size: usize, n: usize) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
        "data": {"blob": "x".repeat(size), "n": n.to_string()}
    }))
    .unwrap()
}

fn revision(line: &Value) -> i64 {
    line["object"]["metadata"]["resourceVersion"].as_str().expect("a resourceVersion").parse().unwrap()
}

/// Rewrites `name` `count` times; the revision of each rewrite.
async fn rewrite(cms: &Api<ConfigMap>, name: &str, size: usize, count: usize) -> Vec<i64> {
    let mut revisions = Vec::new();
    for n in 1..=count {
        let written = cms.replace(name, &PostParams::default(), &big_configmap(name, size, n)).await.unwrap();
        revisions.push(written.metadata.resource_version.unwrap().parse().unwrap());
    }
    revisions
}

#[tokio::test]
async fn history_is_bounded_in_bytes() {
    // Each rewrite of a 200 KB ConfigMap holds about 400 KB of history (the
    // object and its previous state): a 1 MiB budget keeps two or three,
    // where the event budget alone (10 000) would keep them all.
    let api = TestApi::start_with(Options { watch_history_bytes: Some(1 << 20), ..Default::default() });
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let created = cms.create(&PostParams::default(), &big_configmap("big", 200 << 10, 0)).await.unwrap();
    let first: i64 = created.metadata.resource_version.unwrap().parse().unwrap();
    let revisions = rewrite(&cms, "big", 200 << 10, 20).await;

    let path = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={first}");
    let lines = api.watch_lines(&path, 1, Duration::from_secs(10)).await;
    assert_eq!(lines.len(), 1, "a watch from the first version answers at once");
    assert_eq!(lines[0]["type"], "ERROR", "the first rewrites fell out of the history: {}", lines[0]["type"]);
    assert_eq!(lines[0]["object"]["code"], 410);
    assert_eq!(lines[0]["object"]["reason"], "Expired");

    // The newest rewrite is still there to resume from.
    let before_last = revisions[revisions.len() - 2];
    let path = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={before_last}");
    let lines = api.watch_lines(&path, 1, Duration::from_secs(10)).await;
    assert_eq!(lines.len(), 1, "the last rewrite is replayed");
    assert_eq!(lines[0]["type"], "MODIFIED");
    assert_eq!(revision(&lines[0]), *revisions.last().unwrap());
}

#[tokio::test]
async fn a_watcher_that_does_not_read_is_closed() {
    // 60 rewrites of 512 KB are 30 MB of events: more than loopback's
    // socket buffers and the server's write buffers take, so most of them
    // wait in the cache, where the watcher may keep 1 MiB.
    const REWRITES: usize = 60;
    // The history keeps every rewrite, for the resume at the end.
    let options = Options { watcher_backlog_bytes: Some(1 << 20), watch_history_bytes: Some(256 << 20), ..Default::default() };
    let api = TestApi::start_with(options);
    let client = api.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms.create(&PostParams::default(), &big_configmap("big", 512 << 10, 0)).await.unwrap();
    let from: i64 = created.metadata.resource_version.unwrap().parse().unwrap();

    // The watch is open once its response has come; its body is not read
    // until every rewrite is done.
    let path = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={from}");
    let request = http::Request::get(path).body(kube::client::Body::empty()).unwrap();
    let response = client.send(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let revisions = rewrite(&cms, "big", 512 << 10, REWRITES).await;

    // Now read: what the buffers held, then the end of the stream.
    let mut body = response.into_body();
    let mut buffer = Vec::new();
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ended = loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => break false,
            Ok(None) => break true,
            Ok(Some(frame)) => {
                let Ok(data) = frame.unwrap().into_data() else {
                    continue;
                };
                buffer.extend_from_slice(&data);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    lines.push(serde_json::from_slice::<Value>(&line).unwrap());
                }
            }
        }
    };
    assert!(ended, "the server did not end the stream of a watcher that did not read; it sent {} of {REWRITES} events", lines.len());
    assert!(lines.len() < REWRITES, "the watcher was closed before it got every event ({} of {REWRITES})", lines.len());
    // What it did get is the start of the sequence, nothing skipped, so the
    // client can resume from its last version.
    let got: Vec<i64> = lines.iter().map(revision).collect();
    assert_eq!(got, revisions[..got.len()], "the events sent are the first ones, in order");
    assert!(lines.iter().all(|l| l["type"] == "MODIFIED"));

    // Resuming from there gets the rest.
    let resume_from = got.last().copied().unwrap_or(from);
    let path = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={resume_from}");
    let rest = api.watch_lines(&path, REWRITES - got.len(), Duration::from_secs(20)).await;
    let rest: Vec<i64> = rest.iter().map(revision).collect();
    assert_eq!(rest, revisions[got.len()..], "a resumed watch gets what the closed one missed");
}

#[tokio::test]
async fn selectors_report_objects_entering_and_leaving() {
    let api = TestApi::start();
    let pods: Api<Pod> = Api::namespaced(api.client().await, "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let from = created.metadata.resource_version.unwrap();

    // Bound to node-1 (enters a kubelet's selection), running (enters the
    // phase selection), relabelled (leaves the label selection), then
    // succeeded (leaves the phase selection).
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let (status, _) = api.raw("POST", "/api/v1/namespaces/default/pods/p/binding", "application/json", serde_json::to_vec(&binding).unwrap()).await;
    assert_eq!(status, 201);
    let bound = pods.get("p").await.unwrap();
    let running = pods.patch_status("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running"}}))).await.unwrap();
    let relabelled = pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}}))).await.unwrap();
    let succeeded = pods.patch_status("p", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Succeeded"}}))).await.unwrap();
    let rv = |p: &Pod| p.metadata.resource_version.clone().unwrap().parse::<i64>().unwrap();

    let watch = |selector: &str| format!("/api/v1/namespaces/default/pods?watch=1&resourceVersion={from}&{selector}");
    let summary = |lines: &[Value]| -> Vec<(String, i64)> { lines.iter().map(|l| (l["type"].as_str().unwrap().to_string(), revision(l))).collect() };

    let by_node = api.watch_lines(&watch("fieldSelector=spec.nodeName%3Dnode-1"), 4, Duration::from_secs(3)).await;
    let modified = |p: &Pod| ("MODIFIED".to_string(), rv(p));
    let bound_rv = rv(&bound);
    assert_eq!(summary(&by_node)[0], ("ADDED".to_string(), bound_rv), "bound to the node: ADDED for its kubelet");
    assert_eq!(summary(&by_node)[1..], [modified(&running), modified(&relabelled), modified(&succeeded)]);

    let by_phase = api.watch_lines(&watch("fieldSelector=status.phase%3DRunning"), 3, Duration::from_secs(3)).await;
    assert_eq!(summary(&by_phase), [("ADDED".into(), rv(&running)), modified(&relabelled), ("DELETED".into(), rv(&succeeded))]);
    // Leaving the selection, the object is sent as it was when it matched,
    // at the event's version (as upstream's cacher sends it).
    assert_eq!(by_phase[2]["object"]["status"]["phase"], "Running");
    assert_eq!(by_phase[2]["object"]["metadata"]["labels"]["app"], "db");

    let by_label = api.watch_lines(&watch("labelSelector=app%3Dweb"), 3, Duration::from_secs(3)).await;
    assert_eq!(summary(&by_label), [("MODIFIED".into(), bound_rv), modified(&running), ("DELETED".into(), rv(&relabelled))]);
    assert_eq!(by_label[2]["object"]["metadata"]["labels"]["app"], "web");

    let by_both = api.watch_lines(&watch("labelSelector=app%3Dweb&fieldSelector=status.phase%3DRunning"), 2, Duration::from_secs(3)).await;
    assert_eq!(summary(&by_both), [("ADDED".into(), rv(&running)), ("DELETED".into(), rv(&relabelled))]);
}
