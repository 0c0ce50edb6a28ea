//! The deployment and replicaset controllers against the real apiserver:
//! a Deployment becomes one ReplicaSet and its pods; rolling updates stay
//! within maxSurge and maxUnavailable; Recreate empties before it fills;
//! history, undo, pause, scale and restart behave as with kubectl on a
//! real cluster. Pods are made Running and Ready by a stand-in for the
//! kubelet (`pods_ready`); no scheduler runs here.

use std::collections::{BTreeMap, HashMap};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use kubelab_scenarios::apiserver::{Output, TestApi};
use kubelab_scenarios::fake_kubelet::Which;
use kubelab_scenarios::wait::until;

fn ok(out: Output) -> String {
    out.succeeded()
}

async fn sets_of(client: &kube::Client, ns: &str) -> Vec<ReplicaSet> {
    Api::<ReplicaSet>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items
}

async fn pods_of(client: &kube::Client, ns: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items
}

fn owner_uid(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true)).map(|r| r.uid.clone())
}

fn image_of(set: &ReplicaSet) -> String {
    set.spec.as_ref().and_then(|s| s.template.as_ref()).and_then(|t| t.spec.as_ref()).and_then(|s| s.containers[0].image.clone()).unwrap_or_default()
}

fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.annotations.as_ref().and_then(|a| a.get("deployment.kubernetes.io/revision")).cloned().unwrap_or_default()
}

/// The Deployment → ReplicaSets → pods graph, with names that carry hashes
/// and generated suffixes replaced by their owner's and a number, for a
/// snapshot; events (reason and message) per object kind.
async fn graph(client: &kube::Client, ns: &str, name: &str) -> serde_json::Value {
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns).get(name).await.unwrap();
    let sets = sets_of(client, ns).await;
    let pods = pods_of(client, ns).await;
    let hashes: Vec<String> = sets.iter().filter_map(|s| s.labels().get("pod-template-hash").cloned()).collect();
    let scrub = |text: &str| {
        let mut text = text.to_string();
        for (i, hash) in hashes.iter().enumerate() {
            text = text.replace(hash.as_str(), &format!("<hash-{}>", i + 1));
        }
        regex::Regex::new(&format!(r"{name}-(<hash-\d>)-[a-z0-9]{{5}}")).unwrap().replace_all(&text, format!("{name}-${{1}}-<pod>").as_str()).into_owned()
    };
    let status = deployment.status.clone().unwrap_or_default();
    let conditions: Vec<String> = status
        .conditions
        .iter()
        .flatten()
        .map(|c| scrub(&format!("{} {} {}: {}", c.type_, c.status, c.reason.as_deref().unwrap_or(""), c.message.as_deref().unwrap_or(""))))
        .collect();
    let mut set_rows: Vec<serde_json::Value> = sets
        .iter()
        .map(|s| {
            let own_pods = pods.iter().filter(|p| owner_uid(&p.metadata) == s.uid()).count();
            serde_json::json!({
                "name": scrub(&s.name_any()),
                "revision": revision(&s.metadata),
                "image": image_of(s),
                "replicas": s.spec.as_ref().and_then(|s| s.replicas),
                "pods": own_pods,
                "ownedByDeployment": owner_uid(&s.metadata) == deployment.uid(),
            })
        })
        .collect();
    set_rows.sort_by_key(|r| r["revision"].as_str().unwrap_or("").to_string());
    let events = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await.unwrap().items;
    let mut event_rows: Vec<String> = events
        .iter()
        .map(|e| {
            let kind = e.involved_object.kind.clone().unwrap_or_default();
            let message = scrub(e.message.as_deref().unwrap_or(""));
            format!("{kind} {} {}: {message} (x{})", e.type_.as_deref().unwrap_or(""), e.reason.as_deref().unwrap_or(""), e.count.unwrap_or(1))
        })
        .collect();
    event_rows.sort();
    // Pods created and deleted in bulk aggregate differently run to run;
    // keep one row per reason and object kind with the count summed.
    let mut summed: BTreeMap<String, i32> = BTreeMap::new();
    for row in event_rows {
        let (key, count) = row.rsplit_once(" (x").unwrap();
        *summed.entry(key.to_string()).or_default() += count.trim_end_matches(')').parse::<i32>().unwrap();
    }
    serde_json::json!({
        "deployment": {
            "revision": revision(&deployment.metadata),
            "replicas": status.replicas, "updatedReplicas": status.updated_replicas, "readyReplicas": status.ready_replicas,
            "availableReplicas": status.available_replicas, "unavailableReplicas": status.unavailable_replicas,
            "observedGenerationIsCurrent": status.observed_generation == deployment.metadata.generation,
            "conditions": conditions,
        },
        "replicaSets": set_rows,
        "events": summed.into_iter().map(|(k, v)| format!("{k} (x{v})")).collect::<Vec<_>>(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_becomes_one_replicaset_and_its_pods() {
    let api = TestApi::start();
    let _controllers = api.controller_manager_with(&["deployment", "replicaset"], Default::default());
    let _kubelets = api.pods_ready(Which::All);
    let client = api.client().await;
    ok(api.kubectl(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=6"]));
    let rolled = ok(api.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]));
    assert!(rolled.contains("deployment \"web\" successfully rolled out"), "{rolled}");

    let sets = sets_of(&client, "default").await;
    assert_eq!(sets.len(), 1, "one ReplicaSet for one template");
    let set = &sets[0];
    let hash = set.labels()["pod-template-hash"].clone();
    assert_eq!(set.name_any(), format!("web-{hash}"));
    assert_eq!(set.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()["pod-template-hash"], hash);
    let pods = pods_of(&client, "default").await;
    assert_eq!(pods.len(), 6);
    for pod in &pods {
        assert!(pod.name_any().starts_with(&format!("web-{hash}-")), "{}", pod.name_any());
        assert_eq!(owner_uid(&pod.metadata), set.uid());
        assert_eq!(pod.labels()["pod-template-hash"], hash);
    }
    // The status and events settle after the rollout; wait for the last.
    until("the ReplicaSet's status", || async {
        let set = &sets_of(&client, "default").await[0];
        let status = set.status.clone().unwrap_or_default();
        (status.available_replicas == Some(6) && status.observed_generation == set.metadata.generation).then_some(()).ok_or(format!("{status:?}"))
    })
    .await;
    until("six SuccessfulCreate events", || async {
        let events = Api::<Event>::namespaced(client.clone(), "default").list(&ListParams::default()).await.unwrap().items;
        let created: i32 = events.iter().filter(|e| e.reason.as_deref() == Some("SuccessfulCreate")).map(|e| e.count.unwrap_or(1)).sum();
        (created == 6).then_some(()).ok_or(format!("{created} of 6"))
    })
    .await;
    insta::assert_yaml_snapshot!("deployment_created", graph(&client, "default", "web").await);
    let described = ok(api.kubectl(&["describe", "deployment", "web"]));
    assert!(described.contains(&format!("Scaled up replica set web-{hash} from 0 to 6")), "{described}");
    assert!(described.contains("NewReplicaSet:") && described.contains(&format!("web-{hash} (6/6 replicas created)")), "{described}");
}

/// The objects (by uid) after each change a watch recorded, read as a
/// reflector reads it: events before the first list is done build the
/// starting state and are not counted, and a relist (the watcher's Init
/// ... InitDone after an error or an expired version) replaces the state
/// at once at its InitDone. Counting a relist's objects one by one would
/// mix old and new versions of different objects into states that never
/// existed (a new ReplicaSet's new size beside an old one's old size).
fn states<K: kube::Resource + Clone>(events: &[watcher::Event<K>]) -> Vec<HashMap<String, K>> {
    let mut state: HashMap<String, K> = HashMap::new();
    let mut relisted: Option<HashMap<String, K>> = None;
    let mut listed = false;
    let mut out = Vec::new();
    for event in events {
        match event {
            watcher::Event::Init => {
                relisted = Some(HashMap::new());
                continue;
            }
            watcher::Event::InitApply(object) => {
                relisted.get_or_insert_with(HashMap::new).insert(object.uid().unwrap(), object.clone());
                continue;
            }
            watcher::Event::InitDone => {
                state = relisted.take().unwrap_or_default();
                if !listed {
                    listed = true;
                    continue;
                }
            }
            watcher::Event::Apply(object) => {
                state.insert(object.uid().unwrap(), object.clone());
            }
            watcher::Event::Delete(object) => {
                state.remove(&object.uid().unwrap());
            }
        }
        if listed {
            out.push(state.clone());
        }
    }
    out
}

/// Pods over time, from a watch: for each change, how many pods exist (not
/// being deleted) and how many of those are ready.
fn replay(events: &[watcher::Event<Pod>]) -> Vec<(usize, usize)> {
    states(events)
        .iter()
        .map(|pods| {
            let live: Vec<&Pod> = pods.values().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
            let ready = live
                .iter()
                .filter(|pod| {
                    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            (live.len(), ready)
        })
        .collect()
}

/// Records the pod events of namespace `ns` until dropped.
struct Recording<K = Pod> {
    task: tokio::task::JoinHandle<()>,
    events: std::sync::Arc<std::sync::Mutex<Vec<watcher::Event<K>>>>,
}

impl<K> Recording<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    async fn start(client: &kube::Client, ns: &str) -> Recording<K> {
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let mut started_tx = Some(started_tx);
        let mut stream = watcher(Api::<K>::namespaced(client.clone(), ns), watcher::Config::default()).default_backoff().boxed();
        let task = tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                // The watcher goes on after an error (relisting if it must):
                // so does the recording.
                let Ok(event) = event else { continue };
                let done = matches!(event, watcher::Event::InitDone);
                sink.lock().unwrap().push(event);
                if done {
                    if let Some(tx) = started_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        started.await.unwrap();
        Recording { task, events }
    }

    fn stop(self) -> Vec<watcher::Event<K>> {
        self.task.abort();
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_stay_within_surge_and_unavailability_and_undo() {
    let api = TestApi::start();
    let _controllers = api.controller_manager_with(&["deployment", "replicaset"], Default::default());
    let _kubelets = api.pods_ready(Which::All);
    let client = api.client().await;
    // 4 replicas at 25%: one pod over, one pod short, at most.
    ok(api.kubectl(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=4"]));
    ok(api.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]));

    let recording = Recording::<Pod>::start(&client, "default").await;
    let set_recording = Recording::<ReplicaSet>::start(&client, "default").await;
    ok(api.kubectl(&["set", "image", "deployment/web", "nginx=nginx:1.28"]));
    ok(api.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]));
    let events = recording.stop();
    let counts = replay(&events);
    assert!(counts.len() > 8, "the rollout made pod events: {counts:?}");
    for (i, (_, ready)) in counts.iter().enumerate() {
        assert!(*ready >= 3, "event {i}: {ready} ready pods, fewer than replicas - maxUnavailable (3): {counts:?}");
    }
    // The pods the controller asks for (its ReplicaSets' sizes) never pass
    // replicas + maxSurge. (Counting pods themselves would also count a
    // pod whose deletion the old ReplicaSet has asked for and the
    // apiserver has not yet done, which upstream counts as terminating.)
    let totals: Vec<i32> =
        states(&set_recording.stop()).iter().map(|sets| sets.values().map(|set| set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)).sum()).collect();
    assert!(totals.contains(&5), "the rollout surged: {totals:?}");
    assert!(totals.iter().all(|t| *t <= 5), "ReplicaSet sizes above replicas + maxSurge (5): {totals:?}");

    let history = ok(api.kubectl(&["rollout", "history", "deployment/web"]));
    let rows: Vec<&str> = history.lines().skip(2).filter(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(rows, ["1", "2"], "{history}");
    let detail = ok(api.kubectl(&["rollout", "history", "deployment/web", "--revision=1"]));
    assert!(detail.contains("nginx:1.27"), "{detail}");

    ok(api.kubectl(&["rollout", "undo", "deployment/web"]));
    ok(api.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]));
    until("the first ReplicaSet back as revision 3", || async {
        let sets = sets_of(&client, "default").await;
        let current: Vec<&ReplicaSet> = sets.iter().filter(|s| s.spec.as_ref().and_then(|s| s.replicas) == Some(4)).collect();
        match current.as_slice() {
            [set] if image_of(set) == "nginx:1.27" && revision(&set.metadata) == "3" => {
                let history = set.annotations().get("deployment.kubernetes.io/revision-history").cloned();
                (history.as_deref() == Some("1")).then_some(()).ok_or(format!("revision-history {history:?}"))
            }
            other => Err(format!("{} sets at 4 replicas: {:?}", other.len(), other.iter().map(|s| (image_of(s), revision(&s.metadata))).collect::<Vec<_>>())),
        }
    })
    .await;
    assert_eq!(sets_of(&client, "default").await.len(), 2, "undo reuses the first ReplicaSet");
    let deployment = Api::<Deployment>::namespaced(client.clone(), "default").get("web").await.unwrap();
    assert_eq!(revision(&deployment.metadata), "3");
    until("the deployment's final status", || async {
        let g = graph(&client, "default", "web").await;
        let d = &g["deployment"];
        (d["updatedReplicas"] == 4 && d["replicas"] == 4 && d["availableReplicas"] == 4 && d["observedGenerationIsCurrent"] == true)
            .then_some(())
            .ok_or(d.to_string())
    })
    .await;
    insta::assert_yaml_snapshot!("deployment_undone", graph(&client, "default", "web").await["replicaSets"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_every_old_pod_before_the_first_new_one() {
    let api = TestApi::start();
    let _controllers = api.controller_manager_with(&["deployment", "replicaset"], Default::default());
    let _kubelets = api.pods_ready(Which::All);
    let client = api.client().await;
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: db\nspec:\n  replicas: 3\n  strategy:\n    type: Recreate\n  \
                    selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      \
                    - name: db\n        image: postgres:16\n";
    ok(api.kubectl_stdin(&["apply", "-f", "-"], manifest));
    ok(api.kubectl(&["rollout", "status", "deployment/db", "--timeout=60s"]));
    let old_hash = sets_of(&client, "default").await[0].labels()["pod-template-hash"].clone();
    let recording = Recording::<Pod>::start(&client, "default").await;
    ok(api.kubectl(&["set", "image", "deployment/db", "db=postgres:17"]));
    ok(api.kubectl(&["rollout", "status", "deployment/db", "--timeout=60s"]));
    let events = recording.stop();
    for pods in states(&events) {
        let old_left = pods.values().filter(|p| p.labels().get("pod-template-hash") == Some(&old_hash) && p.metadata.deletion_timestamp.is_none()).count();
        if let Some(new) = pods.values().find(|p| p.labels().get("pod-template-hash") != Some(&old_hash)) {
            assert_eq!(old_left, 0, "new pod {} appeared while {old_left} old pods existed", new.name_any());
        }
    }
    let pods = pods_of(&client, "default").await;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p.labels()["pod-template-hash"] != old_hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_scale_and_restart() {
    let api = TestApi::start();
    let _controllers = api.controller_manager_with(&["deployment", "replicaset"], Default::default());
    let _kubelets = api.pods_ready(Which::All);
    let client = api.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    ok(api.kubectl(&["create", "deployment", "web", "--image=nginx:1.27", "--replicas=2"]));
    ok(api.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]));

    ok(api.kubectl(&["rollout", "pause", "deployment/web"]));
    ok(api.kubectl(&["set", "image", "deployment/web", "nginx=nginx:1.28"]));
    // Seen and held: the controller observed the new generation and made
    // no ReplicaSet for it.
    until("the paused deployment observed", || async {
        let d = deployments.get("web").await.unwrap();
        let status = d.status.clone().unwrap_or_default();
        let paused = status.conditions.iter().flatten().any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"));
        (paused && status.observed_generation == d.metadata.generation).then_some(()).ok_or(format!("{status:?}"))
    })
    .await;
    assert_eq!(sets_of(&client, "default").await.len(), 1, "a paused deployment rolls nothing out");

    // Scaling a paused deployment still works.
    ok(api.kubectl(&["scale", "deployment/web", "--replicas=3"]));
    until("three pods of the paused deployment", || async {
        let n = pods_of(&client, "default").await.len();
        (n == 3).then_some(()).ok_or(format!("{n} pods"))
    })
    .await;

    ok(api.kubectl(&["rollout", "resume", "deployment/web"]));
    ok(api.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]));
    let sets = sets_of(&client, "default").await;
    assert_eq!(sets.len(), 2);
    assert!(sets.iter().any(|s| image_of(s) == "nginx:1.28" && s.spec.as_ref().unwrap().replicas == Some(3)));

    ok(api.kubectl(&["rollout", "restart", "deployment/web"]));
    ok(api.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]));
    assert_eq!(sets_of(&client, "default").await.len(), 3, "a restart is a new template, so a new ReplicaSet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicasets_adopt_release_and_never_overcreate() {
    let api = TestApi::start();
    let client = api.client().await;
    // An orphan that matches, made before the controller runs.
    let orphan = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: orphan\n  labels: {app: cache}\nspec:\n  containers:\n  - name: c\n    image: redis\n";
    ok(api.kubectl_stdin(&["apply", "-f", "-"], orphan));
    let recording = Recording::<Pod>::start(&client, "default").await;
    let _controllers = api.controller_manager_with(&["replicaset"], Default::default());
    let set = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: cache\nspec:\n  replicas: 40\n  selector:\n    matchLabels: {app: cache}\n  \
               template:\n    metadata:\n      labels: {app: cache}\n    spec:\n      containers:\n      - name: c\n        image: redis\n";
    ok(api.kubectl_stdin(&["apply", "-f", "-"], set));
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    until("40 replicas", || async {
        let s = sets.get("cache").await.unwrap().status.unwrap_or_default();
        (s.replicas == 40).then_some(()).ok_or(format!("{s:?}"))
    })
    .await;
    let uid = sets.get("cache").await.unwrap().uid();
    let pods = pods_of(&client, "default").await;
    assert_eq!(pods.len(), 40, "the orphan counts: 39 created, not 40");
    assert!(pods.iter().all(|p| owner_uid(&p.metadata) == uid), "every pod, the orphan too, is the set's");
    let events = recording.stop();
    let created = events.iter().filter_map(|e| if let watcher::Event::Apply(p) = e { p.uid() } else { None }).collect::<std::collections::HashSet<_>>().len();
    assert_eq!(created, 40, "pods seen: the orphan and 39 created, no more");

    // A pod that stops matching is released and replaced.
    ok(api.kubectl(&["label", "pod", "orphan", "app=other", "--overwrite"]));
    until("the released pod replaced", || async {
        let pods = pods_of(&client, "default").await;
        let released = pods.iter().find(|p| p.name_any() == "orphan").map(|p| owner_uid(&p.metadata));
        let owned = pods.iter().filter(|p| owner_uid(&p.metadata) == uid).count();
        (released == Some(None) && owned == 40).then_some(()).ok_or(format!("orphan's owner {released:?}, {owned} owned"))
    })
    .await;

    // Scale-down takes unscheduled pods before bound ones.
    let owned: Vec<Pod> = pods_of(&client, "default").await.into_iter().filter(|p| owner_uid(&p.metadata) == uid).collect();
    let bound: Vec<String> = owned.iter().take(2).map(|p| p.name_any()).collect();
    for name in &bound {
        let binding =
            format!(r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{name}"}},"target":{{"apiVersion":"v1","kind":"Node","name":"worker-1"}}}}"#);
        let (code, body) = api.raw("POST", &format!("/api/v1/namespaces/default/pods/{name}/binding"), "application/json", binding.into_bytes()).await;
        assert_eq!(code, 201, "{body}");
    }
    ok(api.kubectl(&["scale", "replicaset/cache", "--replicas=2"]));
    until("the two bound pods left", || async {
        let mut left: Vec<String> = pods_of(&client, "default").await.into_iter().filter(|p| owner_uid(&p.metadata) == uid).map(|p| p.name_any()).collect();
        left.sort();
        let mut want = bound.clone();
        want.sort();
        (left == want).then_some(()).ok_or(format!("{left:?}"))
    })
    .await;
}
