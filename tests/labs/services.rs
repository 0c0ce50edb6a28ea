//! Services on real packets (`3-node` on Docker, kube-proxy in iptables
//! mode, and again in nftables mode): `kubectl expose` gives a ClusterIP that every pod (itself
//! included: hairpin) and every node reaches, on its own node and across
//! nodes; the NodePort answers on every node's address from the machine
//! running the lab; ClientIP affinity keeps a client on one backend; UDP
//! works; a Service without endpoints refuses at once; a scaled-down
//! backend leaves every node's rules; worker-1's rules are a snapshot;
//! rules outlive a stopped kube-proxy, which catches up when it is back,
//! and a nat table flushed by hand is written again. Cluster DNS answers
//! for every Service kind ([`dns`]). Also: etcd, on the lab network pods
//! reach through their node, gives a pod nothing without a client
//! certificate of etcd's CA (issue 26). LoadBalancer addresses answer
//! from this machine and move when their node stops ([`load_balancer`]).
//! One lab for all of that; a second lab, kube-proxy in nftables mode,
//! runs the packet checks again (ClusterIP, NodePort, LoadBalancer,
//! affinity, UDP, reject, the table's snapshot, a flushed table restored),
//! leaving out what does not depend on the proxy mode.

use std::collections::{BTreeMap, BTreeSet};

use kubelab::plan;
use kubelab::topology::ProxyMode;
use kubelab_scenarios::cluster::{kubectl_stdin, pods_of, s, Cluster};
use kubelab_scenarios::wait::until;
use kubelab_scenarios::{lab_name, topology_in_proxy_mode};
use serde_json::Value;

mod dns;
mod load_balancer;

const NODES: [&str; 3] = ["worker-1", "worker-2", "worker-3"];

/// Beside `kubectl expose`'s web: a UDP port, a sticky one, one without endpoints.
const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web-udp}
spec:
  selector: {app: web}
  ports: [{name: udp, port: 90, targetPort: 8081, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nobody}
  ports: [{port: 80, targetPort: 8080}]
"#;

#[derive(Debug, Clone)]
struct Pod {
    name: String,
    node: String,
    ip: String,
}

/// The Deployment `web` (three labhost pods), exposed as a NodePort, and
/// [`SERVICES`]: web's pods once ready, and the ClusterIPs by name.
async fn deploy(lab: &Cluster) -> (Vec<Pod>, BTreeMap<String, String>) {
    lab.ok(&["create", "deployment", "web", "--image=kubelab/labhost", "--replicas=3", "--port=8080"]);
    lab.ok(&["expose", "deployment", "web", "--port=80", "--target-port=8080", "--type=NodePort"]);
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], SERVICES);
    assert_eq!(code, 0, "{out}");
    (web_pods(lab, 3).await, cluster_ips(lab))
}

#[tokio::test]
async fn services_reach_their_pods_from_everywhere() {
    let (lab, _guard) = Cluster::up("3-node", lab_name("services")).await.unwrap();
    let mode = ProxyMode::Iptables;
    let (pods, ips) = deploy(&lab).await;
    rules_list_endpoints(&lab, mode, "default/web", pods.len()).await;

    packets_reach_the_backends(&lab, &pods, &ips).await;
    etcd_is_closed_to_pods(&lab, &pods[0]).await;
    let dns_pods = dns::dns_pods(&lab).await;
    rules_list_endpoints(&lab, mode, "kube-system/kube-dns:dns-tcp", dns_pods.len()).await;
    rules_snapshot(&lab, &pods, &dns_pods, &ips).await;
    dns::cluster_dns_answers(&lab, &pods, &ips["web"]).await;
    scaled_down_backend_leaves(&lab, mode, &ips["web"]).await;
    rules_outlive_a_stopped_proxy(&lab).await;
    flushed_rules_come_back(&lab, &ips["web"]).await;
    // Last: it stops a node.
    let left = web_pods(&lab, 2).await;
    load_balancer::load_balancer_addresses(&lab, &left).await;
}

/// The same Services with kube-proxy in nftables mode: the packet checks
/// again, worker-1's table as a snapshot, no iptables rules for Services,
/// and a table flushed or deleted by hand is written again. Cluster DNS,
/// etcd's closure and the announcing node's failover do not depend on the
/// proxy mode and run only above.
#[tokio::test]
async fn services_in_nftables_mode() {
    let source = topology_in_proxy_mode("3-node", ProxyMode::Nftables);
    let (lab, _guard) = Cluster::up_source(&source, lab_name("services-nft")).await.unwrap();
    let mode = ProxyMode::Nftables;
    let (pods, ips) = deploy(&lab).await;
    rules_list_endpoints(&lab, mode, "default/web", pods.len()).await;

    packets_reach_the_backends(&lab, &pods, &ips).await;
    let dns_pods = dns::dns_pods(&lab).await;
    rules_list_endpoints(&lab, mode, "kube-system/kube-dns:dns-tcp", dns_pods.len()).await;
    nft_snapshot(&lab, &pods, &dns_pods, &ips).await;
    no_iptables_rules_for_services(&lab).await;
    scaled_down_backend_leaves(&lab, mode, &ips["web"]).await;
    flushed_table_comes_back(&lab, &ips["web"]).await;
    let left = web_pods(&lab, 2).await;
    load_balancer::load_balancer_answers(&lab, &left).await;
}

/// What both proxy modes must do with packets: ClusterIP from every pod and
/// node, NodePort on every node, ClientIP affinity, UDP, and a refusal
/// where a Service has no endpoints.
async fn packets_reach_the_backends(lab: &Cluster, pods: &[Pod], ips: &BTreeMap<String, String>) {
    every_pod_reaches_every_backend(lab, pods, &ips["web"]).await;
    every_node_reaches_every_backend(lab, pods, &ips["web"]).await;
    node_port_answers_on_every_node(lab, pods).await;
    affinity_keeps_one_backend(lab, &pods[0], &ips["sticky"]).await;
    udp_reaches_the_pods(lab, &pods[0], &ips["web-udp"]).await;
    no_endpoints_refuses(lab, &pods[0], &ips["nobody"]).await;
}

/// etcd's gRPC gateway range over every key under /registry/ (base64 of
/// `/registry/` to `/registry0`): what the issue read Secrets with.
const ETCD_RANGE: &str = r#"{"key":"L3JlZ2lzdHJ5Lw==","range_end":"L3JlZ2lzdHJ5MA=="}"#;

/// From a pod, etcd-0's address answers neither plain HTTP nor TLS without
/// a client certificate (busybox's wget offers none when asked): no
/// version, no keys, not the Secret just written. The pod does reach the
/// port (etcd refuses; the connection is not refused or dropped), and the
/// apiserver, which holds etcd's client certificate, goes on working.
async fn etcd_is_closed_to_pods(lab: &Cluster, from: &Pod) {
    lab.ok(&["create", "secret", "generic", "etcd-probe", "--from-literal=password=s3cr3t-value"]);
    let etcd0 = plan::container_name(&lab.name, "etcd-0");
    let containers = lab.engine.containers(Some(&lab.name)).await.unwrap();
    let address = containers.into_iter().find(|c| c.name == etcd0).and_then(|c| c.address).expect("etcd-0 has an address on the lab network");
    // busybox's wget -T crashes (platform notes); timeout bounds it instead.
    let wget = ["timeout", "20", "wget", "-q", "-O-", "--no-check-certificate"];
    for scheme in ["http", "https"] {
        for (path, post) in [("/version", None), ("/v3/kv/range", Some(ETCD_RANGE))] {
            let url = format!("{scheme}://{address}:{}{path}", plan::ETCD_CLIENT_PORT);
            let mut cmd = vec!["exec", from.name.as_str(), "--"];
            cmd.extend(wget);
            if let Some(body) = post {
                cmd.extend(["--post-data", body]);
            }
            cmd.push(&url);
            let (code, out) = lab.k(&cmd);
            assert_ne!(code, 0, "{url} from pod {} answered: {out}", from.name);
            for leak in ["etcdserver", "header", "kvs", "s3cr3t", "czNjcjN0"] {
                assert!(!out.contains(leak), "{url} from pod {} gave etcd data ({leak}): {out}", from.name);
            }
            // Refused by etcd, not unreachable (refused connection, or
            // timeout's SIGTERM, 143).
            assert!(!out.contains("can't connect") && !out.contains("exit code 143"), "{url}: the pod should reach etcd and be refused by it: {out}");
        }
    }
    // The apiserver still reads and writes through etcd.
    let value = lab.ok(&["get", "secret", "etcd-probe", "-o", "jsonpath={.data.password}"]);
    assert_eq!(value.trim(), "czNjcjN0LXZhbHVl");
    lab.ok(&["delete", "secret", "etcd-probe"]);
}

fn cluster_ips(lab: &Cluster) -> BTreeMap<String, String> {
    pods_of(&lab.json(&["get", "services"])).iter().map(|svc| (s(&svc["metadata"]["name"]), s(&svc["spec"]["clusterIP"]))).collect()
}

/// The Deployment's pods once `count` of them are Ready and in its
/// EndpointSlice.
async fn web_pods(lab: &Cluster, count: usize) -> Vec<Pod> {
    until(&format!("{count} ready web pods in web's EndpointSlice"), || async {
        let pods: Vec<Pod> = pods_of(&lab.json(&["get", "pods", "-l", "app=web"]))
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| p["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True"))
            .map(|p| Pod { name: s(&p["metadata"]["name"]), node: s(&p["spec"]["nodeName"]), ip: s(&p["status"]["podIP"]) })
            .collect();
        let ready = ready_endpoints(lab, "default", "web");
        let ips: BTreeSet<String> = pods.iter().map(|p| p.ip.clone()).collect();
        if pods.len() == count && ips == ready {
            Ok(pods)
        } else {
            Err(format!("ready pods {pods:?}; ready endpoints {ready:?}"))
        }
    })
    .await
}

/// The addresses of `namespace/service`'s ready endpoints, from its EndpointSlices.
fn ready_endpoints(lab: &Cluster, namespace: &str, service: &str) -> BTreeSet<String> {
    let slices = lab.json(&["-n", namespace, "get", "endpointslices", "-l", &format!("kubernetes.io/service-name={service}")]);
    pods_of(&slices)
        .iter()
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] != false)
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .map(|a| s(&a))
        .collect()
}

/// Every node's rules send `service` (`ns/name` for its one unnamed TCP
/// port, `ns/name:port` for a named one) to `count` endpoints: the
/// KUBE-SVC chain's rules in iptables mode, the choices of the Service
/// chain's `numgen` in nftables mode.
async fn rules_list_endpoints(lab: &Cluster, mode: ProxyMode, service: &str, count: usize) {
    for node in NODES {
        until(&format!("{node}'s rules for {service} with {count} endpoints"), || async {
            let found = match mode {
                ProxyMode::Iptables => {
                    let (_, saved) = lab.node(node, &["iptables-save", "-t", "nat"]).await;
                    let endpoints: BTreeSet<&str> = saved.lines().filter(|l| l.starts_with("-A KUBE-SVC-") && l.contains(&format!("{service} -> "))).collect();
                    endpoints.len()
                }
                ProxyMode::Nftables => {
                    let (_, table) = lab.node(node, &["nft", "list", "table", "ip", "kube-proxy"]).await;
                    nft_endpoint_choices(&table, service)
                }
            };
            if found == count {
                Ok(())
            } else {
                Err(format!("{found} endpoints"))
            }
        })
        .await;
    }
}

/// upstream's nftables name of a TCP Service port: `ns/name/tcp/port`.
fn nft_port_name(service: &str) -> String {
    let (name, port) = service.split_once(':').unwrap_or((service, ""));
    format!("{name}/tcp/{port}")
}

/// How many endpoints the cluster chain of `service` chooses among, in an
/// `nft list table` (0 when it has no chain).
fn nft_endpoint_choices(table: &str, service: &str) -> usize {
    let header = format!("-{} {{", nft_port_name(service));
    let mut in_chain = false;
    for line in table.lines() {
        let line = line.trim();
        if line.starts_with("chain service-") {
            in_chain = line.ends_with(&header);
        } else if in_chain && line.starts_with("numgen random mod ") {
            return line.matches("goto endpoint-").count();
        }
    }
    0
}

/// labhost's /dial on `from`: `tries` requests to host:port, sent by the
/// pod; the answers and the errors.
async fn dial(lab: &Cluster, from: &Pod, host: &str, port: u16, protocol: &str, tries: u32) -> (Vec<String>, Vec<String>) {
    let url = format!("http://{}:8080/dial?request=hostname&protocol={protocol}&host={host}&port={port}&tries={tries}", from.ip);
    let (code, out) = lab.node(&from.node, &["curl", "-s", "--max-time", "60", &url]).await;
    assert_eq!(code, 0, "{url} from {}: {out}", from.node);
    let answer: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{url} answers JSON ({e}): {out}"));
    let list = |key: &str| answer[key].as_array().into_iter().flatten().map(s).collect::<Vec<String>>();
    (list("responses"), list("errors"))
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().map(|p| p.name.clone()).collect()
}

/// From each pod, requests to the ClusterIP reach all three backends:
/// the pods on its own node (itself among them: hairpin) and on the others.
async fn every_pod_reaches_every_backend(lab: &Cluster, pods: &[Pod], cluster_ip: &str) {
    for from in pods {
        let seen = std::cell::RefCell::new(BTreeSet::new());
        until(&format!("{} reaching every web pod through {cluster_ip}", from.name), || async {
            let (responses, errors) = dial(lab, from, cluster_ip, 80, "http", 20).await;
            assert!(errors.is_empty(), "{} to {cluster_ip}: {errors:?}", from.name);
            let mut seen = seen.borrow_mut();
            seen.extend(responses);
            if *seen == names(pods) {
                Ok(())
            } else {
                Err(format!("answered so far: {seen:?}"))
            }
        })
        .await;
    }
}

/// From each node (no pod involved), the ClusterIP reaches all three backends.
async fn every_node_reaches_every_backend(lab: &Cluster, pods: &[Pod], cluster_ip: &str) {
    let script = format!("for i in $(seq 20); do curl -s --max-time 5 http://{cluster_ip}/hostname || echo FAILED; echo; done");
    for node in NODES {
        let seen = std::cell::RefCell::new(BTreeSet::new());
        until(&format!("{node} reaching every web pod through {cluster_ip}"), || async {
            let (_, out) = lab.node(node, &["sh", "-c", &script]).await;
            let answers: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
            assert!(!answers.contains(&"FAILED"), "{node} to {cluster_ip}: {out}");
            let mut seen = seen.borrow_mut();
            seen.extend(answers.iter().map(|a| a.to_string()));
            if *seen == names(pods) {
                Ok(())
            } else {
                Err(format!("answered so far: {seen:?}"))
            }
        })
        .await;
    }
}

/// The NodePort, from the machine running the lab (on the lab's bridge),
/// through every node's address.
async fn node_port_answers_on_every_node(lab: &Cluster, pods: &[Pod]) {
    let service = lab.json(&["get", "service", "web"]);
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().expect("web has a nodePort");
    for node in pods_of(&lab.json(&["get", "nodes"])) {
        let address =
            node["status"]["addresses"].as_array().into_iter().flatten().find(|a| a["type"] == "InternalIP").map(|a| s(&a["address"])).expect("an InternalIP");
        let url = format!("http://{address}:{node_port}/hostname");
        let answer = get_from_host(&url, 5);
        assert!(answer.as_ref().is_ok_and(|a| names(pods).contains(a)), "{url} from the host: {answer:?}");
    }
}

/// `GET url` with curl from this machine (on the lab's bridge), giving up
/// after `max_seconds`: the body, trimmed, or why not.
fn get_from_host(url: &str, max_seconds: u32) -> Result<String, String> {
    let out = std::process::Command::new("curl").args(["-s", "--max-time", &max_seconds.to_string(), url]).output().expect("curl runs");
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        false => Err(format!("exit {:?} {}", out.status.code(), String::from_utf8_lossy(&out.stderr))),
    }
}

/// ClientIP affinity: ten requests from one pod, one backend.
async fn affinity_keeps_one_backend(lab: &Cluster, from: &Pod, cluster_ip: &str) {
    let (responses, errors) = dial(lab, from, cluster_ip, 80, "http", 10).await;
    assert!(errors.is_empty(), "{errors:?}");
    let distinct: BTreeSet<&String> = responses.iter().collect();
    assert_eq!((responses.len(), distinct.len()), (10, 1), "sticky answered {responses:?}");
}

async fn udp_reaches_the_pods(lab: &Cluster, from: &Pod, cluster_ip: &str) {
    let (responses, errors) = dial(lab, from, cluster_ip, 90, "udp", 10).await;
    assert!(errors.is_empty() && responses.len() == 10, "UDP to {cluster_ip}:90: {responses:?} {errors:?}");
}

/// Without endpoints the ClusterIP is rejected (REJECT in the filter
/// table): the client hears "refused" at once instead of timing out.
async fn no_endpoints_refuses(lab: &Cluster, from: &Pod, cluster_ip: &str) {
    let (responses, errors) = dial(lab, from, cluster_ip, 80, "http", 1).await;
    assert!(responses.is_empty(), "{responses:?}");
    assert!(errors.len() == 1 && errors[0].to_lowercase().contains("refused"), "{errors:?}");
}

/// worker-1's rules with names for addresses and hashes of endpoints,
/// sorted (endpoints of one Service are interchangeable): a review of
/// what kube-proxy writes for these Services.
async fn rules_snapshot(lab: &Cluster, pods: &[Pod], dns_pods: &[Pod], ips: &BTreeMap<String, String>) {
    let (_, saved) = lab.node("worker-1", &["iptables-save"]).await;
    let names = stable_names(lab, pods, dns_pods, ips, |port| (format!("--dport {port}"), "--dport <web nodePort>".into()));
    let endpoint_hash = regex::Regex::new(r"KUBE-SEP-[A-Z0-9]{16}").unwrap();
    let normalize = |l: &str| {
        let mut line = l.to_string();
        for (from, to) in &names {
            line = line.replace(&format!("{from}/32"), to).replace(from, to);
        }
        endpoint_hash.replace_all(&line, "KUBE-SEP-<endpoint>").into_owned()
    };
    // Per table: the chains declared, and each chain's rules in their
    // order; chains are sorted by what they say once normalized, since
    // iptables-save lists them by (hashed, so random) name.
    let mut out = Vec::new();
    for table in saved.split("\n*").skip(1) {
        let mut lines = table.lines();
        let name = lines.next().unwrap_or_default().to_string();
        let mut declared = Vec::new();
        let mut rules: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in lines {
            if let Some(chain) = line.strip_prefix(':') {
                if chain.starts_with("KUBE-") {
                    declared.push(normalize(chain.split_whitespace().next().unwrap_or_default()));
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                if rule.contains("KUBE-") {
                    rules.entry(rule.split_whitespace().next().unwrap_or_default().to_string()).or_default().push(normalize(line));
                }
            }
        }
        if declared.is_empty() && rules.is_empty() {
            continue;
        }
        declared.sort();
        let mut blocks: Vec<String> = rules.into_values().map(|r| r.join("\n")).collect();
        blocks.sort();
        out.push(format!("*{name}\n{}\n{}", declared.iter().map(|c| format!(":{c}")).collect::<Vec<_>>().join("\n"), blocks.join("\n")));
    }
    insta::assert_snapshot!("worker_1_rules", out.join("\n"));
}

/// Scaled to two, web's third pod leaves every node's rules, and requests
/// from the nodes reach only the two left.
async fn scaled_down_backend_leaves(lab: &Cluster, mode: ProxyMode, cluster_ip: &str) {
    lab.ok(&["scale", "deployment", "web", "--replicas=2"]);
    let left = web_pods(lab, 2).await;
    rules_list_endpoints(lab, mode, "default/web", 2).await;
    let script = format!("for i in $(seq 20); do curl -s --max-time 5 http://{cluster_ip}/hostname || echo FAILED; echo; done");
    for node in NODES {
        let (_, out) = lab.node(node, &["sh", "-c", &script]).await;
        let answers: BTreeSet<String> = out.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
        assert!(answers.is_subset(&names(&left)), "{node} reached {answers:?}; left: {left:?}");
    }
}

/// kube-proxy stopped: the rules stay and still carry traffic; a Service
/// made meanwhile is in the rules once it is back.
async fn rules_outlive_a_stopped_proxy(lab: &Cluster) {
    let proxy = kubelab::plan::container_name(&lab.name, &kubelab::plan::kube_proxy_instance("worker-1"));
    let docker = |verb: &str| {
        let out = std::process::Command::new("docker").args([verb, &proxy]).output().expect("docker runs");
        assert!(out.status.success(), "docker {verb} {proxy}: {}", String::from_utf8_lossy(&out.stderr));
    };
    docker("stop");
    let web_ip = cluster_ips(lab)["web"].clone();
    let (code, out) = lab.node("worker-1", &["curl", "-s", "--max-time", "5", &format!("http://{web_ip}/hostname")]).await;
    assert_eq!(code, 0, "web through worker-1's rules while its kube-proxy is stopped: {out}");
    lab.ok(&["expose", "deployment", "web", "--name=late", "--port=81", "--target-port=8080"]);
    docker("start");
    until("worker-1's rules for the Service made while its kube-proxy was stopped", || async {
        let (_, saved) = lab.node("worker-1", &["iptables-save", "-t", "nat"]).await;
        if saved.contains("default/late cluster IP") {
            Ok(())
        } else {
            Err("no rule for default/late".to_string())
        }
    })
    .await;
}

/// `iptables -t nat -F` on worker-2: kube-proxy notices and writes its
/// rules again, and the ClusterIP works once more.
async fn flushed_rules_come_back(lab: &Cluster, cluster_ip: &str) {
    let (code, out) = lab.node("worker-2", &["iptables", "-t", "nat", "-F"]).await;
    assert_eq!(code, 0, "{out}");
    until("worker-2's nat rules written again after the flush", || async {
        let (_, saved) = lab.node("worker-2", &["iptables-save", "-t", "nat"]).await;
        if saved.contains("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES") && saved.contains("default/web") {
            Ok(())
        } else {
            Err(saved)
        }
    })
    .await;
    let (code, out) = lab.node("worker-2", &["curl", "-s", "--max-time", "5", &format!("http://{cluster_ip}/hostname")]).await;
    assert_eq!(code, 0, "web through worker-2 after the flush: {out}");
}

/// Addresses and numbers that change from run to run, each with the name
/// that stands for it in a snapshot: the ClusterIPs, pods, the apiserver,
/// web's nodePort written as `marker` shows it. Longest first, so that
/// 10.244.1.12 is not read as 10.244.1.1 + "2".
fn stable_names(
    lab: &Cluster,
    pods: &[Pod],
    dns_pods: &[Pod],
    ips: &BTreeMap<String, String>,
    node_port: impl Fn(&str) -> (String, String),
) -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = ips.iter().map(|(svc, ip)| (ip.clone(), format!("<{svc} cluster IP>"))).collect();
    names.push((dns::DNS_IP.to_string(), "<kube-dns cluster IP>".to_string()));
    names.extend(pods.iter().map(|p| (p.ip.clone(), "<web pod>".to_string())));
    names.extend(dns_pods.iter().map(|p| (p.ip.clone(), "<dns pod>".to_string())));
    let slices = lab.json(&["get", "endpointslice", "kubernetes"]);
    let apiserver = s(&slices["endpoints"][0]["addresses"][0]);
    names.push((apiserver, "<apiserver>".into()));
    let web = lab.json(&["get", "service", "web"]);
    names.push(node_port(&web["spec"]["ports"][0]["nodePort"].to_string()));
    names.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    names
}

/// worker-1's `nft list table ip kube-proxy`, made stable: addresses
/// named, the hashes in chain and set names replaced, each set's and
/// map's elements sorted one a line (the kernel lists them in its own
/// order), the affinity sets' clients left out (they expire), and the
/// table's chains, sets and maps sorted by what they say.
async fn nft_snapshot(lab: &Cluster, pods: &[Pod], dns_pods: &[Pod], ips: &BTreeMap<String, String>) {
    let (code, table) = lab.node("worker-1", &["nft", "list", "table", "ip", "kube-proxy"]).await;
    assert_eq!(code, 0, "{table}");
    let names = stable_names(lab, pods, dns_pods, ips, |port| (format!(". {port} "), ". <web nodePort> ".into()));
    let hash = regex::Regex::new(r"\b(service|local|external|firewall|endpoint|affinity)-[A-Z2-7]{8}-").unwrap();
    let normalize = |l: &str| {
        let mut line = l.to_string();
        for (from, to) in &names {
            line = line.replace(from, to);
        }
        hash.replace_all(&line, "$1-<hash>-").into_owned()
    };
    insta::assert_snapshot!("worker_1_nftables", normalize_nft_table(&table, normalize));
}

/// The objects of an `nft list table` listing, each normalized by
/// `normalize`, its elements sorted, then the objects sorted.
fn normalize_nft_table(table: &str, normalize: impl Fn(&str) -> String) -> String {
    let mut objects: Vec<String> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut elements: Option<String> = None;
    let mut header = String::new();
    for line in table.lines() {
        let line = line.trim_end();
        if line.starts_with("table ") || line == "}" {
            continue;
        }
        if let Some(open) = elements.as_mut() {
            open.push(' ');
            open.push_str(line.trim());
        } else if line.trim().starts_with("elements = {") {
            elements = Some(line.trim().to_string());
        } else if line.starts_with('\t') && !line.starts_with("\t\t") && line.ends_with('{') {
            header = normalize(line.trim());
            current = vec![header.clone()];
            continue;
        } else if line == "\t}" {
            current.push("}".into());
            objects.push(current.join("\n"));
            current = Vec::new();
            continue;
        } else if !line.trim().is_empty() {
            current.push(format!("\t{}", normalize(line.trim())));
        }
        if let Some(done) = elements.clone().filter(|e| e.ends_with('}')) {
            elements = None;
            if header.starts_with("set affinity-") {
                continue;
            }
            let inner = done.trim_start_matches("elements = {").trim_end_matches('}');
            let mut list: Vec<String> = inner.split(", ").map(|e| normalize(e.trim())).filter(|e| !e.is_empty()).collect();
            list.sort();
            current.push("\telements = {".into());
            current.extend(list.into_iter().map(|e| format!("\t\t{e}")));
            current.push("\t}".into());
        }
    }
    objects.sort();
    objects.join("\n")
}

/// In nftables mode no iptables chain of kube-proxy's is made.
async fn no_iptables_rules_for_services(lab: &Cluster) {
    for node in NODES {
        let (_, saved) = lab.node(node, &["iptables-save"]).await;
        for chain in ["KUBE-SERVICES", "KUBE-SVC-", "KUBE-NODEPORTS", "KUBE-POSTROUTING"] {
            assert!(!saved.contains(chain), "{node} has iptables chain {chain} in nftables mode:\n{saved}");
        }
    }
}

/// `nft flush table` on worker-2, then `nft delete table`: kube-proxy
/// notices each and writes its table again, and the ClusterIP works once more.
async fn flushed_table_comes_back(lab: &Cluster, cluster_ip: &str) {
    for verb in ["flush", "delete"] {
        let (code, out) = lab.node("worker-2", &["nft", verb, "table", "ip", "kube-proxy"]).await;
        assert_eq!(code, 0, "nft {verb} table: {out}");
        until(&format!("worker-2's table written again after nft {verb} table"), || async {
            let (_, table) = lab.node("worker-2", &["nft", "list", "table", "ip", "kube-proxy"]).await;
            if table.contains("jump services") && nft_endpoint_choices(&table, "default/web") > 0 {
                Ok(())
            } else {
                Err(table)
            }
        })
        .await;
        let (code, out) = lab.node("worker-2", &["curl", "-s", "--max-time", "5", &format!("http://{cluster_ip}/hostname")]).await;
        assert_eq!(code, 0, "web through worker-2 after nft {verb} table: {out}");
    }
}
