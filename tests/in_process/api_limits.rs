//! The apiserver's limits: connection timeouts, the in-flight limits, the
//! request timeout, deadlines on etcd and kubelet calls, and draining on
//! SIGTERM. Limits are set short for the test; each test waits for what it
//! expects within a generous deadline and says what was missing.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use kubelab::kubeconfig;
use kubelab::pki;
use kubelab_scenarios::apiserver::{Limits, Options, TestApi};
use kubelab_scenarios::wait::until_within;
use serde_json::{json, Value};

/// What an answer took to arrive is never asserted; only that it came
/// before this.
const GENEROUS: Duration = Duration::from_secs(20);

fn start(limits: Limits) -> TestApi {
    TestApi::start_with(Options { limits, ..Default::default() })
}

fn port_of(api: &TestApi) -> u16 {
    api.url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Whether the server closes `stream` (EOF or reset) within `GENEROUS`,
/// reading and discarding anything it sends first.
fn closed_by_server(stream: &mut impl Read) -> bool {
    let deadline = Instant::now() + GENEROUS;
    let mut buffer = [0u8; 1024];
    while Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn a_client_that_never_starts_tls_is_dropped() {
    let api = start(Limits { tls_handshake_timeout: Some(Duration::from_millis(500)), ..Default::default() });
    let mut tcp = TcpStream::connect(("127.0.0.1", port_of(&api))).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(closed_by_server(&mut tcp), "a connection that sent no ClientHello was still open after {GENEROUS:?}");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_dropped() {
    use std::io::Write;
    let api = start(Limits { header_read_timeout: Some(Duration::from_millis(500)), ..Default::default() });
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(api.pki_dir().join("ca.crt")).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port_of(&api))).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    // Half a request head: the blank line that ends it never comes.
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    tls.flush().unwrap();
    assert!(closed_by_server(&mut tls), "a connection with unfinished headers was still open after {GENEROUS:?}");
}

/// A kube-rs client with the certificate of `identity` from the lab's PKI,
/// without kube-rs's own retries of 429 and 5xx (the tests look at those).
async fn client_as(api: &TestApi, identity: &str) -> kube::Client {
    let pki_dir = api.pki_dir();
    let read = |file: &str| std::fs::read_to_string(pki_dir.join(file)).unwrap();
    let config = kubeconfig::for_lab("test", &api.url, None, &read("ca.crt"), &read(&format!("{identity}.crt")), &read(&format!("{identity}.key")));
    let config = kube::config::Kubeconfig::from_yaml(&config.to_yaml()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.unwrap();
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

/// Status, headers and body of one request.
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

async fn send(client: &kube::Client, method: &str, path: &str, body: Option<Value>) -> Answer {
    let body = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    let request = http::Request::builder().method(method).uri(path).header("content-type", "application/json").body(kube::client::Body::from(body)).unwrap();
    let response = client.send(request).await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

async fn current_revision(client: &kube::Client) -> i64 {
    let list = send(client, "GET", "/api/v1/namespaces/default/configmaps", None).await.json();
    list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

/// A list that waits (about 3 s) for a revision far ahead: a read held in
/// flight without any test hook.
fn held_read(client: &kube::Client, revision: i64) -> tokio::task::JoinHandle<Answer> {
    let client = client.clone();
    let path = format!("/api/v1/namespaces/default/configmaps?resourceVersion={}", revision + 1000);
    tokio::spawn(async move { send(&client, "GET", &path, None).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_beyond_the_inflight_limit_get_429_and_watches_do_not_count() {
    let api = start(Limits { max_requests_inflight: Some(1), ..Default::default() });
    // Not system:masters, which upstream always lets past a full limit.
    let client = client_as(&api, pki::CONTROLLER_MANAGER).await;
    let admin = client_as(&api, pki::ADMIN).await;
    let revision = current_revision(&client).await;

    // A watch holds no slot: with one open, a read is still served.
    let watch = send_streaming(&client, "/api/v1/namespaces/default/configmaps?watch=true").await;
    assert_eq!(send(&client, "GET", "/api/v1/namespaces/default/configmaps", None).await.status, 200, "a read next to an open watch");

    // While a read is held in flight, another is refused; the held one
    // ends after about 3 s, so retry with a new one until the deadline.
    let deadline = Instant::now() + GENEROUS;
    let refused = 'found: loop {
        assert!(Instant::now() < deadline, "no read was refused while another was in flight (limit 1)");
        let held = held_read(&client, revision);
        while !held.is_finished() {
            let answer = send(&client, "GET", "/api/v1/namespaces/default/configmaps", None).await;
            if answer.status == 429 {
                // system:masters is answered even now.
                assert_eq!(send(&admin, "GET", "/api/v1/namespaces/default/configmaps", None).await.status, 200, "system:masters past a full limit");
                held.abort();
                break 'found answer;
            }
        }
    };
    assert_eq!(refused.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    assert_eq!(refused.body.trim_end(), "Too many requests, please try again later.");
    drop(watch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_mutating_limit_get_429() {
    let api = start(Limits { max_mutating_requests_inflight: Some(1), request_timeout: Some(Duration::from_secs(30)), ..Default::default() });
    let client = client_as(&api, pki::CONTROLLER_MANAGER).await;
    // A write held in flight: etcd stopped under it.
    let stopped = StoppedEtcd::stop(&api);
    let held = {
        let client = client.clone();
        tokio::spawn(async move { send(&client, "POST", "/api/v1/namespaces/default/configmaps", Some(configmap("held"))).await })
    };
    let refused = until_within("a write refused while another is in flight (limit 1)", GENEROUS, || async {
        match probe_write(&client).await {
            answer if answer.status == 429 => Ok(answer),
            answer => Err(format!("last: {} {}", answer.status, answer.body)),
        }
    })
    .await;
    assert_eq!(refused.headers.get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
    // Reads are counted apart: one is served now.
    assert_eq!(tokio::time::timeout(GENEROUS, send(&client, "GET", "/healthz", None)).await.expect("a read while writes are full").status, 200);
    drop(stopped);
    let held = tokio::time::timeout(GENEROUS, held).await.expect("the held write finished once etcd continued").unwrap();
    assert_eq!(held.status, 201, "{}", held.body);
}

/// A write that needs no etcd (its body is refused before any read), so
/// it answers at once: 400 when a write slot is free, 429 when none is.
async fn probe_write(client: &kube::Client) -> Answer {
    send(client, "POST", "/api/v1/namespaces/default/configmaps", Some(json!("not an object"))).await
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "b"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_request_timeout_gets_upstreams_504() {
    let api = start(Limits { request_timeout: Some(Duration::from_millis(500)), ..Default::default() });
    let client = client_as(&api, pki::ADMIN).await;
    let revision = current_revision(&client).await;
    let answer = tokio::time::timeout(GENEROUS, held_read(&client, revision)).await.expect("an answer").unwrap();
    assert_eq!(answer.status, 504, "{}", answer.body);
    let status = answer.json();
    assert_eq!(status["reason"], "Timeout");
    assert_eq!(status["message"], "Timeout: request did not complete within the allotted timeout");
}

/// The test's etcd stopped (SIGSTOP, by its PID) until dropped (SIGCONT).
struct StoppedEtcd(u32);

impl StoppedEtcd {
    fn stop(api: &TestApi) -> StoppedEtcd {
        signal("-STOP", api.etcd_pid());
        StoppedEtcd(api.etcd_pid())
    }
}

impl Drop for StoppedEtcd {
    fn drop(&mut self) {
        signal("-CONT", self.0);
    }
}

/// Sends `sig` to the one process `pid` this test started.
fn signal(sig: &str, pid: u32) {
    let status = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_etcd_gets_an_error_in_time_not_a_hang() {
    let api = start(Limits { request_timeout: Some(Duration::from_secs(2)), ..Default::default() });
    let client = client_as(&api, pki::ADMIN).await;
    let stopped = StoppedEtcd::stop(&api);
    let answer = tokio::time::timeout(GENEROUS, send(&client, "POST", "/api/v1/namespaces/default/configmaps", Some(configmap("late"))))
        .await
        .expect("an answer while etcd is stopped");
    // The request timeout and the etcd call's deadline are the same length
    // (as upstream's request context bounds its storage calls), so either
    // the timeout's 504 or the storage error's 500 answers first.
    let deadline_passed = answer.status == 504 || (answer.status == 500 && answer.body.contains("context deadline exceeded"));
    assert!(deadline_passed, "{} {}", answer.status, answer.body);
    drop(stopped);
    // Served again once etcd is back.
    until_within("writes working again after etcd continued", GENEROUS, || async {
        match send(&client, "POST", "/api/v1/namespaces/default/configmaps", Some(configmap("back"))).await {
            answer if answer.status == 201 => Ok(()),
            answer => Err(format!("last: {} {}", answer.status, answer.body)),
        }
    })
    .await;
}

/// A node whose kubelet address is a TCP port that accepts and then says
/// nothing, and a pod on it.
async fn pod_on_a_silent_kubelet(api: &TestApi) -> std::net::TcpListener {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let client = client_as(api, pki::ADMIN).await;
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "silent"}});
    assert_eq!(send(&client, "POST", "/api/v1/nodes", Some(node)).await.status, 201);
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    let path = "/api/v1/nodes/silent/status";
    let request = http::Request::builder()
        .method("PATCH")
        .uri(path)
        .header("content-type", "application/merge-patch+json")
        .body(kube::client::Body::from(serde_json::to_vec(&status).unwrap()))
        .unwrap();
    assert_eq!(client.send(request).await.unwrap().status().as_u16(), 200);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                     "spec": {"nodeName": "silent", "containers": [{"name": "web", "image": "busybox:1.36"}]}});
    let created = send(&client, "POST", "/api/v1/namespaces/default/pods", Some(pod)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    silent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_that_never_finishes_the_handshake_is_given_up() {
    let api = start(Limits { kubelet_tls_handshake_timeout: Some(Duration::from_millis(500)), ..Default::default() });
    let _silent = pod_on_a_silent_kubelet(&api).await;
    let client = client_as(&api, pki::ADMIN).await;
    let answer = tokio::time::timeout(GENEROUS, send(&client, "GET", "/api/v1/namespaces/default/pods/web/log", None))
        .await
        .expect("an answer from pods/log while the kubelet says nothing");
    assert_eq!(answer.status, 500, "{}", answer.body);
    let message = answer.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(message.ends_with("net/http: TLS handshake timeout"), "{message}");
}

/// A request whose body is read as it comes: the response's status and a
/// task that reports how the body ended (true: cleanly).
struct Streaming {
    status: u16,
    ended: tokio::task::JoinHandle<Result<(), String>>,
}

async fn send_streaming(client: &kube::Client, path: &str) -> Streaming {
    let request = http::Request::builder().uri(path).body(kube::client::Body::empty()).unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let ended = tokio::spawn(async move {
        loop {
            match body.frame().await {
                None => return Ok(()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    });
    Streaming { status, ended }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_watches_cleanly_and_lets_requests_in_flight_finish() {
    let binary = kubelab_scenarios::repo().release_dir().join("apiserver");
    assert!(binary.is_file(), "build it first: cargo build --release -p apiserver");
    let limits = Limits { max_mutating_requests_inflight: Some(1), request_timeout: Some(Duration::from_secs(30)), ..Default::default() };
    let mut api = TestApi::start_with(Options { binary: Some(binary), limits, ..Default::default() });
    let client = client_as(&api, pki::CONTROLLER_MANAGER).await;
    let watch = send_streaming(&client, "/api/v1/namespaces/default/configmaps?watch=true").await;
    assert_eq!(watch.status, 200);

    // A write in flight: etcd stopped under it; a second write's 429
    // shows the first is being served.
    let stopped = StoppedEtcd::stop(&api);
    let hold = || {
        let client = client.clone();
        tokio::spawn(async move { send(&client, "POST", "/api/v1/namespaces/default/configmaps", Some(configmap("in-flight"))).await })
    };
    let mut held = hold();
    let deadline = Instant::now() + GENEROUS;
    loop {
        let probe = probe_write(&client).await;
        if probe.status == 429 {
            break;
        }
        // The probe can take the only slot just before the held write
        // arrives, which then gets the 429 itself: send it again.
        if held.is_finished() {
            let first = held.await.map(|a| (a.status, a.body));
            if let Ok((429, _)) = first {
                held = hold();
                continue;
            }
            panic!("the write meant to be held finished while etcd was stopped: {first:?}");
        }
        if Instant::now() > deadline {
            panic!("the first write never showed as in flight (still waiting); a second got {} {}", probe.status, probe.body);
        }
    }

    signal("-TERM", api.apiserver_pid());
    drop(stopped);
    let held = tokio::time::timeout(GENEROUS, held).await.expect("the write in flight was answered").unwrap();
    assert_eq!(held.status, 201, "the write in flight finished: {}", held.body);
    let ended = tokio::time::timeout(GENEROUS, watch.ended).await.expect("the watch ended").unwrap();
    assert_eq!(ended, Ok(()), "the watch's body ended cleanly");
    let exit = tokio::task::block_in_place(|| api.apiserver_exit(GENEROUS)).expect("the apiserver exited");
    assert!(exit.success(), "{exit:?}");
}
