//! netexec: agnhost's netexec endpoints over HTTP, and its UDP responder.

use std::collections::HashMap;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tokio::net::{TcpListener, UdpSocket};

use crate::dial::{self, Protocol};
use crate::http::{self, Reply};

#[derive(clap::Args, Clone)]
pub struct Options {
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    #[arg(long, default_value_t = 8081)]
    pub udp_port: u16,
}

impl Default for Options {
    fn default() -> Options {
        Options { http_port: 8080, udp_port: 8081 }
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    // The UDP socket is bound before HTTP answers at all, so /healthz is
    // true from the first request (agnhost's means "the UDP server is up").
    let udp = UdpSocket::bind(("0.0.0.0", options.udp_port)).await.map_err(|e| anyhow::anyhow!("listening on UDP port {}: {e}", options.udp_port))?;
    println!("Started UDP server on port {}", udp.local_addr()?.port());
    let tcp = TcpListener::bind(("0.0.0.0", options.http_port)).await.map_err(|e| anyhow::anyhow!("listening on TCP port {}: {e}", options.http_port))?;
    println!("Started HTTP server on port {}", tcp.local_addr()?.port());
    tokio::select! {
        result = http::serve_on(tcp, handle) => result,
        result = udp_responder(udp) => result,
    }
}

async fn handle(request: Request<Incoming>, peer: SocketAddr) -> Reply {
    let query: HashMap<String, String> = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let param = |name: &str| query.get(name).map(String::as_str).unwrap_or("");
    match request.uri().path() {
        "/hostname" | "/hostName" => Reply::ok(crate::hostname()),
        // Go's RemoteAddr form: ip:port, [ip6]:port.
        "/clientip" => Reply::ok(peer.to_string()),
        "/echo" => echo(param("msg"), param("code")),
        "/env" => Reply::ok(std::env::vars().map(|(k, v)| format!("{k}={v}\n")).collect::<String>()),
        "/healthz" => Reply::ok(""),
        "/exit" => exit(param("code")),
        "/shutdown" => Reply { exit: Some(0), ..Reply::ok("") },
        "/redirect" => redirect(param("location")),
        "/dial" => dial_handler(param("request"), param("protocol"), param("host"), param("port"), param("tries")).await,
        other => Reply::text(StatusCode::NOT_FOUND, format!("404 page not found: {other}\n")),
    }
}

fn echo(msg: &str, code: &str) -> Reply {
    if code.is_empty() {
        return Reply::ok(msg);
    }
    match code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()) {
        Some(status) => Reply::text(status, msg),
        None => Reply::ok(format!("argument 'code' must be an integer or empty, got {code:?}\n")),
    }
}

/// agnhost's /redirect: a 302 to `location` (httpGet probes that follow redirects).
fn redirect(location: &str) -> Reply {
    let Ok(value) = hyper::header::HeaderValue::try_from(location) else {
        return Reply::text(StatusCode::BAD_REQUEST, format!("argument 'location' is not a valid header value: {location:?}\n"));
    };
    if location.is_empty() {
        return Reply::text(StatusCode::BAD_REQUEST, "argument 'location' is required\n");
    }
    let mut reply = Reply::text(StatusCode::FOUND, format!("redirecting to {location}\n"));
    reply.response.headers_mut().insert(hyper::header::LOCATION, value);
    reply
}

fn exit(code: &str) -> Reply {
    let parsed = if code.is_empty() { Some(0) } else { code.parse::<i32>().ok().filter(|c| (0..=127).contains(c)) };
    match parsed {
        Some(code) => Reply { exit: Some(code), ..Reply::ok("") },
        None => Reply::ok(format!("argument 'code' must be an integer [0-127] or empty, got {code:?}\n")),
    }
}

/// agnhost's /dial: `tries` requests to host:port, answered with
/// `{"responses": [...], "errors": [...]}`; as agnhost, `responses` is there
/// when the last try got an answer and `errors` when any try failed.
async fn dial_handler(request: &str, protocol: &str, host: &str, port: &str, tries: &str) -> Reply {
    let tries = if tries.is_empty() { Ok(1) } else { tries.parse::<u32>() };
    let Ok(tries) = tries else {
        return Reply::text(StatusCode::BAD_REQUEST, format!("tries parameter is invalid. {tries:?}\n"));
    };
    if request.is_empty() {
        return Reply::text(StatusCode::BAD_REQUEST, "request parameter not specified.\n");
    }
    let Some(protocol) = Protocol::parse(protocol) else {
        return Reply::text(StatusCode::BAD_REQUEST, format!("unsupported protocol. {protocol}\n"));
    };
    let address = match dial::resolve(host, port).await {
        Ok(address) => address,
        Err(e) => return Reply::text(StatusCode::BAD_REQUEST, format!("host and/or port param are invalid. {e}\n")),
    };
    let mut responses = Vec::new();
    let mut errors = Vec::new();
    let mut last_answered = false;
    for _ in 0..tries {
        match dial::once(protocol, address, request).await {
            Ok(answer) => {
                last_answered = !answer.is_empty();
                responses.push(answer);
            }
            Err(e) => {
                last_answered = false;
                errors.push(format!("{e:#}"));
            }
        }
    }
    let mut output = serde_json::Map::new();
    if last_answered {
        output.insert("responses".into(), responses.into());
    }
    if !errors.is_empty() {
        output.insert("errors".into(), errors.into());
    }
    Reply::ok(serde_json::Value::Object(output).to_string())
}

/// Answers `hostname`, `echo <msg>` and `clientip` datagrams.
async fn udp_responder(socket: UdpSocket) -> anyhow::Result<()> {
    let mut buffer = [0u8; 2048];
    loop {
        let (n, peer) = socket.recv_from(&mut buffer).await?;
        // agnhost lowercases what it receives, so `echo` answers in lower case too.
        let text = String::from_utf8_lossy(&buffer[..n]).trim().to_lowercase();
        let answer = if text == "hostname" {
            crate::hostname()
        } else if let Some(message) = text.strip_prefix("echo ") {
            message.to_string()
        } else if text == "clientip" {
            peer.to_string()
        } else {
            if !text.is_empty() {
                println!("unknown UDP command from {peer}: {text}");
            }
            continue;
        };
        if let Err(e) = socket.send_to(answer.as_bytes(), peer).await {
            eprintln!("answering UDP client {peer}: {e}");
        }
    }
}
