//! Workloads as the course teaches them: a Deployment's chain of owners
//! down to running pods, then rolling it forward, back, up and down.

use anyhow::{bail, Result};
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::names::{sorted_lines, Names};
use super::{text, Context, Scenario};

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "deployment-lifecycle",
        group: "workloads",
        topology: "3-node",
        about: "Deployment -> ReplicaSet -> Pods, scheduled and running; kubectl get all; a pod's YAML applies back",
        run: deployment_lifecycle,
    },
    Scenario {
        name: "rollout",
        group: "workloads",
        topology: "3-node",
        about: "a rolling update, rollout history and undo, scale up and down, kubectl edit",
        run: rollout,
    },
];

const IMAGE: &str = "kubelab/labhost";

fn deployment_lifecycle(c: &Context) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        c.step("kubectl create deployment web (3 replicas of labhost)");
        c.kubectl(&["create", "deployment", "web", &format!("--image={IMAGE}"), "--replicas=3", "--port=8080"]).await?;
        c.step("waiting for deployment web to be available with 3 replicas");
        available(c, "web", 3).await?;

        c.step("reading the chain of owners");
        let (tree, names) = ownership(c, "web").await?;
        c.snapshot("ownership", &tree)?;

        c.step("kubectl get all");
        let all = c.kubectl(&["get", "all", "-o", "name"]).await?;
        c.snapshot("get_all", &sorted_lines(&names.apply(&all)))?;

        c.step("a pod's YAML from kubectl get applies back unchanged");
        let pods = c.json(&["get", "pods", "-l", "app=web"]).await?;
        let pod = &pods["items"][0];
        let (name, uid) = (text(&pod["metadata"]["name"]), text(&pod["metadata"]["uid"]));
        let yaml = c.kubectl(&["get", "pod", &name, "-o", "yaml"]).await?;
        let applied = c.kubectl_stdin(&["apply", "-f", "-"], &yaml).await?;
        if applied.trim() != format!("pod/{name} configured") && applied.trim() != format!("pod/{name} unchanged") {
            bail!("kubectl apply of pod {name}'s own YAML said: {applied}");
        }
        let after = c.json(&["get", "pod", &name]).await?;
        if text(&after["metadata"]["uid"]) != uid || after["spec"] != pod["spec"] {
            bail!("applying pod {name}'s own YAML changed it: spec before {} after {}", pod["spec"], after["spec"]);
        }
        Ok(())
    })
}

fn rollout(c: &Context) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        c.step("kubectl create deployment web (2 replicas)");
        c.kubectl(&["create", "deployment", "web", &format!("--image={IMAGE}"), "--replicas=2"]).await?;
        available(c, "web", 2).await?;

        // A new pod template, so a rolling update; an image change would be
        // the usual one, but labhost is the only pod image that keeps
        // serving with no command given.
        c.step("kubectl set env: a rolling update to a new pod template");
        c.kubectl(&["set", "env", "deployment/web", "STAGE=two"]).await?;
        c.kubectl(&["annotate", "deployment/web", "kubernetes.io/change-cause=STAGE=two"]).await?;
        c.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]).await?;
        stage_is(c, "web", Some("two")).await?;

        c.step("kubectl rollout history");
        let history = c.kubectl(&["rollout", "history", "deployment/web"]).await?;
        c.snapshot("history", &collapse_spaces(&history))?;

        c.step("kubectl rollout undo: back to the first template");
        c.kubectl(&["rollout", "undo", "deployment/web"]).await?;
        c.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]).await?;
        stage_is(c, "web", None).await?;

        c.step("kubectl scale --replicas=5");
        c.kubectl(&["scale", "deployment/web", "--replicas=5"]).await?;
        available(c, "web", 5).await?;
        pods_are(c, "web", 5).await?;

        c.step("kubectl scale --replicas=1");
        c.kubectl(&["scale", "deployment/web", "--replicas=1"]).await?;
        available(c, "web", 1).await?;
        pods_are(c, "web", 1).await?;

        c.step("kubectl edit deployment web (KUBE_EDITOR sets replicas to 2)");
        let args: Vec<String> = ["--namespace", &c.namespace, "edit", "deployment/web"].iter().map(|s| s.to_string()).collect();
        let (code, out, err) = c.kubectl_raw(&args, None, &[("KUBE_EDITOR", "sed -i s/replicas:\\ 1$/replicas:\\ 2/")]).await?;
        if code != 0 || !out.contains("deployment.apps/web edited") {
            bail!("kubectl edit exited {code}: {out}{err}");
        }
        available(c, "web", 2).await?;
        pods_are(c, "web", 2).await
    })
}

/// Until deployment `name` has observed its latest spec and has `replicas`
/// updated, ready and available replicas and no others.
pub async fn available(c: &Context, name: &str, replicas: u64) -> Result<()> {
    c.until(&format!("deployment {name} available with {replicas} replicas"), || async {
        let d = c.json(&["get", "deployment", name]).await.map_err(|e| e.to_string())?;
        let status = &d["status"];
        let count = |field: &str| status[field].as_u64().unwrap_or(0);
        let observed = status["observedGeneration"] == d["metadata"]["generation"];
        if observed && [count("replicas"), count("updatedReplicas"), count("readyReplicas"), count("availableReplicas")] == [replicas; 4] {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    })
    .await
}

/// Until exactly `count` pods of app `name` exist (terminating ones gone).
async fn pods_are(c: &Context, name: &str, count: usize) -> Result<()> {
    c.until(&format!("{count} pods of deployment {name}, no others"), || async {
        let pods = c.json(&["get", "pods", "-l", &format!("app={name}")]).await.map_err(|e| e.to_string())?;
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let running = items.iter().filter(|p| p["status"]["phase"] == "Running").count();
        if items.len() == count && running == count {
            Ok(())
        } else {
            Err(format!("{} pods, {running} running", items.len()))
        }
    })
    .await
}

/// Until every pod of app `name` has `STAGE` set to `stage` (None: unset)
/// and none is left of another template.
async fn stage_is(c: &Context, name: &str, stage: Option<&str>) -> Result<()> {
    c.until(&format!("every pod of deployment {name} with STAGE={stage:?}"), || async {
        let pods = c.json(&["get", "pods", "-l", &format!("app={name}")]).await.map_err(|e| e.to_string())?;
        let stages: Vec<Option<String>> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["spec"]["containers"][0]["env"].as_array().into_iter().flatten().find(|e| e["name"] == "STAGE").map(|e| text(&e["value"])))
            .collect();
        if !stages.is_empty() && stages.iter().all(|s| s.as_deref() == stage) {
            Ok(())
        } else {
            Err(format!("STAGE of each pod: {stages:?}"))
        }
    })
    .await
}

/// The Deployment, its ReplicaSets and their pods as a tree, with the
/// generated names made stable; and those names, for other observations.
async fn ownership(c: &Context, deployment: &str) -> Result<(String, Names)> {
    let d = c.json(&["get", "deployment", deployment]).await?;
    let sets = c.json(&["get", "replicasets", "-l", &format!("app={deployment}")]).await?;
    let pods = c.json(&["get", "pods", "-l", &format!("app={deployment}")]).await?;
    let mut names = Names::new();
    let items = |list: &Value| list["items"].as_array().cloned().unwrap_or_default();
    let mut pod_names: Vec<String> = items(&pods).iter().map(|p| text(&p["metadata"]["name"])).collect();
    pod_names.sort();
    for set in items(&sets) {
        let hash = text(&set["metadata"]["labels"]["pod-template-hash"]);
        let ours: Vec<&String> = pod_names.iter().filter(|p| p.starts_with(&format!("{deployment}-{hash}-"))).collect();
        names.number(&format!("{deployment}-<hash>"), ours);
        names.insert(hash, "<hash>");
    }
    let s = &d["status"];
    let mut tree = format!(
        "Deployment {}: replicas {}, updated {}, ready {}, available {}\n",
        deployment, s["replicas"], s["updatedReplicas"], s["readyReplicas"], s["availableReplicas"]
    );
    for set in items(&sets) {
        let name = text(&set["metadata"]["name"]);
        tree += &format!("  ReplicaSet {name}: {}, replicas {}, ready {}\n", controller(&set), set["status"]["replicas"], set["status"]["readyReplicas"]);
        let mut ours: Vec<Value> = items(&pods).into_iter().filter(|p| p["metadata"]["ownerReferences"][0]["name"] == name.as_str()).collect();
        ours.sort_by_key(|p| text(&p["metadata"]["name"]));
        for pod in ours {
            let ready = pod["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
            let scheduled = if pod["spec"]["nodeName"].is_string() { "bound to a node" } else { "not scheduled" };
            tree +=
                &format!("    Pod {}: {}, {}, {scheduled}, ready {ready}\n", text(&pod["metadata"]["name"]), controller(&pod), text(&pod["status"]["phase"]));
        }
    }
    Ok((names.apply(&tree), names))
}

/// "controlled by <Kind> <name>" from an object's controller reference.
fn controller(object: &Value) -> String {
    let owners = object["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
    match owners.iter().find(|o| o["controller"] == true) {
        Some(o) => format!("controlled by {} {}", text(&o["kind"]), text(&o["name"])),
        None => "no controller".into(),
    }
}

/// A kubectl table with its padding collapsed, so a wider column elsewhere
/// does not change the snapshot.
pub fn collapse_spaces(table: &str) -> String {
    table.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}
