//! Attaching to a container's own stdio (`kubectl attach`, `kubectl run
//! -it`), the wire between the kubelet and a container's shim.
//!
//! The shim owns the container's stdin (a pipe, or the terminal when the
//! container asked for one) and listens on `attach.sock` in the
//! container's state folder ([`crate::attach_server`]). Whoever connects
//! gets the container's output from then on, may write to its stdin and
//! resize its terminal. A connection is a stream of frames both ways: a
//! kind byte, a big-endian u32 length, the payload.
//!
//! The folder's path can be longer than a socket address may be (108
//! bytes), so both sides name the socket through `/proc/self/fd/N/`, N an
//! open descriptor of the folder.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::{io, Error, Result};

pub const SOCKET: &str = "attach.sock";

/// The largest payload a frame carries; longer writes are split.
pub const MAX_PAYLOAD: usize = 64 * 1024;

const HEADER: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → shim: bytes for the container's stdin. An empty one says
    /// that this client attached with stdin (it counts for `stdinOnce`).
    Stdin(Vec<u8>),
    /// Client → shim: this client's stdin ended.
    StdinClose,
    /// Client → shim: the terminal's new size.
    Resize {
        rows: u16,
        cols: u16,
    },
    /// Shim → client: the container's output.
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Stdin(_) => 0,
            Frame::StdinClose => 1,
            Frame::Resize { .. } => 2,
            Frame::Stdout(_) => 3,
            Frame::Stderr(_) => 4,
        }
    }

    /// The frame on the wire; a payload over [`MAX_PAYLOAD`] is the
    /// caller's to split.
    pub fn encode(&self) -> Vec<u8> {
        let resize;
        let payload: &[u8] = match self {
            Frame::Stdin(b) | Frame::Stdout(b) | Frame::Stderr(b) => b,
            Frame::StdinClose => &[],
            Frame::Resize { rows, cols } => {
                resize = [rows.to_be_bytes(), cols.to_be_bytes()].concat();
                &resize
            }
        };
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.push(self.kind());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

/// Frames out of a byte stream that arrives in pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, None until one has arrived; an error for a
    /// frame no peer of this protocol sends.
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(Error::Invalid(format!("an attach frame of {len} bytes is over the {MAX_PAYLOAD} allowed")));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf.drain(..HEADER + len).skip(HEADER).collect();
        let frame = match (kind, payload.len()) {
            (0, _) => Frame::Stdin(payload),
            (1, 0) => Frame::StdinClose,
            (2, 4) => Frame::Resize { rows: u16::from_be_bytes([payload[0], payload[1]]), cols: u16::from_be_bytes([payload[2], payload[3]]) },
            (3, _) => Frame::Stdout(payload),
            (4, _) => Frame::Stderr(payload),
            _ => return Err(Error::Invalid(format!("an attach frame of kind {kind} with {len} bytes is not one of the protocol's"))),
        };
        Ok(Some(frame))
    }
}

/// A container folder held open, so its socket has a short name.
pub struct Address {
    dir: std::fs::File,
}

impl Address {
    pub fn of(container_dir: &Path) -> Result<Address> {
        let dir = std::fs::File::open(container_dir).map_err(io(format!("opening {}", container_dir.display())))?;
        Ok(Address { dir })
    }

    /// The socket's path, valid while this Address lives.
    pub fn socket(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", self.dir.as_raw_fd()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_the_wire_in_any_pieces() {
        let frames = vec![
            Frame::Stdin(vec![]),
            Frame::Stdin(b"echo hi\n".to_vec()),
            Frame::Resize { rows: 24, cols: 80 },
            Frame::StdinClose,
            Frame::Stdout(vec![7; 1000]),
            Frame::Stderr(b"oops".to_vec()),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        for piece in [1, 3, 7, wire.len()] {
            let mut decoder = Decoder::default();
            let mut out = vec![];
            for chunk in wire.chunks(piece) {
                decoder.push(chunk);
                while let Some(f) = decoder.next_frame().unwrap() {
                    out.push(f);
                }
            }
            assert_eq!(out, frames, "in pieces of {piece}");
        }
    }

    #[test]
    fn frames_no_peer_sends_are_errors() {
        let mut decoder = Decoder::default();
        decoder.push(&[9, 0, 0, 0, 0]);
        assert!(decoder.next_frame().unwrap_err().to_string().contains("kind 9"));
        let mut decoder = Decoder::default();
        decoder.push(&[3, 0xff, 0, 0, 0]);
        assert!(decoder.next_frame().unwrap_err().to_string().contains("over the"));
        let mut decoder = Decoder::default();
        decoder.push(&[2, 0, 0, 0, 3, 1, 2, 3]);
        assert!(decoder.next_frame().is_err(), "a resize is four bytes");
    }
}
