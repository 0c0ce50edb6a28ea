//! Cluster DNS on the services lab: the `coredns` Deployment that `lab up`
//! applies answers, behind `kube-dns` (10.96.0.10), for every Service kind,
//! as the pods' resolvers ask it (their resolv.conf is ClusterFirst's),
//! also while one replica is killed and replaced; a headless name follows
//! its pods' readiness probes. The whole answers to a
//! fixed set of questions (`labhost dig`: codes, TTLs, authority) are a
//! snapshot, with each address replaced by the name of what owns it.

use std::collections::BTreeSet;

use kubelab::scenario::names::Names;

use kubelab_scenarios::cluster::{kubectl_stdin, pods_of, s, Cluster};
use kubelab_scenarios::wait::until;

use super::{dial, ready_endpoints, Pod};

/// The kube-dns Service's address in a topology with the default service subnet.
pub const DNS_IP: &str = "10.96.0.10";

/// Beside web: headless with a named port (A per pod, SRV), an alias.
const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: alias}
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
"#;

/// The two cluster DNS pods, once the Deployment is available and both are
/// endpoints of kube-dns.
pub async fn dns_pods(lab: &Cluster) -> Vec<Pod> {
    until("deployment kube-system/coredns with 2 available replicas, both ready in kube-dns's EndpointSlice", || async {
        let deployment = lab.json(&["-n", "kube-system", "get", "deployment", "coredns"]);
        let available = deployment["status"]["availableReplicas"].as_u64().unwrap_or(0);
        let pods: Vec<Pod> = pods_of(&lab.json(&["-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns"]))
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running")
            .map(|p| Pod { name: s(&p["metadata"]["name"]), node: s(&p["spec"]["nodeName"]), ip: s(&p["status"]["podIP"]) })
            .collect();
        let ready = ready_endpoints(lab, "kube-system", "kube-dns");
        let ips: BTreeSet<String> = pods.iter().map(|p| p.ip.clone()).collect();
        if available == 2 && pods.len() == 2 && ips == ready {
            Ok(pods)
        } else {
            Err(format!("available {available}; running pods {pods:?}; ready endpoints {ready:?}"))
        }
    })
    .await
}

/// busybox's nslookup in `pod`, by kubectl exec: exit code and output.
fn nslookup(lab: &Cluster, pod: &Pod, args: &[&str]) -> (i32, String) {
    let mut command = vec!["exec", pod.name.as_str(), "--", "nslookup"];
    command.extend(args);
    lab.k(&command)
}

/// The addresses of nslookup's answer (its `Address: ` lines; the server's
/// own line is `Address:\t<ip>:53`).
fn addresses(out: &str) -> BTreeSet<String> {
    out.lines().filter_map(|l| l.strip_prefix("Address: ")).map(|a| a.trim().to_string()).collect()
}

/// Asks until nslookup's answer satisfies `check`.
async fn until_answer(lab: &Cluster, pod: &Pod, args: &[&str], check: impl Fn(i32, &str) -> bool) -> String {
    until(&format!("nslookup {args:?} in {}", pod.name), || async {
        let (code, out) = nslookup(lab, pod, args);
        if check(code, &out) {
            Ok(out)
        } else {
            Err(format!("exit {code}: {out}"))
        }
    })
    .await
}

pub async fn cluster_dns_answers(lab: &Cluster, pods: &[Pod], web_ip: &str) {
    let dns = dns_pods(lab).await;
    let client = &pods[0];
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], SERVICES);
    assert_eq!(code, 0, "{out}");

    // The headless Service's pods are in the zone before anything is asked of it.
    let pod_ips: BTreeSet<String> = pods.iter().map(|p| p.ip.clone()).collect();
    let headless = "web-headless.default.svc.cluster.local.";
    until_answer(lab, client, &["-type=a", headless], |code, out| code == 0 && addresses(out) == pod_ips).await;
    until_answer(lab, client, &["-type=cname", "alias.default.svc.cluster.local."], |code, out| code == 0 && out.contains("canonical name")).await;

    // ClusterFirst: the pod asks kube-dns, with upstream's search path.
    let resolv = lab.ok(&["exec", &client.name, "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, format!("search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver {DNS_IP}\noptions ndots:5\n"));

    // A Service's name is its ClusterIP, from kube-dns and from each replica.
    let web = "web.default.svc.cluster.local.";
    until_answer(lab, client, &["-type=a", web], |code, out| code == 0 && addresses(out) == BTreeSet::from([web_ip.to_string()])).await;
    for replica in &dns {
        let (code, out) = nslookup(lab, client, &["-type=a", web, &replica.ip]);
        assert!(code == 0 && addresses(&out) == BTreeSet::from([web_ip.to_string()]), "{web} from DNS pod {} ({}): {out}", replica.name, replica.ip);
    }

    // Short names through the pod's own resolver (getaddrinfo: search path, ndots:5).
    for host in ["web", "web.default", "web.default.svc"] {
        let (responses, errors) = dial(lab, client, host, 80, "http", 3).await;
        assert!(errors.is_empty() && responses.len() == 3, "labhost dialling {host}:80: {responses:?} {errors:?}");
    }

    answers_snapshot(lab, client, pods, web_ip).await;

    // A name that does not exist: NXDOMAIN, so the resolver stops at once.
    let (code, out) = nslookup(lab, client, &["-type=a", "nothing.default.svc.cluster.local."]);
    assert!(code != 0 && out.contains("NXDOMAIN"), "a missing Service: exit {code}: {out}");

    // Headless: one address per ready pod, and SRV records for its named
    // port naming each pod by its dashed address.
    let srv = until_answer(lab, client, &["-type=srv", "_http._tcp.web-headless.default.svc.cluster.local."], |code, out| {
        code == 0 && pods.iter().all(|p| out.contains(&format!("8080 {}.web-headless.default.svc.cluster.local", p.ip.replace('.', "-"))))
    })
    .await;
    assert_eq!(srv.matches(" 8080 ").count(), pods.len(), "one SRV record per pod: {srv}");

    // ExternalName: a CNAME to its target.
    until_answer(lab, client, &["-type=cname", "alias.default.svc.cluster.local."], |code, out| {
        code == 0 && out.contains("canonical name = web.default.svc.cluster.local")
    })
    .await;

    // Reverse: the ClusterIP's PTR names its Service.
    let (code, out) = nslookup(lab, client, &[DNS_IP]);
    assert!(code == 0 && out.contains("kube-dns.kube-system.svc.cluster.local"), "PTR of {DNS_IP}: {out}");

    // The zone follows the API: a new Service resolves, and is gone once deleted.
    lab.ok(&["create", "service", "clusterip", "fresh", "--tcp=80:8080"]);
    let fresh_ip = s(&lab.json(&["get", "service", "fresh"])["spec"]["clusterIP"]);
    let fresh = "fresh.default.svc.cluster.local.";
    until_answer(lab, client, &["-type=a", fresh], |code, out| code == 0 && addresses(out) == BTreeSet::from([fresh_ip.clone()])).await;
    lab.ok(&["delete", "service", "fresh"]);
    until_answer(lab, client, &["-type=a", fresh], |code, out| code != 0 && out.contains("NXDOMAIN")).await;
    lab.ok(&["delete", "service", "web-headless", "alias"]);

    headless_follows_readiness(lab, client).await;

    // A replica killed: names resolve through the other one meanwhile,
    // and the Deployment brings a second one back.
    let killed = &dns[0];
    lab.ok(&["-n", "kube-system", "delete", "pod", &killed.name, "--grace-period=0", "--force", "--wait=false"]);
    for _ in 0..5 {
        until_answer(lab, client, &["-type=a", web], |code, out| code == 0 && addresses(out) == BTreeSet::from([web_ip.to_string()])).await;
    }
    let back = dns_pods(lab).await;
    assert!(back.iter().all(|p| p.name != killed.name), "the killed replica {} was replaced: {back:?}", killed.name);
    until_answer(lab, client, &["-type=a", web], |code, out| code == 0 && addresses(out) == BTreeSet::from([web_ip.to_string()])).await;
}

/// Two pods whose readiness probe passes while /tmp/ready exists, behind a
/// headless Service: its name answers with the ready pods only, and loses
/// one as soon as it turns unready.
const FLIP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: flip}
spec:
  replicas: 2
  selector: {matchLabels: {app: flip}}
  template:
    metadata: {labels: {app: flip}}
    spec:
      containers:
      - name: flip
        image: kubelab/labhost
        readinessProbe:
          exec: {command: [cat, /tmp/ready]}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: flip}
spec:
  clusterIP: None
  selector: {app: flip}
  ports: [{port: 8080}]
"#;

async fn headless_follows_readiness(lab: &Cluster, client: &Pod) {
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], FLIP);
    assert_eq!(code, 0, "{out}");
    let flips: Vec<(String, String)> = until("two running flip pods with addresses", || async {
        let pods: Vec<(String, String)> = pods_of(&lab.json(&["get", "pods", "-l", "app=flip"]))
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && !s(&p["status"]["podIP"]).is_empty())
            .map(|p| (s(&p["metadata"]["name"]), s(&p["status"]["podIP"])))
            .collect();
        if pods.len() == 2 {
            Ok(pods)
        } else {
            Err(format!("running: {pods:?}"))
        }
    })
    .await;
    let name = "flip.default.svc.cluster.local.";
    // Neither is ready yet: the name exists (its Service does) with no address.
    let (_, out) = nslookup(lab, client, &["-type=a", name]);
    assert!(addresses(&out).is_empty(), "{name} before any flip pod is ready: {out}");
    for (pod, _) in &flips {
        lab.ok(&["exec", pod, "--", "touch", "/tmp/ready"]);
    }
    let both: BTreeSet<String> = flips.iter().map(|(_, ip)| ip.clone()).collect();
    until_answer(lab, client, &["-type=a", name], |code, out| code == 0 && addresses(out) == both).await;
    lab.ok(&["exec", &flips[0].0, "--", "rm", "/tmp/ready"]);
    let one = BTreeSet::from([flips[1].1.clone()]);
    until_answer(lab, client, &["-type=a", name], |code, out| code == 0 && addresses(out) == one).await;
    lab.ok(&["delete", "deployment", "flip"]);
    lab.ok(&["delete", "service", "flip"]);
}

/// The questions of the snapshot: each record kind, NODATA, NXDOMAIN, a
/// name outside the cluster.
const QUESTIONS: [(&str, &str); 11] = [
    ("web.default.svc.cluster.local", "A"),
    ("web.default.svc.cluster.local", "AAAA"),
    ("web-headless.default.svc.cluster.local", "A"),
    ("_http._tcp.web-headless.default.svc.cluster.local", "SRV"),
    ("alias.default.svc.cluster.local", "A"),
    ("alias.default.svc.cluster.local", "CNAME"),
    ("kubernetes.default.svc.cluster.local", "A"),
    ("CLIENT.default.pod.cluster.local", "A"),
    ("10.0.96.10.in-addr.arpa", "PTR"),
    ("nothing.default.svc.cluster.local", "A"),
    ("example.com", "A"),
];

/// `labhost dig` in the client pod for each question; the answers, with
/// addresses (dotted and dashed) replaced by their owners' names, the SOA
/// serial (the zone's build time) by a placeholder, and each section's
/// records sorted (a headless answer's order is not part of it).
async fn answers_snapshot(lab: &Cluster, client: &Pod, pods: &[Pod], web_ip: &str) {
    let mut owners = Names::new();
    owners.insert(web_ip, "<Service web>");
    owners.insert("10.96.0.1", "<Service kubernetes>");
    owners.insert(DNS_IP, "<Service kube-dns>");
    let mut by_ip: Vec<&Pod> = pods.iter().collect();
    by_ip.sort_by_key(|p| p.ip.parse::<std::net::Ipv4Addr>().expect("a pod IPv4 address"));
    // The client apart, so the others' numbers do not depend on where its address falls.
    let others = by_ip.iter().filter(|p| p.name != client.name);
    for (i, pod) in std::iter::once((0, &client)).chain(others.enumerate().map(|(i, p)| (i + 1, p))) {
        let owner = if i == 0 { "<client pod>".to_string() } else { format!("<web pod {i}>") };
        owners.insert(pod.ip.clone(), owner.clone());
        owners.insert(pod.ip.replace('.', "-"), owner);
    }
    let client_dashed = client.ip.replace('.', "-");
    let mut shown = Vec::new();
    for (name, kind) in QUESTIONS {
        let name = name.replace("CLIENT", &client_dashed);
        let out = lab.ok(&["exec", &client.name, "--", "/labhost", "dig", &name, kind]);
        shown.push(format!("$ dig {} {kind}\n{}", normalized(&name, &owners), normalized(&out, &owners)));
    }
    insta::assert_snapshot!("cluster_dns_answers", shown.join("\n"));
}

fn normalized(text: &str, owners: &Names) -> String {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in owners.apply(text).lines() {
        let mut line = line.to_string();
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) == Some(&"SOA") && fields.len() == 11 {
            let mut fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            fields[6] = "<serial>".into();
            line = fields.join(" ");
        }
        match sections.last_mut() {
            Some((_, records)) if !line.starts_with(";;") => records.push(line),
            _ => sections.push((line, Vec::new())),
        }
    }
    sections
        .into_iter()
        .flat_map(|(title, mut records)| {
            records.sort();
            std::iter::once(title).chain(records)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
