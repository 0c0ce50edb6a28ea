//! Discovery documents (/api, /apis, /api/v1, /apis/<group>/<version>),
//! written from the resource table so they cannot disagree with routing.

use serde_json::{json, Value};

use crate::resources::{self, Resource};

/// The kind and verbs of a subresource, as upstream lists them.
fn subresource_entry(r: &Resource, sub: &str) -> Value {
    let (kind, verbs, group_version): (&str, &[&str], Option<(&str, &str)>) = match sub {
        "status" => (r.kind, &["get", "patch", "update"], None),
        "scale" => ("Scale", &["get", "patch", "update"], Some(("autoscaling", "v1"))),
        "binding" => ("Binding", &["create"], None),
        "finalize" => (r.kind, &["update"], None),
        "log" => ("Pod", &["get"], None),
        "exec" => ("PodExecOptions", &["create", "get"], None),
        "attach" => ("PodAttachOptions", &["create", "get"], None),
        _ => (r.kind, &["get"], None),
    };
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

fn group(name: &str) -> Value {
    let version = resources::RESOURCES.iter().find(|r| r.group == name).map(|r| r.version).unwrap_or("v1");
    let gv = json!({"groupVersion": format!("{name}/{version}"), "version": version});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
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
