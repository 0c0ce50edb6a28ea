//! The kubelet on real nodes (`3-node` on Docker): a labhost Deployment
//! runs on all three nodes inside each node's pod CIDR, every pod reaches
//! every pod and every node reaches every pod (the connectivity matrix, a
//! snapshot), logs and exec work through the apiserver, restarts follow
//! the restart policy with back-off, deletion delivers SIGTERM and leaves
//! nothing on the node, a killed kubelet adopts its running pods, and
//! probes (`probes`) gate readiness and restart what fails liveness, and
//! port-forward (`port_forward`) carries large transfers to pods and
//! Services, attach (`attach`) serves `kubectl run -i`/`-it` and
//! `kubectl attach`, ephemeral containers serve `kubectl debug` (`debug`), lifecycle hooks (`hooks`) run when upstream runs them,
//! hostNetwork pods run in their node's network (`host_network`), PID and
//! IPC namespaces are the container's, the pod's or the node's as asked
//! (`process_namespaces`), container logs rotate under a following
//! `kubectl logs -f` (`log_rotation`), sidecar init containers start in order, gate
//! readiness and restart beside the app (`sidecars`), and the
//! busybox image's wget -T, nc -z and nslookup work (`busybox_tools`).
//! One lab for all of it: `lab up` is paid once, and the checks run in
//! lanes side by side, since they mostly wait.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::task::JoinSet;

use kubelab_scenarios::cluster::{kubectl, kubectl_stdin, pods_of, s, Cluster as Lab};
use kubelab_scenarios::lab_name;
use kubelab_scenarios::wait::until;

mod attach;
mod busybox_tools;
mod debug;
mod hooks;
mod host_network;
mod log_rotation;
mod port_forward;
mod probes;
mod process_namespaces;
mod sidecars;

// Worker threads for the lanes below: the checks call kubectl and wait on
// it, blocking their thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn pods_run_on_three_nodes() {
    let (lab, _guard) = Lab::up("3-node", lab_name("kubelet")).await.unwrap();

    let cidrs = nodes_ready(&lab).await;
    overlay_ready(&lab).await;
    let pods = deployment_runs_everywhere(&lab, &cidrs).await;

    // The checks mostly wait (on pods starting, probes' periods, back-off,
    // grace periods), so they run in four lanes side by side on the one
    // lab. Each check has pods of its own names; checks that share names
    // (`ticker`: logs and attach) are in one lane.
    let lab = Arc::new(lab);
    let pods = Arc::new(pods);
    let mut lanes = JoinSet::new();
    let (lab1, pods1) = (lab.clone(), pods.clone());
    lanes.spawn(async move {
        logs_and_exec(&lab1, &pods1).await;
        attach::attach(&lab1).await;
        debug::debug(&lab1).await;
        host_network::host_network(&lab1, &pods1).await;
    });
    let (lab2, pods2) = (lab.clone(), pods.clone());
    lanes.spawn(async move {
        connectivity_matrix(&lab2, &pods2).await;
        busybox_tools::busybox_tools(&lab2, &pods2).await;
        port_forward::port_forward(&lab2).await;
        process_namespaces::process_namespaces(&lab2).await;
    });
    let lab3 = lab.clone();
    lanes.spawn(async move {
        restarts_follow_the_policy(&lab3).await;
        hooks::hooks(&lab3).await;
        sidecars::sidecars(&lab3).await;
    });
    let lab4 = lab.clone();
    lanes.spawn(async move {
        probes::probes(&lab4).await;
        log_rotation::log_rotation(&lab4).await;
    });
    while let Some(ended) = lanes.join_next().await {
        if let Err(e) = ended {
            lanes.abort_all();
            std::panic::resume_unwind(e.into_panic());
        }
    }

    // Alone at the end: these count what is on a node, or restart its kubelet.
    deletion_stops_and_cleans(&lab).await;
    kubelet_restart_adopts(&lab, &pods).await;
}

/// Every Node registers, gets a pod CIDR and turns Ready; their CIDRs.
async fn nodes_ready(lab: &Lab) -> BTreeMap<String, String> {
    until("three Ready nodes with pod CIDRs", || async {
        let nodes = lab.json(&["get", "nodes"]);
        let mut cidrs = BTreeMap::new();
        for n in pods_of(&nodes) {
            let ready = n["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
            let cidr = s(&n["spec"]["podCIDR"]);
            if ready && !cidr.is_empty() {
                cidrs.insert(s(&n["metadata"]["name"]), cidr);
            }
        }
        if cidrs.len() == 3 {
            Ok(cidrs)
        } else {
            Err(format!("ready with a CIDR: {cidrs:?}"))
        }
    })
    .await
}

/// Every node has routes through the VXLAN device to the two others.
async fn overlay_ready(lab: &Lab) {
    for node in ["worker-1", "worker-2", "worker-3"] {
        until(&format!("{node}'s overlay routes to the other nodes"), || async {
            let (_, out) = lab.node(node, &["ip", "route", "show", "dev", "kubelab.1"]).await;
            if out.lines().filter(|l| l.contains(" via ")).count() == 2 {
                Ok(())
            } else {
                Err(out)
            }
        })
        .await;
    }
}

/// A pod as the checks below need it.
#[derive(Debug, Clone)]
struct PodInfo {
    name: String,
    node: String,
    ip: String,
    container_id: String,
}

/// 6 replicas of labhost: all Running and Ready, two on each node, each
/// address inside its node's pod CIDR.
async fn deployment_runs_everywhere(lab: &Lab, cidrs: &BTreeMap<String, String>) -> Vec<PodInfo> {
    lab.ok(&["create", "deployment", "web", "--image=kubelab/labhost", "--replicas=6", "--port=8080"]);
    lab.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let pods: Vec<PodInfo> = pods_of(&lab.json(&["get", "pods", "-l", "app=web"]))
        .iter()
        .map(|p| PodInfo {
            name: s(&p["metadata"]["name"]),
            node: s(&p["spec"]["nodeName"]),
            ip: s(&p["status"]["podIP"]),
            container_id: s(&p["status"]["containerStatuses"][0]["containerID"]),
        })
        .collect();
    assert_eq!(pods.len(), 6, "{pods:?}");
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &pods {
        *per_node.entry(&p.node).or_default() += 1;
        let cidr: ipnet::IpNet = cidrs[&p.node].parse().unwrap();
        assert!(cidr.contains(&p.ip.parse::<std::net::IpAddr>().unwrap()), "{} has {} outside {}'s {cidr}", p.name, p.ip, p.node);
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "spread over the nodes: {per_node:?}");
    pods
}

/// Every pod dials every pod, and every node every pod; the answers (the
/// host name, which is the pod's name) make the matrix, with pods named
/// by their node and rank so the snapshot is stable.
async fn connectivity_matrix(lab: &Lab, pods: &[PodInfo]) {
    let mut sorted = pods.to_vec();
    sorted.sort_by(|a, b| (&a.node, &a.name).cmp(&(&b.node, &b.name)));
    let mut label: BTreeMap<String, String> = BTreeMap::new();
    let mut rank: BTreeMap<String, usize> = BTreeMap::new();
    for p in &sorted {
        let r = rank.entry(p.node.clone()).or_default();
        *r += 1;
        label.insert(p.name.clone(), format!("pod-{}-{}", p.node, r));
    }
    let answer = |out: &str| label.get(out.trim()).cloned().unwrap_or_else(|| format!("unexpected answer {out:?}"));
    let mut lines = vec![];
    for from in &sorted {
        for to in &sorted {
            let dial = ["exec", &from.name, "--", "/labhost", "dial", "--host", &to.ip, "--port", "8080"];
            let (mut code, mut out) = lab.k(&dial);
            // kubectl (client-go's WebSocket executor) may read a first
            // message before it has made its streams and drops it, saying
            // "Unknown stream id 1"; that is the client's race, not the
            // network's, so that one exec is asked again.
            if out.contains("Unknown stream id") {
                (code, out) = lab.k(&dial);
            }
            let result = if code == 0 { answer(&out) } else { format!("failed ({code}): {}", out.trim()) };
            lines.push(format!("{} -> {}: {result}", label[&from.name], label[&to.name]));
        }
    }
    for node in ["worker-1", "worker-2", "worker-3"] {
        for to in &sorted {
            let (code, out) = lab.node(node, &["curl", "-s", "--max-time", "5", &format!("http://{}:8080/hostname", to.ip)]).await;
            let result = if code == 0 { answer(&out) } else { format!("failed ({code}): {}", out.trim()) };
            lines.push(format!("node {node} -> {}: {result}", label[&to.name]));
        }
    }
    insta::assert_snapshot!("connectivity_matrix", lines.join("\n"));
}

async fn logs_and_exec(lab: &Lab, pods: &[PodInfo]) {
    // Output of a finished pod, whole and in order; stderr too.
    lab.ok(&["run", "talker", "--image=busybox", "--restart=Never", "--", "sh", "-c", "echo one; echo two >&2; echo three"]);
    until("talker to succeed", || async {
        let phase = lab.ok(&["get", "pod", "talker", "-o", "jsonpath={.status.phase}"]);
        if phase == "Succeeded" {
            Ok(())
        } else {
            Err(format!("phase {phase:?}"))
        }
    })
    .await;
    // Each stream keeps its order; the two streams interleave as they were read.
    let logged = lab.ok(&["logs", "talker"]);
    let stdout: Vec<&str> = logged.lines().filter(|l| *l != "two").collect();
    assert_eq!((stdout, logged.lines().filter(|l| *l == "two").count()), (vec!["one", "three"], 1), "{logged}");
    let stamped = lab.ok(&["logs", "talker", "--timestamps"]);
    assert!(stamped.lines().all(|l| l.split_once(' ').is_some_and(|(t, _)| t.ends_with('Z'))), "{stamped}");

    // logs -f follows a running container until it ends.
    lab.ok(&["run", "ticker", "--image=busybox", "--restart=Never", "--", "sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 1; done"]);
    until("ticker to run", || async {
        let phase = lab.ok(&["get", "pod", "ticker", "-o", "jsonpath={.status.phase}"]);
        if phase == "Running" || phase == "Succeeded" {
            Ok(())
        } else {
            Err(format!("phase {phase:?}"))
        }
    })
    .await;
    let (code, followed) = kubectl(&lab.kubeconfig, &["logs", "-f", "ticker"]);
    assert_eq!((code, followed.as_str()), (0, "tick 1\ntick 2\ntick 3\n"));
    assert_eq!(lab.ok(&["logs", "ticker", "--tail=1"]), "tick 3\n");

    // exec keeps exit codes and runs inside the pod (its host name).
    let web = &pods[0];
    assert_eq!(lab.ok(&["exec", &web.name, "--", "hostname"]).trim(), web.name);
    let (code, _) = lab.k(&["exec", &web.name, "--", "sh", "-c", "exit 7"]);
    assert_eq!(code, 7);
    let (_, out) = kubectl_stdin(&lab.kubeconfig, &["exec", "-i", &web.name, "--", "cat"], "through stdin\n");
    assert_eq!(out, "through stdin\n");
    // The Python client sends stdin in text frames.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/streams.py");
    let python =
        std::process::Command::new("python3").arg(&script).args(["exec", &web.name]).env("KUBECONFIG", &lab.kubeconfig).output().expect("python3 runs");
    let printed = String::from_utf8_lossy(&python.stdout);
    assert!(python.status.success() && printed == "exec stdin: through text frames\n", "{printed}\n{}", String::from_utf8_lossy(&python.stderr));
    lab.ok(&["delete", "pod", "talker", "ticker"]);
}

async fn restarts_follow_the_policy(lab: &Lab) {
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  initContainers:
  - {name: first, image: busybox, command: ["sh", "-c", "echo first > /work/order"], volumeMounts: [{name: work, mountPath: /work}]}
  - {name: second, image: busybox, command: ["sh", "-c", "echo second >> /work/order"], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - {name: app, image: busybox, command: ["sh", "-c", "cat /work/order; exit 1"], volumeMounts: [{name: work, mountPath: /work}]}
  volumes: [{name: work, emptyDir: {}}]
"#;
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], manifest);
    assert_eq!(code, 0, "{out}");
    let status = until("crasher to be restarted into back-off", || async {
        let pod = lab.json(&["get", "pod", "crasher"]);
        let c = pod["status"]["containerStatuses"][0].clone();
        let waiting = s(&c["state"]["waiting"]["reason"]);
        if c["restartCount"].as_i64().unwrap_or(0) >= 1 && waiting == "CrashLoopBackOff" {
            Ok(c)
        } else {
            Err(format!("{c}"))
        }
    })
    .await;
    assert_eq!(status["lastState"]["terminated"]["exitCode"], 1, "{status}");
    assert_eq!(status["lastState"]["terminated"]["reason"], "Error", "{status}");
    // Init containers ran first, in order.
    assert_eq!(lab.ok(&["logs", "crasher", "-c", "app", "--previous"]), "first\nsecond\n");
    lab.ok(&["delete", "pod", "crasher"]);
}

/// `kubectl delete pod` returns once the workload took SIGTERM and went;
/// its sandbox, address, veth, cgroup and files are gone from the node.
async fn deletion_stops_and_cleans(lab: &Lab) {
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: graceful}
spec:
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "trap 'echo got TERM > /host/term; exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{name: host, mountPath: /host}]
  volumes: [{name: host, hostPath: {path: /var/lib/kubelab-test, type: DirectoryOrCreate}}]
"#;
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], manifest);
    assert_eq!(code, 0, "{out}");
    lab.ok(&["wait", "--for=condition=Ready", "pod/graceful", "--timeout=60s"]);
    let pod = lab.json(&["get", "pod", "graceful"]);
    let (node, uid, ip) = (s(&pod["spec"]["nodeName"]), s(&pod["metadata"]["uid"]), s(&pod["status"]["podIP"]));
    let (code, out) = kubectl(&lab.kubeconfig, &["delete", "pod", "graceful"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(lab.node(&node, &["cat", "/var/lib/kubelab-test/term"]).await.1.trim(), "got TERM");
    let left = format!(
        "ls /run/kubelab/sandboxes/{uid} /run/kubelab/containers/{uid}-c-0 /var/lib/kubelet/pods/{uid} /var/lib/cni/results/kubelab-{uid}-eth0 \
         /run/kubelab/cgroup/memory/kubepods/pod{uid} /var/lib/cni/networks/kubelab/{ip} 2>/dev/null; ip -o link | grep -c veth"
    );
    let (_, out) = lab.node(&node, &["sh", "-c", &left]).await;
    let veths: usize = out.lines().last().unwrap_or("0").trim().parse().unwrap_or(99);
    let pods_left = lab.json(&["get", "pods", "-A", "--field-selector", &format!("spec.nodeName={node}")]);
    assert_eq!(out.lines().count(), 1, "left on {node} after the delete: {out}");
    assert_eq!(veths, pods_of(&pods_left).len(), "one veth per pod still on {node}: {out}");
}

/// The kubelet killed and started again (by the node's supervisor) finds
/// its pods running: same containers, same addresses, still Ready.
async fn kubelet_restart_adopts(lab: &Lab, pods: &[PodInfo]) {
    let node = &pods[0].node;
    let (code, out) = lab.node(node, &["sh", "-c", "kill -KILL $(cat /run/kubelab/kubelet.pid)"]).await;
    assert_eq!(code, 0, "{out}");
    until("the kubelet to serve again", || async {
        let (code, out) = lab.node(node, &["curl", "-fs", "--max-time", "2", "http://127.0.0.1:10248/healthz"]).await;
        if code == 0 {
            Ok(())
        } else {
            Err(out)
        }
    })
    .await;
    // A change makes the new kubelet write status: label the pods.
    lab.ok(&["label", "pods", "-l", "app=web", "restarted=yes"]);
    for p in pods.iter().filter(|p| &p.node == node) {
        let pod = lab.json(&["get", "pod", &p.name]);
        assert_eq!(s(&pod["status"]["podIP"]), p.ip, "{} kept its address", p.name);
        assert_eq!(s(&pod["status"]["containerStatuses"][0]["containerID"]), p.container_id, "{} kept its container", p.name);
        assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
        let (code, out) = lab.k(&["exec", &p.name, "--", "/labhost", "dial", "--host", &p.ip, "--port", "8080"]);
        assert_eq!((code, out.trim()), (0, p.name.as_str()), "{} still serves", p.name);
    }
}
