//! A deadline on every request the test support's clients send: a request
//! the apiserver never answers fails the test, naming the request, instead
//! of leaving the test pending forever (kube's clients have no read
//! timeout by default). Only the answer's head is bounded, so watches and
//! streamed bodies run as long as they like once they have started.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{BoxError, Layer, Service};

/// How long an answer's head may take. Longer than the apiserver's own
/// request timeout (60 s), so that a slow request gets the server's 504
/// first and only a request that no timeout would end fails here.
pub const REQUEST: Duration = Duration::from_secs(90);

/// Bounds each request of the service it wraps by [`REQUEST`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Deadline<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let what = format!("{} {}", request.method(), request.uri());
        let answer = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(REQUEST, answer).await {
                Ok(answered) => answered.map_err(Into::into),
                Err(_) => Err(format!("no answer to {what} within {REQUEST:?}").into()),
            }
        })
    }
}

/// `work` within [`REQUEST`], or a panic saying what was still awaited.
pub async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(REQUEST, work).await {
        Ok(done) => done,
        Err(_) => panic!("{what}: no answer within {REQUEST:?}"),
    }
}

/// A kube-rs client of `config` whose requests have [`REQUEST`] as
/// deadline, and which hands every answer to the test as it came: kube's
/// default retry of 429, 503 and 504 (up to 15 times, backing off to
/// minutes) is off, or a test that expects a 429 (an eviction a budget
/// refuses) would wait minutes for it, retried behind its back.
pub fn client(mut config: kube::Config) -> kube::Client {
    config.default_retry = false;
    kube::client::ClientBuilder::try_from(config).expect("a client of the test kubeconfig").with_layer(&DeadlineLayer).build()
}
