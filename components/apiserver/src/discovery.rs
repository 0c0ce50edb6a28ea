//! Discovery documents (/api, /apis, /api/v1, /apis/<group>/<version>),
//! written from the resource table so they cannot disagree with routing.

use serde_json::{json, Value};

use crate::resources::{self, Resource};

/// The kind (with its group and version when not the resource's own) and
/// verbs of a subresource, as upstream lists them.
fn subresource_kind(r: &Resource, sub: &str) -> (&'static str, &'static [&'static str], Option<(&'static str, &'static str)>) {
    match sub {
        "status" => (r.kind, &["get", "patch", "update"], None),
        "scale" => ("Scale", &["get", "patch", "update"], Some(("autoscaling", "v1"))),
        "binding" => ("Binding", &["create"], None),
        "eviction" => ("Eviction", &["create"], Some(("policy", "v1"))),
        "finalize" => (r.kind, &["update"], None),
        "log" => ("Pod", &["get"], None),
        "exec" => ("PodExecOptions", &["create", "get"], None),
        "attach" => ("PodAttachOptions", &["create", "get"], None),
        "portforward" => ("PodPortForwardOptions", &["create", "get"], None),
        "ephemeralcontainers" => (r.kind, &["get", "patch", "update"], None),
        _ => (r.kind, &["get"], None),
    }
}

fn subresource_entry(r: &Resource, sub: &str) -> Value {
    let (kind, verbs, group_version) = subresource_kind(r, sub);
    let mut e = json!({
        "name": format!("{}/{sub}", r.plural),
        "singularName": "",
        "namespaced": r.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    if let Some((g, v)) = group_version {
        e["group"] = json!(g);
        e["version"] = json!(v);
    }
    e
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut entries = Vec::new();
    for r in resources::in_group_version(group, version) {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        entries.push(e);
        entries.extend(r.subresources.iter().map(|s| subresource_entry(r, s)));
    }
    if entries.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}))
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// A group with every version it serves, the preferred first.
fn group(name: &str) -> Value {
    let versions: Vec<Value> =
        resources::versions(name).into_iter().map(|version| json!({"groupVersion": format!("{name}/{version}"), "version": version})).collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": versions, "preferredVersion": preferred})
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = resources::groups().into_iter().map(group).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn api_group(name: &str) -> Option<Value> {
    resources::groups().contains(&name).then(|| {
        let mut g = group(name);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

/// The server's version, as `kubectl version` shows it: the Kubernetes API
/// level we implement, with our own build as metadata.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": concat!("v1.33.0+kubelab-", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

/// Aggregated discovery: one document for /api or /apis listing every
/// resource of every group, which kubectl asks for first and which saves it
/// a request per group-version. The versions of the format we serve, by
/// the `v` parameter clients send.
const AGGREGATED: &[&str] = &["v2", "v2beta1"];

/// The aggregated format version an Accept header asks for first, if any.
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    accept.split(',').find_map(|media| {
        let mut parts = media.split(';').map(str::trim);
        if parts.next() != Some("application/json") {
            return None;
        }
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let has = |k: &str, v: &str| params.iter().any(|(pk, pv)| *pk == k && *pv == v);
        if !has("g", "apidiscovery.k8s.io") || !has("as", "APIGroupDiscoveryList") {
            return None;
        }
        AGGREGATED.iter().copied().find(|v| has("v", v))
    })
}

/// The Content-Type of an aggregated document of format `version`.
pub fn aggregated_media_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// The aggregated document of the core group (/api) or of the named
/// groups (/apis).
pub fn aggregated(core: bool, format_version: &str) -> Value {
    let groups: Vec<&str> = if core { vec![""] } else { resources::groups() };
    let items: Vec<Value> = groups
        .into_iter()
        .map(|g| {
            let versions: Vec<Value> = resources::versions(g)
                .into_iter()
                .map(|version| {
                    let resources: Vec<Value> = resources::in_group_version(g, version).map(aggregated_resource).collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !g.is_empty() {
                metadata["name"] = json!(g);
            }
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{format_version}"), "metadata": {}, "items": items})
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut e = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|sub| {
            let (kind, verbs, gv) = subresource_kind(r, sub);
            let (g, v) = gv.unwrap_or((r.group, r.version));
            json!({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": verbs})
        })
        .collect();
    if !subresources.is_empty() {
        e["subresources"] = json!(subresources);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_asks_for_aggregated_v2_first() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(wants_aggregated(kubectl), Some("v2"));
        assert_eq!(wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"), Some("v2beta1"));
        assert_eq!(wants_aggregated("application/json"), None);
        assert_eq!(wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"), None);
    }

    #[test]
    fn aggregated_documents_hold_every_resource_once() {
        let core = aggregated(true, "v2");
        let core_resources = core["items"][0]["versions"][0]["resources"].as_array().unwrap();
        assert!(core["items"][0]["metadata"].get("name").is_none());
        let pods = core_resources.iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(pods["scope"], "Namespaced");
        assert!(pods["subresources"].as_array().unwrap().iter().any(|s| s["subresource"] == "status"));
        let groups = aggregated(false, "v2");
        let apps = groups["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "apps").unwrap();
        let deploy = apps["versions"][0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "deployments").unwrap();
        let scale = deploy["subresources"].as_array().unwrap().iter().find(|s| s["subresource"] == "scale").unwrap();
        assert_eq!(scale["responseKind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));
        let total: usize = resources::RESOURCES.len();
        let listed = core_resources.len()
            + groups["items"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|g| g["versions"].as_array().unwrap())
                .map(|v| v["resources"].as_array().unwrap().len())
                .sum::<usize>();
        assert_eq!(listed, total);
    }

    #[test]
    fn a_group_of_two_versions_lists_both_the_stored_preferred() {
        let autoscaling = api_group("autoscaling").unwrap();
        assert_eq!(autoscaling["preferredVersion"]["version"], "v2");
        let versions: Vec<&str> = autoscaling["versions"].as_array().unwrap().iter().filter_map(|v| v["version"].as_str()).collect();
        assert_eq!(versions, ["v2", "v1"]);
        let groups = aggregated(false, "v2");
        let item = groups["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "autoscaling").unwrap();
        assert_eq!(item["versions"][1]["version"], "v1");
        assert_eq!(item["versions"][1]["resources"][0]["responseKind"]["version"], "v1");
        assert!(resource_list("autoscaling", "v1").is_some());
    }
}
