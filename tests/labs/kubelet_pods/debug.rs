//! `kubectl debug` on real nodes: an ephemeral container added through
//! pods/ephemeralcontainers starts in the pod, in its target container's
//! PID namespace (`--target`), with a terminal kubectl attaches to; it is
//! never restarted and its end is in `ephemeralContainerStatuses`. What an
//! ephemeral container may not have is refused with upstream's message.

use kubelab_scenarios::cluster::Cluster as Lab;
use kubelab_scenarios::wait::until;

use super::attach::Terminal;

pub async fn debug(lab: &Lab) {
    lab.ok(&["run", "debug-target", "--restart=Never", "--image=busybox", "--", "sleep", "3601"]);
    lab.ok(&["wait", "--for=condition=Ready", "pod/debug-target", "--timeout=60s"]);

    let args = ["debug", "-it", "debug-target", "--image=busybox", "--target=debug-target", "--container=debugger", "--profile=general"];
    let mut t = Terminal::kubectl(lab, &args, 24, 80);
    t.wait_for("kubectl's hint", |out| out.contains("If you don't see a command prompt, try pressing enter."));
    t.send("ps -o args; tty\r");
    t.wait_for("the target's process and a terminal", |out| out.contains("sleep 3601") && out.contains("/dev/pts/0"));
    t.send("exit 5\r");
    let (_, out) = t.wait_exit();
    assert!(!out.contains("error"), "{out}");

    until("the debugger's end in ephemeralContainerStatuses", || async {
        let pod = lab.json(&["get", "pod", "debug-target"]);
        let status = &pod["status"]["ephemeralContainerStatuses"][0];
        match (status["name"].as_str(), status["state"]["terminated"]["exitCode"].as_i64(), status["restartCount"].as_i64()) {
            (Some("debugger"), Some(5), Some(0)) => Ok(()),
            _ => Err(format!("{status}")),
        }
    })
    .await;
    let phase = lab.ok(&["get", "pod", "debug-target", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Running", "an ephemeral container's end is not the pod's");

    let with_port = r#"{"spec":{"ephemeralContainers":[{"name":"with-port","image":"busybox","ports":[{"containerPort":80}]}]}}"#;
    let (code, out) = lab.k(&["patch", "pod", "debug-target", "--subresource=ephemeralcontainers", "--type=strategic", "-p", with_port]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container"), "{out}");
    let removed = r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#;
    let (code, out) = lab.k(&["patch", "pod", "debug-target", "--subresource=ephemeralcontainers", "--type=json", "-p", removed]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("existing ephemeral containers \"debugger\" may not be removed"), "{out}");

    lab.ok(&["delete", "pod", "debug-target", "--wait=false"]);
}
