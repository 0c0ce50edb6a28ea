//! The deployment controller, as upstream's: a Deployment owns one
//! ReplicaSet per pod template it has had (its revisions), and moves pods
//! from the old ones to the new one by its strategy (RollingUpdate within
//! maxSurge and maxUnavailable, or Recreate), writing the rollout's
//! progress to its status for `kubectl rollout status`.
//!
//! Module map: `revisions` (which ReplicaSet is which, hashes and
//! revision annotations), `rollout` (the strategies and scaling), `status`
//! (status and conditions). This file wires the watches and runs one sync.

pub mod revisions;
mod rollout;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use component_base::events::{self, Recorder};
use component_base::label_selector::Selector;

use crate::ownership::{claim, controller_reference};
use crate::pods::controller_of;
use crate::retries::Retries;

use revisions::{REVISION, TEMPLATE_HASH};
use status::{PROGRESSING, REPLICA_FAILURE};

/// Upstream's `--concurrent-deployment-syncs` default.
pub const DEFAULT_CONCURRENCY: u16 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Create(String),
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
    retries: Retries,
}

/// Runs the deployment controller until its watches end.
pub async fn run(client: Client, concurrency: u16) {
    let (sets, set_writer) = reflector::store::<ReplicaSet>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let set_events = watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(set_writer).touched_objects();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff().reflect(pod_writer).touched_objects();
    let controller = Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default());
    let deployments = controller.store();
    let deployments_for_pods = deployments.clone();
    let sets_for_pods = sets;
    let context =
        Arc::new(Context { client: client.clone(), pods, recorder: Recorder::new(client, "deployment-controller", None), retries: Retries::default() });
    controller
        .with_config(Config::default().concurrency(concurrency))
        .watches_stream(set_events, move |set: ReplicaSet| deployments_for(&deployments, &set.metadata))
        // Recreate waits for the old pods to go; their deletion is news.
        .watches_stream(pod_events, move |pod: Pod| deployments_of_pod(&deployments_for_pods, &sets_for_pods, &pod))
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok(_) | Err(kube::runtime::controller::Error::ObjectNotFound(_)) => {}
                Err(e) => tracing::warn!("deployment controller: {e}"),
            }
        })
        .await;
}

/// The Deployments a ReplicaSet's change concerns: its controller, or (an
/// orphan) every Deployment of its namespace whose selector matches it.
fn deployments_for(deployments: &Store<Deployment>, meta: &ObjectMeta) -> Vec<ObjectRef<Deployment>> {
    let namespace = meta.namespace.clone().unwrap_or_default();
    if let Some(reference) = controller_of(meta) {
        return if reference.kind == "Deployment" { vec![ObjectRef::new(&reference.name).within(&namespace)] } else { vec![] };
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|d| Selector::parse(d.spec.as_ref().map(|s| &s.selector)).is_ok_and(|s| s.matches(meta.labels.as_ref())))
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// The Deployment whose ReplicaSet controls a pod.
fn deployments_of_pod(deployments: &Store<Deployment>, sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<Deployment>> {
    let Some(reference) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else { return vec![] };
    let key = ObjectRef::new(&reference.name).within(&pod.namespace().unwrap_or_default());
    match sets.get(&key) {
        Some(set) if controller_of(&set.metadata).is_some() => deployments_for(deployments, &set.metadata),
        _ => vec![],
    }
}

async fn reconcile(deployment: Arc<Deployment>, context: Arc<Context>) -> Result<Action, Error> {
    // As upstream's controllers start their workers only once their
    // informers have synced: a decision made on a half-listed cache (no
    // pods yet, after a restart) would create or drop what already exists.
    let _ = context.pods.wait_until_ready().await;
    let key = format!("{}/{}", deployment.namespace().unwrap_or_default(), deployment.name_any());
    // The Deployment as the API has it now (the trigger's copy may predate
    // a template change, which decides which ReplicaSet is the new one).
    let api: Api<Deployment> = Api::namespaced(context.client.clone(), &deployment.namespace().unwrap_or_default());
    let Some(deployment) = api.get_opt(&deployment.name_any()).await? else { return Ok(Action::await_change()) };
    let action = Sync::new(&deployment, &context).run().await?;
    context.retries.succeeded(&key);
    Ok(action)
}

fn error_policy(deployment: Arc<Deployment>, error: &Error, context: Arc<Context>) -> Action {
    let key = format!("{}/{}", deployment.namespace().unwrap_or_default(), deployment.name_any());
    match error {
        Error::Api(kube::Error::Api(s)) if s.is_conflict() => tracing::debug!(deployment = %key, "sync raced another writer: {error}"),
        _ => tracing::warn!(deployment = %key, "sync failed: {error}"),
    }
    Action::requeue(context.retries.failed(&key))
}

/// One sync of one Deployment: the Deployment as read (changed locally as
/// the sync goes, and written back), its ReplicaSets, and where to write.
struct Sync<'a> {
    context: &'a Context,
    deployment: Deployment,
    /// The status as read, to write only what changed.
    written: Option<DeploymentStatus>,
    deployments: Api<Deployment>,
    sets_api: Api<ReplicaSet>,
    reference: ObjectReference,
    now: Timestamp,
}

impl<'a> Sync<'a> {
    fn new(deployment: &Deployment, context: &'a Context) -> Sync<'a> {
        let namespace = deployment.namespace().unwrap_or_default();
        Sync {
            context,
            written: deployment.status.clone(),
            deployment: deployment.clone(),
            deployments: Api::namespaced(context.client.clone(), &namespace),
            sets_api: Api::namespaced(context.client.clone(), &namespace),
            reference: events::reference(deployment),
            now: Timestamp::now(),
        }
    }

    fn spec(&self) -> k8s_openapi::api::apps::v1::DeploymentSpec {
        self.deployment.spec.clone().unwrap_or_default()
    }

    async fn run(mut self) -> Result<Action, Error> {
        let selector = match Selector::parse(self.deployment.spec.as_ref().map(|s| &s.selector)) {
            Ok(s) if !s.is_everything() => s,
            Ok(_) => {
                self.context.recorder.warning(
                    self.reference.clone(),
                    "SelectingAll",
                    "This deployment is selecting all pods. A non-empty selector is required.",
                );
                return Ok(Action::await_change());
            }
            Err(e) => {
                self.context.recorder.warning(self.reference.clone(), "InvalidSelector", e.to_string());
                return Ok(Action::await_change());
            }
        };
        // The ReplicaSets as the API has them now, not as the cache last
        // heard: a rolling update sizes the new ReplicaSet from the sum of
        // all of them, and a cache that has not yet seen every size (its
        // own last writes among them) let that sum pass replicas + maxSurge
        // (seen in the deployments test under load). One consistent list
        // per sync is cheap at a lab's scale; the cache still says when to sync.
        let candidates: Vec<ReplicaSet> = self.sets_api.list(&ListParams::default()).await?.items;
        let mut deleting = self.deployment.metadata.deletion_timestamp.is_some();
        // Before adopting an orphan, the Deployment is read again (as
        // upstream's RecheckDeletionTimestamp): a `delete --cascade=orphan`
        // may have begun since it was read, and its garbage collector may
        // have just released this very ReplicaSet.
        let orphans = candidates.iter().any(|s| controller_of(&s.metadata).is_none() && selector.matches(s.metadata.labels.as_ref()));
        if orphans && !deleting {
            match self.deployments.get_opt(&self.deployment.name_any()).await? {
                Some(now) if now.metadata.uid == self.deployment.metadata.uid => deleting = now.metadata.deletion_timestamp.is_some(),
                _ => return Ok(Action::await_change()),
            }
        }
        let sets = claim(&self.sets_api, &controller_reference(&self.deployment), deleting, &selector, candidates).await?;

        if deleting {
            let (new, old) = self.all_sets(sets, false).await?;
            self.sync_status(new.as_ref(), &old).await?;
            return Ok(Action::await_change());
        }
        self.paused_conditions().await?;
        let spec = self.spec();
        if spec.paused == Some(true) || self.is_scaling_event(&sets) {
            return self.scale_only(sets).await;
        }
        if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
            self.recreate(sets).await
        } else {
            self.rolling(sets).await
        }
    }

    /// Whether the Deployment's replica count changed since its active
    /// ReplicaSets were sized (their desired-replicas annotation says so).
    fn is_scaling_event(&self, sets: &[ReplicaSet]) -> bool {
        let desired = status::replicas(&self.deployment);
        sets.iter().filter(|s| status::set_replicas(s) > 0).any(|s| revisions::size_annotation(s, revisions::DESIRED_REPLICAS).is_some_and(|d| d != desired))
    }

    /// The paused or resumed Progressing condition (upstream's
    /// checkPausedConditions).
    async fn paused_conditions(&mut self) -> Result<(), Error> {
        if status::progress_deadline(&self.deployment).is_none() {
            return Ok(());
        }
        let status = self.deployment.status.get_or_insert_with(Default::default);
        let reason = status::get_condition(status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(status::TIMED_OUT) {
            return Ok(());
        }
        let paused = self.deployment.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let shown_paused = reason.as_deref() == Some(status::PAUSED);
        let condition = match (paused, shown_paused) {
            (true, false) => status::condition(PROGRESSING, "Unknown", status::PAUSED, "Deployment is paused", self.now),
            (false, true) => status::condition(PROGRESSING, "Unknown", status::RESUMED, "Deployment is resumed", self.now),
            _ => return Ok(()),
        };
        status::set_condition(status, condition);
        self.write_status().await
    }

    /// The current template's ReplicaSet (created if `create` and missing)
    /// and the old ones, with revisions brought up to date (upstream's
    /// getAllReplicaSetsAndSyncRevision).
    async fn all_sets(&mut self, sets: Vec<ReplicaSet>, create: bool) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let (new, old) = revisions::split(&self.deployment, sets);
        let new_revision = old.iter().map(|s| revisions::revision_of(&s.metadata)).max().unwrap_or(0) + 1;
        let new = match new {
            Some(existing) => Some(self.sync_existing(existing, new_revision).await?),
            None if create => self.create_new(&old, new_revision).await?,
            None => None,
        };
        Ok((new, old))
    }

    /// Brings the current ReplicaSet's revision, annotations and
    /// minReadySeconds up to date, and the Deployment's revision with it.
    async fn sync_existing(&mut self, mut set: ReplicaSet, new_revision: i64) -> Result<ReplicaSet, Error> {
        let min_ready = self.spec().min_ready_seconds;
        let annotated = revisions::annotate_new(&self.deployment, &mut set, new_revision, true, status::max_surge(&self.deployment));
        let spec = set.spec.get_or_insert_with(ReplicaSetSpec::default);
        if annotated || spec.min_ready_seconds != min_ready {
            spec.min_ready_seconds = min_ready;
            set = self.sets_api.replace(&set.name_any(), &PostParams::default(), &set).await?;
        }
        self.set_revision(revisions::revision_of(&set.metadata)).await?;
        let deadline = status::progress_deadline(&self.deployment).is_some();
        let status = self.deployment.status.get_or_insert_with(Default::default);
        if deadline && status::get_condition(status, PROGRESSING).is_none() {
            let message = format!("Found new replica set \"{}\"", set.name_any());
            status::set_condition(status, status::condition(PROGRESSING, "True", status::FOUND_NEW_RS, &message, self.now));
            self.write_status().await?;
        }
        Ok(set)
    }

    /// Creates the ReplicaSet of the current template, named after the
    /// Deployment and the template's hash (upstream's getNewReplicaSet).
    async fn create_new(&mut self, old: &[ReplicaSet], new_revision: i64) -> Result<Option<ReplicaSet>, Error> {
        let spec = self.spec();
        let collisions = self.deployment.status.as_ref().and_then(|s| s.collision_count);
        let hash = revisions::template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(BTreeMap::new).insert(TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", self.deployment.name_any());
        let mut set = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.deployment.namespace(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![controller_reference(&self.deployment)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(0), min_ready_seconds: spec.min_ready_seconds, selector, template: Some(template) }),
            status: None,
        };
        let mut all: Vec<&ReplicaSet> = old.iter().collect();
        all.push(&set);
        let replicas = rollout::new_set_replicas(&self.deployment, &all, &set);
        set.spec.as_mut().expect("set above").replicas = Some(replicas);
        revisions::annotate_new(&self.deployment, &mut set, new_revision, false, status::max_surge(&self.deployment));

        let created = match self.sets_api.create(&PostParams::default(), &set).await {
            Ok(created) => {
                if replicas > 0 {
                    self.context.recorder.normal(self.reference.clone(), "ScalingReplicaSet", format!("Scaled up replica set {name} from 0 to {replicas}"));
                }
                let deadline = status::progress_deadline(&self.deployment).is_some();
                let status = self.deployment.status.get_or_insert_with(Default::default);
                if deadline {
                    let message = format!("Created new replica set \"{name}\"");
                    status::set_condition(status, status::condition(PROGRESSING, "True", status::NEW_RS_CREATED, &message, self.now));
                }
                created
            }
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                let existing = self.sets_api.get(&name).await?;
                let ours = controller_of(&existing.metadata).is_some_and(|r| Some(&r.uid) == self.deployment.metadata.uid.as_ref());
                if !(ours && revisions::equal_ignoring_hash(&revisions::set_template(&existing), &spec.template)) {
                    // Another template hashes to the same name: count the
                    // collision, so the next sync hashes differently.
                    let status = self.deployment.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.write_status().await?;
                    return Err(Error::Create(format!("hash collision for replica set {name}")));
                }
                existing
            }
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("being terminated") => return Err(Error::Api(kube::Error::Api(s))),
            Err(e) => {
                let message = format!(
                    "Failed to create new replica set \"{name}\": {}",
                    match &e {
                        kube::Error::Api(s) => s.message.clone(),
                        other => other.to_string(),
                    }
                );
                self.context.recorder.warning(self.reference.clone(), "FailedCreate", message.clone());
                let deadline = status::progress_deadline(&self.deployment).is_some();
                let status = self.deployment.status.get_or_insert_with(Default::default);
                status::set_condition(status, status::condition(REPLICA_FAILURE, "True", "FailedCreate", &message, self.now));
                if deadline {
                    status::set_condition(status, status::condition(PROGRESSING, "False", status::FAILED_RS_CREATE, &message, self.now));
                }
                self.write_status().await?;
                return Err(Error::Create(message));
            }
        };
        self.set_revision(new_revision).await?;
        self.write_status().await?;
        Ok(Some(created))
    }

    /// Writes the Deployment's revision annotation if it differs.
    async fn set_revision(&mut self, revision: i64) -> Result<(), Error> {
        if revisions::revision_of(&self.deployment.metadata) == revision {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
        let updated = self.deployments.patch(&self.deployment.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        self.deployment.metadata = updated.metadata;
        Ok(())
    }

    /// Sizes `set` to `replicas` and records the Deployment's size on it;
    /// whether its size changed.
    async fn scale(&mut self, set: &mut ReplicaSet, replicas: i32) -> Result<bool, Error> {
        let before = status::set_replicas(set);
        let desired = status::replicas(&self.deployment);
        let annotated = revisions::set_size_annotations(set, desired, desired + status::max_surge(&self.deployment));
        if before == replicas && !annotated {
            return Ok(false);
        }
        set.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(replicas);
        *set = self.sets_api.replace(&set.name_any(), &PostParams::default(), set).await?;
        if before != replicas {
            let direction = if replicas > before { "up" } else { "down" };
            let message = format!("Scaled {direction} replica set {} from {before} to {replicas}", set.name_any());
            self.context.recorder.normal(self.reference.clone(), "ScalingReplicaSet", message);
        }
        Ok(before != replicas)
    }

    /// Deletes old ReplicaSets beyond `revisionHistoryLimit`, oldest
    /// revision first, if they are empty (upstream's cleanupDeployment).
    async fn cleanup(&mut self, old: &[ReplicaSet]) -> Result<(), Error> {
        let limit = self.spec().revision_history_limit.unwrap_or(10).max(0) as usize;
        let mut cleanable: Vec<&ReplicaSet> = old.iter().filter(|s| s.metadata.deletion_timestamp.is_none()).collect();
        if cleanable.len() <= limit {
            return Ok(());
        }
        cleanable.sort_by_key(|s| revisions::revision_of(&s.metadata));
        let excess = cleanable.len() - limit;
        for set in &cleanable[..excess] {
            let observed = set.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            let busy =
                set.status.as_ref().map(|s| s.replicas).unwrap_or(0) != 0 || status::set_replicas(set) != 0 || set.metadata.generation.unwrap_or(0) > observed;
            if busy {
                continue;
            }
            match self.sets_api.delete(&set.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Writes the status computed from the ReplicaSets, without judging
    /// the rollout's progress (upstream's syncDeploymentStatus).
    async fn sync_status(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<(), Error> {
        let mut all: Vec<&ReplicaSet> = old.iter().collect();
        all.extend(new);
        self.deployment.status = Some(status::calculate(&self.deployment, &all, new, self.now));
        self.write_status().await
    }

    /// Writes the status with the Progressing condition the rollout earns
    /// (upstream's syncRolloutStatus); when to look again for the deadline.
    async fn sync_rollout_status(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<Action, Error> {
        let mut all: Vec<&ReplicaSet> = old.iter().collect();
        all.extend(new);
        let mut status = status::calculate(&self.deployment, &all, new, self.now);
        status::rollout_conditions(&self.deployment, &mut status, new, self.now);
        let action = match status::seconds_to_deadline(&self.deployment, &status, self.now) {
            Some(left) if !status::complete(&self.deployment, &status) && left > 0 => Action::requeue(Duration::from_secs(left as u64 + 1)),
            _ => Action::await_change(),
        };
        self.deployment.status = Some(status);
        self.write_status().await?;
        Ok(action)
    }

    /// Writes the Deployment's status if it changed since it was read.
    async fn write_status(&mut self) -> Result<(), Error> {
        if self.deployment.status == self.written {
            return Ok(());
        }
        let status = self.deployment.status.clone().unwrap_or_default();
        let patch = serde_json::json!({"status": status});
        match self.deployments.patch_status(&self.deployment.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(updated) => {
                self.written = updated.status.clone();
                self.deployment.status = updated.status;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
