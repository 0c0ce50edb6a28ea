//! The namespace controller: empties a namespace that is being deleted and
//! then releases it, as upstream's does.
//!
//! A namespace whose deletion has begun (deletionTimestamp set) keeps the
//! `kubernetes` finalizer in spec.finalizers until this controller has
//! deleted every object of every namespaced resource in it; then it PUTs
//! namespaces/NAME/finalize without that finalizer and the apiserver
//! removes the namespace. Until then the namespace's status conditions
//! say what is left and what failed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::conditions::Findings;
use crate::discovery::{self, ServedResource};

/// The finalizer this controller owns in a namespace's spec.finalizers.
pub const FINALIZER: &str = "kubernetes";

/// How long after its deletion begins a namespace is first emptied, as
/// upstream waits: time for every apiserver to see the namespace
/// terminating (and refuse new objects in it), and for last-moment
/// creations to reach every etcd member, so the sweep misses nothing.
pub const DELETION_GRACE: Duration = Duration::from_secs(5);

/// How long content held by finalizers is given before it is looked at
/// again (upstream's estimate for the garbage collector).
const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

/// Upstream's `--concurrent-namespace-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 10;

/// Backoff of a namespace whose sync fails: from 5 ms, doubling, up to
/// 60 s (upstream's rate limiter for this controller).
const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Why one sync of a namespace did not finish it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// Content could not be (fully) deleted; the namespace is retried.
    #[error("{0}")]
    Content(String),
    #[error("namespace uid has changed across retries")]
    UidChanged,
}

struct Context {
    client: Client,
    /// Consecutive failures per namespace, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

/// Runs the namespace controller until the stream of namespaces ends
/// (never, unless the client's runtime shuts down).
pub async fn run(client: Client, concurrency: u16) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let context = Arc::new(Context { client, failures: Mutex::new(HashMap::new()) });
    Controller::new(namespaces, watcher::Config::default())
        .with_config(Config::default().concurrency(concurrency))
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((namespace, _)) => tracing::debug!(namespace = %namespace.name, "synced"),
                // A namespace looked at again after it was removed: done.
                Err(kube::runtime::controller::Error::ObjectNotFound(namespace)) => tracing::debug!(namespace = %namespace.name, "gone"),
                Err(e) => tracing::warn!("namespace controller: {e}"),
            }
        })
        .await;
}

async fn reconcile(namespace: Arc<Namespace>, context: Arc<Context>) -> Result<Action, Error> {
    let name = namespace.name_any();
    let action = sync(&context.client, &name).await?;
    context.failures.lock().expect("not poisoned").remove(&name);
    Ok(action)
}

fn error_policy(namespace: Arc<Namespace>, error: &Error, context: Arc<Context>) -> Action {
    let name = namespace.name_any();
    tracing::warn!(namespace = %name, "deletion of the namespace's content failed: {error}");
    let mut failures = context.failures.lock().expect("not poisoned");
    let count = failures.entry(name).or_insert(0);
    let delay = BACKOFF_BASE.saturating_mul(1u32 << (*count).min(20)).min(BACKOFF_MAX);
    *count += 1;
    Action::requeue(delay)
}

/// Seconds since `namespace`'s deletion began (0 if it has not).
fn seconds_since_deletion(namespace: &Namespace) -> i64 {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    namespace.metadata.deletion_timestamp.as_ref().map(|t| now - t.0.as_second()).unwrap_or(0)
}

/// One pass over a namespace: what to do next, or why it failed.
pub async fn sync(client: &Client, name: &str) -> Result<Action, Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Other writers may have changed it since the watch saw it.
    let Some(namespace) = namespaces.get_opt(name).await? else {
        return Ok(Action::await_change());
    };
    if namespace.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let waited = Duration::from_secs(seconds_since_deletion(&namespace).max(0) as u64);
    if waited < DELETION_GRACE {
        return Ok(Action::requeue(DELETION_GRACE - waited));
    }
    let Some(namespace) = retry_on_conflict(&namespaces, namespace, mark_terminating).await? else {
        return Ok(Action::await_change());
    };
    if !has_finalizer(&namespace) {
        return Ok(Action::await_change());
    }

    let estimate = delete_all_content(client, &namespaces, namespace.clone()).await?;
    if estimate > 0 {
        // Upstream looks again halfway through the estimate.
        return Ok(Action::requeue(Duration::from_secs((estimate / 2 + 1) as u64)));
    }
    retry_on_conflict(&namespaces, namespace, finalize).await?;
    Ok(Action::await_change())
}

fn has_finalizer(namespace: &Namespace) -> bool {
    namespace.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

type Update = for<'a> fn(&'a Api<Namespace>, Namespace) -> futures_util::future::BoxFuture<'a, Result<Namespace, kube::Error>>;

/// Runs `update` on the namespace, reading it again and retrying when
/// another writer came first. None once the namespace is gone.
async fn retry_on_conflict(namespaces: &Api<Namespace>, mut namespace: Namespace, update: Update) -> Result<Option<Namespace>, Error> {
    loop {
        match update(namespaces, namespace.clone()).await {
            Ok(updated) => return Ok(Some(updated)),
            Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(None),
            Err(kube::Error::Api(status)) if status.is_conflict() => {
                let Some(latest) = namespaces.get_opt(&namespace.name_any()).await? else { return Ok(None) };
                if latest.metadata.uid != namespace.metadata.uid {
                    return Err(Error::UidChanged);
                }
                namespace = latest;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Puts the namespace in phase Terminating if it is not yet.
fn mark_terminating(namespaces: &Api<Namespace>, mut namespace: Namespace) -> futures_util::future::BoxFuture<'_, Result<Namespace, kube::Error>> {
    Box::pin(async move {
        let status = namespace.status.get_or_insert_with(Default::default);
        if status.phase.as_deref() == Some("Terminating") {
            return Ok(namespace);
        }
        status.phase = Some("Terminating".into());
        namespaces.replace_status(&namespace.name_any(), &PostParams::default(), &namespace).await
    })
}

/// Removes this controller's finalizer through namespaces/NAME/finalize
/// (the one way to change spec.finalizers); the apiserver deletes the
/// namespace when none are left.
fn finalize(namespaces: &Api<Namespace>, mut namespace: Namespace) -> futures_util::future::BoxFuture<'_, Result<Namespace, kube::Error>> {
    Box::pin(async move {
        let spec = namespace.spec.get_or_insert_with(Default::default);
        let rest: BTreeSet<String> = spec.finalizers.take().unwrap_or_default().into_iter().filter(|f| f != FINALIZER).collect();
        spec.finalizers = Some(rest.into_iter().collect());
        namespaces.replace_subresource("finalize", &namespace.name_any(), &PostParams::default(), &namespace).await
    })
}

/// What deleting one resource's content left behind.
#[derive(Debug, Default)]
struct Leftover {
    /// Seconds to wait before looking again (0: nothing to wait for).
    estimate: i64,
    remaining: usize,
    by_finalizer: BTreeMap<String, usize>,
}

/// Deletes every namespaced object in the namespace, resource by resource,
/// recording what failed and what remains in the namespace's conditions.
/// Returns how many seconds to wait for what remains; an error when
/// something could not be deleted or discovered.
async fn delete_all_content(client: &Client, namespaces: &Api<Namespace>, mut namespace: Namespace) -> Result<i64, Error> {
    let name = namespace.name_any();
    let mut errors: Vec<String> = Vec::new();
    let mut findings = Findings::default();
    let discovered = match discovery::namespaced_resources(client).await {
        Ok(d) => d,
        Err(e) => {
            // Nothing can be deleted without knowing what exists.
            findings.discovery_failed(e.to_string());
            errors.push(e.to_string());
            Default::default()
        }
    };
    if let Some(message) = discovered.failure_message() {
        findings.discovery_failed(message.clone());
        errors.push(message);
    }
    if !discovered.unparsable_group_versions.is_empty() {
        let message = discovered.unparsable_group_versions.iter().map(|gv| format!("unexpected GroupVersion string: {gv}")).collect::<Vec<_>>().join(", ");
        findings.group_versions_unparsable(message.clone());
        errors.push(message);
    }

    let deleted_seconds_ago = seconds_since_deletion(&namespace);
    let mut estimate = 0;
    let mut by_resource = BTreeMap::new();
    let mut by_finalizer = BTreeMap::new();
    for resource in discovered.resources.iter().filter(|r| r.supports("delete")) {
        let leftover = match delete_resource_content(client, resource, &name, deleted_seconds_ago).await {
            Ok(l) => l,
            Err((l, e)) => {
                findings.content_error(e.clone());
                errors.push(e);
                l
            }
        };
        estimate = estimate.max(leftover.estimate);
        if leftover.remaining > 0 {
            by_resource.insert(resource.group_resource(), leftover.remaining);
            for (finalizer, n) in leftover.by_finalizer {
                *by_finalizer.entry(finalizer).or_insert(0) += n;
            }
        }
    }
    findings.remaining(&by_resource, &by_finalizer);

    // Written even when all is well, so that conditions that said it was
    // not say so no longer.
    if findings.apply(namespace.status.get_or_insert_with(Default::default)) {
        if let Err(e) = namespaces.replace_status(&name, &PostParams::default(), &namespace).await {
            tracing::warn!(namespace = %name, "could not update the namespace's conditions: {e}");
        }
    }
    if errors.is_empty() {
        Ok(estimate)
    } else {
        Err(Error::Content(errors.join("; ")))
    }
}

/// Is this error the server saying it does not do that here (upstream
/// treats 404 as 405 for resources that list no top-level verbs)?
fn unsupported(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 405 || s.is_not_found())
}

/// Go's `%v` of a GroupVersionResource, as upstream's messages print it.
fn gvr(resource: &ServedResource) -> String {
    format!("{{{} {} {}}}", resource.api.group, resource.api.version, resource.api.plural)
}

/// Deletes one resource's objects in the namespace: deletecollection where
/// served, else list and delete each. Then lists what remains.
async fn delete_resource_content(
    client: &Client,
    resource: &ServedResource,
    namespace: &str,
    deleted_seconds_ago: i64,
) -> Result<Leftover, (Leftover, String)> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource.api);
    let mut estimate = 0;
    if resource.api.group.is_empty() && resource.api.plural == "pods" {
        estimate = pods_grace_estimate(client, namespace).await.map_err(|e| (Leftover::default(), e.to_string()))?;
        // The estimate runs from the namespace's deletion: once that long
        // has passed there is nothing more to wait for.
        if deleted_seconds_ago >= estimate {
            estimate = 0;
        }
    }
    let failed = |e: kube::Error| (Leftover { estimate, ..Default::default() }, e.to_string());
    // Background propagation: the garbage collector must not hold anything
    // back with the orphan finalizer; this controller removes all of it.
    let params = DeleteParams::background();
    let mut collection_done = false;
    if resource.supports("deletecollection") {
        match api.delete_collection(&params, &ListParams::default()).await {
            Ok(_) => collection_done = true,
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(failed(e)),
        }
    }
    if !resource.supports("list") {
        return Ok(Leftover { estimate, ..Default::default() });
    }
    if !collection_done {
        let items = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) if unsupported(&e) => return Ok(Leftover { estimate, ..Default::default() }),
            Err(e) => return Err(failed(e)),
        };
        for item in items {
            match api.delete(&item.name_any(), &params).await {
                Ok(_) => {}
                Err(e) if unsupported(&e) => {}
                Err(e) => return Err(failed(e)),
            }
        }
    }

    let remaining = match api.list(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) if unsupported(&e) => return Ok(Leftover { estimate, ..Default::default() }),
        Err(e) => return Err(failed(e)),
    };
    if remaining.is_empty() {
        return Ok(Leftover::default());
    }
    let mut by_finalizer = BTreeMap::new();
    for item in &remaining {
        for finalizer in item.finalizers() {
            *by_finalizer.entry(finalizer.clone()).or_insert(0) += 1;
        }
    }
    let leftover = |estimate| Leftover { estimate, remaining: remaining.len(), by_finalizer: by_finalizer.clone() };
    if estimate > 0 {
        return Ok(leftover(estimate));
    }
    if !by_finalizer.is_empty() {
        return Ok(leftover(FINALIZER_ESTIMATE_SECONDS));
    }
    // Deleted, not held by finalizers, past any grace period, yet still there.
    Err((leftover(0), format!("unexpected items still remain in namespace: {namespace} for gvr: {}", gvr(resource))))
}

/// The longest termination grace period of the namespace's pods that have
/// not finished: how long their kubelets may take to stop them.
async fn pods_grace_estimate(client: &Client, namespace: &str) -> Result<i64, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .max()
        .unwrap_or(0)
        .max(0))
}
