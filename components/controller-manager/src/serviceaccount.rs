//! The serviceaccount controller, as upstream's: every active namespace
//! has a `default` ServiceAccount, made again if it is deleted. A
//! namespace that is not Active (being deleted) gets nothing: the
//! apiserver would refuse it, and it is going anyway.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

/// The ServiceAccount every namespace gets.
pub const DEFAULT: &str = "default";

/// Upstream runs this controller with one worker.
const CONCURRENCY: u16 = 1;

/// How soon a namespace whose ServiceAccount could not be made is tried
/// again (the failure is the API's, not the namespace's).
const RETRY: Duration = Duration::from_secs(5);

/// Runs the controller until the namespace watch ends.
pub async fn run(client: Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    Controller::new(namespaces, watcher::Config::default())
        // A deleted `default` account: its namespace is looked at again.
        .watches(accounts, watcher::Config::default().fields(&format!("metadata.name={DEFAULT}")), |account| {
            account.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .with_config(Config::default().concurrency(CONCURRENCY))
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("serviceaccount controller: {e}"),
            }
        })
        .await;
}

async fn reconcile(namespace: Arc<Namespace>, client: Arc<Client>) -> Result<Action, kube::Error> {
    if namespace.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Active") {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.as_ref().clone(), &name);
    if accounts.get_opt(DEFAULT).await?.is_some() {
        return Ok(Action::await_change());
    }
    let account = ServiceAccount { metadata: ObjectMeta { name: Some(DEFAULT.into()), ..Default::default() }, ..Default::default() };
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => tracing::info!(namespace = %name, "created the default ServiceAccount"),
        Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {}
        // The namespace began terminating meanwhile: nothing is wanted there.
        Err(kube::Error::Api(s)) if terminating(&s) => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}

/// Is this the apiserver refusing content in a terminating namespace? By
/// upstream's `NamespaceTerminating` cause, or by its message where the
/// cause is not given.
fn terminating(status: &kube::core::Status) -> bool {
    let cause = status.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"));
    status.is_forbidden() && (cause || status.message.contains("because it is being terminated"))
}

fn error_policy(namespace: Arc<Namespace>, error: &kube::Error, _: Arc<Client>) -> Action {
    tracing::warn!(namespace = %namespace.name_any(), "could not ensure the default ServiceAccount: {error}");
    Action::requeue(RETRY)
}
