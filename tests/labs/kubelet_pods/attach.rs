//! Attach on real nodes, as tutorials use it:
//! - `kubectl run -i --rm` with piped input: the container reads what
//!   kubectl sends, sees its stdin end when kubectl's does (stdinOnce),
//!   and kubectl removes the pod after it ends;
//! - `kubectl run -it --rm ... -- sh` in a terminal: the shell has a
//!   terminal of kubectl's size, answers commands, and its exit code is
//!   kubectl's;
//! - `kubectl attach` to a running pod shows its output from then on;
//! - the Python client's attach writes stdin (text frames) to a pod whose
//!   stdin is not once: twice, so the first attach's end left it open.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubelab_scenarios::cluster::{kubectl_stdin, Cluster as Lab};
use kubelab_scenarios::wait::until_blocking;

pub async fn attach(lab: &Lab) {
    piped_stdin(lab);
    terminal(lab);
    attach_to_running(lab);
    python_client(lab);
}

fn piped_stdin(lab: &Lab) {
    let script = "while read line; do echo got:$line; done; echo stdin-ended";
    let args = ["run", "attach-pipe", "-i", "--rm", "--restart=Never", "--image=busybox", "--", "sh", "-c", script];
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &args, "one\ntwo\n");
    assert_eq!(code, 0, "{out}");
    for line in ["got:one", "got:two", "stdin-ended", "pod \"attach-pipe\" deleted"] {
        assert!(out.contains(line), "`kubectl run -i` printed {line:?}: {out}");
    }
}

fn terminal(lab: &Lab) {
    let mut t = Terminal::kubectl(lab, &["run", "attach-tty", "-it", "--rm", "--restart=Never", "--image=busybox", "--", "sh"], 30, 100);
    // The shell's first prompt came before kubectl attached; kubectl says so.
    t.wait_for("kubectl's hint", |out| out.contains("If you don't see a command prompt, try pressing enter."));
    t.send("echo answer-$((6 * 7)); tty; stty size\r");
    t.wait_for("the shell's answers in its terminal", |out| out.contains("answer-42") && out.contains("/dev/pts/0") && out.contains("30 100"));
    t.send("exit 3\r");
    let (code, out) = t.wait_exit();
    assert_eq!(code, 3, "kubectl run's exit code is the container's: {out}");
    assert!(out.contains("pod \"attach-tty\" deleted"), "{out}");
}

fn attach_to_running(lab: &Lab) {
    let script = "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done";
    lab.ok(&["run", "ticker", "--restart=Never", "--image=busybox", "--", "sh", "-c", script]);
    lab.ok(&["wait", "--for=condition=Ready", "pod/ticker", "--timeout=60s"]);
    until_blocking("the ticker's log to reach tick-5", Duration::from_secs(60), || {
        let (_, log) = lab.k(&["logs", "ticker"]);
        if log.contains("tick-5\n") {
            Ok(())
        } else {
            Err(log)
        }
    });
    let watcher = Terminal::kubectl(lab, &["attach", "ticker"], 24, 80);
    watcher.wait_for("ticks through the attach", |out| out.matches("tick-").count() >= 3);
    let out = watcher.stop();
    // Output from the attach on: ticks after the fifth, never the log's
    // first lines again.
    let first: u32 = out.split("tick-").nth(1).and_then(|s| s.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(first > 5, "the attach began with tick-{first}, which came before it: {out}");
    lab.ok(&["delete", "pod", "ticker", "--grace-period=1"]);
}

const ECHO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: echo-stdin}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    stdin: true
    command: [sh, -c, "while read line; do echo got:$line; done"]
"#;

fn python_client(lab: &Lab) {
    let (code, out) = kubectl_stdin(&lab.kubeconfig, &["apply", "-f", "-"], ECHO);
    assert_eq!(code, 0, "{out}");
    lab.ok(&["wait", "--for=condition=Ready", "pod/echo-stdin", "--timeout=60s"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/streams.py");
    for attempt in 1..=2 {
        let python =
            Command::new("python3").args([script.to_str().unwrap(), "attach", "echo-stdin"]).env("KUBECONFIG", &lab.kubeconfig).output().expect("python3 runs");
        let printed = String::from_utf8_lossy(&python.stdout);
        assert!(
            python.status.success() && printed.trim() == "attach stdin: got:through attach",
            "attach {attempt}: {printed}\n{}",
            String::from_utf8_lossy(&python.stderr)
        );
    }
    lab.ok(&["delete", "pod", "echo-stdin", "--wait=false"]);
}

/// kubectl in a terminal of its own (a pseudo-terminal of `rows` x
/// `cols`), as a user's shell runs it: what it prints is collected, what
/// is sent is typed.
pub(super) struct Terminal {
    master: std::fs::File,
    child: Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    pub(super) fn kubectl(lab: &Lab, args: &[&str], rows: u16, cols: u16) -> Terminal {
        let size = nix::pty::Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        let pty = nix::pty::openpty(Some(&size), None).expect("a pseudo-terminal");
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("a copy of the terminal"));
        let mut command = Command::new("kubectl");
        command.args(args).env("KUBECONFIG", &lab.kubeconfig).stdin(slave(&pty.slave)).stdout(slave(&pty.slave)).stderr(slave(&pty.slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("kubectl is installed (on PATH)");
        drop(pty.slave);
        let master = std::fs::File::from(pty.master);
        let output = Arc::new(Mutex::new(vec![]));
        let mut reader = master.try_clone().expect("a copy of the terminal");
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once kubectl and its terminal are gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal { master, child, output }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    pub(super) fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("typing into kubectl's terminal");
    }

    pub(super) fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) {
        until_blocking(what, Duration::from_secs(60), || {
            let out = self.text();
            if done(&out) {
                Ok(())
            } else {
                Err(format!("kubectl's terminal so far: {out:?}"))
            }
        });
    }

    /// kubectl's exit code and everything it printed.
    pub(super) fn wait_exit(mut self) -> (i32, String) {
        let status = until_blocking("kubectl to exit", Duration::from_secs(60), || match self.child.try_wait() {
            Ok(Some(status)) => Ok(status),
            _ => Err(format!("kubectl's terminal so far: {:?}", self.text())),
        });
        // What it printed last is read from the terminal after its exit.
        until_blocking("kubectl's last words", Duration::from_secs(10), || {
            if Arc::strong_count(&self.output) == 1 {
                Ok(())
            } else {
                Err(format!("the terminal still open: {:?}", self.text()))
            }
        });
        (status.code().unwrap_or(-1), self.text())
    }

    /// Ends kubectl (by its PID: it is ours) and returns what it printed.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.text()
    }
}
