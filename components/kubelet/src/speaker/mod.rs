//! The speaker: announces load balancer addresses on the lab network, as
//! MetalLB's layer-2 mode does, from the kubelet of every node (the
//! kubelet already runs in the node's network namespace with the
//! privileges this needs, and every node has one; no other process to
//! ship or supervise).
//!
//! For every LoadBalancer Service the service-lb controller gave an
//! address (no `loadBalancerClass`, or the controller's), the nodes that
//! may answer for it compete for a Lease `kube-system/svc-lb.<ns>.<name>`
//! (component-base's leader election, the node's name as identity). The
//! holder adds the address (/32, labelled `<interface>:lb`) to the
//! interface holding the node's InternalIP, so the kernel answers ARP for
//! it and kube-proxy's rules take the traffic, and broadcasts gratuitous
//! ARP so that the machine running the lab forgets the previous holder's
//! MAC at once. A holder that loses the Lease, or whose Service goes or
//! changes, removes the address; one that stops renewing (node stopped)
//! is replaced within the lease duration. With `externalTrafficPolicy:
//! Local` only nodes with a ready endpoint of the Service compete: on any
//! other node kube-proxy drops the traffic.

pub mod arp;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use component_base::leader_election::Election;
use futures_util::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::ResourceExt;

/// The service-lb controller's class (components share no crates, so it
/// is repeated here): Services of another class are announced by their
/// own implementation.
pub const LOAD_BALANCER_CLASS: &str = "kubelab.dev/service-lb";

const LEASE_NAMESPACE: &str = "kube-system";

/// Upstream's leader election defaults: a node that stops renewing is
/// replaced within 15 s.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// How often the wanted announcements are worked out again even without
/// a watch event (a relist that dropped objects emits none for them).
const RESYNC: Duration = Duration::from_secs(10);

/// The Lease a Service's address is competed for. Dots part namespace and
/// name, which are DNS labels and cannot hold one, so no two Services
/// share a Lease.
pub fn lease_name(namespace: &str, name: &str) -> String {
    format!("svc-lb.{namespace}.{name}")
}

/// The label of the addresses the speaker adds, so that a restarted
/// kubelet finds those an earlier one left. None when the interface's
/// name leaves no room for it (labels are interface names, 15 bytes).
pub fn address_label(interface: &str) -> Option<String> {
    let label = format!("{interface}:lb");
    (label.len() <= 15).then_some(label)
}

/// Whether the service-lb controller serves this Service: a LoadBalancer
/// without a class or with its class.
fn served(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    let class = spec.and_then(|s| s.load_balancer_class.as_deref()).unwrap_or("");
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer") && (class.is_empty() || class == LOAD_BALANCER_CLASS)
}

fn ingress_ip(service: &Service) -> Option<Ipv4Addr> {
    let ingress = service.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?;
    ingress.iter().find_map(|i| i.ip.as_deref()?.parse().ok())
}

/// Whether `node` has a ready endpoint of the Service (a missing ready
/// condition means ready, as upstream reads it).
fn has_local_ready_endpoint(service: &Service, slices: &[Arc<EndpointSlice>], node: &str) -> bool {
    let (namespace, name) = (service.namespace(), service.name_any());
    slices
        .iter()
        .filter(|s| s.namespace() == namespace && s.labels().get("kubernetes.io/service-name") == Some(&name))
        .flat_map(|s| s.endpoints.iter())
        .any(|e| e.node_name.as_deref() == Some(node) && e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
}

/// The Leases this node competes for, with the address each stands for.
pub fn candidacies(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>], node: &str) -> BTreeMap<String, Ipv4Addr> {
    services
        .iter()
        .filter(|s| served(s))
        .filter_map(|s| {
            let ip = ingress_ip(s)?;
            let local = s.spec.as_ref().and_then(|spec| spec.external_traffic_policy.as_deref()) == Some("Local");
            if local && !has_local_ready_endpoint(s, slices, node) {
                return None;
            }
            Some((lease_name(&s.namespace().unwrap_or_default(), &s.name_any()), ip))
        })
        .collect()
}

/// The interface holding `ip` (the node's InternalIP: the lab network).
fn interface_with(ip: Ipv4Addr) -> Result<String> {
    for ifaddr in nix::ifaddrs::getifaddrs()? {
        if ifaddr.address.as_ref().and_then(|a| a.as_sockaddr_in()).map(|a| a.ip()) == Some(ip) {
            // An address's label may extend the interface's name.
            return Ok(ifaddr.interface_name.split(':').next().unwrap_or_default().to_string());
        }
    }
    bail!("no interface holds the node's address {ip}")
}

fn ip_command(args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("ip").args(args).output().context("running ip")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Removes the addresses an earlier kubelet added: Leases this node still
/// holds are taken again at once (the identity is the node's name), and
/// the address with them.
fn remove_left_over(interface: &str) {
    for ip in labelled_addresses(interface) {
        match ip_command(&["addr", "del", &format!("{ip}/32"), "dev", interface]) {
            Ok(()) => tracing::info!("speaker: removed {ip}, left by an earlier kubelet"),
            Err(e) => tracing::warn!("speaker: removing {ip}: {e:#}"),
        }
    }
}

/// The addresses on `interface` that carry the speaker's label.
fn labelled_addresses(interface: &str) -> Vec<Ipv4Addr> {
    let (Some(label), Ok(addresses)) = (address_label(interface), nix::ifaddrs::getifaddrs()) else { return Vec::new() };
    addresses.filter(|a| a.interface_name == label).filter_map(|a| a.address.as_ref()?.as_sockaddr_in().map(|a| a.ip())).collect()
}

/// What announcing an address does to the node; the lab network's
/// interface in the kubelet, a record of calls in tests of the elections.
pub trait Announcer: Send + Sync + 'static {
    fn add(&self, ip: Ipv4Addr) -> Result<()>;
    fn remove(&self, ip: Ipv4Addr) -> Result<()>;
    /// Tells the network the address moved here (gratuitous ARP).
    fn broadcast(&self, ip: Ipv4Addr) -> Result<()>;
}

/// The interface holding the node's InternalIP.
pub struct Interface {
    pub name: String,
}

impl Announcer for Interface {
    fn add(&self, ip: Ipv4Addr) -> Result<()> {
        let address = format!("{ip}/32");
        let mut args = vec!["addr", "replace", address.as_str(), "dev", self.name.as_str()];
        let label = address_label(&self.name);
        if let Some(label) = &label {
            args.extend(["label", label.as_str()]);
        }
        ip_command(&args)
    }

    fn remove(&self, ip: Ipv4Addr) -> Result<()> {
        ip_command(&["addr", "del", &format!("{ip}/32"), "dev", &self.name])
    }

    fn broadcast(&self, ip: Ipv4Addr) -> Result<()> {
        arp::announce(&self.name, ip)
    }
}

/// A load balancer address on the node while this lives.
struct Announced {
    announcer: Arc<dyn Announcer>,
    ip: Ipv4Addr,
}

impl Announced {
    fn add(announcer: &Arc<dyn Announcer>, ip: Ipv4Addr) -> Result<Announced> {
        announcer.add(ip)?;
        Ok(Announced { announcer: announcer.clone(), ip })
    }
}

impl Drop for Announced {
    fn drop(&mut self) {
        match self.announcer.remove(self.ip) {
            Ok(()) => tracing::info!("speaker: stopped announcing {}", self.ip),
            Err(e) => tracing::warn!("speaker: removing {}: {e:#}", self.ip),
        }
    }
}

/// What the holder of a Service's Lease does until it loses it (then this
/// future is dropped, and the address with it).
async fn announce(announcer: Arc<dyn Announcer>, ip: Ipv4Addr) {
    let _announced = loop {
        match Announced::add(&announcer, ip) {
            Ok(announced) => break announced,
            Err(e) => {
                tracing::warn!("speaker: adding {ip} (retrying): {e:#}");
                tokio::time::sleep(RETRY_PERIOD).await;
            }
        }
    };
    tracing::info!("speaker: announcing {ip}");
    // Twice, a second apart: one broadcast frame can be lost.
    for _ in 0..2 {
        if let Err(e) = announcer.broadcast(ip) {
            tracing::warn!("speaker: {e:#}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    std::future::pending::<()>().await
}

/// Gives up a Lease this node holds: deleted with its Service, else
/// released (no holder) so another node takes it at its next try rather
/// than after the lease duration.
async fn give_up(leases: Api<Lease>, name: String, identity: String, service_gone: bool) {
    let Ok(Some(mut lease)) = leases.get_opt(&name).await else { return };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(identity.as_str()) {
        return;
    }
    let result = if service_gone {
        leases.delete(&name, &DeleteParams::default()).await.map(|_| ())
    } else {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        leases.replace(&name, &PostParams::default(), &lease).await.map(|_| ())
    };
    if let Err(e) = result {
        tracing::debug!("speaker: giving up Lease {name}: {e}");
    }
}

struct Candidacy {
    ip: Ipv4Addr,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the speaker for `node` on the interface holding its address until
/// the watches end.
pub async fn run(client: kube::Client, node: String, node_ip: IpAddr) -> Result<()> {
    let IpAddr::V4(node_ip) = node_ip else { bail!("load balancer addresses are IPv4; the node's address is {node_ip}") };
    let interface = interface_with(node_ip)?;
    remove_left_over(&interface);
    run_with(client, node, Arc::new(Interface { name: interface })).await
}

/// Runs the speaker for `node`, announcing through `announcer`.
pub async fn run_with(client: kube::Client, node: String, announcer: Arc<dyn Announcer>) -> Result<()> {
    let (services, service_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let service_events = watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(service_writer).map(|_| ()).boxed();
    let slice_events =
        watcher(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(slice_writer).map(|_| ()).boxed();
    let mut events = futures_util::stream::select(service_events, slice_events);
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let mut running: HashMap<String, Candidacy> = HashMap::new();
    let mut resync = tokio::time::interval(RESYNC);
    let mut ready = false;
    loop {
        tokio::select! {
            event = events.next() => if event.is_none() { bail!("the Service and EndpointSlice watches ended") },
            _ = resync.tick() => {}
        }
        // Acting on a half-listed cluster would drop candidacies it has.
        ready = ready || (services.wait_until_ready().now_or_never().is_some() && slices.wait_until_ready().now_or_never().is_some());
        if !ready {
            continue;
        }
        let wanted = candidacies(&services.state(), &slices.state(), &node);
        let stale: Vec<String> = running.iter().filter(|(lease, c)| wanted.get(*lease) != Some(&c.ip)).map(|(lease, _)| lease.clone()).collect();
        for lease in stale {
            let candidacy = running.remove(&lease).expect("listed above");
            // Dropping the work removes the address.
            candidacy.task.abort();
            let _ = candidacy.task.await;
            if wanted.contains_key(&lease) {
                continue; // a new address: competed for again below, under the same Lease
            }
            let gone = !services.state().iter().any(|s| lease_name(&s.namespace().unwrap_or_default(), &s.name_any()) == lease && ingress_ip(s).is_some());
            tokio::spawn(give_up(leases.clone(), lease, node.clone(), gone));
        }
        for (lease, ip) in wanted {
            if running.contains_key(&lease) {
                continue;
            }
            let election = Election {
                namespace: LEASE_NAMESPACE.into(),
                name: lease.clone(),
                identity: node.clone(),
                lease_duration: LEASE_DURATION,
                renew_deadline: RENEW_DEADLINE,
                retry_period: RETRY_PERIOD,
            };
            let (client, announcer) = (client.clone(), announcer.clone());
            let task = tokio::spawn(async move { election.run(client, || announce(announcer.clone(), ip)).await });
            running.insert(lease, Candidacy { ip, task });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(json: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(json).unwrap())
    }

    fn load_balancer(name: &str, ip: Option<&str>, spec: serde_json::Value) -> Arc<Service> {
        let mut s = serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "LoadBalancer"},
            "status": {"loadBalancer": {"ingress": ip.map(|ip| vec![serde_json::json!({"ip": ip, "ipMode": "VIP"})])}},
        });
        for (k, v) in spec.as_object().unwrap() {
            s["spec"][k] = v.clone();
        }
        service(s)
    }

    fn slice(service: &str, endpoints: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("{service}-abc"), "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "endpoints": endpoints,
            }))
            .unwrap(),
        )
    }

    fn ip(args: &str) {
        ip_command(&args.split(' ').collect::<Vec<_>>()).unwrap();
    }

    /// A raw socket that receives the ARP frames arriving on `interface`.
    fn arp_listener(interface: &str) -> std::os::fd::OwnedFd {
        use nix::libc;
        use std::os::fd::FromRawFd;
        let protocol = 0x0806u16.to_be();
        // SAFETY: plain system calls on a descriptor this test owns; the
        // structures passed outlive the calls, with their true sizes.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol));
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            let mut at: libc::sockaddr_ll = std::mem::zeroed();
            at.sll_family = libc::AF_PACKET as u16;
            at.sll_protocol = protocol;
            at.sll_ifindex = nix::net::if_::if_nametoindex(interface).unwrap() as i32;
            let bound = libc::bind(fd, (&at as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32);
            assert_eq!(bound, 0, "{}", std::io::Error::last_os_error());
            let timeout = libc::timeval { tv_sec: 5, tv_usec: 0 };
            let size = std::mem::size_of::<libc::timeval>() as u32;
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&timeout as *const libc::timeval).cast(), size);
            std::os::fd::OwnedFd::from_raw_fd(fd)
        }
    }

    fn receive(socket: &std::os::fd::OwnedFd) -> Vec<u8> {
        use std::os::fd::AsRawFd;
        let mut buffer = [0u8; 128];
        // SAFETY: the buffer outlives the call, with its true length.
        let n = unsafe { nix::libc::recv(socket.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        assert!(n > 0, "no ARP frame arrived: {}", std::io::Error::last_os_error());
        buffer[..n as usize].to_vec()
    }

    /// The system side, in a network namespace of its own with a veth
    /// pair standing for the lab network (root only: skipped otherwise).
    /// The namespace is the test thread's alone, and so are the `ip`
    /// commands it runs.
    #[test]
    fn the_holder_adds_the_address_broadcasts_it_and_removes_it() {
        std::thread::spawn(|| {
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                eprintln!("skipped: no network namespace of its own ({e})");
                return;
            }
            ip("link add v0 type veth peer name v1");
            ip("link set v0 up");
            ip("link set v1 up");
            ip("addr add 172.30.0.2/24 dev v0");
            let node_ip = Ipv4Addr::new(172, 30, 0, 2);
            let vip = Ipv4Addr::new(172, 30, 0, 240);
            assert_eq!(interface_with(node_ip).unwrap(), "v0");
            let listener = arp_listener("v1");

            let interface: Arc<dyn Announcer> = Arc::new(Interface { name: "v0".into() });
            let announced = Announced::add(&interface, vip).unwrap();
            assert_eq!(labelled_addresses("v0"), [vip]);
            assert_eq!(interface_with(node_ip).unwrap(), "v0", "the node's address is still found first");
            interface.broadcast(vip).unwrap();
            let mac = arp::mac_of("v0").unwrap();
            let mut operations = Vec::new();
            while operations.len() < 2 {
                let frame = receive(&listener);
                if frame[22..32] == [&mac[..], &vip.octets()[..]].concat()[..] {
                    assert_eq!(frame[..42], arp::frame(mac, vip, if frame[21] == 1 { arp::Operation::Request } else { arp::Operation::Reply }));
                    operations.push(frame[21]);
                }
            }
            assert_eq!(operations, [1, 2], "a request, then a reply");
            drop(announced);
            assert!(labelled_addresses("v0").is_empty(), "the address outlived its holder");

            // What an earlier kubelet left is removed; nothing else is.
            interface.add(vip).unwrap();
            remove_left_over("v0");
            assert!(labelled_addresses("v0").is_empty());
            assert_eq!(interface_with(node_ip).unwrap(), "v0");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn leases_are_named_per_service_without_ambiguity() {
        assert_eq!(lease_name("default", "web"), "svc-lb.default.web");
        assert_ne!(lease_name("a-b", "c"), lease_name("a", "b-c"));
        assert_eq!(address_label("eth0").as_deref(), Some("eth0:lb"));
        assert_eq!(address_label("a-very-long-if"), None);
    }

    #[test]
    fn nodes_compete_for_served_services_with_an_address() {
        let services = vec![
            load_balancer("web", Some("172.30.0.240"), serde_json::json!({})),
            load_balancer("pending", None, serde_json::json!({})),
            load_balancer("ours", Some("172.30.0.241"), serde_json::json!({"loadBalancerClass": LOAD_BALANCER_CLASS})),
            load_balancer("theirs", Some("172.30.0.242"), serde_json::json!({"loadBalancerClass": "example.com/other"})),
            load_balancer("retyped", Some("172.30.0.243"), serde_json::json!({"type": "ClusterIP"})),
        ];
        let wanted = candidacies(&services, &[], "worker-1");
        let expected: BTreeMap<String, Ipv4Addr> =
            [("svc-lb.default.web".to_string(), "172.30.0.240".parse().unwrap()), ("svc-lb.default.ours".to_string(), "172.30.0.241".parse().unwrap())].into();
        assert_eq!(wanted, expected);
    }

    #[test]
    fn a_local_policy_keeps_nodes_without_a_ready_endpoint_out() {
        let services = vec![load_balancer("web", Some("172.30.0.240"), serde_json::json!({"externalTrafficPolicy": "Local"}))];
        let slices = vec![
            slice(
                "web",
                serde_json::json!([
                    {"addresses": ["10.244.1.5"], "nodeName": "worker-1", "conditions": {"ready": true}},
                    {"addresses": ["10.244.2.5"], "nodeName": "worker-2", "conditions": {"ready": false}},
                    {"addresses": ["10.244.3.5"], "nodeName": "worker-3"},
                ]),
            ),
            slice("other", serde_json::json!([{"addresses": ["10.244.4.5"], "nodeName": "worker-4"}])),
        ];
        let competes = |node: &str| candidacies(&services, &slices, node).contains_key("svc-lb.default.web");
        assert!(competes("worker-1"));
        assert!(!competes("worker-2"), "its endpoint is not ready");
        assert!(competes("worker-3"), "no ready condition means ready");
        assert!(!competes("worker-4"), "another Service's endpoint");
    }
}
