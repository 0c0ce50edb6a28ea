//! From a Service's creation to its name resolving in a pod, on `3-node`,
//! run by `just bench` (never as a timed test; target: p99 under 500 ms).
//!
//! A labhost pod asks its own resolver (getaddrinfo, resolv.conf's search
//! path, so `svc-N` is first asked as `svc-N.default.svc.cluster.local`)
//! for `svc-0`, `svc-1`, ... in turn, every 2 ms, and prints the moment
//! each one resolved. The bench creates `svc-N` through the API, noting the
//! moment just before the request, and waits for the pod's line before
//! creating the next: every step of the chain is in the figure (apiserver
//! write, watch event to both cluster DNS replicas, zone rebuild, answer).
//! Pod and bench read the same clock, the machine's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{LogParams, PostParams};
use kube::Api;
use kubelab_scenarios::cluster::Cluster;
use kubelab_scenarios::lab_name;
use kubelab_scenarios::wait::until;
use serde_json::json;

const SERVICES: usize = 100;
const TARGET: Duration = Duration::from_millis(500);

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// The millisecond the resolver pod printed for `name`, once it has.
async fn resolved_at(pods: &Api<Pod>, name: &str) -> u128 {
    until(&format!("the resolver pod's line for {name}"), || async {
        let logs = pods.logs("resolver", &LogParams::default()).await.map_err(|e| e.to_string())?;
        logs.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| format!("not resolved yet; the log ends: {:?}", logs.lines().last()))
    })
    .await
}

#[tokio::main]
pub async fn main() {
    let (lab, _guard) = Cluster::up("3-node", lab_name("bench-svc-dns")).await.expect("lab up 3-node");
    let config = kubelab::lab::kubeconfig(&lab.engine, &lab.name).await.expect("the lab's kubeconfig");
    let client = kubelab::addons::client(&config).await.expect("a client of the lab");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client, "default");

    let names: Vec<String> = (0..SERVICES).map(|i| format!("svc-{i}")).collect();
    let mut args = vec!["resolve".to_string(), "--every-ms".into(), "2".into()];
    args.extend(names.iter().cloned());
    let resolver: Pod = serde_json::from_value(json!({
        "metadata": {"name": "resolver"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "resolver", "image": "kubelab/labhost", "args": args}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &resolver).await.expect("the resolver pod is created");
    until("the resolver pod asking for its first name", || async {
        let logs = pods.logs("resolver", &LogParams::default()).await.map_err(|e| e.to_string())?;
        if logs.contains("resolving") {
            Ok(())
        } else {
            Err(format!("its log so far: {logs:?}"))
        }
    })
    .await;

    let mut samples = Vec::new();
    for name in &names {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"app": "nothing"}, "ports": [{"port": 80}]},
        }))
        .unwrap();
        let created = now_ms();
        services.create(&PostParams::default(), &service).await.expect("the Service is created");
        let resolved = resolved_at(&pods, name).await;
        samples.push(Duration::from_millis(resolved.saturating_sub(created) as u64));
    }

    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let (p50, p99) = (at(0.50), at(0.99));
    let verdict = if p99 < TARGET { "within" } else { "OVER" };
    println!(
        "{:<40} p50 {:>4} ms  p99 {:>4} ms  max {:>4} ms  ({verdict} target p99 {} ms, {SERVICES} Services)",
        "Service created -> its name resolves",
        p50.as_millis(),
        p99.as_millis(),
        samples[samples.len() - 1].as_millis(),
        TARGET.as_millis()
    );
}
