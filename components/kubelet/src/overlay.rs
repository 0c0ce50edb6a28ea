//! The pod network between nodes, as flannel's VXLAN backend makes it: the
//! lab's Docker network drops packets whose addresses lie outside its
//! subnet, so pod traffic between nodes is carried in VXLAN between node
//! addresses. Each node has a VXLAN device holding its pod CIDR's network
//! address, publishes the device's MAC on its Node, and keeps, for every
//! other Node, a route to its pod CIDR through that Node's network
//! address, the neighbour entry for it and the forwarding entry that sends
//! its MAC to that Node's address. No NAT: pods see each other's addresses.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

use crate::Kubelet;

/// The device, VNI and port (flannel's defaults: VNI 1, Linux's 8472).
pub const DEVICE: &str = "kubelab.1";
const VNI: u32 = 1;
const PORT: u16 = 8472;
/// VXLAN over IPv4 takes 50 bytes of each packet.
pub const OVERHEAD: u32 = 50;
pub const MAC_ANNOTATION: &str = "kubelab.dev/vxlan-mac";
pub const IP_ANNOTATION: &str = "kubelab.dev/vxlan-public-ip";

/// Another node as the overlay needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    /// Its pod CIDR, and that CIDR's network address (its device's).
    pub cidr: ipnet::Ipv4Net,
    pub mac: String,
    pub public_ip: Ipv4Addr,
}

impl Peer {
    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.network()
    }
}

/// The peers a node should have: every other Node with a pod CIDR and
/// published VXLAN details.
pub fn peers(nodes: &[Node], me: &str) -> BTreeSet<Peer> {
    nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(me))
        .filter_map(|n| {
            let cidr = n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
            let annotations = n.metadata.annotations.as_ref()?;
            Some(Peer { cidr, mac: annotations.get(MAC_ANNOTATION)?.clone(), public_ip: annotations.get(IP_ANNOTATION)?.parse().ok()? })
        })
        .collect()
}

/// One change to the node's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Add(Peer),
    Remove(Peer),
}

/// From the peers programmed to the peers wanted: removals first (a
/// changed peer is removed and added again).
pub fn steps(have: &BTreeSet<Peer>, want: &BTreeSet<Peer>) -> Vec<Step> {
    let mut out: Vec<Step> = have.difference(want).cloned().map(Step::Remove).collect();
    out.extend(want.difference(have).cloned().map(Step::Add));
    out
}

/// The commands of a step (iproute2's `ip` and `bridge`), each idempotent.
pub fn commands(step: &Step) -> Vec<Vec<String>> {
    let v = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match step {
        Step::Add(p) => {
            let (cidr, gw, mac, ip) = (p.cidr.to_string(), p.gateway().to_string(), p.mac.clone(), p.public_ip.to_string());
            vec![
                v(&["ip", "neigh", "replace", &gw, "lladdr", &mac, "dev", DEVICE, "nud", "permanent"]),
                v(&["bridge", "fdb", "replace", &mac, "dev", DEVICE, "dst", &ip, "self", "permanent"]),
                v(&["ip", "route", "replace", &cidr, "via", &gw, "dev", DEVICE, "onlink"]),
            ]
        }
        Step::Remove(p) => {
            let (cidr, gw, mac, ip) = (p.cidr.to_string(), p.gateway().to_string(), p.mac.clone(), p.public_ip.to_string());
            vec![
                v(&["ip", "route", "del", &cidr, "via", &gw, "dev", DEVICE]),
                v(&["ip", "neigh", "del", &gw, "dev", DEVICE]),
                v(&["bridge", "fdb", "del", &mac, "dev", DEVICE, "dst", &ip, "self"]),
            ]
        }
    }
}

fn run(command: &[String]) -> Result<()> {
    let out = std::process::Command::new(&command[0]).args(&command[1..]).output().with_context(|| format!("running {}", command[0]))?;
    if !out.status.success() {
        bail!("{}: {}", command.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The device for `cidr` on `node_ip`; its MAC.
pub fn ensure_device(node_ip: Ipv4Addr, cidr: &ipnet::Ipv4Net, uplink: &str) -> Result<String> {
    let present = std::path::Path::new("/sys/class/net").join(DEVICE).exists();
    if !present {
        let mtu = uplink_mtu(uplink).saturating_sub(OVERHEAD);
        let add = format!("ip link add {DEVICE} mtu {mtu} type vxlan id {VNI} local {node_ip} dstport {PORT} nolearning dev {uplink}");
        run(&add.split(' ').map(str::to_string).collect::<Vec<_>>())?;
    }
    run(&["ip", "addr", "replace", &format!("{}/32", cidr.network()), "dev", DEVICE].map(str::to_string))?;
    run(&["ip", "link", "set", DEVICE, "up"].map(str::to_string))?;
    let mac = std::fs::read_to_string(format!("/sys/class/net/{DEVICE}/address")).context("reading the VXLAN device's MAC")?;
    Ok(mac.trim().to_string())
}

pub fn uplink_mtu(uplink: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/class/net/{uplink}/mtu")).ok().and_then(|m| m.trim().parse().ok()).unwrap_or(1500)
}

/// Makes the device for the node's pod CIDR, publishes it, and follows the
/// Node list from then on.
pub async fn run_overlay(kubelet: Arc<Kubelet>, cidr: ipnet::Ipv4Net) -> Result<()> {
    let s = &kubelet.settings;
    let std::net::IpAddr::V4(node_ip) = s.node_ip else { bail!("the overlay needs an IPv4 node address, not {}", s.node_ip) };
    let mac = ensure_device(node_ip, &cidr, "eth0")?;
    let node_api: Api<Node> = Api::all(kubelet.client.clone());
    let patch = serde_json::json!({ "metadata": { "annotations": { MAC_ANNOTATION: mac, IP_ANNOTATION: node_ip.to_string() } } });
    node_api.patch(&s.node_name, &PatchParams::default(), &Patch::Merge(&patch)).await.context("publishing the VXLAN device on the Node")?;
    tracing::info!("overlay: {DEVICE} ({mac}) holds {} on {node_ip}", cidr.network());

    // The whole Node list, kept by component-base's reflector, which says
    // when it changed (a Node applied or deleted, a list swapped in).
    let changed = Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    let nodes = component_base::watch::all::<Node>(kubelet.client.clone(), move || notify.notify_one());
    nodes.wait_until_ready().await.context("listing Nodes")?;
    let mut have: BTreeSet<Peer> = BTreeSet::new();
    loop {
        let want = peers(&component_base::watch::cloned(&nodes), &s.node_name);
        for step in steps(&have, &want) {
            for command in commands(&step) {
                if let Err(e) = run(&command) {
                    // A removal of what is already gone is no failure.
                    if matches!(step, Step::Add(_)) {
                        tracing::warn!("overlay: {e:#}");
                    }
                }
            }
            tracing::info!("overlay: {step:?}");
        }
        have = want;
        changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, cidr: Option<&str>, mac: Option<&str>) -> Node {
        let mut annotations = BTreeMap::new();
        if let Some(m) = mac {
            annotations.insert(MAC_ANNOTATION.to_string(), m.to_string());
            annotations.insert(IP_ANNOTATION.to_string(), "172.18.0.9".to_string());
        }
        Node {
            metadata: ObjectMeta { name: Some(name.into()), annotations: Some(annotations), ..Default::default() },
            spec: Some(NodeSpec { pod_cidr: cidr.map(str::to_string), ..Default::default() }),
            status: None,
        }
    }

    #[test]
    fn peers_are_the_other_nodes_that_published_their_device() {
        let nodes = vec![
            node("me", Some("10.244.0.0/24"), Some("aa:aa:aa:aa:aa:aa")),
            node("b", Some("10.244.1.0/24"), Some("bb:bb:bb:bb:bb:bb")),
            node("c", Some("10.244.2.0/24"), None),
            node("d", None, Some("dd:dd:dd:dd:dd:dd")),
        ];
        let p = peers(&nodes, "me");
        assert_eq!(p.len(), 1);
        let b = p.iter().next().unwrap();
        assert_eq!(b.gateway().to_string(), "10.244.1.0");
        assert_eq!(commands(&Step::Add(b.clone()))[2], ["ip", "route", "replace", "10.244.1.0/24", "via", "10.244.1.0", "dev", DEVICE, "onlink"]);
    }

    #[test]
    fn a_changed_peer_is_removed_then_added_and_a_gone_one_removed() {
        let old = peers(&[node("b", Some("10.244.1.0/24"), Some("bb:bb:bb:bb:bb:bb")), node("c", Some("10.244.2.0/24"), Some("cc:cc:cc:cc:cc:cc"))], "me");
        let new = peers(&[node("b", Some("10.244.1.0/24"), Some("b2:b2:b2:b2:b2:b2"))], "me");
        let s = steps(&old, &new);
        assert_eq!(s.len(), 3);
        assert!(matches!(&s[0], Step::Remove(p) if p.mac == "bb:bb:bb:bb:bb:bb"));
        assert!(matches!(&s[1], Step::Remove(p) if p.mac == "cc:cc:cc:cc:cc:cc"));
        assert!(matches!(&s[2], Step::Add(p) if p.mac == "b2:b2:b2:b2:b2:b2"));
        assert!(steps(&new, &new).is_empty());
    }
}
