//! The ha topology on the real Docker engine: three etcd members, two
//! apiservers behind haproxy, three nodes. kubectl goes through the load
//! balancer and keeps working when one apiserver is gone, and the
//! `kubernetes` Service's endpoints drop the gone one. An etcd member
//! killed and made again rejoins its peers over TLS.

use std::time::Duration;

use kubelab::docker::Engine;
use kubelab::{lab, plan};
use kubelab_scenarios::wait::{until, until_within};
use kubelab_scenarios::{kubectl, lab_name, topology, up, LabGuard};

#[tokio::test]
async fn two_apiservers_behind_a_load_balancer() {
    let engine = Engine::connect().await.unwrap();
    let name = lab_name("ha");
    let _guard = LabGuard::new(&name);
    up(&engine, &topology("ha"), &name).await.unwrap();

    let rows = lab::status(&engine, &name).await.unwrap();
    let healthy: Vec<&str> = rows.iter().filter(|r| r.health == "healthy").map(|r| r.component.as_str()).collect();
    for c in [
        "etcd-0",
        "etcd-1",
        "etcd-2",
        "apiserver-0",
        "apiserver-1",
        "loadbalancer",
        "controller-manager-0",
        "controller-manager-1",
        "scheduler-0",
        "scheduler-1",
        "infra-1",
        "worker-1",
        "worker-2",
    ] {
        assert!(healthy.contains(&c), "{c} is not healthy: {rows:?}");
    }

    // The kubeconfig points at the load balancer.
    let config = lab::kubeconfig(&engine, &name).await.unwrap();
    let balancer = engine.containers(Some(&name)).await.unwrap().into_iter().find(|c| c.name == plan::container_name(&name, plan::LOADBALANCER)).unwrap();
    assert!(config.to_yaml().contains(&format!("https://{}:6443", balancer.address.unwrap())));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config");
    std::fs::write(&file, config.to_yaml()).unwrap();
    let (code, out) = kubectl(&file, &["create", "configmap", "before", "--from-literal=a=1"]);
    assert_eq!(code, 0, "{out}");

    an_etcd_member_killed_rejoins_over_tls(&engine, &name, &file).await;
    let endpoint_ips = || kubectl(&file, &["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]).1;
    // Both apiservers list themselves; two that start together converge
    // within a reconcile round (10 s) at worst.
    until_within("both apiservers in the kubernetes endpoints", Duration::from_secs(30), || async {
        let ips = endpoint_ips();
        if ips.split_whitespace().count() == 2 {
            Ok(())
        } else {
            Err(format!("endpoints: {ips:?}"))
        }
    })
    .await;

    // Without apiserver-0, the other one serves, with the same data.
    engine.remove_container(&plan::container_name(&name, "apiserver-0")).await.unwrap();
    let out = until_within("the API back through apiserver-1", Duration::from_secs(20), || async {
        match kubectl(&file, &["get", "configmap", "before", "-o", "name"]) {
            (0, out) => Ok(out),
            (_, out) => Err(out),
        }
    })
    .await;
    assert_eq!(out.trim(), "configmap/before");
    let (code, out) = kubectl(&file, &["create", "configmap", "after", "--from-literal=a=2"]);
    assert_eq!(code, 0, "{out}");

    // apiserver-0 was killed, not stopped: it drops out of the kubernetes
    // endpoints when its lease expires (15 s, seen on apiserver-1's next
    // 10 s round).
    until_within("the gone apiserver out of the kubernetes endpoints", Duration::from_secs(60), || async {
        let ips = endpoint_ips();
        if ips.split_whitespace().count() == 1 {
            Ok(())
        } else {
            Err(format!("endpoints: {ips:?}"))
        }
    })
    .await;

    // Two controller-managers and two schedulers: one of each holds its
    // Lease; killing it hands over within the lease duration (15 s) and
    // work goes on.
    for (lease, role) in [("kube-controller-manager", "controller-manager"), ("kube-scheduler", "scheduler")] {
        let holder = || kubectl(&file, &["get", "lease", lease, "-n", "kube-system", "-o", "jsonpath={.spec.holderIdentity}"]).1;
        let leader = until_within(&format!("a {role} holding {lease}"), Duration::from_secs(60), || async {
            let h = holder();
            [0, 1].map(|i| format!("{role}-{i}")).into_iter().find(|i| h.starts_with(&format!("{i}_"))).ok_or(format!("holder: {h:?}"))
        })
        .await;
        engine.remove_container(&plan::container_name(&name, &leader)).await.unwrap();
        let other = if leader.ends_with("-0") { format!("{role}-1") } else { format!("{role}-0") };
        until_within(&format!("{other} taking {lease} over from {leader}"), Duration::from_secs(40), || async {
            let h = holder();
            if h.starts_with(&format!("{other}_")) {
                Ok(())
            } else {
                Err(format!("holder: {h:?}"))
            }
        })
        .await;
    }
    // The new leading controller-manager works: a Deployment gets its ReplicaSet.
    let (code, out) = kubectl(&file, &["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    assert_eq!(code, 0, "{out}");
    until_within("two pods from the controller-manager that took over", Duration::from_secs(30), || async {
        match kubectl(&file, &["get", "pods", "-l", "app=web", "-o", "name"]).1.lines().count() {
            2 => Ok(()),
            _ => Err(kubectl(&file, &["get", "all"]).1),
        }
    })
    .await;
}

/// etcd-1 killed: the API goes on with two members of three; `lab up`
/// makes it again on its kept volume, and it rejoins over peer TLS (its
/// gate passes only then), catches up on what was written meanwhile and
/// is reached by the others at its https client URL.
async fn an_etcd_member_killed_rejoins_over_tls(engine: &Engine, name: &str, kubeconfig: &std::path::Path) {
    let etcd1 = plan::container_name(name, "etcd-1");
    engine.remove_container(&etcd1).await.unwrap();
    until("a write with etcd-1 gone", || async {
        match kubectl(kubeconfig, &["create", "configmap", "during-etcd-loss", "--from-literal=a=1"]) {
            (0, _) => Ok(()),
            // An earlier try that timed out may have written it.
            (_, out) if out.contains("AlreadyExists") => Ok(()),
            (_, out) => Err(out),
        }
    })
    .await;

    up(engine, &topology("ha"), name).await.unwrap();
    let etcd0 = plan::container_name(name, "etcd-0");
    let (code, members) = engine.exec(&etcd0, &plan::etcdctl(&["member", "list"])).await.unwrap();
    assert_eq!(code, 0, "{members}");
    assert!(members.contains("started, etcd-1, https://etcd-1:2380, https://etcd-1:2379"), "{members}");
    let (code, health) = engine.exec(&etcd0, &plan::etcdctl(&["endpoint", "health", "--cluster"])).await.unwrap();
    assert_eq!(code, 0, "{health}");
    assert_eq!(health.lines().filter(|l| l.contains("https://") && l.contains("is healthy")).count(), 3, "{health}");
    // etcd-1's own copy (a serializable read answers from the member
    // itself) has what was written while it was gone.
    until("etcd-1 catching up", || async {
        let read = plan::etcdctl(&["get", "--consistency=s", "--keys-only", "/registry/configmaps/default/during-etcd-loss"]);
        let (code, out) = engine.exec(&etcd1, &read).await.unwrap();
        if code == 0 && out.contains("during-etcd-loss") {
            Ok(())
        } else {
            Err(out)
        }
    })
    .await;
}
