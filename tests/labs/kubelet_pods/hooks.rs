//! Lifecycle hooks on real nodes: a postStart hook has run by the time the
//! container counts as started (its pod Ready); a failing postStart hook
//! gets upstream's `FailedPostStartHook` event and the container is killed
//! and restarted; a preStop hook runs before SIGTERM, which the workload
//! sees (both write, in order, to a file on the node through a hostPath
//! volume, read once the pod is gone).

use kubelab_scenarios::cluster::{kubectl_stdin, Cluster as Lab};
use kubelab_scenarios::wait::until;

use super::probes::events;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: post-start}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "sleep 3600"]
    lifecycle:
      postStart: {exec: {command: [sh, -c, "sleep 2; echo ran > /tmp/post-start"]}}
---
apiVersion: v1
kind: Pod
metadata: {name: post-start-fails}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "sleep 3600"]
    lifecycle:
      postStart: {exec: {command: [sh, -c, "echo no; exit 3"]}}
---
apiVersion: v1
kind: Pod
metadata: {name: pre-stop}
spec:
  terminationGracePeriodSeconds: 10
  volumes:
  - {name: out, hostPath: {path: /var/tmp/kubelab-hooks, type: DirectoryOrCreate}}
  containers:
  - name: c
    image: busybox
    volumeMounts: [{name: out, mountPath: /out}]
    command: [sh, -c, "trap 'echo sigterm >> /out/order; exit 0' TERM; rm -f /out/order; touch /out/started; while true; do sleep 1; done"]
    lifecycle:
      preStop: {exec: {command: [sh, -c, "echo pre-stop >> /out/order"]}}
"#;

pub async fn hooks(lab: &Lab) {
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], PODS);
    assert_eq!(code, 0, "{out}");

    // Ready means started, and started means the hook returned.
    lab.ok(&["wait", "--for=condition=Ready", "pod/post-start", "--timeout=60s"]);
    let (code, ran) = lab.k(&["exec", "post-start", "--", "cat", "/tmp/post-start"]);
    assert_eq!((code, ran.as_str()), (0, "ran\n"), "the postStart hook had finished when the pod turned Ready");

    until("post-start-fails killed and restarted after its hook failed", || async {
        let pod = lab.json(&["get", "pod", "post-start-fails"]);
        let restarts = pod["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0);
        let seen = events(lab, "post-start-fails");
        let failed = seen.iter().any(|e| {
            e.starts_with("Warning FailedPostStartHook: Exec lifecycle hook ([sh -c echo no; exit 3]) for Container \"c\" in Pod \"post-start-fails_default(")
                && e.contains("message: \"no\\n\"")
        });
        if restarts >= 1 && failed {
            Ok(())
        } else {
            Err(format!("restarts {restarts}, events {seen:?}"))
        }
    })
    .await;

    lab.ok(&["wait", "--for=condition=Ready", "pod/pre-stop", "--timeout=60s"]);
    let node = lab.ok(&["get", "pod", "pre-stop", "-o", "jsonpath={.spec.nodeName}"]);
    until("pre-stop's workload to have started", || async {
        let (code, out) = lab.node(&node, &["ls", "/var/tmp/kubelab-hooks/started"]).await;
        if code == 0 {
            Ok(())
        } else {
            Err(out)
        }
    })
    .await;
    // --wait: returns once the pod is gone, so both writes are done.
    lab.ok(&["delete", "pod", "pre-stop", "post-start", "post-start-fails", "--grace-period=10"]);
    let (code, order) = lab.node(&node, &["cat", "/var/tmp/kubelab-hooks/order"]).await;
    assert_eq!((code, order.as_str()), (0, "pre-stop\nsigterm\n"), "the preStop hook ran before SIGTERM reached the workload");
    lab.node(&node, &["rm", "-rf", "/var/tmp/kubelab-hooks"]).await;
}
