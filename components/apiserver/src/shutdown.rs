//! How a stopping server tells its parts: first /readyz fails (so load
//! balancers move away while requests are still served), then it drains:
//! the listener closes, connections finish what they are serving, and
//! long-running responses (watches, followed logs) end cleanly so their
//! clients reconnect to another apiserver.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// SIGTERM came: still serving, no longer ready.
    Stopping,
    /// No new connections; in-flight requests finish; streams end.
    Draining,
}

/// The shared state of a server's shutdown; clones see the same state.
#[derive(Clone)]
pub struct Shutdown {
    phase: watch::Sender<Phase>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown { phase: watch::Sender::new(Phase::Serving) }
    }

    /// SIGTERM came: /readyz fails from now on.
    pub fn begin(&self) {
        self.phase.send_if_modified(|p| advance(p, Phase::Stopping));
    }

    /// Stop accepting and end long-running responses.
    pub fn drain(&self) {
        self.phase.send_if_modified(|p| advance(p, Phase::Draining));
    }

    pub fn stopping(&self) -> bool {
        *self.phase.borrow() >= Phase::Stopping
    }

    /// Completes once draining has begun.
    pub async fn draining(&self) {
        let mut phase = self.phase.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = phase.wait_for(|p| *p >= Phase::Draining).await;
    }

    /// `body`, ended (cleanly, between two of its frames) once draining begins.
    pub fn end_on_drain(&self, body: Body) -> Body {
        let draining = Box::pin({
            let shutdown = self.clone();
            async move { shutdown.draining().await }
        });
        Body::new(EndsOnDrain { body, draining: Some(draining) })
    }
}

fn advance(phase: &mut Phase, to: Phase) -> bool {
    let moved = *phase < to;
    if moved {
        *phase = to;
    }
    moved
}

/// A response body that ends when the server drains. Each watch event is
/// one frame, so ending between frames leaves the client a whole stream.
struct EndsOnDrain {
    body: Body,
    draining: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl hyper::body::Body for EndsOnDrain {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(draining) = self.draining.as_mut() {
            if draining.as_mut().poll(cx).is_ready() {
                self.draining = None;
                return Poll::Ready(None);
            }
        } else {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.draining.is_none() || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // It may end early, so no exact size.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_stream_ends_cleanly_when_the_server_drains() {
        let shutdown = Shutdown::new();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(1);
        let mut body = shutdown.end_on_drain(Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
        tx.send(Ok(Bytes::from_static(b"one\n"))).await.unwrap();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "one\n");
        shutdown.begin();
        assert!(shutdown.stopping());
        shutdown.drain();
        // The sender is still open: only draining ends the body.
        assert!(body.frame().await.is_none(), "the body ends, without an error");
        drop(tx);
    }
}
