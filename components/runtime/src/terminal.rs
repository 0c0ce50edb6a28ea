//! A container's terminal (`tty: true`), made as runc makes one: inside
//! the container, from the devpts instance of its own `/dev/pts`, so that
//! `tty` and `ttyname` find it there (a terminal of the node's devpts is a
//! path the container cannot see). The init opens it after entering its
//! root and hands the master side to the shim over a socket (SCM_RIGHTS);
//! the shim reads the container's output from it and writes attached
//! clients' input to it. `kubectl exec -t` gets its terminal the same
//! way, sent to the kubelet.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::{io, sys_err, Result};

/// Opens a terminal in the current root's `/dev/ptmx`; its master and
/// slave, the slave owned by the container's user (as runc's console).
pub(crate) fn open(uid: u32, gid: u32) -> Result<(OwnedFd, OwnedFd)> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(sys_err("opening /dev/ptmx"))?;
    nix::pty::grantpt(&master).map_err(sys_err("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(sys_err("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(sys_err("ptsname"))?;
    let slave =
        std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(&name).map_err(io(format!("opening the terminal {name}")))?;
    nix::unistd::fchown(&slave, Some(uid.into()), Some(gid.into())).map_err(sys_err(format!("chown {name}")))?;
    // 24x80 until an attached client says its size.
    resize(master.as_raw_fd(), 24, 80);
    Ok((master.into(), slave.into()))
}

/// Sends `fd` over the unix socket `socket`.
pub(crate) fn send(socket: RawFd, fd: RawFd) -> Result<()> {
    let fds = [fd];
    sendmsg::<()>(socket, &[IoSlice::new(b"t")], &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None).map_err(sys_err("sending the terminal"))?;
    Ok(())
}

/// The descriptor sent over `socket`, or None when the sender ended first.
pub fn receive(socket: RawFd) -> Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let message = recvmsg::<()>(socket, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC).map_err(sys_err("receiving the terminal"))?;
    for cmsg in message.cmsgs().map_err(sys_err("reading the terminal's message"))? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(*fd) }));
            }
        }
    }
    Ok(None)
}

/// Sets a terminal's size (its foreground process group gets SIGWINCH).
pub fn resize(terminal: RawFd, rows: u16, cols: u16) {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer given.
    unsafe { libc::ioctl(terminal, libc::TIOCSWINSZ, &size) };
}
