//! OpenAPI v3: an index at /openapi/v3 and one document per group-version,
//! made from the resource table (paths, operations, the
//! `x-kubernetes-group-version-kind` kubectl looks for) and k8s-openapi's
//! schemas of the kinds. kubectl reads them to decide on server-side field
//! validation, to compute strategic merge patches for `apply`, and for
//! `explain`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::resources::{self, Resource};

/// The documents, built once: group-version path (`api/v1`, `apis/apps/v1`) → (document, hash).
fn documents() -> &'static BTreeMap<String, (Value, String)> {
    static DOCS: OnceLock<BTreeMap<String, (Value, String)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut gvs: Vec<(&str, &str)> = Vec::new();
        for r in resources::RESOURCES {
            if !gvs.contains(&(r.group, r.version)) {
                gvs.push((r.group, r.version));
            }
        }
        gvs.into_iter()
            .map(|(g, v)| {
                let doc = document(g, v);
                let hash = Sha256::digest(serde_json::to_vec(&doc).expect("serializes"));
                let hash: String = hash.iter().take(16).map(|b| format!("{b:02X}")).collect();
                (gv_path(g, v), (doc, hash))
            })
            .collect()
    })
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub fn index() -> Value {
    let paths: Map<String, Value> =
        documents().iter().map(|(p, (_, hash))| (p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}))).collect();
    json!({"paths": paths})
}

pub fn group_version(path: &str) -> Option<&'static Value> {
    documents().get(path.trim_matches('/')).map(|(doc, _)| doc)
}

fn gvk(r: &Resource) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn query(name: &str, description: &str, kind: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": true}})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        query("dryRun", "When present, indicates that modifications should not be persisted.", "string"),
        query("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes.", "string"),
        query("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.", "string"),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\".", "boolean"),
        query("continue", "The continue option should be set when retrieving more results from the server.", "string"),
        query("fieldSelector", "A selector to restrict the list of returned objects by their fields.", "string"),
        query("labelSelector", "A selector to restrict the list of returned objects by their labels.", "string"),
        query("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
        query("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from.", "string"),
        query("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to list calls.", "string"),
        query("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`.", "boolean"),
        query("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
        query("watch", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.", "boolean"),
    ]
}

fn op(r: &Resource, action: &str, id: String, params: Vec<Value>, schema_ref: &str, body: bool) -> Value {
    let content = |s: &str| json!({"application/json": {"schema": {"$ref": s}}});
    let mut o = json!({
        "operationId": id,
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": content(schema_ref)}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(r),
    });
    if body {
        let media = if action == "patch" {
            json!({
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
            })
        } else {
            content(schema_ref)
        };
        o["requestBody"] = json!({"content": media, "required": true});
    }
    o
}

fn operation_name(r: &Resource) -> String {
    let group: String = match r.group {
        "" => "Core".into(),
        g => g.split('.').next().unwrap_or(g).chars().enumerate().map(|(i, c)| if i == 0 { c.to_ascii_uppercase() } else { c }).collect(),
    };
    let version: String = r.version.chars().enumerate().map(|(i, c)| if i == 0 { c.to_ascii_uppercase() } else { c }).collect();
    let scope = if r.namespaced { "Namespaced" } else { "" };
    format!("{group}{version}{scope}{}", r.kind)
}

fn paths_of(r: &Resource, refs: &BTreeMap<&str, String>) -> Vec<(String, Value)> {
    let base = format!("/{}", gv_path(r.group, r.version));
    let collection = if r.namespaced { format!("{base}/namespaces/{{namespace}}/{}", r.plural) } else { format!("{base}/{}", r.plural) };
    let item = format!("{collection}/{{name}}");
    let name = operation_name(r);
    let kind_ref = refs[r.kind].clone();
    let mut scope_params = vec![];
    if r.namespaced {
        scope_params.push(path_param("namespace"));
    }
    let mut item_params = scope_params.clone();
    item_params.insert(0, path_param("name"));
    if r.probed || r.computed.is_some() {
        return vec![
            (collection.clone(), json!({"get": op(r, "list", format!("list{name}"), list_params(), &kind_ref, false)})),
            (item, json!({"get": op(r, "get", format!("read{name}"), vec![], &kind_ref, false), "parameters": item_params})),
        ];
    }
    let with = |mut a: Vec<Value>, b: Vec<Value>| {
        a.extend(b);
        a
    };
    let mut out = vec![
        (
            collection.clone(),
            json!({
                "get": op(r, "list", format!("list{name}"), list_params(), "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Status", false),
                "post": op(r, "post", format!("create{name}"), write_params(), &kind_ref, true),
                "delete": op(r, "deletecollection", format!("deletecollection{name}"), list_params(), "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Status", false),
                "parameters": scope_params,
            }),
        ),
        (
            item.clone(),
            json!({
                "get": op(r, "get", format!("read{name}"), vec![], &kind_ref, false),
                "put": op(r, "put", format!("replace{name}"), write_params(), &kind_ref, true),
                "patch": op(r, "patch", format!("patch{name}"), with(write_params(), vec![query("force", "Force is going to \"force\" Apply requests.", "boolean")]), &kind_ref, true),
                "delete": op(r, "delete", format!("delete{name}"), vec![query("gracePeriodSeconds", "The duration in seconds before the object should be deleted.", "integer"), query("propagationPolicy", "Whether and how garbage collection will be performed.", "string")], "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Status", false),
                "parameters": item_params.clone(),
            }),
        ),
    ];
    if r.has_status() {
        out.push((
            format!("{item}/status"),
            json!({
                "get": op(r, "get", format!("read{name}Status"), vec![], &kind_ref, false),
                "put": op(r, "put", format!("replace{name}Status"), write_params(), &kind_ref, true),
                "patch": op(r, "patch", format!("patch{name}Status"), write_params(), &kind_ref, true),
                "parameters": item_params,
            }),
        ));
    }
    if r.namespaced {
        let all = format!("{base}/{}", r.plural);
        out.push((all, json!({"get": op(r, "list", format!("list{}{}ForAllNamespaces", &name[..name.len() - r.kind.len()].replace("Namespaced", ""), r.kind), list_params(), &kind_ref, false)})));
    }
    out
}

/// Lists whose items merge by a key in strategic merge patches: the same
/// table the server's patcher uses, told to kubectl through the schema.
fn add_patch_metadata(schemas: &mut Map<String, Value>) {
    let names: Vec<String> = schemas.keys().cloned().collect();
    for name in names {
        let props: Vec<(String, Option<String>)> = {
            let Some(props) = schemas[&name].get("properties").and_then(Value::as_object) else { continue };
            props
                .iter()
                .filter(|(_, p)| p.get("type") == Some(&json!("array")))
                .map(|(k, p)| (k.clone(), p.pointer("/items/$ref").and_then(Value::as_str).map(|r| r.rsplit('/').next().unwrap_or("").to_string())))
                .collect()
        };
        for (field, item_ref) in props {
            let item_fields: Vec<String> = item_ref
                .as_ref()
                .and_then(|r| schemas.get(r))
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            let item_values: Vec<Value> = vec![Value::Object(item_fields.iter().map(|f| (f.clone(), Value::Null)).collect())];
            let prop = &mut schemas[&name]["properties"][&field];
            if let Some(key) = crate::patch::merge_key_for(&field, &item_values) {
                prop["x-kubernetes-patch-merge-key"] = json!(key);
                prop["x-kubernetes-patch-strategy"] = json!("merge");
            } else if crate::patch::merges_as_set(&field) {
                prop["x-kubernetes-patch-strategy"] = json!("merge");
            }
        }
    }
}

fn document(group: &str, version: &str) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut refs = BTreeMap::new();
    let members: Vec<&Resource> = resources::in_group_version(group, version).collect();
    for r in &members {
        let schema = (r.schema)(&mut generator);
        let reference = schema.get("$ref").and_then(Value::as_str).unwrap_or_default().to_string();
        refs.insert(r.kind, reference);
    }
    generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>();
    let mut schemas = generator.take_definitions(true);
    for r in &members {
        let name = refs[r.kind].rsplit('/').next().unwrap_or_default().to_string();
        if let Some(s) = schemas.get_mut(&name) {
            s["x-kubernetes-group-version-kind"] = json!([gvk(r)]);
        }
    }
    add_patch_metadata(&mut schemas);
    let mut paths = Map::new();
    for r in &members {
        for (p, item) in paths_of(r, &refs) {
            paths.insert(p, item);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": discovery_version()},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn discovery_version() -> Value {
    crate::discovery::version()["gitVersion"].clone()
}
