//! The generic store: create, get, list, update and delete for every
//! resource of the table, with the resource's strategy deciding defaults,
//! checks and field values. Handlers translate HTTP to these calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::allocator;
use crate::managed_fields::{self, Writer};
use crate::meta::{self, meta_mut};
use crate::resources::{self, Resource};
use crate::selectors::Selector;
use crate::status::{ApiError, ApiResult, Cause, Subject};
use crate::storage::{Etcd, ExpiringLeases, ReadError, Stored, WriteError};

/// Upstream's default --event-ttl.
pub const EVENT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
use crate::validation;
use crate::watch_cache::WatchCache;
use crate::zero_values;

pub struct Registry {
    pub etcd: Etcd,
    /// Where Service ClusterIPs and NodePorts come from.
    pub services: allocator::ServiceNetwork,
    /// Events each watch cache keeps for resuming watches.
    pub watch_history: usize,
    /// Bytes of objects each watch cache's history keeps.
    pub watch_history_bytes: usize,
    /// Bytes of events that may wait for one watcher before it is closed.
    pub watcher_backlog_bytes: usize,
    /// How long Event objects live (upstream's --event-ttl).
    pub events: ExpiringLeases,
    caches: Mutex<HashMap<&'static str, Arc<tokio::sync::OnceCell<Arc<WatchCache>>>>>,
}

#[derive(Debug, Default, Clone)]
pub struct ListOptions {
    pub labels: Selector,
    pub fields: Selector,
    pub limit: i64,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

#[derive(Debug)]
pub struct ListResult {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    /// The deprecated `orphanDependents`, as given.
    pub orphan_dependents: Option<bool>,
}

/// Which part of an object an update writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything but status (for resources that have a status subresource).
    Main,
    /// Status only.
    Status,
    /// A pod's `spec.ephemeralContainers` only (pods/ephemeralcontainers).
    EphemeralContainers,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

fn read_failed(e: ReadError) -> ApiError {
    match e {
        ReadError::Compacted => ApiError::expired("The resourceVersion for the provided list is too old."),
        ReadError::Future => ApiError::bad_request("Too large resource version"),
        ReadError::Etcd(e) => ApiError::unavailable(format!("etcd: {e}")),
    }
}

/// An object as clients see it: the stored JSON with resourceVersion set,
/// and the zero values Go writes (for objects stored before they were
/// filled in on write).
pub fn decode(stored: &Stored) -> ApiResult<Value> {
    let mut v: Value = serde_json::from_slice(&stored.value).map_err(|e| internal(format!("object at {} is not JSON: {e}", stored.key)))?;
    zero_values::fill(&mut v);
    meta_mut(&mut v).insert("resourceVersion".into(), json!(stored.mod_revision.to_string()));
    Ok(v)
}

/// What is stored: without resourceVersion (the key's revision is the truth).
fn encode(obj: &Value) -> Vec<u8> {
    if obj.pointer("/metadata/resourceVersion").is_none() {
        return serde_json::to_vec(obj).expect("a JSON value serializes");
    }
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&v).expect("a JSON value serializes")
}

pub fn field_value(res: &Resource, obj: &Value, field: &str) -> Option<String> {
    let pointer = match field {
        "metadata.name" => "/metadata/name",
        "metadata.namespace" if res.namespaced => "/metadata/namespace",
        _ => res.strategy.fields().iter().find(|(k, _)| *k == field)?.1,
    };
    // Upstream's field sets hold every supported field, "" when unset, so
    // `spec.nodeName=` finds pods not yet scheduled.
    Some(match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    })
}

/// Waits (briefly) until `cache` has seen `revision`; 504 if it does not.
pub async fn catch_up(cache: &WatchCache, revision: i64) -> ApiResult<()> {
    if revision > 0 && !cache.wait_for(revision, std::time::Duration::from_secs(3)).await {
        return Err(ApiError {
            code: 504,
            reason: "Timeout",
            message: format!("Too large resource version: {revision}, current: {}", cache.revision()),
            details: None,
        });
    }
    Ok(())
}

/// Checks that every key of a field selector is one the resource has.
pub fn check_fields(res: &Resource, fields: &Selector) -> ApiResult<()> {
    for r in &fields.0 {
        let known = r.key == "metadata.name" || (r.key == "metadata.namespace" && res.namespaced) || res.strategy.fields().iter().any(|(k, _)| *k == r.key);
        if !known {
            return Err(ApiError::bad_request(format!("field label not supported: {}", r.key)));
        }
    }
    Ok(())
}

pub fn matches(res: &Resource, obj: &Value, labels: &Selector, fields: &Selector) -> bool {
    labels.matches_labels(meta::labels(obj)) && fields.matches(|k| field_value(res, obj, k))
}

/// A continue token, as upstream encodes it: where the next page starts and
/// the revision all pages are read at.
fn encode_continue(revision: i64, start: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start});
    base64::engine::general_purpose::STANDARD.encode(token.to_string())
}

fn decode_continue(token: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::bad_request("continue key is not valid: the continue token could not be decoded");
    let raw = base64::engine::general_purpose::STANDARD.decode(token).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?;
    if start.starts_with('/') || start.contains("..") {
        return Err(bad());
    }
    Ok((rv, start.to_string()))
}

fn random_suffix() -> String {
    // Upstream's alphabet: no vowels (no words), no look-alike characters.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes.iter().take(5).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// Whether `metadata.generation` counts spec changes for this resource.
fn tracks_generation(res: &Resource) -> bool {
    res.has_status() && res.strategy.tracks_generation()
}

/// Whether an update leaves an object whose deletion began with nothing
/// holding it: no metadata finalizer, and its strategy does not hold it.
fn deletion_finished(res: &Resource, obj: &Value, old: &Value) -> bool {
    old.pointer("/metadata/deletionTimestamp").is_some()
        && obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty)
        && !res.strategy.still_held(obj, old)
}

fn parse_rv(s: &str) -> ApiResult<i64> {
    s.parse::<i64>().map_err(|_| ApiError::bad_request(format!("Invalid value: {s:?}: resourceVersion must be an integer")))
}

/// An update's optimistic-concurrency check: a resourceVersion the client
/// names must be the stored revision (409 otherwise, 400 if it is no
/// number).
pub fn check_version(subject: &Subject, given: Option<&str>, current: i64) -> ApiResult<()> {
    match given {
        Some(rv) if parse_rv(rv)? != current => Err(ApiError::stale(subject)),
        _ => Ok(()),
    }
}

impl Registry {
    pub fn new(etcd: Etcd) -> Self {
        Registry {
            etcd,
            services: allocator::ServiceNetwork::default(),
            watch_history: crate::watch_cache::HISTORY,
            watch_history_bytes: crate::watch_cache::HISTORY_BYTES,
            watcher_backlog_bytes: crate::watch_cache::WATCHER_BACKLOG_BYTES,
            events: ExpiringLeases::new(EVENT_TTL),
            caches: Mutex::new(HashMap::new()),
        }
    }

    /// The lease an object of `res` expires with: events go after their
    /// TTL (every write renews it), everything else stays.
    async fn expiry(&self, res: &Resource) -> ApiResult<Option<i64>> {
        if !res.strategy.expires() {
            return Ok(None);
        }
        self.events.lease(&self.etcd).await.map(Some).map_err(|e| internal(format!("etcd lease: {e:?}")))
    }

    /// Starts every stored resource's watch cache. A cache started only on
    /// first use would answer 410 to a watch from a version written before
    /// that (say, one from a create's response), which upstream does not.
    pub async fn start_watch_caches(&self) -> ApiResult<()> {
        for res in resources::RESOURCES.iter().filter(|r| r.stored()) {
            self.cache(res).await?;
        }
        Ok(())
    }

    /// The watch cache of a resource, started on first use.
    pub async fn cache(&self, res: &'static Resource) -> ApiResult<Arc<WatchCache>> {
        let res = res.storage_row();
        let cell = self.caches.lock().unwrap().entry(res.storage).or_default().clone();
        let limits = crate::watch_cache::Limits {
            history_events: self.watch_history,
            history_bytes: self.watch_history_bytes,
            watcher_backlog_bytes: self.watcher_backlog_bytes,
        };
        cell.get_or_try_init(|| WatchCache::start(self.etcd.clone(), res, limits))
            .await
            .cloned()
            .map_err(|e| ApiError::unavailable(format!("cannot start the watch cache of {}: {e}", res.plural)))
    }

    /// Fills in and checks what the server allocates (Service addresses).
    async fn allocate(&self, res: &Resource, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        if !allocator::allocates(res) {
            return Ok(());
        }
        let taken = self.etcd.keys(allocator::CLAIMS_PREFIX).await.map_err(read_failed)?.into_iter().collect();
        let seed = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes"));
        allocator::allocate(res, obj, old, &self.services, &taken, seed)
    }

    async fn read(&self, res: &Resource, namespace: Option<&str>, name: &str) -> ApiResult<Stored> {
        self.etcd.get(&res.key(namespace, name)).await.map_err(read_failed)?.ok_or_else(|| ApiError::not_found(&res.subject(name)))
    }

    pub async fn get(&self, res: &Resource, namespace: Option<&str>, name: &str) -> ApiResult<Value> {
        decode(&self.read(res, namespace, name).await?)
    }

    /// New objects may only go into a namespace that exists and is not
    /// being deleted.
    async fn check_namespace(&self, res: &Resource, namespace: &str, name: &str) -> ApiResult<()> {
        let ns = resources::namespaces();
        let key = ns.key(None, namespace);
        // The namespaces' watch cache answers without a round trip to etcd;
        // one it has not seen yet (just created) is read from etcd.
        let cached = self.cache(ns).await?.get(&key);
        let obj: Value = match cached {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(internal)?,
            None => match self.etcd.get(&key).await.map_err(read_failed)? {
                Some(found) => decode(&found)?,
                None => return Err(ApiError::not_found(&ns.subject(namespace))),
            },
        };
        if obj.pointer("/status/phase") == Some(&json!("Terminating")) {
            return Err(ApiError::forbidden(
                &res.subject(name),
                format!("unable to create new content in namespace {namespace} because it is being terminated"),
            ));
        }
        Ok(())
    }

    /// Checks metadata every resource shares, then the strategy's own checks.
    fn validate(&self, res: &Resource, obj: &Value) -> ApiResult<()> {
        let mut causes = Vec::new();
        let name = meta::name(obj);
        if name.is_empty() {
            causes.push(Cause::required("metadata.name"));
        } else if let Some(why) = validation::dns1123_subdomain(name) {
            causes.push(Cause::invalid("metadata.name", &json!(name), why));
        }
        if res.namespaced {
            let ns = meta::namespace(obj).unwrap_or("");
            if let Some(why) = validation::dns1123_label(ns) {
                causes.push(Cause::invalid("metadata.namespace", &json!(ns), why));
            }
        }
        if let Some(m) = obj.get("metadata") {
            validation::metadata_maps(m, &mut causes);
        }
        causes.extend(res.strategy.validate(obj));
        // The strategy may repeat a name check the generic one made.
        causes.dedup();
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&res.kind_subject(name), causes))
        }
    }

    /// Creates an object. `writer`, when given, is recorded in its
    /// managedFields as the manager of what it set.
    pub async fn create(&self, res: &Resource, namespace: Option<&str>, mut obj: Value, dry_run: bool, writer: Option<&Writer>) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        let m = meta_mut(&mut obj);
        if m.get("name").and_then(Value::as_str).unwrap_or("").is_empty() {
            if let Some(prefix) = m.get("generateName").and_then(Value::as_str).filter(|p| !p.is_empty()) {
                let generated = format!("{prefix}{}", random_suffix());
                m.insert("name".into(), json!(generated));
            }
        }
        if res.namespaced {
            let ns = namespace.unwrap_or("default");
            match m.get("namespace").and_then(Value::as_str) {
                Some(theirs) if !theirs.is_empty() && theirs != ns => {
                    return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"))
                }
                _ => {
                    m.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            m.remove("namespace");
        }
        for server_set in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
            m.remove(server_set);
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
        if tracks_generation(res) {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        if res.has_status() {
            obj["status"] = json!({});
        }
        res.strategy.default(&mut obj);
        crate::admission::on_create(self, res, &mut obj).await?;
        zero_values::fill(&mut obj);
        if let Some(w) = writer {
            managed_fields::record_update(None, &mut obj, w)?;
        }
        self.validate(res, &obj)?;
        let name = meta::name(&obj).to_string();
        let ns = meta::namespace(&obj).map(str::to_string);
        if res.namespaced {
            self.check_namespace(res, ns.as_deref().unwrap_or("default"), &name).await?;
        }
        let key = res.key(ns.as_deref(), &name);
        // An existing Service holds its own addresses: say it exists rather
        // than that they are taken.
        if allocator::allocates(res) && self.etcd.get(&key).await.map_err(read_failed)?.is_some() {
            return Err(ApiError::already_exists(&res.subject(&name)));
        }
        // A concurrent create may take an address picked here first: pick
        // again from the object as requested. Only what allocates needs the
        // copy.
        let requested = allocator::allocates(res).then(|| obj.clone());
        let mut first = Some(obj);
        let mut attempts = 0;
        loop {
            let mut candidate = match first.take() {
                Some(o) => o,
                None => requested.clone().expect("only allocating resources try again"),
            };
            self.allocate(res, &mut candidate, None).await?;
            if dry_run {
                return Ok(candidate);
            }
            let claims = allocator::claims(res, &candidate);
            let lease = self.expiry(res).await?;
            match self.etcd.create(&key, encode(&candidate), &claims, lease).await {
                Ok(revision) => {
                    meta_mut(&mut candidate).insert("resourceVersion".into(), json!(revision.to_string()));
                    return Ok(candidate);
                }
                Err(WriteError::Exists) => return Err(ApiError::already_exists(&res.subject(&name))),
                Err(WriteError::Claimed(_)) if attempts < 8 => attempts += 1,
                Err(e) => return Err(internal(format!("etcd: {e:?}"))),
            }
        }
    }

    /// etcd's revision now: what a consistent read must reach.
    pub async fn current_revision(&self) -> ApiResult<i64> {
        self.etcd.revision().await.map_err(read_failed)
    }

    /// Whether a list can be served from the watch cache: not paged and not
    /// at an exact version (those read etcd, as upstream does).
    pub fn cacheable(opts: &ListOptions) -> bool {
        opts.limit == 0 && opts.continue_token.is_none() && opts.resource_version_match.as_deref() != Some("Exact")
    }

    /// A list from the watch cache, as JSON bytes with resourceVersions set.
    /// Without a version it first waits for the cache to reach etcd's
    /// current revision, so the read is as consistent as one from etcd.
    pub async fn list_cached(&self, res: &'static Resource, namespace: Option<&str>, opts: &ListOptions) -> ApiResult<(Vec<bytes::Bytes>, i64)> {
        check_fields(res, &opts.fields)?;
        let cache = self.cache(res).await?;
        let wanted = match opts.resource_version.as_deref() {
            Some("0") => 0,
            Some(v) => parse_rv(v)?,
            None => self.current_revision().await?,
        };
        catch_up(&cache, wanted).await?;
        // Selected with what the cache read from each object when it came.
        Ok(cache.snapshot(&res.prefix(namespace), &opts.labels, &opts.fields))
    }

    pub async fn list(&self, res: &Resource, namespace: Option<&str>, opts: &ListOptions) -> ApiResult<ListResult> {
        check_fields(res, &opts.fields)?;
        let prefix = res.prefix(namespace);
        let (mut revision, mut start) = match &opts.continue_token {
            Some(token) => {
                let (rv, start) = decode_continue(token)?;
                (rv, format!("{prefix}{start}"))
            }
            None => (0, String::new()),
        };
        if opts.continue_token.is_none() && opts.resource_version_match.as_deref() == Some("Exact") {
            revision = parse_rv(opts.resource_version.as_deref().unwrap_or(""))?;
        }
        let filtered = !opts.labels.is_empty() || !opts.fields.is_empty();
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut remaining = None;
        loop {
            let want = if opts.limit > 0 { opts.limit - items.len() as i64 } else { 0 };
            let page = self.etcd.range(&prefix, &start, revision, want).await.map_err(|e| match e {
                ReadError::Compacted if opts.continue_token.is_some() => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ),
                other => read_failed(other),
            })?;
            revision = page.revision.max(revision);
            let mut last_key = None;
            for stored in &page.items {
                let obj = decode(stored)?;
                last_key = Some(stored.key.clone());
                if !filtered || matches(res, &obj, &opts.labels, &opts.fields) {
                    items.push(obj);
                }
            }
            if !page.more {
                break;
            }
            let last = last_key.expect("a page with more has items");
            start = format!("{last}\0");
            if opts.limit > 0 && items.len() as i64 >= opts.limit {
                // Relative to the prefix read, which the next page adds back.
                let rel = start.strip_prefix(&prefix).unwrap_or(&start);
                continue_token = Some(encode_continue(revision, rel));
                if !filtered {
                    remaining = Some(page.count - page.items.len() as i64);
                }
                break;
            }
        }
        Ok(ListResult { items, revision, continue_token, remaining })
    }

    // The arguments are the request's parts, each used once; a struct for
    // them would only be filled and taken apart again at each caller.
    #[allow(clippy::too_many_arguments)]
    pub async fn update(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        mut obj: Value,
        part: Part,
        dry_run: bool,
        writer: Option<&Writer>,
    ) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON object"));
        }
        let their_name = meta::name(&obj);
        if !their_name.is_empty() && their_name != name {
            return Err(ApiError::bad_request(format!("the name of the object ({their_name}) does not match the name on the URL ({name})")));
        }
        if res.namespaced {
            if let Some(theirs) = meta::namespace(&obj).filter(|s| !s.is_empty()) {
                if Some(theirs) != namespace {
                    return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
                }
            }
        }
        let current = self.read(res, namespace, name).await?;
        let old = decode(&current)?;
        check_version(&res.subject(name), meta::resource_version(&obj), current.mod_revision)?;
        // An update that names a uid must name this object's (upstream
        // fills in an absent one and refuses another).
        if let (Some(theirs), Some(ours)) = (meta::get(&obj, "uid").filter(|u| !u.is_empty()), meta::get(&old, "uid")) {
            if theirs != ours {
                return Err(ApiError::invalid(&res.kind_subject(name), vec![Cause::invalid("metadata.uid", &json!(theirs), "field is immutable")]));
            }
        }
        obj["apiVersion"] = json!(res.api_version());
        obj["kind"] = json!(res.kind);
        if part == Part::Status {
            // A status write changes status alone (and nothing of spec or metadata).
            let status = obj.get("status").cloned().unwrap_or(json!({}));
            let managed = obj.pointer("/metadata/managedFields").cloned();
            obj = old.clone();
            obj["status"] = status;
            // The record of who manages what is written through status too
            // (server-side apply to status computes it before this).
            if let Some(m) = managed {
                meta_mut(&mut obj).insert("managedFields".into(), m);
            }
        } else if part == Part::EphemeralContainers {
            // Changes the ephemeral containers alone, as upstream's
            // EphemeralContainersStrategy.
            let ephemeral = obj.pointer("/spec/ephemeralContainers").cloned();
            let managed = obj.pointer("/metadata/managedFields").cloned();
            obj = old.clone();
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                match ephemeral {
                    Some(list) => spec.insert("ephemeralContainers".into(), list),
                    None => spec.remove("ephemeralContainers"),
                };
            }
            if let Some(m) = managed {
                meta_mut(&mut obj).insert("managedFields".into(), m);
            }
        } else {
            if res.has_status() {
                obj["status"] = old.get("status").cloned().unwrap_or(json!({}));
            }
            res.strategy.prepare_update(&mut obj, &old);
        }
        {
            let m = meta_mut(&mut obj);
            let om = old.get("metadata").cloned().unwrap_or(json!({}));
            for kept in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
                match om.get(kept) {
                    Some(v) => m.insert(kept.into(), v.clone()),
                    None => m.remove(kept),
                };
            }
            m.insert("name".into(), json!(name));
            if res.namespaced {
                m.insert("namespace".into(), json!(namespace.unwrap_or("default")));
            }
            m.insert("resourceVersion".into(), json!(current.mod_revision.to_string()));
        }
        res.strategy.default(&mut obj);
        zero_values::fill(&mut obj);
        self.allocate(res, &mut obj, Some(&old)).await?;
        if tracks_generation(res) && part == Part::Main && obj.get("spec") != old.get("spec") {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            meta_mut(&mut obj).insert("generation".into(), json!(generation));
        }
        if let Some(w) = writer {
            managed_fields::record_update(Some(&old), &mut obj, w)?;
        }
        self.validate(res, &obj)?;
        let causes = match part {
            Part::EphemeralContainers => res.strategy.validate_ephemeral_containers_update(&obj, &old),
            _ => res.strategy.validate_update(&obj, &old),
        };
        if !causes.is_empty() {
            return Err(ApiError::invalid(&res.kind_subject(name), causes));
        }
        if obj == old {
            // Nothing changed: upstream answers with the object as stored.
            return Ok(old);
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let finalizers = obj.pointer("/metadata/finalizers").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            let added = finalizers > old.pointer("/metadata/finalizers").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            if added {
                return Err(ApiError::invalid(
                    &res.kind_subject(name),
                    vec![Cause::forbidden("metadata.finalizers", "no new finalizers can be added if the object is being deleted")],
                ));
            }
        }
        if dry_run {
            return Ok(obj);
        }
        // An object being deleted whose last finalizer is removed goes now,
        // unless its strategy still holds it (a namespace's spec.finalizers,
        // a bound pod's kubelet).
        let finished = deletion_finished(res, &obj, &old);
        let key = res.key(namespace, name);
        let (old_claims, new_claims) = (allocator::claims(res, &old), allocator::claims(res, &obj));
        let result = if finished {
            self.etcd.delete(&key, current.mod_revision, &old_claims).await
        } else {
            let take: Vec<String> = new_claims.iter().filter(|c| !old_claims.contains(c)).cloned().collect();
            let free: Vec<String> = old_claims.iter().filter(|c| !new_claims.contains(c)).cloned().collect();
            let lease = self.expiry(res).await?;
            self.etcd.update(&key, encode(&obj), current.mod_revision, &take, &free, lease).await
        };
        let revision = result.map_err(|e| match e {
            WriteError::Changed(_) => ApiError::stale(&res.subject(name)),
            WriteError::Missing => ApiError::not_found(&res.subject(name)),
            WriteError::Claimed(c) => ApiError::conflict(&res.subject(name), format!("{c} was allocated meanwhile; try again")),
            other => internal(format!("etcd: {other:?}")),
        })?;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(revision.to_string()));
        Ok(obj)
    }

    /// Deletes an object, or starts its deletion: objects with finalizers,
    /// bound pods with a grace period and namespaces get a
    /// deletionTimestamp and stay until their finalizers and owners are done.
    /// Returns the object and whether it is gone.
    /// A writer that came first between the read and the write makes it
    /// read again and decide anew (preconditions included), as upstream's
    /// store does: a delete without preconditions never answers Conflict.
    pub async fn delete(&self, res: &Resource, namespace: Option<&str>, name: &str, opts: &DeleteOptions) -> ApiResult<(Value, bool)> {
        loop {
            if let Some(done) = self.delete_once(res, namespace, name, opts).await? {
                return Ok(done);
            }
        }
    }

    /// One try of `delete`; `None` when the object changed meanwhile.
    async fn delete_once(&self, res: &Resource, namespace: Option<&str>, name: &str, opts: &DeleteOptions) -> ApiResult<Option<(Value, bool)>> {
        let current = self.read(res, namespace, name).await?;
        let mut obj = decode(&current)?;
        let subject = res.subject(name);
        if let Some(uid) = &opts.uid {
            let theirs = meta::get(&obj, "uid").unwrap_or("");
            if theirs != uid {
                return Err(ApiError::conflict(&subject, format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {theirs}")));
            }
        }
        if let Some(rv) = &opts.resource_version {
            if parse_rv(rv)? != current.mod_revision {
                return Err(ApiError::conflict(
                    &subject,
                    format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", current.mod_revision),
                ));
            }
        }
        let mut finalizers: Vec<Value> = obj.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
        let policy = opts.propagation_policy.as_deref();
        match policy {
            None | Some("Background") => {}
            Some("Foreground") => finalizers.push(json!("foregroundDeletion")),
            Some("Orphan") => finalizers.push(json!("orphan")),
            Some(other) => {
                return Err(ApiError::invalid(
                    &res.kind_subject(name),
                    vec![Cause::not_supported("propagationPolicy", &json!(other), &["Foreground", "Background", "Orphan"])],
                ))
            }
        }
        finalizers.dedup();
        let grace = res.strategy.deletion_grace(&obj, opts.grace_period_seconds).max(0);
        let already = obj.pointer("/metadata/deletionTimestamp").is_some();
        let waits = res.strategy.begin_deletion(&mut obj);
        let graceful = !finalizers.is_empty() || grace > 0 || waits;
        if graceful {
            let now = chrono::Utc::now();
            {
                let m = meta_mut(&mut obj);
                if !already {
                    let at = now + chrono::Duration::seconds(grace);
                    m.insert("deletionTimestamp".into(), json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
                }
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if !finalizers.is_empty() {
                    m.insert("finalizers".into(), Value::Array(finalizers));
                }
            }
            if already && obj == decode(&current)? {
                return Ok(Some((obj, false)));
            }
            if opts.dry_run {
                return Ok(Some((obj, false)));
            }
            let lease = self.expiry(res).await?;
            let revision = match self.etcd.update(&res.key(namespace, name), encode(&obj), current.mod_revision, &[], &[], lease).await {
                Ok(revision) => revision,
                Err(WriteError::Changed(_)) => return Ok(None),
                Err(WriteError::Missing) => return Err(ApiError::not_found(&subject)),
                Err(other) => return Err(internal(format!("etcd: {other:?}"))),
            };
            meta_mut(&mut obj).insert("resourceVersion".into(), json!(revision.to_string()));
            return Ok(Some((obj, false)));
        }
        if opts.dry_run {
            return Ok(Some((obj, true)));
        }
        let claims = allocator::claims(res, &obj);
        match self.etcd.delete(&res.key(namespace, name), current.mod_revision, &claims).await {
            Ok(_) => Ok(Some((obj, true))),
            Err(WriteError::Changed(_)) => Ok(None),
            Err(WriteError::Missing) => Err(ApiError::not_found(&subject)),
            Err(other) => Err(internal(format!("etcd: {other:?}"))),
        }
    }

    /// Deletes every object a list with `list_opts` returns.
    pub async fn delete_collection(&self, res: &Resource, namespace: Option<&str>, list_opts: &ListOptions, opts: &DeleteOptions) -> ApiResult<ListResult> {
        let mut listed = self.list(res, namespace, &ListOptions { limit: 0, continue_token: None, ..list_opts.clone() }).await?;
        let mut deleted = Vec::new();
        for obj in listed.items.drain(..) {
            let ns = meta::namespace(&obj).map(str::to_string);
            match self.delete(res, ns.as_deref(), meta::name(&obj), opts).await {
                Ok((obj, _)) => deleted.push(obj),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        listed.items = deleted;
        Ok(listed)
    }
}

impl Registry {
    /// Reads an object, lets `change` edit it, and writes it back on the
    /// revision it read, retrying when another writer came first. `change`
    /// decides with the latest state each time, so nothing is lost.
    pub async fn guaranteed_update(
        &self,
        res: &Resource,
        namespace: Option<&str>,
        name: &str,
        mut change: impl FnMut(&mut Value) -> ApiResult<()>,
    ) -> ApiResult<Value> {
        let subject = res.subject(name);
        loop {
            let current = self.read(res, namespace, name).await?;
            let before = decode(&current)?;
            let mut obj = before.clone();
            change(&mut obj)?;
            zero_values::fill(&mut obj);
            if obj == before {
                // Nothing to write: no new version, no watch event.
                return Ok(obj);
            }
            let key = res.key(namespace, name);
            let gone = deletion_finished(res, &obj, &before);
            // Namespaces and pods only come here: neither holds claims.
            let result = if gone {
                self.etcd.delete(&key, current.mod_revision, &[]).await
            } else {
                self.etcd.update(&key, encode(&obj), current.mod_revision, &[], &[], None).await
            };
            match result {
                Ok(revision) => {
                    meta_mut(&mut obj).insert("resourceVersion".into(), json!(revision.to_string()));
                    return Ok(obj);
                }
                Err(WriteError::Changed(_)) => continue,
                Err(WriteError::Missing) => return Err(ApiError::not_found(&subject)),
                Err(other) => return Err(internal(format!("etcd: {other:?}"))),
            }
        }
    }
}
