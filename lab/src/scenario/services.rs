//! Services as the course teaches them, each kind once: ClusterIP by
//! address and by name from a pod, NodePort on every node and a
//! LoadBalancer address from the machine running the lab, ExternalName,
//! headless with its endpoints, and ClientIP session affinity.

use std::collections::BTreeSet;

use anyhow::{bail, Context as _, Result};
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::names::{sorted_lines, Names};
use super::workloads::{available, collapse_spaces};
use super::{text, Context, Scenario};

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "service-kinds",
        group: "services",
        topology: "3-node",
        about: "ClusterIP by address and name, NodePort on every node and LoadBalancer from this machine, ExternalName, headless endpoints, affinity",
        run: services,
    },
    Scenario {
        name: "service-env",
        group: "services",
        topology: "3-node",
        about: "a pod sees the Services of its namespace as environment variables, unless enableServiceLinks is false",
        run: service_env,
    },
];

/// Two pods started after Service `backend` exists, one without service links.
const ENV_PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: linked}
spec:
  containers: [{name: c, image: kubelab/labhost}]
---
apiVersion: v1
kind: Pod
metadata: {name: unlinked}
spec:
  enableServiceLinks: false
  containers: [{name: c, image: kubelab/labhost}]
"#;

fn service_env(c: &Context) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        c.step("Service backend (port 80 named http, and 53/UDP), then two pods");
        c.kubectl(&["create", "service", "clusterip", "backend", "--tcp=80:8080"]).await?;
        c.kubectl(&["patch", "service", "backend", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/ports/0/name","value":"http"},{"op":"add","path":"/spec/ports/-","value":{"name":"dns","port":53,"protocol":"UDP"}}]"#]).await?;
        let ip = text(&c.json(&["get", "service", "backend"]).await?["spec"]["clusterIP"]);
        c.apply(ENV_PODS).await?;
        c.kubectl(&["wait", "--for=condition=Ready", "pod/linked", "pod/unlinked", "--timeout=90s"]).await?;

        c.step("the environment of a pod with service links");
        let env = c.kubectl(&["exec", "linked", "--", "env"]).await?;
        let mut names = Names::new();
        names.insert(ip.as_str(), "<backend ClusterIP>");
        let ours: Vec<&str> = env.lines().filter(|l| l.starts_with("BACKEND_") || l.starts_with("KUBERNETES_")).collect();
        let mut kubernetes_ip = String::new();
        if let Some(line) = env.lines().find(|l| l.starts_with("KUBERNETES_SERVICE_HOST=")) {
            kubernetes_ip = line.trim_start_matches("KUBERNETES_SERVICE_HOST=").to_string();
        }
        names.insert(kubernetes_ip, "<kubernetes ClusterIP>");
        c.snapshot("linked", &sorted_lines(&names.apply(&ours.join("\n"))))?;

        c.step("enableServiceLinks: false leaves only the kubernetes Service's");
        let env = c.kubectl(&["exec", "unlinked", "--", "env"]).await?;
        if env.lines().any(|l| l.starts_with("BACKEND_")) || !env.lines().any(|l| l.starts_with("KUBERNETES_SERVICE_HOST=")) {
            bail!("the unlinked pod's environment:\n{env}");
        }
        Ok(())
    })
}

const EXTRA: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
"#;

fn services(c: &Context) -> BoxFuture<'_, Result<()>> {
    Box::pin(async move {
        c.step("deployment web: 3 labhost pods");
        c.kubectl(&["create", "deployment", "web", "--image=kubelab/labhost", "--replicas=3", "--port=8080"]).await?;
        available(c, "web", 3).await?;
        let pods = c.json(&["get", "pods", "-l", "app=web"]).await?;
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let backends: BTreeSet<String> = items.iter().map(|p| text(&p["metadata"]["name"])).collect();
        let client = backends.iter().next().context("a web pod")?.clone();

        c.step("kubectl expose: ClusterIP, NodePort, LoadBalancer; ExternalName, headless, sticky");
        c.kubectl(&["expose", "deployment", "web", "--port=80", "--target-port=8080"]).await?;
        c.kubectl(&["expose", "deployment", "web", "--name=web-np", "--type=NodePort", "--port=80", "--target-port=8080"]).await?;
        c.kubectl(&["expose", "deployment", "web", "--name=web-lb", "--type=LoadBalancer", "--port=80", "--target-port=8080"]).await?;
        let alias_target = format!("web.{}.svc.cluster.local", c.namespace);
        c.kubectl(&["create", "service", "externalname", "alias", &format!("--external-name={alias_target}")]).await?;
        c.apply(EXTRA).await?;

        c.step("every backend answers through the ClusterIP, by address and by name");
        let web = c.json(&["get", "service", "web"]).await?;
        let cluster_ip = text(&web["spec"]["clusterIP"]);
        for host in [cluster_ip.as_str(), "web", &format!("web.{}", c.namespace), &alias_target] {
            reaches_all(c, &client, host, 80, &backends).await?;
        }

        c.step("the NodePort answers on every node's address from this machine");
        let node_port = c.json(&["get", "service", "web-np"]).await?["spec"]["ports"][0]["nodePort"].as_u64().context("web-np has a nodePort")?;
        let nodes = c.json(&["get", "nodes"]).await?;
        for node in nodes["items"].as_array().into_iter().flatten() {
            let address = node["status"]["addresses"].as_array().into_iter().flatten().find(|a| a["type"] == "InternalIP").map(|a| text(&a["address"]));
            let address = address.with_context(|| format!("node {} has an InternalIP", node["metadata"]["name"]))?;
            answers_from_host(c, &format!("http://{address}:{node_port}/hostname"), &backends).await?;
        }

        c.step("the LoadBalancer address answers from this machine");
        let lb = c
            .until("an EXTERNAL-IP for web-lb", || async {
                let service = c.json(&["get", "service", "web-lb"]).await.map_err(|e| e.to_string())?;
                match text(&service["status"]["loadBalancer"]["ingress"][0]["ip"]) {
                    ip if !ip.is_empty() => Ok(ip),
                    _ => Err(format!("status {}", service["status"])),
                }
            })
            .await?;
        answers_from_host(c, &format!("http://{lb}/hostname"), &backends).await?;

        c.step("headless: kubectl get endpoints lists every pod, and so does its name");
        let pod_ips: BTreeSet<String> = items.iter().map(|p| text(&p["status"]["podIP"])).collect();
        c.until("endpoints web-headless listing every web pod", || async {
            let endpoints = c.json(&["get", "endpoints", "web-headless"]).await.map_err(|e| e.to_string())?;
            let listed: BTreeSet<String> = endpoints["subsets"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
                .map(|a| text(&a["ip"]))
                .collect();
            if listed == pod_ips {
                Ok(())
            } else {
                Err(format!("listed {listed:?}, pods {pod_ips:?}"))
            }
        })
        .await?;
        let headless = format!("web-headless.{}.svc.cluster.local", c.namespace);
        let answer = c.kubectl(&["exec", &client, "--", "/labhost", "dig", &headless, "A"]).await?;
        let answered: BTreeSet<String> =
            answer.lines().filter(|l| l.contains(" IN A ")).filter_map(|l| l.split_whitespace().last()).map(str::to_string).collect();
        if answered != pod_ips {
            bail!("{headless} answered {answered:?}, the pods are {pod_ips:?}:\n{answer}");
        }

        c.step("ClientIP affinity: ten requests from one pod, one backend");
        let answers = dial(c, &client, "sticky", 80, 10).await?;
        let distinct: BTreeSet<&String> = answers.iter().collect();
        if answers.len() != 10 || distinct.len() != 1 {
            bail!("sticky answered {answers:?}");
        }

        c.step("kubectl get services");
        let mut names = Names::new();
        let list = c.json(&["get", "services"]).await?;
        for service in list["items"].as_array().into_iter().flatten() {
            let name = text(&service["metadata"]["name"]);
            // A headless Service's "None" is kept (as sessionAffinity's "None" is).
            if let Some(ip) = service["spec"]["clusterIP"].as_str().filter(|ip| *ip != "None") {
                names.insert(ip, format!("<{name} ClusterIP>"));
            }
            for port in service["spec"]["ports"].as_array().into_iter().flatten() {
                if let Some(node_port) = port["nodePort"].as_u64() {
                    names.insert(node_port.to_string(), "<nodePort>");
                }
            }
        }
        names.insert(lb.as_str(), "<load balancer address>");
        let table = c.kubectl(&["get", "services", "-o", "custom-columns=NAME:.metadata.name,TYPE:.spec.type,CLUSTER-IP:.spec.clusterIP,EXTERNAL-IP:.status.loadBalancer.ingress[*].ip,EXTERNAL-NAME:.spec.externalName,PORTS:.spec.ports[*].port,NODE-PORTS:.spec.ports[*].nodePort,AFFINITY:.spec.sessionAffinity"]).await?;
        c.snapshot("get_services", &sorted_lines(&names.apply(&collapse_spaces(&table))))
    })
}

/// `tries` requests from pod `from` to `host:port`, through its netexec's
/// /dial (busybox wget in the pod asks it on loopback): the answers.
async fn dial(c: &Context, from: &str, host: &str, port: u16, tries: u32) -> Result<Vec<String>> {
    let url = format!("http://127.0.0.1:8080/dial?request=hostname&protocol=http&host={host}&port={port}&tries={tries}");
    let out = c.kubectl(&["exec", from, "--", "wget", "-qO-", &url]).await?;
    let answer: Value = serde_json::from_str(&out).with_context(|| format!("{url} in {from} answered no JSON: {out}"))?;
    if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
        bail!("dialling {host}:{port} from {from}: {errors:?}");
    }
    Ok(answer["responses"].as_array().into_iter().flatten().map(text).collect())
}

/// Until requests from `from` to `host:port` have reached every backend.
async fn reaches_all(c: &Context, from: &str, host: &str, port: u16, backends: &BTreeSet<String>) -> Result<()> {
    let seen = std::sync::Mutex::new(BTreeSet::new());
    c.until(&format!("{from} reaching every web pod through {host}:{port}"), || async {
        let answers = dial(c, from, host, port, 10).await.map_err(|e| e.to_string())?;
        let mut seen = seen.lock().expect("not poisoned");
        seen.extend(answers);
        if *seen == *backends {
            Ok(())
        } else {
            Err(format!("reached {seen:?} of {backends:?}"))
        }
    })
    .await
}

/// Until `url` answers, from this machine (curl), with one of `backends`.
async fn answers_from_host(c: &Context, url: &str, backends: &BTreeSet<String>) -> Result<()> {
    c.until(&format!("{url} answering from the machine running the lab"), || async {
        let out = tokio::process::Command::new("curl").args(["-s", "--max-time", "2", url]).output().await.map_err(|e| format!("running curl: {e}"))?;
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && backends.contains(&answer) {
            Ok(())
        } else {
            Err(format!("curl exit {:?}, answer {answer:?}", out.status.code()))
        }
    })
    .await
}
