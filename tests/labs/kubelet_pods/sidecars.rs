//! Sidecars (init containers with `restartPolicy: Always`) on real nodes:
//! one starts in the init sequence after the init container before it and
//! before the app container, and only once its startup probe passed; its
//! readiness probe gates the pod's Ready; when it ends it is restarted
//! while the app container runs on. In a pod with restartPolicy Never it
//! runs beside the main container and is stopped when that one completes,
//! and the pod Succeeds.

use serde_json::Value;

use kubelab_scenarios::cluster::{kubectl_stdin, s, Cluster as Lab};
use kubelab_scenarios::wait::until;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: sidecar}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - name: setup
    image: busybox
    command: [sh, -c, "echo setup > /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: logger
    image: busybox
    restartPolicy: Always
    command: [sh, -c, "echo logger >> /work/order; while ! [ -f /tmp/exit ]; do sleep 1; done; exit 3"]
    volumeMounts: [{name: work, mountPath: /work}]
    startupProbe: {exec: {command: [grep, logger, /work/order]}, periodSeconds: 1}
    readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "echo app >> /work/order; sleep 3600"]
    volumeMounts: [{name: work, mountPath: /work}]
---
apiVersion: v1
kind: Pod
metadata: {name: sidecar-job}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: helper
    image: busybox
    restartPolicy: Always
    command: [sleep, "3600"]
  containers:
  - name: main
    image: busybox
    command: [sh, -c, "echo done"]
"#;

pub async fn sidecars(lab: &Lab) {
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], PODS);
    assert_eq!(code, 0, "{out}");
    starts_in_order_and_gates_readiness(lab).await;
    restarts_beside_the_app(lab).await;
    stops_when_the_main_container_completes(lab).await;
    lab.ok(&["delete", "pod", "sidecar", "sidecar-job", "--grace-period=1"]);
}

fn status(lab: &Lab, pod: &str) -> Value {
    lab.json(&["get", "pod", pod])["status"].clone()
}

fn condition(status: &Value, kind: &str) -> (String, String) {
    let c = status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == kind).cloned().unwrap_or_default();
    (s(&c["status"]), s(&c["message"]))
}

async fn starts_in_order_and_gates_readiness(lab: &Lab) {
    until("sidecar initialized, its app running, not Ready while the sidecar is not", || async {
        let st = status(lab, "sidecar");
        let app_running = st["containerStatuses"][0]["state"]["running"].is_object();
        let (initialized, ready) = (condition(&st, "Initialized"), condition(&st, "Ready"));
        let unready = ("False".to_string(), "containers with unready status: [logger]".to_string());
        if app_running && initialized.0 == "True" && ready == unready {
            Ok(())
        } else {
            Err(format!("app running {app_running}; Initialized {initialized:?}; Ready {ready:?}; {st}"))
        }
    })
    .await;
    let order = lab.ok(&["exec", "sidecar", "-c", "app", "--", "cat", "/work/order"]);
    assert_eq!(order, "setup\nlogger\napp\n", "the sidecar started after the init container before it and before the app");
    let logger = &status(lab, "sidecar")["initContainerStatuses"][1];
    assert!(logger["state"]["running"].is_object() && logger["started"] == true && logger["ready"] == false, "{logger}");
    lab.ok(&["exec", "sidecar", "-c", "logger", "--", "touch", "/tmp/ready"]);
    lab.ok(&["wait", "--for=condition=Ready", "pod/sidecar", "--timeout=60s"]);
}

async fn restarts_beside_the_app(lab: &Lab) {
    lab.ok(&["exec", "sidecar", "-c", "logger", "--", "touch", "/tmp/exit"]);
    until("the sidecar restarted after it exited 3, the app not", || async {
        let st = status(lab, "sidecar");
        let (logger, app) = (&st["initContainerStatuses"][1], &st["containerStatuses"][0]);
        let restarted = logger["restartCount"].as_i64().unwrap_or(0) >= 1 && logger["lastState"]["terminated"]["exitCode"] == 3;
        if restarted && logger["state"]["running"].is_object() && app["restartCount"] == 0 && app["state"]["running"].is_object() {
            Ok(())
        } else {
            Err(format!("logger {logger}; app {app}"))
        }
    })
    .await;
}

async fn stops_when_the_main_container_completes(lab: &Lab) {
    until("sidecar-job Succeeded with its sidecar stopped", || async {
        let st = status(lab, "sidecar-job");
        let helper = &st["initContainerStatuses"][0];
        if s(&st["phase"]) == "Succeeded" && helper["state"]["terminated"].is_object() && st["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0 {
            Ok(())
        } else {
            Err(format!("{st}"))
        }
    })
    .await;
}
