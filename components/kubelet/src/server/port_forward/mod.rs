//! `/portForward/{namespace}/{pod}`: connections into a pod's ports, over
//! whichever of upstream's stream protocols the client asked for (the
//! apiserver passes the upgrade through, as for exec):
//! - SPDY/3.1 tunnelled in a WebSocket (`SPDY/3.1+portforward.k8s.io`),
//!   kubectl 1.31+'s first choice, or upgraded to plainly (`Upgrade:
//!   SPDY/3.1`, `X-Stream-Protocol-Version: portforward.k8s.io`), its
//!   fallback and older clients' way: streams paired by request
//!   ([`spdy_streams`]);
//! - WebSocket channels (`v4.channel.k8s.io`), ports in the query: the
//!   Python client and other non-Go clients ([`channels`]).

mod channels;
mod dial;
mod spdy_streams;

use std::path::PathBuf;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::{text, Ctx, Params};

/// The WebSocket subprotocols of the channel form (a client may also name
/// none).
const CHANNEL_PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];
/// SPDY tunnelled in a WebSocket.
const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The plain SPDY upgrade.
const SPDY_UPGRADE: &str = "SPDY/3.1";
const SPDY_PROTOCOL: &str = "portforward.k8s.io";

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The pod a session forwards into.
#[derive(Debug, Clone)]
struct Target {
    namespace: String,
    pod: String,
    uid: String,
    /// The pod's own network namespace; none for a hostNetwork pod (the
    /// kubelet's, the node's, is its).
    netns: Option<PathBuf>,
}

impl Target {
    /// Upstream's text for a port that could not be forwarded.
    fn error(&self, port: u16, why: &str) -> String {
        format!("error forwarding port {port} to pod {}/{}, uid {}: {why}", self.namespace, self.pod, self.uid)
    }
}

pub(crate) async fn port_forward(State(ctx): State<Ctx>, Path((namespace, pod)): Path<(String, String)>, query: Params, req: Request) -> Response {
    start(ctx, namespace, pod, query.0, req).await
}

pub(crate) async fn port_forward_with_uid(
    State(ctx): State<Ctx>,
    Path((namespace, pod, _uid)): Path<(String, String, String)>,
    query: Params,
    req: Request,
) -> Response {
    start(ctx, namespace, pod, query.0, req).await
}

async fn start(ctx: Ctx, namespace: String, pod: String, query: Vec<(String, String)>, mut req: Request) -> Response {
    let Some(shared) = ctx.pods.find(&namespace, &pod) else {
        return text(StatusCode::NOT_FOUND, format!("pod {namespace}/{pod} not found"));
    };
    let uid = shared.lock().expect("not poisoned").pod.metadata.uid.clone().unwrap_or_default();
    let kubelet = ctx.kubelet.clone();
    let sandbox_id = uid.clone();
    let netns = tokio::task::spawn_blocking(move || kubelet.runtime.sandbox(&sandbox_id))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .filter(|s| s.ready)
        .map(|s| s.netns());
    let Some(netns) = netns else {
        return text(StatusCode::BAD_REQUEST, format!("pod {namespace}/{pod} has no running sandbox to forward into"));
    };
    let target = Target { namespace, pod, uid, netns };

    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let upgrade = header("upgrade");
    if upgrade.eq_ignore_ascii_case(SPDY_UPGRADE) {
        if !header("x-stream-protocol-version").split(',').any(|p| p.trim() == SPDY_PROTOCOL) {
            return text(StatusCode::FORBIDDEN, format!("port-forward over SPDY needs X-Stream-Protocol-Version {SPDY_PROTOCOL}"));
        }
        let upgraded = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgraded.await else { return };
            spdy_streams::serve(TokioIo::new(upgraded), target).await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "Upgrade")
            .header("upgrade", SPDY_UPGRADE)
            .header("x-stream-protocol-version", SPDY_PROTOCOL)
            .body(axum::body::Body::empty())
            .expect("a valid response");
    }
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return text(StatusCode::BAD_REQUEST, format!("port-forward needs an upgrade to WebSocket or {SPDY_UPGRADE}"));
    }
    let offered: Vec<String> = header("sec-websocket-protocol").split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
    let session = if offered.iter().any(|o| o == TUNNEL_PROTOCOL) {
        Session::Tunnel
    } else if offered.is_empty() || offered.iter().any(|o| CHANNEL_PROTOCOLS.contains(&o.as_str())) {
        match channels::ports(&query) {
            Ok(ports) => Session::Channels(ports),
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        }
    } else {
        let spoken = [TUNNEL_PROTOCOL].iter().chain(CHANNEL_PROTOCOLS).copied().collect::<Vec<_>>().join(", ");
        return text(StatusCode::BAD_REQUEST, format!("kubelab's kubelet forwards ports over WebSocket {spoken}; offered: {offered:?}"));
    };
    let protocol = match &session {
        Session::Tunnel => Some(TUNNEL_PROTOCOL),
        Session::Channels(_) => CHANNEL_PROTOCOLS.iter().find(|p| offered.iter().any(|o| o == **p)).copied(),
    };
    let accept = derive_accept_key(header("sec-websocket-key").as_bytes());
    let upgraded = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgraded.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        match session {
            Session::Tunnel => spdy_streams::serve(spdy_streams::tunnel(ws), target).await,
            Session::Channels(ports) => {
                if let Err(e) = channels::serve(ws, target, ports).await {
                    tracing::debug!("port-forward session: {e:#}");
                }
            }
        }
    });
    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept);
    if let Some(p) = protocol {
        response = response.header("sec-websocket-protocol", p);
    }
    response.body(axum::body::Body::empty()).expect("a valid response")
}

/// What a WebSocket session carries.
enum Session {
    Tunnel,
    Channels(Vec<u16>),
}
