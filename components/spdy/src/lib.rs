//! SPDY/3.1 for the kubelet's `kubectl port-forward` streams: frames
//! ([`frame`]) and a session ([`Session`]) over any async byte stream, in the
//! server role (streams the peer opens are accepted) and the client role
//! (streams are opened; used by tests and test tools).
//!
//! # Port-forward over SPDY
//!
//! `kubectl port-forward` opens, for each connection to one of its local
//! ports, an `error` stream and then a `data` stream. Both carry the headers
//! `streamtype` (`error` or `data`), `port` (the pod's port) and `requestid`
//! (the same on both; it pairs them). The server connects to the pod's port,
//! copies bytes both ways over the data stream, and writes any error text on
//! the error stream before closing it. kubectl 1.33 first tries a WebSocket
//! with subprotocol `SPDY/3.1+portforward.k8s.io`, whose binary messages
//! carry the SPDY byte stream; otherwise it makes a plain HTTP upgrade
//! (`Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version: portforward.k8s.io`).
//! Either way the bytes after the upgrade are a SPDY session in which kubectl
//! is the client: run [`Session::new`] with [`Role::Server`] over them and
//! [`Session::accept`] the streams.
//!
//! # The peer: moby/spdystream
//!
//! kubectl and the apiserver speak SPDY through `moby/spdystream` (wrapped by
//! `k8s.io/apimachinery/pkg/util/httpstream/spdy`). What it does, read from
//! its source (`connection.go`, `stream.go`, `spdy/read.go`):
//!
//! - It never sends WINDOW_UPDATE or SETTINGS, and it ignores windows when
//!   sending: `Stream.Write` sends each buffer as one data frame at once (so
//!   frames of 32 KiB, `io.Copy`'s buffer, are usual). Its framer parses
//!   WINDOW_UPDATE and SETTINGS frames, and the connection then drops them
//!   as unhandled frame types (a debug log only).
//! - So a SPDY/3 sender that waited for window space would stall after
//!   64 KiB against it. This session never blocks a send on a window; it
//!   sends WINDOW_UPDATE (per stream and, as 3.1 adds, for stream 0) as the
//!   application consumes data, which spdystream drops harmlessly and a
//!   peer that does keep windows needs.
//! - Its backpressure is blocking: a data frame is handed to the stream's
//!   reader through an unbuffered channel, and the frame-reading goroutine
//!   waits meanwhile. This session does the same with a small bounded
//!   queue per stream: a slow reader of one stream stops reading from the
//!   connection (all streams wait) rather than letting memory grow.
//! - Its server side answers a SYN_STREAM its handler accepts with a
//!   SYN_REPLY with empty headers; [`Session::accept`] does the same.
//! - A frame-read error, or any control frame type its framer does not
//!   know, ends its connection, so this crate sends only the known types.
//! - It answers PINGs whose id has the other side's parity and ends the
//!   connection on GOAWAY.
//!
//! # What this session does not do
//!
//! - Keep send windows: sends never wait for WINDOW_UPDATE (see above);
//!   received WINDOW_UPDATE and SETTINGS frames are read and dropped.
//! - Enforce receive windows: a peer that sends past them is not reset;
//!   the bounded queues hold it back instead.
//! - Server push (associated streams) and the content of HEADERS frames
//!   (only their FIN counts).
//! - Send PINGs by itself: call [`Session::ping`] to keep a connection
//!   alive or to check it.
//!
//! # Example (server)
//!
//! ```ignore
//! let session = spdy::Session::new(upgraded_io, spdy::Role::Server);
//! while let Some(stream) = session.accept().await {
//!     let port = stream.headers().get("port").map(str::to_owned);
//!     tokio::spawn(async move { /* copy between `stream` and the pod */ });
//! }
//! ```

mod dictionary;
pub mod frame;
mod session;

pub use dictionary::HEADER_DICTIONARY;
pub use frame::{Frame, FrameDecoder, FrameEncoder, GoAwayStatus, Headers, RstStatus};
pub use session::{RecvStream, Role, SendStream, Session, Stream, MAX_DATA_CHUNK};

/// What can go wrong in framing and in a session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A control frame of a version other than 3.
    #[error("SPDY version {0} is not supported (only 3)")]
    UnsupportedVersion(u16),
    /// A frame whose fixed fields do not fit its length.
    #[error("invalid {frame} frame: {reason}")]
    InvalidFrame { frame: &'static str, reason: &'static str },
    /// A payload larger than a frame's 24-bit length can state.
    #[error("a frame payload of {0} bytes is larger than SPDY allows")]
    FrameTooLarge(usize),
    /// A name/value header block that does not compress, decompress or parse.
    #[error("header block: {0}")]
    HeaderBlock(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The session has ended (the connection closed or failed).
    #[error("the SPDY session is closed")]
    SessionClosed,
    /// The peer sent GOAWAY: it accepts no new streams.
    #[error("the peer has sent GOAWAY")]
    GoneAway,
    /// The peer reset the stream (RST_STREAM) instead of replying.
    #[error("stream {id} was reset by the peer: {status}")]
    StreamReset { id: u32, status: RstStatus },
    /// This side has used all 2^31 stream ids.
    #[error("no stream ids are left in this session")]
    StreamIdsExhausted,
}
