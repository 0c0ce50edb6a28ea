//! httpGet probes: one GET (HTTP/1.1, a new connection each time), HTTPS
//! without checking the server's certificate, as upstream's prober does.
//! Success is a status from 200 to 399; the output is the body (at most
//! 10 KiB, as upstream reads), or upstream's failure text. Redirects are
//! not followed: a 3xx is a success, as upstream counts a redirect it
//! does not follow.

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

pub async fn probe(get: &HttpGet, timeout: Duration) -> Probed {
    let url = get.url();
    match tokio::time::timeout(timeout, request(get)).await {
        Err(_) => Probed::Failure(format!("Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)")),
        Ok(Err(e)) => Probed::Failure(format!("Get {url:?}: {e}")),
        Ok(Ok((status, body))) if (200..400).contains(&status) => Probed::Success(body),
        Ok(Ok((status, _))) => Probed::Failure(format!("HTTP probe failed with statuscode: {status}")),
    }
}

fn tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(|| component_base::tls::unchecked_client_config().map(Arc::new).map_err(|e| e.to_string())).clone()
}

/// The status and (the start of) the body.
async fn request(get: &HttpGet) -> Result<(u16, String), String> {
    let stream = tcp::connect(&get.authority()).await?;
    if !get.https {
        return exchange(stream, get).await;
    }
    let name = rustls::pki_types::ServerName::try_from(get.host.clone()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(tls()?).connect(name, stream).await.map_err(|e| e.to_string())?;
    exchange(stream, get).await
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, get: &HttpGet) -> Result<(u16, String), String> {
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
    Ok((status, String::from_utf8_lossy(&kept).into_owned()))
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
        let (port, request) = serve("302 Found", "").await;
        let probed = probe(&get(port, &[("Host", "web.example"), ("User-Agent", "mine")]), Duration::from_secs(1)).await;
        assert_eq!(probed, Probed::Success(String::new()), "a redirect not followed counts as success");
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
