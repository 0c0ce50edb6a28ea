//! A pod's PID and IPC namespaces on real nodes, told apart by their
//! identities (`readlink /proc/self/ns/pid`):
//! - by default each container has a PID namespace of its own;
//! - with `shareProcessNamespace` the containers share the pod's, whose
//!   PID 1 is the sandbox's holder, and see each other's processes;
//! - `hostPID` and `hostIPC` keep the node's namespaces, which other pods
//!   do not see.

use kubelab_scenarios::cluster::{kubectl_stdin, Cluster as Lab};

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: pid-shared}
spec:
  shareProcessNamespace: true
  terminationGracePeriodSeconds: 1
  containers:
  - {name: a, image: busybox, command: [sleep, "3601"]}
  - {name: b, image: busybox, command: [sleep, "3602"]}
---
apiVersion: v1
kind: Pod
metadata: {name: pid-own}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: a, image: busybox, command: [sleep, "3601"]}
  - {name: b, image: busybox, command: [sleep, "3602"]}
---
apiVersion: v1
kind: Pod
metadata: {name: host-pid-ipc}
spec:
  hostPID: true
  hostIPC: true
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: busybox, command: [sleep, "3603"]}
"#;

pub async fn process_namespaces(lab: &Lab) {
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], PODS);
    assert_eq!(code, 0, "{out}");
    for pod in ["pid-shared", "pid-own", "host-pid-ipc"] {
        lab.ok(&["wait", "--for=condition=Ready", &format!("pod/{pod}"), "--timeout=60s"]);
    }
    let ns = |pod: &str, container: &str, kind: &str| lab.ok(&["exec", pod, "-c", container, "--", "readlink", &format!("/proc/self/ns/{kind}")]);

    assert_eq!(ns("pid-shared", "a", "pid"), ns("pid-shared", "b", "pid"), "shareProcessNamespace: one PID namespace");
    let seen = lab.ok(&["exec", "pid-shared", "-c", "b", "--", "ps", "-o", "pid,args"]);
    assert!(seen.contains("sleep 3601"), "b sees a's process: {seen}");
    let pid1 = lab.ok(&["exec", "pid-shared", "-c", "a", "--", "cat", "/proc/1/comm"]);
    assert_eq!(pid1.trim(), "kubelab-pause", "the pod's PID 1 is its sandbox's holder");

    assert_ne!(ns("pid-own", "a", "pid"), ns("pid-own", "b", "pid"), "by default each container has its own");
    let seen = lab.ok(&["exec", "pid-own", "-c", "b", "--", "ps", "-o", "pid,args"]);
    assert!(!seen.contains("sleep 3601"), "b does not see a's process: {seen}");

    let node = lab.ok(&["get", "pod", "host-pid-ipc", "-o", "jsonpath={.spec.nodeName}"]);
    for kind in ["pid", "ipc"] {
        let (code, on_node) = lab.node(&node, &["readlink", &format!("/proc/self/ns/{kind}")]).await;
        assert_eq!(code, 0, "{on_node}");
        assert_eq!(ns("host-pid-ipc", "c", kind).trim(), on_node.trim(), "host{kind}: the node's {kind} namespace");
        assert_ne!(ns("pid-own", "a", kind).trim(), on_node.trim(), "other pods do not have the node's {kind} namespace");
    }
    let seen = lab.ok(&["exec", "host-pid-ipc", "--", "ps", "-o", "args"]);
    assert!(seen.lines().any(|l| l.contains("kubelet")), "hostPID sees the node's kubelet: {seen}");

    lab.ok(&["delete", "pod", "pid-shared", "pid-own", "host-pid-ipc", "--wait=true", "--timeout=60s"]);
}
