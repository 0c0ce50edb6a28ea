//! The statefulset controller against the real apiserver: pods come up one
//! at a time in ordinal order, each with its claim and its DNS identity;
//! a rolling update with a partition replaces only the pods above it; a
//! scale-down removes the highest ordinals and keeps their claims.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use kubelab_scenarios::apiserver::TestApi;
use kubelab_scenarios::fake_kubelet::Which;
use kubelab_scenarios::wait::until;

const SET: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  serviceName: web\n  replicas: 3\n  selector:\n    \
                   matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        \
                   image: nginx:1.27\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      accessModes: [ReadWriteOnce]\n      \
                   resources:\n        requests:\n          storage: 1Gi\n";

/// The set's pods that are not being deleted, by name.
async fn names(pods: &Api<Pod>) -> Vec<String> {
    let mut names: Vec<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

/// Reports `pod` Running and Ready, as its kubelet would.
async fn make_ready(pods: &Api<Pod>, pod: &str) {
    let patch = serde_json::json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

fn revision(pod: &Pod) -> String {
    pod.labels().get("controller-revision-hash").cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_pods_with_claims_partitioned_updates_and_scale_down() {
    let api = TestApi::start();
    let client = api.client().await;
    let _controllers = api.controller_manager_with(&["statefulset"], Default::default());
    api.kubectl_stdin(&["apply", "-f", "-"], SET).succeeded();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");

    // One at a time: the next pod only once the one before is Ready.
    for (i, pod) in ["web-0", "web-1", "web-2"].iter().enumerate() {
        let want: Vec<String> = ["web-0", "web-1", "web-2"][..=i].iter().map(|s| s.to_string()).collect();
        until(&format!("pods {want:?}"), || async {
            let now = names(&pods).await;
            assert!(now.len() <= want.len(), "{now:?} run before {} was ready", want[i]);
            (now == want).then_some(()).ok_or(format!("{now:?}"))
        })
        .await;
        make_ready(&pods, pod).await;
    }
    let web1 = pods.get("web-1").await.unwrap();
    let spec = web1.spec.as_ref().unwrap();
    assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-1"), Some("web")));
    assert_eq!(spec.volumes.as_ref().unwrap()[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-web-1");
    assert_eq!(web1.labels()["statefulset.kubernetes.io/pod-name"], "web-1");
    let mut claim_names: Vec<String> = claims.list(&ListParams::default().labels("app=web")).await.unwrap().items.iter().map(|c| c.name_any()).collect();
    claim_names.sort();
    assert_eq!(claim_names, ["data-web-0", "data-web-1", "data-web-2"]);
    let first = until("the status counts three ready", || async {
        let s = sets.get("web").await.unwrap().status.unwrap_or_default();
        (s.ready_replicas == Some(3) && s.current_revision == s.update_revision).then_some(s.clone()).ok_or(format!("{s:?}"))
    })
    .await;
    let old_revision = first.current_revision.unwrap();
    let table = api.kubectl(&["get", "sts", "web"]).succeeded();
    assert!(table.contains("3/3"), "{table}");

    // A new image with partition 1: web-2, then web-1, are replaced; web-0 stays.
    let _kubelet = api.pods_ready(Which::All);
    api.kubectl(&[
        "patch",
        "sts",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}},"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.28"}]}}}}"#,
    ])
    .succeeded();
    let new_revision = until("web-1 and web-2 at the new revision", || async {
        let s = sets.get("web").await.unwrap().status.unwrap_or_default();
        let update = s.update_revision.clone().unwrap_or_default();
        let now: Vec<(String, String)> =
            pods.list(&ListParams::default().labels("app=web")).await.unwrap().items.iter().map(|p| (p.name_any(), revision(p))).collect();
        let fresh = now.iter().filter(|(_, r)| *r == update).count();
        (update != old_revision && fresh == 2 && s.updated_replicas == Some(2) && s.ready_replicas == Some(3))
            .then_some(update.clone())
            .ok_or(format!("{now:?} {s:?}"))
    })
    .await;
    let web0 = pods.get("web-0").await.unwrap();
    assert_eq!(revision(&web0), old_revision, "below the partition nothing changes");
    let status = sets.get("web").await.unwrap().status.unwrap();
    assert_eq!((status.current_revision.as_deref(), status.update_revision.as_deref()), (Some(old_revision.as_str()), Some(new_revision.as_str())));

    // Scale to one: the highest ordinals go, their claims stay.
    api.kubectl(&["scale", "sts", "web", "--replicas=1"]).succeeded();
    until("only web-0", || async {
        let now = names(&pods).await;
        (now == ["web-0"]).then_some(()).ok_or(format!("{now:?}"))
    })
    .await;
    assert_eq!(claims.list(&ListParams::default().labels("app=web")).await.unwrap().items.len(), 3, "claims outlive scale-down (whenScaled: Retain)");
}
