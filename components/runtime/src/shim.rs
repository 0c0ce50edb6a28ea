//! The shim: one per container, detached from the kubelet (as containerd's
//! shims are), so a container outlives a kubelet restart. It joins the
//! sandbox's namespaces, makes the container's PID namespace, forks the
//! container's init, writes its output to the CRI-format log (rotated at
//! the kubelet's size, `log_file`) and, when it ends, records how
//! (`exit.json`).

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::attach_server::{Attachments, Slot, Stdin};
use crate::cgroups::Cgroups;
use crate::log_file::LogFile;
use crate::logs::{LineWriter, Stream};
use crate::rootfs::{self, Layer};
use crate::spec::ContainerConfig;
use crate::state::{self, Exited, Started};
use crate::{entry, io, sys, terminal, Error, Result};

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
    let mut started = match start(dir, &config, &placement, &cgroups) {
        Ok(s) => s,
        Err(e) => {
            ready.fail(&e);
            return 1;
        }
    };
    // Listening before the kubelet hears the container runs, so an attach
    // right after (`kubectl run -it`) finds the socket.
    let stdin = std::mem::replace(&mut started.stdin, Stdin::None);
    let attachments = Attachments::listen(dir, stdin, config.stdin_once, started.pid.as_raw());
    let pid = std::process::id() as i32;
    let _ = state::write_json(&dir.join("shim.json"), &Started { pid, start_ticks: state::start_ticks(pid).unwrap_or(0), started_at: state::now_rfc3339() });
    ready.ok();
    entry::quiet_stdio();
    let exited = supervise(dir, started, attachments, &config, &placement, &cgroups);
    let _ = state::write_json(&dir.join("exit.json"), &exited);
    0
}

/// The init's output, its stdin, and its word on a failed exec, kept by the shim.
struct Running {
    pid: nix::unistd::Pid,
    /// stdout and stderr; with a terminal, only its master side (stdout).
    output: Vec<(OwnedFd, Stream)>,
    stdin: Stdin,
    start_error: Option<String>,
}

/// The init's ends of its stdio.
enum InitStdio {
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// A terminal the init makes in its root ([`terminal`]); its master
    /// side comes back over this socket.
    Terminal {
        console: OwnedFd,
    },
}

fn start(dir: &Path, config: &ContainerConfig, placement: &Placement, cgroups: &Cgroups) -> Result<Running> {
    if let Some(parent) = config.log_path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    let (init_stdio, mut output, mut stdin, console) = if config.tty {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(io("making the terminal's socket"))?;
        (InitStdio::Terminal { console: theirs.into() }, vec![], Stdin::None, Some(OwnedFd::from(ours)))
    } else {
        let (out_r, out_w) = sys::pipe()?;
        let (err_r, err_w) = sys::pipe()?;
        let (init_in, stdin) = if config.stdin {
            let (in_r, in_w) = sys::pipe()?;
            (Some(in_r), Stdin::Pipe(in_w))
        } else {
            (None, Stdin::None)
        };
        (InitStdio::Pipes { stdin: init_in, stdout: out_w, stderr: err_w }, vec![(out_r, Stream::Stdout), (err_r, Stream::Stderr)], stdin, None)
    };
    let (word_r, word_w) = sys::pipe()?;
    for ns in [("net", CloneFlags::CLONE_NEWNET), ("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS)] {
        sys::join_namespace(Path::new(&format!("/proc/{}/ns/{}", placement.holder_pid, ns.0)), ns.1)?;
    }
    if let Some(target) = &config.pid_namespace_of {
        let target_dir = dir.parent().map(|d| d.join(target)).unwrap_or_default();
        let started: Started = state::read_json(&target_dir.join("state.json"))?
            .filter(state::alive)
            .ok_or_else(|| Error::Invalid(format!("the target container {target} is not running")))?;
        sys::join_namespace(Path::new(&format!("/proc/{}/ns/pid", started.pid)), CloneFlags::CLONE_NEWPID)?;
    } else if config.host_pid {
        // The node's PID namespace, where the shim already is.
    } else if config.share_pid {
        // The pod's, whose PID 1 is the sandbox's holder.
        sys::join_namespace(Path::new(&format!("/proc/{}/ns/pid", placement.holder_pid)), CloneFlags::CLONE_NEWPID)?;
    } else {
        // The next child is PID 1 of a namespace of its own.
        sys::unshare(CloneFlags::CLONE_NEWPID)?;
    }
    let layer = Layer::at(&placement.layer_dir);
    layer.create()?;
    match sys::fork()? {
        sys::ForkResult::Child => {
            drop((output, stdin, console, word_r));
            let (error, word_at) = init(config, placement, cgroups, &layer, init_stdio, word_w.as_raw_fd());
            let message = error.to_string();
            // SAFETY: writing bytes to a descriptor the init holds.
            unsafe { libc::write(word_at, message.as_ptr().cast(), message.len()) };
            // SAFETY: leaving the forked child without running the
            // parent's exit handlers.
            unsafe { libc::_exit(127) }
        }
        sys::ForkResult::Parent { child } => {
            drop((init_stdio, word_w));
            let pid = child.as_raw();
            let start_ticks = state::start_ticks(pid).unwrap_or(0);
            state::write_json(&dir.join("state.json"), &Started { pid, start_ticks, started_at: state::now_rfc3339() })?;
            // The init sends its terminal before it execs; none comes
            // when it failed first (the word below says why).
            if let Some(console) = console {
                if let Ok(Some(master)) = terminal::receive(console.as_raw_fd()) {
                    output.push((master.try_clone().map_err(io("sharing the terminal"))?, Stream::Stdout));
                    stdin = Stdin::Terminal(master);
                }
            }
            // The word pipe closes on a successful exec (close-on-exec);
            // anything read from it is why the exec did not happen.
            let mut word = String::new();
            let _ = std::fs::File::from(word_r).read_to_string(&mut word);
            Ok(Running { pid: child, output, stdin, start_error: (!word.is_empty()).then_some(word) })
        }
    }
}

/// Descriptors of the init besides its stdio: the word pipe, and with a
/// terminal the socket its master side goes back over.
const WORD_FD: i32 = 3;
const CONSOLE_FD: i32 = 4;

/// The container's init, in its new PID namespace: returns only on
/// failure, with the descriptor the word pipe is at by then.
fn init(config: &ContainerConfig, placement: &Placement, cgroups: &Cgroups, layer: &Layer, stdio: InitStdio, word: i32) -> (Error, i32) {
    let mut word_at = word;
    let mut step = || -> Result<()> {
        sys::die_with_parent()?;
        cgroups.enter(&placement.cgroup)?;
        let null = std::fs::File::open("/dev/null").map_err(io("opening /dev/null"))?;
        // Moved above every target first, so no dup lands on a descriptor
        // still to be moved.
        let word = sys::dup_above(word, 10)?;
        let console = match &stdio {
            InitStdio::Terminal { console } => Some(sys::dup_above(console.as_raw_fd(), 10)?),
            InitStdio::Pipes { .. } => None,
        };
        match &stdio {
            InitStdio::Pipes { stdin, stdout, stderr } => {
                sys::dup_onto(stdin.as_ref().map(|f| f.as_raw_fd()).unwrap_or(null.as_raw_fd()), 0)?;
                sys::dup_onto(stdout.as_raw_fd(), 1)?;
                sys::dup_onto(stderr.as_raw_fd(), 2)?;
            }
            // The terminal takes these once the root is entered.
            InitStdio::Terminal { .. } => {
                for target in 0..3 {
                    sys::dup_onto(null.as_raw_fd(), target)?;
                }
            }
        }
        sys::dup_onto(word, WORD_FD)?;
        sys::cloexec(WORD_FD)?;
        word_at = WORD_FD;
        if let Some(console) = console {
            sys::dup_onto(console, CONSOLE_FD)?;
            sys::close_from(CONSOLE_FD + 1);
        } else {
            sys::close_from(WORD_FD + 1);
        }
        sys::unshare(CloneFlags::CLONE_NEWNS)?;
        rootfs::enter(config, layer)?;
        if console.is_some() {
            let (master, slave) = terminal::open(config.uid, config.gid)?;
            terminal::send(CONSOLE_FD, master.as_raw_fd())?;
            drop(master);
            sys::close(CONSOLE_FD);
            for target in 0..3 {
                sys::dup_onto(slave.as_raw_fd(), target)?;
            }
            drop(slave);
            sys::take_terminal()?;
        }
        let program = rootfs::look_up(config.args.first().map(String::as_str).unwrap_or(""), &config.env)?;
        let cwd = Path::new(&config.working_dir);
        std::fs::create_dir_all(cwd).map_err(io(format!("creating the working directory {}", cwd.display())))?;
        sys::chdir(cwd)?;
        sys::set_identity(config.uid, config.gid, &config.supplementary_gids)?;
        let mut env = config.env.clone();
        // As containerd does for a container with a terminal.
        if config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        Err(sys::exec(&program, &config.args, &env))
    };
    let error = match step() {
        Err(e) => e,
        Ok(()) => Error::Invalid("exec returned".into()),
    };
    (error, word_at)
}

/// Copies the init's output into the log (and to attached clients) until
/// it ends, passing attached clients' input on; then how it ended.
fn supervise(dir: &Path, running: Running, mut attachments: Attachments, config: &ContainerConfig, placement: &Placement, cgroups: &Cgroups) -> Exited {
    let mut log = LogFile::open(&config.log_path, config.log_rotation).ok();
    let mut streams: Vec<(OwnedFd, Stream, LineWriter)> = running.output.into_iter().map(|(fd, s)| (fd, s, LineWriter::new(s))).collect();
    let mut status = None;
    let mut buf = vec![0u8; 32 * 1024];
    let mut fds: Vec<libc::pollfd> = vec![];
    let mut slots: Vec<Slot> = vec![];
    loop {
        fds.clear();
        slots.clear();
        for (fd, _, _) in &streams {
            fds.push(libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        attachments.interest(&mut fds, &mut slots);
        // SAFETY: fds is a valid array of pollfd of the length given.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        let mut hung_up = vec![];
        for (i, (fd, stream, writer)) in streams.iter_mut().enumerate() {
            let revents = fds[i].revents;
            if revents & libc::POLLIN != 0 {
                match nix::unistd::read(fd.as_fd(), &mut buf) {
                    Ok(0) => hung_up.push(i),
                    Ok(n) => {
                        if let Some(log) = log.as_mut() {
                            let _ = writer.push(&buf[..n], log, &state::now_rfc3339());
                        }
                        attachments.output(*stream == Stream::Stderr, &buf[..n]);
                    }
                    Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
                    // A terminal's master reads EIO once nothing holds its
                    // other side: the output is over.
                    Err(_) => hung_up.push(i),
                }
            } else if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                hung_up.push(i);
            }
        }
        for (slot, fd) in slots.iter().zip(&fds[streams.len()..]) {
            attachments.ready(*slot, fd.revents);
        }
        attachments.sweep();
        for i in hung_up.into_iter().rev() {
            let (_, _, mut writer) = streams.remove(i);
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
        // namespace, so the pipes close soon; wait for them to drain. In
        // a PID namespace it does not own, what it left behind is killed
        // through its cgroup, as runc does.
        if status.is_some() && !config.owns_pid_namespace() && !streams.is_empty() {
            cgroups.kill_all(&placement.cgroup);
        }
        if status.is_some() && streams.is_empty() {
            break;
        }
    }
    attachments.finish(dir);
    if let Some(log) = log {
        log.close();
    }
    let (exit_code, signal) = status.unwrap_or((255, None));
    let oom_killed = cgroups.oom_killed(&placement.cgroup);
    Exited { exit_code, signal, finished_at: state::now_rfc3339(), oom_killed, start_error: running.start_error }
}
