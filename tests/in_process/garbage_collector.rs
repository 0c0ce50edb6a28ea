//! The garbage collector against the real apiserver: `kubectl delete` of
//! an owner with each cascade ends as upstream's (owners made by the test,
//! and Deployments with the deployment and replicaset controllers), owners
//! that never existed or live elsewhere count as gone, and a namespace
//! whose owner is deleting its dependents in the foreground still goes.

use std::time::Duration;

use kubelab_scenarios::apiserver::TestApi;
use serde_json::Value;

const GC: &str = "garbage-collector-controller";

/// How long the collector is given for anything (it acts in milliseconds;
/// the margin is for a loaded machine).
const DEADLINE: Duration = Duration::from_secs(60);

fn start(controllers: &[&str]) -> (TestApi, kubelab_scenarios::apiserver::ControllerManager) {
    let api = TestApi::start();
    let controllers = api.controller_manager_with(controllers, controller_manager::Settings::default());
    (api, controllers)
}

fn wait_until(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    kubelab_scenarios::wait::until_blocking(what, DEADLINE, &mut check)
}

/// The object as JSON, or None when the API says it does not exist.
fn get(api: &TestApi, namespace: &str, object: &str) -> Option<Value> {
    let out = api.kubectl(&["get", object, "-n", namespace, "-o", "json", "--ignore-not-found"]);
    assert_eq!(out.code, 0, "kubectl get {object}: {}", out.stderr);
    (!out.stdout.trim().is_empty()).then(|| serde_json::from_str(&out.stdout).unwrap())
}

fn uid(api: &TestApi, namespace: &str, object: &str) -> String {
    get(api, namespace, object).unwrap_or_else(|| panic!("{object} exists"))["metadata"]["uid"].as_str().unwrap().to_string()
}

fn apply(api: &TestApi, manifest: &str) {
    api.kubectl_stdin(&["apply", "-f", "-"], manifest).succeeded();
}

/// An ownerReferences entry in YAML flow style.
fn owner(api_version: &str, kind: &str, name: &str, uid: &str, block: bool) -> String {
    format!("{{apiVersion: {api_version}, kind: {kind}, name: {name}, uid: {uid}, controller: true, blockOwnerDeletion: {block}}}")
}

fn configmap(namespace: &str, name: &str, owners: &[String]) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  ownerReferences: [{}]\ndata: {{k: v}}\n---\n",
        owners.join(", ")
    )
}

fn owner_uids(object: &Value) -> Vec<String> {
    object["metadata"]["ownerReferences"].as_array().into_iter().flatten().map(|r| r["uid"].as_str().unwrap().to_string()).collect()
}

fn gone(api: &TestApi, namespace: &str, objects: &[&str]) -> Result<(), String> {
    let left: Vec<&&str> = objects.iter().filter(|o| get(api, namespace, o).is_some()).collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("{left:?} still exist"))
    }
}

#[test]
fn background_deletion_collects_dependents_whose_owners_are_all_gone() {
    let (api, _gc) = start(&[GC]);
    apply(&api, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner, namespace: default}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: keeper, namespace: default}\n");
    let (owner_uid, keeper_uid) = (uid(&api, "default", "configmap/owner"), uid(&api, "default", "configmap/keeper"));
    let owned = owner("v1", "ConfigMap", "owner", &owner_uid, false);
    let kept = owner("v1", "ConfigMap", "keeper", &keeper_uid, false);
    let manifest = configmap("default", "dep-1", std::slice::from_ref(&owned))
        + &configmap("default", "dep-2", std::slice::from_ref(&owned))
        + &configmap("default", "shared", &[owned.clone(), kept.clone()])
        + "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated, namespace: default}\n";
    apply(&api, &manifest);

    // kubectl's default cascade is background: the owner goes at once.
    api.kubectl(&["delete", "configmap", "owner"]).succeeded();
    wait_until("dependents of the deleted owner collected", || gone(&api, "default", &["configmap/dep-1", "configmap/dep-2"]));
    // A dependent with an owner left stays, without the reference to the
    // gone one (as upstream's collector patches it).
    wait_until("the shared dependent keeps only its remaining owner", || {
        let shared = get(&api, "default", "configmap/shared").ok_or("configmap/shared was deleted")?;
        match owner_uids(&shared) {
            uids if uids == [keeper_uid.clone()] => Ok(()),
            uids => Err(format!("its owners are {uids:?}")),
        }
    });
    assert!(get(&api, "default", "configmap/unrelated").is_some(), "an object without owners was deleted");
    assert!(get(&api, "default", "configmap/keeper").is_some(), "a remaining owner was deleted");
}

#[test]
fn orphan_deletion_leaves_dependents_without_the_reference() {
    let (api, _gc) = start(&[GC]);
    apply(&api, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner, namespace: default}\n");
    let owned = owner("v1", "ConfigMap", "owner", &uid(&api, "default", "configmap/owner"), true);
    apply(&api, &(configmap("default", "dep-1", std::slice::from_ref(&owned)) + &configmap("default", "dep-2", &[owned])));

    // kubectl waits until the owner is gone: the collector must have
    // orphaned the dependents and removed the orphan finalizer.
    let out = api.kubectl(&["delete", "configmap", "owner", "--cascade=orphan", "--timeout=60s"]);
    assert_eq!(out.code, 0, "the owner was not released: {}\n{:?}", out.stderr, get(&api, "default", "configmap/owner"));
    for name in ["configmap/dep-1", "configmap/dep-2"] {
        let dependent = get(&api, "default", name).unwrap_or_else(|| panic!("{name} was deleted, not orphaned"));
        assert!(dependent["metadata"].get("ownerReferences").is_none(), "{name} still names its owner: {dependent}");
    }
}

#[test]
fn foreground_deletion_removes_the_owner_after_its_blocking_dependents() {
    let (api, _gc) = start(&[GC]);
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: busybox}]}\n";
    apply(&api, rs);
    let owned = |block| owner("apps/v1", "ReplicaSet", "web", &uid(&api, "default", "replicaset/web"), block);
    let pod = |name: &str, owner: String, finalizers: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{app: web}}\n  finalizers: [{finalizers}]\n  ownerReferences: [{owner}]\nspec: {{containers: [{{name: c, image: busybox}}]}}\n---\n")
    };
    // One blocking pod is held by a finalizer of its own, so the owner's
    // wait can be seen; one pod does not block its owner at all.
    let manifest = pod("web-a", owned(true), "") + &pod("web-held", owned(true), "kubelab.dev/hold") + &pod("web-free", owned(false), "");
    apply(&api, &manifest);

    api.kubectl(&["delete", "replicaset", "web", "--cascade=foreground", "--wait=false"]).succeeded();
    wait_until("the dependents deleted while the owner waits", || {
        gone(&api, "default", &["pod/web-a", "pod/web-free"])?;
        let held = get(&api, "default", "pod/web-held").ok_or("the held pod went despite its finalizer")?;
        if held["metadata"]["deletionTimestamp"].is_null() {
            return Err("the held pod is not being deleted".into());
        }
        Ok(())
    });
    let owner_now = get(&api, "default", "replicaset/web").expect("the owner went before its blocking dependent");
    assert_eq!(owner_now["metadata"]["finalizers"], serde_json::json!(["foregroundDeletion"]), "{owner_now}");
    assert!(!owner_now["metadata"]["deletionTimestamp"].is_null());

    // The last blocking dependent goes: then the owner.
    api.kubectl(&["patch", "pod", "web-held", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]).succeeded();
    wait_until("the owner deleted after its last blocking dependent", || gone(&api, "default", &["pod/web-held", "replicaset/web"]));
}

#[test]
fn foreground_deletion_through_kubectl_waits_and_ends() {
    let (api, _gc) = start(&[GC]);
    apply(&api, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner, namespace: default}\n");
    let owned = owner("v1", "ConfigMap", "owner", &uid(&api, "default", "configmap/owner"), true);
    // A chain: owner → middle → leaf, all blocking.
    apply(&api, &configmap("default", "middle", &[owned]));
    let middle = owner("v1", "ConfigMap", "middle", &uid(&api, "default", "configmap/middle"), true);
    apply(&api, &configmap("default", "leaf", &[middle]));
    let out = api.kubectl(&["delete", "configmap", "owner", "--cascade=foreground", "--timeout=60s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // By the time the owner is gone, so is everything it waited for.
    gone(&api, "default", &["configmap/middle", "configmap/leaf"]).unwrap();
}

#[test]
fn owners_that_never_existed_or_were_replaced_count_as_gone() {
    let (api, _gc) = start(&[GC]);
    apply(&api, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: reborn, namespace: default}\n");
    let ghost = owner("v1", "ConfigMap", "ghost", "0b5e7c8e-0000-4000-8000-000000000001", false);
    // An owner by a name that exists, but not with this uid.
    let impostor = owner("v1", "ConfigMap", "reborn", "0b5e7c8e-0000-4000-8000-000000000002", false);
    let real = owner("v1", "ConfigMap", "reborn", &uid(&api, "default", "configmap/reborn"), false);
    apply(
        &api,
        &(configmap("default", "orphan-of-ghost", &[ghost])
            + &configmap("default", "orphan-of-impostor", &[impostor])
            + &configmap("default", "child", &[real])),
    );
    wait_until("dependents of absent owners collected", || gone(&api, "default", &["configmap/orphan-of-ghost", "configmap/orphan-of-impostor"]));
    assert!(get(&api, "default", "configmap/child").is_some(), "a dependent of an existing owner was collected");
}

#[test]
fn a_dependent_in_another_namespace_than_its_owner_is_invalid() {
    let (api, _gc) = start(&[GC]);
    apply(
        &api,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: elsewhere}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner, namespace: default}\n",
    );
    let owner_uid = uid(&api, "default", "configmap/owner");
    apply(&api, &configmap("elsewhere", "stray", &[owner("v1", "ConfigMap", "owner", &owner_uid, false)]));
    // The owner is looked for in the dependent's namespace, where it is
    // not: the dependent is collected, and an event says why.
    wait_until("the cross-namespace dependent collected", || gone(&api, "elsewhere", &["configmap/stray"]));
    let expected = format!("ownerRef [v1/ConfigMap, namespace: elsewhere, name: owner, uid: {owner_uid}] does not exist in namespace \"elsewhere\"");
    wait_until("the OwnerRefInvalidNamespace event", || {
        let out = api.kubectl(&["get", "events", "-n", "elsewhere", "--field-selector", "reason=OwnerRefInvalidNamespace", "-o", "json"]);
        let events: Value = serde_json::from_str(&out.stdout).map_err(|e| format!("no event list ({e}): {}", out.stderr))?;
        let items = events["items"].as_array().cloned().unwrap_or_default();
        match items.iter().find(|e| e["involvedObject"]["name"] == "stray") {
            Some(e) if e["message"] == expected.as_str() && e["type"] == "Warning" && e["source"]["component"] == GC => Ok(()),
            Some(e) => Err(format!("the event reads {e}")),
            None => Err(format!("no such event among {items:?}")),
        }
    });
    assert!(get(&api, "default", "configmap/owner").is_some(), "the owner was deleted");
}

#[test]
fn a_namespace_whose_owner_waits_for_a_held_dependent_is_deleted_once_it_is_released() {
    let (api, _controllers) = start(&[GC, "namespace-controller"]);
    apply(
        &api,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: doomed}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: owner, namespace: doomed}\n",
    );
    let owned = owner("v1", "ConfigMap", "owner", &uid(&api, "doomed", "configmap/owner"), true);
    apply(&api, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: outside, namespace: default}\n");
    let held = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: doomed\n  finalizers: [kubelab.dev/hold]\n  ownerReferences: [{owned}]\n"
    );
    apply(&api, &(configmap("doomed", "dep", std::slice::from_ref(&owned)) + &held));
    api.kubectl(&["delete", "configmap", "owner", "-n", "doomed", "--cascade=foreground", "--wait=false"]).succeeded();
    api.kubectl(&["delete", "namespace", "doomed", "--wait=false"]).succeeded();
    // The namespace controller deletes what is left; the owner still waits
    // for the held dependent, so the namespace cannot go yet.
    wait_until("the namespace emptied but for the owner and its held dependent", || {
        gone(&api, "doomed", &["configmap/dep"])?;
        let held = get(&api, "doomed", "configmap/held").ok_or("the held dependent went despite its finalizer")?;
        if held["metadata"]["deletionTimestamp"].is_null() {
            return Err("the held dependent is not being deleted".into());
        }
        get(&api, "doomed", "configmap/owner").ok_or("the owner went before its blocking dependent")?;
        Ok(())
    });
    api.kubectl(&["patch", "configmap", "held", "-n", "doomed", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]).succeeded();
    let out = api.kubectl(&["wait", "--for=delete", "namespace/doomed", "--timeout=60s"]);
    assert_eq!(out.code, 0, "the namespace was not deleted: {}\n{:?}", out.stderr, get(&api, "doomed", "configmap/owner"));
    assert!(get(&api, "default", "configmap/outside").is_some(), "an object outside the namespace was deleted");
}

/// Names of `kind` objects labelled `app=<app>`, with their owners' kinds.
fn owned_by(api: &TestApi, kind: &str, app: &str) -> Vec<(String, Vec<String>)> {
    let out = api.kubectl(&["get", kind, "-l", &format!("app={app}"), "-o", "json"]).succeeded();
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let owners = o["metadata"]["ownerReferences"].as_array().into_iter().flatten().map(|r| r["kind"].as_str().unwrap().to_string()).collect();
            (o["metadata"]["name"].as_str().unwrap().to_string(), owners)
        })
        .collect()
}

/// Waits for a Deployment's ReplicaSet and `replicas` pods, made by the
/// deployment and replicaset controllers.
fn deployment_up(api: &TestApi, name: &str, replicas: usize) {
    api.kubectl(&["create", "deployment", name, "--image=busybox", &format!("--replicas={replicas}")]).succeeded();
    wait_until(&format!("deployment {name}'s ReplicaSet and {replicas} pods"), || {
        let (sets, pods) = (owned_by(api, "replicasets", name), owned_by(api, "pods", name));
        if sets.len() == 1 && pods.len() == replicas {
            Ok(())
        } else {
            Err(format!("ReplicaSets {sets:?}, pods {pods:?}"))
        }
    });
}

#[test]
fn deleting_a_deployment_cascades_as_upstream() {
    let (api, _controllers) = start(&[GC, "deployment-controller", "replicaset-controller"]);

    // Background: the Deployment goes at once, then its ReplicaSet, then
    // the ReplicaSet's pods.
    deployment_up(&api, "back", 3);
    api.kubectl(&["delete", "deployment", "back"]).succeeded();
    wait_until("the ReplicaSet and pods of the deleted Deployment collected", || {
        let left = (owned_by(&api, "replicasets", "back"), owned_by(&api, "pods", "back"));
        if left.0.is_empty() && left.1.is_empty() {
            Ok(())
        } else {
            Err(format!("left: {left:?}"))
        }
    });

    // Foreground: kubectl returns when the Deployment is gone, and by then
    // everything it owned, directly or not, is gone.
    deployment_up(&api, "front", 2);
    let out = api.kubectl(&["delete", "deployment", "front", "--cascade=foreground", "--timeout=60s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(owned_by(&api, "replicasets", "front"), [], "a ReplicaSet outlived its foreground-deleted Deployment");
    assert_eq!(owned_by(&api, "pods", "front"), [], "a pod outlived its foreground-deleted Deployment");

    // Orphan: the ReplicaSet stays, owned by nothing; its pods stay its own.
    deployment_up(&api, "kept", 2);
    let out = api.kubectl(&["delete", "deployment", "kept", "--cascade=orphan", "--timeout=60s"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let sets = owned_by(&api, "replicasets", "kept");
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(sets[0].1, Vec::<String>::new(), "the orphaned ReplicaSet still names its Deployment");
    let pods = owned_by(&api, "pods", "kept");
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(pods.iter().all(|(_, owners)| owners == &["ReplicaSet".to_string()]), "{pods:?}");
}

#[test]
fn a_cluster_scoped_dependent_of_a_namespaced_kind_is_left_alone() {
    let (api, _gc) = start(&[GC]);
    let node = |name: &str, owner: String| format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  ownerReferences: [{owner}]\n---\n");
    // A ConfigMap owner has a namespace; a Node has none to look in. As
    // upstream's, the collector neither deletes such a dependent nor
    // retries it.
    let namespaced = owner("v1", "ConfigMap", "ghost", "0b5e7c8e-0000-4000-8000-000000000003", false);
    // Cluster-scoped owners: one that exists, one that never did.
    let system = owner("v1", "Namespace", "kube-system", &uid(&api, "", "namespace/kube-system"), false);
    let absent = owner("v1", "Node", "ghost", "0b5e7c8e-0000-4000-8000-000000000004", false);
    apply(&api, &(node("names-a-configmap", namespaced) + &node("owned-by-kube-system", system) + &node("owned-by-a-ghost", absent)));
    // Once the dependent of the absent Node is collected, the collector
    // has been through the others (created before it).
    wait_until("the Node whose owner never existed collected", || gone(&api, "", &["node/owned-by-a-ghost"]));
    assert!(get(&api, "", "node/names-a-configmap").is_some(), "a cluster-scoped dependent of a namespaced kind was deleted");
    assert!(get(&api, "", "node/owned-by-kube-system").is_some(), "a dependent of an existing cluster-scoped owner was deleted");
}
