//! The start plan: from a topology and a set of images, the containers of a
//! lab in the order they start (etcd → apiserver → load balancer →
//! controller-manager → scheduler → nodes → kube-proxy), each with the
//! gate that says it is healthy.
//! A component that does not exist yet has no stage here.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use crate::addons::{self, Addons};
use crate::docker::{Attachment, ContainerSpec, File, COMPONENT_LABEL, LAB_LABEL, ROLE_LABEL, SPEC_LABEL};
use crate::images::Images;
use crate::kubeconfig;
use crate::pki::{self, EtcdMember, Pki, ServingNames};
use crate::topology::{self, Topology};

/// Where components find the lab's certificates inside their containers.
pub const PKI_DIR: &str = "/etc/kubelab/pki";
/// The apiserver's port inside the lab network.
pub const APISERVER_PORT: u16 = 6443;
/// The controller-manager's secure port (/healthz), upstream's default.
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
/// The scheduler's secure port (/healthz), upstream's default.
pub const SCHEDULER_PORT: u16 = 10259;
/// etcd's client and peer ports, etcd's defaults.
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;

/// Inside an etcd container, where etcd's CA and its health-check client
/// certificate are: what `etcdctl` there needs (see [`etcdctl`]).
pub const ETCD_CA_FILE: &str = "/etc/kubelab/pki/etcd/ca.crt";
pub const ETCD_HEALTHCHECK_CERT_FILE: &str = "/etc/kubelab/pki/etcd/healthcheck-client.crt";
pub const ETCD_HEALTHCHECK_KEY_FILE: &str = "/etc/kubelab/pki/etcd/healthcheck-client.key";

/// On an etcd member's data volume: the scheme of the peer URLs its data
/// was made with. Volumes made before etcd ran behind TLS lack it; their
/// members have http peer URLs stored (see [`Plan::etcd_data_from_before_tls`]).
pub const ETCD_PEER_SCHEME_LABEL: &str = "dev.kubelab.etcd-peer-scheme";

/// `etcdctl` run inside an etcd container against that member, over TLS
/// with the health-check client certificate: the health gate, `lab status`
/// and anyone who `docker exec`s into the member.
pub fn etcdctl(args: &[&str]) -> Vec<String> {
    let mut cmd = vec![
        "etcdctl".to_string(),
        format!("--endpoints=https://127.0.0.1:{ETCD_CLIENT_PORT}"),
        format!("--cacert={ETCD_CA_FILE}"),
        format!("--cert={ETCD_HEALTHCHECK_CERT_FILE}"),
        format!("--key={ETCD_HEALTHCHECK_KEY_FILE}"),
    ];
    cmd.extend(args.iter().map(|a| a.to_string()));
    cmd
}

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
    /// What is applied through the API once every stage is healthy.
    pub addons: Addons,
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

    /// The labels a volume of the plan is made with, besides the lab's.
    pub fn volume_labels(&self, volume: &str) -> Vec<(&'static str, String)> {
        match self.etcd_volumes().any(|v| v == volume) {
            true => vec![(ETCD_PEER_SCHEME_LABEL, "https".to_string())],
            false => vec![],
        }
    }

    fn etcd_volumes(&self) -> impl Iterator<Item = &str> {
        self.members()
            .filter(|m| m.spec.labels.get(ROLE_LABEL).map(String::as_str) == Some("etcd"))
            .flat_map(|m| m.spec.volumes.iter().map(|(v, _)| v.as_str()))
    }

    /// The etcd data volumes among `existing` (name, labels) that were made
    /// before etcd ran behind TLS. Their members have `http://` peer URLs
    /// stored in the cluster, which the initial-cluster flags no longer
    /// change and which members serving peers over TLS cannot use: with
    /// more than one member the cluster would never regain quorum.
    pub fn etcd_data_from_before_tls<'a>(&self, existing: &'a [(String, std::collections::HashMap<String, String>)]) -> Vec<&'a str> {
        let ours: Vec<&str> = self.etcd_volumes().collect();
        existing
            .iter()
            .filter(|(name, labels)| ours.contains(&name.as_str()) && labels.get(ETCD_PEER_SCHEME_LABEL).map(String::as_str) != Some("https"))
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

pub fn network_name(lab: &str) -> String {
    format!("kubelab-{lab}")
}

pub fn container_name(lab: &str, instance: &str) -> String {
    format!("{lab}-{instance}")
}

/// The lab's PKI in `dir`, made or completed for what this topology
/// needs: the apiserver's names, its nodes and its etcd members.
pub fn load_pki(dir: &std::path::Path, lab: &str, t: &Topology) -> anyhow::Result<Pki> {
    let nodes: Vec<String> = t.nodes.iter().map(|n| n.name.clone()).collect();
    Pki::load_or_create(dir, &apiserver_serving_names(lab, t), &nodes, &etcd_members(lab, t))
}

/// The plan of a lab of `topology` on the lab subnet `subnet` (the
/// topology's, or the one `lab up` chose when it names none).
pub fn plan(lab: &str, topology: &Topology, subnet: Ipv4Net, images: &Images, pki: &Pki) -> Plan {
    let network = network_name(lab);
    let load_balancer_pool = topology.networking.load_balancer_pool_on(subnet);
    let etcd = etcd_stage(lab, &network, topology, images, pki);
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
        addons: addons::addons(topology, images, pki),
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

/// etcd's CA as a container file, where kubeadm puts it (`etcd/ca.crt`).
fn etcd_ca_file(pki: &Pki) -> File {
    File { path: format!("{PKI_DIR}/etcd/ca.crt"), mode: 0o644, contents: pki.etcd_ca_pem().to_string() }
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
    let etcd_servers = etcd_instances(t).iter().map(|n| format!("https://{n}:{ETCD_CLIENT_PORT}")).collect::<Vec<_>>().join(",");
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
                // etcd checks the apiserver's certificate against etcd's
                // CA, and the apiserver checks each member's against it.
                format!("--etcd-cafile={PKI_DIR}/etcd/ca.crt"),
                format!("--etcd-certfile={PKI_DIR}/apiserver-etcd-client.crt"),
                format!("--etcd-keyfile={PKI_DIR}/apiserver-etcd-client.key"),
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
                files: [
                    pki_files(pki, pki::APISERVER, "apiserver"),
                    identity_files(pki, pki::APISERVER_KUBELET_CLIENT, "apiserver-kubelet-client").into(),
                    identity_files(pki, pki::APISERVER_ETCD_CLIENT, "apiserver-etcd-client").into(),
                    vec![etcd_ca_file(pki)],
                ]
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

/// The instance names of a topology's etcd members: `etcd-0`, ...
pub fn etcd_instances(t: &Topology) -> Vec<String> {
    (0..t.etcd.members).map(|i| format!("etcd-{i}")).collect()
}

/// The etcd members and the names their certificates must hold: their
/// aliases and container names on the lab network.
pub fn etcd_members(lab: &str, t: &Topology) -> Vec<EtcdMember> {
    etcd_instances(t).into_iter().map(|name| EtcdMember { dns: vec![name.clone(), container_name(lab, &name)], name }).collect()
}

/// etcd behind mutual TLS, for clients and peers alike, as kubeadm runs it:
/// only certificates of etcd's own CA are let in (the apiserver's and the
/// health-check client's; peers show theirs), so nothing else on the lab
/// network, pods included, can read or write the store.
fn etcd_stage(lab: &str, network: &str, t: &Topology, images: &Images, pki: &Pki) -> Stage {
    let names = etcd_instances(t);
    // Members find each other by their aliases on the lab network, so the
    // cluster survives new container addresses after `down --keep-data`.
    let initial_cluster = names.iter().map(|n| format!("{n}=https://{n}:{ETCD_PEER_PORT}")).collect::<Vec<_>>().join(",");
    let etcd_pki = format!("{PKI_DIR}/etcd");
    let members = names
        .iter()
        .map(|name| {
            let cmd = vec![
                format!("--name={name}"),
                "--data-dir=/var/lib/etcd".into(),
                format!("--listen-client-urls=https://0.0.0.0:{ETCD_CLIENT_PORT}"),
                format!("--advertise-client-urls=https://{name}:{ETCD_CLIENT_PORT}"),
                format!("--listen-peer-urls=https://0.0.0.0:{ETCD_PEER_PORT}"),
                format!("--initial-advertise-peer-urls=https://{name}:{ETCD_PEER_PORT}"),
                format!("--initial-cluster={initial_cluster}"),
                "--initial-cluster-state=new".into(),
                format!("--initial-cluster-token=kubelab-{lab}"),
                format!("--cert-file={etcd_pki}/server.crt"),
                format!("--key-file={etcd_pki}/server.key"),
                "--client-cert-auth=true".into(),
                format!("--trusted-ca-file={etcd_pki}/ca.crt"),
                format!("--peer-cert-file={etcd_pki}/peer.crt"),
                format!("--peer-key-file={etcd_pki}/peer.key"),
                "--peer-client-cert-auth=true".into(),
                format!("--peer-trusted-ca-file={etcd_pki}/ca.crt"),
            ];
            let files = [
                vec![etcd_ca_file(pki)],
                identity_files(pki, &pki::etcd_server(name), "etcd/server").into(),
                identity_files(pki, &pki::etcd_peer(name), "etcd/peer").into(),
                identity_files(pki, pki::ETCD_HEALTHCHECK_CLIENT, "etcd/healthcheck-client").into(),
            ]
            .concat();
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
                files,
            };
            let gate = etcdctl(&["--command-timeout=2s", "endpoint", "health"]);
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
    let mode = t.networking.proxy_mode.flag();
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use super::*;
    use crate::components;

    fn images() -> Images {
        Images {
            base: "kubelab/base:test".into(),
            components: components::COMPONENTS.iter().map(|c| (c.name, format!("kubelab/{}:test", c.name))).collect(),
            pod_images: components::POD_IMAGES.iter().map(|p| (p.name, format!("kubelab/{}:test", p.name))).collect(),
        }
    }

    /// The plan of a shipped topology for lab `lab`, its PKI in `state`.
    fn shipped(name: &str, lab: &str, state: &Path) -> (Plan, Pki) {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies").join(format!("{name}.yaml"));
        let t = crate::topology::load(&file).unwrap().topology;
        let pki = load_pki(state, lab, &t).unwrap();
        (plan(lab, &t, "172.30.0.0/24".parse().unwrap(), &images(), &pki), pki)
    }

    fn by_role<'a>(plan: &'a Plan, role: &str) -> Vec<&'a Member> {
        plan.members().filter(|m| m.spec.labels.get(ROLE_LABEL).map(String::as_str) == Some(role)).collect()
    }

    fn file<'a>(m: &'a Member, path: &str) -> &'a File {
        m.spec.files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{} has no {path}", m.instance))
    }

    fn flag<'a>(m: &'a Member, name: &str) -> &'a str {
        let prefix = format!("--{name}=");
        m.spec.cmd.iter().find_map(|c| c.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("{} has no --{name}", m.instance))
    }

    #[test]
    fn etcd_serves_clients_and_peers_over_tls_with_its_own_ca() {
        let state = tempfile::tempdir().unwrap();
        let (plan, pki) = shipped("ha", "lab", state.path());
        let etcd = by_role(&plan, "etcd");
        assert_eq!(etcd.len(), 3);
        for m in &etcd {
            let name = &m.instance;
            assert_eq!(flag(m, "listen-client-urls"), "https://0.0.0.0:2379");
            assert_eq!(flag(m, "advertise-client-urls"), format!("https://{name}:2379"));
            assert_eq!(flag(m, "listen-peer-urls"), "https://0.0.0.0:2380");
            assert_eq!(flag(m, "initial-advertise-peer-urls"), format!("https://{name}:2380"));
            assert_eq!(flag(m, "initial-cluster"), "etcd-0=https://etcd-0:2380,etcd-1=https://etcd-1:2380,etcd-2=https://etcd-2:2380");
            assert_eq!(flag(m, "client-cert-auth"), "true");
            assert_eq!(flag(m, "peer-client-cert-auth"), "true");
            for (f, path) in [
                ("cert-file", "etcd/server.crt"),
                ("key-file", "etcd/server.key"),
                ("trusted-ca-file", "etcd/ca.crt"),
                ("peer-cert-file", "etcd/peer.crt"),
                ("peer-key-file", "etcd/peer.key"),
                ("peer-trusted-ca-file", "etcd/ca.crt"),
            ] {
                assert_eq!(flag(m, f), format!("{PKI_DIR}/{path}"), "{name} --{f}");
            }
            // No http listener is left, and no flag names one.
            assert!(!m.spec.cmd.iter().any(|c| c.contains("http://")), "{name}: {:?}", m.spec.cmd);

            // Etcd's CA, never the main one; the member's own certificates.
            assert_eq!(file(m, &format!("{PKI_DIR}/etcd/ca.crt")).contents, pki.etcd_ca_pem());
            assert!(!m.spec.files.iter().any(|f| f.contents == pki.ca_pem()), "{name} holds the main CA");
            let server = pki.identity(&pki::etcd_server(name)).unwrap();
            let peer = pki.identity(&pki::etcd_peer(name)).unwrap();
            let health = pki.identity(pki::ETCD_HEALTHCHECK_CLIENT).unwrap();
            for (path, contents) in [
                ("etcd/server.crt", &server.cert_pem),
                ("etcd/server.key", &server.key_pem),
                ("etcd/peer.crt", &peer.cert_pem),
                ("etcd/peer.key", &peer.key_pem),
                ("etcd/healthcheck-client.crt", &health.cert_pem),
                ("etcd/healthcheck-client.key", &health.key_pem),
            ] {
                let f = file(m, &format!("{PKI_DIR}/{path}"));
                assert_eq!(&f.contents, contents, "{name} {path}");
                assert_eq!(f.mode, if path.ends_with(".key") { 0o600 } else { 0o644 }, "{name} {path}");
            }
            // Nothing else: no CA key, no other member's or client's key.
            assert_eq!(m.spec.files.len(), 7, "{name}: {:?}", m.spec.files.iter().map(|f| &f.path).collect::<Vec<_>>());

            // The gate asks the member itself over TLS, as the health-check client.
            let gate = m.gate.join(" ");
            assert_eq!(m.gate[0], "etcdctl");
            for part in [
                "--endpoints=https://127.0.0.1:2379",
                &format!("--cacert={ETCD_CA_FILE}"),
                &format!("--cert={ETCD_HEALTHCHECK_CERT_FILE}"),
                &format!("--key={ETCD_HEALTHCHECK_KEY_FILE}"),
                "endpoint health",
            ] {
                assert!(gate.contains(part), "{name} gate: {gate}");
            }
            assert!(ETCD_CA_FILE.starts_with(PKI_DIR) && ETCD_HEALTHCHECK_KEY_FILE.starts_with(PKI_DIR));
        }
        // The other members' certificates differ (one per member).
        assert_ne!(pki.identity(&pki::etcd_server("etcd-0")), pki.identity(&pki::etcd_server("etcd-1")));
    }

    #[test]
    fn the_apiserver_holds_the_one_etcd_client_certificate() {
        let state = tempfile::tempdir().unwrap();
        let (plan, pki) = shipped("ha", "lab", state.path());
        let client = pki.identity(pki::APISERVER_ETCD_CLIENT).unwrap();
        for m in by_role(&plan, "apiserver") {
            assert_eq!(flag(m, "etcd-servers"), "https://etcd-0:2379,https://etcd-1:2379,https://etcd-2:2379");
            assert_eq!(flag(m, "etcd-cafile"), format!("{PKI_DIR}/etcd/ca.crt"));
            assert_eq!(flag(m, "etcd-certfile"), format!("{PKI_DIR}/apiserver-etcd-client.crt"));
            assert_eq!(flag(m, "etcd-keyfile"), format!("{PKI_DIR}/apiserver-etcd-client.key"));
            assert_eq!(file(m, &format!("{PKI_DIR}/etcd/ca.crt")).contents, pki.etcd_ca_pem());
            assert_eq!(file(m, &format!("{PKI_DIR}/apiserver-etcd-client.crt")).contents, client.cert_pem);
            let key = file(m, &format!("{PKI_DIR}/apiserver-etcd-client.key"));
            assert_eq!((key.contents.as_str(), key.mode), (client.key_pem.as_str(), 0o600));
        }
        // No one else holds a key of etcd's CA: not the health-check
        // client's, not the apiserver's etcd client's, not a member's.
        let etcd_keys: Vec<&str> = [pki::APISERVER_ETCD_CLIENT.to_string(), pki::ETCD_HEALTHCHECK_CLIENT.to_string()]
            .iter()
            .chain(etcd_instances_of(&plan).iter().flat_map(|n| [pki::etcd_server(n), pki::etcd_peer(n)]).collect::<Vec<_>>().iter())
            .map(|id| pki.identity(id).unwrap().key_pem.as_str())
            .collect::<Vec<_>>();
        for m in plan.members() {
            let role = m.spec.labels[ROLE_LABEL].as_str();
            if role == "etcd" || role == "apiserver" {
                continue;
            }
            for f in &m.spec.files {
                assert!(!etcd_keys.iter().any(|k| f.contents.contains(k.trim())), "{} holds an etcd key in {}", m.instance, f.path);
                assert!(!f.contents.contains(pki.etcd_ca_pem().trim()), "{} holds etcd's CA in {}", m.instance, f.path);
            }
        }
    }

    fn etcd_instances_of(plan: &Plan) -> Vec<String> {
        by_role(plan, "etcd").iter().map(|m| m.instance.clone()).collect()
    }

    #[test]
    fn etcd_member_names_are_in_their_certificates() {
        let members = etcd_members(
            "mylab",
            &crate::topology::parse(
                "apiVersion: kubelab.dev/v1alpha1\nkind: Topology\netcd: {members: 2}\ncontrolPlane: {replicas: 1}\nnodes: []\n",
                Path::new("t.yaml"),
            )
            .unwrap(),
        );
        assert_eq!(
            members,
            vec![
                EtcdMember { name: "etcd-0".into(), dns: vec!["etcd-0".into(), "mylab-etcd-0".into()] },
                EtcdMember { name: "etcd-1".into(), dns: vec!["etcd-1".into(), "mylab-etcd-1".into()] },
            ]
        );
    }

    #[test]
    fn etcd_volumes_are_labelled_and_older_ones_found() {
        let state = tempfile::tempdir().unwrap();
        let (plan, _) = shipped("ha", "lab", state.path());
        assert_eq!(plan.volume_labels("lab-etcd-1-data"), vec![(ETCD_PEER_SCHEME_LABEL, "https".to_string())]);
        assert_eq!(plan.volume_labels("lab-worker-1-var"), vec![]);
        let lab_only = HashMap::from([(LAB_LABEL.to_string(), "lab".to_string())]);
        let mut ours = lab_only.clone();
        ours.insert(ETCD_PEER_SCHEME_LABEL.into(), "https".into());
        let existing = vec![
            ("lab-etcd-0-data".to_string(), ours.clone()),
            ("lab-etcd-1-data".to_string(), lab_only.clone()),
            ("lab-etcd-2-data".to_string(), ours),
            // A node's volume never carries the label and is no etcd data.
            ("lab-worker-1-var".to_string(), lab_only.clone()),
            // Another lab's etcd volume is not this plan's business.
            ("other-etcd-0-data".to_string(), lab_only),
        ];
        assert_eq!(plan.etcd_data_from_before_tls(&existing), ["lab-etcd-1-data"]);
        assert!(plan.etcd_data_from_before_tls(&[]).is_empty());
    }
}
