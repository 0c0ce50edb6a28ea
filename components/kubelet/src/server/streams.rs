//! What `/exec` and `/attach` share: kubectl's stream protocol over
//! WebSocket (`v5.channel.k8s.io`, or v4), which the apiserver passes
//! through to the kubelet. Every binary message starts with its channel
//! (0 stdin, 1 stdout, 2 stderr, 3 error: the final Status, 4 resize:
//! `{"Width":..,"Height":..}`); in v5, channel 255 closes a stream (`[255,
//! 0]`: stdin is done).

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{text, Ctx};

/// The protocols spoken, best first.
const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

pub type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Which streams a request asked for (exec's and attach's options).
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Streams {
    pub fn from_query(query: &[(String, String)]) -> Streams {
        let flag = |k: &str| query.iter().any(|(key, v)| key == k && (v == "true" || v == "1"));
        Streams { stdin: flag("stdin") || flag("input"), stdout: flag("stdout") || flag("output"), stderr: flag("stderr") || flag("error"), tty: flag("tty") }
    }
}

/// The pod and container a request names: `NS/POD/CONTAINER` or
/// `NS/POD/UID/CONTAINER` (the uid is not checked, as upstream's kubelet
/// only uses it to tell apart pods of one name).
pub struct Target {
    pub ns: String,
    pub pod: String,
    pub container: String,
}

pub type TargetPath = axum::extract::Path<Vec<String>>;

impl From<TargetPath> for Target {
    fn from(axum::extract::Path(parts): TargetPath) -> Target {
        let part = |i: usize| parts.get(i).cloned().unwrap_or_default();
        Target { ns: part(0), pod: part(1), container: parts.last().cloned().unwrap_or_default() }
    }
}

/// Ends a session: the final Status on the error channel, a normal close,
/// and a moment for the client's close to answer ours.
pub async fn finish(mut sink: SplitSink<Ws, Message>, mut source: SplitStream<Ws>, exit_code: i32) -> anyhow::Result<()> {
    sink.send(on_channel(ERROR, status_json(exit_code).as_bytes())).await?;
    sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await?;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async { while let Some(Ok(_)) = source.next().await {} }).await;
    Ok(())
}

/// Why a stream request is refused: the plain-text answer's code and words.
pub struct Refused(pub StatusCode, pub String);

impl Refused {
    pub fn answer(self) -> Response {
        text(self.0, self.1)
    }
}

/// How long a session waits after the upgrade before it runs anything.
/// client-go (kubectl 1.33) starts reading the WebSocket in one goroutine
/// while another creates its stdout and stderr streams, and drops what
/// arrives for a stream not created yet ("Unknown stream id 1, discarding
/// message"). Upstream's kubelet is reached through SPDY streams the
/// apiserver opens first, which hides that race; ours answers at once, so
/// on a loaded machine a quick command's whole output could be lost.
const CLIENT_STREAMS_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// An accepted WebSocket upgrade, before the 101 answer.
pub struct Upgrade {
    protocol: &'static str,
    accept: String,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

impl Upgrade {
    /// Checks the request is a WebSocket upgrade offering one of our
    /// protocols; else why not.
    pub fn accept(req: &mut Request, what: &str) -> Result<Upgrade, Refused> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let offered = header("sec-websocket-protocol");
        let Some(protocol) = PROTOCOLS.iter().find(|p| offered.split(',').any(|o| o.trim() == **p)).copied() else {
            // kubectl falls back to SPDY on a refused upgrade, which this
            // kubelet does not speak for these; the message says what it does.
            return Err(Refused(StatusCode::BAD_REQUEST, format!("kubelab's kubelet speaks {} over WebSocket; offered: {offered:?}", PROTOCOLS.join(", "))));
        };
        if !header("upgrade").eq_ignore_ascii_case("websocket") {
            return Err(Refused(StatusCode::BAD_REQUEST, format!("{what} needs a WebSocket upgrade")));
        }
        let accept = derive_accept_key(header("sec-websocket-key").as_bytes());
        Ok(Upgrade { protocol, accept, on_upgrade: hyper::upgrade::on(req) })
    }

    /// v5 (which can close stdin alone) rather than v4.
    pub fn v5(&self) -> bool {
        self.protocol.starts_with("v5")
    }

    /// Answers 101 and runs `serve` on the WebSocket once the connection
    /// is handed over.
    pub fn run<F, Fut>(self, serve: F) -> Response
    where
        F: FnOnce(Ws) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        let Upgrade { protocol, accept, on_upgrade } = self;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            tokio::time::sleep(CLIENT_STREAMS_GRACE).await;
            if let Err(e) = serve(ws).await {
                tracing::debug!("stream session: {e:#}");
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", accept)
            .header("sec-websocket-protocol", protocol)
            .body(axum::body::Body::empty())
            .expect("a valid response")
    }
}

/// The id of a running container of a pod (an app or init container), or
/// why there is none.
pub fn running_container(ctx: &Ctx, ns: &str, pod: &str, container: &str) -> Result<String, Refused> {
    let Some(shared) = ctx.pods.find(ns, pod) else {
        return Err(Refused(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} not found")));
    };
    let s = shared.lock().expect("not poisoned");
    s.observed
        .containers
        .get(container)
        .or_else(|| s.observed.init.get(container))
        .or_else(|| s.observed.ephemeral.get(container))
        .and_then(|o| o.current.as_ref())
        .filter(|a| a.running().is_some())
        .map(|a| a.id.clone())
        .ok_or_else(|| Refused(StatusCode::BAD_REQUEST, format!("container {container} is not running in pod {pod}")))
}

/// A text frame as the binary one it stands for: the Python client sends
/// stdin as text (its channel byte the first character), and upstream
/// reads both opcodes alike.
pub fn text_as_binary(message: Message) -> Message {
    match message {
        Message::Text(text) => Message::Binary(bytes::Bytes::from(text.as_str().as_bytes().to_vec())),
        other => other,
    }
}

/// A message on `channel`.
pub fn on_channel(channel: u8, bytes: &[u8]) -> Message {
    Message::binary([&[channel][..], bytes].concat())
}

/// A resize message's size, as (rows, columns).
pub fn terminal_size(json: &[u8]) -> Option<(u16, u16)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    serde_json::from_slice::<Size>(json).ok().map(|s| (s.height, s.width))
}

/// The final Status on the error channel, as upstream's kubelet writes it.
pub fn status_json(code: i32) -> String {
    if code == 0 {
        return r#"{"metadata":{},"status":"Success"}"#.to_string();
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: exit status {code}"),
        "reason": "NonZeroExitCode",
        "details": { "causes": [{ "reason": "ExitCode", "message": code.to_string() }] }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_messages_give_rows_and_columns() {
        assert_eq!(terminal_size(br#"{"Width":132,"Height":43}"#), Some((43, 132)));
        assert_eq!(terminal_size(b"nonsense"), None);
    }

    #[test]
    fn stream_options_read_both_spellings() {
        let q = |s: &str| s.split('&').map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap()).collect::<Vec<_>>();
        let s = Streams::from_query(&q("stdin=true&stdout=1&stderr=false&tty=true"));
        assert!(s.stdin && s.stdout && !s.stderr && s.tty);
        let s = Streams::from_query(&q("input=1&output=1&error=1"));
        assert!(s.stdin && s.stdout && s.stderr && !s.tty);
    }
}
