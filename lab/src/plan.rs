//! The start plan: from a topology and a set of images, the containers of a
//! lab in the order they start (etcd → apiserver → controller-manager and
//! scheduler → nodes → kube-proxy), each with the gate that says it is healthy.
//! A component that does not exist yet has no stage here.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::docker::{Attachment, ContainerSpec, COMPONENT_LABEL, LAB_LABEL, ROLE_LABEL, SPEC_LABEL};
use crate::images::Images;
use crate::topology::Topology;

/// The label that carries a container's health gate, so `lab status` can
/// ask it again without the topology.
pub const GATE_LABEL: &str = "dev.kubelab.gate";

#[derive(Debug, Clone)]
pub struct Plan {
    pub lab: String,
    pub network: String,
    pub subnet: Option<String>,
    pub stages: Vec<Stage>,
}

/// Containers that start together; the next stage waits for all their gates.
#[derive(Debug, Clone)]
pub struct Stage {
    pub name: &'static str,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone)]
pub struct Member {
    /// The component instance: `etcd-0`, `worker-1`.
    pub instance: String,
    pub spec: ContainerSpec,
    /// A command run inside the container that exits 0 once it is healthy.
    pub gate: Vec<String>,
}

impl Plan {
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.stages.iter().flat_map(|s| s.members.iter())
    }

    /// The named volumes the plan's containers mount.
    pub fn volumes(&self) -> Vec<String> {
        self.members()
            .flat_map(|m| m.spec.volumes.iter().map(|(v, _)| v.clone()))
            .collect()
    }
}

pub fn network_name(lab: &str) -> String {
    format!("kubelab-{lab}")
}

pub fn container_name(lab: &str, instance: &str) -> String {
    format!("{lab}-{instance}")
}

pub fn plan(lab: &str, topology: &Topology, images: &Images) -> Plan {
    let network = network_name(lab);
    let etcd = etcd_stage(lab, &network, topology, images);
    let nodes = node_stage(lab, &network, topology, images);
    Plan {
        lab: lab.to_string(),
        network,
        subnet: topology.networking.lab_subnet.as_ref().map(|c| c.net().to_string()),
        stages: vec![etcd, nodes].into_iter().filter(|s| !s.members.is_empty()).collect(),
    }
}

fn etcd_stage(lab: &str, network: &str, t: &Topology, images: &Images) -> Stage {
    let names: Vec<String> = (0..t.etcd.members).map(|i| format!("etcd-{i}")).collect();
    // Members find each other by their aliases on the lab network, so the
    // cluster survives new container addresses after `down --keep-data`.
    let initial_cluster = names
        .iter()
        .map(|n| format!("{n}=http://{n}:2380"))
        .collect::<Vec<_>>()
        .join(",");
    let members = names
        .iter()
        .map(|name| {
            let cmd = vec![
                format!("--name={name}"),
                "--data-dir=/var/lib/etcd".into(),
                "--listen-client-urls=http://0.0.0.0:2379".into(),
                format!("--advertise-client-urls=http://{name}:2379"),
                "--listen-peer-urls=http://0.0.0.0:2380".into(),
                format!("--initial-advertise-peer-urls=http://{name}:2380"),
                format!("--initial-cluster={initial_cluster}"),
                "--initial-cluster-state=new".into(),
                format!("--initial-cluster-token=kubelab-{lab}"),
            ];
            let spec = ContainerSpec {
                name: container_name(lab, name),
                hostname: name.clone(),
                image: images.of("etcd").to_string(),
                cmd,
                env: vec![],
                labels: BTreeMap::new(),
                network: Attachment::Network {
                    network: network.to_string(),
                    aliases: vec![name.clone()],
                },
                volumes: vec![(format!("{lab}-{name}-data"), "/var/lib/etcd".into())],
                tmpfs: vec![],
                privileged: false,
            };
            let gate = ["etcdctl", "--endpoints=http://127.0.0.1:2379", "--command-timeout=2s", "endpoint", "health"]
                .map(String::from)
                .to_vec();
            member(lab, name, "etcd", spec, gate)
        })
        .collect();
    Stage { name: "etcd", members }
}

fn node_stage(lab: &str, network: &str, t: &Topology, images: &Images) -> Stage {
    let members = t
        .nodes
        .iter()
        .map(|node| {
            let spec = ContainerSpec {
                name: container_name(lab, &node.name),
                hostname: node.name.clone(),
                image: images.of("node").to_string(),
                cmd: vec![],
                env: vec![],
                labels: BTreeMap::new(),
                network: Attachment::Network {
                    network: network.to_string(),
                    aliases: vec![node.name.clone()],
                },
                // /var on a volume, so that overlay mounts made inside the
                // node are not stacked on the container's own overlay.
                volumes: vec![(format!("{lab}-{}-var", node.name), "/var".into())],
                tmpfs: vec!["/run".into(), "/tmp".into()],
                privileged: true,
            };
            // The node can do what kubelet and kube-proxy will ask of it.
            let gate = vec![
                "sh".to_string(),
                "-c".to_string(),
                "ip link add kl-probe0 type veth peer name kl-probe1 && ip link del kl-probe0 \
                 && iptables -t nat -S >/dev/null && sysctl -qw net.ipv4.ip_forward=1"
                    .to_string(),
            ];
            member(lab, &node.name, "node", spec, gate)
        })
        .collect();
    Stage { name: "nodes", members }
}

/// Labels a member's container with the lab, its role, its gate and the
/// hash of its spec (so `lab up` can tell a changed container from a kept one).
fn member(lab: &str, instance: &str, role: &str, mut spec: ContainerSpec, gate: Vec<String>) -> Member {
    spec.labels.insert(LAB_LABEL.into(), lab.into());
    spec.labels.insert(COMPONENT_LABEL.into(), instance.into());
    spec.labels.insert(ROLE_LABEL.into(), role.into());
    spec.labels
        .insert(GATE_LABEL.into(), serde_json::to_string(&gate).expect("strings serialize"));
    let hash = Sha256::digest(serde_json::to_vec(&spec).expect("a spec serializes"));
    let hash: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    spec.labels.insert(SPEC_LABEL.into(), hash);
    Member {
        instance: instance.to_string(),
        spec,
        gate,
    }
}
