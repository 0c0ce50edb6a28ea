//! The runtime's child sides: the kubelet binary re-executed as
//! `kubelet runtime-sandbox DIR`, `kubelet runtime-shim DIR` or
//! `kubelet runtime-exec DIR [--tty] -- ARGS`. [`run_child_if_asked`] must be the first thing the
//! binary's `main` does, before any thread (tokio's) is started.
//!
//! Sandboxes and shims are detached (they outlive the kubelet): the
//! process the kubelet starts forks the real one and waits only until it
//! says it is ready (or why it failed), then exits; the kubelet waits for
//! that exit. The real one is then a child of the node's init, which reaps
//! it.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{sys, Error, Result};

pub const SANDBOX: &str = "runtime-sandbox";
pub const SHIM: &str = "runtime-shim";
pub const EXEC: &str = "runtime-exec";

/// Runs the child side asked for on the command line and exits; returns
/// when the process is not one of the runtime's children.
pub fn run_child_if_asked() {
    let args: Vec<String> = std::env::args().collect();
    let Some(which) = args.get(1) else { return };
    let dir = || PathBuf::from(args.get(2).cloned().unwrap_or_default());
    let code = match which.as_str() {
        SANDBOX => crate::sandbox::holder_main(&dir()),
        SHIM => crate::shim::main(&dir()),
        EXEC => crate::exec::main(&dir(), args.get(3..).unwrap_or_default()),
        _ => return,
    };
    std::process::exit(code)
}

/// The kubelet's side: starts `self_exe SUBCOMMAND DIR` and waits until the
/// detached process is ready; its failure message becomes the error.
pub fn start_detached(self_exe: &Path, subcommand: &str, dir: &Path, what: &str) -> Result<()> {
    let output = Command::new(self_exe)
        .arg(subcommand)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(crate::io(format!("starting {}", self_exe.display())))?;
    if output.status.success() {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Err(Error::Child { what: what.to_string(), message: if message.is_empty() { format!("{} exited with {}", subcommand, output.status) } else { message } })
}

/// The detached process's way to tell its starter it is ready.
pub struct Ready(Option<OwnedFd>);

impl Ready {
    pub fn ok(mut self) {
        self.send(b"ok");
    }

    pub fn fail(mut self, error: &Error) {
        self.send(format!("{error}").as_bytes());
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Some(fd) = self.0.take() {
            let mut file = std::fs::File::from(fd);
            let _ = file.write_all(bytes);
        }
    }
}

/// Forks; the parent waits for the child's word and exits with it (0 on
/// "ok", else 1 with the message on stderr); the child, in a session of
/// its own, carries on with the `Ready` to send that word.
pub fn detach() -> Result<Ready> {
    let (read, write) = sys::pipe()?;
    match sys::fork()? {
        sys::ForkResult::Parent { .. } => {
            drop(write);
            let mut word = String::new();
            let _ = std::fs::File::from(read).read_to_string(&mut word);
            if word == "ok" {
                std::process::exit(0);
            }
            let message = if word.is_empty() { "the runtime's child ended before it was ready".to_string() } else { word };
            eprintln!("{message}");
            std::process::exit(1);
        }
        sys::ForkResult::Child => {
            drop(read);
            sys::setsid()?;
            Ok(Ready(Some(write)))
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null (a detached process has
/// no one to talk to; what it has to say goes into files).
pub fn quiet_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for target in 0..3 {
            let _ = sys::dup_onto(null.as_raw_fd(), target);
        }
    }
}
