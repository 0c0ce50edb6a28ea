//! A test double of a kubelet's streaming endpoints, for the apiserver's
//! pods/log and pods/exec proxy: HTTPS on 127.0.0.1 with a serving
//! certificate from a CA of its own, which requires a client certificate
//! signed by the CA it is given (the lab's) and remembers who presented it.
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}`: five known lines
//!   (`tailLines` keeps the last ones); with `follow=true`, a further line
//!   every 100 ms until the client goes away. Container `sidecar` answers
//!   400 as a kubelet does for a container that has not started.
//! - `/exec/{ns}/{pod}/{container}` upgraded to WebSocket with
//!   `v5.channel.k8s.io`: `echo ARGS` writes its arguments to the stdout
//!   channel and reports Success on the error channel; any other command
//!   reports exit code 1; then the connection is closed. Anything but
//!   WebSocket (SPDY) gets 400, so a command that works went over v5.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The stream protocol the double speaks (kubectl 1.30+ asks for it first).
pub const STREAM_PROTOCOL: &str = "v5.channel.k8s.io";

/// The lines every container of the double has logged.
pub fn log_lines(container: &str) -> Vec<String> {
    (1..=5).map(|i| format!("{container} line {i}")).collect()
}

/// A CA and a serving certificate it signed for 127.0.0.1, as PEM; the CA
/// is also written to `ca_path` for `--kubelet-certificate-authority`.
pub struct ServingCerts {
    pub ca_pem: String,
    pub ca_path: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl ServingCerts {
    pub fn new(dir: &Path, name: &str) -> ServingCerts {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, format!("{name}-ca"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, name);
        leaf.subject_alt_names = vec![SanType::IpAddress(Ipv4Addr::LOCALHOST.into())];
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let ca_path = dir.join(format!("{name}-ca.crt"));
        std::fs::write(&ca_path, ca_cert.pem()).unwrap();
        ServingCerts { ca_pem: ca_cert.pem(), ca_path, cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

/// What the double saw.
#[derive(Default)]
struct Seen {
    /// The common name of each client certificate presented, per connection.
    clients: Mutex<Vec<String>>,
    /// Handshakes that failed (a client certificate refused, or none).
    refused: AtomicUsize,
    /// Each request's path and query.
    requests: Mutex<Vec<String>>,
    /// Follow streams still writing.
    following: AtomicUsize,
}

pub struct FakeKubelet {
    pub port: u16,
    seen: Arc<Seen>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeKubelet {
    /// Serves with `serving`'s certificate; clients must present a
    /// certificate signed by `client_ca_pem`.
    pub fn start(serving: &ServingCerts, client_ca_pem: &str) -> FakeKubelet {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().unwrap();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes()).map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let shared = seen.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), shared.clone());
                tokio::spawn(async move {
                    // A second handle on the socket, so that a refused
                    // handshake does not close it at once: in TLS 1.3 the
                    // client has finished its side and may have sent its
                    // request, and closing with that unread would reset the
                    // connection, racing the alert the client should read.
                    let Ok(socket) = tcp.into_std() else { return };
                    let Ok(kept) = socket.try_clone() else { return };
                    let Ok(tcp) = tokio::net::TcpStream::from_std(socket) else { return };
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        seen.refused.fetch_add(1, Ordering::SeqCst);
                        linger_until_closed(kept).await;
                        return;
                    };
                    drop(kept);
                    let name = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(common_name).unwrap_or_default();
                    seen.clients.lock().unwrap().push(name);
                    let service = hyper::service::service_fn(move |req| serve(req, seen.clone()));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).with_upgrades().await;
                });
            }
        });
        FakeKubelet { port, seen, runtime: Some(runtime) }
    }

    /// The common names of the client certificates presented so far.
    pub fn clients(&self) -> Vec<String> {
        self.seen.clients.lock().unwrap().clone()
    }

    /// How many TLS handshakes the double refused.
    pub fn refused(&self) -> usize {
        self.seen.refused.load(Ordering::SeqCst)
    }

    /// The path and query of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.seen.requests.lock().unwrap().clone()
    }

    /// How many follow streams are still being written.
    pub fn following(&self) -> usize {
        self.seen.following.load(Ordering::SeqCst)
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_millis(100));
        }
    }
}

fn common_name(cert: &CertificateDer<'_>) -> String {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    let name = parsed.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or("").to_string();
    name
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn text(code: StatusCode, body: String) -> Response<Body> {
    Response::builder().status(code).header("content-type", "text/plain").body(Full::new(Bytes::from(body)).boxed()).unwrap()
}

async fn serve(req: Request<Incoming>, seen: Arc<Seen>) -> Result<Response<Body>, std::convert::Infallible> {
    let path_and_query = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    seen.requests.lock().unwrap().push(path_and_query);
    let query: Vec<(String, String)> = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let parts: Vec<String> = req.uri().path().trim_start_matches('/').split('/').map(str::to_string).collect();
    Ok(match parts.as_slice() {
        [kind, _ns, pod, container] if kind == "containerLogs" => logs(pod, container, &query, seen),
        [kind, _ns, _pod, _container] if kind == "exec" => exec(req, query),
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
    })
}

fn logs(pod: &str, container: &str, query: &[(String, String)], seen: Arc<Seen>) -> Response<Body> {
    if container == "sidecar" {
        return text(StatusCode::BAD_REQUEST, format!("container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"));
    }
    let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let mut lines = log_lines(container);
    if let Some(n) = get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        lines.drain(..lines.len().saturating_sub(n));
    }
    let logged: String = lines.iter().map(|l| format!("{l}\n")).collect();
    if get("follow") != Some("true") {
        return text(StatusCode::OK, logged);
    }
    // One line now, then one every 100 ms, until the receiver is dropped
    // (the apiserver closed the connection because its client went away).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    let container = container.to_string();
    tokio::spawn(async move {
        seen.following.fetch_add(1, Ordering::SeqCst);
        let mut chunk = logged;
        for i in 1.. {
            if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            chunk = format!("{container} followed {i}\n");
        }
        seen.following.fetch_sub(1, Ordering::SeqCst);
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    Response::builder().header("content-type", "text/plain").body(BodyExt::boxed(body)).unwrap()
}

/// The WebSocket handshake with the v5 protocol, then the command's output.
fn exec(mut req: Request<Incoming>, query: Vec<(String, String)>) -> Response<Body> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let offered = header("sec-websocket-protocol");
    if !header("upgrade").eq_ignore_ascii_case("websocket") || !offered.split(',').any(|p| p.trim() == STREAM_PROTOCOL) {
        return text(StatusCode::BAD_REQUEST, format!("this kubelet speaks {STREAM_PROTOCOL} over WebSocket only; offered: {offered:?}"));
    }
    let accept = derive_accept_key(header("sec-websocket-key").as_bytes());
    let command: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        // Channel 1 is stdout, 3 the error channel with the exit status.
        let status = match command.split_first() {
            Some((program, args)) if program == "echo" => {
                let _ = ws.send(Message::binary([&[1u8][..], format!("{}\n", args.join(" ")).as_bytes()].concat())).await;
                r#"{"metadata":{},"status":"Success"}"#.to_string()
            }
            _ => r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 1","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"1"}]}}"#.to_string(),
        };
        let _ = ws.send(Message::binary([&[3u8][..], status.as_bytes()].concat())).await;
        // A normal closure: client-go reads any other as a failed stream.
        let _ = ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })).await;
        // Until the client's close answers ours (or it hangs up).
        let _ = tokio::time::timeout(Duration::from_secs(5), async { while let Some(Ok(_)) = ws.next().await {} }).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", STREAM_PROTOCOL)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}

/// Reads and drops what the client still sends until it closes (it does
/// once it has read the alert), for at most a few seconds.
async fn linger_until_closed(socket: std::net::TcpStream) {
    let Ok(mut socket) = tokio::net::TcpStream::from_std(socket) else { return };
    let mut buffer = [0u8; 4096];
    let drained = async {
        while let Ok(n) = tokio::io::AsyncReadExt::read(&mut socket, &mut buffer).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drained).await;
}
