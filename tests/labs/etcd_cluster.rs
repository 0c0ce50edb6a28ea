//! A lab on the real Docker engine: a three-member etcd cluster comes up
//! healthy, holds one cluster's data, and leaves nothing behind.

use kubelab::cancel::Cancel;
use kubelab::docker::Engine;
use kubelab::lab::{self, UpOptions};
use kubelab::plan;
use kubelab_scenarios::{assert_nothing_left, lab_name, progress, repo, topology, up, LabGuard};

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[tokio::test]
async fn three_member_etcd_cluster_comes_up_and_down() {
    let engine = Engine::connect().await.unwrap();
    let name = lab_name("etcd");
    let guard = LabGuard::new(&name);
    let source = topology("etcd-3");
    up(&engine, &source, &name).await.unwrap();

    // Every member answers its own health check.
    for i in 0..3 {
        let member = plan::container_name(&name, &format!("etcd-{i}"));
        let (code, out) = engine.exec(&member, &plan::etcdctl(&["endpoint", "health"])).await.unwrap();
        assert_eq!(code, 0, "{member}: {out}");
        assert!(out.contains("is healthy"), "{member}: {out}");
    }
    // All three are members of one cluster, reached over TLS by peers and clients.
    let etcd0 = plan::container_name(&name, "etcd-0");
    let (_, members) = engine.exec(&etcd0, &plan::etcdctl(&["member", "list"])).await.unwrap();
    assert_eq!(members.lines().filter(|l| l.contains("started")).count(), 3, "{members}");
    for i in 0..3 {
        assert!(members.contains(&format!("https://etcd-{i}:2380, https://etcd-{i}:2379")), "{members}");
    }
    assert!(!members.contains("http://"), "{members}");

    // A write through one member is read through another.
    let (code, out) = engine.exec(&etcd0, &plan::etcdctl(&["put", "/kubelab/probe", "written-via-etcd-0"])).await.unwrap();
    assert_eq!(code, 0, "{out}");
    let etcd2 = plan::container_name(&name, "etcd-2");
    let (code, out) = engine.exec(&etcd2, &plan::etcdctl(&["get", "--print-value-only", "/kubelab/probe"])).await.unwrap();
    assert_eq!((code, out.trim()), (0, "written-via-etcd-0"));

    // The status table, with the engine's addresses taken out.
    let rows = lab::status(&engine, &name).await.unwrap();
    let table = lab::status_table(&rows);
    let table = table.replace(&name, "LAB");
    let table: String = table
        .lines()
        .map(|l| l.split_whitespace().enumerate().map(|(i, w)| if i == 3 && w != "ADDRESS" { "ADDR" } else { w }).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(table, @r"
    COMPONENT CONTAINER STATE ADDRESS HEALTH
    etcd-0 LAB-etcd-0 running ADDR healthy
    etcd-1 LAB-etcd-1 running ADDR healthy
    etcd-2 LAB-etcd-2 running ADDR healthy
    apiserver-0 LAB-apiserver-0 running ADDR healthy
    controller-manager LAB-controller-manager running ADDR healthy
    scheduler LAB-scheduler running ADDR healthy
    ");

    // Bringing it up again changes nothing that is healthy.
    let before: Vec<_> = engine.containers(Some(&name)).await.unwrap().into_iter().map(|c| c.name).collect();
    up(&engine, &source, &name).await.unwrap();
    let (_, still) = engine.exec(&etcd2, &plan::etcdctl(&["get", "--print-value-only", "/kubelab/probe"])).await.unwrap();
    assert_eq!(still.trim(), "written-via-etcd-0");
    let after: Vec<_> = engine.containers(Some(&name)).await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(before.len(), after.len());

    // Another topology under the same name is refused, and nothing changes.
    let other = topology("1-node");
    let err = up(&engine, &other, &name).await.unwrap_err();
    assert!(err.to_string().contains("already up with a different topology"), "{err}");
    assert_eq!(engine.containers(Some(&name)).await.unwrap().len(), before.len());

    // Down leaves no container, network or volume with the lab's label.
    assert!(lab::down(&engine, &name, false).await.unwrap());
    assert_nothing_left(&engine, &name).await;
    drop(guard);
}

#[tokio::test]
async fn keep_data_survives_down_and_up() {
    let engine = Engine::connect().await.unwrap();
    let name = lab_name("keep");
    let _guard = LabGuard::new(&name);
    let source = topology("etcd-3");
    up(&engine, &source, &name).await.unwrap();
    let etcd1 = plan::container_name(&name, "etcd-1");
    let (code, _) = engine.exec(&etcd1, &plan::etcdctl(&["put", "state", "kept"])).await.unwrap();
    assert_eq!(code, 0);

    assert!(lab::down(&engine, &name, true).await.unwrap());
    assert!(engine.containers(Some(&name)).await.unwrap().is_empty());
    let volumes = engine.volume_labels(Some(&name)).await.unwrap();
    assert_eq!(volumes.len(), 3);
    // Marked as made behind TLS, so the next `up` takes them.
    for (volume, labels) in &volumes {
        assert_eq!(labels.get(plan::ETCD_PEER_SCHEME_LABEL).map(String::as_str), Some("https"), "{volume}");
    }

    up(&engine, &source, &name).await.unwrap();
    let (_, value) = engine.exec(&etcd1, &plan::etcdctl(&["get", "--print-value-only", "state"])).await.unwrap();
    assert_eq!(value.trim(), "kept");
}

/// A lab kept with `--keep-data` from before etcd ran behind TLS has
/// http peer URLs stored in its members: `up` says the lab must be made
/// again and changes nothing.
#[tokio::test]
async fn etcd_data_from_before_tls_is_refused() {
    let engine = Engine::connect().await.unwrap();
    let name = lab_name("oldetcd");
    let _guard = LabGuard::new(&name);
    // What `down --keep-data` left before: the volume, with the lab's label only.
    let volume = format!("{name}-etcd-0-data");
    engine.create_volume(&volume, [(kubelab::docker::LAB_LABEL.to_string(), name.clone())].into()).await.unwrap();

    let err = up(&engine, &topology("etcd-3"), &name).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("before etcd ran behind TLS") && text.contains(&volume), "{text}");
    assert!(text.contains(&format!("lab down {name}")), "says how to make it again: {text}");
    assert!(engine.containers(Some(&name)).await.unwrap().is_empty());
    assert!(engine.networks(Some(&name)).await.unwrap().is_empty());
    assert_eq!(engine.volumes(Some(&name)).await.unwrap(), [volume]);
    assert!(!kubelab::state::state_dir(&name).unwrap().exists(), "no PKI left behind");
}

/// A plan for `source` under `name`, with images built.
async fn plan_for(engine: &Engine, name: &str, source: &kubelab::topology::Source) -> plan::Plan {
    let images = kubelab::images::ensure(engine, &repo(), &progress()).await.unwrap();
    let pki = plan::load_pki(&kubelab::pki::dir(name).unwrap(), name, &source.topology).unwrap();
    let subnet = lab::lab_subnet(engine, &plan::network_name(name), &source.topology).await.unwrap();
    plan::plan(name, &source.topology, subnet, &images, &pki)
}

#[tokio::test]
async fn a_component_that_fails_its_gate_is_named_and_everything_is_removed() {
    let engine = Engine::connect().await.unwrap();
    let name = lab_name("fail");
    let _guard = LabGuard::new(&name);
    let source = topology("etcd-3");
    let mut plan = plan_for(&engine, &name, &source).await;
    // etcd-1 refuses an unknown flag and exits at once.
    let broken = plan.stages[0].members.iter_mut().find(|m| m.instance == "etcd-1").unwrap();
    broken.spec.cmd.push("--no-such-flag".into());

    let err = lab::apply(&engine, &source, &plan, &UpOptions::default(), &progress(), &Cancel::never()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("component etcd-1 did not come up"), "{text}");
    assert!(text.contains("its container stopped"), "{text}");
    assert!(text.contains("etcd [flags]"), "the log tail is shown: {text}");
    assert_nothing_left(&engine, &name).await;
}

#[tokio::test]
async fn interrupting_up_leaves_nothing_half_created() {
    let engine = Engine::connect().await.unwrap();
    let name = lab_name("intr");
    let _guard = LabGuard::new(&name);
    let source = topology("etcd-3");
    let mut plan = plan_for(&engine, &name, &source).await;
    // A gate that never passes holds `up` in its wait, where Ctrl-C lands.
    for member in &mut plan.stages[0].members {
        member.gate = strings(&["false"]);
    }
    let (handle, cancel) = Cancel::new();
    let (options, quiet) = (UpOptions::default(), progress());
    let apply = lab::apply(&engine, &source, &plan, &options, &quiet, &cancel);
    let all_running = kubelab_scenarios::wait::until("all three etcd containers running", || async {
        match engine.containers(Some(&name)).await.unwrap().iter().filter(|c| c.running).count() {
            3 => Ok(()),
            n => Err(format!("{n} of 3 running")),
        }
    });
    // Wait until all three containers run, then press Ctrl-C; an apply
    // that ends before that is a failure of its own, with its error.
    tokio::pin!(apply);
    let result = tokio::select! {
        ended = &mut apply => panic!("up ended before its three etcd containers ran: {:?}", ended.map(|_| ())),
        () = all_running => {
            handle.cancel();
            apply.await
        }
    };
    let err = result.unwrap_err();
    assert!(format!("{err:#}").contains("interrupted"), "{err:#}");
    assert_nothing_left(&engine, &name).await;
}
