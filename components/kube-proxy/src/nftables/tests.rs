use std::sync::Mutex;

use anyhow::bail;

use super::ruleset::*;
use super::*;
use crate::model::fixtures::{port, services};

fn settings() -> Settings {
    Settings { cluster_cidr: Some("10.180.0.0/16".parse().unwrap()), ..Default::default() }
}

fn elements(ruleset: &Ruleset, set: &str) -> Vec<String> {
    ruleset.get_set(set).map(|s| s.elements.iter().cloned().collect()).unwrap_or_default()
}

fn rules(ruleset: &Ruleset, chain: &str) -> Vec<String> {
    ruleset.get_chain(chain).map(|c| c.rules.clone()).unwrap_or_default()
}

#[test]
fn chain_names_are_upstreams_hashes() {
    // Values from upstream's nftables proxier tests.
    let svc1 = port("ns1", "svc1", "p80", "172.30.0.41", &[("10.180.0.1", false)]);
    assert_eq!(service_chain(&svc1), "service-ULMVA6XW-ns1/svc1/tcp/p80");
    assert_eq!(endpoint_chain(&svc1, &svc1.endpoints[0]), "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80");
    assert_eq!(affinity_set(&svc1, &svc1.endpoints[0]), "affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80");
    assert_eq!(external_chain(&svc1), "external-ULMVA6XW-ns1/svc1/tcp/p80");
    assert!(is_service_chain(&local_chain(&svc1)) && !is_service_chain(SERVICES));
}

#[test]
fn every_shape_of_service_renders_in_upstreams_layout() {
    let ruleset = render(&services(), &settings());
    insta::assert_snapshot!(ruleset.replace_all());
}

#[test]
fn the_transaction_replaces_the_table_atomically() {
    let text = render(&services(), &settings()).replace_all();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..3],
        [
            "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }",
            "delete table ip kube-proxy",
            "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }"
        ]
    );
    // Every chain and set is declared before a rule or element names it.
    let first_rule = lines.iter().position(|l| l.starts_with("add rule")).unwrap();
    let last_declaration = lines.iter().rposition(|l| l.starts_with("add chain") || l.starts_with("add set") || l.starts_with("add map")).unwrap();
    assert!(last_declaration < first_rule);
}

#[test]
fn cluster_ips_go_through_the_service_ips_map_to_a_uniform_choice() {
    let ruleset = render(&services()[..1], &settings());
    let svc = &services()[0];
    let chain = service_chain(svc);
    assert_eq!(elements(&ruleset, SERVICE_IPS), [format!("172.30.0.41 . tcp . 80 : goto {chain}")]);
    assert_eq!(elements(&ruleset, CLUSTER_IPS), ["172.30.0.41"]);
    let endpoints: Vec<String> = svc.endpoints.iter().map(|e| endpoint_chain(svc, e)).collect();
    assert_eq!(
        rules(&ruleset, &chain),
        [
            format!("ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.180.0.0/16 jump {MARK_FOR_MASQUERADE}"),
            format!("numgen random mod 3 vmap {{ 0 : goto {}, 1 : goto {}, 2 : goto {} }}", endpoints[0], endpoints[1], endpoints[2]),
        ]
    );
    assert_eq!(
        rules(&ruleset, &endpoints[1]),
        [format!("ip saddr 10.180.1.1 jump {MARK_FOR_MASQUERADE}"), "meta l4proto tcp dnat to 10.180.1.1:80".to_string()],
        "hairpin traffic is masqueraded, then DNAT"
    );
    // Without a cluster CIDR nothing tells outside traffic: no masquerade rule.
    let bare = render(&services()[..1], &Settings::default());
    assert!(rules(&bare, &chain)[0].starts_with("numgen"));
    let all = render(&services()[..1], &Settings { masquerade_all: true, ..Default::default() });
    assert_eq!(rules(&all, &chain)[0], format!("ip daddr 172.30.0.41 tcp dport 80 jump {MARK_FOR_MASQUERADE}"));
}

#[test]
fn services_without_endpoints_are_rejected_and_local_ones_without_local_endpoints_dropped() {
    let ruleset = render(&services(), &settings());
    let no_endpoints = elements(&ruleset, NO_ENDPOINT_SERVICES);
    assert!(no_endpoints.contains(&"172.30.0.45 . tcp . 80 comment \"ns5/svc5:p80\" : goto reject-chain".to_string()), "{no_endpoints:#?}");
    assert!(no_endpoints.contains(&"172.30.0.46 . tcp . 80 comment \"ns6/svc6:p80\" : drop".to_string()), "{no_endpoints:#?}");
    assert_eq!(elements(&ruleset, NO_ENDPOINT_NODEPORTS), ["tcp . 30005 comment \"ns5/svc5:p80\" : goto reject-chain"]);
    assert!(!elements(&ruleset, SERVICE_IPS).iter().any(|e| e.starts_with("172.30.0.45 ") || e.starts_with("172.30.0.46 ")));
    assert_eq!(rules(&ruleset, REJECT_CHAIN), ["reject"]);
    // Checked from the input, forward and output hooks, for new connections.
    let jumps: Vec<String> = JUMPS.iter().filter(|(to, _, _)| *to == SERVICE_ENDPOINTS_CHECK).map(|(_, from, _)| from.to_string()).collect();
    assert_eq!(jumps, ["filter-input", "filter-forward", "filter-output"]);
    assert!(ruleset.chains.iter().all(|c| !c.name.contains("ns5/svc5")), "no chains for a Service without endpoints");
}

#[test]
fn external_traffic_local_policy_keeps_pods_and_the_node_on_the_cluster_path() {
    let ruleset = render(&services(), &settings());
    let svc = &services()[1];
    let (ext, cluster, local) = (external_chain(svc), service_chain(svc), local_chain(svc));
    assert_eq!(
        rules(&ruleset, &ext),
        [
            format!("ip saddr 10.180.0.0/16 goto {cluster} comment \"short-circuit pod traffic\""),
            format!("fib saddr type local jump {MARK_FOR_MASQUERADE} comment \"masquerade local traffic\""),
            format!("fib saddr type local goto {cluster} comment \"short-circuit local traffic\""),
            format!("goto {local}"),
        ]
    );
    assert_eq!(rules(&ruleset, &local), [format!("numgen random mod 1 vmap {{ 0 : goto {} }}", endpoint_chain(svc, &svc.endpoints[0]))]);
    assert!(elements(&ruleset, SERVICE_IPS).contains(&format!("192.168.99.22 . tcp . 80 : goto {ext}")), "external IPs");
    assert!(elements(&ruleset, SERVICE_NODEPORTS).contains(&format!("tcp . 30001 : goto {ext}")));
    // NodePorts on every local address but loopback, unless addresses are given.
    assert!(rules(&ruleset, SERVICES).contains(&"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports".to_string()));
    assert!(ruleset.get_set(NODEPORT_IPS).is_none());
    let listed = render(&services(), &Settings { nodeport_ips: vec!["172.30.0.2".parse().unwrap()], ..settings() });
    assert_eq!(elements(&listed, NODEPORT_IPS), ["172.30.0.2"]);
    assert!(rules(&listed, SERVICES).contains(&"ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports".to_string()));
    assert!(rules(&listed, NODEPORT_ENDPOINTS_CHECK)[0].starts_with("ip daddr @nodeport-ips "));
}

#[test]
fn load_balancer_source_ranges_filter_before_dnat() {
    let ruleset = render(&services(), &settings());
    let svc = &services()[2];
    let fw = firewall_chain(svc);
    assert_eq!(elements(&ruleset, FIREWALL_IPS), [format!("172.18.255.200 . tcp . 80 comment \"ns3/svc3:p80\" : goto {fw}")]);
    assert_eq!(rules(&ruleset, &fw), ["ip saddr != { 203.0.113.0/25, 172.18.255.200 } drop"]);
    assert!(elements(&ruleset, SERVICE_IPS).contains(&format!("172.18.255.200 . tcp . 80 : goto {}", external_chain(svc))));
    assert_eq!(rules(&ruleset, &external_chain(svc)), [format!("jump {MARK_FOR_MASQUERADE}"), format!("goto {}", service_chain(svc))]);
    // filter-prerouting runs before nat-prerouting's DNAT.
    let priority = |name: &str| BASE_CHAINS.iter().find(|c| c.0 == name).unwrap().3;
    assert_eq!((priority("filter-prerouting"), priority("nat-prerouting")), ("-110", "-100"));
}

#[test]
fn client_ip_affinity_remembers_each_client_per_endpoint() {
    let ruleset = render(&services(), &settings());
    let svc = &services()[3];
    let (a, b) = (&svc.endpoints[0], &svc.endpoints[1]);
    let set = ruleset.get_set(&affinity_set(svc, a)).unwrap();
    assert_eq!(set.spec, "type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ;");
    let chain = rules(&ruleset, &service_chain(svc));
    assert_eq!(chain[1], format!("ip saddr @{} goto {}", affinity_set(svc, a), endpoint_chain(svc, a)));
    assert_eq!(chain[2], format!("ip saddr @{} goto {}", affinity_set(svc, b), endpoint_chain(svc, b)));
    assert!(chain[3].starts_with("numgen random mod 2 vmap"));
    assert_eq!(rules(&ruleset, &endpoint_chain(svc, b))[1], format!("update @{} {{ ip saddr }}", affinity_set(svc, b)));
    assert_eq!(rules(&ruleset, &endpoint_chain(svc, b))[2], "meta l4proto udp dnat to 10.180.1.4:80");
}

/// Records every command and its input; answers `nft list` with `listed`,
/// and fails the commands whose line contains one of `failing`.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, String)>>,
    listed: String,
    failing: Vec<String>,
}

impl Commands for Recorder {
    async fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<String> {
        let line = format!("{program} {}", args.join(" "));
        self.calls.lock().unwrap().push((line.clone(), String::from_utf8_lossy(stdin.unwrap_or_default()).into_owned()));
        if self.failing.iter().any(|f| line.contains(f.as_str())) {
            bail!("{program}: Error: No such file or directory");
        }
        Ok(if args.first().map(String::as_str) == Some("list") { self.listed.clone() } else { String::new() })
    }
}

#[tokio::test]
async fn a_sync_is_one_nft_transaction() {
    let backend = Nftables::new(Recorder::default(), settings());
    let rendered = backend.sync(&services()).await.unwrap();
    let calls = backend.commands.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].0, "nft -f -");
    assert_eq!(calls[0].1, rendered.transaction);
    assert!(rendered.rules > 30 && rendered.elements > 10, "{rendered:?}");
}

#[tokio::test]
async fn a_flushed_or_deleted_table_is_noticed() {
    let listed = "table ip kube-proxy {\n\tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}\n}\n";
    let intact = Nftables::new(Recorder { listed: listed.into(), ..Default::default() }, settings());
    assert!(intact.intact().await);
    assert_eq!(intact.commands.calls.lock().unwrap()[0].0, "nft list chain ip kube-proxy nat-prerouting");
    let flushed = Nftables::new(Recorder { listed: listed.replace("\t\tjump services\n", ""), ..Default::default() }, settings());
    assert!(!flushed.intact().await);
    let deleted = Nftables::new(Recorder { failing: vec!["list".into()], ..Default::default() }, settings());
    assert!(!deleted.intact().await);
}
