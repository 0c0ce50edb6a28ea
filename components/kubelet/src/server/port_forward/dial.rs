//! The connection port-forward makes: to `localhost:<port>` inside the
//! pod's network namespace, as containerd's port-forward does, so a server
//! that listens on the pod's loopback only is reached too.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

/// Upstream's dialer gives up on a connection after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to `127.0.0.1:port` in the network namespace at `netns`.
///
/// The socket is made on a thread of its own that enters the namespace and
/// ends: a thread's namespace is the one its sockets belong to, and a
/// pooled thread (tokio's blocking pool) must never change namespace, or
/// whatever runs on it next would be inside the pod.
pub async fn dial(netns: Option<&Path>, port: u16) -> Result<tokio::net::TcpStream, String> {
    let Some(netns) = netns else {
        // A hostNetwork pod: the node's namespace, this thread's own.
        let stream = tokio::task::spawn_blocking(move || connect(port)).await.map_err(|e| e.to_string())??;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        return tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string());
    };
    let netns: PathBuf = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("port-forward-dial".into())
        .spawn(move || {
            let _ = tx.send(dial_blocking(&netns, port));
        })
        .map_err(|e| format!("starting a thread to dial from: {e}"))?;
    let stream = rx.await.map_err(|_| "the dialing thread ended without an answer".to_string())??;
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())
}

fn dial_blocking(netns: &Path, port: u16) -> Result<TcpStream, String> {
    let file = std::fs::File::open(netns).map_err(|e| format!("opening the pod's network namespace {}: {e}", netns.display()))?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| format!("entering the pod's network namespace: {e}"))?;
    connect(port)
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(|e| {
        // Go's dialer's words, as containerd's message carries them.
        let why = match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "i/o timeout".to_string(),
            _ => e.to_string(),
        };
        format!("failed to connect to localhost:{port} inside the pod's network namespace: dial tcp4 {address}: {why}")
    })
}
