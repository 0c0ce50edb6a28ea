//! Benchmarks of the controller-manager's garbage collector and node IPAM
//! controller, run by `just bench` (never as timed tests), each against a
//! real etcd and our apiserver on this machine, the controllers in-process:
//! - background deletion: an owner with 2 000 dependent ConfigMaps deleted,
//!   until the last dependent is gone;
//! - foreground deletion: the same, until the owner itself is gone;
//! - node IPAM: 1 000 Nodes created, until the last has its pod CIDR.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kubelab_scenarios::apiserver::TestApi;
use serde_json::json;
use tokio::sync::Semaphore;

const DEPENDENTS: usize = 2_000;
const NODES: usize = 1_000;
const CONCURRENCY: usize = 32;
const DEADLINE: Duration = Duration::from_secs(300);

/// Creates `count` objects made by `object(i)` with up to CONCURRENCY
/// requests in flight.
async fn create_all<K>(api: &Api<K>, count: usize, object: impl Fn(usize) -> K)
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + k8s_openapi::serde::Serialize + std::fmt::Debug + Send + Sync + 'static,
{
    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for i in 0..count {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (api, object) = (api.clone(), object(i));
        tasks.push(tokio::spawn(async move {
            api.create(&PostParams::default(), &object).await.unwrap();
            drop(permit);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Polls `left` until it answers 0; how long that took.
async fn until_none(what: &str, mut left: impl AsyncFnMut() -> usize) -> Duration {
    let started = Instant::now();
    loop {
        let n = left().await;
        if n == 0 {
            return started.elapsed();
        }
        assert!(started.elapsed() < DEADLINE, "{what}: {n} left after {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cascade(api: &TestApi, policy: &str) -> Duration {
    let client = api.client().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap();
    let owner = maps.create(&PostParams::default(), &owner).await.unwrap();
    let uid = owner.metadata.uid.unwrap();
    create_all(&maps, DEPENDENTS, |i| {
        serde_json::from_value(json!({"metadata": {"name": format!("dep-{i}"), "labels": {"bench": "gc"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid, "blockOwnerDeletion": true}]}}))
        .unwrap()
    })
    .await;
    let params = if policy == "Foreground" { DeleteParams::foreground() } else { DeleteParams::background() };
    let started = Instant::now();
    maps.delete("owner", &params).await.unwrap();
    let dependents = ListParams::default().labels("bench=gc");
    let maps = &maps;
    let dependents = &dependents;
    until_none("dependents", async || maps.list_metadata(dependents).await.unwrap().items.len()).await;
    until_none("owner", async || usize::from(maps.get_opt("owner").await.unwrap().is_some())).await;
    started.elapsed()
}

pub fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let gc = ["garbage-collector-controller"];
    for policy in ["Background", "Foreground"] {
        let api = TestApi::start();
        let _controllers = api.controller_manager_with(&gc, controller_manager::Settings::default());
        let took = runtime.block_on(cascade(&api, policy));
        println!(
            "garbage collector, {policy} deletion of an owner of {DEPENDENTS} ConfigMaps: {took:.2?} ({:.0} dependents/s)",
            DEPENDENTS as f64 / took.as_secs_f64()
        );
    }

    let api = TestApi::start();
    let node_ipam =
        controller_manager::node_ipam::Settings { allocate_node_cidrs: true, cluster_cidrs: vec!["10.0.0.0/8".parse().unwrap()], ..Default::default() };
    let _controllers = api.controller_manager_with(&["node-ipam-controller"], controller_manager::Settings { node_ipam, ..Default::default() });
    let took = runtime.block_on(async {
        let nodes: Api<Node> = Api::all(api.client().await);
        let started = Instant::now();
        create_all(&nodes, NODES, |i| serde_json::from_value(json!({"metadata": {"name": format!("node-{i:04}")}})).unwrap()).await;
        let nodes = &nodes;
        until_none("Nodes without a pod CIDR", async || {
            nodes.list(&ListParams::default()).await.unwrap().items.iter().filter(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none()).count()
        })
        .await;
        started.elapsed()
    });
    println!("node IPAM, {NODES} Nodes created until all have a pod CIDR: {took:.2?} ({:.0} Nodes/s, creation included)", NODES as f64 / took.as_secs_f64());
}
