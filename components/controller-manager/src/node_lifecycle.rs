//! The node lifecycle controller, as upstream's: a node whose kubelet
//! stops reporting (neither its Lease in `kube-node-lease` is renewed nor
//! its Ready condition's heartbeat moves) for the grace period gets its
//! conditions set to Unknown, its pods marked not ready, and the
//! `node.kubernetes.io/unreachable` taints (NoSchedule, so nothing new
//! lands there; NoExecute, so the taint eviction controller moves its
//! pods). A node that reports NotReady gets the `not-ready` taints; a
//! Ready node has neither.
//!
//! Silence is measured on this controller's clock, from when it last saw
//! the Lease or the heartbeat change, as upstream does, so clocks need
//! not agree.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use component_base::events::{self, Recorder};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// Upstream's `--node-monitor-period`.
pub const DEFAULT_MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// Upstream's `--node-monitor-grace-period` (50 s since 1.32).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(50);
/// How long a new node may take to report at all (upstream's
/// `--node-startup-grace-period`).
pub const DEFAULT_STARTUP_GRACE_PERIOD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub monitor_period: Duration,
    pub grace_period: Duration,
    pub startup_grace_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings { monitor_period: DEFAULT_MONITOR_PERIOD, grace_period: DEFAULT_GRACE_PERIOD, startup_grace_period: DEFAULT_STARTUP_GRACE_PERIOD }
    }
}

/// What was last seen of a node's kubelet, and when it changed.
struct Health {
    heartbeat: Option<Timestamp>,
    lease_renewed: Option<Timestamp>,
    changed: Instant,
}

/// Runs the node lifecycle controller until its watches end.
pub async fn run(client: Client, timings: Timings) {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(node_writer).for_each(|_| async {});
    let lease_api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease_events = watcher(lease_api, watcher::Config::default()).default_backoff().reflect(lease_writer).for_each(|_| async {});
    let recorder = Recorder::new(client.clone(), "node-controller", None);
    let monitor = monitor(client, nodes, leases, recorder, timings);
    tokio::select! {
        _ = node_events => {}
        _ = lease_events => {}
        _ = monitor => {}
    }
}

async fn monitor(client: Client, nodes: Store<Node>, leases: Store<Lease>, recorder: Recorder, timings: Timings) {
    let _ = nodes.wait_until_ready().await;
    let _ = leases.wait_until_ready().await;
    let mut health: HashMap<String, Health> = HashMap::new();
    let mut ticker = tokio::time::interval(timings.monitor_period);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let current = nodes.state();
        health.retain(|name, _| current.iter().any(|n| &n.name_any() == name));
        for node in current.iter() {
            let name = node.name_any();
            let heartbeat = ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
            let lease_renewed = leases.state().iter().find(|l| l.name_any() == name).and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
            let entry = health.entry(name.clone()).or_insert(Health { heartbeat, lease_renewed, changed: now });
            if entry.heartbeat != heartbeat || entry.lease_renewed != lease_renewed {
                *entry = Health { heartbeat, lease_renewed, changed: now };
            }
            let never_reported = ready_condition(node).is_none();
            let grace = if never_reported { timings.startup_grace_period } else { timings.grace_period };
            let silent = now.duration_since(entry.changed) > grace;
            if let Err(e) = sync_node(&client, node, silent, never_reported, &recorder).await {
                tracing::warn!(node = %name, "node lifecycle sync failed: {e}");
            }
        }
    }
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Conditions to Unknown when the kubelet is silent; taints to match the
/// Ready condition.
async fn sync_node(client: &Client, node: &Node, silent: bool, never_reported: bool, recorder: &Recorder) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = node.name_any();
    let mut ready = ready_condition(node).map(|c| c.status.clone()).unwrap_or_else(|| "Unknown".into());
    if silent && (never_reported || ready != "Unknown") {
        let now = Time(Timestamp::now());
        let (reason, message) = if never_reported {
            ("NodeStatusNeverUpdated", "Kubelet never posted node status.")
        } else {
            ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        };
        let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conditions.iter_mut().find(|c| c.type_ == type_) {
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some(reason.into());
                    c.message = Some(message.into());
                    c.last_transition_time = Some(now.clone());
                }
                Some(_) => {}
                None => conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    last_transition_time: Some(now.clone()),
                    last_heartbeat_time: None,
                }),
            }
        }
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        recorder.normal(events::reference(node), "NodeNotReady", format!("Node {name} status is now: NodeNotReady"));
        mark_pods_not_ready(client, &name).await?;
        ready = "Unknown".into();
    }
    // The taints the Ready condition calls for, the others removed.
    let wanted: &[&str] = match ready.as_str() {
        "True" => &[],
        "False" => &[NOT_READY],
        _ => &[UNREACHABLE],
    };
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let mut next: Vec<Taint> = taints.iter().filter(|t| !(t.key == UNREACHABLE || t.key == NOT_READY) || wanted.contains(&t.key.as_str())).cloned().collect();
    for key in wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next.iter().any(|t| t.key == *key && t.effect == effect) {
                let time_added = (effect == "NoExecute").then(|| Time(Timestamp::now()));
                next.push(Taint { key: (*key).into(), effect: effect.into(), value: None, time_added });
            }
        }
    }
    if next != taints {
        let patch = serde_json::json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": next}});
        nodes.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(())
}

/// Pods of a silent node are not ready: nobody vouches for them, so
/// their Services stop sending them traffic (upstream's MarkPodsNotReady).
async fn mark_pods_not_ready(client: &Client, node: &str) -> Result<(), kube::Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?;
    for pod in on_node.items {
        let Some(mut conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else { continue };
        let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready" && c.status != "False") else { continue };
        ready.status = "False".into();
        ready.last_transition_time = Some(Time(Timestamp::now()));
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
