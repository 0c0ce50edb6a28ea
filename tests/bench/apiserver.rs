//! Benchmarks of the apiserver, run by `just bench` (never as timed tests),
//! against the real binary in its own process and a real etcd, all on this
//! machine and in one run:
//! - pod creates per second through the apiserver, beside raw etcd
//!   transactions of the same size (target: at least half);
//! - watch event delivery with 100 watchers (target: p99 under 10 ms);
//! - watch event delivery with 1 000 watchers each filtered by
//!   `spec.nodeName`, as every kubelet watches (target: p99 under 10 ms);
//! - LIST of 10 000 pods (target: under 200 ms);
//! - the apiserver's memory holding 10 000 pods (target: under 100 MB).

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use http_body_util::BodyExt;
use kubelab_scenarios::apiserver::{Options, TestApi};
use serde_json::json;
use tokio::sync::Semaphore;

const CONCURRENCY: usize = 32;
const THROUGHPUT_N: usize = 2_000;
const TOTAL_PODS: usize = 10_000;
const WATCHERS: usize = 100;
const WATCHED_EVENTS: usize = 100;
const NODE_WATCHERS: usize = 1_000;
const NODE_EVENTS: usize = 300;

fn pod_json(name: &str, namespace: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{"name": "main", "image": "registry.example/bench/app:1.0", "ports": [{"containerPort": 8080}],
                  "env": [{"name": "MODE", "value": "bench"}], "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    })
}

fn pod_on_node(name: &str, namespace: &str, node: &str) -> serde_json::Value {
    let mut pod = pod_json(name, namespace);
    pod["spec"]["nodeName"] = json!(node);
    pod
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    kb / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn create_pods(api: &TestApi, namespace: &str, from: usize, count: usize) -> Duration {
    let client = api.client().await;
    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in from..from + count {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        let body = serde_json::to_vec(&pod_json(&format!("pod-{i:05}"), namespace)).unwrap();
        let path = format!("/api/v1/namespaces/{namespace}/pods");
        tasks.push(tokio::spawn(async move {
            let request = http::Request::post(path).header("content-type", "application/json").body(kube::client::Body::from(body)).unwrap();
            let response = client.send(request).await.unwrap();
            assert_eq!(response.status().as_u16(), 201);
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

/// `value`: what the apiserver stores for one pod (defaults and
/// managedFields included), so etcd does the same work both ways.
async fn raw_etcd_txns(url: &str, value: Vec<u8>) -> Duration {
    let client = etcd_client::Client::connect([url], None).await.unwrap();
    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..THROUGHPUT_N {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let mut kv = client.kv_client();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/bench/raw/{i:05}");
            let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(key, value, None)]);
            assert!(kv.txn(txn).await.unwrap().succeeded());
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

/// Reads a watch's lines as they come and passes on each event's object
/// name with the moment its frame arrived; with `node`, every pod must be
/// on it.
fn forward_events(
    response: http::Response<kube::client::Body>,
    tx: tokio::sync::mpsc::UnboundedSender<(String, Instant)>,
    node: Option<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut body = response.into_body();
        let mut buffer = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let now = Instant::now();
            if let Ok(data) = frame.into_data() {
                buffer.extend_from_slice(&data);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    let event: serde_json::Value = serde_json::from_slice(&line).unwrap();
                    if let Some(node) = &node {
                        assert_eq!(event["object"]["spec"]["nodeName"].as_str(), Some(node.as_str()), "a watcher saw a pod of another node");
                    }
                    let name = event["object"]["metadata"]["name"].as_str().unwrap_or("").to_string();
                    let _ = tx.send((name, now));
                }
            }
        }
    })
}

/// For each event received (up to `expected`, or until 5 s pass without
/// one, or 30 s in all), the time from its object's create response;
/// sorted. An event that came before the response counts as 0.
async fn collect_latencies(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Instant)>,
    committed: &std::collections::HashMap<String, Instant>,
    expected: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies.len() < expected && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some((name, at))) => {
                if let Some(c) = committed.get(&name) {
                    latencies.push(at.saturating_duration_since(*c));
                }
            }
            _ => break,
        }
    }
    latencies.sort();
    latencies
}

/// Watch delivery as kubelets see it: `NODE_WATCHERS` watchers, one per
/// node, each with `fieldSelector=spec.nodeName=<its node>`; pods are
/// created on the nodes in turn, so each event matches one watcher and is
/// filtered out for all the others. Timed from the create's response to
/// the event at the watcher of its node. Returns the sorted latencies.
async fn watch_delivery_by_node(api: &TestApi) -> Vec<Duration> {
    let client = api.client().await;
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "on-nodes"}});
    api.raw("POST", "/api/v1/namespaces", "application/json", serde_json::to_vec(&ns).unwrap()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut watchers = Vec::new();
    for node in 0..NODE_WATCHERS {
        let client = client.clone();
        let tx = tx.clone();
        let path = format!("/api/v1/namespaces/on-nodes/pods?watch=1&resourceVersion=0&fieldSelector=spec.nodeName%3Dnode-{node:04}");
        let request = http::Request::get(path).body(kube::client::Body::empty()).unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        watchers.push(forward_events(response, tx, Some(format!("node-{node:04}"))));
    }
    let mut committed = std::collections::HashMap::new();
    for i in 0..NODE_EVENTS {
        let name = format!("n-{i:04}");
        // Spread over the nodes, not in order, so watchers far apart match.
        let node = format!("node-{:04}", (i * 337) % NODE_WATCHERS);
        let body = serde_json::to_vec(&pod_on_node(&name, "on-nodes", &node)).unwrap();
        let request =
            http::Request::post("/api/v1/namespaces/on-nodes/pods").header("content-type", "application/json").body(kube::client::Body::from(body)).unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 201);
        committed.insert(name, Instant::now());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let latencies = collect_latencies(&mut rx, &committed, NODE_EVENTS).await;
    for w in &watchers {
        w.abort();
    }
    latencies
}

#[tokio::main]
pub async fn main() {
    let binary = kubelab_scenarios::repo().release_dir().join("apiserver");
    assert!(binary.is_file(), "build it first: just build");
    let api = TestApi::start_with(Options { binary: Some(binary), ..Default::default() });
    let pid = api.apiserver_pid();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}});
    api.raw("POST", "/api/v1/namespaces", "application/json", serde_json::to_vec(&ns).unwrap()).await;

    // Throughput, same sizes and concurrency, one after the other. The raw
    // transactions write what the apiserver stores for a pod, read back
    // from etcd.
    create_pods(&api, "default", 0, 1).await;
    let etcd = etcd_client::Client::connect([api.etcd_url.as_str()], None).await.unwrap();
    let stored = etcd.kv_client().get("/registry/pods/default/pod-00000", None).await.unwrap();
    let value = stored.kvs().first().expect("the sample pod is stored").value().to_vec();
    let raw = raw_etcd_txns(&api.etcd_url, value.clone()).await;
    let through = create_pods(&api, "bench", 0, THROUGHPUT_N).await;
    let raw_rate = THROUGHPUT_N as f64 / raw.as_secs_f64();
    let api_rate = THROUGHPUT_N as f64 / through.as_secs_f64();
    println!(
        "creates/s: raw etcd txn {raw_rate:>7.0}   pods via apiserver {api_rate:>7.0}   ratio {:.2} (target >= 0.50, concurrency {CONCURRENCY}, {} bytes stored per pod)",
        api_rate / raw_rate,
        value.len()
    );

    // Watch delivery: 100 watchers on a namespace of their own; each create
    // is timed from the moment its response arrives to each watcher's event.
    let client = api.client().await;
    let wns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "watched"}});
    api.raw("POST", "/api/v1/namespaces", "application/json", serde_json::to_vec(&wns).unwrap()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let client = client.clone();
        let tx = tx.clone();
        let request = http::Request::get("/api/v1/namespaces/watched/pods?watch=1&resourceVersion=0").body(kube::client::Body::empty()).unwrap();
        let response = client.send(request).await.unwrap();
        watchers.push(forward_events(response, tx, None));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut committed = std::collections::HashMap::new();
    for i in 0..WATCHED_EVENTS {
        let name = format!("w-{i:04}");
        let body = serde_json::to_vec(&pod_json(&name, "watched")).unwrap();
        let request =
            http::Request::post("/api/v1/namespaces/watched/pods").header("content-type", "application/json").body(kube::client::Body::from(body)).unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 201);
        committed.insert(name, Instant::now());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let latencies = collect_latencies(&mut rx, &committed, WATCHERS * WATCHED_EVENTS).await;
    for w in &watchers {
        w.abort();
    }
    println!(
        "watch delivery, {WATCHERS} watchers x {WATCHED_EVENTS} events ({} received): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms (target p99 < 10 ms)",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );

    let latencies = watch_delivery_by_node(&api).await;
    println!(
        "watch delivery, {NODE_WATCHERS} watchers by spec.nodeName x {NODE_EVENTS} events, one node each ({} received): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms (target p99 < 10 ms)",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );

    // Up to 10 000 pods, then LIST them all.
    let have = THROUGHPUT_N + WATCHED_EVENTS + NODE_EVENTS;
    create_pods(&api, "bench", THROUGHPUT_N, TOTAL_PODS - have).await;
    let mut lists = Vec::new();
    let mut items = 0;
    for _ in 0..5 {
        let request = http::Request::get("/api/v1/pods").body(kube::client::Body::empty()).unwrap();
        let started = Instant::now();
        let response = client.send(request).await.unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        lists.push(started.elapsed());
        let list: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        items = list["items"].as_array().unwrap().len();
    }
    lists.sort();
    println!(
        "LIST of {items} pods: median {:.0} ms  min {:.0} ms  max {:.0} ms (target < 200 ms, 5 runs)",
        lists[2].as_secs_f64() * 1e3,
        lists[0].as_secs_f64() * 1e3,
        lists[4].as_secs_f64() * 1e3
    );
    // The watch cache of pods holds them all by now.
    println!("apiserver RSS holding {items} pods: {:.1} MB (target < 100 MB)", rss_mb(pid));
}
