//! `kubectl port-forward` from tests and benches: started, waited for
//! until it listens, ended when dropped; and a plain HTTP GET through it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::until_blocking;

/// A `kubectl port-forward` a test started, ended when dropped.
pub struct Forward {
    child: Child,
    /// Local port → remote port, as kubectl printed them.
    pub ports: Vec<(u16, u16)>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kubectl port-forward TARGET SPEC...` and waits until it says
/// where it listens (once per port, "Forwarding from 127.0.0.1:L -> R").
pub fn forward(kubeconfig: &Path, target: &str, specs: &[&str]) -> Forward {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["port-forward", "--address", "127.0.0.1", target])
        .args(specs)
        .stdout(Stdio::piped())
        // Its errors ("an error occurred forwarding ...") go to the test's output.
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kubectl runs");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // Read until kubectl ends: it prints a line per connection, and a
    // closed pipe would end it (SIGPIPE) in the middle of a transfer.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let ports = until_blocking(&format!("kubectl port-forward {target} to listen on {} ports", specs.len()), Duration::from_secs(60), || {
        while let Ok(line) = rx.try_recv() {
            lines.push(line);
        }
        let ports: Vec<(u16, u16)> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("Forwarding from 127.0.0.1:"))
            .filter_map(|rest| rest.split_once(" -> "))
            .filter_map(|(local, remote)| Some((local.parse().ok()?, remote.trim().parse().ok()?)))
            .collect();
        if ports.len() == specs.len() {
            Ok(ports)
        } else {
            Err(format!("printed so far: {lines:?}"))
        }
    });
    Forward { child, ports }
}

/// GETs `path` over HTTP/1.0 from 127.0.0.1:`port`; the body.
pub fn get(port: u16, path: &str) -> Vec<u8> {
    let mut connection = std::net::TcpStream::connect(("127.0.0.1", port)).expect("kubectl's listener accepts");
    connection.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(connection, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    connection.read_to_end(&mut answer).expect("the whole answer within 60 s");
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..end]).to_string();
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "GET {path}: {head}");
    answer[end + 4..].to_vec()
}
