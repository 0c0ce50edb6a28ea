//! The raw system calls the runtime makes, each wrapped once with what it
//! was doing, so the rest of the crate reads as steps.

use std::ffi::CString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::{sys_err as sys, Error, Result};

pub use nix::unistd::{ForkResult, Pid};

/// fork(2). Only called from the runtime's single-threaded child
/// processes (never from the kubelet itself).
pub fn fork() -> Result<ForkResult> {
    // SAFETY: the callers are single-threaded processes (see `entry`).
    unsafe { nix::unistd::fork() }.map_err(sys("fork"))
}

pub fn unshare(flags: CloneFlags) -> Result<()> {
    nix::sched::unshare(flags).map_err(sys(format!("unshare({flags:?})")))
}

/// Joins the namespace behind a /proc/PID/ns/* path.
pub fn join_namespace(path: &Path, flags: CloneFlags) -> Result<()> {
    let file = std::fs::File::open(path).map_err(crate::io(format!("opening {}", path.display())))?;
    nix::sched::setns(file, flags).map_err(sys(format!("setns({})", path.display())))
}

pub fn mount(source: Option<&str>, target: &Path, fstype: Option<&str>, flags: MsFlags, data: Option<&str>) -> Result<()> {
    nix::mount::mount(source, target, fstype, flags, data).map_err(sys(format!(
        "mount {} on {} ({fstype:?}, {flags:?})",
        source.unwrap_or("none"),
        target.display()
    )))
}

pub fn umount_detach(target: &Path) -> Result<()> {
    nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(sys(format!("umount {}", target.display())))
}

pub fn pivot_root_here() -> Result<()> {
    // runc's way: the new root's "." becomes / and the old root is stacked
    // on it, then detached; no folder for the old root is needed.
    nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root"))?;
    umount_detach(Path::new("."))?;
    nix::unistd::chdir("/").map_err(sys("chdir /"))
}

pub fn chdir(path: &Path) -> Result<()> {
    nix::unistd::chdir(path).map_err(sys(format!("chdir {}", path.display())))
}

pub fn sethostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).map_err(sys(format!("sethostname {name}")))
}

pub fn setsid() -> Result<()> {
    nix::unistd::setsid().map(|_| ()).map_err(sys("setsid"))
}

/// Makes the terminal on stdin this process's controlling terminal, in a
/// session of its own (a shell's job control needs both).
pub fn take_terminal() -> Result<()> {
    setsid()?;
    // SAFETY: TIOCSCTTY on stdin, no memory involved.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(Error::Io { what: "taking the terminal".into(), source: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// The parent's death kills this process (for the container init, whose
/// shim must outlive it).
pub fn die_with_parent() -> Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(sys("prctl(PR_SET_PDEATHSIG)"))
}

pub fn set_identity(uid: u32, gid: u32, groups: &[u32]) -> Result<()> {
    let groups: Vec<nix::unistd::Gid> = groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(sys("setgroups"))?;
    nix::unistd::setresgid(gid.into(), gid.into(), gid.into()).map_err(sys(format!("setgid {gid}")))?;
    nix::unistd::setresuid(uid.into(), uid.into(), uid.into()).map_err(sys(format!("setuid {uid}")))
}

pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe"))
}

/// Makes `fd` the process's descriptor `target` (without close-on-exec).
pub fn dup_onto(fd: RawFd, target: RawFd) -> Result<()> {
    // SAFETY: plain descriptor numbers; dup2 has no memory effects.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(Error::Io { what: format!("dup2({fd}, {target})"), source: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// A copy of `fd` at the lowest free descriptor from `min` up (with
/// close-on-exec).
pub fn dup_above(fd: RawFd, min: RawFd) -> Result<RawFd> {
    // SAFETY: plain descriptor numbers; fcntl has no memory effects here.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) };
    if copy < 0 {
        return Err(Error::Io { what: format!("dup({fd}) from {min}"), source: std::io::Error::last_os_error() });
    }
    Ok(copy)
}

pub fn close(fd: RawFd) {
    // SAFETY: closing a descriptor number this process owns.
    unsafe { libc::close(fd) };
}

/// Closes every descriptor from `first` up, so nothing of the kubelet's
/// leaks into a container.
pub fn close_from(first: RawFd) {
    // SAFETY: close_range only closes descriptors.
    unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint) };
}

/// Sets close-on-exec on `fd`.
pub fn cloexec(fd: RawFd) -> Result<()> {
    // SAFETY: the descriptor stays open for the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).map(|_| ()).map_err(sys("fcntl FD_CLOEXEC"))
}

pub fn exec(program: &Path, args: &[String], env: &[String]) -> Error {
    let to_c = |s: &str| CString::new(s).map_err(|_| Error::Invalid(format!("{s:?} holds a NUL byte")));
    let program_c = match to_c(&program.to_string_lossy()) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let args: Result<Vec<CString>> = args.iter().map(|a| to_c(a)).collect();
    let env: Result<Vec<CString>> = env.iter().map(|a| to_c(a)).collect();
    match (args, env) {
        (Ok(args), Ok(env)) => match nix::unistd::execve(&program_c, &args, &env) {
            Err(e) => Error::Sys { what: format!("exec {}", program.display()), source: e },
        },
        (Err(e), _) | (_, Err(e)) => e,
    }
}

pub fn kill(pid: i32, signal: nix::sys::signal::Signal) -> Result<()> {
    match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(Error::Sys { what: format!("kill {pid} {signal}"), source: e }),
    }
}

/// Names the process (what `ps` shows), so shims and holders read apart
/// from the kubelet whose binary they are.
pub fn set_name(name: &str) {
    if let Ok(c) = CString::new(name) {
        let _ = nix::sys::prctl::set_name(&c);
    }
}
