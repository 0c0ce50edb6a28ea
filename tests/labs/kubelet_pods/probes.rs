//! Probes on real nodes: a failing readiness probe keeps a pod's endpoint
//! not ready in its Service's EndpointSlice until it passes; a failing
//! liveness probe restarts the container with upstream's events (and the
//! probe's own grace period); a startup probe holds liveness back until
//! it succeeds; httpGet (labhost's /healthz, by port name) and tcpSocket
//! probes pass against a serving pod. Every handler type runs once: exec
//! (readiness, liveness, startup), tcpSocket (failing and passing),
//! httpGet, grpc (labhost's grpc-health-checking, turned not serving and
//! back). httpGet redirects are followed to the same host and reported
//! (ProbeWarning) but counted as success to another.

use std::time::Duration;

use serde_json::Value;

use kubelab_scenarios::cluster::{kubectl_stdin, pods_of, s, Cluster as Lab};
use kubelab_scenarios::wait::{holds_for, until};

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: gated, labels: {app: gated}}
spec:
  containers:
  - name: web
    image: kubelab/labhost
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: liveness}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, "touch /tmp/alive; sleep 3600"]
    livenessProbe: {exec: {command: [cat, /tmp/alive]}, periodSeconds: 1, failureThreshold: 2, terminationGracePeriodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: slow-start}
spec:
  containers:
  - name: c
    image: kubelab/labhost
    startupProbe: {exec: {command: [cat, /tmp/started]}, periodSeconds: 1, failureThreshold: 600}
    livenessProbe: {tcpSocket: {port: 9999}, periodSeconds: 1, failureThreshold: 1, terminationGracePeriodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: healthy}
spec:
  containers:
  - name: web
    image: kubelab/labhost
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 1}
    livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: grpc}
spec:
  containers:
  - name: c
    image: kubelab/labhost
    args: [grpc-health-checking]
    readinessProbe: {grpc: {port: 5000}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: redirected}
spec:
  containers:
  - name: web
    image: kubelab/labhost
    readinessProbe: {httpGet: {path: "/redirect?location=/healthz", port: 8080}, periodSeconds: 1}
    # Liveness only once labhost listens, so no refused connection counts.
    startupProbe: {tcpSocket: {port: 8080}, periodSeconds: 1, failureThreshold: 60}
    livenessProbe: {httpGet: {path: "/redirect?location=http://192.0.2.1/elsewhere", port: 8080}, periodSeconds: 1, failureThreshold: 1}
"#;

pub async fn probes(lab: &Lab) {
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], PODS);
    assert_eq!(code, 0, "{out}");
    lab.ok(&["create", "service", "clusterip", "gated", "--tcp=80:8080"]);
    readiness_gates_the_endpoint(lab).await;
    liveness_restarts_with_events(lab).await;
    startup_holds_liveness_back(lab).await;
    http_and_tcp_probes_pass(lab).await;
    grpc_probes_follow_the_health_service(lab).await;
    redirects_are_followed_on_the_same_host_only(lab).await;
    lab.ok(&["delete", "service", "gated"]);
    lab.ok(&["delete", "pod", "gated", "liveness", "slow-start", "healthy", "grpc", "redirected", "--grace-period=1"]);
}

/// Ok when `ok`, else what was seen instead.
fn holds(ok: bool, seen: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(seen())
    }
}

/// The first container's status of `pod`.
fn container(lab: &Lab, pod: &str) -> Value {
    lab.json(&["get", "pod", pod])["status"]["containerStatuses"][0].clone()
}

fn condition(lab: &Lab, pod: &str, kind: &str) -> String {
    let pod = lab.json(&["get", "pod", pod]);
    pod["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == kind).map(|c| s(&c["status"])).unwrap_or_default()
}

/// `reason: message` of every event about `pod`.
pub(super) fn events(lab: &Lab, pod: &str) -> Vec<String> {
    pods_of(&lab.json(&["get", "events"]))
        .iter()
        .filter(|e| e["involvedObject"]["name"] == pod)
        .map(|e| format!("{} {}: {}", s(&e["type"]), s(&e["reason"]), s(&e["message"])))
        .collect()
}

/// The `ready` conditions of the endpoints of Service `service`'s slices
/// (a pod that is not ready is listed not ready, or not at all).
fn endpoint_readiness(lab: &Lab, service: &str) -> Vec<bool> {
    let slices = lab.json(&["get", "endpointslices", "-l", &format!("kubernetes.io/service-name={service}")]);
    pods_of(&slices)
        .iter()
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| e["conditions"]["ready"].as_bool().unwrap_or(false))
        .collect()
}

async fn readiness_gates_the_endpoint(lab: &Lab) {
    until("gated to run, started but not ready, with no ready endpoint", || async {
        let c = container(lab, "gated");
        let endpoints = endpoint_readiness(lab, "gated");
        holds(c["state"]["running"].is_object() && c["ready"] == false && c["started"] == true && !endpoints.contains(&true), || {
            format!("container {c}; endpoints ready {endpoints:?}")
        })
    })
    .await;
    holds_for("gated to stay out of its Service while /tmp/ready is missing", Duration::from_secs(3), || async {
        let (ready, endpoints) = (condition(lab, "gated", "Ready"), endpoint_readiness(lab, "gated"));
        holds(ready == "False" && !endpoints.contains(&true), || format!("Ready {ready}; endpoints ready {endpoints:?}"))
    })
    .await;
    let failed = events(lab, "gated");
    assert!(failed.iter().any(|e| e.starts_with("Warning Unhealthy: Readiness probe failed: cat: can't open '/tmp/ready'")), "{failed:?}");
    lab.ok(&["exec", "gated", "--", "touch", "/tmp/ready"]);
    until("gated Ready and its endpoint ready once /tmp/ready exists", || async {
        let (ready, endpoints) = (condition(lab, "gated", "Ready"), endpoint_readiness(lab, "gated"));
        holds(ready == "True" && endpoints == [true], || format!("Ready {ready}; endpoints ready {endpoints:?}"))
    })
    .await;
}

async fn liveness_restarts_with_events(lab: &Lab) {
    lab.ok(&["wait", "--for=condition=Ready", "pod/liveness", "--timeout=60s"]);
    assert_eq!(container(lab, "liveness")["restartCount"], 0);
    lab.ok(&["exec", "liveness", "--", "rm", "/tmp/alive"]);
    // sh as PID 1 ignores SIGTERM: only the probe's 1 s grace period
    // (over the pod's 30 s) makes the restart come this soon.
    until("liveness restarted after its probe failed twice", || async {
        let c = container(lab, "liveness");
        holds(c["restartCount"].as_i64().unwrap_or(0) >= 1 && c["state"]["running"].is_object(), || format!("{c}"))
    })
    .await;
    let seen = events(lab, "liveness");
    assert!(seen.iter().any(|e| e.starts_with("Warning Unhealthy: Liveness probe failed: cat: can't open '/tmp/alive'")), "{seen:?}");
    assert!(seen.contains(&"Normal Killing: Container c failed liveness probe, will be restarted".to_string()), "{seen:?}");
}

async fn startup_holds_liveness_back(lab: &Lab) {
    until("slow-start running, not started", || async {
        let c = container(lab, "slow-start");
        holds(c["state"]["running"].is_object() && c["started"] == false, || format!("{c}"))
    })
    .await;
    // Its liveness probe (nothing listens on 9999) would kill it at once.
    holds_for("slow-start unkilled while its startup probe fails", Duration::from_secs(4), || async {
        let c = container(lab, "slow-start");
        let liveness = events(lab, "slow-start").into_iter().filter(|e| e.contains("Liveness")).collect::<Vec<_>>();
        holds(c["restartCount"] == 0 && c["started"] == false && liveness.is_empty(), || format!("{c}; {liveness:?}"))
    })
    .await;
    let ip = s(&lab.json(&["get", "pod", "slow-start"])["status"]["podIP"]);
    lab.ok(&["exec", "slow-start", "--", "touch", "/tmp/started"]);
    until("slow-start started, then killed by its liveness probe", || async {
        let seen = events(lab, "slow-start");
        let c = container(lab, "slow-start");
        let failed = format!("Warning Unhealthy: Liveness probe failed: dial tcp {ip}:9999: connect: connection refused");
        let killed = "Normal Killing: Container c failed liveness probe, will be restarted".to_string();
        holds(c["restartCount"].as_i64().unwrap_or(0) >= 1 && seen.contains(&failed) && seen.contains(&killed), || format!("{c}; {seen:?}"))
    })
    .await;
}

async fn http_and_tcp_probes_pass(lab: &Lab) {
    lab.ok(&["wait", "--for=condition=Ready", "pod/healthy", "--timeout=60s"]);
    // Probes that came before labhost listened may have failed (as upstream's
    // would, with no initial delay): only failures once it is Ready count.
    let before = unhealthy_count(lab, "healthy");
    holds_for("healthy to stay Ready, unrestarted, without new Unhealthy events", Duration::from_secs(3), || async {
        let c = container(lab, "healthy");
        let unhealthy = unhealthy_count(lab, "healthy");
        holds(c["ready"] == true && c["restartCount"] == 0 && unhealthy == before, || {
            format!("{c}; Unhealthy events {before} -> {unhealthy}: {:?}", events(lab, "healthy"))
        })
    })
    .await;
}

async fn grpc_probes_follow_the_health_service(lab: &Lab) {
    lab.ok(&["wait", "--for=condition=Ready", "pod/grpc", "--timeout=60s"]);
    let switch = |to: &str| lab.ok(&["exec", "grpc", "--", "/labhost", "dial", "--host", "127.0.0.1", "--port", "8080", "--request", to]);
    switch("make-not-serving");
    until("grpc not ready once its health service says NOT_SERVING", || async {
        let c = container(lab, "grpc");
        let seen = events(lab, "grpc");
        let failed = "Warning Unhealthy: Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")".to_string();
        holds(c["ready"] == false && seen.contains(&failed), || format!("{c}; {seen:?}"))
    })
    .await;
    switch("make-serving");
    until("grpc ready again once it serves", || async {
        let c = container(lab, "grpc");
        holds(c["ready"] == true && c["restartCount"] == 0, || format!("{c}"))
    })
    .await;
}

async fn redirects_are_followed_on_the_same_host_only(lab: &Lab) {
    // Readiness is redirected to /healthz on the same pod: followed, ready.
    lab.ok(&["wait", "--for=condition=Ready", "pod/redirected", "--timeout=60s"]);
    // Liveness is redirected to another host: not followed (nothing is
    // sent there), a warning each time, and still a success, so the
    // container lives on although its failureThreshold is 1.
    until("a ProbeWarning about the redirect elsewhere", || async {
        let seen = events(lab, "redirected");
        let warned = seen.iter().any(|e| {
            e.starts_with("Warning ProbeWarning: Liveness probe warning: Probe terminated redirects, Response body: redirecting to http://192.0.2.1/elsewhere")
        });
        holds(warned, || format!("{seen:?}"))
    })
    .await;
    holds_for("redirected to stay Ready and unrestarted", Duration::from_secs(3), || async {
        let c = container(lab, "redirected");
        holds(c["ready"] == true && c["restartCount"] == 0, || format!("{c}; {:?}", events(lab, "redirected")))
    })
    .await;
}

/// How many Unhealthy events `pod` has had (an aggregated event counts its repeats).
fn unhealthy_count(lab: &Lab, pod: &str) -> i64 {
    pods_of(&lab.json(&["get", "events"]))
        .iter()
        .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == "Unhealthy")
        .map(|e| e["count"].as_i64().unwrap_or(1))
        .sum()
}
