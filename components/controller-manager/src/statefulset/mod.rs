//! The statefulset controller, as upstream's: pods with stable names
//! `<set>-<ordinal>`, each with the hostname of its name and the subdomain
//! of the set's `serviceName` (so it is `<pod>.<service>` in cluster DNS),
//! and a PersistentVolumeClaim `<template>-<set>-<ordinal>` per
//! volumeClaimTemplate that outlives it. Creation, scale-down and rolling
//! updates follow `plan`. Each template the set had is kept as a
//! ControllerRevision named `<set>-<hash>`, whose name its pods carry in
//! `controller-revision-hash`, so pods below a rolling update's partition
//! are recreated as they were.
//!
//! Each sync reads the StatefulSet and its pods from the API: the pods'
//! names are fixed, so acting on a stale cache could only repeat a write.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use component_base::events::{self, Recorder};
use component_base::label_selector::Selector;

use crate::deployment::revisions::template_hash;
use crate::ownership::{claim, controller_reference};
use crate::pods::{self, controller_of};
use crate::replicaset::message_of;
use crate::retries::Retries;
use plan::{Member, Step, Want};

/// Upstream's `--concurrent-statefulset-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 5;

/// The label naming a pod's ControllerRevision.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// Labels upstream puts on every pod of a set: its name and its ordinal.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Manage(String),
}

struct Context {
    client: Client,
    recorder: Recorder,
    retries: Retries,
}

/// Runs the statefulset controller until its watches end.
pub async fn run(client: Client, concurrency: u16) {
    let context =
        Arc::new(Context { client: client.clone(), recorder: Recorder::new(client.clone(), "statefulset-controller", None), retries: Retries::default() });
    Controller::new(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .with_config(Config::default().concurrency(concurrency))
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("statefulset controller: {e}"),
            }
        })
        .await;
}

fn key_of(set: &StatefulSet) -> String {
    format!("{}/{}", set.namespace().unwrap_or_default(), set.name_any())
}

async fn reconcile(set: Arc<StatefulSet>, context: Arc<Context>) -> Result<Action, Error> {
    let action = sync(&set, &context).await?;
    context.retries.succeeded(&key_of(&set));
    Ok(action)
}

fn error_policy(set: Arc<StatefulSet>, error: &Error, context: Arc<Context>) -> Action {
    let key = key_of(&set);
    tracing::warn!(statefulset = %key, "sync failed: {error}");
    Action::requeue(context.retries.failed(&key))
}

/// The ordinal of a pod named `<set>-<ordinal>`, if it is one.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok().filter(|n: &i32| *n >= 0)
}

/// The claim a pod of `ordinal` uses for the volumeClaimTemplate `template`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

fn member(set: &str, pod: &Pod) -> Option<Member> {
    Some(Member {
        ordinal: ordinal_of(set, &pod.name_any())?,
        ready: pods::phase(pod) == "Running" && pods::is_ready(pod),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        ended: matches!(pods::phase(pod), "Succeeded" | "Failed"),
        revision: pod.labels().get(REVISION_LABEL).cloned().unwrap_or_default(),
    })
}

/// The pod of `ordinal` as `template` describes it.
fn pod_for(set: &StatefulSet, ordinal: i32, template: &PodTemplateSpec, revision: &str) -> Pod {
    let name = format!("{}-{ordinal}", set.name_any());
    let spec = set.spec.clone().unwrap_or_default();
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), revision.into());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    if let Some(service) = spec.service_name.filter(|s| !s.is_empty()) {
        pod_spec.subdomain = Some(service);
    }
    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
    for claim in spec.volume_claim_templates.iter().flatten() {
        let volume_name = claim.name_any();
        volumes.retain(|v| v.name != volume_name);
        volumes.push(Volume {
            name: volume_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(&volume_name, &set.name_any(), ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    if volumes.is_empty() {
        pod_spec.volumes = None;
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![controller_reference(set)]),
            ..Default::default()
        },
        spec: Some(pod_spec),
        status: None,
    }
}

/// The claims of `ordinal`, from the volumeClaimTemplates, labelled with
/// the set's selector as upstream does. With `whenDeleted: Delete` the set
/// owns them, so they go with it.
fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.clone().unwrap_or_default();
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    let delete_with_set = spec.persistent_volume_claim_retention_policy.as_ref().and_then(|p| p.when_deleted.as_deref()) == Some("Delete");
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let meta = template.metadata.clone();
            let mut labels = meta.labels.unwrap_or_default();
            labels.extend(selector_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(&template.name_any(), &set.name_any(), ordinal)),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: meta.annotations,
                    owner_references: delete_with_set.then(|| vec![controller_reference(set)]),
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The template a revision holds (`data.spec.template`, as upstream writes it).
fn revision_template(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let data = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
    serde_json::from_value(data).ok()
}

async fn sync(cached: &StatefulSet, context: &Context) -> Result<Action, Error> {
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let sets: Api<StatefulSet> = Api::namespaced(context.client.clone(), &namespace);
    let Some(set) = sets.get_opt(&name).await? else { return Ok(Action::await_change()) };
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let reference = events::reference(&set);
    let spec = set.spec.clone().unwrap_or_default();
    let selector = match Selector::parse(Some(&spec.selector)) {
        Ok(s) => s,
        Err(e) => {
            context.recorder.warning(reference, "InvalidSelector", e.to_string());
            return Ok(Action::await_change());
        }
    };
    let pods_api: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    let candidates = pods_api.list(&ListParams::default()).await?.items;
    let owned = claim(&pods_api, &controller_reference(&set), false, &selector, candidates).await?;

    // Revisions: the current template's, created when new.
    let revisions_api: Api<ControllerRevision> = Api::namespaced(context.client.clone(), &namespace);
    let uid = set.uid().unwrap_or_default();
    let mut revisions: Vec<ControllerRevision> =
        revisions_api.list(&ListParams::default()).await?.items.into_iter().filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid)).collect();
    let status = set.status.clone().unwrap_or_default();
    // Upstream hashes with the collision count from the first revision on
    // (0 before any collision), so the name never changes when the status
    // first records the count.
    let update_revision = format!("{name}-{}", template_hash(&spec.template, Some(status.collision_count.unwrap_or(0))));
    if !revisions.iter().any(|r| r.name_any() == update_revision) {
        let next = revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let revision = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(update_revision.clone()),
                namespace: Some(namespace.clone()),
                labels: spec.selector.match_labels.clone(),
                owner_references: Some(vec![controller_reference(&set)]),
                ..Default::default()
            },
            data: Some(RawExtension(serde_json::json!({"spec": {"template": spec.template}}))),
            revision: next,
        };
        match revisions_api.create(&PostParams::default(), &revision).await {
            Ok(created) => revisions.push(created),
            Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => revisions.push(revisions_api.get(&update_revision).await?),
            Err(e) => return Err(e.into()),
        }
    }
    let current_revision = status.current_revision.clone().filter(|c| revisions.iter().any(|r| &r.name_any() == c)).unwrap_or_else(|| update_revision.clone());
    let templates: BTreeMap<String, PodTemplateSpec> = revisions.iter().filter_map(|r| Some((r.name_any(), revision_template(r)?))).collect();

    let members: Vec<Member> = owned.iter().filter_map(|p| member(&name, p)).collect();
    let rolling = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
    let want = Want {
        start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0),
        replicas: spec.replicas.unwrap_or(1),
        parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
        rolling,
        partition: spec.update_strategy.as_ref().and_then(|u| u.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0),
        current_revision: current_revision.clone(),
        update_revision: update_revision.clone(),
    };
    let mut failure = None;
    for step in plan::plan(&want, &members) {
        let result = match step {
            Step::Create { ordinal, revision } => {
                let template = templates.get(&revision).unwrap_or(&spec.template);
                create_member(&set, ordinal, template, &revision, context).await
            }
            Step::Delete { ordinal } => delete_member(&set, ordinal, &pods_api, context).await,
        };
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
    }

    write_status(&sets, &set, &owned, &want).await?;
    prune_revisions(&revisions_api, &revisions, &owned, &want, spec.revision_history_limit.unwrap_or(10)).await?;
    match failure {
        Some(message) => Err(Error::Manage(message)),
        None => Ok(Action::await_change()),
    }
}

async fn create_member(set: &StatefulSet, ordinal: i32, template: &PodTemplateSpec, revision: &str, context: &Context) -> Result<(), String> {
    let namespace = set.namespace().unwrap_or_default();
    let reference = events::reference(set);
    let pod = pod_for(set, ordinal, template, revision);
    let pod_name = pod.name_any();
    // Claims first: a pod never starts without the volume it names.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(context.client.clone(), &namespace);
    for claim in claims_for(set, ordinal) {
        match claims.create(&PostParams::default(), &claim).await {
            Ok(_) => context.recorder.normal(
                reference.clone(),
                "SuccessfulCreate",
                format!("create Claim {} Pod {pod_name} in StatefulSet {} success", claim.name_any(), set.name_any()),
            ),
            Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {}
            Err(e) => {
                let message =
                    format!("create Claim {} for Pod {pod_name} in StatefulSet {} failed error: {}", claim.name_any(), set.name_any(), message_of(&e));
                context.recorder.warning(reference.clone(), "FailedCreate", message.clone());
                return Err(message);
            }
        }
    }
    let pods: Api<Pod> = Api::namespaced(context.client.clone(), &namespace);
    match pods.create(&PostParams::default(), &pod).await {
        Ok(_) => {
            context.recorder.normal(reference, "SuccessfulCreate", format!("create Pod {pod_name} in StatefulSet {} successful", set.name_any()));
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => Ok(()),
        Err(e) => {
            let message = format!("create Pod {pod_name} in StatefulSet {} failed error: {}", set.name_any(), message_of(&e));
            context.recorder.warning(reference, "FailedCreate", message.clone());
            Err(message)
        }
    }
}

async fn delete_member(set: &StatefulSet, ordinal: i32, pods: &Api<Pod>, context: &Context) -> Result<(), String> {
    let pod_name = format!("{}-{ordinal}", set.name_any());
    let reference = events::reference(set);
    match pods.delete(&pod_name, &DeleteParams::default()).await {
        Ok(_) => {
            context.recorder.normal(reference, "SuccessfulDelete", format!("delete Pod {pod_name} in StatefulSet {} successful", set.name_any()));
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => {
            let message = format!("delete Pod {pod_name} in StatefulSet {} failed error: {}", set.name_any(), message_of(&e));
            context.recorder.warning(reference, "FailedDelete", message.clone());
            Err(message)
        }
    }
}

/// The counts of pods as they were found at the start of this sync, and
/// the revisions; the update is complete (current = update) once every
/// wanted pod runs the update revision and is ready.
async fn write_status(api: &Api<StatefulSet>, set: &StatefulSet, owned: &[Pod], want: &Want) -> Result<(), kube::Error> {
    let spec = set.spec.clone().unwrap_or_default();
    let name = set.name_any();
    let live: Vec<&Pod> = owned.iter().filter(|p| ordinal_of(&name, &p.name_any()).is_some() && p.metadata.deletion_timestamp.is_none()).collect();
    let at = |revision: &str| live.iter().filter(|p| p.labels().get(REVISION_LABEL).map(String::as_str) == Some(revision)).count() as i32;
    let ready: Vec<&&Pod> = live.iter().filter(|p| pods::is_ready(p)).collect();
    let now = Timestamp::now();
    let updated = at(&want.update_revision);
    let done = updated == want.replicas && ready.len() as i32 == want.replicas && live.len() as i32 == want.replicas;
    let old = set.status.clone().unwrap_or_default();
    let status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: live.len() as i32,
        ready_replicas: Some(ready.len() as i32),
        available_replicas: Some(live.iter().filter(|p| pods::is_available(p, spec.min_ready_seconds.unwrap_or(0), now)).count() as i32),
        current_replicas: Some(if done { updated } else { at(&want.current_revision) }),
        updated_replicas: Some(updated),
        current_revision: Some(if done { want.update_revision.clone() } else { want.current_revision.clone() }),
        update_revision: Some(want.update_revision.clone()),
        collision_count: Some(old.collision_count.unwrap_or(0)),
        conditions: old.conditions.clone(),
    };
    if Some(&status) == set.status.as_ref() {
        return Ok(());
    }
    let patch = serde_json::json!({"status": status});
    match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the oldest revisions beyond `limit` that neither the set nor
/// any of its pods uses.
async fn prune_revisions(api: &Api<ControllerRevision>, revisions: &[ControllerRevision], owned: &[Pod], want: &Want, limit: i32) -> Result<(), kube::Error> {
    let used = |name: &str| {
        name == want.current_revision || name == want.update_revision || owned.iter().any(|p| p.labels().get(REVISION_LABEL).map(String::as_str) == Some(name))
    };
    let mut idle: Vec<&ControllerRevision> = revisions.iter().filter(|r| !used(&r.name_any())).collect();
    idle.sort_by_key(|r| r.revision);
    let excess = idle.len().saturating_sub(limit.max(0) as usize);
    for revision in idle.into_iter().take(excess) {
        match api.delete(&revision.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;

    fn set() -> StatefulSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}], "volumes": [{"name": "www", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            }
        }))
        .unwrap()
    }

    #[test]
    fn members_have_stable_identities() {
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        let s = set();
        let template = s.spec.as_ref().map(|s: &StatefulSetSpec| s.template.clone()).unwrap();
        let pod = pod_for(&s, 2, &template, "web-abc");
        assert_eq!(pod.name_any(), "web-2");
        let spec = pod.spec.unwrap();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-2"), Some("nginx")));
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes.len(), 1, "the claim replaces the template's volume of the same name");
        assert_eq!(volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name, "www-web-2");
        let labels = pod.metadata.labels.unwrap();
        assert_eq!((labels[REVISION_LABEL].as_str(), labels[POD_INDEX_LABEL].as_str(), labels["app"].as_str()), ("web-abc", "2", "nginx"));
        let claims = claims_for(&s, 2);
        assert_eq!(claims[0].name_any(), "www-web-2");
        assert_eq!(claims[0].labels()["app"], "nginx");
        assert_eq!(claims[0].owner_references()[0].name, "web");
    }
}
