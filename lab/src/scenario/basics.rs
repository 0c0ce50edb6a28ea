//! The first things a learner types: namespaces and what lives in them,
//! and the everyday read commands.

use anyhow::{bail, Result};
use futures_util::future::BoxFuture;

use super::names::sorted_lines;
use super::workloads::available;
use super::{Context, Scenario};

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "namespaces",
        group: "basics",
        topology: "3-node",
        about: "objects live in a namespace; deleting it removes them and leaves Nodes alone; api-resources by scope",
        run: namespaces,
    },
    Scenario { name: "everyday", group: "basics", topology: "3-node", about: "kubectl get componentstatus, get all -A, describe, get events", run: everyday },
];

fn namespaces(c: &Context) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        let dev = format!("{}-dev", c.namespace);
        let nodes_before = c.kubectl(&["get", "nodes", "-o", "name"]).await?;

        c.step("objects in namespace dev: a ConfigMap and a Deployment");
        c.kubectl(&["create", "namespace", &dev]).await?;
        c.kubectl(&["-n", &dev, "create", "configmap", "settings", "--from-literal=mode=dev"]).await?;
        c.kubectl(&["-n", &dev, "create", "deployment", "web", "--image=kubelab/labhost", "--replicas=2"]).await?;
        c.until("deployment web in dev with 2 running pods", || async {
            let pods = c.json(&["-n", &dev, "get", "pods", "-l", "app=web"]).await.map_err(|e| e.to_string())?;
            let running = pods["items"].as_array().into_iter().flatten().filter(|p| p["status"]["phase"] == "Running").count();
            if running == 2 {
                Ok(())
            } else {
                Err(format!("{running} running"))
            }
        })
        .await?;
        let elsewhere = c.kubectl(&["get", "configmap", "settings", "--ignore-not-found"]).await?;
        if !elsewhere.trim().is_empty() {
            bail!("configmap settings of namespace dev is seen from {}: {elsewhere}", c.namespace);
        }

        c.step("kubectl delete namespace dev");
        c.kubectl(&["delete", "namespace", &dev, "--wait=true", "--timeout=90s"]).await?;
        c.until("namespace dev and everything in it gone", || async {
            let left = c.kubectl(&["get", "deployments,replicasets,pods,configmaps", "-n", &dev, "-o", "name"]).await.map_err(|e| e.to_string())?;
            let ns = c.kubectl(&["get", "namespace", &dev, "--ignore-not-found", "-o", "name"]).await.map_err(|e| e.to_string())?;
            if left.trim().is_empty() && ns.trim().is_empty() {
                Ok(())
            } else {
                Err(format!("left: {left}{ns}"))
            }
        })
        .await?;
        let nodes_after = c.kubectl(&["get", "nodes", "-o", "name"]).await?;
        if nodes_after != nodes_before {
            bail!("deleting a namespace changed the Nodes: before {nodes_before}, after {nodes_after}");
        }

        c.step("kubectl api-resources --namespaced=true and false");
        let namespaced = c.kubectl(&["api-resources", "--namespaced=true", "-o", "name"]).await?;
        let cluster = c.kubectl(&["api-resources", "--namespaced=false", "-o", "name"]).await?;
        for (scope, list, must) in
            [("namespaced", &namespaced, ["pods", "deployments.apps", "configmaps"]), ("cluster", &cluster, ["nodes", "namespaces", "componentstatuses"])]
        {
            if let Some(missing) = must.iter().find(|r| !list.lines().any(|l| l == **r)) {
                bail!("kubectl api-resources lists no {scope} resource {missing}: {list}");
            }
        }
        c.snapshot("api_resources", &format!("# namespaced\n{}\n# cluster\n{}", sorted_lines(&namespaced), sorted_lines(&cluster)))
    })
}

fn everyday(c: &Context) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        c.step("kubectl get componentstatus");
        let statuses = c.kubectl(&["get", "componentstatus", "-o", "custom-columns=NAME:.metadata.name,HEALTHY:.conditions[0].status", "--no-headers"]).await?;
        c.snapshot("componentstatus", &sorted_lines(&super::workloads::collapse_spaces(&statuses)))?;

        c.step("a Deployment to look at");
        c.kubectl(&["create", "deployment", "web", "--image=kubelab/labhost", "--replicas=1"]).await?;
        available(c, "web", 1).await?;

        c.step("kubectl get all -A");
        let all = c.kubectl(&["get", "all", "-A", "-o", "name"]).await?;
        for kind in ["deployment.apps/web", "deployment.apps/coredns", "service/kubernetes", "service/kube-dns"] {
            if !all.lines().any(|l| l == kind) {
                bail!("kubectl get all -A lists no {kind}: {all}");
            }
        }

        c.step("kubectl describe deployment, pod and node");
        let deployment = c.kubectl(&["describe", "deployment", "web"]).await?;
        let pod = c.kubectl(&["describe", "pod", "-l", "app=web"]).await?;
        let node_name = c.kubectl(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].spec.nodeName}"]).await?;
        let node = c.kubectl(&["describe", "node", node_name.trim()]).await?;
        for (what, text, must) in [
            ("deployment", &deployment, ["Replicas:", "StrategyType:", "NewReplicaSet:", "ScalingReplicaSet"]),
            ("pod", &pod, ["Status:", "Containers:", "Conditions:", "Events:"]),
            ("node", &node, ["Conditions:", "Capacity:", "PodCIDR:", "Non-terminated Pods:"]),
        ] {
            if let Some(missing) = must.iter().find(|m| !text.contains(**m)) {
                bail!("kubectl describe {what} shows no {missing}:\n{text}");
            }
        }

        c.step("kubectl get events: the pod's story");
        let reasons = c
            .until("the pod's Scheduled, Pulled, Created and Started events", || async {
                let out = c
                    .kubectl(&["get", "events", "--field-selector", "involvedObject.kind=Pod", "-o", "custom-columns=REASON:.reason", "--no-headers"])
                    .await
                    .map_err(|e| e.to_string())?;
                let mut reasons: Vec<&str> = out.lines().collect();
                reasons.sort();
                reasons.dedup();
                let text = reasons.join("\n");
                if ["Scheduled", "Pulled", "Created", "Started"].iter().all(|r| reasons.contains(r)) {
                    Ok(text)
                } else {
                    Err(format!("reasons so far: {text:?}"))
                }
            })
            .await?;
        c.snapshot("pod_event_reasons", &reasons)
    })
}
