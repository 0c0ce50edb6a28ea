//! From an ownerReference's apiVersion and kind to the resource that
//! serves it (upstream's RESTMapper), from discovery.

use std::collections::HashMap;

use crate::discovery::ServedResource;

use super::graph::group_of;

/// Resources by (group, kind), each at its group's preferred version.
#[derive(Debug, Default, Clone)]
pub struct Kinds {
    by_kind: HashMap<(String, String), ServedResource>,
}

/// An apiVersion and kind no discovered resource serves (upstream's
/// `restMappingError`, message included).
#[derive(Debug, thiserror::Error)]
#[error("unable to get REST mapping for {api_version}/{kind}.")]
pub struct NoMapping {
    pub api_version: String,
    pub kind: String,
}

impl Kinds {
    pub fn new(resources: &[ServedResource]) -> Kinds {
        let by_kind = resources.iter().map(|r| ((r.api.group.clone(), r.api.kind.clone()), r.clone())).collect();
        Kinds { by_kind }
    }

    /// The resource of `kind` in `api_version`'s group. Any served version
    /// will do: uids and metadata are the same in all of them.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Result<&ServedResource, NoMapping> {
        self.by_kind.get(&(group_of(api_version).to_string(), kind.to_string())).ok_or_else(|| NoMapping { api_version: api_version.into(), kind: kind.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::ApiResource;

    #[test]
    fn kinds_resolve_by_group_whatever_the_version() {
        let api =
            ApiResource { group: "apps".into(), version: "v1".into(), api_version: "apps/v1".into(), kind: "ReplicaSet".into(), plural: "replicasets".into() };
        let kinds = Kinds::new(&[ServedResource { api, namespaced: true, verbs: Default::default() }]);
        assert_eq!(kinds.resolve("apps/v1beta2", "ReplicaSet").unwrap().api.plural, "replicasets");
        let err = kinds.resolve("v1", "ReplicaSet").unwrap_err();
        assert_eq!(err.to_string(), "unable to get REST mapping for v1/ReplicaSet.");
    }
}
