//! Adoption and release, as upstream's `ControllerRefManager`: a controller
//! owns the objects its selector matches. An orphan that matches is
//! adopted (a controller reference to the owner is added); an owned
//! object that stops matching is released (the reference is removed).
//! Objects another controller owns are left alone.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use component_base::label_selector::Selector;

use crate::pods::controller_of;

/// The controller reference an owner puts on what it owns.
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The objects among `candidates` that `owner` controls once adoption and
/// release are done. `owner_deleting`: an owner being deleted neither
/// adopts nor releases (upstream's rule), it only keeps what it has.
pub async fn claim<C>(api: &Api<C>, owner: &OwnerReference, owner_deleting: bool, selector: &Selector, candidates: Vec<C>) -> Result<Vec<C>, kube::Error>
where
    C: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let mut claimed = Vec::new();
    for object in candidates {
        let matches = selector.matches(object.meta().labels.as_ref());
        match controller_of(object.meta()) {
            Some(reference) if reference.uid == owner.uid => {
                if matches || owner_deleting {
                    claimed.push(object);
                } else {
                    let rest: Vec<OwnerReference> = object.owner_references().iter().filter(|r| r.uid != owner.uid).cloned().collect();
                    // Released: gone from the owner's view whether the patch
                    // lands or the object has already changed.
                    set_owner_references(api, &object, rest).await?;
                }
            }
            Some(_) => {}
            None if matches && !owner_deleting && object.meta().deletion_timestamp.is_none() => {
                let mut references = object.owner_references().to_vec();
                references.push(owner.clone());
                if let Some(adopted) = set_owner_references(api, &object, references).await? {
                    claimed.push(adopted);
                }
            }
            None => {}
        }
    }
    Ok(claimed)
}

/// Writes `references` as the object's ownerReferences, if the object is
/// still the one read (same uid and resourceVersion). None when it has
/// changed or gone meanwhile: the next sync sees it as it is now.
async fn set_owner_references<C>(api: &Api<C>, object: &C, references: Vec<OwnerReference>) -> Result<Option<C>, kube::Error>
where
    C: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let patch = serde_json::json!({
        "metadata": {
            "ownerReferences": references,
            "uid": object.meta().uid,
            "resourceVersion": object.meta().resource_version,
        }
    });
    match api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(updated) => Ok(Some(updated)),
        Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() || status.code == 422 => Ok(None),
        Err(e) => Err(e),
    }
}
