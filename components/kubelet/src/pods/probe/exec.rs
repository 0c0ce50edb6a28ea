//! exec probes: the command runs in the container (the runtime's exec,
//! as `kubectl exec` runs it); exit code 0 is success, anything else a
//! failure with the command's output (stdout then stderr, at most 10 KiB)
//! as its message. At `timeoutSeconds` the command is killed (its whole
//! process group, so what it forked in the container goes too) and the
//! probe fails, as upstream's kubelet does since exec probe timeouts.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::http::MAX_OUTPUT;
use super::tracker::Probed;

/// Runs `command` (which runs `argv` in the container) for at most `timeout`.
pub async fn probe(mut command: Command, argv: &[String], timeout: Duration) -> Probed {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return Probed::Error(format!("running the probe's command: {e}")),
    };
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let mut text = out.stdout;
            text.extend(out.stderr);
            text.truncate(MAX_OUTPUT);
            let text = String::from_utf8_lossy(&text).into_owned();
            if out.status.success() {
                Probed::Success(text)
            } else {
                Probed::Failure(text)
            }
        }
        Ok(Err(e)) => Probed::Error(format!("waiting for the probe's command: {e}")),
        Err(_) => {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            Probed::Failure(format!("command {:?} timed out", argv.join(" ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> (Command, Vec<String>) {
        let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]);
        (command, argv)
    }

    #[tokio::test]
    async fn the_exit_code_decides_and_the_output_is_the_message() {
        let (command, argv) = sh("echo fine");
        assert_eq!(probe(command, &argv, Duration::from_secs(5)).await, Probed::Success("fine\n".into()));
        let (command, argv) = sh("echo out; echo err >&2; exit 3");
        assert_eq!(probe(command, &argv, Duration::from_secs(5)).await, Probed::Failure("out\nerr\n".into()));
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed_and_fails() {
        let marker = tempfile::tempdir().unwrap();
        let file = marker.path().join("survived");
        let (command, argv) = sh(&format!("sleep 1 && touch {}", file.display()));
        let started = std::time::Instant::now();
        assert_eq!(probe(command, &argv, Duration::from_millis(200)).await, Probed::Failure(format!("command {:?} timed out", argv.join(" "))));
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(!file.exists(), "the command's process group was killed");
    }
}
