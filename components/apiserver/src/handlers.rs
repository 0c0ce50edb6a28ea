//! HTTP to the generic store: one set of handlers for every resource of the
//! table. Reads the verb from method, path and query; decodes bodies;
//! negotiates JSON or Table; streams watches.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::auth::{self, Attributes, User};
use crate::conversion;
use crate::discovery;
use crate::managed_fields::{self, Writer};
use crate::meta;
use crate::patch::{self, PatchType};
use crate::registry::{DeleteOptions, ListOptions, Part, Registry};
use crate::route::{self, Discovery, Route, Target};
use crate::selectors;
use crate::status::{ApiError, ApiResult, Cause, Subject};
use crate::table::{self, Include};
use crate::watch;

/// Upstream's limit on request bodies.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Upstream's limit on a fieldManager's length, in bytes.
const FIELD_MANAGER_MAX: usize = 128;

/// 422 about the request's options (`PatchOptions.meta.k8s.io "" is
/// invalid: ...`), as upstream words a bad `fieldManager` or `force`.
fn options_invalid(kind: &str, cause: Cause) -> ApiError {
    ApiError::invalid(&Subject { group: "meta.k8s.io".into(), kind: kind.into(), name: String::new() }, vec![cause])
}

pub struct App {
    pub registry: Registry,
    /// Where clients reach this server, for the /api document.
    pub advertise: String,
    /// What componentstatuses asks.
    pub probes: Vec<crate::componentstatus::Probe>,
    /// How pods/log, pods/exec and pods/attach reach kubelets.
    pub kubelet: crate::kubelet::KubeletClient,
}

pub type Query = HashMap<String, String>;

pub fn query_of(uri: &axum::http::Uri) -> Query {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect()
}

pub fn json_response(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).expect("a JSON value serializes");
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn flag(q: &Query, key: &str) -> bool {
    matches!(q.get(key).map(String::as_str), Some("true" | "1"))
}

/// The one entry point for every API path.
pub async fn api(State(app): State<Arc<App>>, request: Request) -> Response {
    match serve(&app, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(app: &Arc<App>, request: Request) -> ApiResult<Response> {
    let (parts, body) = request.into_parts();
    let user = parts.extensions.get::<Option<User>>().cloned().flatten();
    let Some(user) = user else {
        return Err(ApiError::unauthorized());
    };
    let q = query_of(&parts.uri);
    let route = route::parse(parts.uri.path())?;
    let target = match route {
        Route::Discovery(d) => {
            if parts.method != Method::GET {
                return Err(ApiError::method_not_allowed());
            }
            let accept = parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            return Ok(discovery_response(d, &app.advertise, accept));
        }
        Route::Resource(t) => t,
    };
    let watching = target.watch_path || flag(&q, "watch");
    let verb = verb(&parts.method, &target, watching)?;
    let attributes = Attributes {
        verb,
        group: target.resource.group,
        resource: target.resource.plural,
        subresource: target.subresource.as_deref().unwrap_or(""),
        namespace: target.namespace.as_deref().unwrap_or(""),
        name: target.name.as_deref().unwrap_or(""),
    };
    auth::authorize(&user, &attributes)?;
    if crate::kubelet::proxies(&target) {
        return crate::kubelet::serve(app, &target, parts).await;
    }
    let body = read_body(body).await?;
    let accept = parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
    check_acceptable(&accept)?;
    let ctx = Ctx { app: app.clone(), target, q, headers: parts.headers, body, accept };
    if ctx.target.resource.probed {
        return ctx.probed(verb).await;
    }
    if let Some(objects) = ctx.target.resource.computed {
        return ctx.computed(verb, objects()).await;
    }
    match verb {
        "get" => ctx.get().await,
        "list" => ctx.list().await,
        "watch" => watch::serve(&ctx.app, &ctx.target, &ctx.q, &ctx.accept).await,
        "create" => ctx.create().await,
        "update" => ctx.update().await,
        "patch" => ctx.patch().await,
        "delete" => ctx.delete().await,
        "deletecollection" => ctx.delete_collection().await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn verb(method: &Method, t: &Target, watching: bool) -> ApiResult<&'static str> {
    let named = t.name.is_some();
    let sub = t.subresource.as_deref();
    Ok(match (method.as_str(), named, sub) {
        ("GET", false, None) if watching => "watch",
        ("GET", true, None) if watching => "watch",
        ("GET", false, None) => "list",
        ("GET", true, Some("binding" | "eviction" | "finalize")) => return Err(ApiError::method_not_allowed()),
        ("GET", true, _) => "get",
        ("POST", false, None) => "create",
        ("POST", true, Some("binding" | "eviction" | "exec" | "attach" | "portforward")) => "create",
        ("PUT" | "PATCH", true, Some("binding" | "eviction")) => return Err(ApiError::method_not_allowed()),
        ("PUT", true, _) => "update",
        ("PATCH", true, Some("finalize")) => return Err(ApiError::method_not_allowed()),
        ("PATCH", true, _) => "patch",
        ("DELETE", true, None) => "delete",
        ("DELETE", false, None) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    })
}

fn discovery_response(d: Discovery, advertise: &str, accept: &str) -> Response {
    if let (Discovery::CoreVersions | Discovery::Groups, Some(version)) = (&d, discovery::wants_aggregated(accept)) {
        let doc = discovery::aggregated(matches!(d, Discovery::CoreVersions), version);
        let body = serde_json::to_vec(&doc).expect("a document serializes");
        return (StatusCode::OK, [(header::CONTENT_TYPE, discovery::aggregated_media_type(version))], body).into_response();
    }
    let doc = match d {
        Discovery::CoreVersions => Some(discovery::core_versions(advertise)),
        Discovery::Groups => Some(discovery::group_list()),
        Discovery::Group(g) => discovery::api_group(g),
        Discovery::Resources { group, version } => discovery::resource_list(group, version),
    };
    match doc {
        Some(doc) => json_response(StatusCode::OK, &doc),
        None => ApiError::no_route().into_response(),
    }
}

/// Reads the body, up to [`MAX_BODY`]. A larger one is read on (and
/// dropped) so the client hears 413 instead of a broken connection, up to a
/// bound past which the connection is simply closed.
async fn read_body(body: Body) -> ApiResult<Bytes> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut kept = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total += data.len();
            if total > 16 * MAX_BODY {
                break;
            }
            if total <= MAX_BODY {
                kept.extend_from_slice(&data);
            }
        }
    }
    if total > MAX_BODY {
        return Err(ApiError::too_large());
    }
    Ok(Bytes::from(kept))
}

/// We answer in JSON; a client that accepts neither JSON nor anything gets 406.
fn check_acceptable(accept: &str) -> ApiResult<()> {
    let ok = accept.split(',').any(|t| {
        let t = t.split(';').next().unwrap_or("").trim();
        matches!(t, "application/json" | "*/*" | "application/*" | "" | "application/json-seq")
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::not_acceptable(accept))
    }
}

/// Decodes a JSON, YAML or Kubernetes protobuf body into an object.
pub fn decode_object(body: &[u8], content_type: &str) -> ApiResult<Value> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let value: Value = match media {
        "" | "application/json" | "*/*" => {
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?
        }
        "application/yaml" | "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
            serde_yaml::from_str::<Value>(text).map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}")))?
        }
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(body).map_err(|e| ApiError::bad_request(e.to_string()))?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(value)
}

struct Ctx {
    app: Arc<App>,
    target: Target,
    q: Query,
    headers: HeaderMap,
    body: Bytes,
    accept: String,
}

impl Ctx {
    fn ns(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }
    fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or("")
    }
    fn dry_run(&self) -> bool {
        self.q.get("dryRun").is_some_and(|v| v == "All")
    }
    fn content_type(&self) -> &str {
        self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json")
    }
    fn registry(&self) -> &Registry {
        &self.app.registry
    }
    /// The row the objects are kept under: the URL's, or the stored
    /// version's when the URL names another version.
    fn storage(&self) -> &'static crate::resources::Resource {
        self.target.resource.storage_row()
    }
    /// A stored object as the URL's version shows it.
    fn shown(&self, stored: Value) -> Value {
        conversion::shown(self.target.resource, stored)
    }
    /// A client's object of the URL's version, in the stored form.
    fn to_stored(&self, obj: Value) -> ApiResult<Value> {
        conversion::to_stored(self.target.resource, obj)
    }

    /// The body, with its apiVersion and kind checked against the URL.
    fn body_object(&self, expect_kind: &str, expect_version: &str) -> ApiResult<Value> {
        let mut obj = decode_object(&self.body, self.content_type())?;
        if let Some(v) = obj.get("apiVersion").and_then(Value::as_str) {
            if v != expect_version {
                return Err(ApiError::bad_request(format!("the API version in the data ({v}) does not match the expected API version ({expect_version})")));
            }
        }
        if let Some(k) = obj.get("kind").and_then(Value::as_str) {
            if k != expect_kind {
                return Err(ApiError::bad_request(format!("the kind in the data ({k}) does not match the expected kind ({expect_kind})")));
            }
        }
        obj["apiVersion"] = json!(expect_version);
        obj["kind"] = json!(expect_kind);
        Ok(obj)
    }

    /// Type errors and unknown fields of a client's object of this resource
    /// (see `fields`); returns the warnings to send back.
    fn check_fields(&self, obj: &mut Value) -> ApiResult<Vec<String>> {
        crate::fields::check(self.target.resource, obj, crate::fields::Mode::from_query(&self.q)?)
    }

    fn respond_warned(&self, code: StatusCode, obj: &Value, warnings: &[String]) -> Response {
        let mut response = self.respond(code, obj);
        for w in warnings {
            // RFC 7234 warn-code 299, agent "-", the text quoted.
            let value = format!("299 - {}", serde_json::to_string(w).expect("a string serializes"));
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                response.headers_mut().append(header::WARNING, v);
            }
        }
        response
    }

    fn respond(&self, code: StatusCode, obj: &Value) -> Response {
        if table::wants_table(&self.accept) && obj.get("kind").and_then(Value::as_str) == Some(self.target.resource.kind) {
            let include = Include::parse(self.q.get("includeObject").map(String::as_str));
            let meta = json!({"resourceVersion": meta::resource_version(obj).unwrap_or("")});
            let t = table::table(self.target.resource, std::slice::from_ref(obj), meta, include, table::table_version(&self.accept), true);
            return json_response(code, &t);
        }
        json_response(code, obj)
    }

    /// The part of the object a write through this path changes.
    fn part(&self) -> Part {
        match self.target.subresource.as_deref() {
            Some("status") => Part::Status,
            Some("ephemeralcontainers") => Part::EphemeralContainers,
            _ => Part::Main,
        }
    }

    async fn get(&self) -> ApiResult<Response> {
        let obj = self.registry().get(self.storage(), self.ns(), self.name()).await?;
        match self.target.subresource.as_deref() {
            Some("scale") => Ok(json_response(StatusCode::OK, &to_scale(&obj)?)),
            _ => Ok(self.respond(StatusCode::OK, &self.shown(obj))),
        }
    }

    fn list_options(&self) -> ApiResult<ListOptions> {
        list_options(&self.q, false)
    }

    async fn list(&self) -> ApiResult<Response> {
        let res = self.target.resource;
        let opts = self.list_options()?;
        if Registry::cacheable(&opts) {
            let (items, revision) = self.registry().list_cached(self.storage(), self.ns(), &opts).await?;
            let items: Vec<Bytes> = items.iter().map(|i| conversion::shown_bytes(res, i)).collect();
            if !table::wants_table(&self.accept) {
                return Ok(raw_list(res, &items, revision));
            }
            let objects: Vec<Value> = items.iter().filter_map(|b| serde_json::from_slice(b).ok()).collect();
            let include = Include::parse(self.q.get("includeObject").map(String::as_str));
            let meta = json!({"resourceVersion": revision.to_string()});
            let t = table::table(res, &objects, meta, include, table::table_version(&self.accept), true);
            return Ok(json_response(StatusCode::OK, &t));
        }
        let mut listed = self.registry().list(self.storage(), self.ns(), &opts).await?;
        listed.items = listed.items.into_iter().map(|o| self.shown(o)).collect();
        let mut list_meta = json!({"resourceVersion": listed.revision.to_string()});
        if let Some(c) = &listed.continue_token {
            list_meta["continue"] = json!(c);
        }
        if let Some(n) = listed.remaining {
            list_meta["remainingItemCount"] = json!(n);
        }
        if table::wants_table(&self.accept) {
            let include = Include::parse(self.q.get("includeObject").map(String::as_str));
            let t = table::table(res, &listed.items, list_meta, include, table::table_version(&self.accept), true);
            return Ok(json_response(StatusCode::OK, &t));
        }
        let list = json!({
            "kind": format!("{}List", res.kind),
            "apiVersion": res.api_version(),
            "metadata": list_meta,
            "items": listed.items,
        });
        Ok(json_response(StatusCode::OK, &list))
    }

    async fn create(&self) -> ApiResult<Response> {
        let res = self.target.resource;
        match self.target.subresource.as_deref() {
            Some("binding") => return self.bind().await,
            Some("eviction") => {
                let body = decode_object(&self.body, self.content_type())?;
                let status = crate::eviction::evict(self.registry(), self.ns().unwrap_or(""), self.name(), &body, self.dry_run()).await?;
                return Ok(json_response(StatusCode::CREATED, &status));
            }
            _ => {}
        }
        let mut obj = self.body_object(res.kind, &res.api_version())?;
        let warnings = self.check_fields(&mut obj)?;
        let obj = self.to_stored(obj)?;
        let writer = self.writer("CreateOptions")?;
        let created = self.registry().create(self.storage(), self.ns(), obj, self.dry_run(), Some(&writer)).await?;
        Ok(self.respond_warned(StatusCode::CREATED, &self.shown(created), &warnings))
    }

    async fn update(&self) -> ApiResult<Response> {
        let res = self.target.resource;
        match self.target.subresource.as_deref() {
            Some("scale") => {
                let scale = self.body_object("Scale", "autoscaling/v1")?;
                check_scale(&scale).map_err(|why| ApiError::bad_request(format!("Scale in version \"v1\" cannot be handled as a Scale: {why}")))?;
                return self.write_scale(scale, "UpdateOptions").await;
            }
            Some("finalize") => {
                // The same type checks as an update of the namespace.
                let mut obj = self.body_object(res.kind, &res.api_version())?;
                self.check_fields(&mut obj)?;
                return self.finalize(obj).await;
            }
            _ => {}
        }
        let mut obj = self.body_object(res.kind, &res.api_version())?;
        let warnings = self.check_fields(&mut obj)?;
        let obj = self.to_stored(obj)?;
        let writer = self.writer("UpdateOptions")?;
        let part = self.part();
        // Without a resourceVersion the update is unconditional: a writer
        // that came first is no conflict, so write again on its version.
        let unconditional = meta::resource_version(&obj).is_none_or(str::is_empty);
        let mut attempt = 0;
        let updated = loop {
            attempt += 1;
            match self.registry().update(self.storage(), self.ns(), self.name(), obj.clone(), part, self.dry_run(), Some(&writer)).await {
                Err(e) if unconditional && attempt < 5 && e.code == 409 && e.reason == "Conflict" => continue,
                done => break done?,
            }
        };
        Ok(self.respond_warned(StatusCode::OK, &self.shown(updated), &warnings))
    }

    async fn patch(&self) -> ApiResult<Response> {
        let res = self.target.resource;
        let ct = self.content_type().to_string();
        let kind = PatchType::from_content_type(&ct).ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
        if kind == PatchType::Apply {
            return self.apply().await;
        }
        if self.q.contains_key("force") {
            return Err(options_invalid("PatchOptions", Cause::forbidden("force", "may not be specified for non-apply patch")));
        }
        let writer = self.writer("PatchOptions")?;
        let patch_doc: Value = serde_json::from_slice(&self.body).map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
        check_patch_shape(kind, &patch_doc)?;
        let is_scale = self.target.subresource.as_deref() == Some("scale");
        let part = self.part();
        // As upstream's patcher: a patch that names no resourceVersion is
        // applied again to the newer object when another writer came
        // between the read and the write.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let current = self.registry().get(self.storage(), self.ns(), self.name()).await?;
            let mut doc = if is_scale { to_scale(&current)? } else { self.shown(current.clone()) };
            let applied = match kind {
                PatchType::Merge => {
                    patch::merge(&mut doc, &patch_doc);
                    Ok(())
                }
                PatchType::Json => patch::json_patch(&mut doc, &patch_doc),
                PatchType::Strategic => patch::strategic(&mut doc, &patch_doc),
                PatchType::Apply => unreachable!("refused above"),
            };
            applied.map_err(|why| ApiError { code: 422, reason: "Invalid", message: format!("the patch could not be applied: {why}"), details: None })?;
            if is_scale {
                check_scale(&doc).map_err(|why| patch_result_invalid(&doc_shown(&doc), &why))?;
                return self.write_scale(doc, "PatchOptions").await;
            }
            // The result must still be an object of this kind before anything
            // reads or sets its metadata.
            let mode = crate::fields::Mode::from_query(&self.q)?;
            let shown = doc_shown(&doc);
            let warnings = crate::fields::check_with(res, &mut doc, mode, |why| patch_result_invalid(&shown, why))?;
            // A patch carries no resourceVersion unless the client put one in:
            // apply it to the version it was computed on.
            let pinned = meta::resource_version(&doc).is_some_and(|v| Some(v) != meta::resource_version(&current));
            if meta::resource_version(&doc).is_none() {
                meta::meta_mut(&mut doc).insert("resourceVersion".into(), current["metadata"]["resourceVersion"].clone());
            }
            let doc = self.to_stored(doc)?;
            match self.registry().update(self.storage(), self.ns(), self.name(), doc, part, self.dry_run(), Some(&writer)).await {
                Ok(updated) => return Ok(self.respond_warned(StatusCode::OK, &self.shown(updated), &warnings)),
                Err(e) if !pinned && attempt < 5 && e.code == 409 && e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Who this write is by, recorded in managedFields: the `fieldManager`
    /// parameter, else the client's name from its User-Agent (`kubectl`,
    /// `python`), as upstream defaults it. `options` names the options kind
    /// in errors (`PatchOptions`).
    fn writer(&self, options: &str) -> ApiResult<Writer> {
        let res = self.target.resource;
        let manager = match self.q.get("fieldManager") {
            Some(m) => m.clone(),
            None => {
                let agent = self.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
                agent.split('/').next().unwrap_or("").chars().take(FIELD_MANAGER_MAX).collect()
            }
        };
        if manager.len() > FIELD_MANAGER_MAX {
            let cause = Cause {
                reason: "FieldValueTooLong",
                field: "fieldManager".into(),
                message: format!("Too long: may not be more than {FIELD_MANAGER_MAX} bytes"),
            };
            return Err(options_invalid(options, cause));
        }
        if let Some(c) = manager.chars().find(|c| c.is_control()) {
            return Err(options_invalid(options, Cause::invalid("fieldManager", &json!(manager), format!("invalid character {c:?}"))));
        }
        Ok(Writer { manager, api_version: res.api_version(), subresource: self.target.subresource.clone().unwrap_or_default(), has_status: res.has_status() })
    }

    /// Server-side apply: the body is the manager's whole configuration of
    /// the object (YAML or JSON); see `managed_fields`.
    async fn apply(&self) -> ApiResult<Response> {
        let res = self.target.resource;
        let part = match self.target.subresource.as_deref() {
            None => Part::Main,
            Some("status") => Part::Status,
            Some(other) => return Err(ApiError::bad_request(format!("server-side apply is not served on the {other} subresource"))),
        };
        if self.q.get("fieldManager").is_none_or(String::is_empty) {
            return Err(options_invalid(
                "PatchOptions",
                Cause { message: "Required value: is required for apply patch".into(), ..Cause::required("fieldManager") },
            ));
        }
        let force = match self.q.get("force").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(ApiError::bad_request(format!("force: invalid boolean {other:?}"))),
        };
        let writer = self.writer("PatchOptions")?;
        let mut config = decode_object(&self.body, "application/apply-patch+yaml")?;
        let (Some(version), Some(kind)) = (config.get("apiVersion").and_then(Value::as_str), config.get("kind").and_then(Value::as_str)) else {
            return Err(ApiError::bad_request("an apply configuration must set apiVersion and kind"));
        };
        if version != res.api_version() || kind != res.kind {
            return Err(ApiError::bad_request(format!("the apply configuration is a {version}, Kind={kind}, not a {}, Kind={}", res.api_version(), res.kind)));
        }
        let their_name = meta::name(&config);
        if their_name != self.name() {
            return Err(ApiError::bad_request(format!("the name of the object ({their_name}) does not match the name on the URL ({})", self.name())));
        }
        if config.pointer("/metadata/managedFields").is_some() {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        let warnings = self.check_fields(&mut config)?;
        let pinned = meta::resource_version(&config).is_some();
        // Another writer may come between the read and the write: read and
        // merge again, unless the client pinned a version.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let live = match self.registry().get(self.storage(), self.ns(), self.name()).await {
                Ok(obj) => Some(self.shown(obj)),
                Err(e) if e.code == 404 && part == Part::Main => None,
                Err(e) => return Err(e),
            };
            let mut merged = managed_fields::apply(live.as_ref(), &config, &writer, force)?;
            if let (Some(current), false) = (&live, pinned) {
                meta::meta_mut(&mut merged).insert("resourceVersion".into(), current["metadata"]["resourceVersion"].clone());
            }
            let merged = self.to_stored(merged)?;
            let written = match &live {
                None => self.registry().create(self.storage(), self.ns(), merged, self.dry_run(), None).await.map(|o| (StatusCode::CREATED, o)),
                Some(_) => {
                    self.registry().update(self.storage(), self.ns(), self.name(), merged, part, self.dry_run(), None).await.map(|o| (StatusCode::OK, o))
                }
            };
            match written {
                Ok((code, obj)) => return Ok(self.respond_warned(code, &self.shown(obj), &warnings)),
                Err(e) if !pinned && attempt < 5 && (e.reason == "AlreadyExists" || (e.code == 409 && e.reason == "Conflict")) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn delete_options(&self) -> ApiResult<DeleteOptions> {
        let mut opts = DeleteOptions { dry_run: self.dry_run(), ..Default::default() };
        if !self.body.is_empty() {
            delete_options_from(&decode_object(&self.body, self.content_type())?, &mut opts);
        }
        if let Some(g) = self.q.get("gracePeriodSeconds") {
            opts.grace_period_seconds = Some(g.parse().map_err(|_| ApiError::bad_request(format!("gracePeriodSeconds: invalid integer {g:?}")))?);
        }
        if let Some(p) = self.q.get("propagationPolicy") {
            opts.propagation_policy = Some(p.clone());
        }
        Ok(opts)
    }

    async fn delete(&self) -> ApiResult<Response> {
        let opts = self.delete_options()?;
        let (obj, gone) = self.registry().delete(self.storage(), self.ns(), self.name(), &opts).await?;
        let obj = self.shown(obj);
        // Upstream answers 200 with the object, gone or still waiting for
        // its grace period or finalizers; 202 only to a client that asked
        // for cascading with `orphanDependents: false` (kept for old clients).
        let code = if !gone && opts.orphan_dependents == Some(false) { StatusCode::ACCEPTED } else { StatusCode::OK };
        Ok(json_response(code, &obj))
    }

    async fn delete_collection(&self) -> ApiResult<Response> {
        let res = self.target.resource;
        let opts = self.delete_options()?;
        let mut listed = self.registry().delete_collection(self.storage(), self.ns(), &self.list_options()?, &opts).await?;
        listed.items = listed.items.into_iter().map(|o| self.shown(o)).collect();
        let list = json!({
            "kind": format!("{}List", res.kind),
            "apiVersion": res.api_version(),
            "metadata": {"resourceVersion": listed.revision.to_string()},
            "items": listed.items,
        });
        Ok(json_response(StatusCode::OK, &list))
    }

    /// componentstatuses: asked now, never stored.
    async fn probed(&self, verb: &str) -> ApiResult<Response> {
        use crate::componentstatus as cs;
        let res = self.target.resource;
        let warning = vec![cs::DEPRECATION.to_string()];
        match verb {
            "get" => {
                let obj = cs::get(&self.app.probes, self.name()).await.ok_or_else(|| ApiError::not_found(&res.subject(self.name())))?;
                Ok(self.respond_warned(StatusCode::OK, &obj, &warning))
            }
            "list" => {
                let items = cs::list(&self.app.probes).await;
                let mut response = if table::wants_table(&self.accept) {
                    let include = Include::parse(self.q.get("includeObject").map(String::as_str));
                    json_response(StatusCode::OK, &table::table(res, &items, json!({}), include, table::table_version(&self.accept), true))
                } else {
                    json_response(StatusCode::OK, &json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items}))
                };
                let value = format!("299 - {}", serde_json::to_string(cs::DEPRECATION).expect("serializes"));
                response.headers_mut().append(header::WARNING, axum::http::HeaderValue::from_str(&value).expect("ascii"));
                Ok(response)
            }
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    /// Rows made at read time (apiservices): read and watched, never
    /// written.
    async fn computed(&self, verb: &str, objects: Vec<Value>) -> ApiResult<Response> {
        let res = self.target.resource;
        match verb {
            "get" => {
                let obj = objects.into_iter().find(|o| meta::name(o) == self.name()).ok_or_else(|| ApiError::not_found(&res.subject(self.name())))?;
                Ok(self.respond(StatusCode::OK, &obj))
            }
            "list" => {
                let opts = self.list_options()?;
                crate::registry::check_fields(res, &opts.fields)?;
                let items: Vec<Value> = objects.into_iter().filter(|o| crate::registry::matches(res, o, &opts.labels, &opts.fields)).collect();
                if table::wants_table(&self.accept) {
                    let include = Include::parse(self.q.get("includeObject").map(String::as_str));
                    return Ok(json_response(StatusCode::OK, &table::table(res, &items, json!({}), include, table::table_version(&self.accept), true)));
                }
                let list = json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": {}, "items": items});
                Ok(json_response(StatusCode::OK, &list))
            }
            "watch" => watch::computed(&self.target, &self.q, &self.accept, objects),
            _ => {
                let subject = res.subject(self.name());
                Err(ApiError {
                    code: 405,
                    reason: "MethodNotAllowed",
                    message: format!("{verb} is not allowed on {}.{}: {}", res.plural, res.group, crate::apiservices::READ_ONLY),
                    details: Some(json!({"group": subject.group, "kind": subject.kind, "name": subject.name})),
                })
            }
        }
    }

    /// pods/binding: assigns a pod to a node, once.
    async fn bind(&self) -> ApiResult<Response> {
        let binding = self.body_object("Binding", "v1")?;
        crate::resources::decodes_as::<k8s_openapi::api::core::v1::Binding>(&binding)
            .map_err(|why| ApiError::bad_request(format!("Binding in version \"v1\" cannot be handled as a Binding: {why}")))?;
        let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
        let pod_name = self.name().to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(
                &crate::status::Subject { group: "".into(), kind: "Binding".into(), name: pod_name },
                vec![crate::status::Cause::required("target.name")],
            ));
        }
        let res = self.target.resource;
        let subject = crate::status::Subject { group: "".into(), kind: "pods/binding".into(), name: pod_name.clone() };
        self.registry()
            .guaranteed_update(res, self.ns(), &pod_name, |pod| {
                if pod.pointer("/metadata/deletionTimestamp").is_some() {
                    return Err(ApiError::conflict(&subject, format!("pod {pod_name} is being deleted, cannot be assigned to a host")));
                }
                if let Some(bound) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                    return Err(ApiError::conflict(&subject, format!("pod {pod_name} is already assigned to node {bound:?}")));
                }
                pod["spec"]["nodeName"] = json!(node);
                let condition = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()});
                let conditions = pod["status"].as_object_mut().map(|s| s.entry("conditions").or_insert(json!([])));
                if let Some(Value::Array(list)) = conditions {
                    list.retain(|c| c["type"] != "PodScheduled");
                    list.push(condition);
                }
                Ok(())
            })
            .await?;
        Ok(json_response(StatusCode::CREATED, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})))
    }

    /// Writes `spec.replicas` from a Scale; `options` is the options kind
    /// of the verb (`UpdateOptions`, `PatchOptions`) for errors.
    async fn write_scale(&self, scale: Value, options: &str) -> ApiResult<Response> {
        let res = self.target.resource;
        let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64);
        let Some(replicas) = replicas.filter(|r| *r >= 0) else {
            return Err(ApiError::invalid(
                &crate::status::Subject { group: "autoscaling".into(), kind: "Scale".into(), name: self.name().into() },
                vec![crate::status::Cause::invalid(
                    "spec.replicas",
                    scale.pointer("/spec/replicas").unwrap_or(&Value::Null),
                    "must be greater than or equal to 0",
                )],
            ));
        };
        let mut obj = self.registry().get(res, self.ns(), self.name()).await?;
        if let Some(rv) = meta::resource_version(&scale) {
            if Some(rv) != meta::resource_version(&obj) {
                return Err(ApiError::stale(&res.subject(self.name())));
            }
        }
        obj["spec"]["replicas"] = json!(replicas);
        let writer = self.writer(options)?;
        let updated = self.registry().update(res, self.ns(), self.name(), obj, Part::Main, self.dry_run(), Some(&writer)).await?;
        Ok(json_response(StatusCode::OK, &to_scale(&updated)?))
    }

    /// namespaces/finalize: only `spec.finalizers` is taken from the body;
    /// a terminating namespace with none left is removed. A body that
    /// names a resourceVersion must name the current one (409 otherwise),
    /// as for any update.
    async fn finalize(&self, body: Value) -> ApiResult<Response> {
        let finalizers = body.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
        let expected = meta::resource_version(&body).filter(|v| !v.is_empty());
        let res = self.target.resource;
        let subject = res.subject(self.name());
        let causes = crate::validation::finalizer_names(&finalizers, "spec.finalizers");
        if !causes.is_empty() {
            return Err(ApiError::invalid(&res.kind_subject(self.name()), causes));
        }
        let obj = self
            .registry()
            .guaranteed_update(res, None, self.name(), |ns| {
                // What guaranteed_update read carries its revision.
                let current = meta::resource_version(ns).and_then(|v| v.parse().ok()).unwrap_or(0);
                crate::registry::check_version(&subject, expected, current)?;
                ns["spec"]["finalizers"] = finalizers.clone();
                Ok(())
            })
            .await?;
        Ok(json_response(StatusCode::OK, &obj))
    }
}

/// What a DeleteOptions object (a delete's body, an Eviction's
/// `deleteOptions`) asks for, over `opts`.
pub fn delete_options_from(body: &Value, opts: &mut DeleteOptions) {
    opts.grace_period_seconds = body.get("gracePeriodSeconds").and_then(Value::as_i64);
    opts.propagation_policy = body.get("propagationPolicy").and_then(Value::as_str).map(String::from);
    opts.orphan_dependents = body.get("orphanDependents").and_then(Value::as_bool);
    if opts.orphan_dependents == Some(true) && opts.propagation_policy.is_none() {
        opts.propagation_policy = Some("Orphan".into());
    }
    opts.uid = body.pointer("/preconditions/uid").and_then(Value::as_str).map(String::from);
    opts.resource_version = body.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(String::from);
    if body.get("dryRun").and_then(Value::as_array).is_some_and(|d| d.iter().any(|x| x == "All")) {
        opts.dry_run = true;
    }
}

/// Merge and strategic merge patches are JSON objects; what else comes is
/// refused before it is applied, in upstream's words.
fn check_patch_shape(kind: PatchType, patch: &Value) -> ApiResult<()> {
    match (kind, patch) {
        (_, Value::Object(_)) | (PatchType::Json | PatchType::Apply, _) => Ok(()),
        // An array merge patch replaces the whole document (RFC 7386); what
        // that leaves is refused as a patch result below.
        (PatchType::Merge, Value::Array(_)) => Ok(()),
        (PatchType::Merge, _) => Err(ApiError::bad_request("Invalid JSON Patch")),
        (PatchType::Strategic, other) => {
            let what = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Bool(_) => "bool",
                Value::Null => "null",
                _ => "number",
            };
            Err(ApiError::bad_request(format!("json: cannot unmarshal {what} into Go value of type map[string]interface {{}}")))
        }
    }
}

/// A patch whose result is no object of the kind: 422 on `patch`, as
/// upstream answers when the patched JSON does not decode.
fn patch_result_invalid(doc: &str, why: &str) -> ApiError {
    ApiError::invalid(&Subject::default(), vec![Cause::invalid("patch", &json!(doc), format!("couldn't decode the patched object: {why}"))])
}

/// The patched document as it is quoted in a refusal (cut, as it may be
/// large).
fn doc_shown(doc: &Value) -> String {
    let mut text = doc.to_string();
    if text.len() > 256 {
        let cut = (0..=256).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// A Scale must decode as autoscaling/v1's.
fn check_scale(scale: &Value) -> Result<(), String> {
    crate::resources::decodes_as::<k8s_openapi::api::autoscaling::v1::Scale>(scale).map(drop)
}

/// The list options of a list, or (`watch`) of a watch, which may ask for
/// NotOlderThan with no version when it sends initial events.
/// A list response put together from the cached JSON of its items, without
/// parsing them again.
fn raw_list(res: &crate::resources::Resource, items: &[Bytes], revision: i64) -> Response {
    let head = json!({"kind": format!("{}List", res.kind), "apiVersion": res.api_version(), "metadata": {"resourceVersion": revision.to_string()}});
    let head = serde_json::to_vec(&head).expect("serializes");
    let mut body = Vec::with_capacity(head.len() + items.iter().map(|i| i.len() + 1).sum::<usize>() + 16);
    body.extend_from_slice(&head[..head.len() - 1]);
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub fn list_options(q: &Query, watch: bool) -> ApiResult<ListOptions> {
    let labels = selectors::parse_labels(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = selectors::parse_fields(q.get("fieldSelector").map(String::as_str).unwrap_or("")).map_err(ApiError::bad_request)?;
    let limit = match q.get("limit") {
        Some(l) => l.parse::<i64>().map_err(|_| ApiError::bad_request(format!("limit: invalid integer {l:?}")))?.max(0),
        None => 0,
    };
    let rv_match = q.get("resourceVersionMatch").filter(|s| !s.is_empty()).cloned();
    let rv = q.get("resourceVersion").filter(|s| !s.is_empty()).cloned();
    if let Some(m) = &rv_match {
        if !matches!(m.as_str(), "Exact" | "NotOlderThan") {
            return Err(ApiError::bad_request(format!("resourceVersionMatch: Unsupported value: {m:?}: supported values: \"Exact\", \"NotOlderThan\"")));
        }
        if rv.is_none() && !(watch && m == "NotOlderThan") {
            return Err(ApiError::bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided"));
        }
    }
    let continue_token = q.get("continue").filter(|s| !s.is_empty()).cloned();
    if continue_token.is_some() && rv.as_deref().is_some_and(|v| v != "0") {
        return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
    }
    Ok(ListOptions { labels, fields, limit, continue_token, resource_version: rv, resource_version_match: rv_match })
}

/// The autoscaling/v1 Scale of a workload.
fn to_scale(obj: &Value) -> ApiResult<Value> {
    // A ReplicationController selects by a plain label map.
    let selector = if obj["kind"] == "ReplicationController" {
        let labels = crate::strategy::map_string(obj, "/spec/selector");
        if labels == "<none>" {
            String::new()
        } else {
            labels
        }
    } else {
        obj.pointer("/spec/selector")
            .map(|s| crate::strategy::apps::label_selector(s).map(|sel| sel.to_string()))
            .transpose()
            .map_err(ApiError::internal)?
            .unwrap_or_default()
    };
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let keep = ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"];
    let metadata: serde_json::Map<String, Value> =
        m.as_object().map(|m| m.iter().filter(|(k, _)| keep.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0), "selector": selector},
    }))
}
