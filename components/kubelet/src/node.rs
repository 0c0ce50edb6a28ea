//! The Node: registered at start (or found and updated), its status kept
//! true to fact every `--node-status-update-frequency`, and its Lease in
//! `kube-node-lease` renewed every quarter of the lease's duration, as
//! upstream's kubelet does.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::Kubelet;

/// The version the Node reports (kubectl's VERSION column): the API
/// version kubelab serves, marked as ours.
pub const KUBELET_VERSION: &str = "v1.33.1-kubelab";
pub const RUNTIME_VERSION: &str = "kubelab://0.1.0";

pub async fn run(kubelet: Arc<Kubelet>) -> Result<()> {
    let nodes: Api<Node> = Api::all(kubelet.client.clone());
    let node = register(&kubelet, &nodes).await?;
    tracing::info!("registered Node {}", kubelet.settings.node_name);
    let lease = tokio::spawn(renew_lease(kubelet.clone(), node.metadata.uid.clone().unwrap_or_default()));
    let mut first = true;
    loop {
        // Until the pod network is configured, look often: the Node turns
        // Ready as soon as the controller-manager gives it a pod CIDR.
        let wait = if kubelet.network.ready().is_ok() { kubelet.settings.status_update_frequency } else { Duration::from_millis(250) };
        if !first {
            tokio::time::sleep(wait).await;
        }
        first = false;
        // The pod CIDR the controller-manager gave the Node configures pod networking.
        let previous = match nodes.get(&kubelet.settings.node_name).await {
            Ok(current) => {
                if let Some(cidr) = current.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                    match kubelet.network.configure(cidr) {
                        Ok(true) => start_overlay(&kubelet, cidr),
                        Ok(false) => {}
                        Err(e) => tracing::warn!("pod network for {cidr}: {e:#}"),
                    }
                }
                current.status
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                // Deleted under us: register again, as upstream does on restart.
                tracing::warn!("the Node was deleted; registering it again");
                register(&kubelet, &nodes).await?;
                continue;
            }
            Err(e) => {
                tracing::warn!("reading the Node: {e}");
                continue;
            }
        };
        let status = status(&kubelet, previous.as_ref());
        let patch = serde_json::json!({ "status": status });
        if let Err(e) = nodes.patch_status(&kubelet.settings.node_name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            tracing::warn!("updating the Node's status: {e}");
        }
        if lease.is_finished() {
            bail!("the Lease heartbeat stopped");
        }
    }
}

/// The overlay between nodes, once the Node has its pod CIDR.
fn start_overlay(kubelet: &Arc<Kubelet>, cidr: &str) {
    let Ok(ipnet::IpNet::V4(cidr)) = cidr.parse::<ipnet::IpNet>() else {
        return tracing::warn!("overlay: the pod CIDR {cidr} is not IPv4");
    };
    let kubelet = kubelet.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::overlay::run_overlay(kubelet, cidr).await {
            tracing::error!("overlay: {e:#}");
        }
    });
}

/// Creates the Node, or takes over the one of this name (a kubelet
/// restarted): labels and addresses are brought up to date.
async fn register(kubelet: &Kubelet, nodes: &Api<Node>) -> Result<Node> {
    let s = &kubelet.settings;
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", s.node_name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", std::env::consts::ARCH.replace("x86_64", "amd64").as_str()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", std::env::consts::ARCH.replace("x86_64", "amd64").as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.extend(s.labels.iter().cloned());
    let node = Node {
        metadata: ObjectMeta { name: Some(s.node_name.clone()), labels: Some(labels.clone()), ..Default::default() },
        spec: Some(NodeSpec { taints: (!s.taints.is_empty()).then(|| s.taints.clone()), ..Default::default() }),
        status: None,
    };
    let mut delay = Duration::from_millis(200);
    loop {
        let result = match nodes.create(&PostParams::default(), &node).await {
            Ok(created) => Ok(created),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let patch = serde_json::json!({ "metadata": { "labels": labels } });
                nodes.patch(&s.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(node) => return Ok(node),
            Err(e) => {
                tracing::warn!("registering the Node: {e}; again in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(7));
            }
        }
    }
}

/// The Node's status as it is now; transition times kept from `previous`
/// for conditions that did not change.
fn status(kubelet: &Kubelet, previous: Option<&NodeStatus>) -> NodeStatus {
    let s = &kubelet.settings;
    let machine = Machine::read();
    let mut capacity: BTreeMap<String, Quantity> = BTreeMap::new();
    capacity.insert("cpu".into(), Quantity(machine.cpus.to_string()));
    capacity.insert("memory".into(), Quantity(format!("{}Ki", machine.memory_kib)));
    capacity.insert("pods".into(), Quantity("110".into()));
    capacity.insert("ephemeral-storage".into(), Quantity(format!("{}Ki", machine.disk_kib)));
    for (k, v) in &s.capacity {
        capacity.insert(k.clone(), Quantity(v.clone()));
    }
    let network = kubelet.network.ready();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let condition = |kind: &str, ok: bool, reason_ok: &str, message_ok: &str, reason_bad: &str, message_bad: &str| {
        let status = if ok { "False" } else { "True" };
        let (reason, message) = if ok { (reason_ok, message_ok) } else { (reason_bad, message_bad) };
        make_condition(previous, kind, status, reason, message, &now)
    };
    let mut conditions = vec![
        condition(
            "MemoryPressure",
            machine.memory_available_kib > 100 * 1024,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        ),
        condition(
            "DiskPressure",
            machine.disk_available_fraction > 0.10,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            "KubeletHasDiskPressure",
            "kubelet has disk pressure",
        ),
        condition(
            "PIDPressure",
            machine.pids_available > 1000,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        ),
    ];
    let (ready, reason, message) = match &network {
        Ok(()) => ("True", "KubeletReady", "kubelet is posting ready status".to_string()),
        Err(why) => ("False", "KubeletNotReady", format!("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:{why}")),
    };
    conditions.push(make_condition(previous, "Ready", ready, reason, &message, &now));
    let (unavailable, reason, message) = match &network {
        Ok(()) => ("False", "RouteCreated", "kubelab's pod network is configured on this node".to_string()),
        Err(why) => ("True", "NoRouteCreated", why.clone()),
    };
    conditions.insert(0, make_condition(previous, "NetworkUnavailable", unavailable, reason, &message, &now));
    if let Some(reason) = kubelet.runtime.cgroups().unavailable_reason() {
        // Not a condition upstream knows; said where `kubectl describe
        // node` shows it, as a warning on the Ready condition's message.
        if let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready") {
            ready.message = Some(format!("{}; containers run without cgroup limits: {reason}", ready.message.clone().unwrap_or_default()));
        }
    }
    let images = kubelet
        .images
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|i| k8s_openapi::api::core::v1::ContainerImage { names: Some(i.names.clone()), size_bytes: None })
        .collect::<Vec<_>>();
    NodeStatus {
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: s.node_ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: s.node_name.clone() },
        ]),
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: s.port as i32 }) }),
        images: Some(images),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.replace("x86_64", "amd64"),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            container_runtime_version: RUNTIME_VERSION.into(),
            kernel_version: read_trim("/proc/sys/kernel/osrelease"),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: read_trim("/etc/machine-id"),
            operating_system: "linux".into(),
            os_image: os_image(),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
            swap: None,
        }),
        phase: None,
        volumes_attached: None,
        volumes_in_use: None,
        config: None,
        features: None,
        runtime_handlers: None,
    }
}

fn make_condition(previous: Option<&NodeStatus>, kind: &str, status: &str, reason: &str, message: &str, now: &Time) -> NodeCondition {
    let before = previous.and_then(|p| p.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == kind));
    let transition = match before {
        Some(b) if b.status == status => b.last_transition_time.clone().unwrap_or_else(|| now.clone()),
        _ => now.clone(),
    };
    NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(transition),
    }
}

async fn renew_lease(kubelet: Arc<Kubelet>, node_uid: String) {
    let s = &kubelet.settings;
    let leases: Api<Lease> = Api::namespaced(kubelet.client.clone(), "kube-node-lease");
    let every = Duration::from_secs((s.lease_duration_seconds as u64 / 4).max(1));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(s.node_name.clone()),
                namespace: Some("kube-node-lease".into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: s.node_name.clone(),
                    uid: node_uid.clone(),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(s.node_name.clone()),
                lease_duration_seconds: Some(s.lease_duration_seconds),
                renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            }),
        };
        let result = match leases.get_opt(&s.node_name).await {
            Ok(Some(mut current)) => {
                current.spec = lease.spec;
                leases.replace(&s.node_name, &PostParams::default(), &current).await.map(|_| ())
            }
            Ok(None) => leases.create(&PostParams::default(), &lease).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!("renewing the node Lease: {e}");
        }
    }
}

/// What the machine (the node container) has and has left.
struct Machine {
    cpus: usize,
    memory_kib: u64,
    memory_available_kib: u64,
    disk_kib: u64,
    disk_available_fraction: f64,
    pids_available: u64,
}

impl Machine {
    fn read() -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| {
            meminfo.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())).unwrap_or(0)
        };
        let (disk_kib, disk_available_fraction) = match nix::sys::statvfs::statvfs("/var") {
            Ok(v) => {
                let total = v.blocks() as f64 * v.fragment_size() as f64;
                let avail = v.blocks_available() as f64 * v.fragment_size() as f64;
                ((total / 1024.0) as u64, if total > 0.0 { avail / total } else { 0.0 })
            }
            Err(_) => (0, 1.0),
        };
        let pid_max: u64 = read_trim("/proc/sys/kernel/pid_max").parse().unwrap_or(32768);
        let running = std::fs::read_dir("/proc")
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())).count())
            .unwrap_or(0);
        Machine {
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_kib: field("MemTotal:"),
            memory_available_kib: field("MemAvailable:"),
            disk_kib,
            disk_available_fraction,
            pids_available: pid_max.saturating_sub(running as u64),
        }
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn os_image() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string()).unwrap_or_else(|| "Linux".into())
}

/// The first global IPv4 address of `interface`.
pub fn first_address(interface: &str) -> Result<IpAddr> {
    for ifaddr in nix::ifaddrs::getifaddrs()? {
        if ifaddr.interface_name != interface {
            continue;
        }
        if let Some(addr) = ifaddr.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            return Ok(IpAddr::V4(addr.ip()));
        }
    }
    bail!("{interface} has no IPv4 address")
}

/// `a=b,c=d` → pairs; empty text → none.
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).with_context(|| format!("{p:?} is not key=value")))
        .collect()
}

/// `key=value:Effect,key:Effect` → taints.
pub fn parse_taints(text: &str) -> Result<Vec<Taint>> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (kv, effect) = p.rsplit_once(':').with_context(|| format!("{p:?} has no :Effect"))?;
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                bail!("{p:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute");
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (kv.to_string(), None),
            };
            Ok(Taint { key, value, effect: effect.into(), time_added: None })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bad_ones_are_named() {
        assert_eq!(parse_pairs("a=1, b=2").unwrap(), vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
        assert!(parse_pairs("").unwrap().is_empty());
        assert!(format!("{:#}", parse_pairs("nope").unwrap_err()).contains("\"nope\" is not key=value"));
        let taints = parse_taints("node-role.kubernetes.io/infra:NoSchedule,k=v:NoExecute").unwrap();
        assert_eq!(taints[0].key, "node-role.kubernetes.io/infra");
        assert_eq!(taints[0].value, None);
        assert_eq!(taints[1].value.as_deref(), Some("v"));
        assert!(parse_taints("k=v:Sometimes").is_err());
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_unchanged() {
        let then = Time(k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_hours(1));
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let before = NodeStatus { conditions: Some(vec![make_condition(None, "Ready", "True", "KubeletReady", "", &then)]), ..Default::default() };
        assert_eq!(make_condition(Some(&before), "Ready", "True", "KubeletReady", "", &now).last_transition_time, Some(then));
        assert_eq!(make_condition(Some(&before), "Ready", "False", "KubeletNotReady", "", &now).last_transition_time, Some(now));
    }
}
