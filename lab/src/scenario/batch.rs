//! Jobs and StatefulSets on real nodes: a Job's pods run to completion
//! (and a failing one stops at its backoff limit), a StatefulSet's pods
//! come up in ordinal order and find each other by `<pod>.<service>`.

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
        about: "a StatefulSet's pods start in order with stable names and resolve each other as <pod>.<service>",
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
"#;

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
        c.snapshot("identities", &report)
    })
}
