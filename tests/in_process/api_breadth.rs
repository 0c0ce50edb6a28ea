//! The everyday kinds beyond Pods and Deployments (issue 13): one object of
//! each, applied, listed as kubectl's tables, read as YAML and as kube-rs's
//! typed structs, watched, changed, scaled, refused when wrong and deleted,
//! all through the real kubectl against our apiserver.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{LimitRange, PersistentVolume, PersistentVolumeClaim, PodTemplate, ReplicationController, ResourceQuota};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kubelab_scenarios::apiserver::{Output, TestApi};
use kubelab_scenarios::kubectl::{stable, table};

fn ok(out: Output) -> String {
    table(&out.succeeded())
}

fn failed(out: Output) -> String {
    table(&out.failed())
}

/// One object of every kind this test covers, in the order kubectl applies them.
const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: breadth
---
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
  namespace: breadth
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: busybox:1.36
        command: ["sh", "-c", "echo 3.14159"]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: hello
  namespace: breadth
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: hello
            image: busybox:1.36
            command: ["date"]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: breadth
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: db
        image: busybox:1.36
        command: ["sleep", "infinity"]
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Gi
---
apiVersion: apps/v1
kind: ControllerRevision
metadata:
  name: db-rev-1
  namespace: breadth
revision: 1
data:
  spec:
    template:
      metadata:
        labels:
          app: db
---
apiVersion: v1
kind: ReplicationController
metadata:
  name: legacy
  namespace: breadth
spec:
  replicas: 1
  template:
    metadata:
      labels:
        app: legacy
    spec:
      containers:
      - name: web
        image: nginx:1.27
---
apiVersion: v1
kind: PodTemplate
metadata:
  name: shape
  namespace: breadth
template:
  metadata:
    labels:
      app: shape
  spec:
    containers:
    - name: c
      image: busybox:1.36
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: disk-1
spec:
  capacity:
    storage: 2Gi
  accessModes: ["ReadWriteOnce", "ReadOnlyMany"]
  storageClassName: manual
  hostPath:
    path: /tmp/disk-1
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: claim
  namespace: breadth
spec:
  accessModes: ["ReadWriteOnce"]
  storageClassName: manual
  resources:
    requests:
      storage: 1Gi
---
apiVersion: v1
kind: ResourceQuota
metadata:
  name: quota
  namespace: breadth
spec:
  hard:
    pods: "10"
    requests.cpu: "2"
    limits.memory: 4Gi
---
apiVersion: v1
kind: LimitRange
metadata:
  name: limits
  namespace: breadth
spec:
  limits:
  - type: Container
    default:
      cpu: 500m
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: breadth
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  maxReplicas: 5
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: db
  namespace: breadth
spec:
  minAvailable: 1
  selector:
    matchLabels:
      app: db
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: lab
spec:
  controller: example.com/ingress
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: breadth
spec:
  ingressClassName: lab
  rules:
  - host: web.example
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db-only-web
  namespace: breadth
spec:
  podSelector:
    matchLabels:
      app: db
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: web
    ports:
    - port: 5432
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: reader
  namespace: breadth
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: read-pods
  namespace: breadth
roleRef:
  kind: Role
  name: reader
  apiGroup: rbac.authorization.k8s.io
subjects:
- kind: User
  name: jane
- kind: ServiceAccount
  name: default
  namespace: breadth
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: node-reader
rules:
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: read-nodes
roleRef:
  kind: ClusterRole
  name: node-reader
  apiGroup: rbac.authorization.k8s.io
subjects:
- kind: Group
  name: ops
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: manual
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
"#;

/// (resource as kubectl names it, object name) of every object above.
const OBJECTS: &[(&str, &str)] = &[
    ("jobs", "pi"),
    ("cronjobs", "hello"),
    ("statefulsets", "db"),
    ("controllerrevisions", "db-rev-1"),
    ("replicationcontrollers", "legacy"),
    ("podtemplates", "shape"),
    ("persistentvolumes", "disk-1"),
    ("persistentvolumeclaims", "claim"),
    ("resourcequotas", "quota"),
    ("limitranges", "limits"),
    ("horizontalpodautoscalers", "web"),
    ("poddisruptionbudgets", "db"),
    ("ingressclasses", "lab"),
    ("ingresses", "web"),
    ("networkpolicies", "db-only-web"),
    ("roles", "reader"),
    ("rolebindings", "read-pods"),
    ("clusterroles", "node-reader"),
    ("clusterrolebindings", "read-nodes"),
    ("storageclasses", "manual"),
];

#[test]
fn every_kind_round_trips_through_kubectl() {
    let api = TestApi::start();
    let file = api.dir.path().join("breadth.yaml");
    std::fs::write(&file, MANIFEST).unwrap();
    let file = file.to_str().unwrap();
    insta::assert_snapshot!("breadth_apply", ok(api.kubectl(&["apply", "-f", file])));

    // Every kind's table, as `kubectl get` and `-o wide` print them.
    let mut tables = String::new();
    let mut yaml = String::new();
    for (resource, name) in OBJECTS {
        for wide in [false, true] {
            let mut args = vec!["get", resource, name, "-n", "breadth"];
            if wide {
                args.extend(["-o", "wide"]);
            }
            tables += &format!("$ kubectl {}\n{}\n\n", args.join(" "), ok(api.kubectl(&args)));
        }
        let args = ["get", resource, name, "-n", "breadth", "-o", "yaml"];
        yaml += &format!("$ kubectl {}\n{}\n\n", args.join(" "), stable(&api.kubectl(&args).succeeded()));
    }
    insta::assert_snapshot!("breadth_tables", tables);
    insta::assert_snapshot!("breadth_yaml", yaml);

    // Scale subresources, and labels as an update of every kind.
    insta::assert_snapshot!("breadth_scale", ok(api.kubectl(&["scale", "-n", "breadth", "statefulset/db", "replicationcontroller/legacy", "--replicas=3"])));
    for (resource, name) in OBJECTS {
        let out = api.kubectl(&["label", "-n", "breadth", resource, name, "touched=yes"]).succeeded();
        assert!(out.contains("labeled"), "labelling {resource}/{name}: {out}");
    }
    let labelled = ok(api.kubectl(&["get", "-A", "-l", "touched=yes", "-o", "name", &OBJECTS.iter().map(|(r, _)| *r).collect::<Vec<_>>().join(",")]));
    assert_eq!(labelled.lines().count(), OBJECTS.len(), "{labelled}");

    insta::assert_snapshot!("breadth_delete", ok(api.kubectl(&["delete", "-f", file, "--wait=false"])));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_reads_back_typed_and_watches() {
    let api = TestApi::start();
    let file = api.dir.path().join("breadth.yaml");
    std::fs::write(&file, MANIFEST).unwrap();
    ok(api.kubectl(&["apply", "-f", file.to_str().unwrap()]));
    let client = api.client().await;
    let ns = "breadth";
    macro_rules! read {
        ($ty:ty, namespaced, $name:expr) => {
            Api::<$ty>::namespaced(client.clone(), ns).get($name).await.unwrap_or_else(|e| panic!("reading {} {}: {e}", stringify!($ty), $name))
        };
        ($ty:ty, cluster, $name:expr) => {
            Api::<$ty>::all(client.clone()).get($name).await.unwrap_or_else(|e| panic!("reading {} {}: {e}", stringify!($ty), $name))
        };
    }
    let job = read!(Job, namespaced, "pi");
    let spec = job.spec.unwrap();
    assert_eq!((spec.completions, spec.parallelism, spec.backoff_limit), (Some(3), Some(2), Some(6)));
    let uid = job.metadata.uid.unwrap();
    assert_eq!(spec.selector.unwrap().match_labels.unwrap()["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(read!(CronJob, namespaced, "hello").spec.unwrap().concurrency_policy.as_deref(), Some("Allow"));
    let sts = read!(StatefulSet, namespaced, "db").spec.unwrap();
    assert_eq!(sts.pod_management_policy.as_deref(), Some("OrderedReady"));
    assert_eq!(sts.volume_claim_templates.unwrap()[0].spec.as_ref().unwrap().volume_mode.as_deref(), Some("Filesystem"));
    assert_eq!(read!(ControllerRevision, namespaced, "db-rev-1").revision, 1);
    assert_eq!(read!(ReplicationController, namespaced, "legacy").spec.unwrap().selector.unwrap()["app"], "legacy");
    read!(PodTemplate, namespaced, "shape");
    assert_eq!(read!(PersistentVolume, cluster, "disk-1").status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(read!(PersistentVolumeClaim, namespaced, "claim").status.unwrap().phase.as_deref(), Some("Pending"));
    read!(ResourceQuota, namespaced, "quota");
    read!(LimitRange, namespaced, "limits");
    assert_eq!(read!(HorizontalPodAutoscaler, namespaced, "web").spec.unwrap().min_replicas, Some(1));
    read!(PodDisruptionBudget, namespaced, "db");
    read!(IngressClass, cluster, "lab");
    read!(Ingress, namespaced, "web");
    assert_eq!(read!(NetworkPolicy, namespaced, "db-only-web").spec.unwrap().policy_types.unwrap(), ["Ingress"]);
    read!(Role, namespaced, "reader");
    assert_eq!(read!(RoleBinding, namespaced, "read-pods").subjects.unwrap()[0].api_group.as_deref(), Some("rbac.authorization.k8s.io"));
    read!(ClusterRole, cluster, "node-reader");
    read!(ClusterRoleBinding, cluster, "read-nodes");
    assert_eq!(read!(StorageClass, cluster, "manual").reclaim_policy.as_deref(), Some("Delete"));

    // A watch of each kind starts with what exists.
    let paths = [
        "/apis/batch/v1/namespaces/breadth/jobs",
        "/apis/batch/v1/namespaces/breadth/cronjobs",
        "/apis/apps/v1/namespaces/breadth/statefulsets",
        "/api/v1/namespaces/breadth/replicationcontrollers",
        "/api/v1/persistentvolumes",
        "/apis/networking.k8s.io/v1/namespaces/breadth/ingresses",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/breadth/rolebindings",
        "/apis/storage.k8s.io/v1/storageclasses",
    ];
    for path in paths {
        let events = api.watch_lines(&format!("{path}?watch=true&resourceVersion=0"), 1, Duration::from_secs(10)).await;
        assert_eq!(events.first().map(|e| e["type"].clone()), Some("ADDED".into()), "watching {path}: {events:?}");
    }
}

#[test]
fn wrong_objects_are_refused_as_upstream_refuses_them() {
    let api = TestApi::start();
    let cases = [
        ("job_restart_always", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: busybox}]\n"),
        ("cronjob_schedule", "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: bad}\nspec:\n  schedule: every minute\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: busybox}]\n"),
        ("rolebinding_kind", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: bad}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: x}\nsubjects: [{kind: ServiceAccount, name: default}]\n"),
        ("pvc_size", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: bad}\nspec:\n  accessModes: [ReadWriteOnce]\n"),
        ("pdb_both", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: bad}\nspec: {minAvailable: 1, maxUnavailable: 1}\n"),
    ];
    let mut refused = String::new();
    for (case, manifest) in cases {
        refused += &format!("# {case}\n{}\n\n", failed(api.kubectl_stdin(&["create", "-f", "-"], manifest)));
    }
    insta::assert_snapshot!("breadth_refused", refused);
}

#[test]
fn default_cluster_roles_are_there() {
    let api = TestApi::start();
    insta::assert_snapshot!("default_cluster_roles", ok(api.kubectl(&["get", "clusterroles,clusterrolebindings", "-o", "wide"])));
    // kubectl explain reads the new kinds' OpenAPI as the older ones'.
    for (field, says) in [
        ("job.spec.completions", "<integer>"),
        ("cronjob.spec.schedule", "<string>"),
        ("statefulset.spec.serviceName", "<string>"),
        ("rolebinding.roleRef", "<RoleRef>"),
    ] {
        let explained = ok(api.kubectl(&["explain", field]));
        assert!(explained.contains(says), "kubectl explain {field}: {explained}");
    }
    let view = ok(api.kubectl(&["describe", "clusterrole", "view"]));
    assert!(view.contains("deployments.apps") && !view.contains("secrets"), "{view}");
}
