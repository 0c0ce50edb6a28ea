//! The start plan: from a topology and a set of images, the containers of a
//! lab in the order they start (etcd → apiserver → load balancer →
//! controller-manager → scheduler → nodes → kube-proxy), each with the
//! gate that says it is healthy.
//! A component that does not exist yet has no stage here.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use crate::docker::{Attachment, ContainerSpec, File, COMPONENT_LABEL, LAB_LABEL, ROLE_LABEL, SPEC_LABEL};
use crate::images::Images;
use crate::kubeconfig;
use crate::pki::{self, Pki, ServingNames};
use crate::topology::{self, Topology};

/// Where components find the lab's certificates inside their containers.
pub const PKI_DIR: &str = "/etc/kubelab/pki";
/// The apiserver's port inside the lab network.
pub const APISERVER_PORT: u16 = 6443;
/// The controller-manager's secure port (/healthz), upstream's default.
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
/// The scheduler's secure port (/healthz), upstream's default.
pub const SCHEDULER_PORT: u16 = 10259;

/// The label that carries a container's health gate, so `lab status` can
/// ask it again without the topology.
pub const GATE_LABEL: &str = "dev.kubelab.gate";

#[derive(Debug, Clone)]
pub struct Plan {
    pub lab: String,
    pub network: String,
    /// The lab network's subnet: the topology's, or the one `lab up` chose.
    pub subnet: Ipv4Net,
    /// Where Docker gives containers addresses: the subnet's lower half.
    pub ip_range: Ipv4Net,
    /// The load balancer addresses (`first-last`), above `ip_range`.
    pub load_balancer_pool: String,
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
        self.members().flat_map(|m| m.spec.volumes.iter().map(|(v, _)| v.clone())).collect()
    }
}

pub fn network_name(lab: &str) -> String {
    format!("kubelab-{lab}")
}

pub fn container_name(lab: &str, instance: &str) -> String {
    format!("{lab}-{instance}")
}

/// The plan of a lab of `topology` on the lab subnet `subnet` (the
/// topology's, or the one `lab up` chose when it names none).
pub fn plan(lab: &str, topology: &Topology, subnet: Ipv4Net, images: &Images, pki: &Pki) -> Plan {
    let network = network_name(lab);
    let load_balancer_pool = topology.networking.load_balancer_pool_on(subnet);
    let etcd = etcd_stage(lab, &network, topology, images);
    let apiservers = apiserver_stage(lab, &network, topology, images, pki);
    let balancer = loadbalancer_stage(lab, &network, topology, images);
    let controllers = controller_manager_stage(lab, &network, topology, images, pki, &load_balancer_pool);
    let scheduler = scheduler_stage(lab, &network, topology, images, pki);
    let nodes = node_stage(lab, &network, topology, images, pki);
    let proxies = kube_proxy_stage(lab, topology, images, pki, &nodes);
    Plan {
        lab: lab.to_string(),
        network,
        subnet,
        ip_range: topology::docker_range(subnet),
        load_balancer_pool,
        stages: vec![etcd, apiservers, balancer, controllers, scheduler, nodes, proxies].into_iter().filter(|s| !s.members.is_empty()).collect(),
    }
}

/// The instance in front of several apiservers.
pub const LOADBALANCER: &str = "loadbalancer";

/// haproxy in TCP mode over every apiserver, each checked on /readyz.
fn haproxy_config(t: &Topology) -> String {
    let mut cfg = String::from(
        "# Written by kubelab's start plan: the apiservers behind one address.\n\
         global\n  log stdout format raw local0\n  maxconn 4096\n\
         defaults\n  mode tcp\n  log global\n  option tcplog\n  option redispatch\n  retries 2\n  timeout connect 2s\n  timeout client 1h\n  timeout server 1h\n\
         frontend apiserver\n  bind *:6443\n  default_backend apiservers\n\
         backend apiservers\n  option httpchk GET /readyz\n  http-check expect status 200\n\
         \x20 default-server check check-ssl verify none inter 1s fall 2 rise 1\n",
    );
    for instance in apiserver_instances(t) {
        cfg.push_str(&format!("  server {instance} {instance}:{APISERVER_PORT}\n"));
    }
    cfg
}

fn loadbalancer_stage(lab: &str, network: &str, t: &Topology, images: &Images) -> Stage {
    if t.control_plane.replicas < 2 {
        return Stage { name: "loadbalancer", members: vec![] };
    }
    let spec = ContainerSpec {
        name: container_name(lab, LOADBALANCER),
        hostname: LOADBALANCER.into(),
        image: images.of("loadbalancer").to_string(),
        cmd: vec![],
        env: vec![],
        labels: BTreeMap::new(),
        network: Attachment::Network { network: network.to_string(), aliases: vec![LOADBALANCER.into(), "apiserver".into()] },
        volumes: vec![],
        tmpfs: vec![],
        privileged: false,
        files: vec![File { path: "/usr/local/etc/haproxy/haproxy.cfg".into(), mode: 0o644, contents: haproxy_config(t) }],
    };
    // Healthy once an apiserver answers through it.
    let gate = ["curl", "-fsk", "--max-time", "2", "https://127.0.0.1:6443/readyz"].map(String::from).to_vec();
    Stage { name: "loadbalancer", members: vec![member(lab, LOADBALANCER, "loadbalancer", spec, gate)] }
}

/// The instance names of a topology's apiservers: `apiserver-0`, ...
pub fn apiserver_instances(t: &Topology) -> Vec<String> {
    (0..t.control_plane.replicas).map(|i| format!("apiserver-{i}")).collect()
}

/// The names the apiserver's serving certificate must hold: its aliases
/// and container names on the lab network, and the first address of the
/// service subnet (the `kubernetes` Service, as upstream).
pub fn apiserver_serving_names(lab: &str, t: &Topology) -> ServingNames {
    let mut dns = vec!["apiserver".to_string(), LOADBALANCER.to_string(), container_name(lab, LOADBALANCER)];
    for instance in apiserver_instances(t) {
        dns.push(container_name(lab, &instance));
        dns.push(instance);
    }
    let service = t.networking.service_subnet.net();
    let first = match service.hosts().next() {
        Some(ip) => vec![std::net::IpAddr::from(ip)],
        None => vec![],
    };
    ServingNames { dns, ips: first }
}

/// The certificate files of one identity, and the CA, as container files.
fn pki_files(pki: &Pki, identity: &str, as_name: &str) -> Vec<File> {
    let mut files = vec![File { path: format!("{PKI_DIR}/ca.crt"), mode: 0o644, contents: pki.ca_pem().to_string() }];
    files.extend(identity_files(pki, identity, as_name));
    files
}

/// The certificate and key of one identity, as container files.
fn identity_files(pki: &Pki, identity: &str, as_name: &str) -> [File; 2] {
    let id = pki.identity(identity).expect("the PKI holds every identity the plan asks for");
    [
        File { path: format!("{PKI_DIR}/{as_name}.crt"), mode: 0o644, contents: id.cert_pem.clone() },
        File { path: format!("{PKI_DIR}/{as_name}.key"), mode: 0o600, contents: id.key_pem.clone() },
    ]
}

fn apiserver_stage(lab: &str, network: &str, t: &Topology, images: &Images, pki: &Pki) -> Stage {
    let etcd_servers = (0..t.etcd.members).map(|i| format!("http://etcd-{i}:2379")).collect::<Vec<_>>().join(",");
    let instances = apiserver_instances(t);
    let members = instances
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut aliases = vec![name.clone()];
            // With one apiserver it is the API's address; with more, the
            // load balancer is.
            if i == 0 && instances.len() == 1 {
                aliases.push("apiserver".into());
            }
            let cmd = vec![
                format!("--etcd-servers={etcd_servers}"),
                format!("--secure-port={APISERVER_PORT}"),
                format!("--tls-cert-file={PKI_DIR}/apiserver.crt"),
                format!("--tls-private-key-file={PKI_DIR}/apiserver.key"),
                format!("--client-ca-file={PKI_DIR}/ca.crt"),
                // pods/log and pods/exec: the apiserver's identity towards
                // kubelets, and the CA their serving certificates (for the
                // node's name, the Hostname address it reaches them at)
                // are checked against.
                format!("--kubelet-client-certificate={PKI_DIR}/apiserver-kubelet-client.crt"),
                format!("--kubelet-client-key={PKI_DIR}/apiserver-kubelet-client.key"),
                format!("--kubelet-certificate-authority={PKI_DIR}/ca.crt"),
                format!("--advertise-address={name}:{APISERVER_PORT}"),
                format!("--service-cluster-ip-range={}", t.networking.service_subnet.net()),
                // Where componentstatuses asks them.
                format!("--scheduler-address={SCHEDULER}:{SCHEDULER_PORT}"),
                format!("--controller-manager-address={CONTROLLER_MANAGER}:{CONTROLLER_MANAGER_PORT}"),
            ];
            let spec = ContainerSpec {
                name: container_name(lab, name),
                hostname: name.clone(),
                image: images.of("apiserver").to_string(),
                cmd,
                env: vec![],
                labels: BTreeMap::new(),
                network: Attachment::Network { network: network.to_string(), aliases },
                volumes: vec![],
                tmpfs: vec![],
                privileged: false,
                files: [pki_files(pki, pki::APISERVER, "apiserver"), identity_files(pki, pki::APISERVER_KUBELET_CLIENT, "apiserver-kubelet-client").into()]
                    .concat(),
            };
            // Ready means serving TLS and reaching etcd; /readyz needs no
            // client certificate, as upstream's public-info role allows.
            let gate =
                vec!["curl".to_string(), "-fsk".to_string(), "--max-time".to_string(), "2".to_string(), format!("https://127.0.0.1:{APISERVER_PORT}/readyz")];
            member(lab, name, "apiserver", spec, gate)
        })
        .collect();
    Stage { name: "apiserver", members }
}

/// The instance (and network alias) of the controller-manager: the name
/// the apiserver's componentstatuses asks.
pub const CONTROLLER_MANAGER: &str = "controller-manager";

/// The instance (and network alias) of the scheduler: the name the
/// apiserver's componentstatuses asks.
pub const SCHEDULER: &str = "scheduler";

/// A control-plane component that is a client of the API only.
struct ApiClient {
    /// Instance, network alias, image and role.
    instance: &'static str,
    /// Its identity in the lab's PKI.
    identity: &'static str,
    /// Its secure port, where its health gate asks /healthz.
    port: u16,
    /// Its flags besides --kubeconfig and --secure-port.
    flags: Vec<String>,
}

/// A client of the API through the address every component uses
/// (`apiserver`: the one apiserver, or the load balancer), with a
/// kubeconfig holding its own client certificate, as kubeadm's
/// controller-manager.conf and scheduler.conf do.
///
/// With more than one control-plane replica (`ha`), there are as many of
/// it, `<name>-0`, `<name>-1`..., all under the one alias `<name>`; they
/// elect a leader on a Lease and only the leader works.
fn api_client_stage(lab: &str, network: &str, t: &Topology, images: &Images, pki: &Pki, component: ApiClient) -> Stage {
    let ApiClient { instance: role, identity, port, flags } = component;
    let identity = pki.identity(identity).expect("the PKI holds every identity the plan asks for");
    let server = format!("https://apiserver:{APISERVER_PORT}");
    let config = kubeconfig::for_lab(lab, &server, None, pki.ca_pem(), &identity.cert_pem, &identity.key_pem);
    let kubeconfig_path = format!("/etc/kubelab/{role}.conf");
    let replicas = t.control_plane.replicas.max(1);
    let instances: Vec<String> = if replicas == 1 { vec![role.to_string()] } else { (0..replicas).map(|i| format!("{role}-{i}")).collect() };
    let members = instances
        .iter()
        .map(|instance| {
            let spec = ContainerSpec {
                name: container_name(lab, instance),
                hostname: instance.clone(),
                image: images.of(role).to_string(),
                cmd: [vec![format!("--kubeconfig={kubeconfig_path}"), format!("--secure-port={port}")], flags.clone()].concat(),
                env: vec![],
                labels: BTreeMap::new(),
                network: Attachment::Network { network: network.to_string(), aliases: vec![role.to_string()] },
                volumes: vec![],
                tmpfs: vec![],
                privileged: false,
                files: vec![File { path: kubeconfig_path.clone(), mode: 0o600, contents: config.to_yaml() }],
            };
            let gate = vec!["curl".to_string(), "-fsk".to_string(), "--max-time".to_string(), "2".to_string(), format!("https://127.0.0.1:{port}/healthz")];
            member(lab, instance, role, spec, gate)
        })
        .collect();
    Stage { name: role, members }
}

fn controller_manager_stage(lab: &str, network: &str, t: &Topology, images: &Images, pki: &Pki, load_balancer_pool: &str) -> Stage {
    let flags = vec![
        "--controllers=*".into(),
        // Nodes get their pod CIDRs (a /24 each) from the topology's pod subnet.
        "--allocate-node-cidrs=true".into(),
        format!("--cluster-cidr={}", t.networking.pod_subnet.net()),
        // LoadBalancer Services get addresses on the lab network, where
        // Docker hands out none.
        format!("--load-balancer-pool={load_balancer_pool}"),
    ];
    let component = ApiClient { instance: CONTROLLER_MANAGER, identity: pki::CONTROLLER_MANAGER, port: CONTROLLER_MANAGER_PORT, flags };
    api_client_stage(lab, network, t, images, pki, component)
}

/// The scheduler, started once the controller-manager is healthy.
fn scheduler_stage(lab: &str, network: &str, t: &Topology, images: &Images, pki: &Pki) -> Stage {
    api_client_stage(lab, network, t, images, pki, ApiClient { instance: SCHEDULER, identity: pki::SCHEDULER, port: SCHEDULER_PORT, flags: vec![] })
}

fn etcd_stage(lab: &str, network: &str, t: &Topology, images: &Images) -> Stage {
    let names: Vec<String> = (0..t.etcd.members).map(|i| format!("etcd-{i}")).collect();
    // Members find each other by their aliases on the lab network, so the
    // cluster survives new container addresses after `down --keep-data`.
    let initial_cluster = names.iter().map(|n| format!("{n}=http://{n}:2380")).collect::<Vec<_>>().join(",");
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
                network: Attachment::Network { network: network.to_string(), aliases: vec![name.clone()] },
                volumes: vec![(format!("{lab}-{name}-data"), "/var/lib/etcd".into())],
                tmpfs: vec![],
                privileged: false,
                files: vec![],
            };
            let gate = ["etcdctl", "--endpoints=http://127.0.0.1:2379", "--command-timeout=2s", "endpoint", "health"].map(String::from).to_vec();
            member(lab, name, "etcd", spec, gate)
        })
        .collect();
    Stage { name: "etcd", members }
}

/// The kubelet's VXLAN device (the node image's private business, named
/// here only for the health gate).
const OVERLAY_DEVICE: &str = "kubelab.1";

/// The kubelet's ports: its API for the apiserver, and plain /healthz on
/// the node's loopback (upstream's 10250 and 10248).
pub const KUBELET_PORT: u16 = 10250;
pub const KUBELET_HEALTHZ_PORT: u16 = 10248;

/// The n-th address of a subnet (1: the `kubernetes` Service, 10: cluster DNS).
fn nth_address(net: &ipnet::Ipv4Net, n: u32) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(net.network()).saturating_add(n))
}

/// The kubelet's flags for one node of the topology.
fn kubelet_flags(t: &Topology, node: &crate::topology::Node) -> Vec<String> {
    let labels: Vec<String> = node.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let taints: Vec<String> = node
        .taints
        .iter()
        .map(|taint| match &taint.value {
            Some(v) => format!("{}={v}:{:?}", taint.key, taint.effect),
            None => format!("{}:{:?}", taint.key, taint.effect),
        })
        .collect();
    let service = t.networking.service_subnet.net();
    vec![
        "--kubeconfig=/etc/kubelab/kubelet.conf".into(),
        format!("--hostname-override={}", node.name),
        format!("--node-labels={}", labels.join(",")),
        format!("--register-with-taints={}", taints.join(",")),
        format!("--capacity=cpu={},memory={},pods={}", node.capacity.cpu.0, node.capacity.memory.0, node.capacity.pods),
        format!("--cluster-dns={}", nth_address(&service, 10)),
        format!("--kubernetes-service-host={}", nth_address(&service, 1)),
        format!("--cluster-cidr={}", t.networking.pod_subnet.net()),
        format!("--port={KUBELET_PORT}"),
        format!("--healthz-port={KUBELET_HEALTHZ_PORT}"),
        format!("--tls-cert-file={PKI_DIR}/kubelet.crt"),
        format!("--tls-private-key-file={PKI_DIR}/kubelet.key"),
        format!("--client-ca-file={PKI_DIR}/ca.crt"),
    ]
}

/// The nodes: each runs its kubelet (the node image's entrypoint
/// supervises it), with a kubeconfig holding the node's identity
/// (`system:node:<name>`), whose certificate also serves :10250 under the
/// node's name, the address the apiserver reaches it at.
fn node_stage(lab: &str, network: &str, t: &Topology, images: &Images, pki: &Pki) -> Stage {
    let server = format!("https://apiserver:{APISERVER_PORT}");
    let members = t
        .nodes
        .iter()
        .map(|node| {
            let identity = pki.identity(&pki::kubelet(&node.name)).expect("the PKI holds every node's identity");
            let config = kubeconfig::for_lab(lab, &server, None, pki.ca_pem(), &identity.cert_pem, &identity.key_pem);
            let mut files = pki_files(pki, &pki::kubelet(&node.name), "kubelet");
            files.push(File { path: "/etc/kubelab/kubelet.conf".into(), mode: 0o600, contents: config.to_yaml() });
            let spec = ContainerSpec {
                name: container_name(lab, &node.name),
                hostname: node.name.clone(),
                image: images.of("node").to_string(),
                cmd: kubelet_flags(t, node),
                env: vec![],
                labels: BTreeMap::new(),
                network: Attachment::Network { network: network.to_string(), aliases: vec![node.name.clone()] },
                // /var on a volume, so that overlay mounts made inside the
                // node are not stacked on the container's own overlay.
                volumes: vec![(format!("{lab}-{}-var", node.name), "/var".into())],
                tmpfs: vec!["/run".into(), "/tmp".into()],
                privileged: true,
                files,
            };
            // Healthy once its kubelet serves and its VXLAN overlay has a
            // route to every other node's pods: before that, a pod's
            // packets to another node are dropped.
            let peers = t.nodes.len().saturating_sub(1);
            let gate = vec![
                "sh".to_string(),
                "-c".to_string(),
                format!(
                    "curl -fs --max-time 2 http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz >/dev/null && \
                     [ \"$(ip route show dev {OVERLAY_DEVICE} 2>/dev/null | grep -c ' via ')\" -ge {peers} ]"
                ),
            ];
            member(lab, &node.name, "node", spec, gate)
        })
        .collect();
    Stage { name: "nodes", members }
}

/// On a kube-proxy: the spec hash of the node whose network namespace it shares.
pub const NODE_SPEC_LABEL: &str = "dev.kubelab.node-spec";

/// kube-proxy's health port (plain HTTP /healthz), upstream's.
pub const KUBE_PROXY_HEALTHZ_PORT: u16 = 10256;

/// The instance of the kube-proxy of one node.
pub fn kube_proxy_instance(node: &str) -> String {
    format!("kube-proxy-{node}")
}

/// One kube-proxy per node, in its node container's network namespace (so
/// the rules it writes are the node's), as upstream's DaemonSet runs it
/// with hostNetwork. Healthy once it has written the rules.
fn kube_proxy_stage(lab: &str, t: &Topology, images: &Images, pki: &Pki, nodes: &Stage) -> Stage {
    let server = format!("https://apiserver:{APISERVER_PORT}");
    let identity = pki.identity(pki::KUBE_PROXY).expect("the PKI holds kube-proxy's identity");
    let config = kubeconfig::for_lab(lab, &server, None, pki.ca_pem(), &identity.cert_pem, &identity.key_pem);
    let mode = match t.networking.proxy_mode {
        crate::topology::ProxyMode::Iptables => "iptables",
    };
    let members = t
        .nodes
        .iter()
        .map(|node| {
            let instance = kube_proxy_instance(&node.name);
            // A node made again has a new network namespace: carrying its
            // spec's hash makes its kube-proxy be made again with it.
            let node_spec = nodes.members.iter().find(|m| m.instance == node.name).and_then(|m| m.spec.labels.get(SPEC_LABEL)).cloned().unwrap_or_default();
            let spec = ContainerSpec {
                name: container_name(lab, &instance),
                hostname: node.name.clone(),
                image: images.of("kube-proxy").to_string(),
                cmd: vec![
                    "--kubeconfig=/etc/kubelab/kube-proxy.conf".into(),
                    format!("--hostname-override={}", node.name),
                    format!("--proxy-mode={mode}"),
                    format!("--cluster-cidr={}", t.networking.pod_subnet.net()),
                    format!("--healthz-bind-address=0.0.0.0:{KUBE_PROXY_HEALTHZ_PORT}"),
                ],
                env: vec![],
                labels: BTreeMap::from([(NODE_SPEC_LABEL.to_string(), node_spec)]),
                network: Attachment::Container(container_name(lab, &node.name)),
                volumes: vec![],
                tmpfs: vec![],
                // iptables needs NET_ADMIN and NET_RAW in the node's namespace.
                privileged: true,
                files: vec![File { path: "/etc/kubelab/kube-proxy.conf".into(), mode: 0o600, contents: config.to_yaml() }],
            };
            let gate = vec![
                "curl".to_string(),
                "-fs".to_string(),
                "--max-time".to_string(),
                "2".to_string(),
                format!("http://127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}/healthz"),
            ];
            member(lab, &instance, "kube-proxy", spec, gate)
        })
        .collect();
    Stage { name: "kube-proxy", members }
}

/// Labels a member's container with the lab, its role, its gate and the
/// hash of its spec (so `lab up` can tell a changed container from a kept one).
fn member(lab: &str, instance: &str, role: &str, mut spec: ContainerSpec, gate: Vec<String>) -> Member {
    spec.labels.insert(LAB_LABEL.into(), lab.into());
    spec.labels.insert(COMPONENT_LABEL.into(), instance.into());
    spec.labels.insert(ROLE_LABEL.into(), role.into());
    spec.labels.insert(GATE_LABEL.into(), serde_json::to_string(&gate).expect("strings serialize"));
    let hash = Sha256::digest(serde_json::to_vec(&spec).expect("a spec serializes"));
    let hash: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    spec.labels.insert(SPEC_LABEL.into(), hash);
    Member { instance: instance.to_string(), spec, gate }
}
