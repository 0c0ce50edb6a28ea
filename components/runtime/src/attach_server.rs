//! The shim's side of attach (see [`crate::attach`]): the listening
//! socket, the attached clients, and the container's stdin. Driven by the
//! shim's poll loop: [`Attachments::interest`] says what to wait for,
//! [`Attachments::ready`] acts on what poll found, [`Attachments::output`]
//! hands every piece of the container's output to the clients.
//!
//! Nothing here blocks the shim: sockets and stdin are non-blocking and
//! what cannot be written yet waits in a buffer. A client that stops
//! reading is dropped once its buffer is full; input stops being read
//! while the container's stdin is full, so a client's writes wait.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use crate::attach::{Address, Decoder, Frame, MAX_PAYLOAD, SOCKET};
use crate::{io, terminal, Result};

/// A client that has not read this much of the output is dropped.
const CLIENT_BUFFER: usize = 4 * 1024 * 1024;
/// Input waiting for the container's stdin beyond which clients are not read.
const STDIN_BUFFER: usize = 256 * 1024;

/// Where the container's stdin goes.
pub(crate) enum Stdin {
    /// No stdin (`stdin: false`): it is /dev/null.
    None,
    /// The write end of the stdin pipe.
    Pipe(OwnedFd),
    /// The terminal's master side (writes are the container's input).
    Terminal(OwnedFd),
}

pub(crate) struct Attachments {
    listener: Option<UnixListener>,
    clients: Vec<Client>,
    stdin: Option<OwnedFd>,
    pending_stdin: Vec<u8>,
    /// The terminal, for resizes (and for its hang-up on a closed stdin).
    terminal: Option<OwnedFd>,
    stdin_once: bool,
    /// Set once stdin was closed for good (stdinOnce).
    stdin_closed: bool,
    /// The container's init, told of a hang-up when its terminal's only
    /// attach ends (stdinOnce).
    init_pid: i32,
}

struct Client {
    stream: UnixStream,
    decoder: Decoder,
    unsent: Vec<u8>,
    /// It attached with stdin (its stdin ending counts for stdinOnce).
    with_stdin: bool,
    gone: bool,
}

/// One poll entry and whose it is.
#[derive(Clone, Copy)]
pub(crate) enum Slot {
    Listener,
    Client(usize),
    Stdin,
}

impl Attachments {
    /// Listens on the container folder's socket. Without a socket (a path
    /// that cannot be bound) attach is not offered, and the container
    /// still runs.
    pub fn listen(dir: &Path, stdin: Stdin, stdin_once: bool, init_pid: i32) -> Attachments {
        let listener = bind(dir).map_err(|e| eprintln!("attach: {e}")).ok();
        let (stdin, terminal) = match stdin {
            Stdin::None => (None, None),
            Stdin::Pipe(fd) => (Some(fd), None),
            Stdin::Terminal(fd) => {
                let resize = fd.try_clone().ok();
                (Some(fd), resize)
            }
        };
        if let Some(fd) = &stdin {
            let _ = set_nonblocking(fd.as_raw_fd());
        }
        Attachments { listener, clients: vec![], stdin, pending_stdin: vec![], terminal, stdin_once, stdin_closed: false, init_pid }
    }

    /// The descriptors to poll, with what for.
    pub fn interest(&self, fds: &mut Vec<libc::pollfd>, slots: &mut Vec<Slot>) {
        let mut add = |fd: RawFd, events: libc::c_short, slot: Slot| {
            fds.push(libc::pollfd { fd, events, revents: 0 });
            slots.push(slot);
        };
        if let Some(l) = &self.listener {
            add(l.as_raw_fd(), libc::POLLIN, Slot::Listener);
        }
        let take_input = self.pending_stdin.len() < STDIN_BUFFER;
        for (i, c) in self.clients.iter().enumerate() {
            let mut events = 0;
            if take_input {
                events |= libc::POLLIN;
            }
            if !c.unsent.is_empty() {
                events |= libc::POLLOUT;
            }
            add(c.stream.as_raw_fd(), events, Slot::Client(i));
        }
        if let (Some(fd), false) = (&self.stdin, self.pending_stdin.is_empty()) {
            add(fd.as_raw_fd(), libc::POLLOUT, Slot::Stdin);
        }
    }

    /// Acts on one polled descriptor.
    pub fn ready(&mut self, slot: Slot, revents: libc::c_short) {
        if revents == 0 {
            return;
        }
        match slot {
            Slot::Listener => self.accept(),
            Slot::Stdin => self.flush_stdin(),
            Slot::Client(i) => {
                if revents & libc::POLLOUT != 0 {
                    flush(&mut self.clients[i]);
                }
                if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                    self.read_client(i);
                }
            }
        }
    }

    /// Drops the clients that went away (after a round of `ready`).
    pub fn sweep(&mut self) {
        let mut stdin_ended = false;
        self.clients.retain(|c| {
            if c.gone {
                stdin_ended |= c.with_stdin;
            }
            !c.gone
        });
        if stdin_ended {
            self.client_stdin_ended();
        }
    }

    /// A piece of the container's output, for every attached client.
    pub fn output(&mut self, stderr: bool, bytes: &[u8]) {
        for chunk in bytes.chunks(MAX_PAYLOAD) {
            let frame = if stderr { Frame::Stderr(chunk.to_vec()) } else { Frame::Stdout(chunk.to_vec()) };
            let wire = frame.encode();
            for c in self.clients.iter_mut().filter(|c| !c.gone) {
                if c.unsent.len() + wire.len() > CLIENT_BUFFER {
                    c.gone = true;
                    continue;
                }
                c.unsent.extend_from_slice(&wire);
                flush(c);
            }
        }
    }

    /// The container ended and its output is all read: what clients have
    /// not yet taken gets a moment to go, then every connection closes,
    /// which tells each client the container is gone.
    pub fn finish(mut self, dir: &Path) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        for c in self.clients.iter_mut() {
            let _ = c.stream.set_nonblocking(false);
            let _ = c.stream.set_write_timeout(Some(deadline.saturating_duration_since(std::time::Instant::now()).max(std::time::Duration::from_millis(1))));
            let _ = c.stream.write_all(&c.unsent);
        }
        self.clients.clear();
        let _ = std::fs::remove_file(dir.join(SOCKET));
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else { return };
        while let Ok((stream, _)) = listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.clients.push(Client { stream, decoder: Decoder::default(), unsent: vec![], with_stdin: false, gone: false });
            }
        }
    }

    fn read_client(&mut self, i: usize) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let client = &mut self.clients[i];
            match client.stream.read(&mut buf) {
                Ok(0) => {
                    // What it sent before it went still counts.
                    client.gone = true;
                    break;
                }
                Ok(n) => client.decoder.push(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    client.gone = true;
                    break;
                }
            }
        }
        loop {
            let frame = match self.clients[i].decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    // Not our protocol: the client goes.
                    self.clients[i].gone = true;
                    break;
                }
            };
            match frame {
                Frame::Stdin(bytes) => {
                    self.clients[i].with_stdin = true;
                    if self.stdin.is_some() {
                        self.pending_stdin.extend_from_slice(&bytes);
                    }
                }
                Frame::StdinClose => {
                    if std::mem::take(&mut self.clients[i].with_stdin) {
                        self.client_stdin_ended();
                    }
                }
                Frame::Resize { rows, cols } => {
                    if let Some(t) = &self.terminal {
                        terminal::resize(t.as_raw_fd(), rows, cols);
                    }
                }
                Frame::Stdout(_) | Frame::Stderr(_) => {}
            }
        }
        self.flush_stdin();
    }

    /// An attach with stdin ended: with stdinOnce, the container's stdin
    /// ends too (its pipe closes; a terminal hangs up, as when a real
    /// terminal's line drops).
    fn client_stdin_ended(&mut self) {
        if !self.stdin_once || self.stdin_closed {
            return;
        }
        self.stdin_closed = true;
        self.flush_stdin();
        self.pending_stdin.clear();
        self.stdin = None;
        if self.terminal.is_some() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.init_pid), nix::sys::signal::Signal::SIGHUP);
        }
    }

    fn flush_stdin(&mut self) {
        let Some(fd) = &self.stdin else {
            self.pending_stdin.clear();
            return;
        };
        while !self.pending_stdin.is_empty() {
            match nix::unistd::write(fd, &self.pending_stdin) {
                Ok(n) => {
                    self.pending_stdin.drain(..n);
                }
                Err(nix::Error::EINTR) => continue,
                Err(nix::Error::EAGAIN) => return,
                Err(_) => {
                    // The reader is gone: input has nowhere to go.
                    self.pending_stdin.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
    }
}

fn flush(c: &mut Client) {
    while !c.unsent.is_empty() {
        match c.stream.write(&c.unsent) {
            Ok(0) => {
                c.gone = true;
                return;
            }
            Ok(n) => {
                c.unsent.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => {
                c.gone = true;
                return;
            }
        }
    }
}

fn bind(dir: &Path) -> Result<UnixListener> {
    let address = Address::of(dir)?;
    let path = address.socket();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(io(format!("listening on {}", dir.join(SOCKET).display())))?;
    listener.set_nonblocking(true).map_err(io("making the attach socket non-blocking"))?;
    Ok(listener)
}

fn set_nonblocking(fd: RawFd) -> nix::Result<()> {
    // SAFETY: the descriptor stays open for the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = nix::fcntl::OFlag::from_bits_truncate(nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?);
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags | nix::fcntl::OFlag::O_NONBLOCK)).map(drop)
}
