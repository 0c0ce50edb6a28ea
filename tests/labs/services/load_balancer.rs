//! LoadBalancer addresses on the services lab: the service-lb controller
//! gives each LoadBalancer Service an address of the lab's pool, one node's
//! kubelet announces it on the lab network, and the machine running the
//! lab (on the lab's bridge) reaches the Service there; a freed address
//! goes to the next Service; when the announcing node stops, another takes
//! the address over. The node is stopped last: nothing after it needs it.

use std::time::Duration;

use kubelab_scenarios::cluster::{s, Cluster};
use kubelab_scenarios::wait::{until, until_within};

use super::{get_from_host, names, Pod};

/// The Service's load balancer address, once the controller wrote it.
async fn ingress_ip(lab: &Cluster, service: &str) -> String {
    until(&format!("an EXTERNAL-IP for {service}"), || async {
        let status = lab.json(&["get", "service", service])["status"].clone();
        match s(&status["loadBalancer"]["ingress"][0]["ip"]) {
            ip if !ip.is_empty() => Ok(ip),
            _ => Err(format!("status {status}")),
        }
    })
    .await
}

/// Waits until the address answers from this machine with one of `pods`.
async fn answers_from_host(address: &str, pods: &[Pod], within: Duration) {
    let backends = names(pods);
    until_within(&format!("{address} answering from the machine running the lab"), within, || async {
        match get_from_host(&format!("http://{address}/hostname"), 2) {
            Ok(answer) if backends.contains(&answer) => Ok(()),
            Ok(answer) => Err(format!("answered {answer:?}, not one of {backends:?}")),
            Err(e) => Err(e),
        }
    })
    .await;
}

/// The node holding the announcement Lease of `default/<service>`.
fn announcer(lab: &Cluster, service: &str) -> String {
    let (code, out) = lab.k(&["-n", "kube-system", "get", "lease", &format!("svc-lb.default.{service}"), "-o", "jsonpath={.spec.holderIdentity}"]);
    if code == 0 {
        out.trim().to_string()
    } else {
        String::new()
    }
}

/// A LoadBalancer Service gets an address that answers from this machine;
/// the address.
pub async fn load_balancer_answers(lab: &Cluster, pods: &[Pod]) -> String {
    lab.ok(&["expose", "deployment", "web", "--name=web-lb", "--port=80", "--target-port=8080", "--type=LoadBalancer"]);
    let first = ingress_ip(lab, "web-lb").await;
    answers_from_host(&first, pods, Duration::from_secs(60)).await;
    first
}

pub async fn load_balancer_addresses(lab: &Cluster, pods: &[Pod]) {
    let first = load_balancer_answers(lab, pods).await;
    let shown = lab.ok(&["get", "service", "web-lb"]);
    assert!(shown.contains(&first), "kubectl get svc shows the EXTERNAL-IP {first}: {shown}");

    // A second Service, another address; a deleted one's address goes to the next.
    lab.ok(&["expose", "deployment", "web", "--name=web-lb2", "--port=80", "--target-port=8080", "--type=LoadBalancer"]);
    let second = ingress_ip(lab, "web-lb2").await;
    assert_ne!(first, second, "two Services, two addresses");
    answers_from_host(&second, pods, Duration::from_secs(60)).await;
    lab.ok(&["delete", "service", "web-lb"]);
    lab.ok(&["expose", "deployment", "web", "--name=web-lb3", "--port=80", "--target-port=8080", "--type=LoadBalancer"]);
    let third = ingress_ip(lab, "web-lb3").await;
    assert_eq!(third, first, "the freed address (the lowest) goes to the next Service");
    answers_from_host(&third, pods, Duration::from_secs(60)).await;

    // The announcing node stops: another node takes the Lease (15 s) and
    // the address answers again, through a backend on a running node.
    let holder = until("a node announcing web-lb2", || async {
        match announcer(lab, "web-lb2") {
            holder if !holder.is_empty() => Ok(holder),
            _ => Err("no holder of kube-system/svc-lb.default.web-lb2".to_string()),
        }
    })
    .await;
    let container = kubelab::plan::container_name(&lab.name, &holder);
    let out = std::process::Command::new("docker").args(["stop", "-t", "1", &container]).output().expect("docker runs");
    assert!(out.status.success(), "docker stop {container}: {}", String::from_utf8_lossy(&out.stderr));
    let next = until_within("another node announcing web-lb2", Duration::from_secs(60), || async {
        match announcer(lab, "web-lb2") {
            now if !now.is_empty() && now != holder => Ok(now),
            now => Err(format!("holder {now:?}")),
        }
    })
    .await;
    let alive: Vec<Pod> = pods.iter().filter(|p| p.node != holder).cloned().collect();
    answers_from_host(&second, &alive, Duration::from_secs(60)).await;
    assert_ne!(next, holder);
}
