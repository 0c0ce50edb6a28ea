//! The shim: one per container, detached from the kubelet (as containerd's
//! shims are), so a container outlives a kubelet restart. It joins the
//! sandbox's namespaces, makes the container's PID namespace, forks the
//! container's init, writes its output to the CRI-format log and, when it
//! ends, records how (`exit.json`).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::cgroups::Cgroups;
use crate::logs::{LineWriter, Stream};
use crate::rootfs::{self, Layer};
use crate::spec::ContainerConfig;
use crate::state::{self, Exited, Started};
use crate::{entry, io, sys, Error, Result};

/// What the shim is told beside the container's config: where the
/// sandbox's holder and the container's cgroup are.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Placement {
    pub holder_pid: i32,
    pub layer_dir: std::path::PathBuf,
    /// cgroup root (v1) and the container's group; None: no limits.
    pub cgroup_root: Option<std::path::PathBuf>,
    pub cgroup: String,
}

pub(crate) fn main(dir: &Path) -> i32 {
    let ready = match entry::detach() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    sys::set_name("kubelab-shim");
    let config: ContainerConfig = match state::read_json(&dir.join("config.json")).and_then(|c| c.ok_or_else(|| Error::Invalid("no config.json".into()))) {
        Ok(c) => c,
        Err(e) => {
            ready.fail(&e);
            return 1;
        }
    };
    let placement: Placement = match state::read_json(&dir.join("placement.json")).and_then(|c| c.ok_or_else(|| Error::Invalid("no placement.json".into()))) {
        Ok(c) => c,
        Err(e) => {
            ready.fail(&e);
            return 1;
        }
    };
    let cgroups = match &placement.cgroup_root {
        Some(root) => Cgroups::V1 { root: root.clone() },
        None => Cgroups::Unavailable { reason: String::new() },
    };
    let started = match start(dir, &config, &placement, &cgroups) {
        Ok(s) => s,
        Err(e) => {
            ready.fail(&e);
            return 1;
        }
    };
    let pid = std::process::id() as i32;
    let _ = state::write_json(&dir.join("shim.json"), &Started { pid, start_ticks: state::start_ticks(pid).unwrap_or(0), started_at: state::now_rfc3339() });
    ready.ok();
    entry::quiet_stdio();
    let exited = supervise(started, &config, &placement, &cgroups);
    let _ = state::write_json(&dir.join("exit.json"), &exited);
    0
}

/// The init's output and its word on a failed exec, kept by the shim.
struct Running {
    pid: nix::unistd::Pid,
    stdout: OwnedFd,
    stderr: OwnedFd,
    start_error: Option<String>,
}

fn start(dir: &Path, config: &ContainerConfig, placement: &Placement, cgroups: &Cgroups) -> Result<Running> {
    if config.share_pid {
        return Err(Error::Invalid("shareProcessNamespace is not supported by kubelab's runtime yet".into()));
    }
    if let Some(parent) = config.log_path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    let (out_r, out_w) = sys::pipe()?;
    let (err_r, err_w) = sys::pipe()?;
    let (word_r, word_w) = sys::pipe()?;
    for ns in [("net", CloneFlags::CLONE_NEWNET), ("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS)] {
        sys::join_namespace(Path::new(&format!("/proc/{}/ns/{}", placement.holder_pid, ns.0)), ns.1)?;
    }
    // The next child is PID 1 of a namespace of its own.
    sys::unshare(CloneFlags::CLONE_NEWPID)?;
    let layer = Layer::at(&placement.layer_dir);
    layer.create()?;
    match sys::fork()? {
        sys::ForkResult::Child => {
            drop((out_r, err_r, word_r));
            let error = init(config, placement, cgroups, &layer, out_w, err_w, &word_w);
            let mut word = std::fs::File::from(word_w);
            let _ = word.write_all(error.to_string().as_bytes());
            // SAFETY: leaving the forked child without running the
            // parent's exit handlers.
            unsafe { libc::_exit(127) }
        }
        sys::ForkResult::Parent { child } => {
            drop((out_w, err_w, word_w));
            let pid = child.as_raw();
            let start_ticks = state::start_ticks(pid).unwrap_or(0);
            state::write_json(&dir.join("state.json"), &Started { pid, start_ticks, started_at: state::now_rfc3339() })?;
            // The word pipe closes on a successful exec (close-on-exec);
            // anything read from it is why the exec did not happen.
            let mut word = String::new();
            let _ = std::fs::File::from(word_r).read_to_string(&mut word);
            Ok(Running { pid: child, stdout: out_r, stderr: err_r, start_error: (!word.is_empty()).then_some(word) })
        }
    }
}

/// The container's init, in its new PID namespace: returns only on failure.
fn init(config: &ContainerConfig, placement: &Placement, cgroups: &Cgroups, layer: &Layer, out: OwnedFd, err: OwnedFd, word: &OwnedFd) -> Error {
    let step = || -> Result<()> {
        sys::die_with_parent()?;
        cgroups.enter(&placement.cgroup)?;
        let null = std::fs::File::open("/dev/null").map_err(io("opening /dev/null"))?;
        sys::dup_onto(null.as_raw_fd(), 0)?;
        sys::dup_onto(out.as_raw_fd(), 1)?;
        sys::dup_onto(err.as_raw_fd(), 2)?;
        sys::dup_onto(word.as_raw_fd(), 3)?;
        sys::cloexec(3)?;
        sys::close_from(4);
        sys::unshare(CloneFlags::CLONE_NEWNS)?;
        rootfs::enter(config, layer)?;
        let program = rootfs::look_up(config.args.first().map(String::as_str).unwrap_or(""), &config.env)?;
        let cwd = Path::new(&config.working_dir);
        std::fs::create_dir_all(cwd).map_err(io(format!("creating the working directory {}", cwd.display())))?;
        sys::chdir(cwd)?;
        sys::set_identity(config.uid, config.gid, &config.supplementary_gids)?;
        Err(sys::exec(&program, &config.args, &config.env))
    };
    match step() {
        Err(e) => e,
        Ok(()) => Error::Invalid("exec returned".into()),
    }
}

/// Copies the init's output into the log until it ends; then how it ended.
fn supervise(running: Running, config: &ContainerConfig, placement: &Placement, cgroups: &Cgroups) -> Exited {
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&config.log_path).ok();
    let mut streams = vec![(running.stdout, LineWriter::new(Stream::Stdout)), (running.stderr, LineWriter::new(Stream::Stderr))];
    let mut status = None;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut hung_up = vec![];
        {
            let mut fds: Vec<PollFd> = streams.iter().map(|(fd, _)| PollFd::new(fd.as_fd(), PollFlags::POLLIN)).collect();
            let _ = nix::poll::poll(&mut fds, PollTimeout::from(200u16));
            let events: Vec<Option<PollFlags>> = fds.iter().map(|f| f.revents()).collect();
            drop(fds);
            for (i, revents) in events.into_iter().enumerate() {
                let Some(revents) = revents else { continue };
                if revents.intersects(PollFlags::POLLIN) {
                    let (fd, writer) = &mut streams[i];
                    match nix::unistd::read(fd.as_fd(), &mut buf) {
                        Ok(0) => hung_up.push(i),
                        Ok(n) => {
                            if let Some(log) = log.as_mut() {
                                let _ = writer.push(&buf[..n], log, &state::now_rfc3339());
                            }
                        }
                        Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
                        Err(_) => hung_up.push(i),
                    }
                } else if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                    hung_up.push(i);
                }
            }
        }
        for i in hung_up.into_iter().rev() {
            let (_, mut writer) = streams.remove(i);
            if let Some(log) = log.as_mut() {
                let _ = writer.finish(log, &state::now_rfc3339());
            }
        }
        if status.is_none() {
            status = match waitpid(running.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => Some((code, None)),
                Ok(WaitStatus::Signaled(_, signal, _)) => Some((128 + signal as i32, Some(signal as i32))),
                Ok(_) => None,
                Err(_) => Some((255, None)),
            };
        }
        // Once init is gone the kernel has killed the rest of its PID
        // namespace, so the pipes close soon; wait for them to drain.
        if status.is_some() && streams.is_empty() {
            break;
        }
    }
    let (exit_code, signal) = status.unwrap_or((255, None));
    let oom_killed = cgroups.oom_killed(&placement.cgroup);
    Exited { exit_code, signal, finished_at: state::now_rfc3339(), oom_killed, start_error: running.start_error }
}
