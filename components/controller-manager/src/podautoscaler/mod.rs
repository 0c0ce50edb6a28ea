//! The horizontal-pod-autoscaler controller, as upstream's, without a
//! metrics pipeline (kubelab serves no metrics.k8s.io): each
//! HorizontalPodAutoscaler is synced on every change and every sync
//! period (`--horizontal-pod-autoscaler-sync-period`, 15 s): its target's
//! scale subresource is read, a target outside minReplicas..maxReplicas is
//! scaled to the bound, and otherwise the status and events say, in
//! upstream's words, that no metric could be fetched. `decide` holds the
//! decisions; this module reads, writes and records.

pub mod decide;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use component_base::events::{self, EventType, Recorder};

use crate::retries::Retries;
use decide::{Decision, Event};

/// Upstream's `--horizontal-pod-autoscaler-sync-period` default.
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
}

struct Context {
    client: Client,
    recorder: Recorder,
    retries: Retries,
    sync_period: Duration,
}

/// Runs the controller until its watch ends.
pub async fn run(client: Client, sync_period: Duration) {
    let context = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), "horizontal-pod-autoscaler", None),
        retries: Retries::default(),
        sync_period,
    });
    Controller::new(Api::<HorizontalPodAutoscaler>::all(client), watcher::Config::default())
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("horizontal-pod-autoscaler controller: {e}"),
            }
        })
        .await;
}

fn key_of(hpa: &HorizontalPodAutoscaler) -> String {
    format!("{}/{}", hpa.namespace().unwrap_or_default(), hpa.name_any())
}

async fn reconcile(hpa: Arc<HorizontalPodAutoscaler>, context: Arc<Context>) -> Result<Action, Error> {
    if hpa.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    sync(&hpa, &context).await?;
    context.retries.succeeded(&key_of(&hpa));
    Ok(Action::requeue(context.sync_period))
}

fn error_policy(hpa: Arc<HorizontalPodAutoscaler>, error: &Error, context: Arc<Context>) -> Action {
    let key = key_of(&hpa);
    tracing::warn!(hpa = %key, "sync failed: {error}");
    Action::requeue(context.retries.failed(&key))
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// The message of an API error as upstream's clients print it.
fn message_of(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// The scale subresource's API of the target: its kind resolved to a
/// resource through discovery of its group-version (upstream's RESTMapper).
async fn target_api(client: &Client, hpa: &HorizontalPodAutoscaler) -> Result<Api<DynamicObject>, String> {
    let reference = hpa.spec.as_ref().map(|s| s.scale_target_ref.clone()).unwrap_or_default();
    let api_version = reference.api_version.unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &reference.kind);
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, _)) => Ok(Api::namespaced_with(client.clone(), &hpa.namespace().unwrap_or_default(), &resource)),
        Err(kube::Error::Api(s)) if s.code != 404 => Err(s.message),
        Err(_) => Err(format!("no matches for kind {:?} in group {:?}", reference.kind, group)),
    }
}

async fn sync(hpa: &HorizontalPodAutoscaler, context: &Context) -> Result<(), Error> {
    let name = hpa.spec.as_ref().map(|s| s.scale_target_ref.name.clone()).unwrap_or_default();
    let scales = match target_api(&context.client, hpa).await {
        Ok(api) => api,
        Err(why) => return finish(hpa, context, decide::scale_unreadable(hpa, &why, &now())).await,
    };
    let scale = match scales.get_scale(&name).await {
        Ok(scale) => scale,
        Err(e) => return finish(hpa, context, decide::scale_unreadable(hpa, &message_of(&e), &now())).await,
    };
    let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let selector = scale.status.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    match decide::decide(hpa, current, &selector) {
        Decision::Rescale { to, reason } => {
            let mut wanted = scale.clone();
            wanted.spec.get_or_insert_with(Default::default).replicas = Some(to);
            let failed = scales.replace_scale(&name, &PostParams::default(), &wanted).await.err().map(|e| message_of(&e));
            finish(hpa, context, decide::after_rescale(hpa, current, to, reason, failed.as_deref(), &now())).await
        }
        decision => finish(hpa, context, decide::without_rescale(hpa, &decision, current, &now())).await,
    }
}

/// Records the events and writes the status if it changed.
async fn finish(hpa: &HorizontalPodAutoscaler, context: &Context, (status, recorded): (HorizontalPodAutoscalerStatus, Vec<Event>)) -> Result<(), Error> {
    let reference = events::reference(hpa);
    for e in recorded {
        let kind = if e.warning { EventType::Warning } else { EventType::Normal };
        context.recorder.event(reference.clone(), kind, e.reason, e.message);
    }
    if hpa.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut updated = hpa.clone();
    updated.status = Some(status);
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(context.client.clone(), &hpa.namespace().unwrap_or_default());
    api.replace_status(&hpa.name_any(), &PostParams::default(), &updated).await?;
    Ok(())
}
