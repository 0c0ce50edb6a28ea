//! Container log rotation on a real node, at the kubelet's defaults (10 Mi,
//! 5 files): a pod writes about 58 MiB of numbered lines while `kubectl
//! logs -f` follows it; every line arrives once and in order across the
//! five rotations, and the node keeps five files of the container's log,
//! the older rotated ones gzipped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kubelab_scenarios::cluster::{kubectl_stdin, s, Cluster as Lab};
use kubelab_scenarios::wait::{until, until_blocking};

const LINES: usize = 64_000;

/// Waits for /tmp/go, so that the follower is there before the first
/// line; then ~0.9 KiB lines, paced at 1000 a 50 ms at most.
const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command:
    - sh
    - -c
    - |
      until [ -e /tmp/go ]; do sleep 0.2; done
      pad=$(printf '%0900d' 0)
      i=0
      while [ $i -lt 64000 ]; do
        echo "$i $pad"
        i=$((i+1))
        if [ $((i % 1000)) -eq 0 ]; then usleep 50000; fi
      done
      echo done
      sleep 3600
"#;

/// `kubectl logs -f`, ended with the test.
struct Follow(Child);

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn log_rotation(lab: &Lab) {
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], POD);
    assert_eq!(code, 0, "{out}");
    lab.ok(&["wait", "--for=condition=Ready", "pod/chatty", "--timeout=60s"]);
    let pod = lab.json(&["get", "pod", "chatty"]);
    let (node, uid) = (s(&pod["spec"]["nodeName"]), s(&pod["metadata"]["uid"]));

    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .args(["logs", "-f", "chatty"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("kubectl runs");
    let stdout = child.stdout.take().expect("piped");
    let _follow = Follow(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Only the number: the lines are long.
            let _ = tx.send(line.split(' ').next().unwrap_or_default().to_string());
        }
    });
    lab.ok(&["exec", "chatty", "--", "touch", "/tmp/go"]);

    let mut seen: Vec<String> = Vec::new();
    until_blocking("kubectl logs -f to print every line and `done`", Duration::from_secs(180), || {
        while let Ok(line) = rx.try_recv() {
            seen.push(line);
        }
        match seen.last() {
            Some(last) if last == "done" => Ok(()),
            last => Err(format!("{} lines so far, the last {last:?}", seen.len())),
        }
    });
    let expected: Vec<String> = (0..LINES).map(|i| i.to_string()).chain(["done".to_string()]).collect();
    if seen != expected {
        let first_wrong = seen.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(seen.len().min(expected.len()));
        panic!("kubectl logs -f printed {} lines, not {}; the first out of place at {first_wrong}: {:?}", seen.len(), expected.len(), seen.get(first_wrong));
    }

    // Five files: the current log, the newest rotated one as it was,
    // three gzipped (once the shim's compression is done).
    let dir = format!("/var/log/pods/default_chatty_{uid}/c");
    until(&format!("five log files in {dir} on {node}, the older rotated ones gzipped"), || async {
        let (code, out) = lab.node(&node, &["ls", "-1", &dir]).await;
        let names: Vec<&str> = out.lines().collect();
        let gzipped = names.iter().filter(|n| n.ends_with(".gz")).count();
        let plain = names.iter().filter(|n| n.starts_with("0.log.") && !n.ends_with(".gz")).count();
        if code == 0 && names.contains(&"0.log") && names.len() == 5 && gzipped == 3 && plain == 1 {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    let (_, size) = lab.node(&node, &["stat", "-c", "%s", &format!("{dir}/0.log")]).await;
    assert!(size.trim().parse::<u64>().is_ok_and(|n| n <= 10 << 20), "the current log is within 10 Mi: {size}");
    // A new `kubectl logs` reads the current file.
    assert_eq!(lab.ok(&["logs", "chatty", "--tail=1"]).trim(), "done");

    lab.ok(&["delete", "pod", "chatty", "--wait=true"]);
}
