//! Topology files: every shipped file parses to what kubelab will build, and
//! every kind of bad input is reported with its file, line, column and field.

use std::path::Path;

use kubelab::topology::{self, TopologyError};

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repo")
}

#[test]
fn shipped_topologies_parse() {
    let dir = repo_root().join("topologies");
    let names = topology::known(&dir);
    assert_eq!(names, ["1-node", "3-node", "ha"]);
    for name in names {
        let path = topology::resolve(&name, &dir).unwrap();
        let source = topology::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_yaml_snapshot!(format!("topology-{name}"), source.topology);
    }
}

/// The error text `lab` prints for a document.
fn error_of(yaml: &str) -> String {
    match topology::parse(yaml, Path::new("bad.yaml")) {
        Ok(t) => panic!("expected an error, parsed {t:?}"),
        Err(e) => e.to_string(),
    }
}

const HEAD: &str = "apiVersion: kubelab.dev/v1alpha1\nkind: Topology\n";

#[test]
fn unknown_field_names_line_and_field() {
    let doc = format!("{HEAD}nodes:\n  - name: a\n    labls: {{x: y}}\n");
    insta::assert_snapshot!(error_of(&doc), @"bad.yaml:5:5: nodes[0]: unknown field `labls`, expected one of `name`, `labels`, `taints`, `capacity`");
}

#[test]
fn bad_cidr_is_named_with_its_position() {
    let doc = format!("{HEAD}networking:\n  podSubnet: 10.244.0.0/33\n");
    insta::assert_snapshot!(error_of(&doc), @r#"bad.yaml:4:14: networking.podSubnet: invalid CIDR "10.244.0.0/33": expected an IPv4 address and prefix length, such as 10.244.0.0/16"#);
    let doc = format!("{HEAD}networking:\n  serviceSubnet: 10.96.1.0/16\n");
    insta::assert_snapshot!(error_of(&doc), @r#"bad.yaml:4:18: networking.serviceSubnet: invalid CIDR "10.96.1.0/16": host bits are set; the network is 10.96.0.0/16"#);
}

#[test]
fn overlapping_subnets_and_duplicate_nodes_are_all_reported() {
    let doc = format!(
        "{HEAD}nodes:\n  - name: w1\n  - name: w2\n  - name: w1\nnetworking:\n  podSubnet: 10.0.0.0/8\n  serviceSubnet: 10.96.0.0/16\n  labSubnet: 172.30.0.0/24\n"
    );
    insta::assert_snapshot!(error_of(&doc), @r#"
    bad.yaml:6:11: nodes[2].name: duplicate node name "w1": nodes[0] has it already
    bad.yaml:9:18: networking.serviceSubnet: 10.96.0.0/16 overlaps networking.podSubnet (10.0.0.0/8)
    "#);
}

#[test]
fn malformed_yaml_says_where_and_what() {
    let doc = format!("{HEAD}nodes:\n  - name: a\n   bad indent: [\n");
    insta::assert_snapshot!(error_of(&doc));
    let doc = format!("{HEAD}etcd:\n  members: three\n");
    insta::assert_snapshot!(error_of(&doc), @"bad.yaml:4:12: etcd.members: invalid type: string \"three\", expected u8");
}

#[test]
fn semantic_limits_are_checked() {
    let doc = "apiVersion: v1\nkind: Pod\netcd: {members: 0}\ncontrolPlane: {replicas: 9}\nnodes:\n  - name: Bad_Name\n    taints: [{key: 'a b', effect: NoSchedule}]\n    capacity: {memory: 4GB, pods: 0}\n";
    insta::assert_snapshot!(error_of(doc));
}

#[test]
fn unknown_topology_lists_the_known_ones() {
    let err = topology::resolve("5-node", &repo_root().join("topologies")).unwrap_err();
    assert!(matches!(err, TopologyError::Unknown { .. }));
    let text = err.to_string();
    assert!(text.starts_with("unknown topology \"5-node\""), "{text}");
    assert!(text.ends_with("1-node, 3-node, ha"), "{text}");
}

#[test]
fn a_path_is_taken_as_it_is() {
    let path = repo_root().join("topologies/ha.yaml");
    let found = topology::resolve(path.to_str().unwrap(), Path::new("/nonexistent")).unwrap();
    assert_eq!(found, path);
}

/// The controller-manager's flags in each shipped topology's plan: pod
/// CIDRs for Nodes come from the topology's pod subnet, load balancer
/// addresses from the top of the lab subnet.
#[test]
fn controller_manager_flags_follow_the_topology() {
    use kubelab::plan;
    for (name, _, plan) in shipped_plans() {
        // One controller-manager, or (ha) several with the same flags.
        let member = plan.members().find(|m| m.instance.starts_with(plan::CONTROLLER_MANAGER)).expect("a controller-manager");
        insta::assert_yaml_snapshot!(format!("controller-manager-flags-{name}"), member.spec.cmd);
    }
}

/// Every node of every shipped topology has a kube-proxy in its network
/// namespace, started after the nodes, which is made again with its node
/// (it carries the node's spec hash).
#[test]
fn a_kube_proxy_shares_each_nodes_network() {
    use kubelab::docker::{Attachment, SPEC_LABEL};
    use kubelab::plan;
    for (name, nodes, plan) in shipped_plans() {
        let stages: Vec<&str> = plan.stages.iter().map(|s| s.name).collect();
        assert_eq!(stages.last(), Some(&"kube-proxy"), "{name}: {stages:?}");
        for node in &nodes {
            let node_member = plan.members().find(|m| &m.instance == node).expect("the node's member");
            let proxy = plan.members().find(|m| m.instance == plan::kube_proxy_instance(node)).unwrap_or_else(|| panic!("{name}: no kube-proxy for {node}"));
            assert_eq!(proxy.spec.network, Attachment::Container(plan::container_name("test", node)));
            assert_eq!(proxy.spec.labels.get(plan::NODE_SPEC_LABEL), node_member.spec.labels.get(SPEC_LABEL), "{name}: {node}");
            assert!(proxy.spec.cmd.contains(&format!("--hostname-override={node}")), "{:?}", proxy.spec.cmd);
        }
    }
}

/// `proxyMode` reaches every kube-proxy as upstream's `--proxy-mode`: the
/// shipped topologies' iptables, and nftables (what the nftables services
/// lab test brings up); any other mode is refused with the modes there are.
#[test]
fn the_proxy_mode_reaches_every_kube_proxy() {
    use kubelab::topology::ProxyMode;
    for (name, nodes, plan) in shipped_plans() {
        for node in &nodes {
            let proxy = plan.members().find(|m| m.instance == kubelab::plan::kube_proxy_instance(node)).expect("a kube-proxy");
            assert!(proxy.spec.cmd.contains(&"--proxy-mode=iptables".to_string()), "{name}: {:?}", proxy.spec.cmd);
        }
    }
    let text = std::fs::read_to_string(repo_root().join("topologies/3-node.yaml")).unwrap().replace("proxyMode: iptables", "proxyMode: nftables");
    let parsed = topology::parse(&text, Path::new("3-node.yaml")).unwrap();
    assert_eq!(parsed.networking.proxy_mode, ProxyMode::Nftables);
    let state = tempfile::tempdir().unwrap();
    let pki = kubelab::plan::load_pki(state.path(), "test", &parsed).unwrap();
    let plan = kubelab::plan::plan("test", &parsed, "172.30.0.0/24".parse().unwrap(), &test_images(), &pki);
    let proxy = plan.members().find(|m| m.instance == kubelab::plan::kube_proxy_instance("worker-1")).expect("a kube-proxy");
    assert!(proxy.spec.cmd.contains(&"--proxy-mode=nftables".to_string()), "{:?}", proxy.spec.cmd);
    let refused = topology::parse(&text.replace("proxyMode: nftables", "proxyMode: ipvs"), Path::new("3-node.yaml")).unwrap_err().to_string();
    assert!(refused.contains("ipvs") && refused.contains("nftables"), "{refused}");
}

/// Every shipped topology gets cluster DNS as an add-on: its Service at
/// the tenth address of the service subnet, its pods on the dns pod image,
/// their kubeconfig reaching the API through the `kubernetes` Service with
/// their own client certificate. The objects (the Secret's data aside) are
/// a snapshot, the same for every topology.
#[test]
fn cluster_dns_is_an_addon_of_every_topology() {
    for (name, _, plan) in shipped_plans() {
        let addons = &plan.addons;
        let service = &addons.services[0];
        assert_eq!(service.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("10.96.0.10"), "{name}");
        let secret = &addons.secrets[0];
        let config = String::from_utf8(secret.data.as_ref().unwrap()["kubeconfig"].0.clone()).unwrap();
        let parsed = kube::config::Kubeconfig::from_yaml(&config).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.96.0.1:443"), "{name}");
        let user = parsed.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.client_certificate_data.as_ref().is_some_and(|c| !c.is_empty()), "{name}: a client certificate");
        let mut redacted = secret.clone();
        redacted.data = Some([("kubeconfig".to_string(), k8s_openapi::ByteString(b"<kubeconfig>".to_vec()))].into());
        let objects = (redacted, &addons.deployments[0], service);
        insta::assert_yaml_snapshot!("cluster-dns-addon", objects);
    }
}

/// The plan of every shipped topology (name, node names, plan), with test
/// image names and a PKI in a temporary folder.
/// Image tags as a plan names them, for plans made without Docker.
fn test_images() -> kubelab::images::Images {
    use kubelab::components;
    kubelab::images::Images {
        base: "kubelab/base:test".into(),
        components: components::COMPONENTS.iter().map(|c| (c.name, format!("kubelab/{}:test", c.name))).collect(),
        pod_images: components::POD_IMAGES.iter().map(|p| (p.name, format!("kubelab/{}:test", p.name))).collect(),
    }
}

fn shipped_plans() -> Vec<(String, Vec<String>, kubelab::plan::Plan)> {
    use kubelab::plan;
    let dir = repo_root().join("topologies");
    let images = test_images();
    topology::known(&dir)
        .into_iter()
        .map(|name| {
            let source = topology::load(&topology::resolve(&name, &dir).unwrap()).unwrap();
            let nodes: Vec<String> = source.topology.nodes.iter().map(|n| n.name.clone()).collect();
            let state = tempfile::tempdir().unwrap();
            let pki = plan::load_pki(state.path(), "test", &source.topology).unwrap();
            // The subnet `lab up` would pick on an engine without networks.
            let subnet = source.topology.networking.lab_subnet.as_ref().map(|c| c.net()).unwrap_or_else(|| "172.30.0.0/24".parse().unwrap());
            let plan = plan::plan("test", &source.topology, subnet, &images, &pki);
            (name, nodes, plan)
        })
        .collect()
}
