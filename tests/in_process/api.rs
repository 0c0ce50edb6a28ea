//! The apiserver's wire protocol over a real etcd, through kube-rs and raw
//! requests: verbs, conflicts, selectors, paging, watches, subresources,
//! deletion and bad input.

use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kubelab_scenarios::apiserver::{Options, TestApi};
use serde_json::{json, Value};

fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("not an API error: {other}"),
    }
}

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}
    }))
    .unwrap()
}

fn configmap(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn crud_defaults_and_stale_updates() {
    let api = TestApi::start();
    let pods: Api<Pod> = Api::namespaced(api.client().await, "default");
    let created = pods.create(&PostParams::default(), &pod("web", json!({"app": "web"}))).await.unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    let rv: i64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(created.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));

    // The key is upstream's, and its revision is the resourceVersion.
    let (status, raw) = api.raw("GET", "/api/v1/namespaces/default/pods/web", "application/json", vec![]).await;
    assert_eq!(status, 200);
    assert_eq!(raw["metadata"]["resourceVersion"], json!(rv.to_string()));

    let again = pods.create(&PostParams::default(), &pod("web", json!({}))).await.unwrap_err();
    assert_eq!(code(&again), 409);

    let mut fresh = pods.get("web").await.unwrap();
    fresh.metadata.labels.as_mut().unwrap().insert("tier".into(), "front".into());
    let updated = pods.replace("web", &PostParams::default(), &fresh).await.unwrap();
    assert!(updated.metadata.resource_version.as_deref().unwrap().parse::<i64>().unwrap() > rv);
    // The same object again carries a version that is no longer current.
    let stale = pods.replace("web", &PostParams::default(), &fresh).await.unwrap_err();
    assert_eq!(code(&stale), 409);
    match stale {
        kube::Error::Api(s) => {
            assert_eq!(s.reason, "Conflict");
            assert!(s.message.contains("the object has been modified"), "{}", s.message);
        }
        _ => unreachable!(),
    }

    pods.delete("web", &DeleteParams::default()).await.unwrap();
    let (status, gone) = api.raw("GET", "/api/v1/namespaces/default/pods/web", "application/json", vec![]).await;
    assert_eq!(status, 404);
    assert_eq!(gone["kind"], "Status");
    assert_eq!(gone["reason"], "NotFound");
    assert_eq!(gone["message"], r#"pods "web" not found"#);
    assert_eq!(gone["details"], json!({"name": "web", "kind": "pods"}));
}

#[tokio::test]
async fn many_writers_lose_no_update() {
    let api = TestApi::start();
    let client = api.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &configmap("counter", json!({}))).await.unwrap();
    let writers = 8;
    let each = 15;
    let tasks = (0..writers).map(|_| {
        let cms = cms.clone();
        tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..each {
                loop {
                    let mut cm = cms.get("counter").await.unwrap();
                    let data = cm.data.get_or_insert_with(Default::default);
                    let n: i64 = data.get("n").map(|v| v.parse().unwrap()).unwrap_or(0);
                    data.insert("n".into(), (n + 1).to_string());
                    match cms.replace("counter", &PostParams::default(), &cm).await {
                        Ok(_) => break,
                        Err(e) if code(&e) == 409 => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        })
    });
    let conflicts: i32 = futures_util::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).sum();
    let n = cms.get("counter").await.unwrap().data.unwrap()["n"].clone();
    assert_eq!(n, (writers * each).to_string(), "every increment landed ({conflicts} conflicts retried)");
}

/// Writes that name no resourceVersion (a delete without preconditions, a
/// replace of an object without one) never answer Conflict however busy
/// the object is: the server reads again and writes on the newer version,
/// as upstream's store does. A controller that took such a 409 as final
/// (the garbage collector does, rightly, for a uid precondition) would
/// leave the object behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconditional_writes_race_busy_objects_without_conflict() {
    let api = TestApi::start();
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    for round in 0..20 {
        let name = format!("busy-{round}");
        cms.create(&PostParams::default(), &configmap(&name, json!({}))).await.unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (cms, name, stop) = (cms.clone(), name.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n += 1;
                        let patch = json!({"data": {format!("w{w}"): n.to_string()}});
                        if cms.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.is_err() {
                            break; // deleted
                        }
                    }
                })
            })
            .collect();
        let mut replacement = configmap(&name, json!({"replaced": "yes"}));
        replacement.metadata.resource_version = None;
        cms.replace(&name, &PostParams::default(), &replacement).await.unwrap_or_else(|e| panic!("round {round}: replace without a resourceVersion: {e}"));
        cms.delete(&name, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("round {round}: delete without preconditions: {e}"));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
    }
}

#[tokio::test]
async fn selectors_and_consistent_pages() {
    let api = TestApi::start();
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    for (i, env) in ["prod", "prod", "staging", "dev", "prod"].iter().enumerate() {
        let labels = if i == 3 { json!({"env": env}) } else { json!({"env": env, "team": "a"}) };
        cms.create(&PostParams::default(), &configmap(&format!("cm-{i}"), labels)).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| l.items.into_iter().map(|c| c.metadata.name.unwrap()).collect::<Vec<_>>();
    let sel = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(cms.list(&sel("env=prod")).await.unwrap()), ["cm-0", "cm-1", "cm-4"]);
    assert_eq!(names(cms.list(&sel("env==staging")).await.unwrap()), ["cm-2"]);
    assert_eq!(names(cms.list(&sel("env!=prod")).await.unwrap()), ["cm-2", "cm-3"]);
    assert_eq!(names(cms.list(&sel("env in (dev,staging)")).await.unwrap()), ["cm-2", "cm-3"]);
    assert_eq!(names(cms.list(&sel("env notin (prod,dev)")).await.unwrap()), ["cm-2"]);
    assert_eq!(names(cms.list(&sel("!team")).await.unwrap()), ["cm-3"]);
    assert_eq!(names(cms.list(&sel("team,env=prod")).await.unwrap()), ["cm-0", "cm-1", "cm-4"]);
    let by_name = ListParams::default().fields("metadata.name=cm-2");
    assert_eq!(names(cms.list(&by_name).await.unwrap()), ["cm-2"]);

    // Pages are read at the first page's revision: an object created between
    // pages does not appear, and the last page has no continue token.
    let first = cms.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(first.clone()), ["cm-0", "cm-1"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().unwrap();
    cms.create(&PostParams::default(), &configmap("cm-00", json!({}))).await.unwrap();
    let second = cms.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap();
    assert_eq!(names(second.clone()), ["cm-2", "cm-3"]);
    let third = cms.list(&ListParams::default().limit(2).continue_token(second.metadata.continue_.as_deref().unwrap())).await.unwrap();
    assert_eq!(names(third.clone()), ["cm-4"]);
    assert!(third.metadata.continue_.as_deref().unwrap_or("").is_empty());
    // Filtered pages fill up across the store.
    let filtered = cms.list(&sel("env=prod").limit(2)).await.unwrap();
    assert_eq!(names(filtered), ["cm-0", "cm-1"]);

    let (status, body) = api.raw("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%20b", "application/json", vec![]).await;
    assert_eq!((status, body["reason"].as_str()), (400, Some("BadRequest")));
    let (status, body) = api.raw("GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dx", "application/json", vec![]).await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "field label not supported: spec.bogus");
    let (status, _) = api.raw("GET", "/api/v1/namespaces/default/configmaps?continue=garbage", "application/json", vec![]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn watch_events_transitions_bookmarks_and_expiry() {
    let api = TestApi::start_with(Options { watch_history: Some(20), ..Default::default() });
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let a = cms.create(&PostParams::default(), &configmap("a", json!({"watch": "yes"}))).await.unwrap();
    let rv_a = a.metadata.resource_version.clone().unwrap();

    // From a version: what happened after it, including a transition out of
    // the selector (sent as DELETED) and back in (ADDED).
    let client_api = cms.clone();
    // No need to wait for the watch to start: it replays from rv_a.
    let writer = tokio::spawn(async move {
        let patch = |v: &str| Patch::Merge(json!({"metadata": {"labels": {"watch": v}}}));
        client_api.patch("a", &PatchParams::default(), &patch("no")).await.unwrap();
        client_api.patch("a", &PatchParams::default(), &patch("yes")).await.unwrap();
        client_api.delete("a", &DeleteParams::default()).await.unwrap();
    });
    let path = format!("/api/v1/namespaces/default/configmaps?watch=true&labelSelector=watch%3Dyes&resourceVersion={rv_a}");
    let lines = api.watch_lines(&path, 3, Duration::from_secs(10)).await;
    writer.await.unwrap();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["DELETED", "ADDED", "DELETED"]);
    assert!(lines.iter().all(|l| l["object"]["metadata"]["name"] == "a"));

    // Without a version: the current state first, as ADDED.
    cms.create(&PostParams::default(), &configmap("b", json!({}))).await.unwrap();
    let lines = api.watch_lines("/api/v1/namespaces/default/configmaps?watch=1", 1, Duration::from_secs(5)).await;
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["metadata"]["name"], "b");

    // Bookmarks when asked for, and the watch ends at its timeout.
    let lines = api
        .watch_lines("/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=1&resourceVersion=0", 10, Duration::from_secs(5))
        .await;
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "BOOKMARK");
    assert_eq!(last["object"]["kind"], "ConfigMap");
    assert!(last["object"]["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap() > 0);

    // sendInitialEvents: the state, then a bookmark marking its end.
    let lines = api
        .watch_lines(
            "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
            2,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[1]["type"], "BOOKMARK");
    assert_eq!(lines[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    let (status, _) = api.raw("GET", "/api/v1/configmaps?watch=1&sendInitialEvents=true", "application/json", vec![]).await;
    assert_eq!(status, 422, "sendInitialEvents without NotOlderThan is refused, not left hanging");

    // Past the history kept: one ERROR event with a 410 Expired Status.
    for i in 0..30 {
        cms.create(&PostParams::default(), &configmap(&format!("filler-{i}"), json!({}))).await.unwrap();
    }
    let path = format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv_a}");
    let lines = api.watch_lines(&path, 1, Duration::from_secs(5)).await;
    assert_eq!(lines[0]["type"], "ERROR");
    assert_eq!(lines[0]["object"]["code"], 410);
    assert_eq!(lines[0]["object"]["reason"], "Expired");
}

#[tokio::test]
async fn kube_watcher_survives_expiry_by_relisting() {
    let api = TestApi::start_with(Options { watch_history: Some(10), ..Default::default() });
    let client = api.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &configmap("first", json!({"watch": "yes"}))).await.unwrap();
    // Short watches without bookmarks: each re-watch resumes from the last
    // event the watcher saw, which the fillers below push out of history.
    let config = watcher::Config::default().labels("watch=yes").timeout(1).disable_bookmarks();
    let mut events = watcher(cms.clone(), config).boxed();
    let mut inits = 0;
    let mut expired = 0;
    let mut seen_last = false;
    let mut fillers_written = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen_last {
        let event = tokio::time::timeout_at(deadline, events.next()).await.expect("the watcher kept going").unwrap();
        // kube-rs reports the 410 as an error item, then relists on its own.
        let event = match event {
            Ok(e) => e,
            Err(watcher::Error::WatchError(s)) if s.code == 410 => {
                expired += 1;
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        match event {
            watcher::Event::Init => inits += 1,
            watcher::Event::InitDone if !fillers_written => {
                for i in 0..20 {
                    cms.create(&PostParams::default(), &configmap(&format!("filler-{i}"), json!({}))).await.unwrap();
                }
                fillers_written = true;
                // Created once the watcher has had to relist.
                let cms = cms.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                    cms.create(&PostParams::default(), &configmap("last", json!({"watch": "yes"}))).await.unwrap();
                });
            }
            watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => {
                seen_last |= cm.metadata.name.as_deref() == Some("last");
            }
            _ => {}
        }
    }
    assert!(expired >= 1, "the watch was expired");
    assert!(inits >= 2, "the watcher relisted after 410 (inits: {inits})");
}

#[tokio::test]
async fn subresources_status_binding_scale() {
    let api = TestApi::start();
    let client = api.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p", json!({}))).await.unwrap();

    // A status write keeps spec; a main write keeps status.
    let status_patch = Patch::Merge(json!({"status": {"phase": "Running"}, "spec": {"nodeName": "sneaky"}}));
    let after = pods.patch_status("p", &PatchParams::default(), &status_patch).await.unwrap();
    assert_eq!(after.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(after.spec.as_ref().unwrap().node_name, None);
    let main_patch = Patch::Merge(json!({"status": {"phase": "Failed"}, "metadata": {"labels": {"x": "y"}}}));
    let after = pods.patch("p", &PatchParams::default(), &main_patch).await.unwrap();
    assert_eq!(after.status.as_ref().unwrap().phase.as_deref(), Some("Running"));

    // Binding assigns the node once.
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
    let path = "/api/v1/namespaces/default/pods/p/binding";
    let (status, _) = api.raw("POST", path, "application/json", serde_json::to_vec(&binding).unwrap()).await;
    assert_eq!(status, 201);
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.as_ref().unwrap().node_name.as_deref(), Some("node-1"));
    let conditions = bound.status.unwrap().conditions.unwrap();
    assert!(conditions.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    let (status, again) = api.raw("POST", path, "application/json", serde_json::to_vec(&binding).unwrap()).await;
    assert_eq!(status, 409);
    assert!(again["message"].as_str().unwrap().contains("already assigned to node \"node-1\""), "{again}");

    // Scale, and generation counting spec changes only.
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .unwrap();
    let created = deployments.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.spec.as_ref().unwrap().replicas, Some(1));
    let scale = deployments.get_scale("d").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=d"));
    deployments.patch_scale("d", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}}))).await.unwrap();
    let scaled = deployments.get("d").await.unwrap();
    assert_eq!(scaled.spec.as_ref().unwrap().replicas, Some(4));
    assert_eq!(scaled.metadata.generation, Some(2));
    let labelled = deployments.patch("d", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap();
    assert_eq!(labelled.metadata.generation, Some(2));
}

#[tokio::test]
async fn deletion_grace_finalizers_and_preconditions() {
    let api = TestApi::start();
    let client = api.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut bound = pod("bound", json!({}));
    bound.spec.as_mut().unwrap().node_name = Some("node-1".into());
    pods.create(&PostParams::default(), &bound).await.unwrap();
    // A pod on a node waits for its kubelet: it gets a deletionTimestamp.
    let (status, body) = api.raw("DELETE", "/api/v1/namespaces/default/pods/bound", "application/json", vec![]).await;
    assert_eq!(status, 200, "upstream answers 200 while a pod waits for its grace period");
    assert!(body["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(body["metadata"]["deletionGracePeriodSeconds"], 30);
    // The kubelet's final delete, with no grace, removes it.
    pods.delete("bound", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    assert_eq!(code(&pods.get("bound").await.unwrap_err()), 404);

    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut held = configmap("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let held = cms.create(&PostParams::default(), &held).await.unwrap();
    let wrong_uid = DeleteParams { preconditions: Some(kube::api::Preconditions { uid: Some("nope".into()), resource_version: None }), ..Default::default() };
    assert_eq!(code(&cms.delete("held", &wrong_uid).await.unwrap_err()), 409);
    let right_uid =
        DeleteParams { preconditions: Some(kube::api::Preconditions { uid: held.metadata.uid.clone(), resource_version: None }), ..Default::default() };
    cms.delete("held", &right_uid).await.unwrap();
    let terminating = cms.get("held").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    let add = Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}));
    assert_eq!(code(&cms.patch("held", &PatchParams::default(), &add).await.unwrap_err()), 422);
    // Removing the last finalizer lets it go.
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(code(&cms.get("held").await.unwrap_err()), 404);

    // Foreground deletion leaves the object to the garbage collector.
    cms.create(&PostParams::default(), &configmap("fg", json!({}))).await.unwrap();
    cms.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let fg = cms.get("fg").await.unwrap();
    assert_eq!(fg.metadata.finalizers, Some(vec!["foregroundDeletion".to_string()]));
}

#[tokio::test]
async fn a_terminating_namespace_stays_until_finalized() {
    let api = TestApi::start();
    let namespaces: Api<Namespace> = Api::all(api.client().await);
    let ns: Namespace = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "going"}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    namespaces.delete("going", &DeleteParams::default()).await.unwrap();
    // Writes to its status and metadata (the namespace controller's
    // conditions, a label) keep it: spec.finalizers still holds `kubernetes`.
    let mut ns = namespaces.get("going").await.unwrap();
    assert_eq!(ns.status.as_ref().unwrap().phase.as_deref(), Some("Terminating"));
    ns.status.as_mut().unwrap().conditions = Some(vec![serde_json::from_value(json!({"type": "NamespaceContentRemaining", "status": "False"})).unwrap()]);
    let ns = namespaces.replace_status("going", &PostParams::default(), &ns).await.unwrap();
    let mut stale = ns.clone();
    assert_eq!(ns.status.unwrap().conditions.unwrap()[0].type_, "NamespaceContentRemaining");
    let ns = namespaces.patch("going", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap();
    assert_eq!(ns.spec.as_ref().unwrap().finalizers, Some(vec!["kubernetes".to_string()]));
    assert!(namespaces.get("going").await.is_ok());
    // Finalizing from a stale version is a conflict, and keeps it.
    stale.spec.as_mut().unwrap().finalizers = Some(vec![]);
    let err = namespaces.replace_subresource("finalize", "going", &PostParams::default(), &stale).await.unwrap_err();
    assert_eq!(code(&err), 409);
    assert!(namespaces.get("going").await.is_ok());
    // Finalizing it without the finalizer removes it.
    let mut released = ns.clone();
    released.spec.as_mut().unwrap().finalizers = Some(vec![]);
    namespaces.replace_subresource("finalize", "going", &PostParams::default(), &released).await.unwrap();
    assert_eq!(code(&namespaces.get("going").await.unwrap_err()), 404);
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let api = TestApi::start();
    let path = "/api/v1/namespaces/default/configmaps";
    let (status, body) = api.raw("POST", path, "application/json", b"{\"apiVersion\": \"v1\", ".to_vec()).await;
    assert_eq!((status, body["reason"].as_str()), (400, Some("BadRequest")));
    assert!(body["message"].as_str().unwrap().contains("line 1"), "says where: {body}");
    let (status, body) = api.raw("POST", path, "application/json", vec![b' '; 3 * 1024 * 1024 + 10]).await;
    assert_eq!((status, body["reason"].as_str()), (413, Some("RequestEntityTooLarge")));
    let wrong_kind = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}});
    let (status, body) = api.raw("POST", path, "application/json", serde_json::to_vec(&wrong_kind).unwrap()).await;
    assert_eq!(status, 400, "{body}");
    let wrong_version = json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let (status, _) = api.raw("POST", path, "application/json", serde_json::to_vec(&wrong_version).unwrap()).await;
    assert_eq!(status, 400);
    let bad_name = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid"}});
    let (status, body) = api.raw("POST", path, "application/json", serde_json::to_vec(&bad_name).unwrap()).await;
    assert_eq!((status, body["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
    let bad_pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "x", "ports": [{"containerPort": 70000}]}, {"name": "a"}]}});
    let (status, body) = api.raw("POST", "/api/v1/namespaces/default/pods", "application/json", serde_json::to_vec(&bad_pod).unwrap()).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = body["details"]["causes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["spec.containers[0].ports[0].containerPort", "spec.containers[1].name", "spec.containers[1].image"]);
    let mismatched = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "a"}}, "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let (status, body) = api.raw("POST", "/apis/apps/v1/namespaces/default/deployments", "application/json", serde_json::to_vec(&mismatched).unwrap()).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.template.metadata.labels");
    let (status, _) = api.raw("POST", path, "text/plain", b"x".to_vec()).await;
    assert_eq!(status, 415);
    let (status, body) =
        api.raw("POST", "/api/v1/namespaces/nowhere/configmaps", "application/json", serde_json::to_vec(&json!({"metadata": {"name": "x"}})).unwrap()).await;
    assert_eq!((status, body["message"].as_str()), (404, Some(r#"namespaces "nowhere" not found"#)));
    let (status, _) = api.raw("PUT", path, "application/json", vec![]).await;
    assert_eq!(status, 405);
    let (status, _) = api.raw("GET", "/api/v1/nonsense", "application/json", vec![]).await;
    assert_eq!(status, 404);

    // A terminating namespace takes nothing new.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "going"}});
    api.raw("POST", "/api/v1/namespaces", "application/json", serde_json::to_vec(&ns).unwrap()).await;
    let (status, _) = api.raw("DELETE", "/api/v1/namespaces/going", "application/json", vec![]).await;
    assert_eq!(status, 200);
    let (status, body) =
        api.raw("POST", "/api/v1/namespaces/going/configmaps", "application/json", serde_json::to_vec(&json!({"metadata": {"name": "x"}})).unwrap()).await;
    assert_eq!(status, 403, "{body}");

    // None of that was written.
    let (_, list) = api.raw("GET", "/api/v1/configmaps", "application/json", vec![]).await;
    assert_eq!(list["items"], json!([]));
    let (_, pods) = api.raw("GET", "/api/v1/pods", "application/json", vec![]).await;
    assert_eq!(pods["items"], json!([]));
}

#[test]
fn no_client_certificate_is_401() {
    let api = TestApi::start();
    let out = std::process::Command::new("curl").args(["-sk", &format!("{}/api/v1/namespaces", api.url)]).output().expect("curl is installed");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["code"], 401);
    assert_eq!(body["reason"], "Unauthorized");
    let health = std::process::Command::new("curl").args(["-sk", &format!("{}/readyz", api.url)]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout), "ok");
}

#[tokio::test]
async fn service_addresses_are_allocated_once() {
    use k8s_openapi::api::core::v1::Service;
    let api = TestApi::start();
    let services: Api<Service> = Api::namespaced(api.client().await, "default");
    let kubernetes = services.get("kubernetes").await.unwrap();
    assert_eq!(kubernetes.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("10.96.0.1"));

    let svc = |name: &str, spec: Value| -> Service {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec})).unwrap()
    };
    // Twenty at once: twenty different addresses, all in the range.
    let creates = (0..20).map(|i| {
        let services = services.clone();
        let s = svc(&format!("s{i}"), json!({"ports": [{"port": 80}], "type": "NodePort"}));
        tokio::spawn(async move { services.create(&PostParams::default(), &s).await.unwrap() })
    });
    let created: Vec<Service> = futures_util::future::join_all(creates).await.into_iter().map(|r| r.unwrap()).collect();
    let mut ips: Vec<String> = created.iter().map(|s| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap()).collect();
    let mut ports: Vec<i32> = created.iter().map(|s| s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap()).collect();
    assert!(ips.iter().all(|ip| ip.starts_with("10.96.") && ip != "10.96.0.1"), "{ips:?}");
    assert!(ports.iter().all(|p| (30000..=32767).contains(p)), "{ports:?}");
    ips.sort();
    ips.dedup();
    ports.sort();
    ports.dedup();
    assert_eq!((ips.len(), ports.len()), (20, 20), "no address given twice");

    // Asking for a taken address, or one outside the range, is refused.
    let taken = created[0].spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    let e = services.create(&PostParams::default(), &svc("dup", json!({"clusterIP": taken, "ports": [{"port": 80}]}))).await.unwrap_err();
    assert_eq!(code(&e), 422);
    assert!(e.to_string().contains("provided IP is already allocated"), "{e}");
    let e = services.create(&PostParams::default(), &svc("far", json!({"clusterIP": "10.0.0.5", "ports": [{"port": 80}]}))).await.unwrap_err();
    assert!(e.to_string().contains("not in the valid range"), "{e}");
    let port = created[0].spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap();
    let e = services.create(&PostParams::default(), &svc("dupport", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}))).await.unwrap_err();
    assert!(e.to_string().contains("provided port is already allocated"), "{e}");
    let e = services.create(&PostParams::default(), &svc("cip", json!({"ports": [{"port": 80, "nodePort": 30001}]}))).await.unwrap_err();
    assert_eq!(code(&e), 422);

    // The address stays when an update leaves it out, and cannot change.
    let patch = Patch::Merge(json!({"spec": {"clusterIP": null, "clusterIPs": null, "selector": {"app": "x"}}}));
    let kept = services.patch("s0", &PatchParams::default(), &patch).await.unwrap();
    assert_eq!(kept.spec.unwrap().cluster_ip.unwrap(), taken);
    let e = services.patch("s0", &PatchParams::default(), &Patch::Merge(json!({"spec": {"clusterIP": "10.96.9.9"}}))).await.unwrap_err();
    assert!(e.to_string().contains("may not change once set"), "{e}");

    // Creating an existing Service again is AlreadyExists, whatever its
    // addresses (the apiserver does this with `kubernetes` at every start).
    let same = services.get("s1").await.unwrap();
    let mut again = svc("s1", serde_json::to_value(same.spec.unwrap()).unwrap());
    again.metadata.resource_version = None;
    assert_eq!(code(&services.create(&PostParams::default(), &again).await.unwrap_err()), 409);

    // Deleting frees the address for someone else.
    services.delete("s0", &DeleteParams::default()).await.unwrap();
    let again = services.create(&PostParams::default(), &svc("reuse", json!({"clusterIP": taken, "ports": [{"port": 80}]}))).await.unwrap();
    assert_eq!(again.spec.unwrap().cluster_ip.unwrap(), taken);
    let headless = services.create(&PostParams::default(), &svc("headless", json!({"clusterIP": "None", "ports": [{"port": 80}]}))).await.unwrap();
    assert_eq!(headless.spec.unwrap().cluster_ip.as_deref(), Some("None"));
}

#[tokio::test]
async fn compaction_expires_old_continue_tokens_and_watches_go_on() {
    let api = TestApi::start();
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    for i in 0..3 {
        cms.create(&PostParams::default(), &configmap(&format!("c{i}"), json!({}))).await.unwrap();
    }
    let first = cms.list(&ListParams::default().limit(1)).await.unwrap();
    let token = first.metadata.continue_.unwrap();
    cms.create(&PostParams::default(), &configmap("later", json!({}))).await.unwrap();

    // Compact etcd to now, as the apiserver's compaction loop does.
    let etcd = apiserver::storage::Etcd::connect(std::slice::from_ref(&api.etcd_url)).await.unwrap();
    etcd.compact(etcd.revision().await.unwrap()).await.unwrap();
    let e = cms.list(&ListParams::default().limit(1).continue_token(&token)).await.unwrap_err();
    assert_eq!(code(&e), 410);
    assert!(e.to_string().contains("continue parameter is too old"), "{e}");

    // Lists and the watch cache carry on; the watch replays from `rv`, so
    // the write need not wait for it.
    let listed = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 4);
    let rv = listed.metadata.resource_version.unwrap();
    let writer = {
        let cms = cms.clone();
        tokio::spawn(async move { cms.create(&PostParams::default(), &configmap("after-compaction", json!({}))).await.unwrap() })
    };
    let lines = api.watch_lines(&format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"), 1, Duration::from_secs(5)).await;
    writer.await.unwrap();
    assert_eq!(lines[0]["object"]["metadata"]["name"], "after-compaction");
}

/// Server-side apply over the wire, through kube-rs and raw requests:
/// create by apply (201), conflicts as upstream's 409 with one cause per
/// field, force, the Update managers every other write records, the status
/// subresource, and the option errors.
#[tokio::test]
async fn server_side_apply_and_managed_fields() {
    let api = TestApi::start();
    let cms: Api<ConfigMap> = Api::namespaced(api.client().await, "default");
    let config = |value: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": value}});
    let apply = |manager: &str| PatchParams::apply(manager);
    let path = "/api/v1/namespaces/default/configmaps/cfg";
    let yaml = "application/apply-patch+yaml";

    let (status, created) = api
        .raw("PATCH", &format!("{path}?fieldManager=alice"), yaml, b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: '1'\n".to_vec())
        .await;
    assert_eq!(status, 201, "{created}");
    let entry = &created["metadata"]["managedFields"][0];
    assert_eq!((entry["manager"].as_str(), entry["operation"].as_str()), (Some("alice"), Some("Apply")));
    assert_eq!(entry["fieldsV1"], json!({"f:data": {"f:a": {}}}));

    // Bob sets the same value: both hold the field. A new value conflicts.
    cms.patch("cfg", &apply("bob"), &Patch::Apply(config("1"))).await.unwrap();
    let err = cms.patch("cfg", &apply("bob"), &Patch::Apply(config("2"))).await.unwrap_err();
    assert_eq!(code(&err), 409);
    let (status, body) = api.raw("PATCH", &format!("{path}?fieldManager=carol"), yaml, serde_json::to_vec(&config("3")).unwrap()).await;
    assert_eq!(status, 409);
    assert_eq!(body["reason"], "Conflict");
    assert_eq!(body["message"], "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .data.a\nconflicts with \"bob\":\n- .data.a");
    assert_eq!(body["details"]["causes"][0], json!({"reason": "FieldManagerConflict", "message": "conflict with \"alice\"", "field": ".data.a"}));
    let forced = cms.patch("cfg", &apply("carol").force(), &Patch::Apply(config("3"))).await.unwrap();
    assert_eq!(forced.data.unwrap()["a"], "3");
    let managers: Vec<String> = forced.metadata.managed_fields.unwrap().iter().map(|e| e.manager.clone().unwrap()).collect();
    assert_eq!(managers, ["carol"], "alice and bob lost their only field");

    // A merge patch is an Update by the manager the client names.
    let patched = cms
        .patch("cfg", &PatchParams { field_manager: Some("editor".into()), ..Default::default() }, &Patch::Merge(json!({"data": {"b": "x"}})))
        .await
        .unwrap();
    let entries = patched.metadata.managed_fields.unwrap();
    let editor = entries.iter().find(|e| e.manager.as_deref() == Some("editor")).unwrap();
    assert_eq!(editor.operation.as_deref(), Some("Update"));
    assert_eq!(editor.api_version.as_deref(), Some("v1"));
    assert_eq!(editor.fields_v1.as_ref().unwrap().0, json!({"f:data": {"f:b": {}}}));

    // Carol drops `a` from her configuration: it goes.
    let only_c = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"c": "y"}});
    let pruned = cms.patch("cfg", &apply("carol"), &Patch::Apply(only_c)).await.unwrap();
    let data = pruned.data.unwrap();
    assert!(!data.contains_key("a") && data["b"] == "x" && data["c"] == "y", "{data:?}");

    // Status through apply: a Deployment's replicas in status, kept apart.
    let deploys: Api<Deployment> = Api::namespaced(api.client().await, "default");
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"replicas": 9}});
    let made = deploys.patch("d", &apply("alice"), &Patch::Apply(d)).await.unwrap();
    assert_eq!(made.status.and_then(|s| s.replicas), None, "status is not written through the main resource");
    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "status": {"replicas": 2}});
    let st = deploys.patch_status("d", &apply("controller"), &Patch::Apply(status)).await.unwrap();
    assert_eq!(st.status.unwrap().replicas, Some(2));
    let entry = st.metadata.managed_fields.unwrap().into_iter().find(|e| e.manager.as_deref() == Some("controller")).unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    assert_eq!(entry.fields_v1.unwrap().0, json!({"f:status": {"f:replicas": {}}}));

    // Option errors, as upstream words them; nothing is written.
    let (status, body) = api.raw("PATCH", path, yaml, serde_json::to_vec(&config("9")).unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(body["message"], "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
    let (status, body) = api.raw("PATCH", &format!("{path}?force=true"), "application/merge-patch+json", b"{}".to_vec()).await;
    assert_eq!(status, 422);
    assert_eq!(body["message"], "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch");
    let named_wrong = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}, "data": {"a": "9"}});
    let (status, _) = api.raw("PATCH", &format!("{path}?fieldManager=x"), yaml, serde_json::to_vec(&named_wrong).unwrap()).await;
    assert_eq!(status, 400);
    let (status, _) = api.raw("PATCH", &format!("{path}?fieldManager=x"), yaml, b"kind: [".to_vec()).await;
    assert_eq!(status, 400);
    let with_managed = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "managedFields": [{}]}});
    let (status, _) = api.raw("PATCH", &format!("{path}?fieldManager=x"), yaml, serde_json::to_vec(&with_managed).unwrap()).await;
    assert_eq!(status, 400);
    assert_eq!(cms.get("cfg").await.unwrap().data.unwrap().get("a"), None);
}

/// The `kubernetes` Service's endpoints follow the apiservers that hold a
/// lease: two apiservers are listed, one that stops renewing drops out when
/// its lease expires, one that withdraws drops out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_endpoints_follow_apiserver_leases() {
    use apiserver::endpoints_reconciler::{reconcile, withdraw};
    let api = TestApi::start();
    let etcd = apiserver::storage::Etcd::connect(std::slice::from_ref(&api.etcd_url)).await.unwrap();
    let registry = apiserver::registry::Registry::new(etcd);
    let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(api.client().await, "default");
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = Api::namespaced(api.client().await, "default");
    let listed = || async {
        let ep = endpoints.get("kubernetes").await.unwrap();
        let mut ips: Vec<String> = ep.subsets.unwrap_or_default().iter().flat_map(|s| s.addresses.clone().unwrap_or_default()).map(|a| a.ip).collect();
        ips.sort();
        let slice = slices.get("kubernetes").await.unwrap();
        let mut slice_ips: Vec<String> = slice.endpoints.iter().flat_map(|e| e.addresses.clone()).collect();
        slice_ips.sort();
        assert_eq!(ips, slice_ips, "the Endpoints and the EndpointSlice agree");
        ips
    };
    reconcile(&registry, a, 6443, 2).await.unwrap();
    reconcile(&registry, b, 6443, 60).await.unwrap();
    assert_eq!(listed().await, ["10.0.0.1", "10.0.0.2"]);
    let version = endpoints.get("kubernetes").await.unwrap().metadata.resource_version;
    reconcile(&registry, b, 6443, 60).await.unwrap();
    assert_eq!(endpoints.get("kubernetes").await.unwrap().metadata.resource_version, version, "an unchanged list writes nothing");

    // a stops renewing: after its 2 s lease (etcd expires leases within
    // about a second of their TTL), b's next round drops it.
    kubelab_scenarios::wait::until_within("b's rounds dropping the expired apiserver", Duration::from_secs(20), || async {
        reconcile(&registry, b, 6443, 60).await.unwrap();
        match listed().await {
            now if now == ["10.0.0.2"] => Ok(()),
            now => Err(format!("listed: {now:?}")),
        }
    })
    .await;
    withdraw(&registry, b, 6443).await.unwrap();
    assert!(listed().await.is_empty());
    let ep = endpoints.get("kubernetes").await.unwrap();
    assert_eq!(ep.subsets.unwrap_or_default().len(), 0);

    // Two apiservers (each with its own etcd client, on their own threads)
    // reconciling at the same moment both end up listed when both rounds
    // are over, whichever order their reads and writes took.
    let (c, d): (std::net::IpAddr, std::net::IpAddr) = ("10.0.0.3".parse().unwrap(), "10.0.0.4".parse().unwrap());
    let other = std::sync::Arc::new(apiserver::registry::Registry::new(apiserver::storage::Etcd::connect(std::slice::from_ref(&api.etcd_url)).await.unwrap()));
    for round in 0..40u64 {
        let other = other.clone();
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_micros(round * 50)).await;
            reconcile(&other, d, 6443, 60).await
        });
        reconcile(&registry, c, 6443, 60).await.unwrap();
        late.await.unwrap().unwrap();
        assert_eq!(listed().await, ["10.0.0.3", "10.0.0.4"]);
        let (first, second) = tokio::join!(withdraw(&registry, c, 6443), withdraw(&registry, d, 6443));
        first.unwrap();
        second.unwrap();
        assert!(listed().await.is_empty());
    }
}

/// Events expire after the event TTL (upstream's --event-ttl), through an
/// etcd lease; other objects stay.
#[tokio::test]
async fn events_expire_after_their_ttl() {
    let api = TestApi::start_with(Options { event_ttl: Some(Duration::from_secs(2)), ..Default::default() });
    let client = api.client().await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let event = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Testing", "message": "hello", "type": "Normal"
    }))
    .unwrap();
    events.create(&PostParams::default(), &event).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(&PostParams::default(), &configmap("stays", json!({}))).await.unwrap();
    kubelab_scenarios::wait::until_within("the event expiring after its TTL", Duration::from_secs(20), || async {
        match events.get_opt("e1").await.unwrap() {
            None => Ok(()),
            Some(_) => Err("event e1 is still there".to_string()),
        }
    })
    .await;
    assert!(cms.get_opt("stays").await.unwrap().is_some());
}

/// etcd behind mutual TLS, as the lab runs it (issue 26): the apiserver
/// reads and writes with its etcd client certificate and componentstatuses
/// asks etcd the same way; a client with etcd's CA but no certificate, or
/// with a certificate of the lab's main CA (the admin's), is refused.
#[tokio::test]
async fn etcd_behind_mutual_tls() {
    use apiserver::storage::{Etcd, EtcdTls};
    let api = TestApi::start_with(Options { etcd_tls: true, ..Default::default() });
    assert!(api.etcd_url.starts_with("https://"), "{}", api.etcd_url);
    api.kubectl(&["create", "configmap", "over-tls", "--from-literal=a=1"]).succeeded();
    assert_eq!(api.kubectl(&["get", "configmap", "over-tls", "-o", "name"]).succeeded().trim(), "configmap/over-tls");
    let health = api.kubectl(&["get", "componentstatuses", "etcd-0", "-o", "jsonpath={.conditions[0].status}"]).succeeded();
    assert_eq!(health.trim(), "True");

    let pki = api.pki_dir();
    let ca = pki.join("etcd/ca.crt");
    let read = |tls: Option<EtcdTls>| {
        let url = api.etcd_url.clone();
        async move {
            let etcd = Etcd::connect_with(&[url], tls.as_ref()).await?;
            etcd.get("/registry/configmaps/default/over-tls").await.map_err(|e| anyhow::anyhow!("{e}"))
        }
    };
    let as_apiserver = EtcdTls::from_files(Some(&ca), Some(&pki.join("apiserver-etcd-client.crt")), Some(&pki.join("apiserver-etcd-client.key"))).unwrap();
    assert!(read(as_apiserver).await.unwrap().is_some());
    let anonymous = EtcdTls::from_files(Some(&ca), None, None).unwrap();
    assert!(read(anonymous).await.is_err(), "no client certificate");
    let admin = EtcdTls::from_files(Some(&ca), Some(&pki.join("admin.crt")), Some(&pki.join("admin.key"))).unwrap();
    assert!(read(admin).await.is_err(), "a certificate of the lab's main CA");
}
