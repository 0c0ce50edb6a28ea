//! An apiserver for tests: a real etcd (Debian's binary, on loopback ports
//! of its own), the lab's PKI in a temporary directory, and our apiserver
//! running in this process on a thread of its own. kubectl and kube-rs reach
//! it through a kubeconfig written for it.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubelab::kubeconfig;
use kubelab::pki::{self, EtcdMember, Pki, ServingNames};

pub struct TestApi {
    pub dir: tempfile::TempDir,
    etcd: Child,
    pub etcd_url: String,
    pub url: String,
    pub kubeconfig: PathBuf,
    server: Server,
}

/// Where the apiserver runs: on a thread of this process, or as the real
/// binary in a process of its own (benchmarks measure its memory).
enum Server {
    Thread { shutdown: Option<tokio::sync::oneshot::Sender<()>>, thread: Option<std::thread::JoinHandle<()>> },
    Process(Child),
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

pub use crate::kubectl::Output;

/// Settings of a test apiserver.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Events each watch cache keeps (small values make 410 easy to reach).
    pub watch_history: Option<usize>,
    /// Bytes each watch cache's history keeps.
    pub watch_history_bytes: Option<usize>,
    /// Bytes of events that may wait for one watcher before it is closed.
    pub watcher_backlog_bytes: Option<usize>,
    /// Run this apiserver binary instead of the library in-process.
    pub binary: Option<PathBuf>,
    /// How long events live (upstream's --event-ttl; 1 h when not given).
    pub event_ttl: Option<Duration>,
    /// `--kubelet-certificate-authority`; the kubelet client certificate is
    /// always the lab's, as the lab passes it.
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Request and connection limits (upstream's defaults when not given).
    pub limits: Limits,
    /// etcd behind mutual TLS as the lab runs it (etcd's CA from the test
    /// PKI, the apiserver with `--etcd-cafile/--etcd-certfile/--etcd-keyfile`);
    /// plain http otherwise.
    pub etcd_tls: bool,
}

/// Limits of a test apiserver, each upstream's default when None. The
/// connection timeouts have no flag (upstream has none), so a binary
/// takes only the flagged ones.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    pub max_requests_inflight: Option<usize>,
    pub max_mutating_requests_inflight: Option<usize>,
    pub request_timeout: Option<Duration>,
    pub tls_handshake_timeout: Option<Duration>,
    pub header_read_timeout: Option<Duration>,
    pub kubelet_tls_handshake_timeout: Option<Duration>,
    pub kubelet_response_head_timeout: Option<Duration>,
}

impl Limits {
    fn apply(&self, config: &mut apiserver::startup::Config) {
        if let Some(n) = self.max_requests_inflight {
            config.limits.max_requests_inflight = n;
        }
        if let Some(n) = self.max_mutating_requests_inflight {
            config.limits.max_mutating_requests_inflight = n;
        }
        if let Some(t) = self.request_timeout {
            config.limits.request_timeout = t;
        }
        if let Some(t) = self.tls_handshake_timeout {
            config.connections.tls_handshake = t;
        }
        if let Some(t) = self.header_read_timeout {
            config.connections.header_read = t;
        }
        if let Some(t) = self.kubelet_tls_handshake_timeout {
            config.kubelet_timeouts.tls_handshake = t;
        }
        if let Some(t) = self.kubelet_response_head_timeout {
            config.kubelet_timeouts.response_head = t;
        }
    }

    /// The binary's flags for these limits.
    fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(n) = self.max_requests_inflight {
            flags.push(format!("--max-requests-inflight={n}"));
        }
        if let Some(n) = self.max_mutating_requests_inflight {
            flags.push(format!("--max-mutating-requests-inflight={n}"));
        }
        if let Some(t) = self.request_timeout {
            flags.push(format!("--request-timeout={}s", t.as_secs().max(1)));
        }
        flags
    }
}

/// etcd's CA and the apiserver's etcd client certificate and key in the
/// test PKI, when etcd is reached over https, as the lab lays them out.
fn etcd_tls_files(pki_dir: &std::path::Path, etcd_url: &str) -> Option<[PathBuf; 3]> {
    etcd_url.starts_with("https://").then(|| {
        [
            pki_dir.join(pki::ETCD_DIR).join("ca.crt"),
            pki_dir.join(format!("{}.crt", pki::APISERVER_ETCD_CLIENT)),
            pki_dir.join(format!("{}.key", pki::APISERVER_ETCD_CLIENT)),
        ]
    })
}

/// The binary's flags for [`etcd_tls_files`].
fn etcd_tls_flags(pki_dir: &std::path::Path, etcd_url: &str) -> Vec<String> {
    match etcd_tls_files(pki_dir, etcd_url) {
        Some([ca, cert, key]) => {
            vec![format!("--etcd-cafile={}", ca.display()), format!("--etcd-certfile={}", cert.display()), format!("--etcd-keyfile={}", key.display())]
        }
        None => vec![],
    }
}

impl TestApi {
    pub fn start() -> TestApi {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> TestApi {
        let dir = tempfile::tempdir().unwrap();
        // The PKI first: a TLS etcd starts with its certificates.
        let pki_dir = dir.path().join("pki");
        let names = ServingNames { dns: vec![], ips: vec![Ipv4Addr::LOCALHOST.into()] };
        let members = if options.etcd_tls { vec![EtcdMember { name: "etcd-0".into(), dns: vec!["etcd-0".into()] }] } else { vec![] };
        let pki = Pki::load_or_create(&pki_dir, &names, &[], &members).unwrap();
        let (client_port, peer_port) = (free_port(), free_port());
        let scheme = if options.etcd_tls { "https" } else { "http" };
        let etcd_url = format!("{scheme}://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_pki = pki_dir.join(pki::ETCD_DIR);
        let tls_flags = match options.etcd_tls {
            true => vec![
                format!("--cert-file={}", etcd_pki.join("server-etcd-0.crt").display()),
                format!("--key-file={}", etcd_pki.join("server-etcd-0.key").display()),
                "--client-cert-auth=true".into(),
                format!("--trusted-ca-file={}", etcd_pki.join("ca.crt").display()),
            ],
            false => vec![],
        };
        let etcd = Command::new("etcd")
            .args([
                "--name=test",
                &format!("--data-dir={}", dir.path().join("etcd").display()),
                &format!("--listen-client-urls={etcd_url}"),
                &format!("--advertise-client-urls={etcd_url}"),
                &format!("--listen-peer-urls={peer_url}"),
                &format!("--initial-advertise-peer-urls={peer_url}"),
                &format!("--initial-cluster=test={peer_url}"),
            ])
            .args(tls_flags)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log")).unwrap())
            .spawn()
            .expect("etcd is not on PATH: install Debian's etcd-server (`just setup` does)");
        // The apiserver's bootstrap gives up on a refused connection: etcd
        // listens first.
        crate::wait::until_blocking(&format!("etcd listening on 127.0.0.1:{client_port}"), Duration::from_secs(30), || {
            std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, client_port)).map(drop).map_err(|e| e.to_string())
        });

        let admin = pki.identity(pki::ADMIN).unwrap();

        let (port, server) = match &options.binary {
            Some(binary) => Self::spawn_binary(binary, &pki_dir, &etcd_url, &options),
            None => Self::spawn_thread(options.clone(), pki_dir.clone(), etcd_url.clone()),
        };
        let url = format!("https://127.0.0.1:{port}");
        let config = kubeconfig::for_lab("test", &url, None, pki.ca_pem(), &admin.cert_pem, &admin.key_pem);
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, config.to_yaml()).unwrap();
        TestApi { dir, etcd, etcd_url, url, kubeconfig, server }
    }

    /// The apiserver binary, with the flags the lab gives it; ready once it
    /// listens (it creates the system namespaces first).
    fn spawn_binary(binary: &std::path::Path, pki_dir: &std::path::Path, etcd_url: &str, options: &Options) -> (u16, Server) {
        let port = free_port();
        let child = Command::new(binary)
            .args([
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", pki_dir.join("apiserver.crt").display()),
                format!("--tls-private-key-file={}", pki_dir.join("apiserver.key").display()),
                format!("--client-ca-file={}", pki_dir.join("ca.crt").display()),
                format!("--kubelet-client-certificate={}", pki_dir.join("apiserver-kubelet-client.crt").display()),
                format!("--kubelet-client-key={}", pki_dir.join("apiserver-kubelet-client.key").display()),
            ])
            .args(options.kubelet_certificate_authority.as_ref().map(|ca| format!("--kubelet-certificate-authority={}", ca.display())))
            .args(options.limits.flags())
            .args(etcd_tls_flags(pki_dir, etcd_url))
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("the apiserver binary runs");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
            assert!(Instant::now() < deadline, "the apiserver binary did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        (port, Server::Process(child))
    }

    /// The PID of the apiserver's process (this one, when it runs in-process).
    pub fn apiserver_pid(&self) -> u32 {
        match &self.server {
            Server::Process(child) => child.id(),
            Server::Thread { .. } => std::process::id(),
        }
    }

    /// The apiserver library's own start-up (`Server::start`, as the
    /// binary runs it) on a thread and runtime of its own.
    /// The PID of this test's etcd (to stop and continue it).
    pub fn etcd_pid(&self) -> u32 {
        self.etcd.id()
    }

    /// The binary apiserver's exit status, once it has exited within `wait`.
    pub fn apiserver_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        let Server::Process(child) = &mut self.server else { panic!("only a binary apiserver exits by itself") };
        let deadline = Instant::now() + wait;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The configuration of an in-process apiserver over `etcd_url` with
    /// the PKI in `pki_dir`, on a free loopback port.
    fn config(options: &Options, pki_dir: &std::path::Path, etcd_url: &str) -> apiserver::startup::Config {
        let pki = apiserver::server::TlsFiles { cert: &pki_dir.join("apiserver.crt"), key: &pki_dir.join("apiserver.key"), client_ca: &pki_dir.join("ca.crt") };
        let mut config = apiserver::startup::Config::new(vec![etcd_url.to_string()], (Ipv4Addr::LOCALHOST, 0).into(), &pki);
        // Tests watch the kubernetes Service's endpoints change by what
        // they do themselves.
        config.publish_endpoints = false;
        config.etcd_wait = Duration::from_secs(20);
        // Nothing listens on these: the scheduler and controller-manager are not here.
        (config.scheduler_address, config.controller_manager_address) = ("127.0.0.1:1".into(), "127.0.0.1:2".into());
        config.kubelet_client_certificate = Some(pki_dir.join("apiserver-kubelet-client.crt"));
        config.kubelet_client_key = Some(pki_dir.join("apiserver-kubelet-client.key"));
        config.kubelet_certificate_authority = options.kubelet_certificate_authority.clone();
        if let Some([ca, cert, key]) = etcd_tls_files(pki_dir, etcd_url) {
            (config.etcd_cafile, config.etcd_certfile, config.etcd_keyfile) = (Some(ca), Some(cert), Some(key));
        }
        config.watch_history = options.watch_history;
        config.watch_history_bytes = options.watch_history_bytes;
        config.watcher_backlog_bytes = options.watcher_backlog_bytes;
        if let Some(ttl) = options.event_ttl {
            config.event_ttl = ttl;
        }
        options.limits.apply(&mut config);
        config
    }

    /// A second apiserver over this one's etcd, started by the same
    /// start-up code but not serving: its App, for driving the router in
    /// this process (no sockets, no TLS).
    pub async fn second_app(&self) -> std::sync::Arc<apiserver::App> {
        let config = Self::config(&Options::default(), &self.pki_dir(), &self.etcd_url);
        apiserver::startup::Server::start(config).await.expect("the apiserver starts").app()
    }

    fn spawn_thread(options: Options, pki_dir: PathBuf, etcd_url: String) -> (u16, Server) {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let config = Self::config(&options, &pki_dir, &etcd_url);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let server = apiserver::startup::Server::start(config).await.expect("the apiserver starts");
                port_tx.send(server.address().port()).unwrap();
                server
                    .serve_until(async {
                        let _ = shutdown_rx.await;
                    })
                    .await
                    .unwrap();
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        let port = port_rx.recv_timeout(Duration::from_secs(30)).expect("the apiserver did not start");
        (port, Server::Thread { shutdown: Some(shutdown), thread: Some(thread) })
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// Runs the real kubectl against this apiserver.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(args, None, &[])
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.kubectl_with(args, Some(stdin), &[])
    }

    pub fn kubectl_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
        crate::kubectl::run(&self.kubeconfig, args, crate::kubectl::Run { stdin, env, home: Some(self.dir.path()), request_timeout: None })
    }

    /// A kubectl that runs until it is dropped (a watch, a followed log),
    /// its stdout read line by line as it comes.
    pub fn kubectl_streaming(&self, args: &[&str]) -> Streaming {
        use std::io::BufRead;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl is not on PATH");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Streaming { child, lines }
    }

    /// A raw request with the admin identity: status, headers and body.
    pub async fn raw(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        use http_body_util::BodyExt;
        let client = self.client().await;
        let request = http::Request::builder().method(method).uri(path).header("content-type", content_type).body(kube::client::Body::from(body)).unwrap();
        let response = client.send(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = crate::deadline::within(&format!("the body of {method} {path}"), response.into_body().collect()).await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// A watch request: the JSON lines it sends until it ends or `limit`
    /// lines or `wait` has passed, whichever comes first.
    pub async fn watch_lines(&self, path: &str, limit: usize, wait: Duration) -> Vec<serde_json::Value> {
        use http_body_util::BodyExt;
        let client = self.client().await;
        let request = http::Request::builder().uri(path).body(kube::client::Body::empty()).unwrap();
        let response = client.send(request).await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "watch {path}");
        let mut body = response.into_body();
        let mut buffer = Vec::new();
        let mut lines = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        while lines.len() < limit {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                _ => break,
            };
            if let Ok(data) = frame.into_data() {
                buffer.extend_from_slice(&data);
                while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    lines.push(serde_json::from_slice(&line).expect("each watch line is one JSON object"));
                }
            }
        }
        lines
    }

    /// A kube-rs client with the admin identity; each request has a
    /// deadline ([`crate::deadline`]).
    pub async fn client(&self) -> kube::Client {
        let config = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.unwrap();
        crate::deadline::client(config)
    }
}

/// A running kubectl and the lines it has printed; killed when dropped.
pub struct Streaming {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Streaming {
    /// The next lines, up to `count` of them or as many as come within `wait`.
    pub fn lines(&self, count: usize, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut lines = Vec::new();
        while lines.len() < count {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines
    }
}

impl Drop for Streaming {
    // Only the kubectl this fixture started, by its own handle.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A component's library running in this process beside a test apiserver
/// (on a thread and runtime of its own, as its own identity); stopped when
/// dropped (so drop it before the apiserver).
pub struct InProcess {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The controller-manager's controllers in this process.
pub type ControllerManager = InProcess;
/// The scheduler in this process.
pub type Scheduler = InProcess;

impl TestApi {
    /// Starts every controller of the controller-manager (its library, on a
    /// thread and runtime of its own) against this apiserver.
    pub fn controller_manager(&self) -> ControllerManager {
        self.controller_manager_with(&["*"], controller_manager::Settings::default())
    }

    /// Starts the controllers `controllers` selects (`--controllers` syntax)
    /// with `settings` against this apiserver.
    pub fn controller_manager_with(&self, controllers: &[&str], settings: controller_manager::Settings) -> ControllerManager {
        let controllers = controller_manager::selected(&controllers.iter().map(|c| c.to_string()).collect::<Vec<_>>()).unwrap();
        self.in_process(pki::CONTROLLER_MANAGER, move |client| async move {
            controller_manager::run_controllers(controller_manager::Context { client, settings }, &controllers).await
        })
    }

    /// Starts the scheduler (its library) against this apiserver, as the
    /// kube-scheduler identity.
    pub fn scheduler(&self) -> Scheduler {
        self.scheduler_with(scheduler::Settings::default())
    }

    pub fn scheduler_with(&self, settings: scheduler::Settings) -> Scheduler {
        self.in_process(pki::SCHEDULER, move |client| async move {
            if let Err(e) = scheduler::run(client, settings).await {
                panic!("the scheduler stopped: {e:#}");
            }
        })
    }

    /// Runs `component` with a client of `identity` (from the lab's PKI) on
    /// a thread and runtime of its own until the handle is dropped.
    pub fn in_process<F, Fut>(&self, identity: &str, component: F) -> InProcess
    where
        F: FnOnce(kube::Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let pki_dir = self.pki_dir();
        let read = |file: &str| std::fs::read_to_string(pki_dir.join(file)).unwrap();
        let config = kubeconfig::for_lab("test", &self.url, None, &read("ca.crt"), &read(&format!("{identity}.crt")), &read(&format!("{identity}.key")));
        let config = kube::config::Kubeconfig::from_yaml(&config.to_yaml()).unwrap();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let config = kube::Config::from_custom_kubeconfig(config, &Default::default()).await.unwrap();
                let client = kube::Client::try_from(config).unwrap();
                tokio::select! {
                    _ = component(client) => {}
                    _ = shutdown_rx => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        InProcess { shutdown: Some(shutdown), thread: Some(thread) }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        match &mut self.server {
            Server::Thread { shutdown, thread } => {
                if let Some(s) = shutdown.take() {
                    let _ = s.send(());
                }
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            // Only the process this fixture started, by its own handle.
            Server::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Only the etcd this fixture started, by its own handle.
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}
