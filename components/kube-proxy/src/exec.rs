//! Running the node's packet tools (iptables, iptables-restore, conntrack)
//! behind one trait, so that the backends can be tested with a recorder.

use std::process::Stdio;

use anyhow::{anyhow, Context, Result};
use tokio::io::AsyncWriteExt;

pub trait Commands: Send + Sync {
    /// Runs `program args`, feeding `stdin`; its stdout when it exits 0,
    /// else an error carrying its stderr.
    fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> impl std::future::Future<Output = Result<String>> + Send;
}

/// The real tools, found on PATH.
#[derive(Debug, Clone, Default)]
pub struct Host;

impl Commands for Host {
    async fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<String> {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {program}"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input).await.with_context(|| format!("writing to {program}"))?;
            drop(pipe);
        }
        let output = child.wait_with_output().await?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(anyhow!("{program} {} failed ({}): {}", args.join(" "), output.status, String::from_utf8_lossy(&output.stderr).trim()))
        }
    }
}
