//! Port-forward over SPDY/3.1, as kubectl speaks it (plainly upgraded, or
//! tunnelled in a WebSocket): for each connection to one of its local
//! ports kubectl opens an `error` stream and a `data` stream with the same
//! `requestid`; once both are in, the pod's `port` is dialled and the data
//! stream joined to it. A failure is written on the error stream, which
//! kubectl prints ("an error occurred forwarding ...").

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::{dial, Target, Ws};

/// Upstream drops a request whose second stream does not come within this.
const PAIRING_TIMEOUT: Duration = Duration::from_secs(30);

/// The two streams of one forwarded connection, as they come in.
#[derive(Default)]
struct Pair {
    error: Option<spdy::Stream>,
    data: Option<spdy::Stream>,
}

/// Serves one SPDY session over `io` until the client ends it.
pub async fn serve<IO>(io: IO, target: Target)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let session = spdy::Session::new(io, spdy::Role::Server);
    let mut pending: HashMap<String, (Pair, tokio::time::Instant)> = HashMap::new();
    while let Some(mut stream) = session.accept().await {
        pending.retain(|_, (_, since)| since.elapsed() < PAIRING_TIMEOUT);
        let header = |name: &str| stream.headers().get(name).map(str::to_string);
        let Some(request) = header("requestid") else {
            tracing::debug!("port-forward: a stream without a requestid");
            stream.reset(spdy::RstStatus::PROTOCOL_ERROR);
            continue;
        };
        let (pair, _) = pending.entry(request.clone()).or_insert_with(|| (Pair::default(), tokio::time::Instant::now()));
        match header("streamtype").as_deref() {
            Some("error") => pair.error = Some(stream),
            Some("data") => pair.data = Some(stream),
            other => {
                tracing::debug!("port-forward: a stream of type {other:?}");
                stream.reset(spdy::RstStatus::PROTOCOL_ERROR);
                continue;
            }
        }
        if pair.error.is_some() && pair.data.is_some() {
            let (pair, _) = pending.remove(&request).expect("just seen");
            tokio::spawn(forward(target.clone(), pair.error.expect("present"), pair.data.expect("present")));
        }
    }
}

/// Joins one data stream to the pod's port; a failure goes on the error
/// stream. Both streams are closed at the end, as upstream's kubelet does.
async fn forward(target: Target, mut error: spdy::Stream, mut data: spdy::Stream) {
    let port = data.headers().get("port").unwrap_or("").to_string();
    let outcome = match port.parse::<u16>() {
        Ok(p) if p > 0 => match dial::dial(target.netns.as_deref(), p).await {
            Ok(mut connection) => {
                let _ = tokio::io::copy_bidirectional(&mut data, &mut connection).await;
                Ok(())
            }
            Err(e) => Err(target.error(p, &e)),
        },
        _ => Err(format!("invalid port header {port:?}")),
    };
    if let Err(message) = outcome {
        tracing::debug!("{message}");
        let _ = error.write_all(message.as_bytes()).await;
    }
    let _ = error.shutdown().await;
    let _ = data.shutdown().await;
}

/// The byte stream a WebSocket tunnel carries (`SPDY/3.1+portforward.k8s.io`:
/// the SPDY session's bytes in binary messages, in order).
pub fn tunnel(ws: Ws) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut from_session, mut to_session) = tokio::io::split(ours);
    let (mut sink, mut source) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(message)) = source.next().await {
            let bytes = match message {
                Message::Binary(b) => b,
                Message::Close(_) => break,
                _ => continue,
            };
            if to_session.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to_session.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_session.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    theirs
}
