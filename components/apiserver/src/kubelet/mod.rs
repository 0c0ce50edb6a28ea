//! pods/log, pods/exec, pods/attach and pods/portforward: served by the
//! kubelet of the pod's node, as upstream serves them. The apiserver finds
//! the pod, picks the container, finds the kubelet from the Node's status,
//! and then streams: the log body as it arrives, or (exec, attach,
//! portforward) the connection upgrade,
//! after which bytes are copied both ways until either side closes.
//!
//! Upstream (1.30+) translates kubectl's WebSocket (v5.channel.k8s.io)
//! streams into SPDY towards kubelets that only speak SPDY; here the
//! upgrade is passed through as the client asked for it, so the kubelet
//! must speak the protocol the client chose.

pub mod client;
pub mod options;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, HeaderName, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

pub use client::{KubeletAddress, KubeletClient, KubeletClientFiles};
use options::{LogOptions, StreamOptions};

use crate::handlers::App;
use crate::resources;
use crate::route::Target;
use crate::status::{ApiError, ApiResult};

/// Upstream reads at most this much of a kubelet's error body.
const MAX_ERROR_BODY: usize = 50_000;

/// Whether the request is for a subresource served by a kubelet.
pub fn proxies(target: &Target) -> bool {
    target.resource.group.is_empty()
        && target.resource.plural == "pods"
        && matches!(target.subresource.as_deref(), Some("log" | "exec" | "attach" | "portforward"))
}

/// Serves pods/log, pods/exec, pods/attach or pods/portforward. `parts` still holds the
/// connection's pending upgrade.
pub async fn serve(app: &App, target: &Target, mut parts: Parts) -> ApiResult<Response> {
    let subresource = target.subresource.as_deref().unwrap_or("");
    let namespace = target.namespace.as_deref().unwrap_or("");
    let name = target.name.as_deref().unwrap_or("");
    let allowed = match subresource {
        "log" => parts.method == Method::GET,
        _ => parts.method == Method::GET || parts.method == Method::POST,
    };
    if !allowed {
        return Err(ApiError::method_not_allowed());
    }
    let query = options::pairs(parts.uri.query());
    if subresource == "log" {
        let options = LogOptions::parse(&query, name)?;
        let pod = pod(app, target).await?;
        let container = container(&pod, name, options.container.as_deref())?;
        // An unscheduled pod has no log yet: upstream answers with an empty stream.
        let Some(node) = node_name(&pod) else {
            return Ok(text_response(Body::empty()));
        };
        let kubelet = kubelet_of(app, node).await?;
        let path = format!("/containerLogs/{namespace}/{name}/{container}");
        return stream_log(app, &kubelet, &path, &options, name).await;
    }
    if subresource == "portforward" {
        return port_forward(app, target, parts, &query).await;
    }
    let options = StreamOptions::parse(&query, subresource == "exec");
    let pod = pod(app, target).await?;
    let container = container(&pod, name, options.container.as_deref())?;
    let node = node_name(&pod).ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?;
    let kubelet = kubelet_of(app, node).await?;
    if !is_upgrade(&parts) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>().ok_or_else(|| ApiError::bad_request("Upgrade request required"))?;
    let query = options.kubelet_query();
    let path = format!("/{subresource}/{namespace}/{name}/{container}{}{query}", if query.is_empty() { "" } else { "?" });
    proxy_upgrade(app, &kubelet, &path, &parts, client_upgrade).await
}

/// pods/portforward: the pod's kubelet, with the query as the client sent
/// it (the WebSocket form names its ports there; SPDY clients name them
/// per stream).
async fn port_forward(app: &App, target: &Target, mut parts: Parts, query: &options::Pairs) -> ApiResult<Response> {
    let namespace = target.namespace.as_deref().unwrap_or("");
    let name = target.name.as_deref().unwrap_or("");
    let pod = pod(app, target).await?;
    let node = node_name(&pod).ok_or_else(|| ApiError::bad_request(format!("pod {name} does not have a host assigned")))?;
    let kubelet = kubelet_of(app, node).await?;
    if !is_upgrade(&parts) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>().ok_or_else(|| ApiError::bad_request("Upgrade request required"))?;
    // PodPortForwardOptions' ports, as upstream hands them on: one `port` each.
    let ports = query.iter().filter(|(k, _)| k == "ports" || k == "port").flat_map(|(_, v)| v.split(',')).map(|p| ("port", p.trim().to_string())).collect();
    let query = options::encode(ports);
    let path = format!("/portForward/{namespace}/{name}{}{query}", if query.is_empty() { "" } else { "?" });
    proxy_upgrade(app, &kubelet, &path, &parts, client_upgrade).await
}

async fn pod(app: &App, target: &Target) -> ApiResult<Value> {
    app.registry.get(target.resource, target.namespace.as_deref(), target.name.as_deref().unwrap_or("")).await
}

fn node_name(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())
}

/// The container a request is for: the one asked (any init, app or
/// ephemeral container of the pod), or the pod's only container.
fn container(pod: &Value, pod_name: &str, asked: Option<&str>) -> ApiResult<String> {
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let main = names("containers");
    // Upstream's order of visiting a pod's containers.
    let all: Vec<String> = names("initContainers").into_iter().chain(main.iter().cloned()).chain(names("ephemeralContainers")).collect();
    match asked {
        Some(c) if all.iter().any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {pod_name}"))),
        None => match main.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(ApiError::bad_request(format!("a container name must be specified for pod {pod_name}"))),
            _ => Err(ApiError::bad_request(format!("a container name must be specified for pod {pod_name}, choose one of: [{}]", all.join(" ")))),
        },
    }
}

async fn kubelet_of(app: &App, node: &str) -> ApiResult<KubeletAddress> {
    let nodes = resources::find("", "v1", "nodes").expect("nodes are in the resource table");
    let node = app.registry.get(nodes, None, node).await?;
    app.kubelet.address(&node)
}

fn text_response(body: Body) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// The text of a hyper client error: the I/O error under it when there is
/// one (a TLS alert, a reset), else hyper's own.
fn hyper_error_text(e: &hyper::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return client::io_error_text(io);
        }
        source = s.source();
    }
    if e.is_incomplete_message() {
        "EOF".into()
    } else {
        e.to_string()
    }
}

/// An HTTP/1.1 connection to the kubelet; `upgrades` keeps it usable for
/// an upgraded stream after a 101.
async fn open(app: &App, kubelet: &KubeletAddress, verify: bool, upgrades: bool) -> Result<hyper::client::conn::http1::SendRequest<Body>, String> {
    let tls = app.kubelet.connect(kubelet, verify).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| hyper_error_text(&e))?;
    tokio::spawn(async move {
        let done = if upgrades { connection.with_upgrades().await } else { connection.await };
        if let Err(e) = done {
            tracing::debug!("kubelet connection ended: {e}");
        }
    });
    Ok(sender)
}

/// The kubelet's response head, or why there is none (within the
/// response-head timeout; the body that follows has no deadline).
async fn response_head(
    app: &App,
    sent: impl std::future::Future<Output = hyper::Result<hyper::Response<hyper::body::Incoming>>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    match tokio::time::timeout(app.kubelet.timeouts.response_head, sent).await {
        Ok(answer) => answer.map_err(|e| hyper_error_text(&e)),
        Err(_) => Err(client::RESPONSE_HEAD_TIMEOUT.into()),
    }
}

/// GETs the log from the kubelet and streams its body to the client as it
/// arrives (each chunk is written out as soon as it is read, so `follow`
/// shows lines as they are logged).
async fn stream_log(app: &App, kubelet: &KubeletAddress, path: &str, options: &LogOptions, pod: &str) -> ApiResult<Response> {
    let query = options.kubelet_query();
    let path_and_query = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
    let url = format!("https://{}{path_and_query}", kubelet.authority());
    // Go's client error: Get "https://...": <why>.
    let failed = |why: String| ApiError::plain(format!("Get {url:?}: {why}"));
    let verify = !options.insecure_skip_tls_verify_backend;
    let mut sender = open(app, kubelet, verify, false).await.map_err(failed)?;
    let request = Request::get(&path_and_query).header(header::HOST, kubelet.authority()).body(Body::empty()).map_err(ApiError::internal)?;
    let response = response_head(app, sender.send_request(request)).await.map_err(failed)?;
    let status = response.status().as_u16();
    if !(200..=206).contains(&status) {
        let body = read_error_body(response.into_body()).await;
        return Err(match status {
            500 => ApiError::internal(body),
            400 => ApiError::bad_request(body),
            code => server_response_error(code, "pods/log", pod, &body),
        });
    }
    Ok(text_response(Body::new(response.into_body())))
}

async fn read_error_body(mut body: hyper::body::Incoming) -> String {
    use http_body_util::BodyExt;
    let mut kept = Vec::new();
    while kept.len() < MAX_ERROR_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    kept.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    kept.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&kept).into_owned()
}

/// Upstream's error for a backend's status code it has no Status for
/// (apimachinery's NewGenericServerResponse, with no verb).
fn server_response_error(code: u16, resource: &str, name: &str, body: &str) -> ApiError {
    let (reason, message): (&'static str, String) = match code {
        404 => ("NotFound", "the server could not find the requested resource".into()),
        401 => ("Unauthorized", "the server has asked for the client to provide credentials".into()),
        403 => ("Forbidden", body.to_string()),
        405 => ("MethodNotAllowed", "the server does not allow this method on the requested resource".into()),
        409 => ("Conflict", "the server reported a conflict".into()),
        422 => ("Invalid", "the server rejected our request due to an error in our request".into()),
        429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later".into()),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request".into()),
        504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request".into()),
        c if c >= 500 => ("InternalError", format!("an error on the server ({body:?}) has prevented the request from succeeding")),
        c => ("", format!("the server responded with the status code {c} but did not return more information")),
    };
    ApiError {
        code,
        reason,
        // The verb is empty, hence the two spaces.
        message: format!("{message} ( {resource} {name})"),
        details: Some(json!({"name": name, "kind": resource})),
    }
}

/// Whether the client asks to switch protocols (WebSocket or SPDY).
fn is_upgrade(parts: &Parts) -> bool {
    let connection_upgrade = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && parts.headers.contains_key(header::UPGRADE)
}

/// The request headers passed on to the kubelet: what the upgrade needs.
/// The client's own credentials stay here; the kubelet knows the apiserver
/// by its client certificate.
fn forwarded(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(name, "upgrade" | "connection" | "user-agent" | "x-stream-protocol-version") || name.starts_with("sec-websocket-")
}

/// Sends the upgrade request to the kubelet and answers the client with the
/// kubelet's answer: on 101 its headers, then both connections are joined;
/// otherwise its response as it is.
async fn proxy_upgrade(app: &App, kubelet: &KubeletAddress, path: &str, parts: &Parts, client_upgrade: hyper::upgrade::OnUpgrade) -> ApiResult<Response> {
    let failed_dial = |why: String| ApiError::plain(format!("error dialing backend: {why}"));
    let mut sender = open(app, kubelet, true, true).await.map_err(failed_dial)?;
    let mut request = Request::builder().method(parts.method.clone()).uri(path).header(header::HOST, kubelet.authority());
    for (name, value) in parts.headers.iter().filter(|(name, _)| forwarded(name)) {
        request = request.header(name, value);
    }
    let request = request.body(Body::empty()).map_err(ApiError::internal)?;
    let mut response = response_head(app, sender.send_request(request)).await.map_err(ApiError::plain)?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (head, body) = response.into_parts();
        return Ok(Response::from_parts(head, Body::new(body)));
    }
    let kubelet_upgrade = hyper::upgrade::on(&mut response);
    let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    tokio::spawn(join_streams(client_upgrade, kubelet_upgrade));
    answer.body(Body::empty()).map_err(ApiError::internal)
}

/// Copies bytes both ways between the upgraded client and kubelet
/// connections; when either direction ends (a side closed), both are shut.
async fn join_streams(client: hyper::upgrade::OnUpgrade, kubelet: hyper::upgrade::OnUpgrade) {
    let (client, kubelet) = match tokio::try_join!(client, kubelet) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!("stream upgrade failed: {e}");
            return;
        }
    };
    let (mut from_client, mut to_client) = tokio::io::split(TokioIo::new(client));
    let (mut from_kubelet, mut to_kubelet) = tokio::io::split(TokioIo::new(kubelet));
    tokio::select! {
        _ = tokio::io::copy(&mut from_client, &mut to_kubelet) => {}
        _ = tokio::io::copy(&mut from_kubelet, &mut to_client) => {}
    }
    let _ = to_client.shutdown().await;
    let _ = to_kubelet.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"spec": {
            "initContainers": [{"name": "setup"}],
            "containers": [{"name": "web"}, {"name": "sidecar"}],
            "ephemeralContainers": [{"name": "debugger"}],
        }})
    }

    #[test]
    fn a_container_must_be_named_when_there_are_several() {
        let e = container(&pod(), "p", None).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (400, "a container name must be specified for pod p, choose one of: [setup web sidecar debugger]"));
        assert_eq!(container(&pod(), "p", Some("debugger")).unwrap(), "debugger");
        assert_eq!(container(&pod(), "p", Some("nope")).unwrap_err().message, "container nope is not valid for pod p");
        assert_eq!(container(&json!({"spec": {"containers": [{"name": "only"}]}}), "p", None).unwrap(), "only");
        assert_eq!(container(&json!({"spec": {}}), "p", None).unwrap_err().message, "a container name must be specified for pod p");
    }

    #[test]
    fn backend_errors_read_as_upstream() {
        let e = server_response_error(404, "pods/log", "web", "no such container");
        assert_eq!((e.reason, e.message.as_str()), ("NotFound", "the server could not find the requested resource ( pods/log web)"));
        let e = server_response_error(502, "pods/log", "web", "bad gateway");
        assert_eq!(e.message, "an error on the server (\"bad gateway\") has prevented the request from succeeding ( pods/log web)");
    }
}
