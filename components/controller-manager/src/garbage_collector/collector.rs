//! The collector's work on one item, as upstream's `attemptToDeleteItem`
//! and `attemptToOrphan` workers: decide from the graph and from live
//! reads of the API (the graph may lag behind it), then delete, patch
//! ownerReferences, or remove a finalizer.

use std::sync::{Arc, Mutex, RwLock};

use component_base::events::Recorder;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::Client;
use serde_json::{json, Value};

use super::absent::AbsentOwners;
use super::graph::{Graph, Identity, Work, FOREGROUND, ORPHAN};
use super::kinds::{Kinds, NoMapping};
use super::queue::WorkQueue;
use crate::discovery::ServedResource;

/// Why one attempt failed; the item is tried again after a backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(transparent)]
    NoMapping(#[from] NoMapping),
}

/// How an attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Nothing failed, but the item must be looked at again later: a
    /// virtual owner that exists and has not been seen by a monitor yet.
    Again,
}

/// Upstream's error for a cluster-scoped dependent that names an owner of
/// a namespaced kind: nowhere to look, so it is neither deleted nor retried.
const NAMESPACED_OWNER_OF_CLUSTER_SCOPED: &str = "cluster-scoped objects cannot refer to namespaced owners";

pub struct Collector {
    pub client: Client,
    pub graph: Arc<Mutex<Graph>>,
    pub kinds: Arc<RwLock<Kinds>>,
    pub to_delete: Arc<WorkQueue<String>>,
    pub to_orphan: Arc<WorkQueue<String>>,
    pub recorder: Recorder,
    pub absent: Mutex<AbsentOwners>,
}

/// How the live owner of a reference stands.
enum Standing {
    /// Gone, or another object under that name.
    Dangling,
    /// Being deleted in the foreground: waiting for its dependents.
    Waiting,
    Solid,
}

impl Collector {
    /// Hands work from the graph to the queues (and events to the API).
    pub fn dispatch(&self, work: Vec<Work>) {
        for item in work {
            match item {
                Work::AttemptToDelete(uid) => self.to_delete.add(uid),
                Work::AttemptToOrphan(uid) => self.to_orphan.add(uid),
                Work::InvalidNamespace { dependent, owner } => self.report_invalid_namespace(&dependent, &owner),
            }
        }
    }

    fn report_invalid_namespace(&self, dependent: &Identity, owner: &OwnerReference) {
        let namespace = dependent.namespace.clone().unwrap_or_default();
        let claimed = Identity::of_owner(owner, dependent.namespace.as_deref());
        let object = ObjectReference {
            api_version: Some(dependent.api_version.clone()),
            kind: Some(dependent.kind.clone()),
            namespace: dependent.namespace.clone(),
            name: Some(dependent.name.clone()),
            uid: Some(dependent.uid.clone()),
            ..Default::default()
        };
        self.recorder.warning(object, "OwnerRefInvalidNamespace", format!("ownerRef {claimed} does not exist in namespace {namespace:?}"));
    }

    fn resource(&self, api_version: &str, kind: &str) -> Result<ServedResource, NoMapping> {
        self.kinds.read().expect("not poisoned").resolve(api_version, kind).cloned()
    }

    /// The object's API at its resource and namespace, or None when a
    /// namespaced kind is named without a namespace.
    fn api(&self, resource: &ServedResource, namespace: Option<&str>) -> Option<Api<DynamicObject>> {
        match (resource.namespaced, namespace) {
            (true, Some(ns)) => Some(Api::namespaced_with(self.client.clone(), ns, &resource.api)),
            (true, None) => None,
            (false, _) => Some(Api::all_with(self.client.clone(), &resource.api)),
        }
    }

    /// One look at the object `uid` names in the graph.
    pub async fn attempt_to_delete(&self, uid: &str) -> Result<Outcome, Error> {
        let Some(node) = self.graph.lock().expect("not poisoned").node(uid).cloned() else {
            return Ok(Outcome::Done);
        };
        // Deletion is a one-way trip: its dependents are looked at once it is gone.
        if node.being_deleted && !node.deleting_dependents {
            return Ok(Outcome::Done);
        }
        let identity = &node.identity;
        let resource = self.resource(&identity.api_version, &identity.kind)?;
        let Some(api) = self.api(&resource, identity.namespace.as_deref()) else {
            tracing::debug!("{identity}: {NAMESPACED_OWNER_OF_CLUSTER_SCOPED}");
            return Ok(Outcome::Done);
        };
        let latest = api.get_metadata_opt(&identity.name).await?;
        let latest = match latest {
            Some(latest) if latest.metadata.uid.as_deref() == Some(uid) => latest,
            _ => {
                // Not there, or another object by that name: a virtual node
                // leaves the graph and its dependents are looked at again.
                let work = self.graph.lock().expect("not poisoned").absent(uid);
                self.dispatch(work);
                return Ok(Outcome::Done);
            }
        };
        if node.deleting_dependents {
            return self.finish_deleting_dependents(&node.identity).await.map(|_| Outcome::Done);
        }
        if !node.observed {
            return Ok(Outcome::Again);
        }
        let owners = latest.metadata.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(Outcome::Done);
        }

        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for owner in &owners {
            match self.standing(owner, identity).await? {
                None => {
                    tracing::debug!("{identity}: {NAMESPACED_OWNER_OF_CLUSTER_SCOPED}");
                    return Ok(Outcome::Done);
                }
                Some(Standing::Dangling) => dangling.push(owner.uid.clone()),
                Some(Standing::Waiting) => waiting.push(owner.uid.clone()),
                Some(Standing::Solid) => solid.push(owner.uid.clone()),
            }
        }

        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(Outcome::Done);
            }
            // Keep it for the owners that are there; references to the
            // others would hold a foreground owner forever.
            let gone: Vec<String> = dangling.into_iter().chain(waiting).collect();
            tracing::info!("removing references to owners {gone:?} from {identity}, which has owners that remain");
            self.edit_owner_references(&api, identity, |refs| refs.retain(|r| !gone.contains(&r.uid))).await?;
            return Ok(Outcome::Done);
        }

        let (has_dependents, a_dependent_waits) = {
            let graph = self.graph.lock().expect("not poisoned");
            let dependents = graph.dependents(uid);
            (!dependents.is_empty(), dependents.iter().any(|d| graph.node(&d.uid).is_some_and(|n| n.deleting_dependents)))
        };
        let policy = if !waiting.is_empty() && has_dependents {
            if a_dependent_waits {
                // A dependent that also waits for its own dependents may be
                // part of a cycle: this object stops blocking its owners.
                tracing::info!("{identity} and one of its dependents both wait for dependents; unblocking its owner references");
                self.edit_owner_references(&api, identity, |refs| {
                    for r in refs.iter_mut().filter(|r| r.block_owner_deletion == Some(true)) {
                        r.block_owner_deletion = Some(false);
                    }
                })
                .await?;
            }
            // Its owner waits for it: it waits for its own dependents.
            PropagationPolicy::Foreground
        } else {
            let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
            if finalizers.iter().any(|f| f == ORPHAN) {
                PropagationPolicy::Orphan
            } else if finalizers.iter().any(|f| f == FOREGROUND) {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            }
        };
        tracing::info!("deleting {identity} ({policy:?}): none of its owners remain");
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&identity.name, &params).await {
            Ok(_) => Ok(Outcome::Done),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Outcome::Done),
            // Another object took the name meanwhile: nothing of ours to delete.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Outcome::Done),
            Err(e) => Err(e.into()),
        }
    }

    /// How the owner a reference names stands, looked up live where the
    /// dependent's namespace says; None for a cluster-scoped dependent that
    /// names a namespaced kind.
    async fn standing(&self, owner: &OwnerReference, dependent: &Identity) -> Result<Option<Standing>, Error> {
        let as_cluster_scoped = Identity::of_owner(owner, None);
        let in_namespace = Identity::of_owner(owner, dependent.namespace.as_deref());
        {
            let absent = self.absent.lock().expect("not poisoned");
            if absent.contains(&as_cluster_scoped) || absent.contains(&in_namespace) {
                return Ok(Some(Standing::Dangling));
            }
        }
        let resource = self.resource(&owner.api_version, &owner.kind)?;
        let Some(api) = self.api(&resource, dependent.namespace.as_deref()) else {
            return Ok(None);
        };
        let key = if resource.namespaced { in_namespace } else { as_cluster_scoped };
        let live: Option<PartialObjectMeta<DynamicObject>> = api.get_metadata_opt(&owner.name).await?;
        let Some(live) = live.filter(|l| l.metadata.uid.as_deref() == Some(owner.uid.as_str())) else {
            self.absent.lock().expect("not poisoned").insert(key);
            return Ok(Some(Standing::Dangling));
        };
        let meta = &live.metadata;
        let foreground = meta.finalizers.iter().flatten().any(|f| f == FOREGROUND);
        Ok(Some(if meta.deletion_timestamp.is_some() && foreground { Standing::Waiting } else { Standing::Solid }))
    }

    /// An owner deleting its dependents in the foreground: once none
    /// blocks it, its finalizer goes (and with it the owner); until then
    /// its blocking dependents are looked at.
    async fn finish_deleting_dependents(&self, owner: &Identity) -> Result<(), Error> {
        let blocking = self.graph.lock().expect("not poisoned").blocking_dependents(&owner.uid);
        if blocking.is_empty() {
            tracing::info!("removing the {FOREGROUND} finalizer from {owner}: no dependent blocks it");
            return self.remove_finalizer(owner, FOREGROUND).await;
        }
        for (dependent, deleting_its_dependents) in blocking {
            if !deleting_its_dependents {
                self.to_delete.add(dependent);
            }
        }
        Ok(())
    }

    /// An owner deleted with the orphan policy: every dependent stops
    /// naming it, then its orphan finalizer goes.
    pub async fn attempt_to_orphan(&self, uid: &str) -> Result<(), Error> {
        let (owner, dependents) = {
            let graph = self.graph.lock().expect("not poisoned");
            let Some(node) = graph.node(uid) else { return Ok(()) };
            (node.identity.clone(), graph.dependents(uid))
        };
        for dependent in &dependents {
            let resource = self.resource(&dependent.api_version, &dependent.kind)?;
            let Some(api) = self.api(&resource, dependent.namespace.as_deref()) else { continue };
            self.edit_owner_references(&api, dependent, |refs| refs.retain(|r| r.uid != uid)).await?;
        }
        tracing::info!("orphaned {} dependents of {owner}; removing its {ORPHAN} finalizer", dependents.len());
        self.remove_finalizer(&owner, ORPHAN).await
    }

    /// Rewrites `object`'s ownerReferences with `edit`. Nothing happens to
    /// an object that is gone or that `edit` leaves as it was.
    async fn edit_owner_references(&self, api: &Api<DynamicObject>, object: &Identity, edit: impl Fn(&mut Vec<OwnerReference>)) -> Result<(), Error> {
        self.rewrite_metadata(api, object, |meta| {
            let before = meta.owner_references.clone().unwrap_or_default();
            let mut after = before.clone();
            edit(&mut after);
            (after != before).then(|| ("ownerReferences", if after.is_empty() { Value::Null } else { json!(after) }))
        })
        .await
    }

    /// Removes `finalizer` from `object`, if it is there.
    async fn remove_finalizer(&self, object: &Identity, finalizer: &str) -> Result<(), Error> {
        let resource = self.resource(&object.api_version, &object.kind)?;
        let Some(api) = self.api(&resource, object.namespace.as_deref()) else { return Ok(()) };
        self.rewrite_metadata(&api, object, |meta| {
            let finalizers = meta.finalizers.clone().unwrap_or_default();
            let rest: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
            (rest.len() != finalizers.len()).then(|| ("finalizers", if rest.is_empty() { Value::Null } else { json!(rest) }))
        })
        .await
    }

    /// Reads `object` and writes the metadata field `change` gives (None:
    /// nothing to write) with a merge patch carrying the resourceVersion it
    /// read, reading again when another writer came first. An object that
    /// is gone, or is another object by that name, is left alone.
    async fn rewrite_metadata(
        &self,
        api: &Api<DynamicObject>,
        object: &Identity,
        change: impl Fn(&ObjectMeta) -> Option<(&'static str, Value)>,
    ) -> Result<(), Error> {
        loop {
            let Some(latest) = api.get_metadata_opt(&object.name).await? else { return Ok(()) };
            if latest.metadata.uid.as_deref() != Some(object.uid.as_str()) {
                return Ok(());
            }
            let Some((field, value)) = change(&latest.metadata) else { return Ok(()) };
            let patch = json!({"metadata": {"resourceVersion": latest.metadata.resource_version, field: value}});
            match api.patch(&object.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
