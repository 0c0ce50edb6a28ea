//! Watches served from the watch cache: newline-delimited JSON events,
//! flushed as they happen, with selector transitions (an object that stops
//! matching is sent as DELETED), bookmarks, 410 for versions too old, and
//! `sendInitialEvents`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::handlers::{list_options, App, Query};
use crate::registry::{catch_up, check_fields};
use crate::resources::Resource;
use crate::route::Target;
use crate::selectors::{Op, Requirement};
use crate::status::{ApiError, ApiResult};
use crate::table::{self, Include};
use crate::watch_cache::{Ended, Kind, Next, Selection, Start, Subscription};
use futures_util::StreamExt;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

/// How one watcher writes its lines (selection is the cache's job).
struct Format {
    resource: &'static Resource,
    table: Option<(Include, &'static str)>,
}

impl Format {
    fn line(&self, kind: Kind, object: &Bytes, first: &mut bool) -> Bytes {
        let kind = kind.as_str();
        let mut out = Vec::with_capacity(object.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        let object = crate::conversion::shown_bytes(self.resource, object);
        match self.table {
            None => out.extend_from_slice(&object),
            Some((include, version)) => {
                let obj: Value = serde_json::from_slice(&object).unwrap_or(Value::Null);
                let meta = json!({"resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))});
                let t = table::table(self.resource, std::slice::from_ref(&obj), meta, include, version, *first);
                *first = false;
                out.extend_from_slice(&serde_json::to_vec(&t).expect("a table serializes"));
            }
        }
        out.extend_from_slice(b"}\n");
        Bytes::from(out)
    }

    fn bookmark(&self, revision: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": meta});
        let mut line = serde_json::to_vec(&json!({"type": "BOOKMARK", "object": object})).expect("serializes");
        line.push(b'\n');
        Bytes::from(line)
    }
}

/// A watch of objects made at read time (apiservices): each as ADDED
/// unless the client resumes from a version, then nothing changes until
/// the watch times out.
pub fn computed(target: &Target, q: &Query, accept: &str, objects: Vec<Value>) -> ApiResult<Response> {
    let res = target.resource;
    let opts = list_options(q, true)?;
    check_fields(res, &opts.fields)?;
    let timeout = match q.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(t.parse().map_err(|_| ApiError::bad_request(format!("timeoutSeconds: invalid integer {t:?}")))?),
        None => DEFAULT_TIMEOUT,
    };
    let resumes = opts.resource_version.as_deref().is_some_and(|v| v != "0");
    let format = Format {
        resource: res,
        table: table::wants_table(accept).then(|| (Include::parse(q.get("includeObject").map(String::as_str)), table::table_version(accept))),
    };
    let mut first = true;
    let mut lines: Vec<Result<Bytes, std::convert::Infallible>> = Vec::new();
    for obj in objects.iter().filter(|o| !resumes && crate::registry::matches(res, o, &opts.labels, &opts.fields)) {
        if target.name.as_deref().is_some_and(|n| n != crate::meta::name(obj)) {
            continue;
        }
        let bytes = Bytes::from(serde_json::to_vec(obj).expect("a JSON value serializes"));
        lines.push(Ok(format.line(Kind::Added, &bytes, &mut first)));
    }
    let end = futures_util::stream::once(tokio::time::sleep(timeout)).filter_map(|_| async { None::<Result<Bytes, std::convert::Infallible>> });
    Ok(response(Body::from_stream(futures_util::stream::iter(lines).chain(end))))
}

fn error_line(e: &ApiError) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).expect("serializes");
    line.push(b'\n');
    Bytes::from(line)
}

fn response(body: Body) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache, private")], body).into_response()
}

pub async fn serve(app: &Arc<App>, target: &Target, q: &Query, accept: &str) -> ApiResult<Response> {
    // Another version of a stored resource is watched through the stored
    // row's cache; each event is converted as it is written out.
    let res = target.resource.storage_row();
    let opts = list_options(q, true)?;
    let mut fields = opts.fields.clone();
    if let Some(name) = &target.name {
        fields.0.push(Requirement { key: "metadata.name".into(), op: Op::Equals(name.clone()) });
    }
    check_fields(res, &fields)?;
    let timeout = match q.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(t.parse().map_err(|_| ApiError::bad_request(format!("timeoutSeconds: invalid integer {t:?}")))?),
        None => DEFAULT_TIMEOUT,
    };
    let bookmarks = matches!(q.get("allowWatchBookmarks").map(String::as_str), Some("true" | "1"));
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true" || v == "1");
    let rv = opts.resource_version.clone();
    if send_initial.is_some() {
        if opts.resource_version_match.as_deref() != Some("NotOlderThan") {
            return Err(ApiError::invalid(
                &crate::status::Subject { group: "meta.k8s.io".into(), kind: "ListOptions".into(), name: "".into() },
                vec![crate::status::Cause::forbidden("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")],
            ));
        }
        if send_initial == Some(true) && !bookmarks {
            return Err(ApiError::invalid(
                &crate::status::Subject { group: "meta.k8s.io".into(), kind: "ListOptions".into(), name: "".into() },
                vec![crate::status::Cause::forbidden("allowWatchBookmarks", "allowWatchBookmarks must be true when sendInitialEvents is set")],
            ));
        }
    } else if opts.resource_version_match.is_some() {
        return Err(ApiError::bad_request("resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"));
    }
    let rv_number = match rv.as_deref() {
        None | Some("0") => None,
        Some(v) => Some(v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("resourceVersion: invalid value {v:?}")))?),
    };

    let cache = app.registry.cache(res).await?;
    // A watch without a version starts from a state at least as new as
    // etcd's now (a consistent read); with NotOlderThan, as new as asked.
    let wanted = match (send_initial, rv_number) {
        (Some(true), Some(v)) => v,
        (_, None) if rv.is_none() => app.registry.current_revision().await?,
        _ => 0,
    };
    catch_up(&cache, wanted).await?;
    let start = match (send_initial, rv_number) {
        (Some(true), _) => Start::Snapshot,
        (Some(false), None) => Start::After(cache.revision()),
        (Some(false), Some(v)) => Start::After(v),
        (None, None) => Start::Snapshot,
        (None, Some(v)) => Start::After(v),
    };
    let selection = Selection { prefix: res.prefix(target.namespace.as_deref()), labels: opts.labels.clone(), fields };
    let format = Format {
        resource: target.resource,
        table: table::wants_table(accept).then(|| (Include::parse(q.get("includeObject").map(String::as_str)), table::table_version(accept))),
    };
    match cache.subscribe(start, selection) {
        Err(oldest) => {
            let rv = rv_number.unwrap_or(0);
            let e = ApiError::expired(format!("too old resource version: {rv} ({oldest})"));
            Ok(response(Body::from(error_line(&e))))
        }
        Ok(sub) => {
            let initial_end = (send_initial == Some(true)).then_some(sub.after);
            let deadline = Box::pin(tokio::time::sleep(timeout));
            let tick = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
            let last = sub.after;
            let lines = Lines { format, sub, deadline, tick, bookmarks, initial_end, bookmark_due: false, first: true, last, done: false };
            let stream = futures_util::stream::unfold(lines, |mut lines| async move {
                let line = lines.next().await?;
                Some((Ok::<_, std::convert::Infallible>(line), lines))
            });
            Ok(response(Body::from_stream(stream)))
        }
    }
}

/// One watch's response body, a line at a time: the initial events, then
/// live ones, until the timeout, or the cache ends the watch (too slow, or
/// relisted; the client then watches again). A line is made only when the
/// connection takes the previous one, so a client that does not read
/// holds no more than the cache's backlog lets it; one that leaves drops
/// this, and with it its place in the cache.
struct Lines {
    format: Format,
    sub: Subscription,
    deadline: Pin<Box<tokio::time::Sleep>>,
    tick: tokio::time::Interval,
    bookmarks: bool,
    /// The revision of the bookmark that ends `sendInitialEvents`' events, until sent.
    initial_end: Option<i64>,
    bookmark_due: bool,
    first: bool,
    /// The newest revision sent.
    last: i64,
    done: bool,
}

enum Wake {
    Ready,
    Tick,
    Deadline,
}

impl Lines {
    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            if self.sub.initial_done() {
                if let Some(at) = self.initial_end.take() {
                    return Some(self.format.bookmark(at, true));
                }
            }
            // Read before looking for events: with none waiting, every event
            // up to it has been sent, so a bookmark there loses nothing.
            let reached = *self.sub.progress.borrow();
            match self.sub.try_next() {
                Next::Event(d) => {
                    self.last = self.last.max(d.event.revision);
                    return Some(self.format.line(d.kind, &d.object(), &mut self.first));
                }
                Next::Ended(why) => {
                    if why != Ended::Relisted {
                        tracing::debug!(resource = self.format.resource.plural, "watch closed: {why:?}");
                    }
                    return None;
                }
                Next::Idle if self.bookmark_due => {
                    self.bookmark_due = false;
                    return Some(self.format.bookmark(reached.max(self.last), false));
                }
                Next::Idle => {}
            }
            let wake = tokio::select! {
                _ = self.sub.ready() => Wake::Ready,
                _ = self.tick.tick(), if self.bookmarks => Wake::Tick,
                _ = &mut self.deadline => Wake::Deadline,
            };
            match wake {
                Wake::Ready => {}
                Wake::Tick => self.bookmark_due = true,
                Wake::Deadline => {
                    self.done = true;
                    // With events still waiting, the bookmark stays at what was
                    // sent, so a client resuming from it misses none of them.
                    let reached = *self.sub.progress.borrow();
                    let at = if self.sub.pending() { self.last } else { reached.max(self.last) };
                    return self.bookmarks.then(|| self.format.bookmark(at, false));
                }
            }
        }
    }
}
