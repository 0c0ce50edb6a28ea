//! `kubectl port-forward` (SPDY tunnelled in a WebSocket, as kubectl 1.33
//! speaks it) to a pod on two ports at once and to a Service, each moving
//! an 8 MiB file checked by its hash; and the Python client's
//! port-forward (WebSocket channels). The pod serves with busybox httpd.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

use kubelab_scenarios::cluster::Cluster as Lab;
use kubelab_scenarios::wait::{until, until_blocking};

const POD: &str = "forward-target";
/// Two servers (httpd returns once it listens) of one directory: the
/// file, and its hash as sha256sum writes it, written last, so that its
/// presence says both servers listen.
const SERVE: &str = "mkdir -p /www && head -c 8388608 /dev/urandom > /www/big && httpd -p 80 -h /www && httpd -p 8081 -h /www \
                     && sha256sum /www/big > /www/big.sha.part && mv /www/big.sha.part /www/big.sha && exec sleep 86400";

/// A `kubectl port-forward` this test started, ended when dropped.
struct Forward {
    child: Child,
    /// Local port → remote port, as kubectl printed them.
    ports: Vec<(u16, u16)>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kubectl port-forward TARGET SPEC...` and waits until it says
/// where it listens (once per port, "Forwarding from 127.0.0.1:L -> R").
fn forward(lab: &Lab, target: &str, specs: &[&str]) -> Forward {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
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
fn get(port: u16, path: &str) -> Vec<u8> {
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

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn port_forward(lab: &Lab) {
    lab.ok(&["run", POD, "--image=busybox", "--restart=Never", "--labels=app=forward-target", "--", "sh", "-c", SERVE]);
    let want = until(&format!("{POD} to run and hash its file"), || async {
        let (code, out) = lab.k(&["exec", POD, "--", "cat", "/www/big.sha"]);
        match out.split_whitespace().next() {
            Some(hash) if code == 0 && hash.len() == 64 => Ok(hash.to_string()),
            _ => Err(format!("exec cat /www/big.sha: {code} {out}")),
        }
    })
    .await;

    // Two ports of the pod at once, large transfers on both concurrently.
    let pod = forward(lab, &format!("pod/{POD}"), &[":80", ":8081"]);
    assert_eq!(pod.ports.iter().map(|(_, remote)| *remote).collect::<Vec<_>>(), [80, 8081]);
    let bodies: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = pod.ports.iter().map(|(local, _)| scope.spawn(move || get(*local, "/big"))).collect();
        handles.into_iter().map(|h| h.join().expect("the transfer thread")).collect()
    });
    for body in &bodies {
        assert_eq!((body.len(), sha256(body)), (8 << 20, want.clone()), "the file through port-forward");
    }
    drop(pod);

    // A Service: kubectl picks a pod and the Service port's target port.
    lab.ok(&["expose", "pod", POD, "--port=8080", "--target-port=80"]);
    let service = forward(lab, &format!("svc/{POD}"), &[":8080"]);
    assert_eq!(service.ports[0].1, 80);
    let body = get(service.ports[0].0, "/big");
    assert_eq!(sha256(&body), want, "the file through the Service's port-forward");
    drop(service);

    // The Python client's port-forward (WebSocket channels).
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/streams.py");
    let python =
        Command::new("python3").args([script.to_str().unwrap(), "port-forward", POD]).env("KUBECONFIG", &lab.kubeconfig).output().expect("python3 runs");
    let printed = String::from_utf8_lossy(&python.stdout);
    assert!(python.status.success() && printed.trim() == format!("port-forward: {want}"), "{printed}\n{}", String::from_utf8_lossy(&python.stderr));

    lab.ok(&["delete", "service", POD]);
    lab.ok(&["delete", "pod", POD, "--wait=false"]);
}
