//! A hostNetwork pod on a real node: it runs in the node's network and UTS
//! namespaces (the node's interfaces, its VXLAN device among them, and its
//! name), reports the node's address as its own, serves on it to other
//! pods, and its deletion leaves the node's network as it was (no CNI call
//! ever touches the node's namespace).

use kubelab_scenarios::cluster::{kubectl_stdin, s, Cluster as Lab};

use super::PodInfo;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: on-the-node}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "mkdir -p /www && echo node-network > /www/index.html && httpd -f -p 18080 -h /www"]
"#;

pub async fn host_network(lab: &Lab, pods: &[PodInfo]) {
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], POD);
    assert_eq!(code, 0, "{out}");
    lab.ok(&["wait", "--for=condition=Ready", "pod/on-the-node", "--timeout=60s"]);
    let pod = lab.json(&["get", "pod", "on-the-node"]);
    let (node, node_ip) = (s(&pod["spec"]["nodeName"]), s(&pod["status"]["hostIP"]));
    assert_eq!(s(&pod["status"]["podIP"]), node_ip, "a hostNetwork pod's address is its node's");

    let (code, addresses) = lab.k(&["exec", "on-the-node", "--", "ip", "-o", "-4", "addr"]);
    assert!(code == 0 && addresses.contains(&format!("inet {node_ip}/")) && addresses.contains("kubelab.1"), "the node's interfaces: {addresses}");
    assert_eq!(lab.ok(&["exec", "on-the-node", "--", "hostname"]).trim(), node, "the node's name");

    // Another pod reaches it at the node's address.
    let (code, page) = lab.k(&["exec", &pods[0].name, "--", "wget", "-qO-", "-T", "5", &format!("http://{node_ip}:18080/")]);
    assert_eq!((code, page.as_str()), (0, "node-network\n"), "from {} to {node_ip}:18080", pods[0].name);

    lab.ok(&["delete", "pod", "on-the-node"]);
    let (code, link) = lab.node(&node, &["ip", "-o", "-4", "addr", "show", "eth0"]).await;
    assert!(code == 0 && link.contains(&format!("inet {node_ip}/")), "the node keeps its address after the pod went: {link}");
    let last = &pods[pods.len() - 1];
    let (code, page) = lab.k(&["exec", &pods[0].name, "--", "wget", "-qO-", "-T", "5", &format!("http://{}:8080/hostname", last.ip)]);
    assert_eq!((code, page.trim()), (0, last.name.as_str()), "pods still reach each other");
}
