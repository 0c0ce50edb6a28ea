//! Benchmarks of the scheduler, run by `just bench` (never as timed tests):
//! the real apiserver and scheduler binaries, each in its own process, over
//! a real etcd, all on this machine. For 1 000 and 5 000 Node objects
//! (Ready, 32 cores, 256 GiB, 110 pods each), pods are created while no
//! scheduler runs; then the scheduler starts and binds them all:
//! - throughput: pods bound per second, from the first binding to the last
//!   (target: at least 1 000 pods/s at both sizes; upstream's
//!   scheduler_perf asks 680 pods/s for 10 000 pods on 5 000 nodes). The
//!   scheduler's client has no QPS limit (kube-rs has none);
//! - the time from the scheduler's start to the last binding (its first
//!   list of nodes and pods included);
//! - the scheduler's memory (RSS) holding 5 000 nodes and 10 000 pods.

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kubelab::kubeconfig;
use kubelab_scenarios::apiserver::{Options, TestApi};
use serde_json::json;
use tokio::sync::Semaphore;

const CONCURRENCY: usize = 32;
/// (nodes, pods) of each run.
const RUNS: [(usize, usize); 2] = [(1_000, 5_000), (5_000, 10_000)];
const NAMESPACE: &str = "bench";

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    kb / 1024.0
}

/// Runs `count` requests made by `request(i)`, `CONCURRENCY` at a time.
async fn in_parallel<F, Fut>(count: usize, request: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..count {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let work = request(i);
        tasks.push(tokio::spawn(async move {
            work.await;
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn create_nodes(client: &kube::Client, count: usize) {
    in_parallel(count, |i| {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        async move {
            let name = format!("node-{i:05}");
            let node = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
            }))
            .unwrap();
            nodes.create(&PostParams::default(), &node).await.unwrap();
            let resources = json!({"cpu": "32", "memory": "256Gi", "pods": "110"});
            let status = json!({"status": {"capacity": resources, "allocatable": resources, "conditions": [{"type": "Ready", "status": "True"}]}});
            nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
        }
    })
    .await
}

async fn create_pods(client: &kube::Client, count: usize) {
    in_parallel(count, |i| {
        let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
        async move {
            let pod = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("pod-{i:05}"), "namespace": NAMESPACE, "labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "main", "image": "registry.example/bench/app:1.0",
                         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
            }))
            .unwrap();
            pods.create(&PostParams::default(), &pod).await.unwrap();
        }
    })
    .await
}

/// The scheduler binary as the kube-scheduler identity of `api`'s PKI.
fn start_scheduler(api: &TestApi) -> Child {
    let binary = kubelab_scenarios::repo().release_dir().join("scheduler");
    assert!(binary.is_file(), "build it first: just build");
    let pki = api.pki_dir();
    let read = |file: &str| std::fs::read_to_string(pki.join(file)).unwrap();
    let identity = kubelab::pki::SCHEDULER;
    let config = kubeconfig::for_lab("bench", &api.url, None, &read("ca.crt"), &read(&format!("{identity}.crt")), &read(&format!("{identity}.key")));
    let path = api.dir.path().join("scheduler.conf");
    std::fs::write(&path, config.to_yaml()).unwrap();
    Command::new(binary)
        .args([format!("--kubeconfig={}", path.display()), "--secure-port=0".into()])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("the scheduler runs")
}

/// Waits until `count` pods of the namespace are bound, from the watch
/// after `resource_version`; the times of the first and last binding.
async fn bound(client: &kube::Client, resource_version: &str, count: usize) -> (Instant, Instant) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut seen: HashSet<String> = HashSet::new();
    let (mut first, mut last) = (None, Instant::now());
    let mut version = resource_version.to_string();
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count} pods were bound within 10 minutes", seen.len());
        let mut stream = pods.watch(&WatchParams::default().timeout(290), &version).await.unwrap().boxed();
        while let Some(event) = stream.next().await {
            let pod = match event.unwrap() {
                WatchEvent::Modified(pod) => pod,
                WatchEvent::Bookmark(b) => {
                    version = b.metadata.resource_version;
                    continue;
                }
                WatchEvent::Error(e) => panic!("the watch failed: {e:?}"),
                _ => continue,
            };
            version = pod.metadata.resource_version.clone().unwrap_or_default();
            if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() && seen.insert(pod.metadata.name.clone().unwrap()) {
                last = Instant::now();
                first.get_or_insert(last);
                if seen.len() == count {
                    break;
                }
            }
        }
    }
    (first.expect("pods were bound"), last)
}

#[tokio::main]
pub async fn main() {
    let apiserver = kubelab_scenarios::repo().release_dir().join("apiserver");
    assert!(apiserver.is_file(), "build it first: just build");
    for (nodes, pods) in RUNS {
        let api = TestApi::start_with(Options { binary: Some(apiserver.clone()), ..Default::default() });
        let client = api.client().await;
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
        api.raw("POST", "/api/v1/namespaces", "application/json", serde_json::to_vec(&ns).unwrap()).await;
        create_nodes(&client, nodes).await;
        create_pods(&client, pods).await;
        let listed = Api::<Pod>::namespaced(client.clone(), NAMESPACE).list_metadata(&ListParams::default().limit(1)).await.unwrap();
        let version = listed.metadata.resource_version.unwrap_or_default();

        let started = Instant::now();
        let mut scheduler = start_scheduler(&api);
        let (first, last) = bound(&client, &version, pods).await;
        let rate = pods as f64 / last.duration_since(first).as_secs_f64().max(1e-3);
        println!(
            "scheduler, {nodes} nodes: {pods} pods bound at {rate:.0} pods/s from first to last binding (target >= 1000); \
             {:.2} s from its start to the last binding (its first list included)",
            last.duration_since(started).as_secs_f64()
        );
        // Let the watch catch up on the last bindings before measuring.
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!("scheduler RSS holding {nodes} nodes and {pods} pods: {:.1} MB", rss_mb(scheduler.id()));
        // Only the scheduler this benchmark started, by its own handle.
        let _ = scheduler.kill();
        let _ = scheduler.wait();
    }
}
