//! `kubectl port-forward` (SPDY tunnelled in a WebSocket, as kubectl 1.33
//! speaks it) to a pod on two ports at once and to a Service, each moving
//! an 8 MiB file checked by its hash; and the Python client's
//! port-forward (WebSocket channels). The pod serves with busybox httpd.

use std::process::Command;

use sha2::{Digest, Sha256};

use kubelab_scenarios::cluster::Cluster as Lab;
use kubelab_scenarios::port_forward::{forward, get};
use kubelab_scenarios::wait::until;

const POD: &str = "forward-target";
/// Two servers (httpd returns once it listens) of one directory: the
/// file, and its hash as sha256sum writes it, written last, so that its
/// presence says both servers listen.
const SERVE: &str = "mkdir -p /www && head -c 8388608 /dev/urandom > /www/big && httpd -p 80 -h /www && httpd -p 8081 -h /www \
                     && sha256sum /www/big > /www/big.sha.part && mv /www/big.sha.part /www/big.sha && exec sleep 86400";

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
    let pod = forward(&lab.kubeconfig, &format!("pod/{POD}"), &[":80", ":8081"]);
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
    let service = forward(&lab.kubeconfig, &format!("svc/{POD}"), &[":8080"]);
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
