//! httpGet probes: one GET (HTTP/1.1, a new connection each time), HTTPS
//! without checking the server's certificate, as upstream's prober does.
//! Success is a status from 200 to 299; the output is the body (at most
//! 10 KiB, as upstream reads), or upstream's failure text.
//!
//! Redirects are followed as upstream's prober follows them (Go's client
//! with `followNonLocalRedirects` off): to the same host name only (any
//! port or scheme), at most ten requests in all. A redirect elsewhere is
//! not followed, and its 3xx is a warning that counts as a success.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::settings::HttpGet;
use super::tcp;
use super::tracker::Probed;

/// upstream's limit on what a probe's output keeps.
pub const MAX_OUTPUT: usize = 10 * 1024;

/// `kube-probe/<major>.<minor>` of the kubelet's version, as upstream.
pub fn user_agent() -> String {
    let version = crate::node::KUBELET_VERSION.trim_start_matches('v');
    let minor: Vec<&str> = version.split(['.', '-']).take(2).collect();
    format!("kube-probe/{}", minor.join("."))
}

/// Go's client gives up on the request that would be the eleventh.
const MAX_REQUESTS: usize = 10;

pub async fn probe(get: &HttpGet, timeout: Duration) -> Probed {
    let url = get.url();
    match tokio::time::timeout(timeout, follow(get)).await {
        Err(_) => Probed::Failure(format!("Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)")),
        Ok(Err((url, e))) => Probed::Failure(format!("Get {url:?}: {e}")),
        Ok(Ok(answer)) if (200..300).contains(&answer.status) => Probed::Success(answer.body),
        Ok(Ok(answer)) if (300..400).contains(&answer.status) => Probed::Warning(format!("Probe terminated redirects, Response body: {}", answer.body)),
        Ok(Ok(answer)) => Probed::Failure(format!("HTTP probe failed with statuscode: {}", answer.status)),
    }
}

/// A lifecycle hook's GET: as a probe's, but any answer will do (upstream's
/// hook runner looks at no status, only at whether the request went through).
pub async fn hook(get: &HttpGet, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, follow(get)).await {
        Err(_) => Err(format!("Get {:?}: context deadline exceeded", get.url())),
        Ok(Err((url, e))) => Err(format!("Get {url:?}: {e}")),
        Ok(Ok(_)) => Ok(()),
    }
}

/// A response: its status, where it redirects to, and (the start of) its body.
struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

/// Requests `get`, then where it redirects while upstream would follow.
/// An error comes with the URL of the request that failed.
async fn follow(get: &HttpGet) -> Result<Answer, (String, String)> {
    let mut current = get.clone();
    let mut made = 0;
    loop {
        let answer = request(&current).await.map_err(|e| (current.url(), e))?;
        made += 1;
        let Some(next) = redirect(&current, &answer) else { return Ok(answer) };
        if next.host != get.host {
            return Ok(answer);
        }
        if made >= MAX_REQUESTS {
            return Err((next.url(), format!("stopped after {MAX_REQUESTS} redirects")));
        }
        current = next;
    }
}

/// Where `answer` to `from` sends the client, as Go's client follows
/// redirects: 301, 302, 303, 307 and 308 with a Location, resolved
/// against the request's URL. The probe's headers go along, but a Host
/// header of its own only to a relative Location (Go keeps `req.Host`
/// only then).
fn redirect(from: &HttpGet, answer: &Answer) -> Option<HttpGet> {
    if !matches!(answer.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = answer.location.as_deref()?;
    let base = url::Url::parse(&from.url()).ok()?;
    let to = base.join(location).ok()?;
    let https = match to.scheme() {
        "http" => false,
        "https" => true,
        _ => return None,
    };
    let host = match to.host()? {
        url::Host::Ipv6(ip) => ip.to_string(),
        other => other.to_string(),
    };
    let absolute = url::Url::parse(location).is_ok() || location.starts_with("//");
    let headers = from.headers.iter().filter(|(name, _)| !(absolute && name.eq_ignore_ascii_case("host"))).cloned().collect();
    let path = match to.query() {
        Some(query) => format!("{}?{query}", to.path()),
        None => to.path().to_string(),
    };
    Some(HttpGet { https, host, port: to.port_or_known_default()?, path, headers })
}

fn tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(|| component_base::tls::unchecked_client_config().map(Arc::new).map_err(|e| e.to_string())).clone()
}

async fn request(get: &HttpGet) -> Result<Answer, String> {
    let stream = tcp::connect(&get.authority()).await?;
    if !get.https {
        return exchange(stream, get).await;
    }
    let name = rustls::pki_types::ServerName::try_from(get.host.clone()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls()?).connect(name, stream).await.map_err(|e| e.to_string())?;
    exchange(stream, get).await
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, get: &HttpGet) -> Result<Answer, String> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut request = hyper::Request::get(get.path.as_str()).body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let headers = request.headers_mut();
    for (name, value) in &get.headers {
        let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str())) else { continue };
        headers.append(name, value);
    }
    // The probe's own headers win over these, Host too.
    let defaults = [(HOST, get.authority()), (USER_AGENT, user_agent()), (ACCEPT, "*/*".to_string())];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::try_from(value).map_err(|e| e.to_string())?);
        }
    }
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let location = response.headers().get(hyper::header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_string);
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while kept.len() < MAX_OUTPUT {
        match body.frame().await {
            Some(Ok(frame)) => kept.extend(frame.into_data().unwrap_or_default()),
            Some(Err(e)) => return Err(e.to_string()),
            None => break,
        }
    }
    kept.truncate(MAX_OUTPUT);
    Ok(Answer { status, location, body: String::from_utf8_lossy(&kept).into_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot server on loopback answering `status` and `body`, and
    /// handing back the request it read.
    async fn serve(status: &str, body: &str) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let n = socket.read(&mut request).await.unwrap();
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        (port, task)
    }

    fn get(port: u16, headers: &[(&str, &str)]) -> HttpGet {
        HttpGet {
            https: false,
            host: "127.0.0.1".into(),
            port,
            path: "/healthz".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[tokio::test]
    async fn a_2xx_passes_with_its_body_and_upstreams_headers() {
        let (port, request) = serve("200 OK", "ok").await;
        assert_eq!(probe(&get(port, &[("X-Custom", "1")]), Duration::from_secs(1)).await, Probed::Success("ok".into()));
        let request = request.await.unwrap().to_lowercase();
        assert!(request.starts_with("get /healthz http/1.1\r\n"), "{request}");
        for header in [format!("host: 127.0.0.1:{port}"), "user-agent: kube-probe/1.33".into(), "accept: */*".into(), "x-custom: 1".into()] {
            assert!(request.contains(&header), "{header} missing in {request}");
        }
    }

    #[tokio::test]
    async fn the_probes_headers_override_the_defaults() {
        let (port, request) = serve("204 No Content", "").await;
        let probed = probe(&get(port, &[("Host", "web.example"), ("User-Agent", "mine")]), Duration::from_secs(1)).await;
        assert_eq!(probed, Probed::Success(String::new()));
        let request = request.await.unwrap().to_lowercase();
        assert!(request.contains("host: web.example\r\n") && request.contains("user-agent: mine\r\n"), "{request}");
        assert!(!request.contains("kube-probe"), "{request}");
    }

    #[tokio::test]
    async fn https_takes_any_certificate() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = component_base::serving::self_signed(&["somewhere.else".to_string()]).unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(config)).accept(socket).await.unwrap();
            let mut request = vec![0u8; 4096];
            let _ = tls.read(&mut request).await.unwrap();
            tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure").await.unwrap();
            let _ = tls.shutdown().await;
        });
        let get = HttpGet { https: true, ..get(port, &[]) };
        assert_eq!(probe(&get, Duration::from_secs(2)).await, Probed::Success("secure".into()));
    }

    /// A server on loopback answering its connections in turn with
    /// `answers` (head lines after the status line, and a body), handing
    /// back the request lines it read.
    async fn serve_in_turn(answers: Vec<(&'static str, String, &'static str)>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut requests = vec![];
            for (status, head, body) in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap();
                requests.push(String::from_utf8_lossy(&request[..n]).lines().next().unwrap_or_default().to_string());
                let answer = format!("HTTP/1.1 {status}\r\n{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
            requests
        });
        (port, task)
    }

    #[tokio::test]
    async fn redirects_to_the_same_host_are_followed() {
        let (port, requests) = serve_in_turn(vec![
            ("302 Found", "Location: /moved?x=1\r\n".into(), "go on"),
            ("301 Moved Permanently", "Location: again\r\n".into(), ""),
            ("200 OK", String::new(), "arrived"),
        ])
        .await;
        assert_eq!(probe(&get(port, &[]), Duration::from_secs(2)).await, Probed::Success("arrived".into()));
        assert_eq!(requests.await.unwrap(), ["GET /healthz HTTP/1.1", "GET /moved?x=1 HTTP/1.1", "GET /again HTTP/1.1"]);
    }

    #[tokio::test]
    async fn a_redirect_elsewhere_is_a_warning_that_counts_as_success() {
        let (port, _) = serve_in_turn(vec![("302 Found", "Location: http://192.0.2.1:8080/\r\n".into(), "see there")]).await;
        assert_eq!(probe(&get(port, &[]), Duration::from_secs(2)).await, Probed::Warning("Probe terminated redirects, Response body: see there".into()));
        let (port, _) = serve_in_turn(vec![("302 Found", String::new(), "no location")]).await;
        assert_eq!(
            probe(&get(port, &[]), Duration::from_secs(2)).await,
            Probed::Warning("Probe terminated redirects, Response body: no location".into()),
            "a 3xx without a Location is not followed"
        );
    }

    #[tokio::test]
    async fn the_eleventh_request_is_refused() {
        let (port, requests) = serve_in_turn((0..10).map(|i| ("307 Temporary Redirect", format!("Location: /hop{i}\r\n"), "")).collect()).await;
        let probed = probe(&get(port, &[]), Duration::from_secs(5)).await;
        assert_eq!(probed, Probed::Failure(format!("Get \"http://127.0.0.1:{port}/hop9\": stopped after 10 redirects")));
        assert_eq!(requests.await.unwrap().len(), 10);
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let from = HttpGet { headers: vec![("Host".into(), "web".into()), ("X-A".into(), "1".into())], ..get(8080, &[]) };
        let from = HttpGet { path: "/a/b?q=1".into(), ..from };
        let to = |status: u16, location: &str| redirect(&from, &Answer { status, location: Some(location.into()), body: String::new() });
        let relative = to(302, "c").unwrap();
        assert_eq!((relative.url(), relative.headers.len()), ("http://127.0.0.1:8080/a/c".to_string(), 2), "a relative Location keeps the Host header");
        let absolute = to(308, "https://127.0.0.1:8443/x").unwrap();
        assert_eq!((absolute.url(), absolute.headers), ("https://127.0.0.1:8443/x".to_string(), vec![("X-A".to_string(), "1".to_string())]));
        assert_eq!(to(302, "//10.0.0.9/y").unwrap().url(), "http://10.0.0.9:80/y");
        assert_eq!(to(302, "http://[fd00::1]:81/").unwrap().url(), "http://[fd00::1]:81/");
        assert!(to(304, "/z").is_none() && to(300, "/z").is_none(), "only 301, 302, 303, 307 and 308 redirect");
        assert!(to(302, "ftp://127.0.0.1/").is_none());
    }

    #[tokio::test]
    async fn a_4xx_or_5xx_fails_with_its_status() {
        let (port, _) = serve("503 Service Unavailable", "down").await;
        assert_eq!(probe(&get(port, &[]), Duration::from_secs(1)).await, Probed::Failure("HTTP probe failed with statuscode: 503".into()));
    }

    #[tokio::test]
    async fn no_answer_within_the_timeout_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let probed = probe(&get(port, &[]), Duration::from_millis(200)).await;
        assert_eq!(
            probed,
            Probed::Failure(format!("Get \"http://127.0.0.1:{port}/healthz\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))
        );
        drop(listener);
        let refused = probe(&get(port, &[]), Duration::from_secs(1)).await;
        assert_eq!(refused, Probed::Failure(format!("Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused")));
    }
}
