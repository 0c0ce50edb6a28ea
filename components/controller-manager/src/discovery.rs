//! Which resources the apiserver serves, asked of its discovery documents
//! (/api, /apis and each group version) as upstream's
//! `ServerPreferredResources` does: one entry per group and resource, from
//! the group's preferred version when it has the resource there. A group
//! version that fails to answer is reported and the rest are still used,
//! because a namespace can be emptied, and a graph built, of what is known.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::core::ApiResource;
use kube::Client;

/// A resource, whether its objects live in namespaces, and the verbs
/// discovery lists for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedResource {
    pub api: ApiResource,
    pub namespaced: bool,
    pub verbs: BTreeSet<String>,
}

impl ServedResource {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(verb)
    }

    /// `resource.group`, as upstream names a group resource in messages.
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.api.plural, self.api.group)
    }
}

/// What discovery found, and what it could not.
#[derive(Debug, Default)]
pub struct Discovered {
    pub resources: Vec<ServedResource>,
    /// Group versions whose resource list could not be fetched, with why.
    pub failed_group_versions: BTreeMap<String, String>,
    /// `groupVersion` strings that do not parse.
    pub unparsable_group_versions: Vec<String>,
}

impl Discovered {
    /// Upstream's wording for partly failed discovery.
    pub fn failure_message(&self) -> Option<String> {
        if self.failed_group_versions.is_empty() {
            return None;
        }
        let each: Vec<String> = self.failed_group_versions.iter().map(|(gv, e)| format!("{gv}: {e}")).collect();
        Some(format!(
            "Discovery failed for some groups, {} failing: unable to retrieve the complete list of server APIs: {}",
            self.failed_group_versions.len(),
            each.join(", ")
        ))
    }
}

/// Splits a `groupVersion` as upstream's ParseGroupVersion does: `v1` is
/// the core group, `apps/v1` a named one, anything with more slashes is
/// an error.
pub fn parse_group_version(gv: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = gv.split('/').collect();
    match parts.as_slice() {
        [""] => Ok((String::new(), String::new())),
        [version] => Ok((String::new(), version.to_string())),
        [group, version] => Ok((group.to_string(), version.to_string())),
        _ => Err(format!("unexpected GroupVersion string: {gv}")),
    }
}

/// Every namespaced resource the server lists. Fails only when the root
/// documents (/api, /apis) cannot be read.
pub async fn namespaced_resources(client: &Client) -> Result<Discovered, kube::Error> {
    let mut found = preferred_resources(client).await?;
    found.resources.retain(|r| r.namespaced);
    Ok(found)
}

/// Every resource the server lists, namespaced and cluster-scoped. Fails
/// only when the root documents (/api, /apis) cannot be read.
pub async fn preferred_resources(client: &Client) -> Result<Discovered, kube::Error> {
    // Group versions in the order their resources win: for each group the
    // preferred version first, then the others as the server lists them.
    let mut group_versions: Vec<String> = client.list_core_api_versions().await?.versions;
    for group in client.list_api_groups().await?.groups {
        let preferred = group.preferred_version.as_ref().map(|p| p.group_version.clone());
        group_versions.extend(preferred.clone());
        group_versions.extend(group.versions.into_iter().map(|v| v.group_version).filter(|gv| Some(gv) != preferred.as_ref()));
    }

    let mut found = Discovered::default();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for gv in group_versions {
        let list = match parse_group_version(&gv) {
            Ok((group, version)) if group.is_empty() => client.list_core_api_resources(&version).await,
            Ok(_) => client.list_api_group_resources(&gv).await,
            Err(_) => {
                found.unparsable_group_versions.push(gv);
                continue;
            }
        };
        match list {
            Ok(list) => add_resources(&mut found, &mut seen, list),
            Err(e) => {
                found.failed_group_versions.insert(gv, e.to_string());
            }
        }
    }
    Ok(found)
}

/// The non-subresource entries of one resource list that no earlier
/// (preferred) version already gave.
fn add_resources(found: &mut Discovered, seen: &mut BTreeSet<(String, String)>, list: APIResourceList) {
    let (group, version) = match parse_group_version(&list.group_version) {
        Ok(gv) => gv,
        Err(_) => {
            found.unparsable_group_versions.push(list.group_version);
            return;
        }
    };
    for r in list.resources {
        if r.name.contains('/') || !seen.insert((group.clone(), r.name.clone())) {
            continue;
        }
        let api = ApiResource { group: group.clone(), version: version.clone(), api_version: list.group_version.clone(), kind: r.kind, plural: r.name };
        found.resources.push(ServedResource { api, namespaced: r.namespaced, verbs: r.verbs.into_iter().collect() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn resource(name: &str, namespaced: bool, verbs: &[&str]) -> APIResource {
        APIResource { name: name.into(), namespaced, kind: "Thing".into(), verbs: verbs.iter().map(|v| v.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn group_versions_parse_as_upstream() {
        assert_eq!(parse_group_version("v1"), Ok((String::new(), "v1".into())));
        assert_eq!(parse_group_version("apps/v1"), Ok(("apps".into(), "v1".into())));
        assert!(parse_group_version("a/b/c").is_err());
    }

    #[test]
    fn subresources_and_later_versions_are_left_out() {
        let mut found = Discovered::default();
        let mut seen = BTreeSet::new();
        let v1 = APIResourceList {
            group_version: "batch/v1".into(),
            resources: vec![
                resource("jobs", true, &["list", "delete"]),
                resource("jobs/status", true, &["get"]),
                resource("cronthings", false, &["list", "delete"]),
            ],
        };
        let v1beta1 = APIResourceList { group_version: "batch/v1beta1".into(), resources: vec![resource("jobs", true, &["list"])] };
        add_resources(&mut found, &mut seen, v1);
        add_resources(&mut found, &mut seen, v1beta1);
        assert_eq!(found.resources.len(), 2);
        assert_eq!(found.resources[0].api.api_version, "batch/v1");
        assert!(found.resources[0].namespaced);
        assert!(!found.resources[1].namespaced, "cluster-scoped resources are kept, marked so");
        assert_eq!(found.resources[0].group_resource(), "jobs.batch");
        assert!(found.resources[0].supports("delete"));
    }

    #[test]
    fn partial_failures_are_reported_in_upstreams_words() {
        let mut found = Discovered::default();
        assert_eq!(found.failure_message(), None);
        found.failed_group_versions.insert("metrics/v1".into(), "503".into());
        assert_eq!(
            found.failure_message().unwrap(),
            "Discovery failed for some groups, 1 failing: unable to retrieve the complete list of server APIs: metrics/v1: 503"
        );
    }
}
