//! Watches served from the watch cache: newline-delimited JSON events,
//! flushed as they happen, with selector transitions (an object that stops
//! matching is sent as DELETED), bookmarks, 410 for versions too old, and
//! `sendInitialEvents`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::handlers::{list_options, App, Query};
use crate::registry::{catch_up, check_fields, matches};
use crate::resources::Resource;
use crate::route::Target;
use crate::selectors::{Op, Requirement, Selector};
use crate::status::{ApiError, ApiResult};
use crate::table::{self, Include};
use crate::watch_cache::{Event, Kind, Start, Subscription};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

/// Everything one watcher needs to turn cache events into its lines.
struct Filter {
    resource: &'static Resource,
    prefix: String,
    labels: Selector,
    fields: Selector,
    table: Option<(Include, &'static str)>,
}

impl Filter {
    fn selects(&self) -> bool {
        !self.labels.is_empty() || !self.fields.is_empty()
    }

    fn matches(&self, object: &[u8]) -> bool {
        if !self.selects() {
            return true;
        }
        serde_json::from_slice::<Value>(object).is_ok_and(|o| matches(self.resource, &o, &self.labels, &self.fields))
    }

    /// The event type this watcher sees, if any.
    fn kind_for(&self, e: &Event) -> Option<&'static str> {
        if !e.key.starts_with(&self.prefix) {
            return None;
        }
        match e.kind {
            Kind::Added => self.matches(&e.object).then_some("ADDED"),
            Kind::Deleted => self.matches(&e.object).then_some("DELETED"),
            Kind::Modified => {
                let now = self.matches(&e.object);
                let before = !self.selects() || e.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }

    fn line(&self, kind: &str, object: &Bytes, first: &mut bool) -> Bytes {
        let mut out = Vec::with_capacity(object.len() + 32);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        match self.table {
            None => out.extend_from_slice(object),
            Some((include, version)) => {
                let obj: Value = serde_json::from_slice(object).unwrap_or(Value::Null);
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

fn error_line(e: &ApiError) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).expect("serializes");
    line.push(b'\n');
    Bytes::from(line)
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let body = Body::from_stream(futures_util::StreamExt::map(stream, Ok::<_, std::convert::Infallible>));
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache, private")], body).into_response()
}

pub async fn serve(app: &Arc<App>, target: &Target, q: &Query, accept: &str) -> ApiResult<Response> {
    let res = target.resource;
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
    let filter = Filter {
        resource: res,
        prefix: res.prefix(target.namespace.as_deref()),
        labels: opts.labels.clone(),
        fields,
        table: table::wants_table(accept)
            .then(|| (Include::parse(q.get("includeObject").map(String::as_str)), table::table_version(accept))),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    match cache.subscribe(start) {
        Err(oldest) => {
            let rv = rv_number.unwrap_or(0);
            let e = ApiError::expired(format!("too old resource version: {rv} ({oldest})"));
            let _ = tx.try_send(error_line(&e));
        }
        Ok(sub) => {
            let initial_end = send_initial == Some(true);
            tokio::spawn(pump(filter, sub, tx, timeout, bookmarks, initial_end));
        }
    }
    Ok(stream_response(rx))
}

/// Sends the initial events, then live ones, until the timeout, the client
/// leaves, or the cache relists (the client then watches again).
async fn pump(filter: Filter, mut sub: Subscription, tx: mpsc::Sender<Bytes>, timeout: Duration, bookmarks: bool, initial_end: bool) {
    let mut first = true;
    let mut last = sub.after;
    for e in std::mem::take(&mut sub.initial) {
        if let Some(kind) = filter.kind_for(&e) {
            if tx.send(filter.line(kind, &e.object, &mut first)).await.is_err() {
                return;
            }
        }
    }
    if initial_end {
        let _ = tx.send(filter.bookmark(sub.after, true)).await;
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    loop {
        tokio::select! {
            received = sub.live.recv() => match received {
                Ok(e) => {
                    if e.revision <= sub.after {
                        continue;
                    }
                    last = last.max(e.revision);
                    if let Some(kind) = filter.kind_for(&e) {
                        if tx.send(filter.line(kind, &e.object, &mut first)).await.is_err() {
                            return;
                        }
                    }
                }
                // Too slow to keep up: end; the client resumes from its last version.
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = sub.epochs.changed() => {
                if *sub.epochs.borrow() != sub.epoch {
                    return;
                }
            }
            _ = tick.tick(), if bookmarks => {
                let at = (*sub.progress.borrow()).max(last);
                if tx.send(filter.bookmark(at, false)).await.is_err() {
                    return;
                }
            }
            _ = &mut deadline => {
                if bookmarks {
                    let at = (*sub.progress.borrow()).max(last);
                    let _ = tx.send(filter.bookmark(at, false)).await;
                }
                return;
            }
            _ = tx.closed() => return,
        }
    }
}
