//! Jobs and StatefulSets on real nodes: a Job's pods run to completion
//! (and a failing one stops at its backoff limit), a StatefulSet's pods
//! come up in ordinal order, find each other by `<pod>.<service>`, and
//! keep what they wrote to their claims' volumes.

use anyhow::{bail, Result};
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::{text, Context, Scenario};

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "jobs",
        group: "workloads",
        topology: "3-node",
        about: "a Job of 3 completions, 2 at a time, runs to Complete; a failing Job stops at backoffLimit",
        run: jobs,
    },
    Scenario {
        name: "statefulset",
        group: "workloads",
        topology: "3-node",
        about: "a StatefulSet's pods start in order with stable names, resolve each other as <pod>.<service>, and keep their volumes' data",
        run: statefulset,
    },
];

const JOBS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: busybox
        command: ["sh", "-c", "echo job done"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: broken
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: broken
        image: busybox
        command: ["sh", "-c", "exit 3"]
"#;

/// The types of a Job's conditions that are True, in order.
fn true_conditions(job: &Value) -> Vec<String> {
    job["status"]["conditions"].as_array().into_iter().flatten().filter(|c| c["status"] == "True").map(|c| text(&c["type"])).collect()
}

fn jobs(c: &Context) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        c.step("kubectl apply: Job pi (3 completions, 2 at a time) and Job broken (exits 3, backoffLimit 0)");
        c.apply(JOBS).await?;
        c.step("kubectl wait --for=condition=complete job/pi");
        c.kubectl(&["wait", "--for=condition=complete", "job/pi", "--timeout=120s"]).await?;
        let pi = c.json(&["get", "job", "pi"]).await?;
        let pods = c.json(&["get", "pods", "-l", "job-name=pi"]).await?;
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let succeeded = items.iter().filter(|p| p["status"]["phase"] == "Succeeded").count();
        let tracked = items.iter().filter(|p| p["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())).count();
        let logs = c.kubectl(&["logs", "job/pi"]).await?;
        let mut report = format!(
            "Job pi: succeeded {}, failed {}, active {}, conditions {:?}\n  pods: {} Succeeded of {}, {} still tracked\n  kubectl logs job/pi: {}\n",
            pi["status"]["succeeded"],
            pi["status"]["failed"],
            pi["status"]["active"],
            true_conditions(&pi),
            succeeded,
            items.len(),
            tracked,
            logs.trim()
        );

        c.step("waiting for Job broken to fail");
        let broken = c
            .until("job broken Failed", || async {
                let j = c.json(&["get", "job", "broken"]).await.map_err(|e| e.to_string())?;
                if true_conditions(&j).iter().any(|t| t == "Failed") {
                    Ok(j)
                } else {
                    Err(format!("status {}", j["status"]))
                }
            })
            .await?;
        let failed = broken["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Failed").cloned().unwrap_or_default();
        report += &format!(
            "Job broken: failed {}, conditions {:?}, reason {}: {}\n",
            broken["status"]["failed"],
            true_conditions(&broken),
            text(&failed["reason"]),
            text(&failed["message"])
        );
        c.snapshot("jobs", &report)
    })
}

const STATEFULSET: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - port: 8080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: kubelab/labhost
        args: ["netexec", "--http-port=8080"]
        readinessProbe:
          tcpSocket:
            port: 8080
          periodSeconds: 1
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 10Mi
"#;

/// A pod on `node` that lists the local-path provisioner's directory.
fn inspector(node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: inspect-{node}
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: ls
    image: busybox
    command: ["ls", "/volumes"]
    volumeMounts:
    - name: volumes
      mountPath: /volumes
  volumes:
  - name: volumes
    hostPath:
      path: /var/local-path-provisioner
"#
    )
}

fn statefulset(c: &Context) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        c.step("kubectl apply: headless Service web and StatefulSet web (3 replicas)");
        c.apply(STATEFULSET).await?;
        c.step("waiting for 3 ready replicas");
        c.until("statefulset web with 3 ready replicas", || async {
            let s = c.json(&["get", "statefulset", "web"]).await.map_err(|e| e.to_string())?;
            if s["status"]["readyReplicas"] == 3 && s["status"]["currentRevision"] == s["status"]["updateRevision"] {
                Ok(())
            } else {
                Err(format!("status {}", s["status"]))
            }
        })
        .await?;
        // OrderedReady: each pod started only after the one before was ready.
        let pods = c.json(&["get", "pods", "-l", "app=web"]).await?;
        let mut items = pods["items"].as_array().cloned().unwrap_or_default();
        items.sort_by_key(|p| text(&p["metadata"]["name"]));
        let names: Vec<String> = items.iter().map(|p| text(&p["metadata"]["name"])).collect();
        if names != ["web-0", "web-1", "web-2"] {
            bail!("statefulset web has pods {names:?}");
        }
        for pair in items.windows(2) {
            let ready_at =
                pair[0]["status"]["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready").map(|c| text(&c["lastTransitionTime"]));
            let next_created = text(&pair[1]["metadata"]["creationTimestamp"]);
            if ready_at.as_deref().is_none_or(|r| next_created.as_str() < r) {
                bail!(
                    "{} was created at {next_created}, before {} was ready ({ready_at:?})",
                    text(&pair[1]["metadata"]["name"]),
                    text(&pair[0]["metadata"]["name"])
                );
            }
        }
        let mut report = String::new();
        for pod in &items {
            let spec = &pod["spec"];
            report += &format!(
                "{}: hostname {}, subdomain {}, index label {}\n",
                text(&pod["metadata"]["name"]),
                text(&spec["hostname"]),
                text(&spec["subdomain"]),
                text(&pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"])
            );
        }

        c.step("web-0 resolves web-1.web and web-2.web to their pods");
        for peer in &items[1..] {
            let name = text(&peer["metadata"]["name"]);
            let ip = text(&peer["status"]["podIP"]);
            let fqdn = format!("{name}.web.{}.svc.cluster.local", c.namespace);
            c.until(&format!("{fqdn} answering {ip} in web-0"), || async {
                let answer = c.kubectl(&["exec", "web-0", "--", "/labhost", "dig", &fqdn]).await.map_err(|e| e.to_string())?;
                if answer.contains(&ip) {
                    Ok(())
                } else {
                    Err(answer)
                }
            })
            .await?;
            report += &format!("web-0 resolves {name}.web.<namespace>.svc.cluster.local to {name}'s pod IP\n");
        }
        c.snapshot("identities", &report)?;
        volumes(c, &items).await
    })
}

/// The claims of the StatefulSet's pods: one each, bound on the pod's
/// node; what a pod wrote survives the pod; a deleted claim's directory
/// is removed from its node.
async fn volumes(c: &Context, pods: &[Value]) -> Result<()> {
    c.step("each pod's claim bound to a volume on the pod's node");
    let mut report = String::new();
    for pod in pods {
        let name = text(&pod["metadata"]["name"]);
        let node = text(&pod["spec"]["nodeName"]);
        let claim = c.json(&["get", "pvc", &format!("data-{name}")]).await?;
        let volume = c.json(&["get", "pv", &text(&claim["spec"]["volumeName"])]).await?;
        let volume_node = text(&volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]);
        report += &format!(
            "data-{name}: {}, class {}, {} {}, volume on the pod's node: {}\n",
            text(&claim["status"]["phase"]),
            text(&claim["spec"]["storageClassName"]),
            text(&claim["status"]["capacity"]["storage"]),
            text(&volume["spec"]["persistentVolumeReclaimPolicy"]),
            volume_node == node
        );
    }

    c.step("web-1 writes to its volume; deleting web-1; the new web-1 reads it");
    let old = c.json(&["get", "pod", "web-1"]).await?;
    c.kubectl(&["exec", "web-1", "--", "sh", "-c", "echo written-by-the-first-web-1 > /data/proof"]).await?;
    c.kubectl(&["delete", "pod", "web-1", "--wait=false"]).await?;
    let new = c
        .until("a new web-1 ready", || async {
            let p = c.json(&["get", "pod", "web-1"]).await.map_err(|e| e.to_string())?;
            let ready = p["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
            if p["metadata"]["uid"] != old["metadata"]["uid"] && ready && p["metadata"]["deletionTimestamp"].is_null() {
                Ok(p)
            } else {
                Err(format!("uid {}, status {}", p["metadata"]["uid"], p["status"]["phase"]))
            }
        })
        .await?;
    let read = c.kubectl(&["exec", "web-1", "--", "cat", "/data/proof"]).await?;
    report += &format!("the new web-1 reads {:?}, on the same node: {}\n", read.trim(), new["spec"]["nodeName"] == old["spec"]["nodeName"]);

    c.step("scaling to 2: data-web-2 stays; deleting it removes its directory");
    let last = &pods[2];
    let node = text(&last["spec"]["nodeName"]);
    let claim = c.json(&["get", "pvc", "data-web-2"]).await?;
    let volume = text(&claim["spec"]["volumeName"]);
    c.kubectl(&["scale", "statefulset", "web", "--replicas=2"]).await?;
    c.until("web-2 gone", || async {
        let out = c.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]).await.map_err(|e| e.to_string())?;
        if out.contains("pod/web-2") {
            Err(out)
        } else {
            Ok(())
        }
    })
    .await?;
    let kept = c.json(&["get", "pvc", "data-web-2"]).await?;
    report += &format!("after scaling to 2, data-web-2 is {}\n", text(&kept["status"]["phase"]));
    c.kubectl(&["delete", "pvc", "data-web-2"]).await?;
    c.until(&format!("volume {volume} deleted"), || async {
        let out = c.kubectl(&["get", "pv", "-o", "name"]).await.map_err(|e| e.to_string())?;
        if out.contains(&volume) {
            Err(out)
        } else {
            Ok(())
        }
    })
    .await?;
    c.apply(&inspector(&node)).await?;
    let listing = c
        .until("the inspector's listing", || async {
            let p = c.json(&["get", "pod", &format!("inspect-{node}")]).await.map_err(|e| e.to_string())?;
            if p["status"]["phase"] == "Succeeded" {
                c.kubectl(&["logs", &format!("inspect-{node}")]).await.map_err(|e| e.to_string())
            } else {
                Err(format!("phase {}", p["status"]["phase"]))
            }
        })
        .await?;
    let directory = format!("{volume}_{}_data-web-2", c.namespace);
    report += &format!("after deleting data-web-2, its volume is gone and its directory on the node is gone: {}\n", !listing.contains(&directory));
    c.snapshot("volumes", &report)
}
