//! Persistent volumes without kubelets: the apiserver's DefaultStorageClass
//! and in-use protection, the persistentvolume-binder, the local-path
//! provisioner and the scheduler's VolumeBinding, against a real apiserver
//! with Node objects the test registers. Pods' phases, and the helper pod
//! that removes a volume's directory, are written by the test as a
//! kubelet would.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use kubelab_scenarios::apiserver::TestApi;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    kubelab_scenarios::wait::until_within(what, WAIT, check).await
}

const CONTROLLERS: &[&str] = &["persistentvolume-binder", "local-path-provisioner", "pv-protection"];

const STANDARD: &str = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
"#;

/// A Ready node, as a kubelet registers one.
async fn node(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    let status =
        json!({"status": {"capacity": resources, "allocatable": resources, "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

fn pod(name: &str, claim: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}, "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }))
    .unwrap()
}

async fn bound_node(pods: &Api<Pod>, name: &str) -> String {
    wait_until(&format!("pod {name} bound to a node"), || async {
        let p = pods.get(name).await.map_err(|e| e.to_string())?;
        let conditions = p.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        p.spec.and_then(|s| s.node_name).ok_or_else(|| format!("not bound; conditions {:?}", conditions.iter().map(|c| c.message.clone()).collect::<Vec<_>>()))
    })
    .await
}

async fn events_of(client: &kube::Client, namespace: &str, name: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let mut said: Vec<(String, String)> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect();
    said.sort();
    said
}

fn phase_of_claim(c: &PersistentVolumeClaim) -> String {
    c.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default()
}

fn phase_of_volume(v: &PersistentVolume) -> String {
    v.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_gets_a_local_volume_on_its_first_pods_node_and_keeps_its_pods_there() {
    let api = TestApi::start();
    let client = api.client().await;
    for name in ["node-a", "node-b"] {
        node(&client, name).await;
    }
    let _controllers = api.controller_manager_with(CONTROLLERS, Default::default());
    let _scheduler = api.scheduler();
    api.kubectl_stdin(&["apply", "-f", "-"], STANDARD).succeeded();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // No class named: the default one, and the finalizer that protects it.
    let claim = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 100Mi\n";
    api.kubectl_stdin(&["apply", "-f", "-"], claim).succeeded();
    let created = claims.get("data").await.unwrap();
    assert_eq!(created.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("standard"));
    assert_eq!(created.finalizers(), ["kubernetes.io/pvc-protection"]);
    wait_until("the claim waits for its first consumer", || async {
        let said = events_of(&client, "default", "data").await;
        said.iter()
            .any(|(r, m)| r == "WaitForFirstConsumer" && m == "waiting for first consumer to be created before binding")
            .then_some(())
            .ok_or(format!("{said:?}"))
    })
    .await;
    assert_eq!(phase_of_claim(&claims.get("data").await.unwrap()), "Pending");

    // Its first pod picks the node; the volume is made there and bound.
    pods.create(&PostParams::default(), &pod("first", "data")).await.unwrap();
    let node = bound_node(&pods, "first").await;
    let claim = claims.get("data").await.unwrap();
    assert_eq!(phase_of_claim(&claim), "Bound", "the pod is bound only once its claim is");
    assert_eq!(claim.annotations().get("volume.kubernetes.io/selected-node"), Some(&node));
    assert_eq!(claim.annotations().get("volume.kubernetes.io/storage-provisioner").map(String::as_str), Some("rancher.io/local-path"));
    let volume_name = claim.spec.as_ref().unwrap().volume_name.clone().unwrap();
    assert_eq!(volume_name, format!("pvc-{}", claim.uid().unwrap()));
    let status = claim.status.clone().unwrap();
    assert_eq!(status.capacity.unwrap()["storage"].0, "100Mi");
    assert_eq!(status.access_modes.unwrap(), ["ReadWriteOnce"]);
    let volume = wait_until("the volume Bound", || async {
        let v = volumes.get(&volume_name).await.map_err(|e| e.to_string())?;
        (phase_of_volume(&v) == "Bound").then_some(v.clone()).ok_or(format!("{:?}", v.status))
    })
    .await;
    let spec = volume.spec.clone().unwrap();
    assert_eq!(spec.host_path.unwrap().path, format!("/var/local-path-provisioner/{volume_name}_default_data"));
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(spec.claim_ref.unwrap().uid, claim.uid());
    assert_eq!(volume.finalizers(), ["kubernetes.io/pv-protection"]);
    let said = events_of(&client, "default", "data").await;
    assert!(said.contains(&("ProvisioningSucceeded".into(), format!("Successfully provisioned volume {volume_name}"))), "{said:?}");

    // More pods of the claim follow the volume, though the other node is emptier.
    for name in ["second", "third"] {
        pods.create(&PostParams::default(), &pod(name, "data")).await.unwrap();
        assert_eq!(bound_node(&pods, name).await, node, "{name} went where its volume is not");
    }
    // A claim that does not exist stops a pod, in upstream's words.
    pods.create(&PostParams::default(), &pod("orphan", "nope")).await.unwrap();
    wait_until("the pod of a missing claim unschedulable", || async {
        let p = pods.get("orphan").await.unwrap();
        let message = p.status.and_then(|s| s.conditions).unwrap_or_default().into_iter().find(|c| c.type_ == "PodScheduled").and_then(|c| c.message);
        (message.as_deref() == Some("0/2 nodes are available: 2 persistentvolumeclaim \"nope\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."))
            .then_some(())
            .ok_or(format!("{message:?}"))
    })
    .await;

    // Deleted under running pods, the claim stays until they are gone.
    claims.delete("data", &DeleteParams::default()).await.unwrap();
    let deleting = claims.get("data").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    for name in ["first", "second", "third"] {
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({"status": {"phase": "Succeeded"}}))).await.unwrap();
    }
    wait_until("the claim gone once no running pod uses it", || async {
        claims.get_opt("data").await.unwrap().map_or(Ok(()), |c| Err(format!("finalizers {:?}", c.finalizers())))
    })
    .await;

    // Released with reclaim policy Delete: a helper pod on its node
    // removes the directory, then the volume goes.
    let helpers: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let helper_name = format!("helper-pod-delete-{volume_name}");
    let helper =
        wait_until("the helper pod that removes the directory", || async { helpers.get_opt(&helper_name).await.unwrap().ok_or("none yet".to_string()) }).await;
    let helper_spec = helper.spec.clone().unwrap();
    assert_eq!(helper_spec.node_name.as_ref(), Some(&node));
    assert_eq!(helper_spec.containers[0].command.clone().unwrap(), ["rm", "-rf", &format!("/data/{volume_name}_default_data")]);
    assert_eq!(phase_of_volume(&volumes.get(&volume_name).await.unwrap()), "Released");
    helpers.patch_status(&helper_name, &PatchParams::default(), &Patch::Merge(&json!({"status": {"phase": "Succeeded"}}))).await.unwrap();
    wait_until("the released volume deleted", || async {
        volumes.get_opt(&volume_name).await.unwrap().map_or(Ok(()), |v| Err(format!("{:?}, finalizers {:?}", v.status, v.finalizers())))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bind_volumes_made_by_hand() {
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(CONTROLLERS, Default::default());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let manifest = r#"
apiVersion: v1
kind: PersistentVolume
metadata:
  name: small
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /srv/small}
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: large
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /srv/large}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: manual
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 500Mi}}
"#;
    api.kubectl_stdin(&["apply", "-f", "-"], manifest).succeeded();
    // The smallest volume that fits, both sides Bound.
    let claim = wait_until("the claim bound", || async {
        let c = claims.get("manual").await.unwrap();
        (phase_of_claim(&c) == "Bound").then_some(c.clone()).ok_or(format!("{:?}", c.status))
    })
    .await;
    assert_eq!(claim.spec.as_ref().unwrap().volume_name.as_deref(), Some("small"));
    assert_eq!(claim.status.unwrap().capacity.unwrap()["storage"].0, "1Gi");
    let small = wait_until("the volume Bound", || async {
        let v = volumes.get("small").await.unwrap();
        (phase_of_volume(&v) == "Bound").then_some(v.clone()).ok_or(format!("{:?}", v.status))
    })
    .await;
    assert_eq!(small.annotations().get("pv.kubernetes.io/bound-by-controller").map(String::as_str), Some("yes"));
    wait_until("the other volume Available", || async {
        let v = volumes.get("large").await.unwrap();
        (phase_of_volume(&v) == "Available").then_some(()).ok_or(format!("{:?}", v.status))
    })
    .await;
    let table = api.kubectl(&["get", "pv", "small", "--no-headers"]).succeeded();
    let cells: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(cells[..6], ["small", "1Gi", "RWO", "Retain", "Bound", "default/manual"], "{table}");

    // Nothing fits and no class: said so.
    let big = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: big\nspec:\n  storageClassName: \"\"\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 50Gi}}\n";
    api.kubectl_stdin(&["apply", "-f", "-"], big).succeeded();
    wait_until("the unfit claim's event", || async {
        let said = events_of(&client, "default", "big").await;
        said.iter()
            .any(|(r, m)| r == "FailedBinding" && m == "no persistent volumes available for this claim and no storage class is set")
            .then_some(())
            .ok_or(format!("{said:?}"))
    })
    .await;

    // The claim goes: a Retain volume is Released and kept.
    claims.delete("manual", &DeleteParams::default()).await.unwrap();
    wait_until("the volume Released", || async {
        let v = volumes.get("small").await.unwrap();
        (phase_of_volume(&v) == "Released").then_some(()).ok_or(format!("{:?}", v.status))
    })
    .await;
    // A bound volume cannot go; a released one can.
    volumes.delete("small", &DeleteParams::default()).await.unwrap();
    wait_until("the released volume deleted", || async { volumes.get_opt("small").await.unwrap().map_or(Ok(()), |v| Err(format!("{:?}", v.finalizers()))) })
        .await;
}
