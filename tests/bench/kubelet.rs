//! The kubelet's figures on `3-node`, run by `just bench` (never as timed
//! tests; the README keeps the results):
//!
//! - **pod startup**: a Deployment of 30 labhost pods, then one of 300;
//!   each pod's time from when a watch first sees it (its creation by the
//!   ReplicaSet controller, within a watch event's delay) to when the same
//!   watch first sees it Ready, as upstream's pod startup SLI measures it
//!   (targets p99 < 1 s at 30 and < 3 s at 300; Kubernetes' SLO is 5 s),
//!   and the whole: the Deployment's create request to its last pod Ready;
//! - **port-forward**: a 64 MiB file read through `kubectl port-forward`
//!   (the apiserver and the kubelet in the path), beside `kubectl cp` of the
//!   same file (exec and tar through the same path);
//! - **memory**: the lab's working set (as `docker stats` counts it: usage
//!   less inactive file cache) of its containers and of the pods' cgroups,
//!   idle and with 100 pods running (target idle < 200 MB).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::Api;
use kubelab_scenarios::cluster::Cluster;
use kubelab_scenarios::lab_name;
use kubelab_scenarios::port_forward;
use kubelab_scenarios::wait::until;
use serde_json::json;

const FILE_MIB: usize = 64;

fn ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn at(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// A Deployment of `replicas` labhost pods labelled `app=<name>`.
fn labhost_deployment(name: &str, replicas: usize) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "labhost", "image": "kubelab/labhost"}]}},
        },
    }))
    .unwrap()
}

/// Deletes Deployment `name` and waits until its pods are gone, so the
/// next measurement starts on an idle lab.
async fn delete_and_wait(client: &kube::Client, name: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    deployments.delete(name, &DeleteParams::default()).await.expect("the Deployment is deleted");
    let selector = format!("app={name}");
    until(&format!("the pods of {name} gone"), || async {
        let left = pods.list(&ListParams::default().labels(&selector)).await.map_err(|e| e.to_string())?.items.len();
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} left"))
        }
    })
    .await;
}

/// Creates a Deployment of `replicas` labhost pods and measures each pod's
/// startup through one watch; deletes it and waits for its pods to go.
async fn pod_startup(client: &kube::Client, replicas: usize, target: Duration) {
    let name = format!("startup-{replicas}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let selector = format!("app={name}");
    let mut events = watcher(pods.clone(), watcher::Config::default().labels(&selector)).boxed();
    // The watch is listening before anything is created.
    loop {
        match tokio::time::timeout(Duration::from_secs(30), events.next()).await {
            Ok(Some(Ok(watcher::Event::InitDone))) => break,
            Ok(Some(_)) => continue,
            other => panic!("the pod watch did not start: {other:?}"),
        }
    }
    let created = Instant::now();
    deployments.create(&PostParams::default(), &labhost_deployment(&name, replicas)).await.expect("the Deployment is created");
    let (mut seen, mut bound, mut readied) = (BTreeMap::<String, Instant>::new(), BTreeMap::<String, Instant>::new(), BTreeMap::<String, Instant>::new());
    let deadline = created + Duration::from_secs(600);
    while readied.len() < replicas {
        let event = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {replicas} pods Ready after 600 s", readied.len()))
            .expect("the watch goes on");
        let Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) = event else { continue };
        let now = Instant::now();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        seen.entry(pod_name.clone()).or_insert(now);
        if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
            bound.entry(pod_name.clone()).or_insert(now);
        }
        if ready(&pod) {
            readied.entry(pod_name).or_insert(now);
        }
    }
    let all = created.elapsed();
    let mut samples: Vec<Duration> = readied.iter().map(|(n, r)| r.saturating_duration_since(seen[n])).collect();
    samples.sort();
    let (p50, p99) = (at(&samples, 0.50), at(&samples, 0.99));
    let verdict = if p99 < target { "within" } else { "OVER" };
    println!(
        "{:<40} p50 {:>5} ms  p99 {:>5} ms  max {:>5} ms  all Ready {:>6} ms after create  ({verdict} target p99 {} ms)",
        format!("pod startup, {replicas} pods"),
        p50.as_millis(),
        p99.as_millis(),
        samples[samples.len() - 1].as_millis(),
        all.as_millis(),
        target.as_millis()
    );
    // Where the time went: scheduling (seen → bound) and the kubelet (bound → Ready).
    let mut scheduling: Vec<Duration> = readied.keys().map(|n| bound[n].saturating_duration_since(seen[n])).collect();
    let mut kubelet: Vec<Duration> = readied.iter().map(|(n, r)| r.saturating_duration_since(bound[n])).collect();
    scheduling.sort();
    kubelet.sort();
    for (part, samples) in [("  of which created -> bound", &scheduling), ("  of which bound -> Ready", &kubelet)] {
        println!("{part:<40} p50 {:>5} ms  p99 {:>5} ms", at(samples, 0.5).as_millis(), at(samples, 0.99).as_millis());
    }
    delete_and_wait(client, &name).await;
}

/// port-forward and cp of the same file: MB/s of each.
async fn port_forward_and_cp(lab: &Cluster) {
    let serve = format!("mkdir -p /www && head -c {} /dev/urandom > /www/big && httpd -p 80 -h /www && touch /www/ready && exec sleep 86400", FILE_MIB << 20);
    lab.ok(&["run", "bench-files", "--image=busybox", "--restart=Never", "--", "sh", "-c", &serve]);
    until("bench-files serving its file", || async {
        let (code, out) = lab.k(&["exec", "bench-files", "--", "ls", "/www/ready"]);
        if code == 0 {
            Ok(())
        } else {
            Err(out)
        }
    })
    .await;
    let forward = port_forward::forward(&lab.kubeconfig, "pod/bench-files", &[":80"]);
    let started = Instant::now();
    let body = port_forward::get(forward.ports[0].0, "/big");
    let forwarded = started.elapsed();
    assert_eq!(body.len(), FILE_MIB << 20, "the whole file came");
    drop(forward);

    let copy = tempfile::tempdir().unwrap();
    let target = copy.path().join("big");
    let started = Instant::now();
    lab.ok(&["cp", "default/bench-files:/www/big", target.to_str().unwrap()]);
    let copied = started.elapsed();
    assert_eq!(std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0), (FILE_MIB << 20) as u64, "kubectl cp copied the whole file");

    let rate = |d: Duration| (FILE_MIB as f64) * 1.048_576 / d.as_secs_f64();
    println!("{:<40} {:>6.1} MB/s ({FILE_MIB} MiB in {:.2} s)", "kubectl port-forward, one pod", rate(forwarded), forwarded.as_secs_f64());
    println!("{:<40} {:>6.1} MB/s ({FILE_MIB} MiB in {:.2} s)", "kubectl cp, the same file", rate(copied), copied.as_secs_f64());
    lab.ok(&["delete", "pod", "bench-files", "--grace-period=1"]);
}

/// The working set of one v1 memory cgroup (host path), as docker stats
/// counts it: usage less inactive file cache.
fn working_set(cgroup: &Path) -> u64 {
    let usage: u64 = std::fs::read_to_string(cgroup.join("memory.usage_in_bytes")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let stat = std::fs::read_to_string(cgroup.join("memory.stat")).unwrap_or_default();
    let inactive: u64 = stat.lines().find_map(|l| l.strip_prefix("total_inactive_file ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    usage.saturating_sub(inactive)
}

/// The lab's memory: its containers' cgroups and the pods' (the runtime
/// makes those in the host's hierarchy, under `kubepods`, outside the
/// node containers'; the bench's lab is the only one running). MB.
async fn lab_memory(lab: &Cluster) -> (f64, f64) {
    let found = lab.engine.containers(Some(&lab.name)).await.expect("the lab's containers are listed");
    let ids: Vec<String> = found.into_iter().filter(|c| c.running).map(|c| c.id).collect();
    assert!(!ids.is_empty(), "the lab has running containers");
    let root = Path::new("/sys/fs/cgroup/memory");
    let containers: u64 = ids.iter().map(|id| working_set(&root.join("docker").join(id))).sum();
    // Each pod's own cgroup, not kubepods as a whole: charges of pods
    // already gone (this lab's or earlier labs') are moved up to it.
    let pods: u64 = std::fs::read_dir(root.join("kubepods"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("pod"))
        .map(|e| working_set(&e.path()))
        .sum();
    (containers as f64 / 1e6, pods as f64 / 1e6)
}

async fn memory(lab: &Cluster, client: &kube::Client) {
    let (containers, pods) = lab_memory(lab).await;
    println!("{:<40} {:>6.0} MB (containers {containers:.0} MB, pods {pods:.0} MB; target < 200 MB)", "lab memory, idle", containers + pods);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &labhost_deployment("memory", 100)).await.expect("the Deployment is created");
    until("100 pods ready", || async {
        let d = deployments.get("memory").await.map_err(|e| e.to_string())?;
        let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready == 100 {
            Ok(())
        } else {
            Err(format!("{ready} ready"))
        }
    })
    .await;
    let (containers, pods) = lab_memory(lab).await;
    println!("{:<40} {:>6.0} MB (containers {containers:.0} MB, pods {pods:.0} MB)", "lab memory, 100 labhost pods", containers + pods);
    delete_and_wait(client, "memory").await;
}

#[tokio::main]
pub async fn main() {
    let (lab, _guard) = Cluster::up("3-node", lab_name("bench-kubelet")).await.expect("lab up 3-node");
    let config = kubelab::lab::kubeconfig(&lab.engine, &lab.name).await.expect("the lab's kubeconfig");
    let client = kubelab::addons::client(&config).await.expect("a client of the lab");
    // KUBELAB_BENCH_ONLY=startup (or memory, port-forward) runs one part.
    let only = std::env::var("KUBELAB_BENCH_ONLY").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only == name;
    if part("memory") {
        memory(&lab, &client).await;
    }
    if part("startup") {
        pod_startup(&client, 30, Duration::from_secs(1)).await;
        pod_startup(&client, 300, Duration::from_secs(3)).await;
    }
    if part("port-forward") {
        port_forward_and_cp(&lab).await;
    }
}
