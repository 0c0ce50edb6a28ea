//! What one request may take, as upstream's handler chain bounds it: at
//! most `--max-requests-inflight` reads and `--max-mutating-requests-inflight`
//! writes at once (429 with `Retry-After: 1` beyond them), and
//! `--request-timeout` for each (504 when it passes). Long-running requests
//! (watches; log, exec, attach, portforward and proxy subresources) are
//! neither counted nor timed, as upstream's long-running check exempts
//! them; they end when the server drains instead.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::auth::User;
use crate::route::{self, Route};
use crate::shutdown::Shutdown;
use crate::status::ApiError;

/// The limits' settings, upstream's defaults unless the flags say otherwise.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Reads at once; 0: no limit.
    pub max_requests_inflight: usize,
    /// Writes at once; 0: no limit.
    pub max_mutating_requests_inflight: usize,
    /// How long a request that is not long-running may take.
    pub request_timeout: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits { max_requests_inflight: 400, max_mutating_requests_inflight: 200, request_timeout: Duration::from_secs(60) }
    }
}

/// How upstream's filters see a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Not counted and not timed.
    LongRunning,
    /// get, list (and watch, which is long-running anyway).
    ReadOnly,
    Mutating,
}

/// Subresources upstream treats as long-running.
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "log", "portforward", "proxy"];

pub fn kind(method: &Method, uri: &axum::http::Uri) -> Kind {
    let route = route::parse(uri.path()).ok();
    if let Some(Route::Resource(target)) = &route {
        if target.subresource.as_deref().is_some_and(|s| LONG_RUNNING_SUBRESOURCES.contains(&s)) {
            return Kind::LongRunning;
        }
    }
    let read = method == Method::GET || method == Method::HEAD;
    if !read {
        return Kind::Mutating;
    }
    let watch_path = matches!(&route, Some(Route::Resource(t)) if t.watch_path);
    let watch_query = matches!(crate::handlers::query_of(uri).get("watch").map(String::as_str), Some("true" | "1"));
    if watch_path || watch_query {
        Kind::LongRunning
    } else {
        Kind::ReadOnly
    }
}

/// The limits in force on one server.
#[derive(Clone)]
pub struct Gate {
    read_only: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
    timeout: Duration,
    shutdown: Shutdown,
}

impl Gate {
    pub fn new(limits: &RequestLimits, shutdown: Shutdown) -> Gate {
        let slots = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        Gate {
            read_only: slots(limits.max_requests_inflight),
            mutating: slots(limits.max_mutating_requests_inflight),
            timeout: limits.request_timeout,
            shutdown,
        }
    }

    /// Serves `request` with `router` within the limits.
    pub async fn serve(&self, request: Request<Body>, user: Option<&User>, router: Router) -> Response<Body> {
        if self.shutdown.stopping() && request.uri().path() == "/readyz" {
            // Upstream's readyz check named `shutdown`.
            return (StatusCode::INTERNAL_SERVER_ERROR, "[-]shutdown failed: process is shutting down\nreadyz check failed\n").into_response();
        }
        let slots = match kind(request.method(), request.uri()) {
            Kind::LongRunning => {
                let response = router.oneshot(request).await.unwrap_or_else(|never| match never {});
                return response.map(|body| self.shutdown.end_on_drain(body));
            }
            Kind::ReadOnly => &self.read_only,
            Kind::Mutating => &self.mutating,
        };
        let permit = match slots.as_ref().map(|s| s.clone().try_acquire_owned()) {
            None => None,
            Some(Ok(permit)) => Some(permit),
            // system:masters is always answered, as upstream lets it past a
            // full limit (a loopback client or a super-admin).
            Some(Err(_)) if user.is_some_and(|u| u.groups.iter().any(|g| g == "system:masters")) => None,
            Some(Err(_)) => return too_many_requests(),
        };
        match tokio::time::timeout(self.timeout, router.oneshot(request)).await {
            Ok(response) => {
                let response = response.unwrap_or_else(|never| match never {});
                // The slot is held until the body has been sent.
                response.map(|body| hold_until_sent(body, permit))
            }
            Err(_) => timed_out().into_response(),
        }
    }
}

/// Upstream's answer beyond the in-flight limits: 429, `Retry-After: 1`
/// and a plain-text body (upstream writes it with http.Error, not as a Status).
fn too_many_requests() -> Response<Body> {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "1"), (header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        "Too many requests, please try again later.\n",
    )
        .into_response()
}

/// Upstream's timeout filter's Status.
pub fn timed_out() -> ApiError {
    ApiError {
        code: 504,
        reason: "Timeout",
        message: "Timeout: request did not complete within the allotted timeout".into(),
        details: Some(serde_json::json!({})),
    }
}

fn hold_until_sent(body: Body, permit: Option<OwnedSemaphorePermit>) -> Body {
    match permit {
        None => body,
        Some(permit) => Body::new(Holding { body, _permit: permit }),
    }
}

/// A body that keeps an in-flight slot until it is dropped; it passes its
/// frames and size on unchanged (a Content-Length stays one).
struct Holding {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl hyper::body::Body for Holding {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(method: Method, uri: &str) -> Kind {
        kind(&method, &uri.parse().unwrap())
    }

    #[test]
    fn watches_and_streams_are_long_running() {
        assert_eq!(kind_of(Method::GET, "/api/v1/pods?watch=true"), Kind::LongRunning);
        assert_eq!(kind_of(Method::GET, "/api/v1/namespaces/default/pods?watch=1"), Kind::LongRunning);
        assert_eq!(kind_of(Method::GET, "/api/v1/watch/namespaces/default/pods"), Kind::LongRunning);
        assert_eq!(kind_of(Method::GET, "/api/v1/namespaces/default/pods/web/log"), Kind::LongRunning);
        assert_eq!(kind_of(Method::POST, "/api/v1/namespaces/default/pods/web/exec?command=ls"), Kind::LongRunning);
        assert_eq!(kind_of(Method::GET, "/api/v1/namespaces/default/pods/web/attach"), Kind::LongRunning);
    }

    #[test]
    fn other_requests_are_reads_or_writes() {
        assert_eq!(kind_of(Method::GET, "/api/v1/pods?watch=false"), Kind::ReadOnly);
        assert_eq!(kind_of(Method::GET, "/apis/apps/v1/namespaces/default/deployments/web"), Kind::ReadOnly);
        assert_eq!(kind_of(Method::GET, "/healthz"), Kind::ReadOnly);
        assert_eq!(kind_of(Method::POST, "/api/v1/namespaces"), Kind::Mutating);
        assert_eq!(kind_of(Method::PATCH, "/api/v1/namespaces/default/pods/web/status"), Kind::Mutating);
        assert_eq!(kind_of(Method::DELETE, "/api/v1/namespaces/default/pods?watch=true"), Kind::Mutating);
    }

    #[test]
    fn the_timeout_reads_as_upstreams() {
        let status = timed_out().to_status();
        assert_eq!(status["code"], 504);
        assert_eq!(status["reason"], "Timeout");
        assert_eq!(status["message"], "Timeout: request did not complete within the allotted timeout");
    }
}
