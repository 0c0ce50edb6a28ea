//! `kubectl exec`: a process started inside a running container. The
//! kubelet runs `kubelet runtime-exec DIR [--tty] -- ARGS` with the
//! session's stdio (with `--tty`: stdin is a unix socket, over which the
//! command's terminal, made inside the container, is sent back; see
//! [`crate::terminal`]); that process joins the container init's namespaces
//! and cgroup, forks the command (a PID namespace is entered by children
//! only) and exits with its status, so the kubelet reads the exit code
//! off its own child.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};

use crate::cgroups::Cgroups;
use crate::container::{ContainerState, Runtime};
use crate::shim::Placement;
use crate::spec::ContainerConfig;
use crate::state::{self, Started};
use crate::{entry, rootfs, sys, terminal, Error, Result};

/// Exit code of the exec process when the command could not be started
/// (as a shell's 126/127): the reason is on its stderr.
pub const CANNOT_RUN: i32 = 126;

impl Runtime {
    /// The command that runs `args` in container `id`; the caller sets its
    /// stdio (pipes; with `tty`, stdin a unix socket to receive the
    /// terminal from, [`crate::terminal::receive`]) and spawns it.
    pub fn exec_command(&self, id: &str, args: &[String], tty: bool) -> Result<Command> {
        let status = self.container(id)?.ok_or_else(|| Error::Invalid(format!("container {id} not found")))?;
        if !matches!(status.state, ContainerState::Running(_)) {
            return Err(Error::Invalid(format!("container {id} is not running")));
        }
        if args.is_empty() {
            return Err(Error::Invalid("no command to run".into()));
        }
        let mut command = Command::new(self.self_exe());
        command.arg(entry::EXEC).arg(self.container_dir(id));
        if tty {
            command.arg("--tty");
        }
        command.arg("--").args(args);
        Ok(command)
    }
}

pub(crate) fn main(dir: &Path, rest: &[String]) -> i32 {
    let tty = rest.first().is_some_and(|a| a == "--tty");
    let args: Vec<String> = rest.iter().skip_while(|a| *a != "--").skip(1).cloned().collect();
    match run(dir, &args, tty) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e}");
            CANNOT_RUN
        }
    }
}

fn run(dir: &Path, args: &[String], tty: bool) -> Result<i32> {
    let config: ContainerConfig = state::read_json(&dir.join("config.json"))?.ok_or_else(|| Error::Invalid("the container is gone".into()))?;
    let placement: Option<Placement> = state::read_json(&dir.join("placement.json"))?;
    let started: Started =
        state::read_json(&dir.join("state.json"))?.filter(state::alive).ok_or_else(|| Error::Invalid("the container is not running".into()))?;
    if let Some(Placement { cgroup_root: Some(root), cgroup, .. }) = &placement {
        Cgroups::V1 { root: root.clone() }.enter(cgroup)?;
    }
    // The user namespace is not used; mount last, since it changes what
    // /proc paths mean to this process.
    for (name, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        sys::join_namespace(Path::new(&format!("/proc/{}/ns/{name}", started.pid)), flag)?;
    }
    match sys::fork()? {
        sys::ForkResult::Child => {
            let error = exec_in(&config, args, tty);
            eprintln!("{error}");
            // SAFETY: leaving the forked child without the parent's exit handlers.
            unsafe { libc::_exit(CANNOT_RUN) }
        }
        sys::ForkResult::Parent { child } => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
                Ok(_) | Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::Sys { what: "waiting for the command".into(), source: e }),
            }
        },
    }
}

fn exec_in(config: &ContainerConfig, args: &[String], tty: bool) -> Error {
    let step = || -> Result<()> {
        if tty {
            // The terminal is made here, in the container's /dev/pts, and
            // its master side goes back over stdin, the kubelet's socket.
            let (master, slave) = terminal::open(config.uid, config.gid)?;
            terminal::send(0, master.as_raw_fd())?;
            drop(master);
            for target in 0..3 {
                sys::dup_onto(slave.as_raw_fd(), target)?;
            }
            drop(slave);
            sys::take_terminal()?;
        }
        let program = rootfs::look_up(&args[0], &config.env)?;
        let cwd = Path::new(&config.working_dir);
        sys::chdir(cwd).or_else(|_| sys::chdir(Path::new("/")))?;
        sys::set_identity(config.uid, config.gid, &config.supplementary_gids)?;
        let mut env = config.env.clone();
        if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        Err(sys::exec(&program, args, &env))
    };
    match step() {
        Err(e) => e,
        Ok(()) => Error::Invalid("exec returned".into()),
    }
}
